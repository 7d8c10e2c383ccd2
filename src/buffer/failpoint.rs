//! Named points where a test can make the process abort, to crash it at an exact step (in the
//! middle of a segment rotation, of a cursor write) instead of hoping a timed `kill -9` lands
//! there.
//!
//! `SCRAPELET_FAILPOINT=<name>` aborts at the first time `<name>` is hit, `<name>:<n>` at the
//! n-th. Read once; without the variable a hit costs one atomic load.
//!
//! Only with the `failpoints` cargo feature, which the tests enable (a dev-dependency of the
//! package on itself) and `cargo build` does not: without it a hit is nothing, the variable is
//! never read, and its name is not in the binary (.ci/run checks that).

#[cfg(feature = "failpoints")]
use std::sync::OnceLock;
#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the failpoint.
#[cfg(feature = "failpoints")]
pub const ENV: &str = "SCRAPELET_FAILPOINT";

#[cfg(feature = "failpoints")]
struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

#[cfg(feature = "failpoints")]
static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Aborts the process if `name` is the armed failpoint and this is the hit it waits for.
pub fn hit(name: &str) {
    if fires(name) {
        abort(name);
    }
}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fires(_name: &str) -> bool {
    false
}

/// Counts a hit of `name`; whether it is the one the armed failpoint waits for (the caller
/// then does its partial work and calls [`abort`]).
#[cfg(feature = "failpoints")]
pub fn fires(name: &str) -> bool {
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let (name, at) = match value.rsplit_once(':') {
            Some((n, at)) => (n.to_owned(), at.parse().ok()?),
            None => (value, 1),
        };
        Some(Armed {
            name,
            at,
            hits: AtomicU64::new(0),
        })
    });
    armed
        .as_ref()
        .is_some_and(|a| a.name == name && a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.at)
}

/// Aborts the process, saying which failpoint did it.
pub fn abort(name: &str) -> ! {
    eprintln!("failpoint {name} hit; aborting");
    std::process::abort();
}
