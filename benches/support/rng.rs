//! A small deterministic generator (xorshift64) for the benches' synthetic values: the same
//! seed gives the same sequence on every run. The seed must not be 0.
//!
//! Include with `#[path = "support/rng.rs"] mod rng;`.

#![allow(dead_code)]

/// Marsaglia's xorshift64.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
