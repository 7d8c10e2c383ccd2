//! The reader side: one thread per endpoint decodes the buffer from the endpoint's cursor and
//! hands batches to its queue ([`WalSource`], a [`BatchSource`]).
//!
//! Invariants:
//! 1. Refs are the reader's own: each series gets a local ref when first seen, kept as long
//!    as its segment-scoped ref keeps the same labels. A new process reuses ref numbers, so at
//!    every segment the snapshot is compared with what the reader knew: series no longer live
//!    are emitted as `gone`, new or changed ones as definitions (under new local refs).
//! 2. The first batch emitted defines every live series (the queue starts with an empty
//!    table); records before the start position are decoded (to rebuild state) but not
//!    emitted.
//! 3. Memory is bounded: the series table follows the live series, one record is decoded at a
//!    time, and the channel to the queue holds [`CHANNEL_BATCHES`] batches. A backlog of any
//!    size is streamed through that. The table keeps a series' labels only until the first
//!    batch emitted has announced them; after that a 128-bit hash of them is all it needs to
//!    tell a redefinition (the queue keeps the labels it sends).
//! 5. The sample lists of recent batches are kept with their local refs (`routes`), so that a
//!    batch repeating a list (a steady scrape) is translated without a table probe per sample;
//!    they are dropped whenever the table's mapping changes.
//! 4. A record that does not decode ends its segment for this reader (counted as corrupt,
//!    like damage the checksum caught); reading goes on at the next segment.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::codec::{Decoded, Decoder, KIND_BATCH, KIND_SNAPSHOT};
use super::metrics::EndpointWalMetrics;
use crate::append::{Batch, Sample, SeriesRef};
use crate::buffer::{self, Event, Gap, Log};
use crate::labels::Labels;
use crate::remote::{BatchSource, Position};
use crate::telemetry::error_chain;

/// Batches decoded ahead of the queue.
pub const CHANNEL_BATCHES: usize = 8;

/// How long a caught-up reader waits before checking whether its queue is still there.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Records read but not yet delivered: (packed position, oldest and newest sample timestamp).
/// Shared with the endpoint's cursor store, which pops what its cursors passed.
pub(super) type InFlight = Arc<Mutex<VecDeque<(u64, i64, i64)>>>;

/// An endpoint's batches, read from the buffer.
pub struct WalSource {
    rx: mpsc::Receiver<(Position, Arc<Batch>)>,
}

impl BatchSource for WalSource {
    async fn next(&mut self) -> Option<(Position, Arc<Batch>)> {
        self.rx.recv().await
    }
}

/// What a reader needs besides the log.
pub(super) struct ReaderSetup {
    pub(super) name: String,
    /// Where to start.
    pub(super) from: buffer::Position,
    /// The first segment this process wrote: records before it are replayed ones.
    pub(super) own_segment: u64,
    pub(super) metrics: Option<EndpointWalMetrics>,
    pub(super) in_flight: Option<InFlight>,
}

/// Starts a reader of `log` on a blocking thread; it ends when the log is closed and read, or
/// when the source is dropped.
pub(super) fn spawn_reader(log: Log, setup: ReaderSetup) -> WalSource {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let span = tracing::info_span!("buffer_reader", endpoint = %setup.name);
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        ReaderTask::new(log, setup).run(&tx);
    });
    WalSource { rx }
}

/// What the reader knows of a live segment ref.
struct Known {
    local: u64,
    /// [`label_id`] of its labels.
    id: [u64; 2],
    /// Its labels, kept only until the first batch emitted announces them (invariant 3).
    labels: Option<Labels>,
}

/// A sample list and, in the same order, its local refs (0: not in the table).
#[derive(Default)]
struct Route {
    seg: Vec<u64>,
    local: Vec<u64>,
}

struct ReaderTask {
    reader: buffer::Reader,
    setup: ReaderSetup,
    decoder: Decoder,
    decoded: Decoded,
    /// Segment-scoped ref -> (local ref, labels) (invariant 1).
    table: hashbrown::HashMap<u64, Known>,
    /// Invariant 5: first segment ref of a sample list -> the list and its local refs.
    routes: hashbrown::HashMap<u64, Route>,
    next_local: u64,
    /// Invariant 2.
    announce_all: bool,
    defs: Vec<(SeriesRef, Labels)>,
    gone: Vec<SeriesRef>,
}

impl ReaderTask {
    fn new(log: Log, setup: ReaderSetup) -> Self {
        ReaderTask {
            reader: log.reader(setup.from),
            setup,
            decoder: Decoder::default(),
            decoded: Decoded::default(),
            table: hashbrown::HashMap::new(),
            routes: hashbrown::HashMap::new(),
            next_local: 1,
            announce_all: true,
            defs: Vec::new(),
            gone: Vec::new(),
        }
    }

    fn run(mut self, tx: &mpsc::Sender<(Position, Arc<Batch>)>) {
        let mut read_errors = 0u32;
        loop {
            if tx.is_closed() {
                return;
            }
            let event = match self.reader.read() {
                Ok(e) => e,
                Err(e) => {
                    read_errors += 1;
                    if read_errors == 1 {
                        tracing::warn!(error = %error_chain(&e), "cannot read the buffer; retrying");
                    }
                    self.reader.wait(Duration::from_secs(1));
                    continue;
                }
            };
            read_errors = 0;
            let batch = match event {
                Event::Segment(_) => {
                    self.decoder.reset();
                    continue;
                }
                Event::Gap(g) => {
                    self.gap(&g);
                    continue;
                }
                Event::End => {
                    self.reader.wait(IDLE_CHECK);
                    continue;
                }
                Event::Closed => return,
                Event::Record(r) => {
                    let (position, kind, before_start) = (r.position, r.kind, r.before_start);
                    let handled = match kind {
                        KIND_SNAPSHOT => self
                            .decoder
                            .snapshot(r.payload)
                            .map(|series| {
                                self.apply_snapshot(series);
                                None
                            })
                            .map_err(|e| e.to_string()),
                        KIND_BATCH => match self.decoder.batch(r.payload, &mut self.decoded) {
                            Ok(()) => Ok(Some(self.translate(before_start))),
                            Err(e) => Err(e.to_string()),
                        },
                        other => Err(format!("unknown record kind {other}")),
                    };
                    match handled {
                        Err(reason) => {
                            tracing::warn!(
                                segment = position.segment,
                                offset = position.offset,
                                reason,
                                "buffer record does not decode; skipping the rest of its segment"
                            );
                            if let Some(g) = self.reader.abandon_segment() {
                                self.gap(&g);
                            }
                            continue;
                        }
                        Ok(None) => continue,
                        Ok(Some(_)) if before_start => continue,
                        Ok(Some(batch)) => {
                            if position.segment < self.setup.own_segment
                                && let Some(m) = &self.setup.metrics
                            {
                                m.replayed.inc();
                            }
                            (position, batch)
                        }
                    }
                }
            };
            let (position, batch) = batch;
            let packed = position.to_u64();
            if let Some(in_flight) = &self.setup.in_flight
                && let (Some(min), Some(max)) = (
                    batch.samples.iter().map(|s| s.timestamp_ms).min(),
                    batch.samples.iter().map(|s| s.timestamp_ms).max(),
                )
            {
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back((packed, min, max));
            }
            if tx
                .blocking_send((Position(packed), Arc::new(batch)))
                .is_err()
            {
                return;
            }
        }
    }

    /// Counts and logs skipped records (the debug output, which has no metrics and holds no
    /// segments, skips silently).
    fn gap(&self, g: &Gap) {
        let Some(m) = &self.setup.metrics else {
            return;
        };
        m.lost(g.reason).inc_by(g.items);
        tracing::warn!(
            reason = g.reason.as_str(),
            samples = g.items,
            bytes = g.bytes,
            segment = g.at.segment,
            offset = g.at.offset,
            "buffer records skipped; their samples are lost for this endpoint"
        );
    }

    /// A new segment's snapshot: diff it against the table (invariant 1).
    fn apply_snapshot(&mut self, series: Vec<(u64, Labels)>) {
        let mut old = std::mem::take(&mut self.table);
        for (seg_ref, labels) in series {
            let id = label_id(&labels);
            let local = match old.remove(&seg_ref) {
                Some(known) if known.id == id => known.local,
                Some(known) => {
                    self.gone.push(SeriesRef(known.local));
                    self.define(&labels)
                }
                None => self.define(&labels),
            };
            let labels = self.announce_all.then_some(labels);
            self.table.insert(seg_ref, Known { local, id, labels });
        }
        self.gone
            .extend(old.into_values().map(|known| SeriesRef(known.local)));
        self.routes.clear();
    }

    /// A new local ref for `labels`, queued as a definition.
    fn define(&mut self, labels: &Labels) -> u64 {
        let local = self.next_local;
        self.next_local += 1;
        self.defs.push((SeriesRef(local), labels.clone()));
        local
    }

    /// The decoded batch in local refs, with what is pending (invariants 1 and 2). A batch
    /// `before_start` only updates the table (it is not emitted).
    fn translate(&mut self, before_start: bool) -> Batch {
        let decoded = std::mem::take(&mut self.decoded);
        for (seg_ref, labels) in &decoded.series {
            let id = label_id(labels);
            let local = match self.table.get(seg_ref) {
                Some(known) if known.id == id => known.local,
                Some(known) => {
                    self.gone.push(SeriesRef(known.local));
                    self.routes.clear();
                    self.define(labels)
                }
                None => {
                    self.routes.clear();
                    self.define(labels)
                }
            };
            let labels = self.announce_all.then(|| labels.clone());
            self.table.insert(*seg_ref, Known { local, id, labels });
        }
        if before_start {
            for g in &decoded.gone {
                if self.table.remove(g).is_some() {
                    self.routes.clear();
                }
            }
            if self.announce_all {
                // Everything still live is announced with the first batch emitted.
                self.defs.clear();
                self.gone.clear();
            }
            self.decoded = decoded;
            return Batch::default();
        }
        // Taken before this batch's gone refs leave the table: they may have samples here.
        let series = if self.announce_all {
            self.announce_all = false;
            self.defs.clear();
            self.table
                .values_mut()
                .filter_map(|known| Some((SeriesRef(known.local), known.labels.take()?)))
                .collect()
        } else {
            std::mem::take(&mut self.defs)
        };
        let samples = self.samples(&decoded.samples);
        let mut gone = std::mem::take(&mut self.gone);
        for g in &decoded.gone {
            if let Some(known) = self.table.remove(g) {
                gone.push(SeriesRef(known.local));
                self.routes.clear();
            }
        }
        self.decoded = decoded;
        Batch {
            series,
            samples,
            gone,
        }
    }

    /// Decoded samples in local refs; those of refs not in the table are left out.
    fn samples(&mut self, decoded: &[(u64, i64, f64)]) -> Vec<Sample> {
        let Some(&(first, _, _)) = decoded.first() else {
            return Vec::new();
        };
        let cached = self.routes.get(&first).is_some_and(|route| {
            route.seg.len() == decoded.len()
                && route.seg.iter().zip(decoded).all(|(&r, s)| r == s.0)
        });
        if !cached {
            // Lists come and go with definitions and gone refs, which clear the routes; this
            // only guards the bound of invariant 3 against a stream that never does.
            if self.routes.len() > self.table.len() {
                self.routes.clear();
            }
            let route = self.routes.entry(first).or_default();
            route.seg.clear();
            route.local.clear();
            for &(r, _, _) in decoded {
                route.seg.push(r);
                route
                    .local
                    .push(self.table.get(&r).map_or(0, |known| known.local));
            }
        }
        let Some(route) = self.routes.get(&first) else {
            return Vec::new();
        };
        decoded
            .iter()
            .zip(&route.local)
            .filter(|(_, local)| **local != 0)
            .map(|(&(_, t, v), &local)| Sample {
                series: SeriesRef(local),
                timestamp_ms: t,
                value: v,
            })
            .collect()
    }
}

/// A 128-bit hash of a label set: equal for equal sets, and different sets colliding is as
/// likely as a random 128-bit collision. Names and values are UTF-8, so 0xff cannot occur in
/// them and separates them unambiguously.
fn label_id(labels: &Labels) -> [u64; 2] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for l in labels.iter() {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    let d = h.digest128();
    [d as u64, (d >> 64) as u64]
}
