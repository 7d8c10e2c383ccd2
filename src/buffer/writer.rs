//! The single writer of a buffer: appends records to the active segment, seals it and starts
//! the next, enforces the size cap before every write, and backs off after a failure.
//!
//! Write sequence of one record: frame it (one buffer) -> make room under the cap (delete the
//! oldest segments) -> one `append` (one write(2)) -> publish the new end (readers may now
//! read it) -> with `fsync_interval` zero, sync; otherwise mark the segment dirty for the
//! syncer. A failed append cuts the file back to its last complete record and leaves the
//! writer without an active segment: the next [`Writer::rotate`] (after the back-off) starts
//! a fresh one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::failpoint;
use super::format::{self, FILE_HEADER_LEN, FRAME_HEADER_LEN, TRAILER_LEN, Trailer};
use super::io::SegmentFile;
use super::log::{Log, SegmentMeta, Shared, now_ms, sync_file};
use super::{MAX_RECORD_BYTES, Position};
use crate::backoff::Backoff;

/// First delay after a write failure; it doubles up to [`MAX_RETRY_DELAY`].
pub const MIN_RETRY_DELAY: Duration = if cfg!(test) {
    Duration::from_millis(1)
} else {
    Duration::from_millis(500)
};
/// Longest delay between attempts after write failures.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Appends records. There is one per open log.
pub struct Writer {
    shared: Arc<Shared>,
    active: Option<Active>,
    /// The frame being written (reused).
    buf: Vec<u8>,
    failure: Option<Failure>,
}

struct Active {
    index: u64,
    path: PathBuf,
    file: Arc<dyn SegmentFile>,
    len: u64,
    records: u64,
    items: u64,
    first_append_ms: i64,
    last_append_ms: i64,
}

struct Failure {
    retry_at: Instant,
    /// The crate's backoff, without jitter (one writer per process: nothing to spread).
    backoff: Backoff,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Writer {
            shared,
            active: None,
            buf: Vec::new(),
            failure: None,
        }
    }

    /// A handle to the log this writer writes.
    pub fn log(&self) -> Log {
        Log {
            shared: self.shared.clone(),
        }
    }

    /// Whether a record of `payload_len` bytes goes into the active segment. False when there
    /// is none (after open, after a failure), when it would take the segment past its size
    /// (unless the segment holds only its first record: a big record then goes in anyway),
    /// or when the segment is older than an eighth of the age cap.
    pub fn fits(&self, payload_len: usize) -> bool {
        let Some(a) = &self.active else {
            return false;
        };
        let options = &self.shared.options;
        if let Some(max_age) = options.max_age {
            let span = i64::try_from((max_age / 8).as_millis()).unwrap_or(i64::MAX);
            if now_ms().saturating_sub(a.first_append_ms) > span {
                return false;
            }
        }
        let after = a.len + (FRAME_HEADER_LEN + payload_len) as u64 + TRAILER_LEN;
        a.records <= 1 || after <= options.segment_size
    }

    /// Whether the writer has a segment to append to.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Whether the writer is waiting out a back-off after a failure at `now`.
    pub fn is_backing_off(&self, now: Instant) -> bool {
        self.failure.as_ref().is_some_and(|f| now < f.retry_at)
    }

    /// Seals the active segment (if any) and starts a new one whose first record is the
    /// given one; returns that record's position. Fails during a back-off, or when the new
    /// segment cannot be written (the writer then backs off).
    pub fn rotate(&mut self, kind: u8, items: u32, payload: &[u8]) -> Result<Position> {
        check_record(kind, payload)?;
        if self.shared.lock().closed {
            return Err(Error::Closed);
        }
        if self.is_backing_off(Instant::now()) {
            return Err(Error::BackingOff);
        }
        failpoint::hit("buffer-rotate-start");
        self.seal_active();
        failpoint::hit("buffer-rotate-sealed");
        let result = self.start_segment(kind, items, payload);
        match &result {
            Ok(_) => self.failure = None,
            Err(_) => self.fail(),
        }
        result
    }

    /// Appends one record to the active segment; returns its position. See the module docs
    /// for what a failure leaves behind.
    pub fn append(&mut self, kind: u8, items: u32, payload: &[u8]) -> Result<Position> {
        check_record(kind, payload)?;
        let Some(active) = self.active.as_mut() else {
            return Err(if self.failure.is_some() {
                Error::BackingOff
            } else {
                Error::NoActiveSegment
            });
        };
        self.buf.clear();
        format::encode_record(&mut self.buf, kind, items, payload);
        let n = self.buf.len() as u64;
        {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(Error::Closed);
            }
            if !self.shared.make_room(&mut st, n) {
                return Err(Error::OverCap {
                    len: n,
                    cap: self.shared.options.max_size,
                });
            }
        }
        if let Err(source) = active.file.append(&self.buf) {
            let path = active.path.clone();
            // Undo a partial write so that readers never meet half a record; if that fails
            // too, the recovery at the next open cuts the torn tail.
            let _ = active.file.truncate(active.len);
            self.deactivate();
            self.fail();
            return Err(Error::Write { path, source });
        }
        let position = Position {
            segment: active.index,
            offset: active.len,
        };
        let now = now_ms();
        active.len += n;
        active.records += 1;
        active.items += u64::from(items);
        active.last_append_ms = now;
        {
            let mut st = self.shared.lock();
            if let Some(meta) = st.segments.get_mut(&active.index) {
                meta.bytes = active.len;
                meta.items = active.items;
                meta.last_append_ms = now;
            }
            st.total_bytes += n;
            st.end = Position {
                segment: active.index,
                offset: active.len,
            };
            if !self.shared.options.fsync_interval.is_zero() {
                st.dirty = Some(active.file.clone());
            }
            self.shared.bump(&mut st);
        }
        if self.shared.options.fsync_interval.is_zero() {
            sync_file(&self.shared, &*active.file);
        }
        Ok(position)
    }

    /// Seals the active segment, syncs it and closes the log: readers end once they have read
    /// everything.
    pub fn close(mut self) {
        self.seal_active();
        self.log().close();
        Log::stop_syncer(&self.shared);
    }

    /// Appends the trailer to the active segment and syncs it. A failure leaves it unsealed
    /// (the next open seals it); its records stay readable either way.
    fn seal_active(&mut self) {
        let Some(a) = self.active.take() else {
            return;
        };
        let trailer = format::encode_trailer(&Trailer {
            items: a.items,
            first_append_ms: a.first_append_ms,
            last_append_ms: a.last_append_ms,
        });
        let mut st = self.shared.lock();
        let room = self.shared.make_room(&mut st, TRAILER_LEN);
        drop(st);
        let sealed = room && a.file.append(&trailer).is_ok();
        if !sealed {
            let _ = a.file.truncate(a.len);
        }
        sync_file(&self.shared, &*a.file);
        let mut st = self.shared.lock();
        if sealed {
            if let Some(meta) = st.segments.get_mut(&a.index) {
                meta.bytes = a.len + TRAILER_LEN;
            }
            st.total_bytes += TRAILER_LEN;
        }
        if st.active == Some(a.index) {
            st.active = None;
        }
        st.dirty = None;
        self.shared.bump(&mut st);
    }

    /// Creates the next segment with its file header and first record in one write.
    fn start_segment(&mut self, kind: u8, items: u32, payload: &[u8]) -> Result<Position> {
        let (index, path) = {
            let st = self.shared.lock();
            (
                st.next_index,
                format::segment_path(&self.shared.dir, st.next_index),
            )
        };
        if index > u64::from(u32::MAX) {
            return Err(Error::SegmentsExhausted);
        }
        self.buf.clear();
        self.buf.extend_from_slice(&format::file_header(index));
        format::encode_record(&mut self.buf, kind, items, payload);
        let n = self.buf.len() as u64;
        {
            let mut st = self.shared.lock();
            // The new segment takes this index whatever happens, so a half-created file
            // never shares its name with a later one.
            st.next_index = index + 1;
            if !self.shared.make_room(&mut st, n + TRAILER_LEN) {
                return Err(Error::OverCap {
                    len: n,
                    cap: self.shared.options.max_size,
                });
            }
        }
        let fs = self.shared.options.fs.clone();
        let created = fs.create_new(&path).and_then(|file| {
            failpoint::hit("buffer-rotate-created");
            // The new name must survive a power loss as much as its data.
            file.append(&self.buf)
                .and_then(|()| file.sync())
                .and_then(|()| fs.sync_dir(&self.shared.dir))
                .map(|()| file)
        });
        let file = match created {
            Ok(file) => file,
            Err(source) => {
                // Give the number back unless a file with it stays behind, so that readers
                // do not look for a segment that never was.
                if fs.remove(&path).is_ok() || !path.exists() {
                    let mut st = self.shared.lock();
                    if st.next_index == index + 1 {
                        st.next_index = index;
                    }
                }
                return Err(Error::Write { path, source });
            }
        };
        let now = now_ms();
        let mut st = self.shared.lock();
        st.segments.insert(
            index,
            SegmentMeta {
                bytes: n,
                items: u64::from(items),
                first_append_ms: now,
                last_append_ms: now,
            },
        );
        st.total_bytes += n;
        st.active = Some(index);
        st.end = Position {
            segment: index,
            offset: n,
        };
        self.shared.collect(&mut st);
        self.shared.bump(&mut st);
        drop(st);
        self.active = Some(Active {
            index,
            path,
            file,
            len: n,
            records: 1,
            items: u64::from(items),
            first_append_ms: now,
            last_append_ms: now,
        });
        Ok(Position {
            segment: index,
            offset: FILE_HEADER_LEN,
        })
    }

    /// Drops the active segment after a failed write: it stays on disk, unsealed, with its
    /// complete records.
    fn deactivate(&mut self) {
        if let Some(a) = self.active.take() {
            let mut st = self.shared.lock();
            if st.active == Some(a.index) {
                st.active = None;
            }
            st.dirty = None;
            self.shared.bump(&mut st);
        }
    }

    /// Starts or lengthens the back-off.
    fn fail(&mut self) {
        let mut backoff = self.failure.take().map_or_else(
            || Backoff::new(MIN_RETRY_DELAY, MAX_RETRY_DELAY),
            |f| f.backoff,
        );
        let delay = backoff.next_delay(1.0);
        self.failure = Some(Failure {
            retry_at: Instant::now() + delay,
            backoff,
        });
    }
}

fn check_record(kind: u8, payload: &[u8]) -> Result<()> {
    if kind == 0 || kind == format::TRAILER_KIND {
        return Err(Error::ReservedKind(kind));
    }
    if payload.len() > MAX_RECORD_BYTES {
        return Err(Error::RecordTooLarge {
            len: payload.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}
