//! The write-ahead buffer: append throughput (encode + one write to the page cache per
//! batch), replay throughput (read + checksum + decode), and bytes per sample on a workload
//! shaped like node exporter's. `cargo bench --bench buffer`
//!
//! Side by side with Prometheus agent mode (bytes per sample on disk) and the memory of a
//! large replay: `cargo bench --bench buffer_side_by_side`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use scrapelet::append::{Batch, Sample, SeriesRef};
use scrapelet::buffer::{Event, Position};
use scrapelet::config::BufferConfig;
use scrapelet::labels::Labels;
use scrapelet::wal::{Decoded, Decoder, Encoder, KIND_BATCH, KIND_SNAPSHOT, Wal};

/// Deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `scrapes` batches of `series` series shaped like node exporter's: a third counters that
/// grow by small steps (some in 0.01 s units), a third gauges that move a little, a third
/// constants (info, states, limits). The first batch defines the series.
pub fn node_like(series: usize, scrapes: usize) -> Vec<Batch> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut values: Vec<f64> = (0..series).map(|i| (i * 1000) as f64).collect();
    let mut out = Vec::with_capacity(scrapes);
    for k in 0..scrapes {
        let ts = 1_700_000_000_000 + k as i64 * 15_000;
        let series_defs = if k == 0 {
            (0..series)
                .map(|i| {
                    (
                        SeriesRef(i as u64 + 1),
                        Labels::from_pairs([
                            ("__name__", format!("node_metric_{}", i / 8)),
                            ("cpu", format!("{}", i % 8)),
                            ("instance", "10.0.0.1:9100".to_owned()),
                            ("job", "node".to_owned()),
                        ]),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let samples = (0..series)
            .map(|i| {
                let v = &mut values[i];
                match i % 6 {
                    0 => *v += (rng.next() % 1000) as f64,
                    1 => *v = ((*v * 100.0).round() + (rng.next() % 1500) as f64) / 100.0,
                    2 => *v += (rng.next() % 3) as f64,
                    3 => *v = 8e9 + (rng.next() % 1_000_000) as f64 * 4096.0,
                    4 => *v = (rng.next() % 100) as f64 / 100.0,
                    _ => {}
                }
                Sample {
                    series: SeriesRef(i as u64 + 1),
                    timestamp_ms: ts,
                    value: *v,
                }
            })
            .collect();
        out.push(Batch {
            series: series_defs,
            samples,
            gone: Vec::new(),
        });
    }
    out
}

fn bench_codec(c: &mut Criterion) {
    let batches = node_like(1000, 100);
    let mut group = c.benchmark_group("buffer_codec");
    group.throughput(Throughput::Elements(1000));
    let mut enc = Encoder::default();
    let mut buf = Vec::new();
    enc.batch(&batches[0], &mut buf);
    let mut k = 1;
    group.bench_function("encode_1000", |b| {
        b.iter(|| {
            k = k % 99 + 1;
            enc.batch(&batches[k], &mut buf);
            buf.len()
        })
    });
    // Bytes per sample in steady state (printed once; the figure, not a timing).
    let (mut e, mut total, mut samples) = (Encoder::default(), 0usize, 0usize);
    for (i, b) in batches.iter().enumerate() {
        e.batch(b, &mut buf);
        if i > 0 {
            total += buf.len() + 13;
            samples += b.samples.len();
        }
    }
    println!(
        "buffer codec, node-like workload: {:.3} bytes per sample (record frame included)",
        total as f64 / samples as f64
    );
    let records: Vec<Vec<u8>> = {
        let mut e = Encoder::default();
        batches
            .iter()
            .map(|b| {
                let mut r = Vec::new();
                e.batch(b, &mut r);
                r
            })
            .collect()
    };
    group.throughput(Throughput::Elements(100 * 1000));
    group.bench_function("decode_segment_100x1000", |b| {
        b.iter(|| {
            let mut d = Decoder::default();
            let mut out = Decoded::default();
            let mut n = 0;
            for r in &records {
                if d.batch(r, &mut out).is_ok() {
                    n += out.samples.len();
                }
            }
            n
        })
    });
    group.finish();
}

fn bench_append_and_replay(c: &mut Criterion) {
    let batches = node_like(1000, 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BufferConfig {
        max_size: 64 << 30,
        ..BufferConfig::default()
    };
    let wal = Wal::open(dir.path(), &cfg, &[], &mut Registry::default()).expect("open");
    wal.log().hold("bench", Position::default());
    let appender = wal.appender();
    appender.append(batches[0].clone());
    appender.flush();
    let mut group = c.benchmark_group("buffer");
    group.throughput(Throughput::Elements(1000));
    group.measurement_time(Duration::from_secs(5));
    let mut k = 0;
    group.bench_function(BenchmarkId::new("append", "1000 samples"), |b| {
        b.iter_batched(
            || {
                k = k % 99 + 1;
                batches[k].clone()
            },
            // Appending only queues the batch; the writer thread's work is what counts.
            |batch| {
                appender.append(batch);
                appender.flush();
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // Replay everything appended so far (millions of samples) through the reader.
    let stats = wal.log().stats();
    let mut samples = 0u64;
    {
        let mut reader = wal.log().reader(Position::default());
        while let Ok(e) = reader.read() {
            match e {
                Event::Record(r) => samples += u64::from(r.items),
                Event::End | Event::Closed => break,
                _ => {}
            }
        }
    }
    println!(
        "replay: {samples} samples in {} bytes ({:.3} bytes per sample on disk)",
        stats.bytes,
        stats.bytes as f64 / samples.max(1) as f64
    );
    group.throughput(Throughput::Elements(samples));
    group.sample_size(10);
    group.bench_function("replay_all", |b| {
        b.iter(|| {
            let mut reader = wal.log().reader(Position::default());
            let mut d = Decoder::default();
            let mut out = Decoded::default();
            let mut n = 0usize;
            while let Ok(e) = reader.read() {
                match e {
                    Event::Segment(_) => d.reset(),
                    Event::Record(r) if r.kind == KIND_SNAPSHOT => {
                        let _ = d.snapshot(r.payload);
                    }
                    Event::Record(r)
                        if r.kind == KIND_BATCH && d.batch(r.payload, &mut out).is_ok() =>
                    {
                        n += out.samples.len();
                    }
                    Event::End | Event::Closed => break,
                    _ => {}
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench_codec, bench_append_and_replay);
criterion_main!(benches);
