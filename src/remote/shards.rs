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
//!
//! Lock order: `Progress::state` before `ShardQueue::state`; nothing is awaited under a lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::encode::{RequestEncoder, WireSample};
use super::send::{Outcome, Sender};
use super::source::Position;
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
    pub(super) samples: Vec<WireSample>,
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
    pub(super) fn new(max_samples_per_send: usize, capacity: usize, pending: Gauge) -> Self {
        let batch_size = max_samples_per_send.max(1);
        ShardQueue {
            state: Mutex::new(QueueState {
                partial: PendingBatch::new(Vec::with_capacity(batch_size)),
                full: VecDeque::new(),
                in_flight: None,
                closed: false,
                spare: Vec::new(),
            }),
            ready: Notify::new(),
            room: Notify::new(),
            batch_size,
            max_full: (capacity / batch_size).max(1),
            pending,
        }
    }

    /// Moves all of `samples` (from the batch at `position`) into the queue, waiting for room.
    /// Cancel safe in the sense that what was moved stays queued and the rest stays in
    /// `samples`.
    pub(super) async fn push(&self, position: Position, samples: &mut Vec<WireSample>) {
        loop {
            {
                let mut st = self.lock();
                loop {
                    self.promote(&mut st);
                    let room = self.batch_size - st.partial.samples.len();
                    if room == 0 || samples.is_empty() {
                        break;
                    }
                    if st.partial.samples.is_empty() {
                        st.partial.first = position;
                    }
                    let take = room.min(samples.len());
                    st.partial.samples.extend(samples.drain(..take));
                    self.pending.inc_by(take as i64);
                }
            }
            if samples.is_empty() {
                return;
            }
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

    /// The shard is done with `batch` (sent, refused or abandoned).
    pub(super) fn complete(&self, mut batch: PendingBatch) {
        self.pending.dec_by(batch.samples.len() as i64);
        batch.samples.clear();
        let mut st = self.lock();
        st.in_flight = None;
        if st.spare.len() < 2 {
            st.spare.push(batch.samples);
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
        st.partial.samples.clear();
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

    /// Moves a full partial batch to the full queue if there is room.
    fn promote(&self, st: &mut QueueState) {
        if st.partial.samples.len() >= self.batch_size && st.full.len() < self.max_full {
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
        PendingBatch {
            first: Position::default(),
            samples,
        }
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
/// stop. On a hard stop what it still holds is counted as dropped (shutdown).
pub(super) async fn run_shard<C: WriteClient>(
    sender: Arc<Sender<C>>,
    queue: Arc<ShardQueue>,
    progress: Arc<Progress>,
) {
    let mut encoder = RequestEncoder::new();
    let every = sender.cfg.batch_send_deadline;
    let mut deadline = Instant::now() + every;
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
        let outcome = sender.send(&mut encoder, &batch.samples).await;
        queue.complete(batch);
        progress.publish();
        if outcome == Outcome::Cancelled {
            break;
        }
        deadline = Instant::now() + every;
    }
    if sender.hard_stop.is_cancelled() {
        let lost = queue.abandon();
        sender.metrics.dropped.shutdown.inc_by(lost as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::remote::encode::EncodedLabels;

    fn samples(range: std::ops::Range<i64>) -> Vec<WireSample> {
        let labels = EncodedLabels::encode(Labels::from_pairs([("__name__", "x")]).iter());
        range
            .map(|t| WireSample {
                labels: labels.clone(),
                timestamp_ms: t,
                value: 0.0,
            })
            .collect()
    }

    fn timestamps(batch: &PendingBatch) -> Vec<i64> {
        batch.samples.iter().map(|s| s.timestamp_ms).collect()
    }

    #[tokio::test]
    async fn batches_are_cut_at_the_batch_size_in_order() {
        let q = ShardQueue::new(3, 9, Gauge::default());
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
        let q = Arc::new(ShardQueue::new(2, 4, pending.clone()));
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
            q.complete(b);
        }
        assert_eq!(all, [2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn progress_is_the_oldest_position_still_held() {
        let progress = Progress::new();
        let rx = progress.subscribe();
        let a = Arc::new(ShardQueue::new(2, 10, Gauge::default()));
        let b = Arc::new(ShardQueue::new(2, 10, Gauge::default()));
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
            a.complete(batch);
        }
        // a's leftover sample is from position 3 too.
        progress.publish();
        assert_eq!(*rx.borrow(), Position(3));
        if let Some(batch) = a.take_oldest() {
            a.complete(batch);
        }
        progress.publish();
        assert_eq!(*rx.borrow(), Position(4));
        if let Some(batch) = b.take_oldest() {
            b.complete(batch);
        }
        progress.publish();
        assert_eq!(*rx.borrow(), Position(5));
    }
}
