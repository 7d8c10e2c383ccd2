//! The writer side: scrape batches into the buffer, on a thread of its own.
//!
//! ```text
//! scrape loops -> WalAppender::append -> bounded queue -> writer thread: encode, write(2),
//!                 (never blocks)                          rotate, push to the tail
//! ```
//!
//! Invariants:
//! 1. `append` never blocks on the disk or the network and never fails: it queues the batch
//!    for the writer thread and returns. When the queue already holds [`QUEUE_SAMPLES`]
//!    samples (the disk is slow or stalled), the batch's samples are dropped and counted
//!    (`samples_dropped_total{reason="stalled"}`), and its definitions and gone refs are
//!    queued all the same, merged with the ones before (a series defined and gone among them
//!    cancels out), so later batches still find their series and memory stays bounded by the
//!    live series. A batch that cannot be written is counted (`reason="write_error"` or
//!    `"too_large"`). Each is logged once per change of state (failing, recovered), never per
//!    batch.
//! 2. The live series map follows every batch, written or not, so the snapshot opening the
//!    next segment defines every series a later batch may use.
//! 3. The encoder's state matches what readers decode: after any record that was not written
//!    in full, the next batch starts a new segment (whose snapshot resets both sides).
//! 4. Every batch written is pushed to the tail (`tail`) after its record, in log order; the
//!    definitions and gone refs of batches that could not be written are pushed (without
//!    samples) at the position of the snapshot that next defines the live series on disk, so
//!    that a reader of the tail learns what a reader of the log learns from that snapshot.
//! 5. Batches are written in the order they were queued (per scrape loop: the order it made
//!    them).
//!
//! Locks: `Queue::state` (appends and the writer thread taking batches; nothing else is done
//! under it). The writer state (`LogWriter`) belongs to the writer thread alone.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::codec::{Encoder, KIND_BATCH, KIND_SNAPSHOT};
use super::metrics::WalMetrics;
use super::tail::Tail;
use crate::append::{Appender, Batch, SeriesRef};
use crate::buffer::{self, GapReason, Log, Writer};
use crate::telemetry::error_chain;

/// Samples queued for the writer thread at most (about 24 bytes each, in batches the scrape
/// loops made anyway): some seconds of a busy node's scrapes.
pub const QUEUE_SAMPLES: usize = 1 << 18;

/// The [`Appender`] scrape loops write to.
pub(super) struct WalAppender {
    queue: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    log: Log,
    pub(super) tail: Arc<Tail>,
    metrics: WalMetrics,
    /// Newest sample timestamp written, ms (for lag).
    pub(super) newest_ts: Arc<AtomicI64>,
}

/// Batches on their way to the writer thread (invariant 1).
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the writer thread (a batch, or the close) and flushers (the queue emptied).
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    batches: VecDeque<Batch>,
    /// Samples in `batches`.
    samples: usize,
    /// The last batch queued holds only definitions and gone refs (a merge target).
    last_is_definitions: bool,
    /// The writer thread is handling a batch it took.
    busy: bool,
    /// Samples are being dropped for want of room (logged once per episode).
    stalled: bool,
    closed: bool,
}

/// The writer thread's state.
struct LogWriter {
    writer: Option<Writer>,
    /// Also the table of live series (labels), which snapshots are written from.
    encoder: Encoder,
    record: Vec<u8>,
    snapshot: Vec<u8>,
    /// Invariant 3.
    must_rotate: bool,
    /// Definitions and gone refs of batches not written since the last record (invariant 4).
    unpublished: Batch,
    /// Writes are failing (logged once when this turns on, once when off).
    failing: bool,
    log: Log,
    tail: Arc<Tail>,
    metrics: WalMetrics,
    newest_ts: Arc<AtomicI64>,
}

/// Feeds buffer events to metrics and logs.
pub(super) struct Observer {
    pub(super) metrics: WalMetrics,
    sync_failing: AtomicBool,
}

impl WalAppender {
    /// Starts this process's first segment (an empty snapshot) with `writer`, then the writer
    /// thread; returns the appender and that segment's position.
    pub(super) fn start(
        writer: Writer,
        log: Log,
        metrics: WalMetrics,
    ) -> Result<(Self, buffer::Position), buffer::Error> {
        let tail = Arc::new(Tail::default());
        let newest_ts = Arc::new(AtomicI64::new(i64::MIN));
        let mut w = LogWriter {
            writer: Some(writer),
            encoder: Encoder::default(),
            record: Vec::new(),
            snapshot: Vec::new(),
            must_rotate: false,
            unpublished: Batch::default(),
            failing: false,
            log: log.clone(),
            tail: tail.clone(),
            metrics: metrics.clone(),
            newest_ts: newest_ts.clone(),
        };
        let first = w.start()?;
        let queue = Arc::new(Queue::default());
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("buffer-writer".into())
            .spawn(move || w.run(&q))
            .map_err(|source| buffer::Error::Directory {
                path: log.dir().to_owned(),
                source,
            })?;
        let appender = WalAppender {
            queue,
            thread: Mutex::new(Some(thread)),
            log,
            tail,
            metrics,
            newest_ts,
        };
        appender.update_sizes();
        Ok((appender, first))
    }

    /// Writes what is queued, then seals the buffer: nothing more is appended; readers end
    /// after reading everything. Waits for the writer thread.
    pub(super) fn close(&self) {
        self.queue.lock().closed = true;
        self.queue.changed.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("the buffer writer thread panicked");
        }
        self.tail.close();
        self.update_sizes();
    }

    fn update_sizes(&self) {
        update_sizes(&self.log, &self.metrics);
    }
}

impl Drop for WalAppender {
    fn drop(&mut self) {
        self.close();
    }
}

fn update_sizes(log: &Log, metrics: &WalMetrics) {
    let stats = log.stats();
    metrics
        .bytes
        .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
    metrics
        .segments
        .set(i64::try_from(stats.segments).unwrap_or(i64::MAX));
}

impl Appender for WalAppender {
    fn append(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let n = batch.samples.len();
        let mut q = self.queue.lock();
        if q.closed {
            drop(q);
            self.metrics.dropped_write_error.inc_by(n as u64);
            return;
        }
        if q.samples + n > QUEUE_SAMPLES && !q.batches.is_empty() {
            // Invariant 1: the disk is not keeping up.
            let first = !q.stalled;
            q.stalled = true;
            let definitions = Batch {
                series: batch.series,
                samples: Vec::new(),
                gone: batch.gone,
            };
            let merge = q.last_is_definitions;
            match q.batches.back_mut().filter(|_| merge) {
                Some(last) => merge_definitions(last, definitions),
                None if definitions.is_empty() => {}
                None => {
                    q.batches.push_back(definitions);
                    q.last_is_definitions = true;
                }
            }
            drop(q);
            self.metrics.dropped_stalled.inc_by(n as u64);
            if first {
                tracing::error!(
                    samples = n,
                    queued = QUEUE_SAMPLES,
                    "the buffer's disk is not keeping up; scraped samples are dropped until it does"
                );
            }
            return;
        }
        if q.stalled {
            q.stalled = false;
            tracing::info!("the buffer's disk keeps up again");
        }
        q.samples += n;
        q.batches.push_back(batch);
        q.last_is_definitions = false;
        drop(q);
        self.queue.changed.notify_all();
    }

    fn flush(&self) {
        let mut q = self.queue.lock();
        while !q.batches.is_empty() || q.busy {
            q = self
                .queue
                .changed
                .wait(q)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every edit completes without a panicking step in between.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next batch for the writer thread, waiting for one; `None` once closed and empty.
    fn take(&self) -> Option<Batch> {
        let mut q = self.lock();
        q.busy = false;
        loop {
            if let Some(batch) = q.batches.pop_front() {
                q.samples -= batch.samples.len();
                q.last_is_definitions &= !q.batches.is_empty();
                q.busy = true;
                return Some(batch);
            }
            // Flushers wait for an empty, idle queue.
            self.changed.notify_all();
            if q.closed {
                return None;
            }
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Adds `batch`'s definitions and gone refs to `into` (both definitions only): a series
/// `batch` ends that `into` defines is left out of both (no reader ever heard of it).
fn merge_definitions(into: &mut Batch, batch: Batch) {
    into.series.extend(batch.series);
    if batch.gone.is_empty() {
        return;
    }
    let gone: HashSet<SeriesRef> = batch.gone.iter().copied().collect();
    let mut unannounced = HashSet::new();
    into.series.retain(|(r, _)| {
        let keep = !gone.contains(r);
        if !keep {
            unannounced.insert(*r);
        }
        keep
    });
    into.gone
        .extend(batch.gone.into_iter().filter(|r| !unannounced.contains(r)));
}

impl LogWriter {
    /// Starts this process's first segment (an empty snapshot).
    fn start(&mut self) -> Result<buffer::Position, buffer::Error> {
        let Some(w) = self.writer.as_mut() else {
            return Err(buffer::Error::Closed);
        };
        self.encoder.reset();
        self.encoder.snapshot(&mut self.snapshot);
        w.rotate(KIND_SNAPSHOT, 0, &self.snapshot)
    }

    /// The writer thread: writes queued batches in order until the queue is closed and
    /// empty, then seals the buffer.
    fn run(mut self, queue: &Queue) {
        while let Some(batch) = queue.take() {
            self.append(batch);
        }
        if let Some(w) = self.writer.take() {
            w.close();
        }
        update_sizes(&self.log, &self.metrics);
    }

    fn append(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let n = batch.samples.len() as u64;
        let newest = batch.samples.iter().map(|s| s.timestamp_ms).max();
        let result = self.write(&batch);
        // Invariant 2: the table follows every batch, written or not.
        self.encoder.finish(&batch);
        match result {
            Ok(written) => {
                if let Some((position, end)) = written.definitions {
                    let defs = std::mem::take(&mut self.unpublished);
                    self.tail.push(position, end, Arc::new(defs));
                }
                self.tail
                    .push(written.position, written.end, Arc::new(batch));
                if self.failing {
                    self.failing = false;
                    tracing::info!("buffer writes recovered");
                }
                self.metrics.samples_written.inc_by(n);
                self.metrics.bytes_written.inc_by(written.bytes);
                if let Some(max) = newest {
                    self.newest_ts.fetch_max(max, Ordering::Relaxed);
                }
            }
            Err(e) => {
                self.must_rotate = true;
                merge_definitions(
                    &mut self.unpublished,
                    Batch {
                        samples: Vec::new(),
                        ..batch
                    },
                );
                let first = !self.failing;
                self.failing = true;
                let too_large = matches!(
                    e,
                    buffer::Error::RecordTooLarge { .. } | buffer::Error::OverCap { .. }
                );
                let counter = if too_large {
                    &self.metrics.dropped_too_large
                } else {
                    &self.metrics.dropped_write_error
                };
                counter.inc_by(n);
                if too_large {
                    tracing::error!(samples = n, error = %error_chain(&e), "batch too large for the buffer; samples dropped");
                } else if first {
                    tracing::error!(samples = n, error = %error_chain(&e), "cannot write to the buffer; scraped samples are dropped until it recovers");
                }
            }
        }
        update_sizes(&self.log, &self.metrics);
    }
}

/// Where a batch went.
struct Written {
    /// Its record and the position after it.
    position: buffer::Position,
    end: buffer::Position,
    /// The snapshot written before it (a rotation after failed writes) and the position
    /// after it: where the definitions of unwritten batches go in the tail (invariant 4).
    definitions: Option<(buffer::Position, buffer::Position)>,
    bytes: u64,
}

impl LogWriter {
    /// Writes one batch (rotating when needed).
    fn write(&mut self, batch: &Batch) -> Result<Written, buffer::Error> {
        let log = &self.log;
        let Some(writer) = self.writer.as_mut() else {
            return Err(buffer::Error::Closed);
        };
        let items =
            u32::try_from(batch.samples.len()).map_err(|_| buffer::Error::RecordTooLarge {
                len: usize::MAX,
                max: buffer::MAX_RECORD_BYTES,
            })?;
        if !self.must_rotate {
            self.encoder.batch(batch, &mut self.record);
            if writer.fits(self.record.len()) {
                match writer.append(KIND_BATCH, items, &self.record) {
                    Ok(position) => {
                        return Ok(Written {
                            position,
                            end: log.end(),
                            definitions: None,
                            bytes: self.record.len() as u64,
                        });
                    }
                    Err(buffer::Error::OverCap { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if writer.is_backing_off(Instant::now()) {
            return Err(buffer::Error::BackingOff);
        }
        self.encoder.reset();
        self.encoder.snapshot(&mut self.snapshot);
        let snapshot = writer.rotate(KIND_SNAPSHOT, 0, &self.snapshot)?;
        self.must_rotate = true;
        self.encoder.batch(batch, &mut self.record);
        let position = writer.append(KIND_BATCH, items, &self.record)?;
        self.must_rotate = false;
        let unpublished = !self.unpublished.is_empty();
        Ok(Written {
            position,
            end: log.end(),
            definitions: unpublished.then_some((snapshot, position)),
            bytes: (self.snapshot.len() + self.record.len()) as u64,
        })
    }
}

impl Observer {
    pub(super) fn new(metrics: WalMetrics) -> Self {
        Observer {
            metrics,
            sync_failing: AtomicBool::new(false),
        }
    }
}

impl buffer::Observer for Observer {
    fn synced(&self, took: Duration) {
        self.metrics.fsync_duration.observe(took.as_secs_f64());
        if self.sync_failing.swap(false, Ordering::Relaxed) {
            tracing::info!("buffer syncs recovered");
        }
    }

    fn sync_failed(&self, error: &buffer::Error) {
        self.metrics.fsync_failures.inc();
        if !self.sync_failing.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %error_chain(error), "cannot sync the buffer to disk; a power loss could lose recent samples");
        }
    }

    fn dropped(&self, index: u64, items: u64, reason: GapReason) {
        tracing::warn!(
            segment = index,
            samples = items,
            reason = reason.as_str(),
            "buffer segment deleted before every endpoint read it"
        );
    }
}
