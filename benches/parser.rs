//! Parser throughput on a realistic ~5 MB exposition, against the `prometheus-parse` crate.
//!
//! The body comes from benches/support/exposition.rs. Benches:
//! - `scrapelet/framing`: iterate all entries (what the scrape loop does for cached series);
//! - `scrapelet/framing+labels`: also iterate every sample's `labels()` (first scrape);
//! - `prometheus-parse`: the same body through `prometheus_parse::Scrape::parse`.
//!
//! Run: `cargo bench --bench parser -- --measurement-time 5`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scrapelet::exposition::{Entry, Format, Parser};

#[path = "support/exposition.rs"]
mod exposition;

use exposition::{BODY_BYTES, exposition};

/// Iterates all entries; returns the number of samples and a checksum of the values.
fn framing(body: &[u8]) -> (usize, f64) {
    let mut samples = 0;
    let mut sum = 0.0;
    for entry in Parser::new(body, Format::PrometheusText) {
        if let Ok(Entry::Sample(s)) = entry {
            samples += 1;
            sum += s.value;
        }
    }
    (samples, sum)
}

/// Iterates all entries and every sample's labels; returns the total label value length.
fn framing_and_labels(body: &[u8]) -> usize {
    let mut total = 0;
    for entry in Parser::new(body, Format::PrometheusText) {
        if let Ok(Entry::Sample(s)) = entry {
            for (name, value) in s.labels().flatten() {
                total += name.len() + value.len();
            }
        }
    }
    total
}

fn bench(c: &mut Criterion) {
    let body = exposition(BODY_BYTES);
    let (samples, _) = framing(body.as_bytes());
    let errors = Parser::new(body.as_bytes(), Format::PrometheusText)
        .map(|e| match e {
            Ok(Entry::Sample(s)) => s.labels().filter(Result::is_err).count(),
            Ok(_) => 0,
            Err(_) => 1,
        })
        .sum::<usize>();
    assert_eq!(errors, 0, "the generated body must parse cleanly");
    let baseline = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .map(|s| s.samples.len());
    eprintln!(
        "body: {} bytes, {} lines, {samples} samples; prometheus-parse read {baseline:?} samples",
        body.len(),
        body.lines().count(),
    );

    let mut group = c.benchmark_group("parser");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scrapelet/framing", |b| {
        b.iter(|| framing(black_box(body.as_bytes())))
    });
    group.bench_function("scrapelet/framing+labels", |b| {
        b.iter(|| framing_and_labels(black_box(body.as_bytes())))
    });
    group.sample_size(10);
    group.bench_function("prometheus-parse", |b| {
        b.iter(|| {
            prometheus_parse::Scrape::parse(black_box(&body).lines().map(|l| Ok(l.to_owned())))
                .map(|s| s.samples.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
