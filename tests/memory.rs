//! Memory per series, counted (not timed): the bytes the agent's pieces hold for each active
//! series, through their public faces: the targets' scrape processors (series caches), the
//! write-ahead buffer's appender (writer thread, table of live series, codec) and one
//! endpoint's remote-write queue (series table, shards), with the labels they share. A
//! counting allocator follows the live heap of the whole process; the held bytes of two sizes
//! (10 and 20 targets of 1000 series, each after the same number of scrapes, every sample
//! delivered) are subtracted, so fixed costs (buffers, the newest-batches tail, queue
//! capacities, scratch sized by the largest batch) cancel out and what is left is what each
//! added series costs.
//!
//! The budget, [`BUDGET_PER_SERIES`], is stated where the figure stood when it was set (about
//! 230 bytes) plus a margin: the test fails when a change makes series cost more.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use scrapelet::append::{Batch, SeriesRefs};
use scrapelet::config::{BufferConfig, Config, QueueConfig, RemoteWriteConfig};
use scrapelet::labels::Labels;
use scrapelet::remote::{QueueTuning, RemoteMetrics, RemoteWrite, SendError, WriteClient};
use scrapelet::scrape::{Processor, Settings};
use scrapelet::wal::Wal;

/// Bytes an added active series may cost, everything it touches included.
const BUDGET_PER_SERIES: f64 = 280.0;
/// Scrapes per size: enough for every per-series structure to reach its steady state.
const SCRAPES: i64 = 8;

struct Counting;

/// Bytes allocated and not yet freed, all threads.
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers every operation to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A receiver that accepts every request and counts what it got.
#[derive(Clone, Default)]
struct Accept(Arc<AtomicU64>);

impl WriteClient for Accept {
    async fn store(&self, body: bytes::Bytes) -> Result<(), SendError> {
        self.0.fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// One replica of a web service as exporters render it: per handler 4 request counters, a
/// 12-bucket histogram with `_sum` and `_count`, and 2 gauges (20 series), values moving.
fn body(series: usize, scrape: i64) -> String {
    let mut out = String::with_capacity(series * 90);
    for h in 0..series / 20 {
        for (m, c) in [
            ("GET", "200"),
            ("GET", "404"),
            ("POST", "201"),
            ("POST", "500"),
        ] {
            out.push_str(&format!(
                "http_requests_total{{method=\"{m}\",code=\"{c}\",handler=\"/api/v1/r{h}\"}} {}\n",
                scrape * 7 + h as i64
            ));
        }
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ] {
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{handler=\"/api/v1/r{h}\",le=\"{le}\"}} {}\n",
                scrape * 3
            ));
        }
        out.push_str(&format!(
            "http_request_duration_seconds_sum{{handler=\"/api/v1/r{h}\"}} {}.5\n",
            scrape
        ));
        out.push_str(&format!(
            "http_request_duration_seconds_count{{handler=\"/api/v1/r{h}\"}} {}\n",
            scrape * 3
        ));
        out.push_str(&format!(
            "app_queue_depth{{handler=\"/api/v1/r{h}\"}} {}\n",
            (scrape + h as i64) % 5
        ));
        out.push_str(&format!(
            "app_cache_bytes{{handler=\"/api/v1/r{h}\"}} {}\n",
            4096 * (scrape + h as i64)
        ));
    }
    out
}

/// Series of one target.
const TARGET_SERIES: usize = 1000;

/// Live heap bytes the pieces hold for `targets` targets of [`TARGET_SERIES`] series after
/// [`SCRAPES`] scrapes, every sample delivered: the live heap then, minus the live heap once
/// everything was set up.
async fn held_for(targets: usize) -> isize {
    let series = targets * TARGET_SERIES;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = Config {
        remote_write: vec![RemoteWriteConfig {
            url: "http://127.0.0.1:1/unused".into(),
            name: "rx".into(),
            queue_config: QueueConfig {
                min_shards: 1,
                max_shards: 1,
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Config::default()
    };
    let mut registry = Registry::default();
    let wal = Wal::open(dir.path(), &BufferConfig::default(), &["rx"], &mut registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let accepted = Accept::default();
    let client = accepted.clone();
    let remote = RemoteWrite::with_wal_tuned(
        wal,
        &config,
        false,
        &RemoteMetrics::register(&mut registry),
        QueueTuning::default(),
        move |_| Ok(client.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let appender = remote.appender();
    let settings = Arc::new(Settings::default());
    let refs = Arc::new(SeriesRefs::default());
    let mut processors: Vec<Processor> = (0..targets)
        .map(|t| {
            Processor::new(
                settings.clone(),
                Labels::from_pairs([
                    ("job", "app".to_owned()),
                    ("instance", format!("10.0.{t}.1:8080")),
                ]),
                refs.clone(),
            )
        })
        .collect();
    let bodies: Vec<String> = (1..=SCRAPES).map(|s| body(TARGET_SERIES, s)).collect();
    let base = LIVE.load(Ordering::Relaxed);

    for (i, text) in bodies.iter().enumerate() {
        for processor in &mut processors {
            let mut batch = Batch::default();
            processor
                .process(text.as_bytes(), None, (i as i64 + 1) * 1000, &mut batch)
                .unwrap_or_else(|e| panic!("{e}"));
            appender.append(batch);
        }
    }
    appender.flush();
    let before = accepted.0.load(Ordering::Relaxed);
    // Delivered: the queue's batch deadline (5 s) sends the last partial request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sent = registry_metric(&registry, "scrapelet_remote_samples_sent_total");
        if sent >= (series as i64 * SCRAPES) as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent} of {} samples sent ({} bytes before)",
            series as i64 * SCRAPES,
            before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = LIVE.load(Ordering::Relaxed) - base;
    assert!(processors.iter().all(|p| p.series() == TARGET_SERIES));
    drop(bodies);
    remote.shutdown(Duration::from_secs(5)).await;
    drop(processors);
    held
}

fn registry_metric(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_added_series_costs_less_than_the_budget() {
    let small = held_for(10).await;
    let large = held_for(20).await;
    let per_series = (large - small) as f64 / 10_000.0;
    eprintln!(
        "held: {small} bytes for 10k series, {large} for 20k: {per_series:.0} bytes per added series"
    );
    assert!(
        per_series > 50.0,
        "{per_series:.0} bytes per series: the measurement itself is off"
    );
    assert!(
        per_series <= BUDGET_PER_SERIES,
        "each added series costs {per_series:.0} bytes, over the budget of {BUDGET_PER_SERIES}"
    );
}
