//! The input seam of a queue: [`BatchSource`] with where to resume ([`Cursors`]) and where to
//! save progress ([`CursorStore`]); and an in-memory implementation, [`Fanout`], that hands
//! every appended batch to one bounded [`MemoryQueue`] per consumer (tests and benches of
//! remote write alone; the agent reads from the write-ahead buffer, `crate::wal`).
//!
//! Invariants of the in-memory queue:
//! 1. [`Fanout::append`] never blocks on a consumer and never fails: a consumer whose queue
//!    is full loses that batch's samples (counted, reason `queue_full`); other consumers are
//!    unaffected.
//! 2. Series definitions and `gone` refs are never lost, even when samples are: a batch that
//!    does not fit is kept as a definitions-only batch, so later samples of its series are
//!    still sent. Consecutive definitions-only batches are merged, and a series defined and
//!    gone within them is removed from both lists, so what a stuck consumer holds is bounded
//!    by the number of live series, not by the length of the outage.
//! 3. Positions handed out by one queue strictly increase.
//! 4. A queue admits a batch when it holds no samples, or when the batch fits in its sample
//!    capacity; so a batch larger than the capacity is not dropped by an idle consumer.
//! 5. Consumers come and go at any time: a consumer added later receives the batches appended
//!    from then on (series defined earlier are unknown to it); a dropped consumer's queue is
//!    detached (what it still held is counted as refused) and no longer fed.
//!
//! Lock order: `Fanout::outputs` before a queue's `Shared::state`.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use crate::append::{Appender, Batch};

/// Where a batch sits in its source. Strictly increasing within a source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

/// What a queue reads its batches from.
pub trait BatchSource: Send + 'static {
    /// The next batch and its position; `None` when the source has ended (closed and drained).
    ///
    /// Must be cancel safe: when the future is dropped before it completes, no batch is lost.
    fn next(&mut self) -> impl Future<Output = Option<(Position, Arc<Batch>)>> + Send;
}

/// How far one shard has delivered: every sample routed to it from batches before `position`,
/// and its first `skip` samples of the batch at `position`. Orders like the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardCursor {
    pub position: Position,
    pub skip: u32,
}

/// An endpoint's delivery progress: one cursor per shard (their number is part of it: a
/// series' shard depends on it) and the next position the reader routes. When resuming,
/// `routed` bounds what the previous run can have routed (and so sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursors {
    pub shards: Vec<ShardCursor>,
    pub routed: Position,
}

/// Where an endpoint's delivery progress is made durable (the write-ahead buffer's cursor
/// files). Without one, progress is only published ([`QueueHandle::progress`]).
///
/// [`QueueHandle::progress`]: super::QueueHandle::progress
pub trait CursorStore: Send + Sync + 'static {
    /// Makes `cursors` durable; completes when they are (or when saving failed, which the store
    /// reports itself: delivery goes on). Concurrent calls may share one write.
    fn commit(&self, cursors: Cursors) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
    /// Notes `cursors` to be saved soon, without waiting.
    fn offer(&self, cursors: Cursors);
    /// What is durable now: the cursors the last successful save holds (`None`: nothing
    /// known to be durable yet).
    fn durable(&self) -> Option<Cursors> {
        None
    }
}

/// What one endpoint's queue starts from.
pub struct EndpointInput<S> {
    pub source: S,
    /// Where delivery resumes: the cursors a previous run saved, or (with no shard cursors)
    /// just where the source starts. `None`: the source starts at position 0.
    pub resume: Option<Cursors>,
    /// Where progress is saved; `None` for an input that does not outlive the process.
    pub store: Option<Arc<dyn CursorStore>>,
}

impl Cursors {
    /// Where reading must resume: the lowest shard cursor (or `routed` without shards).
    pub fn min_position(&self) -> Position {
        self.shards
            .iter()
            .map(|c| c.position)
            .min()
            .unwrap_or(self.routed)
            .min(self.routed)
    }
}

/// Hands each batch to every consumer's [`MemoryQueue`]. The [`Appender`] given to scrape loops.
#[derive(Debug, Default)]
pub struct Fanout {
    /// The consumers' queues (invariant 5: detached ones are pruned by the next append).
    outputs: RwLock<Vec<Arc<Shared>>>,
}

/// One consumer's bounded in-memory queue (the consumer end).
#[derive(Debug)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the consumer: a batch was queued, or the queue was closed.
    ready: Notify,
    capacity_samples: usize,
    /// Samples lost because the queue was full.
    dropped_full: Counter,
    /// Samples refused after [`Fanout::close`].
    dropped_closed: Counter,
    /// The consumer end was dropped: the queue is no longer fed (invariant 5).
    detached: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<(Position, Arc<Batch>)>,
    queued_samples: usize,
    next_position: u64,
    closed: bool,
    /// Whether the last item is a definitions-only batch made by an overflow (merge target).
    tail_is_definitions: bool,
}

impl Fanout {
    /// A fan-out to no one (append drops silently until outputs are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a consumer whose queue holds up to `capacity_samples` samples. Samples that do not
    /// fit are counted in `dropped_full`; samples appended after [`Fanout::close`] in
    /// `dropped_closed`.
    /// Its batches start with the next append; dropping the queue detaches it (invariant 5).
    pub fn add_output(
        &self,
        capacity_samples: usize,
        dropped_full: Counter,
        dropped_closed: Counter,
    ) -> MemoryQueue {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity_samples,
            dropped_full,
            dropped_closed,
            detached: AtomicBool::new(false),
        });
        self.write_outputs().push(shared.clone());
        MemoryQueue { shared }
    }

    /// Ends every queue: appends are refused from now on; consumers drain what is queued,
    /// then their `next` returns `None`.
    pub fn close(&self) {
        for out in self.read_outputs().iter() {
            out.lock().closed = true;
            out.ready.notify_one();
        }
    }

    /// Empties every queue, counting what they held as refused (`dropped_closed`); returns
    /// the number of samples thrown away. For a shutdown whose deadline passed.
    pub fn discard_queued(&self) -> usize {
        self.read_outputs().iter().map(|out| out.discard()).sum()
    }

    fn read_outputs(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Shared>>> {
        // Pushes and retains cannot leave the list half-edited, so poisoning is ignored.
        self.outputs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_outputs(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Shared>>> {
        self.outputs.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Appender for Fanout {
    fn append(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        let mut pruned = false;
        for out in self.read_outputs().iter() {
            if out.detached.load(Ordering::Acquire) {
                pruned = true;
            } else {
                out.push(&batch);
            }
        }
        if pruned {
            self.write_outputs()
                .retain(|out| !out.detached.load(Ordering::Acquire));
        }
    }
}

impl MemoryQueue {
    /// Removes everything still queued and returns the number of samples it held (for
    /// counting what a shutdown lost).
    pub fn drain(&self) -> usize {
        self.shared.drain()
    }

    /// Samples currently queued.
    pub fn queued_samples(&self) -> usize {
        self.shared.lock().queued_samples
    }
}

impl BatchSource for MemoryQueue {
    async fn next(&mut self) -> Option<(Position, Arc<Batch>)> {
        loop {
            {
                let mut st = self.shared.lock();
                if let Some(item) = st.items.pop_front() {
                    st.queued_samples -= item.1.samples.len();
                    if st.items.is_empty() {
                        st.tail_is_definitions = false;
                    }
                    return Some(item);
                }
                if st.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when no one waits, so a push between the unlock
            // above and this await is not missed. Dropping this future loses nothing.
            self.shared.ready.notified().await;
        }
    }
}

impl Drop for MemoryQueue {
    fn drop(&mut self) {
        // No one reads this queue any more (invariant 5).
        self.shared.detached.store(true, Ordering::Release);
        self.shared.discard();
    }
}

impl Shared {
    /// Empties the queue; returns the number of samples it held.
    fn drain(&self) -> usize {
        let mut st = self.lock();
        let n = st.queued_samples;
        st.items.clear();
        st.queued_samples = 0;
        st.tail_is_definitions = false;
        n
    }

    /// Empties the queue, counting what it held as refused.
    fn discard(&self) -> usize {
        let n = self.drain();
        self.dropped_closed.inc_by(n as u64);
        n
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves the state consistent (no multi-step edits
        // can be interrupted halfway by a panic), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, batch: &Arc<Batch>) {
        let n = batch.samples.len();
        let mut st = self.lock();
        if st.closed || self.detached.load(Ordering::Acquire) {
            self.dropped_closed.inc_by(n as u64);
            return;
        }
        let fits =
            n == 0 || st.queued_samples == 0 || st.queued_samples + n <= self.capacity_samples;
        if fits {
            let pos = Position(st.next_position);
            st.next_position += 1;
            st.items.push_back((pos, batch.clone()));
            st.queued_samples += n;
            st.tail_is_definitions = false;
        } else {
            self.dropped_full.inc_by(n as u64);
            if batch.series.is_empty() && batch.gone.is_empty() {
                return;
            }
            keep_definitions(&mut st, batch);
        }
        drop(st);
        self.ready.notify_one();
    }
}

/// Queues the definitions and `gone` refs of a batch whose samples were dropped, merging them
/// into a definitions-only tail (invariant 2).
fn keep_definitions(st: &mut State, batch: &Batch) {
    if st.tail_is_definitions
        && let Some((_, tail)) = st.items.back_mut()
    {
        let tail = Arc::make_mut(tail);
        if !batch.gone.is_empty() {
            let gone: HashSet<_> = batch.gone.iter().copied().collect();
            let before = tail.series.len();
            // Defined and gone without a sample kept in between: forget both.
            let mut cancelled = HashSet::new();
            tail.series.retain(|(r, _)| {
                let keep = !gone.contains(r);
                if !keep {
                    cancelled.insert(*r);
                }
                keep
            });
            if tail.series.len() == before {
                tail.gone.extend_from_slice(&batch.gone);
            } else {
                tail.gone
                    .extend(batch.gone.iter().filter(|r| !cancelled.contains(r)));
            }
        }
        tail.series.extend(batch.series.iter().cloned());
        return;
    }
    let pos = Position(st.next_position);
    st.next_position += 1;
    let definitions = Batch {
        series: batch.series.clone(),
        samples: Vec::new(),
        gone: batch.gone.clone(),
    };
    st.items.push_back((pos, Arc::new(definitions)));
    st.tail_is_definitions = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{Sample, SeriesRef};
    use crate::labels::Labels;

    fn batch(series: &[u64], samples: &[u64], gone: &[u64]) -> Batch {
        Batch {
            series: series
                .iter()
                .map(|r| {
                    (
                        SeriesRef(*r),
                        Labels::from_pairs([("__name__", format!("m{r}"))]),
                    )
                })
                .collect(),
            samples: samples
                .iter()
                .map(|r| Sample {
                    series: SeriesRef(*r),
                    timestamp_ms: 1,
                    value: 1.0,
                })
                .collect(),
            gone: gone.iter().map(|r| SeriesRef(*r)).collect(),
        }
    }

    fn refs(list: &[(SeriesRef, Labels)]) -> Vec<u64> {
        list.iter().map(|(r, _)| r.0).collect()
    }

    /// Everything queued right now, without waiting.
    fn drain_now(q: &mut MemoryQueue) -> Vec<(Position, Arc<Batch>)> {
        let mut out = Vec::new();
        let mut st = q.shared.lock();
        while let Some(item) = st.items.pop_front() {
            st.queued_samples -= item.1.samples.len();
            out.push(item);
        }
        st.tail_is_definitions = false;
        out
    }

    #[test]
    fn a_full_queue_drops_samples_but_keeps_definitions_merged_and_cancelled() {
        let fanout = Fanout::new();
        let full = Counter::default();
        let mut q = fanout.add_output(4, full.clone(), Counter::default());
        fanout.append(batch(&[1, 2], &[1, 2, 1], &[])); // 3 of 4
        fanout.append(batch(&[3], &[3, 3], &[])); // does not fit: keep series 3
        fanout.append(batch(&[4], &[4, 4], &[1])); // keep 4, gone 1 (defined earlier: kept)
        fanout.append(batch(&[], &[2, 2], &[3])); // 3 was defined in the tail: cancelled
        fanout.append(batch(&[], &[2], &[])); // fits: 4 of 4
        assert_eq!(full.get(), 6);
        assert_eq!(q.queued_samples(), 4);

        let items = drain_now(&mut q);
        let positions: Vec<_> = items.iter().map(|(p, _)| p.0).collect();
        assert_eq!(positions, [0, 1, 2]);
        let defs = &items[1].1;
        assert!(defs.samples.is_empty());
        assert_eq!(refs(&defs.series), [4]);
        assert_eq!(defs.gone, [SeriesRef(1)]);
        assert_eq!(items[2].1.samples.len(), 1);
    }

    #[test]
    fn an_idle_queue_takes_a_batch_larger_than_its_capacity() {
        let fanout = Fanout::new();
        let full = Counter::default();
        let mut q = fanout.add_output(2, full.clone(), Counter::default());
        fanout.append(batch(&[1], &[1, 1, 1, 1, 1], &[]));
        assert_eq!(full.get(), 0);
        assert_eq!(drain_now(&mut q).len(), 1);
    }

    #[test]
    fn consumers_are_independent() {
        let fanout = Fanout::new();
        let (full_a, full_b) = (Counter::default(), Counter::default());
        let mut a = fanout.add_output(1, full_a.clone(), Counter::default());
        let mut b = fanout.add_output(100, full_b.clone(), Counter::default());
        for _ in 0..10 {
            fanout.append(batch(&[], &[1], &[]));
        }
        assert_eq!((full_a.get(), full_b.get()), (9, 0));
        assert_eq!(drain_now(&mut a).len(), 1);
        assert_eq!(drain_now(&mut b).len(), 10);
    }

    #[test]
    fn consumers_come_and_go() {
        let fanout = Fanout::new();
        let closed = Counter::default();
        let early = fanout.add_output(100, Counter::default(), closed.clone());
        fanout.append(batch(&[1], &[1], &[]));
        let mut late = fanout.add_output(100, Counter::default(), Counter::default());
        fanout.append(batch(&[], &[1, 1], &[]));
        assert_eq!(drain_now(&mut late).len(), 1, "only what came after it");
        assert_eq!(early.queued_samples(), 3);
        drop(early);
        assert_eq!(closed.get(), 3, "what a dropped consumer held is counted");
        fanout.append(batch(&[], &[1], &[]));
        assert_eq!(fanout.read_outputs().len(), 1, "the dropped one is pruned");
        assert_eq!(closed.get(), 3, "and no longer fed");
        assert_eq!(drain_now(&mut late).len(), 1);
    }

    #[tokio::test]
    async fn next_waits_for_a_batch_and_ends_after_close_and_drain() {
        let fanout = Fanout::new();
        let closed = Counter::default();
        let mut q = fanout.add_output(10, Counter::default(), closed.clone());
        let fanout = Arc::new(fanout);
        let producer = fanout.clone();
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some((pos, b)) = q.next().await {
                got.push((pos.0, b.samples.len()));
            }
            got
        });
        producer.append(batch(&[1], &[1], &[]));
        producer.append(batch(&[], &[1, 1], &[]));
        producer.close();
        producer.append(batch(&[], &[1, 1, 1], &[]));
        let got = consumer.await.unwrap_or_default();
        assert_eq!(got, [(0, 1), (1, 2)]);
        assert_eq!(closed.get(), 3);
    }

    #[tokio::test]
    async fn a_cancelled_next_loses_nothing() {
        let fanout = Fanout::new();
        let mut q = fanout.add_output(10, Counter::default(), Counter::default());
        // Poll once (nothing queued), then drop the future.
        let pending = tokio::time::timeout(std::time::Duration::ZERO, q.next()).await;
        assert!(pending.is_err());
        fanout.append(batch(&[1], &[1], &[]));
        let got = q.next().await.map(|(p, _)| p);
        assert_eq!(got, Some(Position(0)));
    }
}
