//! An application's metrics as a side-by-side bench serves them: the state of one replica of a
//! web service whose values move on every scrape like a real one's.
//!
//! A replica has units of [`SERIES_PER_UNIT`] series, one unit per HTTP handler:
//! - `http_requests_total{method,code,handler}` (counter, 4 series) growing by a few hundred,
//!   a few, or now and then one request a scrape;
//! - `http_request_duration_seconds{handler,le}` (histogram: 12 buckets, `_sum`, `_count`;
//!   14 series), a few dozen observations a scrape, most in the low buckets;
//! - `app_queue_depth{handler}` (gauge, a small random walk) and `app_cache_bytes{handler}`
//!   (gauge, whole pages, changes on one scrape in four).
//!
//! With [`Values::Mixed`], every unit also has [`SERIES_PER_UNIT`] random gauges, so that half
//! of all series carry high-entropy values as real node and application metrics do:
//! `app_heap_bytes{handler,slot}` (any integer below 2^30, every bit random, like Go's
//! `heap_alloc`), `app_rss_bytes{handler,slot}` (whole 4 KiB pages below 2^34),
//! `app_load{handler,slot}` (two decimals below 64, like `node_load1`) and
//! `app_ratio{handler,slot}` (a uniform float in [0, 1) printed with all its digits, like a
//! computed rate), 5 slots each, all redrawn on every scrape.
//!
//! Invariants: every [`App::scrape`] returns exactly [`App::series`] samples, in the same order
//! with the same label sets, grouped by family under `# HELP` and `# TYPE`; counters and
//! buckets never decrease; the same seed gives the same bodies.
//!
//! Include with `#[path = "support/app.rs"] mod app;` next to `#[path = "support/rng.rs"] mod rng;`.

#![allow(dead_code)]

use std::fmt::Write;

use super::rng::XorShift;

/// Series of one handler (twice as many with [`Values::Mixed`]).
pub const SERIES_PER_UNIT: usize = 20;

/// What the values look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Values {
    /// Counters, histograms and two slow gauges: values that move smoothly.
    Smooth,
    /// Half the series smooth as above, half random gauges (see the module docs).
    #[default]
    Mixed,
}

/// Random gauge families with [`Values::Mixed`] (each has 5 slots a unit).
const RANDOM_FAMILIES: [&str; 4] = ["app_heap_bytes", "app_rss_bytes", "app_load", "app_ratio"];
const RANDOM_SLOTS: usize = SERIES_PER_UNIT / RANDOM_FAMILIES.len();

/// Upper bounds of the histogram's buckets (the last is `+Inf`).
const LE: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
/// Microseconds an observation in each bucket adds to `_sum`.
const LE_MICROS: [u64; 12] = [
    3_000, 8_000, 20_000, 40_000, 80_000, 200_000, 400_000, 800_000, 2_000_000, 4_000_000,
    8_000_000, 15_000_000,
];
const REQUESTS: [(&str, &str); 4] = [
    ("GET", "200"),
    ("GET", "404"),
    ("POST", "201"),
    ("POST", "500"),
];

/// One replica's metrics.
pub struct App {
    units: Vec<Unit>,
    values: Values,
    rng: XorShift,
}

struct Unit {
    requests: [u64; 4],
    /// Observations per bucket, not cumulative.
    buckets: [u64; 12],
    sum_micros: u64,
    queue: u64,
    cache_bytes: u64,
}

impl App {
    /// A replica with `series` smooth series, rounded up to a whole number of units.
    pub fn new(series: usize, seed: u64) -> App {
        Self::with_values(series, seed, Values::Smooth)
    }

    /// A replica with `series` series whose values look like `values`, rounded up to a whole
    /// number of units.
    pub fn with_values(series: usize, seed: u64, values: Values) -> App {
        let units = series.div_ceil(unit_series(values)).max(1);
        App {
            values,
            units: (0..units)
                .map(|u| Unit {
                    requests: [u as u64 * 1000, 10, 200, 1],
                    buckets: [0; 12],
                    sum_micros: 0,
                    queue: 0,
                    cache_bytes: 64 << 20,
                })
                .collect(),
            rng: XorShift(seed | 1),
        }
    }

    /// Series in every scrape.
    pub fn series(&self) -> usize {
        self.units.len() * unit_series(self.values)
    }

    /// Moves every value on as one scrape interval would, and renders the exposition.
    pub fn scrape(&mut self) -> String {
        self.step();
        self.render()
    }

    fn step(&mut self) {
        for u in 0..self.units.len() {
            let r = self.rng.next();
            let observations = r % 40;
            let mut picks = [0u64; 12];
            for _ in 0..observations {
                // The lower of two draws: most requests are fast.
                let a = self.rng.next() % 12;
                let b = self.rng.next() % 12;
                picks[a.min(b) as usize] += 1;
            }
            let unit = &mut self.units[u];
            unit.requests[0] += r % 300;
            unit.requests[1] += (r >> 16) % 5;
            unit.requests[2] += (r >> 24) % 20;
            unit.requests[3] += u64::from((r >> 32).is_multiple_of(16));
            for (i, n) in picks.iter().enumerate() {
                unit.buckets[i] += n;
                unit.sum_micros += n * LE_MICROS[i];
            }
            let step = (r >> 40) % 3;
            unit.queue = (unit.queue + step).saturating_sub(1);
            if (r >> 48).is_multiple_of(4) {
                unit.cache_bytes = (32 << 20) + ((r >> 50) % 8192) * 4096;
            }
        }
    }

    fn render(&mut self) -> String {
        let mut out = String::with_capacity(self.series() * 90);
        out.push_str("# HELP http_requests_total Requests served.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for (u, unit) in self.units.iter().enumerate() {
            for ((method, code), n) in REQUESTS.iter().zip(unit.requests) {
                let _ = writeln!(
                    out,
                    "http_requests_total{{method=\"{method}\",code=\"{code}\",handler=\"/api/v1/resource{u}\"}} {n}"
                );
            }
        }
        let name = "http_request_duration_seconds";
        out.push_str("# HELP http_request_duration_seconds Time to serve a request.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (u, unit) in self.units.iter().enumerate() {
            let mut cumulative = 0;
            for (le, n) in LE.iter().zip(unit.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{handler=\"/api/v1/resource{u}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = unit.sum_micros as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{handler=\"/api/v1/resource{u}\"}} {sum}");
            let _ = writeln!(
                out,
                "{name}_count{{handler=\"/api/v1/resource{u}\"}} {cumulative}"
            );
        }
        let queue = self.units.iter().map(|u| u.queue);
        gauge(
            &mut out,
            "app_queue_depth",
            "Requests waiting for a worker.",
            queue,
        );
        let cache = self.units.iter().map(|u| u.cache_bytes);
        gauge(
            &mut out,
            "app_cache_bytes",
            "Bytes held by the response cache.",
            cache,
        );
        if self.values == Values::Mixed {
            self.random_gauges(&mut out);
        }
        out
    }

    /// The random gauges of [`Values::Mixed`], redrawn on every render.
    fn random_gauges(&mut self, out: &mut String) {
        for (f, family) in RANDOM_FAMILIES.iter().enumerate() {
            let _ = writeln!(
                out,
                "# HELP {family} A random gauge.\n# TYPE {family} gauge"
            );
            for u in 0..self.units.len() {
                for slot in 0..RANDOM_SLOTS {
                    let r = self.rng.next();
                    let _ = write!(
                        out,
                        "{family}{{handler=\"/api/v1/resource{u}\",slot=\"{slot}\"}} "
                    );
                    let _ = match f {
                        0 => writeln!(out, "{}", r % (1 << 30)),
                        1 => writeln!(out, "{}", (r % (1 << 22)) * 4096),
                        2 => writeln!(out, "{:.2}", (r % 6400) as f64 / 100.0),
                        _ => writeln!(out, "{}", (r >> 11) as f64 / (1u64 << 53) as f64),
                    };
                }
            }
        }
    }
}

/// Series of one unit.
pub fn unit_series(values: Values) -> usize {
    match values {
        Values::Smooth => SERIES_PER_UNIT,
        Values::Mixed => 2 * SERIES_PER_UNIT,
    }
}

/// A gauge family with one series a unit.
fn gauge(out: &mut String, name: &str, help: &str, values: impl Iterator<Item = u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (u, v) in values.enumerate() {
        let _ = writeln!(out, "{name}{{handler=\"/api/v1/resource{u}\"}} {v}");
    }
}
