//! The reader side: one thread per endpoint hands batches to its queue ([`WalSource`], a
//! [`BatchSource`]), following the writer in one of two ways:
//!
//! - **From the tail** (`tail`), once it has caught up: each batch as the scrape loop made it,
//!   labels shared with the scrape loop and the appender, nothing decoded, no per-series state
//!   here at all.
//! - **From the log**, while it is behind (a replay at start-up, an endpoint that was down, a
//!   queue that fell more than the tail's bound behind): records decoded one at a time. When
//!   it reaches the end of the log and the tail holds everything from there on, it switches to
//!   the tail and drops its decoding state; when the tail no longer holds its next batch, it
//!   reads the log again from the end of the last record it handled.
//!
//! Invariants:
//! 1. Refs are process-wide ([`SeriesRef::allocate`]): in this process's segments a record's
//!    ref is the scrape loop's, passed on as it is (so both ways give the same refs). Series of
//!    an earlier process's segments get fresh refs of this process, kept as long as their
//!    segment-scoped ref keeps the same labels; at every segment the snapshot is compared with
//!    what the reader knew: series no longer live are emitted as `gone`, new or changed ones as
//!    definitions.
//! 2. The first batch emitted defines every live series (the queue starts with an empty
//!    table); records before the start position are decoded (to rebuild state) but not
//!    emitted. Reading the log again after the tail, the queue already knows every series,
//!    so nothing is announced again.
//! 3. Memory is bounded: while reading the log, the series table follows the live series, one
//!    record is decoded at a time; the channel to the queue holds [`CHANNEL_BATCHES`] batches.
//!    A backlog of any size is streamed through that. The table keeps a series' labels only
//!    until the first batch emitted has announced them; after that a 128-bit hash of them is
//!    all it needs to tell a redefinition (the queue keeps the labels it sends). Following the
//!    tail, the reader holds nothing per series.
//! 5. While reading the log, the sample lists of recent batches are kept with their refs
//!    (`routes`), so that a batch repeating a list (a steady scrape) is translated without a
//!    table probe per sample; they are dropped whenever the table's mapping changes.
//! 4. A record that does not decode ends its segment for this reader (counted as corrupt,
//!    like damage the checksum caught); reading goes on at the next segment.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::codec::{Decoded, Decoder, KIND_BATCH, KIND_SNAPSHOT};
use super::metrics::EndpointWalMetrics;
use super::tail::{Next, Tail};
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
    /// The newest batches, to follow once caught up.
    pub(super) tail: Arc<Tail>,
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

/// What the reader knows of a live segment ref while reading the log.
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

/// The state of reading the log (dropped while following the tail).
struct Disk {
    reader: buffer::Reader,
    decoder: Decoder,
    decoded: Decoded,
    /// Segment-scoped ref -> (local ref, labels) (invariant 1).
    table: hashbrown::HashMap<u64, Known>,
    /// Invariant 5: first segment ref of a sample list -> the list and its local refs.
    routes: hashbrown::HashMap<u64, Route>,
    /// Whether the segment being read is this process's (its refs are passed on as they are).
    own: bool,
}

/// What one step of reading produced.
enum Step {
    Emit(buffer::Position, Arc<Batch>),
    Continue,
    Done,
}

struct ReaderTask {
    log: Log,
    setup: ReaderSetup,
    /// Reading the log; `None` while following the tail.
    disk: Option<Disk>,
    /// Following the tail: the number of the next entry.
    next_seq: u64,
    /// The position after the last record handled: where reading the log resumes.
    resume_at: buffer::Position,
    /// Invariant 2.
    announce_all: bool,
    /// Definitions and gone refs emitted with the next batch.
    defs: Vec<(SeriesRef, Labels)>,
    gone: Vec<SeriesRef>,
}

impl Disk {
    fn new(reader: buffer::Reader) -> Self {
        Disk {
            reader,
            decoder: Decoder::default(),
            decoded: Decoded::default(),
            table: hashbrown::HashMap::new(),
            routes: hashbrown::HashMap::new(),
            own: false,
        }
    }
}

impl ReaderTask {
    fn new(log: Log, setup: ReaderSetup) -> Self {
        ReaderTask {
            disk: Some(Disk::new(log.reader(setup.from))),
            log,
            next_seq: 0,
            resume_at: setup.from,
            setup,
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
            let step = if self.disk.is_some() {
                self.step_disk(&mut read_errors)
            } else {
                self.step_tail()
            };
            let (position, batch) = match step {
                Step::Emit(position, batch) => (position, batch),
                Step::Continue => continue,
                Step::Done => return,
            };
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
            if tx.blocking_send((Position(packed), batch)).is_err() {
                return;
            }
        }
    }

    /// The next batch of the tail; reads the log again when it was evicted.
    fn step_tail(&mut self) -> Step {
        match self.setup.tail.get(self.next_seq, IDLE_CHECK) {
            Next::Entry(e) => {
                self.next_seq += 1;
                self.resume_at = e.end;
                let batch = if self.defs.is_empty() && self.gone.is_empty() {
                    e.batch
                } else {
                    // What reading the log left to announce rides with this batch.
                    let mut series = std::mem::take(&mut self.defs);
                    series.extend(e.batch.series.iter().cloned());
                    let mut gone = std::mem::take(&mut self.gone);
                    gone.extend_from_slice(&e.batch.gone);
                    Arc::new(Batch {
                        series,
                        samples: e.batch.samples.clone(),
                        gone,
                    })
                };
                Step::Emit(e.position, batch)
            }
            Next::Evicted => {
                tracing::debug!(
                    segment = self.resume_at.segment,
                    offset = self.resume_at.offset,
                    "fell behind the newest batches; reading the buffer"
                );
                self.disk = Some(Disk::new(self.log.reader(self.resume_at)));
                Step::Continue
            }
            Next::Empty => Step::Continue,
            Next::Closed => Step::Done,
        }
    }

    /// One event of the log.
    fn step_disk(&mut self, read_errors: &mut u32) -> Step {
        let Some(disk) = self.disk.as_mut() else {
            return Step::Continue;
        };
        let event = match disk.reader.read() {
            Ok(e) => e,
            Err(e) => {
                *read_errors += 1;
                if *read_errors == 1 {
                    tracing::warn!(error = %error_chain(&e), "cannot read the buffer; retrying");
                }
                disk.reader.wait(Duration::from_secs(1));
                return Step::Continue;
            }
        };
        *read_errors = 0;
        match event {
            Event::Segment(index) => {
                disk.decoder.reset();
                disk.own = index >= self.setup.own_segment;
                Step::Continue
            }
            Event::Gap(g) => {
                self.gap(&g);
                Step::Continue
            }
            Event::End => {
                let at = disk.reader.position();
                match self.setup.tail.seq_from(at) {
                    Some(seq) => self.follow_tail(seq),
                    None => {
                        disk.reader.wait(IDLE_CHECK);
                    }
                }
                Step::Continue
            }
            Event::Closed => Step::Done,
            Event::Record(r) => {
                let (position, end, kind, before_start) =
                    (r.position, r.end, r.kind, r.before_start);
                let own = position.segment >= self.setup.own_segment;
                disk.own = own;
                let handled = match kind {
                    KIND_SNAPSHOT => disk
                        .decoder
                        .snapshot(r.payload)
                        .map(|series| {
                            self.apply_snapshot(series);
                            None
                        })
                        .map_err(|e| e.to_string()),
                    KIND_BATCH => {
                        let Disk {
                            decoder, decoded, ..
                        } = disk;
                        match decoder.batch(r.payload, decoded) {
                            Ok(()) => Ok(Some(self.translate(before_start))),
                            Err(e) => Err(e.to_string()),
                        }
                    }
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
                        let gap = self.disk.as_mut().and_then(|d| d.reader.abandon_segment());
                        if let Some(g) = gap {
                            self.gap(&g);
                        }
                        Step::Continue
                    }
                    Ok(None) => Step::Continue,
                    Ok(Some(_)) if before_start => Step::Continue,
                    Ok(Some(batch)) => {
                        if !own && let Some(m) = &self.setup.metrics {
                            m.replayed.inc();
                        }
                        self.resume_at = end;
                        Step::Emit(position, Arc::new(batch))
                    }
                }
            }
        }
    }

    /// Caught up: from entry `seq` on, the tail holds everything. What the first batch must
    /// still announce is kept for the first batch of the tail; the decoding state goes.
    fn follow_tail(&mut self, seq: u64) {
        let Some(disk) = self.disk.take() else {
            return;
        };
        if self.announce_all {
            self.announce_all = false;
            self.defs.clear();
            self.defs.extend(
                disk.table
                    .into_values()
                    .filter_map(|known| Some((SeriesRef(known.local), known.labels?))),
            );
        }
        self.next_seq = seq;
        tracing::debug!("caught up with the writer; following the newest batches");
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
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        let own = disk.own;
        let mut old = std::mem::take(&mut disk.table);
        let mut table = hashbrown::HashMap::with_capacity(series.len());
        for (seg_ref, labels) in series {
            let id = label_id(&labels);
            let local = match old.remove(&seg_ref) {
                Some(known) if known.id == id => known.local,
                Some(known) => {
                    self.gone.push(SeriesRef(known.local));
                    define(&mut self.defs, seg_ref, &labels, own)
                }
                None => define(&mut self.defs, seg_ref, &labels, own),
            };
            let labels = self.announce_all.then_some(labels);
            table.insert(seg_ref, Known { local, id, labels });
        }
        self.gone
            .extend(old.into_values().map(|known| SeriesRef(known.local)));
        if let Some(disk) = self.disk.as_mut() {
            disk.table = table;
            disk.routes.clear();
        }
    }

    /// The decoded batch in local refs, with what is pending (invariants 1 and 2). A batch
    /// `before_start` only updates the table (it is not emitted).
    fn translate(&mut self, before_start: bool) -> Batch {
        let Some(disk) = self.disk.as_mut() else {
            return Batch::default();
        };
        let own = disk.own;
        let decoded = std::mem::take(&mut disk.decoded);
        for (seg_ref, labels) in &decoded.series {
            let id = label_id(labels);
            let local = match disk.table.get(seg_ref) {
                Some(known) if known.id == id => known.local,
                Some(known) => {
                    self.gone.push(SeriesRef(known.local));
                    disk.routes.clear();
                    define(&mut self.defs, *seg_ref, labels, own)
                }
                None => {
                    disk.routes.clear();
                    define(&mut self.defs, *seg_ref, labels, own)
                }
            };
            let labels = self.announce_all.then(|| labels.clone());
            disk.table.insert(*seg_ref, Known { local, id, labels });
        }
        if before_start {
            for g in &decoded.gone {
                if disk.table.remove(g).is_some() {
                    disk.routes.clear();
                }
            }
            // Downstream knows what was defined before the start (reading again after the
            // tail), or everything still live is announced with the first batch emitted.
            self.defs.clear();
            self.gone.clear();
            disk.decoded = decoded;
            return Batch::default();
        }
        // Taken before this batch's gone refs leave the table: they may have samples here.
        let series = if self.announce_all {
            self.announce_all = false;
            self.defs.clear();
            disk.table
                .values_mut()
                .filter_map(|known| Some((SeriesRef(known.local), known.labels.take()?)))
                .collect()
        } else {
            std::mem::take(&mut self.defs)
        };
        let samples = samples(disk, &decoded.samples);
        let mut gone = std::mem::take(&mut self.gone);
        for g in &decoded.gone {
            if let Some(known) = disk.table.remove(g) {
                gone.push(SeriesRef(known.local));
                disk.routes.clear();
            }
        }
        disk.decoded = decoded;
        Batch {
            series,
            samples,
            gone,
        }
    }
}

/// A ref for a series read from the log, queued as a definition: the record's own in this
/// process's segments, a fresh one otherwise (invariant 1).
fn define(defs: &mut Vec<(SeriesRef, Labels)>, seg_ref: u64, labels: &Labels, own: bool) -> u64 {
    let local = if own {
        SeriesRef(seg_ref)
    } else {
        SeriesRef::allocate()
    };
    defs.push((local, labels.clone()));
    local.0
}

/// Decoded samples in local refs; those of refs not in the table are left out.
fn samples(disk: &mut Disk, decoded: &[(u64, i64, f64)]) -> Vec<Sample> {
    let Some(&(first, _, _)) = decoded.first() else {
        return Vec::new();
    };
    let cached = disk.routes.get(&first).is_some_and(|route| {
        route.seg.len() == decoded.len() && route.seg.iter().zip(decoded).all(|(&r, s)| r == s.0)
    });
    if !cached {
        // Lists come and go with definitions and gone refs, which clear the routes; this
        // only guards the bound of invariant 3 against a stream that never does.
        if disk.routes.len() > disk.table.len() {
            disk.routes.clear();
        }
        let route = disk.routes.entry(first).or_default();
        route.seg.clear();
        route.local.clear();
        for &(r, _, _) in decoded {
            route.seg.push(r);
            route
                .local
                .push(disk.table.get(&r).map_or(0, |known| known.local));
        }
    }
    let Some(route) = disk.routes.get(&first) else {
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
