//! Remote write encoding: the fast encoder (pre-encoded labels, reused buffers) against the
//! straightforward way (build prost messages from label sets, encode, compress).
//!
//! `cargo bench --bench remote`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use scrapelet::append::{Batch, Sample, SeriesRef};
use scrapelet::config::{Config, QueueConfig, RemoteWriteConfig};
use scrapelet::labels::Labels;
use scrapelet::remote::prompb;
use scrapelet::remote::{
    QueueTuning, RemoteMetrics, RemoteWrite, RequestEncoder, SendError, WireSample, WriteClient,
};

/// `n` series shaped like a Kubernetes pod's metrics (8 labels), one sample each.
fn workload(n: usize) -> Vec<(Labels, i64, f64)> {
    (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                (
                    "__name__",
                    format!("http_request_duration_seconds_bucket_{}", i % 20),
                ),
                ("cluster", "prod-eu-1".to_owned()),
                ("container", "api".to_owned()),
                ("instance", format!("10.1.{}.{}:8080", i % 7, i % 250)),
                ("job", "kubernetes-pods".to_owned()),
                ("le", format!("{}", (i % 12) as f64 * 0.25)),
                ("namespace", "shop".to_owned()),
                ("pod", format!("api-7d9f8b6c5-{:05}", i / 20)),
            ]);
            (labels, 1_700_000_000_000 + i as i64, i as f64 * 1.5)
        })
        .collect()
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("remote_write_encode");
    for n in [500usize, 2000] {
        let work = workload(n);
        group.throughput(Throughput::Elements(n as u64));

        // Wire labels are prepared once per series, before any request (not measured); a
        // request encodes them from the series' labels, external labels merged in.
        let external = Labels::from_pairs([("cluster", "c1"), ("replica", "a")]);
        let wire: Vec<WireSample> = work
            .iter()
            .map(|(l, ts, v)| WireSample {
                labels: l.clone(),
                timestamp_ms: *ts,
                value: *v,
            })
            .collect();
        let mut encoder = RequestEncoder::with_external(external);
        group.bench_with_input(BenchmarkId::new("fast", n), &wire, |b, wire| {
            b.iter(|| encoder.encode(wire).map(<[u8]>::len).unwrap_or(0));
        });

        let mut snappy = snap::raw::Encoder::new();
        group.bench_with_input(BenchmarkId::new("prost_messages", n), &work, |b, work| {
            b.iter(|| {
                let req = prompb::WriteRequest {
                    timeseries: work
                        .iter()
                        .map(|(labels, ts, v)| prompb::TimeSeries {
                            labels: labels
                                .iter()
                                .map(|l| prompb::Label {
                                    name: l.name.to_owned(),
                                    value: l.value.to_owned(),
                                })
                                .collect(),
                            samples: vec![prompb::Sample {
                                value: *v,
                                timestamp: *ts,
                            }],
                        })
                        .collect(),
                    metadata: vec![],
                };
                let raw = req.encode_to_vec();
                snappy.compress_vec(&raw).map(|v| v.len()).unwrap_or(0)
            });
        });
    }
    group.finish();
}

/// A write client that accepts everything at once.
struct Discard;

impl WriteClient for Discard {
    async fn store(&self, body: bytes::Bytes) -> Result<(), SendError> {
        std::hint::black_box(body);
        Ok(())
    }
}

/// Appender -> fan-out -> queue (series table, routing) -> shards -> encode + snappy -> a
/// client that discards: the CPU cost per sample of the whole sending side.
fn bench_pipeline(c: &mut Criterion) {
    const SERIES: u64 = 2000;
    const SCRAPES: i64 = 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let work = workload(SERIES as usize);
    let batch = |ts: i64, define: bool| Batch {
        series: if define {
            work.iter()
                .enumerate()
                .map(|(i, (l, _, _))| (SeriesRef(i as u64 + 1), l.clone()))
                .collect()
        } else {
            vec![]
        },
        samples: (1..=SERIES)
            .map(|r| Sample {
                series: SeriesRef(r),
                timestamp_ms: ts,
                value: ts as f64,
            })
            .collect(),
        gone: vec![],
    };
    let scrapes: Vec<Batch> = (1..=SCRAPES).map(|ts| batch(ts, false)).collect();
    let config = Config {
        remote_write: vec![RemoteWriteConfig {
            url: "http://127.0.0.1:1/unused".into(),
            name: "bench".into(),
            queue_config: QueueConfig {
                min_shards: 2,
                max_shards: 2,
                capacity: 100_000,
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut group = c.benchmark_group("remote_write_pipeline");
    group.throughput(Throughput::Elements(SERIES * SCRAPES as u64));
    group.sample_size(20);
    group.bench_function("2000_series_x_20_scrapes", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scrapes = scrapes.clone();
                total += runtime.block_on(async {
                    let metrics = RemoteMetrics::register(&mut Default::default());
                    let remote = RemoteWrite::start_with(
                        &config,
                        false,
                        &metrics,
                        QueueTuning::default(),
                        |_| Ok(Discard),
                    )
                    .unwrap_or_else(|e| panic!("cannot start: {e}"));
                    remote.appender().append(batch(0, true));
                    let started = Instant::now();
                    for s in scrapes {
                        remote.appender().append(s);
                    }
                    remote.shutdown(Duration::from_secs(60)).await;
                    started.elapsed()
                });
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_pipeline);
criterion_main!(benches);
