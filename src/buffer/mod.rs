//! The write-ahead buffer: a segmented, checksummed, size-capped log of opaque records on
//! disk, with one writer and any number of readers that follow it.
//!
//! Written as a crate of its own: it knows nothing of samples or endpoints (`crate::wal`
//! gives records their meaning). It has its own errors ([`Error`]) and tests (`tests/`).
//!
//! # Invariants
//!
//! 1. **Framing.** Every record carries its length, a kind, an item count and a CRC32C over
//!    all of them and the payload. A record that fails any check (short, too long, kind 0,
//!    checksum) is never returned as data: the reader reports the rest of its segment as a
//!    [`Gap`] (reason [`GapReason::Corrupt`]) and goes on with the next segment. Damage is
//!    never fatal.
//! 2. **Records never span segments.** A segment is at most `segment_size` bytes, except that
//!    its first record goes in whatever its size (at most [`MAX_RECORD_BYTES`]).
//! 3. **Who creates, who deletes.** Only the [`Writer`] creates segments and writes to them,
//!    always appending, one write(2) per record. Segments are deleted by the log when no
//!    consumer holds them ([`Log::hold`]), by the size cap before a write, and by the age cap
//!    (the syncer thread); never the active segment. A reader whose segment is deleted under
//!    it reports the items it had not read as a [`Gap`] (reason `Cap` or `Age`).
//! 4. **Readers see only complete records.** The end of the active segment is published after
//!    its record is written; readers never read past it.
//! 5. **Sealed segments.** A segment that is not the active one ends with a trailer (its item
//!    count and append times). After a crash, [`Log::open`] cuts an unsealed segment to its
//!    last valid record and seals it, so every segment but the active one is sealed.
//! 6. **A new process starts a new segment.** The writer has no active segment after open;
//!    its first [`Writer::rotate`] creates one. Segment numbers only grow (a segment number
//!    is never reused) and are below 2^32, so a [`Position`] packs into a `u64`.
//! 7. **Size cap.** Before a write, the oldest segments are deleted until the bytes on disk
//!    plus the write are at most `max_size`. Writing never waits for a consumer.
//!
//! # Durability
//!
//! A record is in the page cache when [`Writer::append`] returns: a killed process loses
//! nothing appended. The active segment is synced (`fdatasync`) by a background thread every
//! `fsync_interval` when it was written to, and at rotation and [`Writer::close`]: a power
//! loss can cost up to `fsync_interval` of appends (zero syncs after every append). A new
//! segment's directory entry is synced before it is used.
//!
//! # Format
//!
//! See `format` (and docs/buffer-format.md): a 24-byte file header, then records framed as
//! `len u32 | crc32c u32 | kind u8 | items u32 | payload`, then a trailer record.
//!
//! # Sequences
//!
//! - write: see [`Writer`]; rotate = seal the active segment (trailer, sync) -> create the
//!   next with its file header and first record in one write -> sync it and the directory.
//! - read: see [`Reader`].
//! - acknowledge: a consumer calls [`Log::hold`] with the first position it still needs;
//!   segments before every consumer's hold are deleted.
//! - recover: [`Log::open`] removes temporary files and segments without a valid header,
//!   seals unsealed segments, and leaves the writer without an active segment.

mod error;
pub mod failpoint;
pub mod format;
mod io;
mod log;
mod reader;
mod writer;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use io::{Fs, SegmentFile, StdFs};
pub use log::{Log, Observer, Options, Recovery, Stats};
pub use reader::{Event, Gap, Reader, Record};
pub use writer::{MAX_RETRY_DELAY, MIN_RETRY_DELAY, Writer};

/// Where a record starts: its segment and its byte offset in it. Orders like the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Why records were skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// Deleted by the size cap before this reader read them.
    Cap,
    /// Deleted by the age cap before this reader read them.
    Age,
    /// Damaged on disk.
    Corrupt,
    /// Gone for a reason this process does not know (deleted by an earlier process or by
    /// hand).
    Missing,
}

/// The largest record payload.
pub const MAX_RECORD_BYTES: usize = if cfg!(test) { 64 << 10 } else { 64 << 20 };
/// The largest segment size (and the default).
pub const MAX_SEGMENT_BYTES: u64 = if cfg!(test) { 4 << 10 } else { 64 << 20 };
/// The smallest segment size [`Options::segment_size_for`] picks.
pub const MIN_SEGMENT_BYTES: u64 = if cfg!(test) { 512 } else { 16 << 10 };

impl Position {
    /// The position packed into a `u64`: the segment in the high 32 bits, the offset in the
    /// low 32 (segments are smaller than 4 GiB and numbered below 2^32, invariant 6).
    pub fn to_u64(self) -> u64 {
        (self.segment << 32) | (self.offset & 0xffff_ffff)
    }

    /// The position [`Position::to_u64`] packed.
    pub fn from_u64(packed: u64) -> Self {
        Position {
            segment: packed >> 32,
            offset: packed & 0xffff_ffff,
        }
    }
}

impl GapReason {
    /// A short name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Cap => "cap",
            GapReason::Age => "age",
            GapReason::Corrupt => "corrupt",
            GapReason::Missing => "missing",
        }
    }
}
