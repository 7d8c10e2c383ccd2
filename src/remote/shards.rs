//! Shards: the parallel senders of one endpoint, each with its own bounded queue.
//!
//! Invariants:
//! 1. A shard sends its samples in the order the reader queued them, one request at a time; a
//!    series (by its labels) always maps to one shard for a given shard count, so its samples
//!    stay in order.
//! 2. A shard buffers at most `capacity` samples, as Prometheus: `capacity / max_samples_per_send`
//!    full batches (at least one) plus the batch being filled. The reader waits when a shard
//!    is full; nothing is dropped here.
//! 3. A batch is sent when it holds `max_samples_per_send` samples, or when
//!    `batch_send_deadline` has passed since the shard last sent (the partial batch then goes).
//! 4. A closed queue still hands out everything it holds, then ends: closing is how resharding
//!    and shutdown flush.
//! 5. [`Progress`] publishes the lowest position some shard still holds a sample of (or the
//!    next position the reader will route, when none does); it never goes backwards.
//! 6. A request never holds two samples of one series (by the hash of its wire labels): the
//!    batch is cut before the second. So a request sent again after a crash (its success was
//!    not recorded) only repeats, per series, the receiver's latest sample, which Prometheus
//!    and compatible receivers accept as an exact duplicate instead of answering "out of
//!    order".
//! 7. Each shard has a [`ShardCursor`]: every sample routed to it before the cursor was
//!    delivered (sent, refused or dropped; not abandoned by a hard stop). It only moves
//!    forward: to the end of each batch it is done with, and to the reader's next position when
//!    the shard holds nothing.
//!
//! Lock order: `Progress::state` before `ShardQueue::state`; nothing is awaited under a lock.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::encode::{RequestEncoder, WireSample};
use super::send::{Outcome, Sender};
use super::source::{CursorStore, Cursors, Position, ShardCursor};
use super::write_client::WriteClient;

/// One shard's queue, shared by the reader (producer) and the shard task (consumer).
#[derive(Debug)]
pub(super) struct ShardQueue {
    state: Mutex<QueueState>,
    /// Wakes the shard: a full batch is ready, or the queue was closed.
    ready: Notify,
    /// Wakes the reader: a full batch was taken, so there may be room.
    room: Notify,
    batch_size: usize,
    max_full: usize,
    /// `scrapelet_remote_samples_pending`, shared by the endpoint's shards.
    pending: Gauge,
}

/// Samples sent together, and the position of the batch their first sample came from.
#[derive(Debug)]
pub(super) struct PendingBatch {
    pub(super) first: Position,
    /// The shard's cursor once this batch is done with (after its last sample).
    pub(super) end: ShardCursor,
    pub(super) samples: Vec<WireSample>,
    /// Series (wire label hashes) in `samples` (invariant 6).
    series: HashSet<u64, BuildHasherDefault<PassHasher>>,
    /// A second sample of a series came: the batch takes no more.
    cut: bool,
}

/// A sample on its way into a shard.
#[derive(Clone, Debug)]
pub(super) struct Routed {
    /// Its series' hash (invariant 6).
    pub(super) hash: u64,
    /// Its index among the shard's samples of its input batch (the cursor's `skip`).
    pub(super) index: u32,
    pub(super) sample: WireSample,
}

/// The lowest position not yet fully handled, for a read cursor to follow.
#[derive(Debug)]
pub(super) struct Progress {
    state: Mutex<ProgressState>,
    tx: watch::Sender<Position>,
}

#[derive(Debug)]
struct QueueState {
    partial: PendingBatch,
    full: VecDeque<PendingBatch>,
    /// The first position of the batch the shard is sending.
    in_flight: Option<Position>,
    closed: bool,
    /// Invariant 7.
    delivered: ShardCursor,
    /// Samples were abandoned by a hard stop with the input kept on disk: the cursor must
    /// not move past them.
    abandoned: bool,
    /// Emptied sample vectors, reused for new batches.
    spare: Vec<Vec<WireSample>>,
}

#[derive(Debug, Default)]
struct ProgressState {
    queues: Vec<Arc<ShardQueue>>,
    /// The position the reader routes next.
    next: Position,
}

impl ShardQueue {
    /// A queue whose cursor starts at `start`.
    pub(super) fn new(
        max_samples_per_send: usize,
        capacity: usize,
        pending: Gauge,
        start: ShardCursor,
    ) -> Self {
        let batch_size = max_samples_per_send.max(1);
        ShardQueue {
            state: Mutex::new(QueueState {
                partial: PendingBatch::new(Vec::with_capacity(batch_size)),
                full: VecDeque::new(),
                in_flight: None,
                closed: false,
                delivered: start,
                abandoned: false,
                spare: Vec::new(),
            }),
            ready: Notify::new(),
            room: Notify::new(),
            batch_size,
            max_full: (capacity / batch_size).max(1),
            pending,
        }
    }

    /// Moves all of `samples` (from the batch at `position`) into the queue, waiting for
    /// room. Cancel safe in the sense that what was moved stays queued and the rest stays in
    /// `samples`.
    pub(super) async fn push(&self, position: Position, samples: &mut Vec<Routed>) {
        let mut taken = 0;
        loop {
            {
                let mut st = self.lock();
                loop {
                    self.promote(&mut st);
                    let Some(routed) = samples.get(taken) else {
                        break;
                    };
                    if st.partial.cut || st.partial.samples.len() >= self.batch_size {
                        break;
                    }
                    if !st.partial.series.insert(routed.hash) {
                        st.partial.cut = true;
                        continue;
                    }
                    if st.partial.samples.is_empty() {
                        st.partial.first = position;
                    }
                    st.partial.samples.push(routed.sample.clone());
                    st.partial.end = ShardCursor {
                        position,
                        skip: routed.index + 1,
                    };
                    taken += 1;
                    self.pending.inc();
                }
            }
            if taken == samples.len() {
                samples.clear();
                return;
            }
            samples.drain(..taken);
            taken = 0;
            self.room.notified().await;
        }
    }

    /// The next full batch, waiting for one. Once closed: what is left (full batches, then
    /// the partial one), then `None`. Cancel safe.
    pub(super) async fn next_full(&self) -> Option<PendingBatch> {
        loop {
            {
                let mut st = self.lock();
                if st.full.is_empty() && st.closed {
                    return self.take_partial(&mut st);
                }
                if let Some(batch) = self.take_full(&mut st) {
                    return Some(batch);
                }
            }
            self.ready.notified().await;
        }
    }

    /// The oldest batch, full or not, without waiting (the batch deadline passed).
    pub(super) fn take_oldest(&self) -> Option<PendingBatch> {
        let mut st = self.lock();
        match self.take_full(&mut st) {
            Some(batch) => Some(batch),
            None => self.take_partial(&mut st),
        }
    }

    /// The shard is done with `batch`: delivered (sent, refused or dropped), or abandoned by
    /// a hard stop (`delivered` false: the cursor stays).
    pub(super) fn complete(&self, mut batch: PendingBatch, delivered: bool) {
        self.pending.dec_by(batch.samples.len() as i64);
        batch.samples.clear();
        let mut st = self.lock();
        st.in_flight = None;
        if delivered {
            st.delivered = st.delivered.max(batch.end);
        } else {
            st.abandoned = true;
        }
        if st.spare.len() < 2 {
            st.spare.push(batch.samples);
        }
    }

    /// The shard's cursor (invariant 7) when the reader routes `next` next.
    fn cursor(&self, next: Position) -> ShardCursor {
        let st = self.lock();
        let idle = st.partial.samples.is_empty() && st.full.is_empty() && st.in_flight.is_none();
        if idle && !st.abandoned {
            st.delivered.max(ShardCursor {
                position: next,
                skip: 0,
            })
        } else {
            st.delivered
        }
    }

    /// No more pushes; the shard drains what is queued, then ends.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Empties the queue (hard stop); returns the number of samples thrown away.
    pub(super) fn abandon(&self) -> usize {
        let mut st = self.lock();
        let n = st.partial.samples.len() + st.full.iter().map(|b| b.samples.len()).sum::<usize>();
        if n > 0 {
            st.abandoned = true;
        }
        st.partial = PendingBatch::new(Vec::new());
        st.full.clear();
        st.closed = true;
        drop(st);
        self.pending.dec_by(n as i64);
        // A reader waiting for room must not wait forever.
        self.room.notify_one();
        n
    }

    /// The lowest position of a sample this queue holds or sends.
    fn low_watermark(&self) -> Option<Position> {
        let st = self.lock();
        st.in_flight
            .or_else(|| st.full.front().map(|b| b.first))
            .or_else(|| (!st.partial.samples.is_empty()).then_some(st.partial.first))
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every edit under this lock completes without panicking paths in between, so a
        // poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves a full (or cut) partial batch to the full queue if there is room.
    fn promote(&self, st: &mut QueueState) {
        let ready = st.partial.samples.len() >= self.batch_size || st.partial.cut;
        if ready && !st.partial.samples.is_empty() && st.full.len() < self.max_full {
            let fresh = st
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(self.batch_size));
            let batch = std::mem::replace(&mut st.partial, PendingBatch::new(fresh));
            st.full.push_back(batch);
            self.ready.notify_one();
        }
    }

    fn take_full(&self, st: &mut QueueState) -> Option<PendingBatch> {
        let batch = st.full.pop_front()?;
        self.promote(st);
        st.in_flight = Some(batch.first);
        self.room.notify_one();
        Some(batch)
    }

    fn take_partial(&self, st: &mut QueueState) -> Option<PendingBatch> {
        if st.partial.samples.is_empty() {
            return None;
        }
        let fresh = st
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.batch_size));
        let batch = std::mem::replace(&mut st.partial, PendingBatch::new(fresh));
        st.in_flight = Some(batch.first);
        self.room.notify_one();
        Some(batch)
    }
}

impl PendingBatch {
    fn new(samples: Vec<WireSample>) -> Self {
        let capacity = samples.capacity();
        PendingBatch {
            first: Position::default(),
            end: ShardCursor::default(),
            samples,
            series: HashSet::with_capacity_and_hasher(capacity, Default::default()),
            cut: false,
        }
    }
}

/// Hasher for keys that are already hashes.
#[derive(Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress {
            state: Mutex::new(ProgressState::default()),
            tx: watch::Sender::new(Position::default()),
        }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Position> {
        self.tx.subscribe()
    }

    /// The shards now in use.
    pub(super) fn set_queues(&self, queues: Vec<Arc<ShardQueue>>) {
        self.lock().queues = queues;
        self.publish();
    }

    /// Everything before `next` has been routed.
    pub(super) fn set_next(&self, next: Position) {
        self.lock().next = next;
        self.publish();
    }

    /// Every shard's cursor (invariant 7) and the reader's next position.
    pub(super) fn snapshot(&self) -> Cursors {
        let st = self.lock();
        Cursors {
            shards: st.queues.iter().map(|q| q.cursor(st.next)).collect(),
            routed: st.next,
        }
    }

    /// Recomputes the low watermark and publishes it if it rose.
    pub(super) fn publish(&self) {
        let st = self.lock();
        let low = st
            .queues
            .iter()
            .filter_map(|q| q.low_watermark())
            .min()
            .map_or(st.next, |low| low.min(st.next));
        drop(st);
        self.tx.send_if_modified(|current| {
            let rise = low > *current;
            if rise {
                *current = low;
            }
            rise
        });
    }

    fn lock(&self) -> MutexGuard<'_, ProgressState> {
        // Single-field edits only; a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One shard: sends its queue's batches until the queue is closed and drained, or the hard
/// stop. On a hard stop what it still holds is abandoned: counted as dropped (shutdown), or,
/// with a cursor store (the input is kept on disk), left for the next run.
///
/// With a store, the shard's progress is offered to it after each batch (written within a
/// second), and a batch is only sent once no series of it is in a delivered batch whose
/// cursor is not yet durable: when one is, the shard commits (and waits) first. So after a
/// crash, what is in doubt (delivered, not recorded) holds each series at most once, and
/// sending it again repeats per series only the receiver's latest sample (invariant 6's
/// reasoning, across requests). A steady scrape repeats a series only every scrape
/// interval, long after its cursor was written, so the shard rarely waits, and the device
/// sees about one cursor write a second instead of one per request.
pub(super) async fn run_shard<C: WriteClient>(
    sender: Arc<Sender<C>>,
    queue: Arc<ShardQueue>,
    mut encoder: RequestEncoder,
    index: usize,
    progress: Arc<Progress>,
    store: Option<Arc<dyn CursorStore>>,
) {
    let every = sender.cfg.batch_send_deadline;
    let mut deadline = Instant::now() + every;
    let mut doubt = InDoubt::default();
    loop {
        let batch = tokio::select! {
            biased;
            _ = sender.hard_stop.cancelled() => break,
            batch = queue.next_full() => match batch {
                Some(batch) => batch,
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => match queue.take_oldest() {
                Some(batch) => batch,
                None => {
                    deadline = Instant::now() + every;
                    continue;
                }
            },
        };
        if let Some(store) = &store
            && doubt.must_commit_before(&batch, index, store.as_ref())
        {
            tokio::select! {
                biased;
                _ = sender.hard_stop.cancelled() => {
                    queue.complete(batch, false);
                    break;
                }
                _ = store.commit(progress.snapshot()) => doubt.clear(),
            }
        }
        let outcome = sender.send(&mut encoder, &batch.samples).await;
        if outcome != Outcome::Cancelled && store.is_some() {
            doubt.add(&batch.series, batch.end);
        }
        queue.complete(batch, outcome != Outcome::Cancelled);
        progress.publish();
        if outcome == Outcome::Cancelled {
            break;
        }
        if let Some(store) = &store {
            store.offer(progress.snapshot());
        }
        deadline = Instant::now() + every;
    }
    if sender.hard_stop.is_cancelled() {
        let lost = queue.abandon();
        if store.is_none() {
            sender.metrics.dropped.shutdown.inc_by(lost as u64);
        }
    }
}

/// A shard's delivered batches whose cursors may not be durable yet: the series they hold
/// (hashes of wire labels) and the shard cursor after the last of them.
#[derive(Default)]
struct InDoubt {
    series: HashSet<u64, BuildHasherDefault<PassHasher>>,
    until: ShardCursor,
}

impl InDoubt {
    /// Whether `batch` shares a series with what is in doubt, after forgetting what the
    /// store says is durable (shard `index`'s saved cursor at or past `until`).
    fn must_commit_before(
        &mut self,
        batch: &PendingBatch,
        index: usize,
        store: &dyn CursorStore,
    ) -> bool {
        if self.series.is_empty() {
            return false;
        }
        let durable = store
            .durable()
            .and_then(|c| c.shards.get(index).copied())
            .is_some_and(|c| c >= self.until);
        if durable {
            self.clear();
            return false;
        }
        batch.series.iter().any(|h| self.series.contains(h))
    }

    fn add(&mut self, series: &HashSet<u64, BuildHasherDefault<PassHasher>>, end: ShardCursor) {
        // Extended, never replaced: the set keeps its room between durable points.
        self.series.extend(series.iter().copied());
        self.until = self.until.max(end);
    }

    fn clear(&mut self) {
        self.series.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    /// Samples of distinct series (hash = timestamp), one per timestamp.
    fn samples(range: std::ops::Range<i64>) -> Vec<Routed> {
        let labels = Labels::from_pairs([("__name__", "x")]);
        range
            .enumerate()
            .map(|(i, t)| Routed {
                hash: t as u64,
                index: i as u32,
                sample: WireSample {
                    labels: labels.clone(),
                    timestamp_ms: t,
                    value: 0.0,
                },
            })
            .collect()
    }

    fn queue(batch: usize, capacity: usize, pending: Gauge) -> ShardQueue {
        ShardQueue::new(batch, capacity, pending, ShardCursor::default())
    }

    fn timestamps(batch: &PendingBatch) -> Vec<i64> {
        batch.samples.iter().map(|s| s.timestamp_ms).collect()
    }

    #[tokio::test]
    async fn batches_are_cut_at_the_batch_size_in_order() {
        let q = queue(3, 9, Gauge::default());
        q.push(Position(1), &mut samples(0..4)).await;
        q.push(Position(2), &mut samples(4..8)).await;
        let a = q.next_full().await;
        let b = q.next_full().await;
        assert_eq!(a.as_ref().map(timestamps), Some(vec![0, 1, 2]));
        assert_eq!(a.as_ref().map(|b| b.first), Some(Position(1)));
        assert_eq!(b.as_ref().map(timestamps), Some(vec![3, 4, 5]));
        assert_eq!(b.as_ref().map(|b| b.first), Some(Position(1)));
        // The rest is a partial batch: only the deadline (or a close) takes it.
        let rest = q.take_oldest();
        assert_eq!(rest.as_ref().map(timestamps), Some(vec![6, 7]));
        assert_eq!(rest.as_ref().map(|b| b.first), Some(Position(2)));
        assert!(q.take_oldest().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_reader_wait_until_a_batch_is_taken() {
        let pending = Gauge::default();
        let q = Arc::new(queue(2, 4, pending.clone()));
        // Capacity: 2 full batches of 2, plus a partial batch of up to 2.
        q.push(Position(0), &mut samples(0..6)).await;
        assert_eq!(pending.get(), 6);
        let producer = q.clone();
        let push = tokio::spawn(async move {
            let mut more = samples(6..8);
            producer.push(Position(1), &mut more).await;
            more.len()
        });
        // The push cannot finish before a batch is taken; once one is, it does.
        let first = q.next_full().await;
        assert_eq!(first.as_ref().map(timestamps), Some(vec![0, 1]));
        assert_eq!(push.await.ok(), Some(0));
        let mut all = Vec::new();
        q.close();
        while let Some(b) = q.next_full().await {
            all.extend(timestamps(&b));
            q.complete(b, true);
        }
        assert_eq!(all, [2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn progress_is_the_oldest_position_still_held() {
        let progress = Progress::new();
        let rx = progress.subscribe();
        let a = Arc::new(queue(2, 10, Gauge::default()));
        let b = Arc::new(queue(2, 10, Gauge::default()));
        progress.set_queues(vec![a.clone(), b.clone()]);
        a.push(Position(3), &mut samples(0..3)).await;
        b.push(Position(4), &mut samples(0..1)).await;
        progress.set_next(Position(5));
        assert_eq!(*rx.borrow(), Position(3));
        let sent = a.next_full().await;
        // In flight still counts.
        progress.publish();
        assert_eq!(*rx.borrow(), Position(3));
        if let Some(batch) = sent {
            a.complete(batch, true);
        }
        // a's leftover sample is from position 3 too.
        progress.publish();
        assert_eq!(*rx.borrow(), Position(3));
        if let Some(batch) = a.take_oldest() {
            a.complete(batch, true);
        }
        progress.publish();
        assert_eq!(*rx.borrow(), Position(4));
        if let Some(batch) = b.take_oldest() {
            b.complete(batch, true);
        }
        progress.publish();
        assert_eq!(*rx.borrow(), Position(5));
    }
}
