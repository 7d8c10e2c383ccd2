//! Errors of the buffer. Reading never fails upward for damaged data (that is skipped and
//! reported as a [`Gap`](super::Gap)); what fails is I/O the buffer cannot work around.

use std::path::PathBuf;

/// Shorthand for results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a buffer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The buffer directory cannot be created or listed. Not retryable without operator
    /// action (permissions, a file where the directory should be).
    #[error("cannot use buffer directory {path}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or creating a segment failed (disk full, I/O error). Retryable: the
    /// writer starts a fresh segment on the next attempt and succeeds once space returns.
    #[error("cannot write buffer segment {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading a segment failed for a reason other than damaged data (the file vanished,
    /// an I/O error). Retryable.
    #[error("cannot read buffer segment {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record is larger than [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES). Not
    /// retryable: the same record will never fit.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// A record does not fit under the size cap even after every older segment was deleted.
    /// Not retryable for this record.
    #[error("record of {len} bytes does not fit under the size cap of {cap} bytes")]
    OverCap { len: u64, cap: u64 },
    /// The writer is in back-off after a failure and does not try again before the time
    /// passed. Retryable (later).
    #[error("buffer writer is backing off after a failure")]
    BackingOff,
    /// The writer has no segment to append to (after open): rotate first. Retryable.
    #[error("buffer writer has no active segment")]
    NoActiveSegment,
    /// Kind 0 and 0xFF are the buffer's own. A caller bug; not retryable.
    #[error("record kind {0} is reserved")]
    ReservedKind(u8),
    /// The log was closed: nothing more is appended.
    #[error("buffer is closed")]
    Closed,
    /// Segment numbers ran out (2^32 segments were created). Not retryable.
    #[error("buffer segment numbers exhausted")]
    SegmentsExhausted,
}

impl Error {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Write { .. } | Error::Read { .. } | Error::BackingOff | Error::NoActiveSegment
        )
    }
}
