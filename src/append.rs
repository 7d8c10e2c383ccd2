//! The seam between scraping and delivery.
//!
//! Scrape loops hand each scrape's result to an [`Appender`] as one [`Batch`]. Today the
//! appender is the in-memory fan-out of `remote`; the write-ahead buffer will be another
//! appender with the same contract, so nothing upstream changes when it lands.
//!
//! Contract (what an appender may rely on, and what it must do):
//! 1. A series is introduced by an entry in [`Batch::series`] in the same batch as, or an
//!    earlier batch than, its first sample. Its labels are final (target labels attached,
//!    metric relabeling applied; external labels and write relabeling are the endpoints') and
//!    never change for that [`SeriesRef`].
//! 2. Samples of one series come in strictly increasing timestamp order, within a batch and
//!    across batches (the scrape loop rejects what would break this).
//! 3. A ref in [`Batch::gone`] will never be used again after that batch; consumers may forget
//!    its labels once they have handled the batch's samples (bounded memory).
//! 4. [`Appender::append`] never blocks on the network or the disk and never fails: what
//!    cannot be kept is counted as dropped by the appender.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::labels::Labels;

/// The bit pattern of Prometheus's staleness marker, a NaN no arithmetic produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (not merely any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Identity of a series inside this process. Refs are never reused while the process lives:
/// every ref comes from one process-wide counter ([`SeriesRef::allocate`]), whoever makes the
/// series (a scrape loop, or a buffer reader giving series replayed from an earlier process
/// refs of this one), so refs from different makers never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

/// The next ref [`SeriesRef::allocate`] hands out (0 is never handed out).
static NEXT_REF: AtomicU64 = AtomicU64::new(1);

/// Hands out [`SeriesRef`]s to scrape loops (from the process-wide counter).
#[derive(Debug, Default)]
pub struct SeriesRefs {
    _private: (),
}

/// One sample of one series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub series: SeriesRef,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// What one scrape (or one staleness flush) produced. See the module contract.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Series introduced by this batch, with their final labels.
    pub series: Vec<(SeriesRef, Labels)>,
    /// Samples, in order per series.
    pub samples: Vec<Sample>,
    /// Series that end with this batch.
    pub gone: Vec<SeriesRef>,
}

/// Where scrape loops put what they scraped.
pub trait Appender: Send + Sync + 'static {
    /// Takes one batch. Never blocks on the network, never fails (see the module contract).
    fn append(&self, batch: Batch);

    /// Waits until every batch appended before has been handled (written, or counted as
    /// dropped). For tools and tests; scrape loops never wait.
    fn flush(&self) {}
}

impl SeriesRef {
    /// A ref no one else in this process has (never 0).
    pub fn allocate() -> SeriesRef {
        SeriesRef(NEXT_REF.fetch_add(1, Ordering::Relaxed))
    }
}

impl SeriesRefs {
    /// A fresh ref ([`SeriesRef::allocate`]).
    pub fn allocate(&self) -> SeriesRef {
        SeriesRef::allocate()
    }
}

impl Batch {
    /// Whether the batch carries nothing at all.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.samples.is_empty() && self.gone.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_a_specific_nan() {
        assert!(stale_nan().is_nan());
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }

    #[test]
    fn refs_are_unique_and_nonzero() {
        let refs = SeriesRefs::default();
        let a = refs.allocate();
        let b = refs.allocate();
        assert_ne!(a, b);
        assert!(a.0 >= 1 && b.0 >= 1);
    }
}
