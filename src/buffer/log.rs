//! The shared state of one buffer directory and the handle to it ([`Log`]): the segment
//! table, the end of the log, consumers' holds, caps and deletion, the background syncer,
//! and recovery at open.
//!
//! Lock: `Shared::state` covers every field of [`State`]. Nothing does I/O that can block for
//! long under it except deleting files (unlink) and the recovery at open (no one else runs
//! yet).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::error::{Error, Result};
use super::format::{self, FILE_HEADER_LEN, FRAME_HEADER_LEN, TRAILER_KIND, TRAILER_LEN, Trailer};
use super::io::{Fs, SegmentFile, StdFs};
use super::reader::Reader;
use super::writer::Writer;
use super::{GapReason, MAX_RECORD_BYTES, Position};

/// How a buffer is kept. See the module docs for what each setting costs.
#[derive(Clone)]
pub struct Options {
    /// The directory holding the segments (created if missing).
    pub dir: PathBuf,
    /// Bytes on disk the segments may take together; the oldest are deleted to stay under it.
    pub max_size: u64,
    /// Segments whose newest record is older than this are deleted; `None`: no age cap.
    pub max_age: Option<Duration>,
    /// A segment is sealed and a new one started when a record would take it past this size.
    pub segment_size: u64,
    /// How often the active segment is synced to disk when written to; zero syncs after every
    /// append.
    pub fsync_interval: Duration,
    /// Told about syncs, deletions and recovery (metrics, logs).
    pub observer: Arc<dyn Observer>,
    /// The filesystem the writer uses.
    pub fs: Arc<dyn Fs>,
}

/// Hooks for metrics and logs. Every method has a no-op default.
pub trait Observer: Send + Sync + 'static {
    /// The active segment was synced to disk; it took `took`.
    fn synced(&self, _took: Duration) {}
    /// A sync failed (the data stays in the page cache; the next sync tries again).
    fn sync_failed(&self, _error: &Error) {}
    /// Segment `index` holding `items` items was deleted before every consumer had read it.
    fn dropped(&self, _index: u64, _items: u64, _reason: GapReason) {}
}

/// A handle to an open buffer. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Log {
    pub(super) shared: Arc<Shared>,
}

/// What [`Log::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// Segments a crashed writer had left unsealed, sealed now.
    pub sealed: usize,
    /// Bytes cut from the ends of unsealed segments (a torn or damaged tail).
    pub torn_bytes: u64,
    /// Files removed: leftover temporary files, and segments whose file header is unreadable.
    pub removed: usize,
    /// Bytes of the segments removed for an unreadable header.
    pub removed_bytes: u64,
}

/// Sizes for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of all segments on disk.
    pub bytes: u64,
    /// Segments on disk, the active one included.
    pub segments: usize,
    /// Where the next record will be written.
    pub end: Position,
}

pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<State>,
    /// Signalled on every change a reader may wait for (`State::version` moves).
    pub(super) changed: Condvar,
    pub(super) options: Options,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

/// Covered by `Shared::state`.
#[derive(Default)]
pub(super) struct State {
    pub(super) segments: BTreeMap<u64, SegmentMeta>,
    /// The segment being written, if any (none before the first rotation and after a write
    /// failure until the next).
    pub(super) active: Option<u64>,
    /// Position after the last complete record (where the next one goes).
    pub(super) end: Position,
    /// The next segment index to create.
    pub(super) next_index: u64,
    pub(super) closed: bool,
    /// Bumped on every change readers may wait for.
    pub(super) version: u64,
    /// Per consumer, the first position it still needs.
    holds: HashMap<String, Position>,
    /// Segments deleted before every consumer had read them: items and reason, for readers
    /// that find them gone. Pruned to the newest [`DROPPED_MEMORY`] entries.
    pub(super) dropped: BTreeMap<u64, (u64, GapReason)>,
    pub(super) total_bytes: u64,
    /// The active segment's file, dirty since the last sync (the syncer takes it).
    pub(super) dirty: Option<Arc<dyn SegmentFile>>,
}

/// What is known of one segment.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SegmentMeta {
    /// Bytes of the file (for the active segment: of its complete records).
    pub(super) bytes: u64,
    pub(super) items: u64,
    pub(super) first_append_ms: i64,
    pub(super) last_append_ms: i64,
}

/// How many deleted segments' item counts are remembered for readers that find them gone.
const DROPPED_MEMORY: usize = 4096;

impl Options {
    /// Defaults for `dir`: 1 GiB cap, no age cap, 64 MiB segments, sync every second.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Options {
            dir: dir.into(),
            max_size: 1 << 30,
            max_age: None,
            segment_size: super::MAX_SEGMENT_BYTES,
            fsync_interval: Duration::from_secs(1),
            observer: Arc::new(NoObserver),
            fs: Arc::new(StdFs),
        }
    }

    /// The segment size that suits a cap of `max_size`: an eighth of it, so that deleting
    /// the oldest segment frees at most an eighth, within the module's bounds.
    pub fn segment_size_for(max_size: u64) -> u64 {
        (max_size / 8).clamp(super::MIN_SEGMENT_BYTES, super::MAX_SEGMENT_BYTES)
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("dir", &self.dir)
            .field("max_size", &self.max_size)
            .field("max_age", &self.max_age)
            .field("segment_size", &self.segment_size)
            .field("fsync_interval", &self.fsync_interval)
            .finish_non_exhaustive()
    }
}

struct NoObserver;
impl Observer for NoObserver {}

impl Log {
    /// Opens (creating if needed) the buffer in `options.dir`: removes leftovers, seals
    /// segments a crashed writer left unsealed (cutting a torn tail), and starts the syncer.
    /// The writer has no active segment until its first [`Writer::rotate`]: a new process
    /// always starts a new segment.
    pub fn open(options: Options) -> Result<(Log, Writer, Recovery)> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Directory {
            path: dir.clone(),
            source,
        })?;
        let mut state = State::default();
        let recovery = recover(&options, &mut state)?;
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(state),
            changed: Condvar::new(),
            options,
            syncer: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let interval = shared.options.fsync_interval;
        let syncer = std::thread::Builder::new()
            .name("buffer-sync".into())
            .spawn(move || run_syncer(weak, interval))
            .map_err(|source| Error::Directory {
                path: shared.dir.clone(),
                source,
            })?;
        *shared.syncer.lock().unwrap_or_else(|e| e.into_inner()) = Some(syncer);
        let writer = Writer::new(shared.clone());
        Ok((Log { shared }, writer, recovery))
    }

    /// A reader starting at the beginning of the segment holding `from` (so a decoder can
    /// rebuild its state); records before `from` come marked as such. When that segment is
    /// gone, it starts at the oldest one and reports the gap.
    pub fn reader(&self, from: Position) -> Reader {
        Reader::new(self.shared.clone(), from)
    }

    /// The buffer's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Where the next record will be written.
    pub fn end(&self) -> Position {
        self.shared.lock().end
    }

    /// Sizes on disk and the end.
    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        Stats {
            bytes: st.total_bytes,
            segments: st.segments.len(),
            end: st.end,
        }
    }

    /// Bytes written after `from` (what a consumer at `from` has still to read).
    pub fn bytes_after(&self, from: Position) -> u64 {
        let st = self.shared.lock();
        st.segments
            .range(from.segment..)
            .map(|(&i, m)| {
                if i == from.segment {
                    m.bytes.saturating_sub(from.offset)
                } else {
                    m.bytes
                }
            })
            .sum()
    }

    /// Records that consumer `name` still needs everything from `at` on: segments before it
    /// are kept (unless a cap deletes them). Segments no consumer needs are deleted now.
    pub fn hold(&self, name: &str, at: Position) {
        let mut st = self.shared.lock();
        st.holds.insert(name.to_owned(), at);
        self.shared.collect(&mut st);
    }

    /// Forgets consumer `name` (it was removed) and deletes what no one needs any more.
    pub fn release(&self, name: &str) {
        let mut st = self.shared.lock();
        st.holds.remove(name);
        self.shared.collect(&mut st);
    }

    /// Ends the log for readers: once they have read everything, they see
    /// [`Event::Closed`](super::Event::Closed). Appends fail from now on.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.bump(&mut st);
    }

    /// Wakes every reader waiting for data (they re-check; used when their consumer stops).
    pub fn wake_readers(&self) {
        let mut st = self.shared.lock();
        self.shared.bump(&mut st);
    }

    /// Deletes segments older than the age cap now (the syncer also does it every interval).
    pub fn enforce_age(&self) {
        self.shared.enforce_age(now_ms());
    }

    /// Stops the syncer and syncs what is dirty. Called by [`Writer::close`]; safe to call
    /// more than once.
    pub(super) fn stop_syncer(shared: &Shared) {
        let handle = shared
            .syncer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Edits under this lock keep the state consistent at every step (no panicking paths
        // between paired updates), so a poisoned lock still guards a valid state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change readers may be waiting for.
    pub(super) fn bump(&self, st: &mut State) {
        st.version = st.version.wrapping_add(1);
        self.changed.notify_all();
    }

    /// Deletes segments no consumer holds (never the active one).
    pub(super) fn collect(&self, st: &mut State) {
        let needed = st
            .holds
            .values()
            .map(|p| p.segment)
            .min()
            .unwrap_or(u64::MAX);
        let doomed: Vec<u64> = st
            .segments
            .range(..needed)
            .map(|(&i, _)| i)
            .filter(|&i| Some(i) != st.active)
            .collect();
        for index in doomed {
            self.delete(st, index, None);
        }
    }

    /// Deletes the oldest non-active segments until `incoming` more bytes fit under the cap.
    /// Returns whether they fit.
    pub(super) fn make_room(&self, st: &mut State, incoming: u64) -> bool {
        let cap = self.options.max_size;
        while st.total_bytes + incoming > cap {
            let oldest = st.segments.keys().copied().find(|&i| Some(i) != st.active);
            match oldest {
                Some(i) => self.delete(st, i, Some(GapReason::Cap)),
                None => return false,
            }
        }
        true
    }

    /// Deletes segments (not the active one) whose newest record is older than the age cap.
    pub(super) fn enforce_age(&self, now_ms: i64) {
        let Some(max_age) = self.options.max_age else {
            return;
        };
        let oldest_allowed =
            now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let mut st = self.lock();
        let doomed: Vec<u64> = st
            .segments
            .iter()
            .filter(|(i, m)| Some(**i) != st.active && m.last_append_ms < oldest_allowed)
            .map(|(&i, _)| i)
            .collect();
        for index in doomed {
            self.delete(&mut st, index, Some(GapReason::Age));
        }
    }

    /// Removes segment `index`; with a reason, it was deleted before consumers read it all.
    fn delete(&self, st: &mut State, index: u64, reason: Option<GapReason>) {
        let Some(meta) = st.segments.remove(&index) else {
            return;
        };
        st.total_bytes = st.total_bytes.saturating_sub(meta.bytes);
        let path = format::segment_path(&self.dir, index);
        if let Err(e) = self.options.fs.remove(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            // The file stays, unaccounted; the next open finds it again. Nothing else to do.
            tracing::warn!(path = %path.display(), error = %e, "cannot delete buffer segment");
        }
        if let Some(reason) = reason {
            // Only consumers that had not passed it lose anything; whether any had not is
            // for each reader to find out (it reports a gap when it gets there).
            let held = st.holds.values().any(|p| p.segment <= index);
            if held {
                self.options.observer.dropped(index, meta.items, reason);
            }
            st.dropped.insert(index, (meta.items, reason));
            while st.dropped.len() > DROPPED_MEMORY {
                st.dropped.pop_first();
            }
        }
        self.bump(st);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The syncer holds only a weak handle: wake it so that it sees the log is gone.
        let handle = self
            .syncer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            h.thread().unpark();
        }
    }
}

pub(super) use crate::telemetry::time::unix_ms as now_ms;

/// Syncs the active segment when dirty and applies the age cap, every `interval`, until the
/// log is gone or the syncer is stopped (unparked after the writer closed).
fn run_syncer(shared: Weak<Shared>, interval: Duration) {
    let tick = if interval.is_zero() {
        Duration::from_secs(1)
    } else {
        interval
    };
    loop {
        std::thread::park_timeout(tick);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (dirty, closed) = {
            let mut st = shared.lock();
            (st.dirty.take(), st.closed)
        };
        if let Some(file) = dirty {
            sync_file(&shared, &*file);
        }
        shared.enforce_age(now_ms());
        if closed {
            return;
        }
    }
}

/// Syncs one file, telling the observer how it went.
pub(super) fn sync_file(shared: &Shared, file: &dyn SegmentFile) {
    let began = Instant::now();
    match file.sync() {
        Ok(()) => shared.options.observer.synced(began.elapsed()),
        Err(source) => shared.options.observer.sync_failed(&Error::Write {
            path: shared.dir.clone(),
            source,
        }),
    }
}

/// Lists the directory, removes leftovers, reads every segment's trailer, and seals the
/// unsealed ones (invariant: after open, every segment on disk is sealed).
fn recover(options: &Options, st: &mut State) -> Result<Recovery> {
    let dir = &options.dir;
    let listing = std::fs::read_dir(dir).map_err(|source| Error::Directory {
        path: dir.clone(),
        source,
    })?;
    let mut recovery = Recovery::default();
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| Error::Directory {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(index) = format::parse_segment_name(&name) {
            found.push(index);
        } else if name.ends_with(".tmp") {
            let _ = options.fs.remove(&entry.path());
            recovery.removed += 1;
        }
    }
    found.sort_unstable();
    for index in found {
        let path = format::segment_path(dir, index);
        match inspect(&path, index)? {
            Inspected::Sealed(meta) => {
                st.segments.insert(index, meta);
            }
            Inspected::Unsealed {
                meta,
                valid_len,
                file_len,
            } => {
                let meta = seal(options, &path, meta, valid_len)?;
                recovery.sealed += 1;
                recovery.torn_bytes += file_len - valid_len;
                st.segments.insert(index, meta);
            }
            Inspected::Unreadable { file_len } => {
                tracing::warn!(path = %path.display(), bytes = file_len, "buffer segment has no valid header; removed");
                let _ = options.fs.remove(&path);
                recovery.removed += 1;
                recovery.removed_bytes += file_len;
            }
        }
        st.next_index = index + 1;
    }
    recovery.segments = st.segments.len();
    st.total_bytes = st.segments.values().map(|m| m.bytes).sum();
    st.end = Position {
        segment: st.next_index,
        offset: 0,
    };
    Ok(recovery)
}

enum Inspected {
    Sealed(SegmentMeta),
    Unsealed {
        meta: SegmentMeta,
        valid_len: u64,
        file_len: u64,
    },
    Unreadable {
        file_len: u64,
    },
}

/// Reads a segment's header and trailer; for an unsealed one, scans its records to find the
/// valid prefix and count its items.
fn inspect(path: &Path, index: u64) -> Result<Inspected> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    if file_len < FILE_HEADER_LEN
        || file.read_exact(&mut header).is_err()
        || format::parse_file_header(&header) != Some(index)
    {
        return Ok(Inspected::Unreadable { file_len });
    }
    if file_len >= FILE_HEADER_LEN + TRAILER_LEN {
        let mut tail = [0u8; TRAILER_LEN as usize];
        file.seek(SeekFrom::Start(file_len - TRAILER_LEN))
            .map_err(read_err)?;
        file.read_exact(&mut tail).map_err(read_err)?;
        if let Some(t) = format::parse_trailer(&tail) {
            return Ok(Inspected::Sealed(SegmentMeta {
                bytes: file_len,
                items: t.items,
                first_append_ms: t.first_append_ms,
                last_append_ms: t.last_append_ms,
            }));
        }
    }
    file.seek(SeekFrom::Start(FILE_HEADER_LEN))
        .map_err(read_err)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut offset = FILE_HEADER_LEN;
    let mut items = 0u64;
    let mut head = [0u8; FRAME_HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        if reader.read_exact(&mut head).is_err() {
            break;
        }
        let Ok(h) = format::parse_frame_header(&head, MAX_RECORD_BYTES) else {
            break;
        };
        if h.kind == TRAILER_KIND
            || offset + (FRAME_HEADER_LEN as u64) + u64::from(h.len) > file_len
        {
            break;
        }
        payload.resize(h.len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || format::check_payload(&h, &payload).is_err()
        {
            break;
        }
        offset += (FRAME_HEADER_LEN + payload.len()) as u64;
        items += u64::from(h.items);
    }
    // An unsealed segment's times are unknown; its file's modification time is the best
    // guess for the last append (the age cap uses it).
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(Inspected::Unsealed {
        meta: SegmentMeta {
            bytes: offset,
            items,
            first_append_ms: modified,
            last_append_ms: modified,
        },
        valid_len: offset,
        file_len,
    })
}

/// Cuts an unsealed segment to its valid prefix and appends a trailer.
fn seal(options: &Options, path: &Path, meta: SegmentMeta, valid_len: u64) -> Result<SegmentMeta> {
    let write_err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let file = options.fs.open_append(path).map_err(write_err)?;
    file.truncate(valid_len).map_err(write_err)?;
    let trailer = format::encode_trailer(&Trailer {
        items: meta.items,
        first_append_ms: meta.first_append_ms,
        last_append_ms: meta.last_append_ms,
    });
    file.append(&trailer).map_err(write_err)?;
    file.sync().map_err(write_err)?;
    Ok(SegmentMeta {
        bytes: valid_len + TRAILER_LEN,
        ..meta
    })
}
