//! Cursor files: each endpoint's delivery progress ([`Cursors`]) on disk, and the
//! [`CursorStore`] that writes them.
//!
//! One file per endpoint in `<data-dir>/cursors/`, named after the endpoint (characters
//! outside `[A-Za-z0-9._-]` percent-encoded). The file holds two slots of [`SLOT_BYTES`] (more
//! when many shards need it); each update overwrites the older slot in place and syncs the
//! data (`fdatasync`): one page written, no file created, renamed or resized, so the device
//! sees one page per update. A crash or power loss in the middle of an update damages at most
//! the slot being written; its checksum shows it and the other slot (the previous cursors)
//! is used. A file is only created whole (temporary file, sync, rename, directory sync), when
//! an endpoint is new or its slots must grow. Slot layout (little endian; NEVER reorder or
//! remove fields):
//!
//! ```text
//! magic "SCRPLCUR" (8) | version u32 (= 2) | sequence u64 | routed u64 | shards u32
//! | shards x (position u64, skip u32) | crc32c u32 (over everything before it) | zeros
//! ```
//!
//! The slot with the higher sequence among the valid ones holds the cursors. A version-1
//! file (one record, the same fields without the sequence, written by older versions) is
//! still read; the first update rewrites it in this form.
//!
//! Positions are buffer positions packed into a `u64` (`buffer::Position::to_u64`).
//!
//! Invariants of the store:
//! 1. Saved cursors never go back: each shard keeps the highest cursor it was given (a new
//!    shard layout, after a reshard, replaces the old one).
//! 2. `commit` completes once a write that includes its cursors is on disk (or failed:
//!    counted and logged; delivery goes on and a crash would resend a little more). Concurrent
//!    commits share one write (group commit). `offer`ed cursors are written within
//!    [`OFFER_INTERVAL`]. [`CursorStore::durable`] tells what the last successful write
//!    holds, so that shards can tell what no longer needs a commit.
//! 3. After each write the endpoint's hold on the buffer moves to its lowest cursor, so the
//!    segments before it can be deleted.
//! 4. [`FileStore::finish`] completes once the writer task has ended, after a last write of
//!    what was pending: from then on nothing touches the file or the hold, so a removed
//!    endpoint's file can be deleted and its hold released without racing a write.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::metrics::{EndpointWalMetrics, WalMetrics};
use super::source::InFlight;
use crate::buffer::{self, Log, failpoint};
use crate::remote::{CursorStore, Cursors, Position, ShardCursor};
use crate::telemetry::error_chain;

/// Offered (not committed) cursors are written at least this often when they changed.
pub const OFFER_INTERVAL: Duration = Duration::from_secs(1);

/// The size of a slot (one page) unless the shards need more.
pub const SLOT_BYTES: usize = 4096;

const MAGIC: [u8; 8] = *b"SCRPLCUR";
const VERSION_1: u32 = 1;
const VERSION: u32 = 2;
const SUFFIX: &str = ".cursor";

/// Why a cursor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Reading or writing the file failed. Retryable.
    #[error("cannot access cursor file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid cursor file (damaged). Not retryable: the endpoint starts over.
    #[error("cursor file {path} is damaged")]
    Damaged { path: PathBuf },
}

/// The cursor file path of endpoint `name` in `dir`.
pub fn cursor_path(dir: &Path, name: &str) -> PathBuf {
    let mut file = String::with_capacity(name.len() + SUFFIX.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            file.push(b as char);
        } else {
            file.push_str(&format!("%{b:02X}"));
        }
    }
    file.push_str(SUFFIX);
    dir.join(file)
}

/// The endpoint name a cursor file name stands for.
pub fn endpoint_of(file: &str) -> Option<String> {
    let stem = file.strip_suffix(SUFFIX)?;
    let mut out = Vec::with_capacity(stem.len());
    let bytes = stem.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The bytes of one slot holding `c` with sequence `seq` (not padded).
pub fn encode(c: &Cursors, seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(36 + 12 * c.shards.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&c.routed.0.to_le_bytes());
    out.extend_from_slice(&(c.shards.len() as u32).to_le_bytes());
    for s in &c.shards {
        out.extend_from_slice(&s.position.0.to_le_bytes());
        out.extend_from_slice(&s.skip.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The slot size a file holding `shards` shard cursors uses.
fn slot_size(shards: usize) -> usize {
    let needed = 36 + 12 * shards + 4;
    needed.div_ceil(SLOT_BYTES).max(1) * SLOT_BYTES
}

/// One slot's record at the start of `bytes` (zero padding after it is ignored): its sequence
/// and cursors, if it is valid.
fn decode_slot(bytes: &[u8]) -> Option<(u64, Cursors)> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    if bytes.get(..8)? != MAGIC || u32_at(8)? != VERSION {
        return None;
    }
    let seq = u64_at(12)?;
    let routed = Position(u64_at(20)?);
    let n = u32_at(28)? as usize;
    let end = 32usize.checked_add(n.checked_mul(12)?)?;
    let crc = u32_at(end)?;
    if crc32c::crc32c(bytes.get(..end)?) != crc {
        return None;
    }
    let shards = (0..n)
        .map(|i| {
            let at = 32 + 12 * i;
            Some(ShardCursor {
                position: Position(u64_at(at)?),
                skip: u32_at(at + 8)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((seq, Cursors { shards, routed }))
}

/// A version-1 file: one record, no sequence, nothing after it.
fn decode_v1(bytes: &[u8]) -> Option<Cursors> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let u32_at = |at: usize| Some(u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?));
    if body.get(..8)? != MAGIC || u32_at(8)? != VERSION_1 {
        return None;
    }
    let routed = Position(u64_at(12)?);
    let n = u32_at(20)? as usize;
    if body.len() != 24 + 12 * n {
        return None;
    }
    let shards = (0..n)
        .map(|i| {
            let at = 24 + 12 * i;
            Some(ShardCursor {
                position: Position(u64_at(at)?),
                skip: u32_at(at + 8)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Cursors { shards, routed })
}

/// The newest valid cursors in a cursor file's bytes, with their sequence and the file's
/// slot size (`None` for a version-1 file); `None` if no slot is valid.
fn decode_file(bytes: &[u8]) -> Option<(u64, Cursors, Option<usize>)> {
    if let Some(c) = decode_v1(bytes) {
        return Some((0, c, None));
    }
    let slot = bytes.len() / 2;
    if slot == 0 || !slot.is_multiple_of(SLOT_BYTES) {
        return None;
    }
    let a = decode_slot(&bytes[..slot]);
    let b = decode_slot(&bytes[slot..]);
    let (seq, c) = match (a, b) {
        (Some(a), Some(b)) => {
            if a.0 >= b.0 {
                a
            } else {
                b
            }
        }
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => return None,
    };
    Some((seq, c, Some(slot)))
}

/// The cursors in a cursor file's bytes, if they are valid.
pub fn decode(bytes: &[u8]) -> Option<Cursors> {
    decode_file(bytes).map(|(_, c, _)| c)
}

/// Reads every cursor file in `dir`: endpoint name -> cursors (or why not). Removes leftover
/// temporary files.
pub fn load_all(dir: &Path) -> Result<HashMap<String, Result<Cursors, CursorError>>, CursorError> {
    let io = |source| CursorError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(endpoint) = endpoint_of(&name) else {
            continue;
        };
        let cursors = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).ok_or(CursorError::Damaged { path }),
            Err(source) => Err(CursorError::Io { path, source }),
        };
        out.insert(endpoint, cursors);
    }
    Ok(out)
}

/// Writes `cursors` to `path` as a new file (temporary file, sync, rename, directory sync):
/// both slots hold them. With `commit` (a shard waits for this write to record a delivery),
/// the failpoints of [`CursorFile::update`] apply.
pub fn write(path: &Path, cursors: &Cursors, commit: bool) -> Result<(), CursorError> {
    create(path, cursors, 1, commit).map(drop)
}

/// Creates the file whole with `cursors` at sequence `seq` in both slots; returns the open file.
fn create(path: &Path, cursors: &Cursors, seq: u64, commit: bool) -> Result<File, CursorError> {
    let io = |source| CursorError::Io {
        path: path.to_owned(),
        source,
    };
    let slot = slot_size(cursors.shards.len());
    let mut bytes = encode(cursors, seq);
    bytes.resize(slot, 0);
    let copy = bytes.clone();
    bytes.extend_from_slice(&copy);
    if commit {
        failpoint::hit("cursor-commit-before-write");
    }
    let tmp = path.with_extension("cursor.tmp");
    let mut file = File::create(&tmp).map_err(io)?;
    if commit && failpoint::fires("cursor-commit-partial") {
        // Half a file on disk, then the crash.
        let _ = file.write_all(&bytes[..bytes.len() / 2]);
        let _ = file.sync_data();
        failpoint::abort("cursor-commit-partial");
    }
    file.write_all(&bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)
}

/// An endpoint's cursor file, open for updates in place (see the module docs).
pub(super) struct CursorFile {
    path: PathBuf,
    /// `None` until the first update (or after a failed one): it then (re)opens the file.
    file: Option<File>,
    slot: usize,
    /// Sequence of the newest slot written.
    seq: u64,
}

impl CursorFile {
    /// The cursor file at `path`, opened at its first update.
    pub(super) fn new(path: PathBuf) -> Self {
        CursorFile {
            path,
            file: None,
            slot: 0,
            seq: 0,
        }
    }

    /// Overwrites the older slot with `cursors` and syncs it; creates or rewrites the file
    /// whole when it is missing, damaged, of version 1, or its slots are too small. With
    /// `commit` (a shard waits for it), the failpoints `cursor-commit-before-write` (the
    /// crash before anything is written) and `cursor-commit-partial` (half a slot written
    /// and synced, then the crash) apply.
    pub(super) fn update(&mut self, cursors: &Cursors, commit: bool) -> Result<(), CursorError> {
        let result = self.try_update(cursors, commit);
        if result.is_err() {
            // Reopen (and re-read the slots) next time.
            self.file = None;
        }
        result
    }

    fn try_update(&mut self, cursors: &Cursors, commit: bool) -> Result<(), CursorError> {
        let io = |path: &Path, source| CursorError::Io {
            path: path.to_owned(),
            source,
        };
        if self.file.is_none() {
            self.open();
        }
        let needed = slot_size(cursors.shards.len());
        let Some(file) = self.file.as_ref().filter(|_| self.slot >= needed) else {
            let seq = self.seq + 1;
            let file = create(&self.path, cursors, seq, commit)?;
            self.file = Some(file);
            self.slot = needed;
            self.seq = seq;
            return Ok(());
        };
        let seq = self.seq + 1;
        let bytes = encode(cursors, seq);
        // The slot not holding the newest cursors: even sequences in slot 0, odd in slot 1.
        let at = (seq % 2) * self.slot as u64;
        if commit {
            failpoint::hit("cursor-commit-before-write");
            if failpoint::fires("cursor-commit-partial") {
                let _ = file.write_all_at(&bytes[..bytes.len() / 2], at);
                let _ = file.sync_data();
                failpoint::abort("cursor-commit-partial");
            }
        }
        file.write_all_at(&bytes, at)
            .and_then(|()| file.sync_data())
            .map_err(|e| io(&self.path, e))?;
        self.seq = seq;
        Ok(())
    }

    /// Opens the file for updates when it holds valid slots of this version (else the next
    /// update creates it whole).
    fn open(&mut self) {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return;
        };
        let Some((seq, _, Some(slot))) = decode_file(&bytes) else {
            return;
        };
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&self.path) {
            self.file = Some(file);
            self.slot = slot;
            self.seq = seq;
        }
    }
}

/// The [`CursorStore`] of one endpoint.
pub(super) struct FileStore {
    name: String,
    /// Only the writer task uses it (the lock is never contended).
    file: Arc<Mutex<CursorFile>>,
    log: Log,
    state: Mutex<StoreState>,
    /// Wakes the writer task (which holds it without holding the store).
    wake: Arc<Notify>,
    written: watch::Sender<u64>,
    in_flight: InFlight,
    metrics: EndpointWalMetrics,
    wal_metrics: WalMetrics,
    newest_appended: Arc<AtomicI64>,
    /// Set by the writer task when it ends (invariant 4).
    finished: watch::Sender<bool>,
}

/// Covered by `FileStore::state`.
#[derive(Default)]
struct StoreState {
    /// `finish` was called: the writer writes what is pending and ends; commits complete at
    /// once.
    closing: bool,
    latest: Option<Cursors>,
    /// Generation of the latest commit request.
    requested: u64,
    /// Offered cursors not yet written.
    dirty: bool,
    /// Newest sample timestamp delivered (from records the cursors passed).
    delivered_ts: Option<i64>,
    /// What the last successful write holds (invariant 2).
    durable: Option<Cursors>,
}

/// What the store needs at start.
pub(super) struct StoreSetup {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) log: Log,
    pub(super) in_flight: InFlight,
    pub(super) metrics: EndpointWalMetrics,
    pub(super) wal_metrics: WalMetrics,
    pub(super) newest_appended: Arc<AtomicI64>,
    pub(super) start: Cursors,
}

impl FileStore {
    /// Creates the store and starts its writer task (within a Tokio runtime).
    pub(super) fn spawn(setup: StoreSetup) -> Arc<FileStore> {
        let store = Arc::new(FileStore {
            name: setup.name,
            file: Arc::new(Mutex::new(CursorFile::new(setup.path))),
            log: setup.log,
            state: Mutex::new(StoreState {
                latest: Some(setup.start),
                ..StoreState::default()
            }),
            wake: Arc::new(Notify::new()),
            written: watch::Sender::new(0),
            in_flight: setup.in_flight,
            metrics: setup.metrics,
            wal_metrics: setup.wal_metrics,
            newest_appended: setup.newest_appended,
            finished: watch::Sender::new(false),
        });
        let weak = Arc::downgrade(&store);
        let span = tracing::info_span!("buffer_cursor", endpoint = %store.name);
        tokio::spawn(tracing::Instrument::instrument(
            run_writer(weak, store.wake.clone()),
            span,
        ));
        store
    }

    /// Ends the store (invariant 4): completes once its writer has written what was pending
    /// and ended; returns the cursors it holds (the latest committed or offered).
    pub(super) async fn finish(&self) -> Option<Cursors> {
        self.lock().closing = true;
        self.wake.notify_one();
        let mut finished = self.finished.subscribe();
        // The sender lives in `self`: it cannot be dropped while this waits.
        let _ = finished.wait_for(|done| *done).await;
        self.lock().latest.clone()
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        // Single-step edits; a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Merges `c` into the latest cursors (invariant 1).
    fn merge(st: &mut StoreState, c: Cursors) {
        match &mut st.latest {
            Some(latest) if latest.shards.len() == c.shards.len() => {
                for (a, b) in latest.shards.iter_mut().zip(&c.shards) {
                    *a = (*a).max(*b);
                }
                latest.routed = latest.routed.max(c.routed);
            }
            latest => *latest = Some(c),
        }
    }

    /// Writes the latest cursors if a commit or an offer asks for it (or `force`).
    async fn write_latest(self: &Arc<Self>, force: bool) {
        let (cursors, generation, commit) = {
            let mut st = self.lock();
            let commit = st.requested > *self.written.borrow();
            if !(force || st.dirty || commit) {
                let latest = st.latest.clone();
                drop(st);
                // Nothing to write, but ages grow: keep the gauges current.
                if let Some(latest) = latest {
                    self.update_metrics(&latest);
                }
                return;
            }
            st.dirty = false;
            (st.latest.clone(), st.requested, commit)
        };
        let Some(cursors) = cursors else {
            self.written.send_replace(generation);
            return;
        };
        let file = self.file.clone();
        let to_write = cursors.clone();
        let result = tokio::task::spawn_blocking(move || {
            file.lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&to_write, commit)
        })
        .await;
        match result {
            Ok(Ok(())) => {
                let low = buffer::Position::from_u64(cursors.min_position().0);
                self.log.hold(&self.name, low);
                self.lock().durable = Some(cursors.clone());
            }
            Ok(Err(e)) => {
                self.wal_metrics.cursor_write_failures.inc();
                tracing::warn!(error = %error_chain(&e), "cannot save the endpoint's cursors; a restart would send more again");
            }
            Err(e) => {
                self.wal_metrics.cursor_write_failures.inc();
                tracing::warn!(error = %e, "cursor write task failed");
            }
        }
        self.written.send_replace(generation);
        self.update_metrics(&cursors);
    }

    /// Lag gauges from the cursors just written.
    fn update_metrics(&self, cursors: &Cursors) {
        let low = cursors.min_position().0;
        let lag = self.log.bytes_after(buffer::Position::from_u64(low));
        self.metrics
            .lag_bytes
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        let oldest = {
            let mut q = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let mut delivered = None;
            // A record is delivered once every shard cursor is past its start.
            while let Some(&(pos, _, max)) = q.front() {
                if pos >= low {
                    break;
                }
                delivered = Some(max);
                q.pop_front();
            }
            if let Some(max) = delivered {
                let mut st = self.lock();
                st.delivered_ts = st.delivered_ts.max(Some(max));
            }
            q.iter().map(|&(_, min, _)| min).min()
        };
        let now = now_ms();
        let age = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        self.metrics.oldest_unsent.set(age);
        let newest = self.newest_appended.load(Ordering::Relaxed);
        let delivered = self.lock().delivered_ts;
        let lag_s = match delivered {
            Some(d) if newest > d => (newest - d) as f64 / 1000.0,
            _ => 0.0,
        };
        self.metrics.lag_seconds.set(lag_s);
    }
}

impl CursorStore for FileStore {
    fn commit(&self, cursors: Cursors) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let generation = {
            let mut st = self.lock();
            if st.closing {
                // Invariant 4: nothing is written any more.
                return Box::pin(std::future::ready(()));
            }
            Self::merge(&mut st, cursors);
            st.requested += 1;
            st.requested
        };
        self.wake.notify_one();
        let mut rx = self.written.subscribe();
        Box::pin(async move {
            // Err: the writer is gone (shutting down); nothing more will be written.
            let _ = rx.wait_for(|w| *w >= generation).await;
        })
    }

    fn offer(&self, cursors: Cursors) {
        let mut st = self.lock();
        if st.closing {
            return;
        }
        Self::merge(&mut st, cursors);
        st.dirty = true;
    }

    fn durable(&self) -> Option<Cursors> {
        self.lock().durable.clone()
    }
}

/// Writes cursors when a commit asks, and offered ones every [`OFFER_INTERVAL`], until the
/// store is finished or dropped (every commit waited for its own write, so none is pending
/// then).
async fn run_writer(store: Weak<FileStore>, wake: Arc<Notify>) {
    loop {
        let Some(s) = store.upgrade() else {
            return;
        };
        let closing = s.lock().closing;
        s.write_latest(false).await;
        if closing {
            // What was pending when `finish` was called is written (invariant 4).
            s.finished.send_replace(true);
            return;
        }
        drop(s);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(OFFER_INTERVAL) => {}
        }
    }
}

use crate::telemetry::time::unix_ms as now_ms;

/// The in-flight queue type, for the facade.
pub(super) fn new_in_flight() -> InFlight {
    Arc::new(Mutex::new(VecDeque::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_file_names() {
        for name in ["primary", "a/b c", "ünï", "x.y-z_1", ""] {
            let path = cursor_path(Path::new("/d"), name);
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            assert_eq!(
                file.as_deref().and_then(endpoint_of),
                Some(name.to_owned()),
                "{name}"
            );
            assert!(!file.unwrap_or_default().contains('/'));
        }
    }

    #[test]
    fn cursor_files_round_trip_and_reject_damage() {
        let c = Cursors {
            shards: vec![
                ShardCursor {
                    position: Position(1 << 40 | 77),
                    skip: 3,
                },
                ShardCursor::default(),
            ],
            routed: Position(5 << 32),
        };
        let mut bytes = encode(&c, 7);
        bytes.resize(SLOT_BYTES, 0);
        assert_eq!(decode_slot(&bytes), Some((7, c.clone())));
        for i in 0..encode(&c, 7).len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert_eq!(decode_slot(&bad), None, "byte {i}");
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = cursor_path(dir.path(), "e/1");
        write(&path, &c, false).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("x.cursor.tmp"), b"half").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(cursor_path(dir.path(), "bad"), b"junk").unwrap_or_else(|e| panic!("{e}"));
        let all = load_all(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 2);
        assert_eq!(all.get("e/1").and_then(|r| r.as_ref().ok()), Some(&c));
        assert!(matches!(
            all.get("bad"),
            Some(Err(CursorError::Damaged { .. }))
        ));
        assert!(!dir.path().join("x.cursor.tmp").exists());
    }

    fn cursors(n: usize, at: u64) -> Cursors {
        Cursors {
            shards: (0..n)
                .map(|i| ShardCursor {
                    position: Position(at + i as u64),
                    skip: i as u32,
                })
                .collect(),
            routed: Position(at + 100),
        }
    }

    #[test]
    fn updates_overwrite_the_older_slot_in_place_and_a_torn_one_falls_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = cursor_path(dir.path(), "e");
        let mut file = CursorFile::new(path.clone());
        file.update(&cursors(2, 10), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let inode = std::fs::metadata(&path).map(|m| m.ino()).ok();
        for at in 11..20 {
            file.update(&cursors(2, at), false)
                .unwrap_or_else(|e| panic!("{e}"));
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert_eq!(bytes.len(), 2 * SLOT_BYTES, "never resized");
            assert_eq!(decode(&bytes), Some(cursors(2, at)));
        }
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.ino()).ok(),
            inode,
            "never replaced"
        );
        // Tear the newest slot (sequence 10: the first slot): the previous cursors are read.
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        bytes[40] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decode(&bytes), Some(cursors(2, 18)));
        // A new handle continues from what is valid.
        let mut again = CursorFile::new(path.clone());
        again
            .update(&cursors(2, 30), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            decode(&std::fs::read(&path).unwrap_or_default()),
            Some(cursors(2, 30))
        );
    }

    #[test]
    fn version_1_files_are_read_and_rewritten_and_slots_grow_for_many_shards() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = cursor_path(dir.path(), "old");
        // A version-1 file as older versions wrote it.
        let c = cursors(3, 5);
        let mut v1 = Vec::new();
        v1.extend_from_slice(&MAGIC);
        v1.extend_from_slice(&VERSION_1.to_le_bytes());
        v1.extend_from_slice(&c.routed.0.to_le_bytes());
        v1.extend_from_slice(&3u32.to_le_bytes());
        for s in &c.shards {
            v1.extend_from_slice(&s.position.0.to_le_bytes());
            v1.extend_from_slice(&s.skip.to_le_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &v1).unwrap_or_else(|e| panic!("{e}"));
        let all = load_all(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.get("old").and_then(|r| r.as_ref().ok()), Some(&c));
        let mut file = CursorFile::new(path.clone());
        file.update(&cursors(3, 6), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert_eq!(bytes.len(), 2 * SLOT_BYTES);
        assert_eq!(decode(&bytes), Some(cursors(3, 6)));
        // 500 shards need more than a page per slot.
        file.update(&cursors(500, 7), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert_eq!(bytes.len(), 2 * slot_size(500));
        assert!(slot_size(500) > SLOT_BYTES);
        assert_eq!(decode(&bytes), Some(cursors(500, 7)));
        file.update(&cursors(500, 8), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            decode(&std::fs::read(&path).unwrap_or_default()),
            Some(cursors(500, 8))
        );
    }
}
