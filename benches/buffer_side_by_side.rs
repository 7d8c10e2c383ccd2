//! Side-by-side harness for the write-ahead buffer, against real software. Prints figures;
//! asserts nothing (speed and sizes belong here, not in tests).
//!
//! `cargo bench --bench buffer_side_by_side [-- disk [SECONDS [MIX...]]] [-- replay [SAMPLES...]]`
//!
//! - `disk`: scrapelet and Prometheus 2.x in agent mode (`--enable-feature=agent`, its
//!   defaults) scrape the same targets every second and write to the same fast receiver;
//!   after a warm-up, each one's buffer/WAL directory growth over SECONDS (default 60) is
//!   divided by the samples it appended in that time. The targets are node exporter and,
//!   per MIX (default: `none typical noisy`), a synthetic target of 5000 series: `none` (node
//!   exporter alone), `typical` (an application's mix: histogram buckets and counters that
//!   grow by small counts, float counters, slowly moving gauges, constants), `noisy` (values
//!   with many random bits: the worst case for compression).
//! - `replay`: a backlog of SAMPLES samples (default 20M and 80M) is prepared in a data
//!   directory, then the scrapelet binary starts against a fast receiver and replays it while
//!   it scrapes; its peak RSS during the replay is compared with the peak of the same setup
//!   without a backlog, and the replay rate is reported.
//!
//! Needs `prometheus` and `prometheus-node-exporter` on PATH for `disk` (it says so and
//! skips otherwise); everything listens on 127.0.0.1 and lives in temporary directories.

#[path = "support/http.rs"]
mod http_support;
#[path = "support/procs.rs"]
mod procs;
#[path = "support/rng.rs"]
mod rng;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http_support::{Sink, get_text, metric, serve_text};
use procs::{free_port, on_path, prometheus_agent, rss_kib, scrapelet, spawn};
use prometheus_client::registry::Registry;
use rng::XorShift;
use scrapelet::append::{Batch, Sample, SeriesRef};
use scrapelet::config::BufferConfig;
use scrapelet::labels::Labels;
use scrapelet::remote::{Cursors, Position};
use scrapelet::wal::{Wal, save_cursors};

/// Series of the synthetic target.
const SYNTHETIC_SERIES: usize = 5000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mode = args.first().map(String::as_str).unwrap_or("all");
    if mode == "disk" || mode == "all" {
        let seconds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
        let mut mixes: Vec<Mix> = args.iter().skip(2).filter_map(|m| Mix::parse(m)).collect();
        if mixes.is_empty() {
            mixes = vec![Mix::None, Mix::Typical, Mix::Noisy];
        }
        for mix in mixes {
            runtime.block_on(disk(seconds, mix));
        }
    }
    if mode == "replay" || mode == "all" {
        let sizes: Vec<u64> = args.iter().skip(1).filter_map(|s| s.parse().ok()).collect();
        let sizes = if sizes.is_empty() {
            vec![20_000_000, 80_000_000]
        } else {
            sizes
        };
        runtime.block_on(replay(&sizes));
    }
}

/// What the synthetic target's values look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mix {
    None,
    Typical,
    Noisy,
}

impl Mix {
    fn parse(s: &str) -> Option<Mix> {
        match s {
            "none" => Some(Mix::None),
            "typical" => Some(Mix::Typical),
            "noisy" => Some(Mix::Noisy),
            _ => None,
        }
    }
}

/// A synthetic target whose values move on every scrape.
async fn synthetic_target(series: usize, mix: Mix) -> SocketAddr {
    let mut state = NodeLike::new(series, mix);
    serve_text(move || state.exposition()).await
}

/// Values shaped like node exporter's: counters in small steps, gauges that move a little,
/// constants.
struct NodeLike {
    values: Vec<f64>,
    rng: XorShift,
    mix: Mix,
}

impl NodeLike {
    fn new(series: usize, mix: Mix) -> Self {
        NodeLike {
            values: (0..series).map(|i| (i * 1000) as f64).collect(),
            rng: XorShift(0x2545_F491_4F6C_DD1D),
            mix,
        }
    }

    fn step(&mut self) {
        if self.mix == Mix::Typical {
            return self.step_typical();
        }
        for i in 0..self.values.len() {
            let r = self.rng.next();
            let v = &mut self.values[i];
            match i % 6 {
                0 => *v += (r % 1000) as f64,
                1 => *v = ((*v * 100.0).round() + (r % 1500) as f64) / 100.0,
                2 => *v += (r % 3) as f64,
                3 => *v = 8e9 + (r % 1_000_000) as f64 * 4096.0,
                4 => *v = (r % 100) as f64 / 100.0,
                _ => {}
            }
        }
    }

    /// An application's mix, per 10 series: 4 histogram buckets / counters growing by a small
    /// count (often 0), 2 float counters (seconds, in steps of a few ms), 2 gauges that move
    /// now and then (bytes, in pages), 2 constants.
    fn step_typical(&mut self) {
        for i in 0..self.values.len() {
            let r = self.rng.next();
            let v = &mut self.values[i];
            match i % 10 {
                0..=3 => *v += ((r % 8).saturating_sub(4)) as f64,
                4 | 5 => *v += (r % 50) as f64 * 0.001,
                6 | 7 if r.is_multiple_of(4) => *v = 2e8 + ((r >> 8) % 2048) as f64 * 4096.0,
                _ => {}
            }
        }
    }

    fn exposition(&mut self) -> String {
        self.step();
        let mut out = String::with_capacity(self.values.len() * 64);
        for (i, v) in self.values.iter().enumerate() {
            out.push_str(&format!(
                "node_like_metric_{}{{cpu=\"{}\",mode=\"m{}\"}} {v}\n",
                i / 48,
                i % 8,
                (i / 8) % 6
            ));
        }
        out
    }

    fn batch(&mut self, ts: i64, define: bool) -> Batch {
        self.step();
        Batch {
            series: if define {
                (0..self.values.len())
                    .map(|i| {
                        (
                            SeriesRef(i as u64 + 1),
                            Labels::from_pairs([
                                ("__name__", format!("node_like_metric_{}", i / 48)),
                                ("cpu", format!("{}", i % 8)),
                                ("instance", "127.0.0.1:1".to_owned()),
                                ("job", "synthetic".to_owned()),
                                ("mode", format!("m{}", (i / 8) % 6)),
                            ]),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            samples: self
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample {
                    series: SeriesRef(i as u64 + 1),
                    timestamp_ms: ts,
                    value: *v,
                })
                .collect(),
            gone: Vec::new(),
        }
    }
}

/// The sum of the sizes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_bytes(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

async fn disk(seconds: u64, mix: Mix) {
    if !on_path("prometheus") || !on_path("prometheus-node-exporter") {
        println!("disk: skipped (prometheus and prometheus-node-exporter must be on PATH)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sink_addr = Sink::start(false).await.addr;
    let synthetic = synthetic_target(SYNTHETIC_SERIES, mix).await;
    let ne_port = free_port();
    let _node_exporter = spawn(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}")),
        &dir.path().join("node-exporter.log"),
    );
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nremote_write:\n  - url: http://{sink_addr}/api/v1/write\n    name: sink\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n"
    );
    if mix != Mix::None {
        config.push_str(&format!(
            "  - job_name: synthetic\n    static_configs:\n      - targets: ['{synthetic}']\n"
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, &config).expect("config");
    let prom_port = free_port();
    let prom_data = dir.path().join("prometheus");
    let _prometheus = spawn(
        &mut prometheus_agent(&config_path, &prom_data, prom_port),
        &dir.path().join("prometheus.log"),
    );
    let sl_port = free_port();
    let sl_data = dir.path().join("scrapelet");
    let _scrapelet = spawn(
        &mut scrapelet(
            Path::new(env!("CARGO_BIN_EXE_scrapelet")),
            &config_path,
            &sl_data,
            sl_port,
        ),
        &dir.path().join("scrapelet.log"),
    );
    // Warm-up: both have seen every series (definitions written) and run steadily.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let prom_samples = "prometheus_agent_samples_appended_total";
    let sl_samples = "scrapelet_buffer_samples_written_total";
    let p0 = (
        dir_bytes(&prom_data.join("wal")),
        metric(prom_port, prom_samples).await,
    );
    let s0 = (
        dir_bytes(&sl_data.join("buffer")),
        metric(sl_port, sl_samples).await,
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let p1 = (
        dir_bytes(&prom_data.join("wal")),
        metric(prom_port, prom_samples).await,
    );
    let s1 = (
        dir_bytes(&sl_data.join("buffer")),
        metric(sl_port, sl_samples).await,
    );
    let per_sample = |a: (u64, Option<f64>), b: (u64, Option<f64>)| {
        let samples = b.1.unwrap_or(0.0) - a.1.unwrap_or(0.0);
        ((b.0.saturating_sub(a.0)) as f64 / samples.max(1.0), samples)
    };
    let flags = get_text(prom_port, "/api/v1/status/flags")
        .await
        .unwrap_or_default();
    let compression = flags
        .split("\"storage.agent.wal-compression\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map_or("wal-compression unknown".to_owned(), |v| {
            format!("wal-compression={v}")
        });
    let (p, pn) = per_sample(p0, p1);
    let (s, sn) = per_sample(s0, s1);
    let what = match mix {
        Mix::None => "node exporter alone".to_owned(),
        m => format!("node exporter + {SYNTHETIC_SERIES} synthetic series ({m:?})"),
    };
    println!("disk: {seconds} s, scrape every 1 s of {what}");
    println!(
        "  prometheus agent ({compression}): {p:.3} bytes/sample ({pn} samples, {} bytes)",
        p1.0.saturating_sub(p0.0)
    );
    println!(
        "  scrapelet buffer:                                {s:.3} bytes/sample ({sn} samples, {} bytes)",
        s1.0.saturating_sub(s0.0)
    );
    println!("  ratio scrapelet / prometheus: {:.3}", s / p);
}

async fn replay(sizes: &[u64]) {
    let sink_addr = Sink::start(false).await.addr;
    let series = 10_000usize;
    let target = synthetic_target(series, Mix::Typical).await;
    let steady = run_replay(0, series, sink_addr, target).await;
    println!(
        "replay: steady state (no backlog, {series} live series): peak RSS {} MiB",
        steady.0 / 1024
    );
    for &size in sizes {
        let (peak, took, bytes) = run_replay(size, series, sink_addr, target).await;
        println!(
            "replay: backlog of {size} samples ({} MiB on disk): peak RSS {} MiB, replayed in {:.1} s ({:.2} M samples/s)",
            bytes >> 20,
            peak / 1024,
            took.as_secs_f64(),
            size as f64 / took.as_secs_f64() / 1e6
        );
    }
}

/// Prepares a backlog of `samples`, runs the binary until it has replayed it (or for 20 s
/// without one); returns its peak RSS (KiB), the replay time and the backlog's bytes.
async fn run_replay(
    samples: u64,
    series: usize,
    sink: SocketAddr,
    target: SocketAddr,
) -> (u64, Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut backlog_bytes = 0;
    if samples > 0 {
        let cfg = BufferConfig {
            max_size: 64 << 30,
            ..BufferConfig::default()
        };
        let wal = Wal::open(&data, &cfg, &["sink"], &mut Registry::default()).expect("wal");
        let appender = wal.appender();
        let mut node = NodeLike::new(series, Mix::Typical);
        let scrapes = samples / series as u64;
        let start = 1_700_000_000_000i64;
        for k in 0..scrapes {
            appender.append(node.batch(start + k as i64 * 1000, k == 0));
            // The writer thread drops samples when its queue is full: keep every one.
            appender.flush();
        }
        backlog_bytes = wal.log().stats().bytes;
        wal.close();
        save_cursors(
            &data,
            "sink",
            &Cursors {
                shards: Vec::new(),
                routed: Position(0),
            },
        )
        .expect("cursor");
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\nagent:\n  buffer:\n    max_size: 64GiB\nremote_write:\n  - url: http://{sink}/api/v1/write\n    name: sink\n    queue_config:\n      max_shards: 8\nscrape_configs:\n  - job_name: synthetic\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).expect("config");
    let port = free_port();
    let child = spawn(
        &mut scrapelet(
            Path::new(env!("CARGO_BIN_EXE_scrapelet")),
            &config_path,
            &data,
            port,
        ),
        &dir.path().join("scrapelet.log"),
    );
    let pid = child.0.id();
    let began = Instant::now();
    let mut peak = 0;
    let deadline = began + Duration::from_secs(1800);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
        if samples == 0 {
            if began.elapsed() > Duration::from_secs(20) {
                break;
            }
            continue;
        }
        let sent = metric(port, "scrapelet_remote_samples_sent_total")
            .await
            .unwrap_or(0.0);
        if sent >= samples as f64 || Instant::now() > deadline {
            break;
        }
    }
    let took = began.elapsed();
    drop(child);
    (peak, took, backlog_bytes)
}
