//! The writer side: scrape batches into the buffer.
//!
//! Invariants:
//! 1. `append` never blocks on the network and never fails: a batch that cannot be written is
//!    counted (`samples_dropped_total{reason}`) and logged once per change of state (failing,
//!    recovered), never per batch.
//! 2. The live series map follows every batch, written or not, so the snapshot opening the
//!    next segment defines every series a later batch may use.
//! 3. The encoder's state matches what readers decode: after any record that was not written
//!    in full, the next batch starts a new segment (whose snapshot resets both sides).
//! 4. Every batch written is pushed to the tail (`tail`) after its record, in log order; the
//!    definitions and gone refs of batches that could not be written are pushed (without
//!    samples) at the position of the snapshot that next defines the live series on disk, so
//!    that a reader of the tail learns what a reader of the log learns from that snapshot.
//!
//! Lock: `WalAppender::inner` covers the writer, the encoder and the series map; appends are
//! serialised by it (one write(2) each, from the page cache's point of view).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::codec::{Encoder, KIND_BATCH, KIND_SNAPSHOT};
use super::metrics::WalMetrics;
use super::tail::Tail;
use crate::append::{Appender, Batch, SeriesRef};
use crate::buffer::{self, GapReason, Log, Writer};
use crate::labels::Labels;
use crate::telemetry::error_chain;

/// The [`Appender`] scrape loops write to.
pub(super) struct WalAppender {
    inner: Mutex<Inner>,
    log: Log,
    pub(super) tail: Arc<Tail>,
    metrics: WalMetrics,
    /// Newest sample timestamp written, ms (for lag).
    pub(super) newest_ts: Arc<AtomicI64>,
}

struct Inner {
    writer: Option<Writer>,
    encoder: Encoder,
    /// Live series by ref, sorted (snapshots list them in order).
    series: BTreeMap<u64, Labels>,
    record: Vec<u8>,
    snapshot: Vec<u8>,
    /// Invariant 3.
    must_rotate: bool,
    /// Definitions and gone refs of batches not written since the last record (invariant 4).
    unpublished: Batch,
    /// Writes are failing (logged once when this turns on, once when off).
    failing: bool,
}

/// Feeds buffer events to metrics and logs.
pub(super) struct Observer {
    pub(super) metrics: WalMetrics,
    sync_failing: AtomicBool,
}

impl WalAppender {
    /// An appender writing with `writer`, whose log already has this process's first segment.
    pub(super) fn new(writer: Writer, log: Log, metrics: WalMetrics) -> Self {
        let appender = WalAppender {
            inner: Mutex::new(Inner {
                writer: Some(writer),
                encoder: Encoder::default(),
                series: BTreeMap::new(),
                record: Vec::new(),
                snapshot: Vec::new(),
                must_rotate: false,
                unpublished: Batch::default(),
                failing: false,
            }),
            log,
            tail: Arc::new(Tail::default()),
            metrics,
            newest_ts: Arc::new(AtomicI64::new(i64::MIN)),
        };
        appender.update_sizes();
        appender
    }

    /// Starts this process's first segment (an empty snapshot).
    pub(super) fn start(&self) -> Result<buffer::Position, buffer::Error> {
        let mut inner = self.lock();
        let Inner {
            writer,
            encoder,
            snapshot,
            ..
        } = &mut *inner;
        let Some(w) = writer.as_mut() else {
            return Err(buffer::Error::Closed);
        };
        encoder.reset();
        encoder.snapshot(std::iter::empty(), snapshot);
        let p = w.rotate(KIND_SNAPSHOT, 0, snapshot)?;
        drop(inner);
        self.update_sizes();
        Ok(p)
    }

    /// Seals the buffer: nothing more is appended; readers end after reading everything.
    pub(super) fn close(&self) {
        let writer = self.lock().writer.take();
        if let Some(w) = writer {
            w.close();
        }
        self.tail.close();
        self.update_sizes();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every edit under this lock leaves it consistent (the map and the encoder are only
        // changed by steps that cannot panic halfway), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_sizes(&self) {
        let stats = self.log.stats();
        self.metrics
            .bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        self.metrics
            .segments
            .set(i64::try_from(stats.segments).unwrap_or(i64::MAX));
    }
}

impl Appender for WalAppender {
    fn append(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let n = batch.samples.len() as u64;
        let newest = batch.samples.iter().map(|s| s.timestamp_ms).max();
        let mut inner = self.lock();
        let result = inner.write(&batch, &self.log);
        for (r, labels) in &batch.series {
            inner.series.insert(r.0, labels.clone());
        }
        for r in &batch.gone {
            inner.series.remove(&r.0);
        }
        match result {
            Ok(written) => {
                if let Some((position, end)) = written.definitions {
                    let defs = std::mem::take(&mut inner.unpublished);
                    self.tail.push(position, end, Arc::new(defs));
                }
                self.tail
                    .push(written.position, written.end, Arc::new(batch));
                if inner.failing {
                    inner.failing = false;
                    tracing::info!("buffer writes recovered");
                }
                drop(inner);
                self.metrics.samples_written.inc_by(n);
                self.metrics.bytes_written.inc_by(written.bytes);
                if let Some(max) = newest {
                    self.newest_ts.fetch_max(max, Ordering::Relaxed);
                }
            }
            Err(e) => {
                inner.must_rotate = true;
                inner.unpublish(batch);
                let first = !inner.failing;
                inner.failing = true;
                drop(inner);
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
        self.update_sizes();
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

impl Inner {
    /// Writes one batch (rotating when needed).
    fn write(&mut self, batch: &Batch, log: &Log) -> Result<Written, buffer::Error> {
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
        self.encoder
            .snapshot(self.series.iter().map(|(r, l)| (*r, l)), &mut self.snapshot);
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

    /// Keeps the definitions and gone refs of a batch that could not be written, for the
    /// tail (invariant 4): a series defined and gone among them is left out of both.
    fn unpublish(&mut self, batch: Batch) {
        let u = &mut self.unpublished;
        u.series.extend(batch.series);
        if batch.gone.is_empty() {
            return;
        }
        let gone: HashSet<SeriesRef> = batch.gone.iter().copied().collect();
        let mut unannounced = HashSet::new();
        u.series.retain(|(r, _)| {
            let keep = !gone.contains(r);
            if !keep {
                unannounced.insert(*r);
            }
            keep
        });
        u.gone
            .extend(batch.gone.into_iter().filter(|r| !unannounced.contains(r)));
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
