use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prost::Message;

use super::*;
use crate::append::{Appender, Sample};
use crate::config::QueueConfig;
use crate::remote::metrics::EndpointMetrics;
use crate::remote::prompb;
use crate::remote::source::{CursorStore, Cursors, EndpointInput, Fanout, ShardCursor};
use crate::remote::write_client::SendError;

/// A write client that decodes and records what it is sent, and can be told to fail. Also
/// used by the metadata tests.
#[derive(Clone, Default)]
pub(in crate::remote) struct Fake {
    inner: Arc<FakeInner>,
}

#[derive(Default)]
struct FakeInner {
    received: Mutex<Vec<prompb::WriteRequest>>,
    script: Mutex<VecDeque<Step>>,
    attempts: Mutex<usize>,
}

pub(in crate::remote) enum Step {
    Fail(fn() -> SendError),
    /// Fail after this much (simulated) latency.
    FailAfter(Duration, fn() -> SendError),
    Hang,
}

impl WriteClient for Fake {
    async fn store(&self, body: Bytes) -> Result<(), SendError> {
        *self
            .inner
            .attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
        // Let other shards run in between, to mix their requests.
        for _ in 0..(rand::random::<u8>() % 4) {
            tokio::task::yield_now().await;
        }
        let step = self
            .inner
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        match step {
            Some(Step::Fail(error)) => return Err(error()),
            Some(Step::FailAfter(latency, error)) => {
                tokio::time::sleep(latency).await;
                return Err(error());
            }
            Some(Step::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .unwrap_or_else(|e| panic!("not snappy: {e}"));
        let req = prompb::WriteRequest::decode(raw.as_slice())
            .unwrap_or_else(|e| panic!("not a WriteRequest: {e}"));
        self.inner
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req);
        Ok(())
    }
}

impl Fake {
    pub(in crate::remote) fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.inner
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(steps);
    }

    /// Forgets the scripted steps not used yet.
    pub(in crate::remote) fn script_clear(&self) {
        self.inner
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub(in crate::remote) fn requests(&self) -> Vec<prompb::WriteRequest> {
        self.inner
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Timestamps received per series (labels as text), in arrival order.
    fn by_series(&self) -> BTreeMap<String, Vec<i64>> {
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for req in self.requests() {
            for ts in req.timeseries {
                let key = ts
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",");
                out.entry(key)
                    .or_default()
                    .extend(ts.samples.iter().map(|s| s.timestamp));
            }
        }
        out
    }

    fn received_samples(&self) -> usize {
        self.requests()
            .iter()
            .flat_map(|r| &r.timeseries)
            .map(|t| t.samples.len())
            .sum()
    }
}

pub(in crate::remote) fn config(
    min_shards: usize,
    max_samples_per_send: usize,
) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url: "http://127.0.0.1:1/write".into(),
        name: "test".into(),
        queue_config: QueueConfig {
            min_shards,
            max_shards: min_shards.max(8),
            max_samples_per_send,
            capacity: max_samples_per_send * 3,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn labels(r: u64) -> Labels {
    Labels::from_pairs([("__name__", "m".to_owned()), ("id", r.to_string())])
}

/// A batch defining `define`, with one sample at `ts` for each of `sample`, ending `gone`.
fn batch(define: &[u64], sample: &[u64], ts: i64, gone: &[u64]) -> Batch {
    Batch {
        series: define.iter().map(|r| (SeriesRef(*r), labels(*r))).collect(),
        samples: sample
            .iter()
            .map(|r| Sample {
                series: SeriesRef(*r),
                timestamp_ms: ts,
                value: ts as f64,
            })
            .collect(),
        gone: gone.iter().map(|r| SeriesRef(*r)).collect(),
    }
}

fn reader(cfg: &RemoteWriteConfig, external: &Labels, fake: &Fake) -> Reader<Fake> {
    Reader::new(
        cfg,
        external,
        fake.clone(),
        EndpointMetrics::unregistered(),
        QueueTuning::default(),
    )
}

#[tokio::test]
async fn wire_labels_are_sorted_with_external_labels() {
    let fake = Fake::default();
    let cfg = config(1, 10);
    let mut r = reader(
        &cfg,
        &Labels::from_pairs([("cluster", "c1"), ("id", "ignored")]),
        &fake,
    );
    r.start_shards(1);
    r.route(Position(0), &batch(&[7], &[7], 1, &[])).await;
    r.stop_shards().await;
    let got: Vec<_> = fake.requests()[0].timeseries[0]
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    let want = [("__name__", "m"), ("cluster", "c1"), ("id", "7")];
    assert_eq!(got, want.map(|(n, v)| (n.to_owned(), v.to_owned())));
}

#[tokio::test]
async fn unknown_series_are_counted_and_gone_series_forgotten() {
    let fake = Fake::default();
    let cfg = config(2, 10);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(2);
    r.route(Position(0), &batch(&[1, 2, 3], &[1, 2, 3, 4], 1, &[]))
        .await;
    r.route(Position(1), &batch(&[], &[1, 2, 3], 2, &[1, 2]))
        .await;
    assert_eq!(r.series.len(), 1);
    r.route(Position(2), &batch(&[], &[1, 3], 3, &[3])).await;
    assert!(r.series.is_empty());
    r.stop_shards().await;
    assert_eq!(r.sender.metrics.dropped.unknown_series.get(), 2);
    assert_eq!(fake.received_samples(), 7);
    assert_eq!(r.sender.metrics.samples_sent.get(), 7);
}

#[tokio::test]
async fn order_per_series_holds_across_shards_and_reshards() {
    let fake = Fake::default();
    let cfg = config(1, 7);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(1);
    let all: Vec<u64> = (1..=40).collect();
    for ts in 1..=60 {
        let define = if ts == 1 { all.as_slice() } else { &[] };
        let position = Position(ts as u64);
        r.route(position, &batch(define, &all, ts, &[])).await;
        // Reshard up and down in the middle of the stream.
        match ts {
            15 => r.reshard(4).await,
            30 => r.reshard(2).await,
            45 => r.reshard(5).await,
            _ => {}
        }
    }
    r.stop_shards().await;
    let by_series = fake.by_series();
    assert_eq!(by_series.len(), 40);
    let expected: Vec<i64> = (1..=60).collect();
    for (series, timestamps) in by_series {
        assert_eq!(timestamps, expected, "series {series}");
    }
    assert!(fake.requests().iter().all(|r| r.timeseries.len() <= 7));
}

#[tokio::test]
async fn retryable_failures_are_retried_until_delivered() {
    let fake = Fake::default();
    fake.script([
        Step::Fail(|| SendError::Server {
            status: http::StatusCode::BAD_GATEWAY,
            retry_after: None,
            message: "down".into(),
        }),
        Step::Fail(|| SendError::Timeout(Duration::from_secs(1))),
        Step::Fail(|| SendError::RateLimited {
            retry_after: Some(Duration::from_millis(1)),
            message: "slow down".into(),
        }),
    ]);
    let mut cfg = config(1, 10);
    cfg.queue_config.retry_on_http_429 = true;
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(1);
    r.route(Position(0), &batch(&[1, 2], &[1, 2], 5, &[])).await;
    r.stop_shards().await;
    let m = &r.sender.metrics;
    assert_eq!(fake.received_samples(), 2);
    assert_eq!((m.samples_sent.get(), m.samples_retried.get()), (2, 6));
    assert_eq!(m.requests.server_error.get() + m.requests.timeout.get(), 2);
    assert_eq!(m.requests.too_many_requests.get(), 1);
    assert!(!r.sender.is_retrying());
}

#[tokio::test]
async fn refusals_drop_the_batch_and_count_it() {
    let fake = Fake::default();
    fake.script([
        Step::Fail(|| SendError::Rejected {
            status: http::StatusCode::BAD_REQUEST,
            message: "out of order".into(),
        }),
        Step::Fail(|| SendError::RateLimited {
            retry_after: None,
            message: "slow down".into(),
        }),
    ]);
    let cfg = config(1, 2);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(1);
    r.route(Position(0), &batch(&[1, 2, 3], &[1, 2, 3], 5, &[]))
        .await;
    r.route(Position(1), &batch(&[], &[1, 2, 3], 6, &[])).await;
    r.stop_shards().await;
    let m = &r.sender.metrics;
    assert_eq!(m.failed.rejected.get(), 2);
    assert_eq!(m.failed.rate_limited.get(), 2);
    assert_eq!(m.samples_sent.get(), 2);
    assert_eq!(fake.received_samples(), 2);
    assert_eq!(m.samples_retried.get(), 0);
}

#[tokio::test]
async fn a_hard_stop_counts_everything_unsent_as_dropped() {
    let fake = Fake::default();
    fake.script([Step::Hang]);
    let cfg = config(1, 3);
    let fanout = Fanout::new();
    let source = fanout.add_output(1000, Counter::default(), Counter::default());
    let metrics = EndpointMetrics::unregistered();
    let handle = spawn_queue(
        &cfg,
        &Labels::empty(),
        EndpointInput {
            source,
            resume: None,
            store: None,
        },
        fake.clone(),
        metrics.clone(),
        QueueTuning::default(),
    );
    fanout.append(batch(&[1, 2], &[1, 2], 1, &[]));
    fanout.append(batch(&[], &[1, 2], 2, &[]));
    fanout.append(batch(&[], &[1, 2], 3, &[]));
    fanout.close();
    // The first request hangs, so nothing can be sent: wait until it is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *fake
        .inner
        .attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request was made"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop_sending();
    let progress = handle.progress();
    handle.join().await;
    assert_eq!(metrics.dropped.shutdown.get(), 6);
    assert_eq!(metrics.samples_sent.get(), 0);
    assert_eq!(metrics.samples_pending.get(), 0);
    // Nothing was sent, but everything is handled (dropped): progress moved past it all.
    assert_eq!(*progress.borrow(), Position(3));
}

#[tokio::test]
async fn progress_reaches_the_end_once_everything_is_sent() {
    let fake = Fake::default();
    let cfg = config(3, 4);
    let fanout = Fanout::new();
    let source = fanout.add_output(1000, Counter::default(), Counter::default());
    let handle = spawn_queue(
        &cfg,
        &Labels::empty(),
        EndpointInput {
            source,
            resume: None,
            store: None,
        },
        fake.clone(),
        EndpointMetrics::unregistered(),
        QueueTuning::default(),
    );
    let all: Vec<u64> = (1..=10).collect();
    fanout.append(batch(&all, &all, 1, &[]));
    for ts in 2..=5 {
        fanout.append(batch(&[], &all, ts, &[]));
    }
    fanout.close();
    let progress = handle.progress();
    handle.join().await;
    assert_eq!(fake.received_samples(), 50);
    assert_eq!(*progress.borrow(), Position(5));
}

use crate::telemetry::time::unix_ms as now_ms;

#[tokio::test]
async fn samples_past_the_age_limit_are_dropped_when_routed_and_when_retried() {
    let fake = Fake::default();
    // The first attempt takes longer than the age limit, then fails: by the retry, the
    // samples that were fresh are too old.
    fake.script([Step::FailAfter(Duration::from_millis(500), || {
        SendError::Server {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None,
            message: "busy".into(),
        }
    })]);
    let mut cfg = config(1, 10);
    cfg.queue_config.sample_age_limit = Duration::from_millis(300);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(1);
    let fresh = now_ms();
    let mut b = batch(&[1, 2, 3], &[1, 2], fresh, &[]);
    // Already an hour old when routed.
    b.samples.push(Sample {
        series: SeriesRef(3),
        timestamp_ms: fresh - 3_600_000,
        value: 1.0,
    });
    r.route(Position(0), &b).await;
    r.stop_shards().await;
    let m = &r.sender.metrics;
    assert_eq!(m.dropped.too_old.get(), 3);
    assert_eq!(m.samples_sent.get(), 0);
    assert_eq!(fake.received_samples(), 0);
    assert!(!r.sender.is_retrying());
}

#[tokio::test]
async fn retry_after_on_a_server_error_is_honoured() {
    let fake = Fake::default();
    fake.script([Step::Fail(|| SendError::Server {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        retry_after: Some(Duration::from_millis(300)),
        message: "maintenance".into(),
    })]);
    let cfg = config(1, 10);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(1);
    r.route(Position(0), &batch(&[1], &[1], 1, &[])).await;
    let began = tokio::time::Instant::now();
    r.stop_shards().await;
    // Correctness, not speed: backoff alone (at most 5 ms here) would have retried sooner.
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(fake.received_samples(), 1);
}

#[tokio::test]
async fn a_series_back_under_a_new_ref_keeps_its_shard_and_its_order() {
    let fake = Fake::default();
    let cfg = config(8, 3);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(8);
    // Ref 1 and ref 101 carry the same labels: one series, continued by a new scrape loop.
    let same = |r: u64| (SeriesRef(r), labels(1));
    let sample = |r: u64, ts: i64| Sample {
        series: SeriesRef(r),
        timestamp_ms: ts,
        value: 0.0,
    };
    let first = Batch {
        series: vec![same(1)],
        samples: (1..=20).map(|ts| sample(1, ts)).collect(),
        gone: vec![],
    };
    r.route(Position(0), &first).await;
    let second = Batch {
        series: vec![same(101)],
        samples: (21..=40).map(|ts| sample(101, ts)).collect(),
        gone: vec![SeriesRef(1)],
    };
    let hash = |r: &Reader<Fake>, id: u64| {
        r.series
            .get_ref(SeriesRef(id))
            .and_then(|p| p.as_ref().map(|p| p.shard_hash))
    };
    r.route(Position(1), &second).await;
    assert_eq!(hash(&r, 101), Some(wire_hash(&labels(1), &Labels::empty())));
    r.stop_shards().await;
    let by_series = fake.by_series();
    assert_eq!(by_series.len(), 1);
    let got: Vec<i64> = by_series.into_values().flatten().collect();
    assert_eq!(got, (1..=40).collect::<Vec<_>>());
}

/// A cursor store that records what it is given. With `offers_durable`, an offered cursor
/// counts as durable at once (as if written before the next request); without, only commits do.
#[derive(Default)]
struct Recorded {
    commits: Mutex<Vec<Cursors>>,
    offers: Mutex<Vec<Cursors>>,
    offers_durable: bool,
}

impl CursorStore for Recorded {
    fn commit(
        &self,
        cursors: Cursors,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cursors);
        Box::pin(async {})
    }

    fn offer(&self, cursors: Cursors) {
        self.offers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cursors);
    }

    fn durable(&self) -> Option<Cursors> {
        let commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        let offered = offers.last().filter(|_| self.offers_durable);
        commits
            .last()
            .into_iter()
            .chain(offered)
            .max_by_key(|c| c.routed)
            .cloned()
    }
}

impl Recorded {
    fn last(&self) -> Option<Cursors> {
        let commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        commits
            .last()
            .cloned()
            .into_iter()
            .chain(offers.last().cloned())
            .max_by_key(|c| c.routed)
    }
}

#[tokio::test]
async fn a_request_never_holds_two_samples_of_one_series() {
    let fake = Fake::default();
    let cfg = config(1, 100);
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.start_shards(1);
    let all: Vec<u64> = (1..=5).collect();
    for ts in 1..=10 {
        let define = if ts == 1 { all.as_slice() } else { &[] };
        r.route(Position(ts as u64), &batch(define, &all, ts, &[]))
            .await;
    }
    r.stop_shards().await;
    assert_eq!(fake.received_samples(), 50);
    for req in fake.requests() {
        for ts in &req.timeseries {
            assert_eq!(ts.samples.len(), 1, "one sample per series per request");
        }
    }
    assert_eq!(fake.requests().len(), 10);
}

#[tokio::test]
async fn a_shard_waits_for_a_saved_cursor_only_before_sending_a_series_again() {
    for offers_durable in [false, true] {
        let fake = Fake::default();
        let cfg = config(1, 4);
        let store = Arc::new(Recorded {
            offers_durable,
            ..Recorded::default()
        });
        let mut r = reader(&cfg, &Labels::empty(), &fake);
        r.resume_from(
            Some(Cursors {
                shards: Vec::new(),
                routed: Position(0),
            }),
            Some(store.clone()),
        );
        // Three scrapes of 8 series: two requests of 4 distinct series each per scrape.
        let all: Vec<u64> = (1..=8).collect();
        for ts in 0..3 {
            let define = if ts == 0 { all.as_slice() } else { &[] };
            r.route(Position(ts as u64), &batch(define, &all, ts, &[]))
                .await;
        }
        r.stop_shards().await;
        assert_eq!(fake.received_samples(), 24);
        assert_eq!(fake.requests().len(), 6);
        let commits = store
            .commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let offers = store.offers.lock().unwrap_or_else(|e| e.into_inner()).len();
        // Every request's progress is offered (and the reader offers after each batch).
        assert_eq!(offers, 6 + 3);
        if offers_durable {
            assert_eq!(commits, 0, "what repeats was already durable");
        } else {
            // The second scrape's first request repeats series of the first scrape's (not
            // durable): one commit; the third's first request again. The other requests hold
            // series not sent since the last commit.
            assert_eq!(commits, 2);
        }
    }
}

#[tokio::test]
async fn cursors_follow_delivery_and_are_offered_after_each_request() {
    let fake = Fake::default();
    let cfg = config(2, 3);
    let store = Arc::new(Recorded::default());
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.resume_from(
        Some(Cursors {
            shards: Vec::new(),
            routed: Position(10),
        }),
        Some(store.clone()),
    );
    assert_eq!(r.shards.len(), 2, "min_shards for a fresh start");
    let all: Vec<u64> = (1..=8).collect();
    for ts in 10..15 {
        let define = if ts == 10 { all.as_slice() } else { &[] };
        r.route(Position(ts as u64), &batch(define, &all, ts, &[]))
            .await;
    }
    r.stop_shards().await;
    assert_eq!(fake.received_samples(), 40);
    let commits = store
        .offers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(!commits.is_empty());
    let done = r.progress.snapshot();
    for c in &commits {
        // Shards commit concurrently, so commits may arrive out of order (stores keep the
        // highest), but none is past what was delivered.
        for (a, b) in c.shards.iter().zip(&done.shards) {
            assert!(a <= b, "{a:?} past {b:?}");
        }
    }
    let end = ShardCursor {
        position: Position(15),
        skip: 0,
    };
    assert_eq!(done.shards, vec![end; 2]);
}

/// Cursors saved by a previous run with 2 shards: shard 0 delivered its first sample of batch
/// 2, shard 1 everything before batch 4; the reader had routed up to batch 5.
fn saved_by_two_shards() -> Cursors {
    Cursors {
        shards: vec![
            ShardCursor {
                position: Position(2),
                skip: 1,
            },
            ShardCursor {
                position: Position(4),
                skip: 0,
            },
        ],
        routed: Position(5),
    }
}

#[tokio::test]
async fn resuming_skips_what_each_shard_delivered_and_counts_what_is_resent() {
    let cfg = config(1, 4);
    let all: Vec<u64> = (1..=6).collect();
    // Saved by a previous run with 2 shards: shard 0 delivered its first sample of batch 2,
    // shard 1 everything before batch 4; the reader had routed up to batch 5.
    let saved = saved_by_two_shards();
    let fake = Fake::default();
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.resume_from(Some(saved.clone()), Some(Arc::new(Recorded::default())));
    assert_eq!(r.shards.len(), 2, "as many shards as were saved");
    for ts in 2..8 {
        // A resumed reader defines every live series with its first batch.
        let define = if ts == 2 { all.as_slice() } else { &[] };
        r.route(Position(ts), &batch(define, &all, ts as i64, &[]))
            .await;
    }
    assert!(r.resume.is_none(), "past every saved cursor");
    // Where each series goes and its index in its shard (batch order).
    let mut index_in_shard = [0u32; 2];
    let mut placed = Vec::new();
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for id in &all {
        let prepared = r.series.get_ref(SeriesRef(*id)).and_then(|p| p.as_ref());
        let shard = prepared.map_or(0, |p| (p.shard_hash % 2) as usize);
        let index = index_in_shard[shard];
        index_in_shard[shard] += 1;
        placed.push((*id, shard, index));
        let cursor = saved.shards[shard];
        let ts: Vec<i64> = (2..8)
            .filter(|p| {
                ShardCursor {
                    position: Position(*p as u64),
                    skip: index,
                } >= cursor
            })
            .collect();
        expected.insert(format!("__name__=m,id={id}"), ts);
    }
    // Resent: per shard, the samples after its cursor before `routed`, up to the first
    // repeated series (a shard never sends a series twice while its cursor is not saved).
    let mut resent = 0;
    let mut window = [(usize::MAX, Vec::new()), (usize::MAX, Vec::new())];
    for p in 2..5u64 {
        for &(id, shard, index) in &placed {
            let here = ShardCursor {
                position: Position(p),
                skip: index,
            };
            let (left, seen) = &mut window[shard];
            if here < saved.shards[shard] || *left == 0 {
                continue;
            }
            if seen.contains(&id) {
                *left = 0;
            } else {
                seen.push(id);
                *left -= 1;
                resent += 1;
            }
        }
    }
    r.stop_shards().await;
    assert_eq!(fake.by_series(), expected);
    assert_eq!(r.sender.metrics.samples_resent.get(), resent);
}

#[tokio::test]
async fn resuming_after_a_routing_change_decides_delivery_with_the_previous_routing() {
    let cfg = config(1, 4);
    let all: Vec<u64> = (1..=6).collect();
    // Saved by a previous run with 2 shards and no external labels (as in the test above).
    let saved = saved_by_two_shards();
    let previous = Routing::new(&cfg, &Labels::empty());
    // This run adds an external label: every series has other wire labels, so other shards.
    let external = Labels::from_pairs([("zone", "b")]);
    let fake = Fake::default();
    let mut r = reader(&cfg, &external, &fake);
    r.resume_from(Some(saved.clone()), Some(Arc::new(Recorded::default())));
    r.resume_with_previous(previous.clone());
    assert!(
        r.resume.as_ref().is_some_and(|r| r.previous.is_some()),
        "the routing differs"
    );
    for ts in 2..8 {
        let define = if ts == 2 { all.as_slice() } else { &[] };
        r.route(Position(ts), &batch(define, &all, ts as i64, &[]))
            .await;
    }
    assert!(r.resume.is_none(), "past every saved cursor");
    // What the previous run delivered, in its terms: its shard and index per series.
    let mut index_in_shard = [0u32; 2];
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut moved = 0;
    for id in &all {
        let hash = previous.prepare(&labels(*id)).map_or(0, |p| p.shard_hash);
        let shard = (hash % 2) as usize;
        let now = r.series.get_ref(SeriesRef(*id)).and_then(|p| p.as_ref());
        if now.is_some_and(|p| (p.shard_hash % 2) as usize != shard) {
            moved += 1;
        }
        let index = index_in_shard[shard];
        index_in_shard[shard] += 1;
        let ts: Vec<i64> = (2..8)
            .filter(|p| {
                ShardCursor {
                    position: Position(*p as u64),
                    skip: index,
                } >= saved.shards[shard]
            })
            .collect();
        expected.insert(format!("__name__=m,id={id},zone=b"), ts);
    }
    assert!(
        moved > 0,
        "some series changed shards (else the test proves nothing)"
    );
    r.stop_shards().await;
    assert_eq!(fake.by_series(), expected);
}

#[tokio::test]
async fn uniform_cursors_at_the_routed_position_resume_with_nothing_in_doubt() {
    let cfg = config(3, 4);
    let at = ShardCursor {
        position: Position(7),
        skip: 0,
    };
    let fake = Fake::default();
    let mut r = reader(&cfg, &Labels::empty(), &fake);
    r.resume_from(
        Some(Cursors {
            shards: vec![at; 5],
            routed: Position(7),
        }),
        Some(Arc::new(Recorded::default())),
    );
    assert_eq!(
        r.shards.len(),
        3,
        "min_shards: the saved layout is not kept"
    );
    assert!(r.resume.is_none() && r.doubt.is_none());
    r.route(Position(7), &batch(&[1, 2], &[1, 2], 7, &[])).await;
    r.stop_shards().await;
    assert_eq!(fake.received_samples(), 2);
    assert_eq!(r.sender.metrics.samples_resent.get(), 0);
}

#[tokio::test]
async fn a_hard_stop_with_a_store_keeps_unsent_samples_for_the_next_run() {
    let fake = Fake::default();
    fake.script([Step::Hang]);
    let cfg = config(1, 3);
    let fanout = Fanout::new();
    let source = fanout.add_output(1000, Counter::default(), Counter::default());
    let metrics = EndpointMetrics::unregistered();
    let store = Arc::new(Recorded::default());
    let handle = spawn_queue(
        &cfg,
        &Labels::empty(),
        EndpointInput {
            source,
            resume: Some(Cursors::default()),
            store: Some(store.clone()),
        },
        fake.clone(),
        metrics.clone(),
        QueueTuning::default(),
    );
    fanout.append(batch(&[1, 2], &[1, 2], 1, &[]));
    fanout.append(batch(&[], &[1, 2], 2, &[]));
    fanout.close();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *fake
        .inner
        .attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop_sending();
    handle.join().await;
    assert_eq!(metrics.dropped.shutdown.get(), 0, "kept on disk, not lost");
    let last = store.last().unwrap_or_default();
    assert_eq!(
        last.shards,
        vec![ShardCursor::default()],
        "the cursor did not move past unsent samples"
    );
}

/// A clock for the series limits that the test moves by hand, in seconds.
fn hand_clock() -> (
    Arc<std::sync::atomic::AtomicU64>,
    super::super::limits::Clock,
) {
    let base = Instant::now();
    let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let at = offset.clone();
    let clock =
        Arc::new(move || base + Duration::from_secs(at.load(std::sync::atomic::Ordering::Relaxed)));
    (offset, clock)
}

/// A reader of `cfg` (with limits) whose limits read `clock`.
fn limited_reader(
    cfg: &RemoteWriteConfig,
    fake: &Fake,
    clock: super::super::limits::Clock,
) -> Reader<Fake> {
    let mut r = reader(cfg, &Labels::empty(), fake);
    r.limits
        .as_mut()
        .expect("the config sets a limit")
        .set_clock(clock);
    r
}

/// Waits (polling, with a deadline) until the fake was asked `n` times.
async fn attempts_reach(fake: &Fake, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *fake
        .inner
        .attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        < n
    {
        assert!(tokio::time::Instant::now() < deadline, "{n} requests");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn series_limits_admit_the_first_series_and_drop_the_samples_of_the_rest() {
    let fake = Fake::default();
    let mut cfg = config(2, 10);
    cfg.max_hourly_series = 3;
    cfg.max_daily_series = 10;
    let (_, clock) = hand_clock();
    let mut r = limited_reader(&cfg, &fake, clock);
    r.start_shards(2);
    let all: Vec<u64> = (1..=5).collect();
    r.route(Position(0), &batch(&all, &all, 1, &[])).await;
    r.route(Position(1), &batch(&[], &all, 2, &[])).await;
    // A series that comes later is refused as well; the admitted ones keep flowing.
    r.route(Position(2), &batch(&[6], &[6, 3, 2, 1], 3, &[]))
        .await;
    r.stop_shards().await;
    let got: Vec<(String, Vec<i64>)> = fake.by_series().into_iter().collect();
    let want: Vec<(String, Vec<i64>)> = (1..=3)
        .map(|id| (format!("__name__=m,id={id}"), vec![1, 2, 3]))
        .collect();
    assert_eq!(got, want);
    let m = &r.sender.metrics;
    assert_eq!(m.dropped.max_hourly_series.get(), 5);
    assert_eq!(m.dropped.max_daily_series.get(), 0);
    assert_eq!(m.samples_sent.get(), 9);
    assert_eq!(
        (m.series_hourly.limit.get(), m.series_hourly.current.get()),
        (3, 3)
    );
    assert_eq!(
        (m.series_daily.limit.get(), m.series_daily.current.get()),
        (10, 3)
    );
    // Without limits nothing is marked or counted.
    let plain = reader(&config(1, 10), &Labels::empty(), &fake);
    assert!(plain.limits.is_none());
    assert_eq!(plain.sender.metrics.series_hourly.limit.get(), 0);
}

#[tokio::test]
async fn refused_series_are_admitted_once_the_window_has_room_and_logged_once_a_minute() {
    use std::sync::atomic::Ordering;
    let capture = crate::telemetry::capture::Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the reader logs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let warnings = || -> Vec<String> {
        capture
            .lines()
            .into_iter()
            .filter(|l| l.contains("series limit reached"))
            .collect()
    };
    let fake = Fake::default();
    let mut cfg = config(1, 10);
    cfg.max_hourly_series = 2;
    let (hand, clock) = hand_clock();
    let mut r = limited_reader(&cfg, &fake, clock);
    r.start_shards(1);
    r.route(Position(0), &batch(&[1, 2, 3], &[1, 2, 3], 0, &[]))
        .await;
    assert_eq!(warnings().len(), 1);
    let line = &warnings()[0];
    for field in ["limit=2", "window=\"hourly\"", "samples=1"] {
        assert!(line.contains(field), "{field} in {line}");
    }
    // Within the minute: held back.
    r.route(Position(1), &batch(&[], &[1, 2, 3], 1, &[])).await;
    assert_eq!(warnings().len(), 1);
    // A minute on: logged again, saying one line was held back. Series 1 goes.
    hand.store(61, Ordering::Relaxed);
    r.route(Position(2), &batch(&[], &[1, 2, 3], 2, &[1])).await;
    assert_eq!(warnings().len(), 2);
    assert!(
        warnings()[1].contains("similar_not_logged=1"),
        "{:?}",
        warnings()
    );
    // An hour after series 1 went it still counts; a second more and it is forgotten: 3
    // takes its place, a new series 4 does not fit.
    hand.store(61 + 3_600, Ordering::Relaxed);
    r.route(Position(3), &batch(&[], &[2, 3], 3, &[])).await;
    hand.store(62 + 3_600, Ordering::Relaxed);
    r.route(Position(4), &batch(&[4], &[2, 3, 4], 4, &[])).await;
    r.route(Position(5), &batch(&[], &[2, 3, 4], 5, &[])).await;
    r.stop_shards().await;
    let by_series = fake.by_series();
    assert_eq!(by_series["__name__=m,id=1"], vec![0, 1, 2]);
    assert_eq!(by_series["__name__=m,id=2"], vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(by_series["__name__=m,id=3"], vec![4, 5]);
    assert!(!by_series.contains_key("__name__=m,id=4"));
    let m = &r.sender.metrics;
    // 3 at 0..=3, 4 at 4 and 5.
    assert_eq!(m.dropped.max_hourly_series.get(), 6);
    assert_eq!(m.series_hourly.current.get(), 2);
}

#[tokio::test]
async fn a_sample_dropped_by_a_series_limit_still_counts_in_its_shard_index() {
    // One shard, one sample per request. Batch 0: series 1 is admitted, 2 and 3 refused.
    // Batch 1 lists 2 and 3 before 1: the request with 1's sample ends at index 3 of the
    // shard's samples of batch 1 (dropped ones counted, as every run counts them).
    let fake = Fake::default();
    let mut cfg = config(1, 1);
    cfg.max_hourly_series = 1;
    let (_, clock) = hand_clock();
    let mut r = limited_reader(&cfg, &fake, clock);
    let store = Arc::new(Recorded::default());
    r.resume_from(Some(Cursors::default()), Some(store));
    r.route(Position(0), &batch(&[1, 2, 3], &[1, 2, 3], 0, &[]))
        .await;
    r.route(Position(1), &batch(&[], &[2, 3, 1], 1, &[])).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.received_samples() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "two samples");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The next request hangs: while it is in flight the cursor is what was delivered.
    fake.script([Step::Hang]);
    r.route(Position(2), &batch(&[], &[1], 2, &[])).await;
    attempts_reach(&fake, 3).await;
    assert_eq!(
        r.progress.snapshot().shards,
        vec![ShardCursor {
            position: Position(1),
            skip: 3,
        }]
    );
    r.sender.hard_stop.cancel();
    r.stop_shards().await;
    assert_eq!(r.sender.metrics.dropped.max_hourly_series.get(), 4);
}
