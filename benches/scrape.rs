//! The scrape path without I/O: a realistic ~5 MB body turned into a batch by
//! `scrape::Processor` (parse, series cache, metric relabeling, staleness bookkeeping).
//!
//! - `scrape/steady`: every series cached (what every scrape after the first costs);
//! - `scrape/first`: a fresh processor each time (label parsing, relabeling, series creation);
//! - `scrape/steady_limits`: as `steady`, with `series_limit`, `series_limit_per_metric` and
//!   `label_limit`/`label_limit_keep` set above what the body needs (the guard rails' cost when
//!   no limit is hit: they act on new series only, so it should not be measurable);
//! - `scrape/steady_limit_hit`: `series_limit` at half the body's series (the refused half is
//!   counted from the cache, its labels never rebuilt).
//!
//! Run: `cargo bench --bench scrape -- --measurement-time 5`.

#[path = "support/exposition.rs"]
mod exposition;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exposition::{BODY_BYTES, exposition};
use scrapelet::append::{Batch, SeriesRefs};
use scrapelet::labels::Labels;
use scrapelet::relabel::{RelabelConfig, Relabeler};
use scrapelet::scrape::{Processor, Settings};

fn processor() -> Processor {
    processor_with(|_| {})
}

fn processor_with(edit: impl FnOnce(&mut Settings)) -> Processor {
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(
        "- source_labels: [__name__]\n  regex: go_gc_.*\n  action: drop\n- regex: pod_template_hash\n  action: labeldrop\n",
    )
    .expect("rules");
    let mut settings = Settings {
        honor_timestamps: true,
        metric_relabel: Relabeler::new(&rules),
        ..Settings::default()
    };
    edit(&mut settings);
    Processor::new(
        Arc::new(settings),
        Labels::from_pairs([
            ("job", "app"),
            ("instance", "10.0.0.1:8080"),
            ("node", "n1"),
        ]),
        Arc::new(SeriesRefs::default()),
    )
}

fn bench(c: &mut Criterion) {
    let body = exposition(BODY_BYTES);
    let mut warm = processor();
    let mut batch = Batch::default();
    let counts = warm
        .process(body.as_bytes(), None, 1, &mut batch)
        .expect("the generated body scrapes cleanly");
    let samples = batch.samples.len();
    eprintln!(
        "body: {} bytes, {} samples, {} series",
        body.len(),
        counts.scraped,
        counts.added
    );

    let mut group = c.benchmark_group("scrape");
    group.throughput(Throughput::Elements(counts.scraped as u64));
    let mut ts = 1;
    group.bench_function("steady", |b| {
        b.iter(|| {
            ts += 1;
            let mut batch = Batch {
                samples: Vec::with_capacity(samples),
                ..Batch::default()
            };
            let c = warm.process(black_box(body.as_bytes()), None, ts, &mut batch);
            black_box(c.map(|c| c.appended).unwrap_or(0))
        })
    });
    let limited = |series_limit: usize| {
        let mut p = processor_with(|s| {
            s.series_limit = series_limit;
            s.series_limit_per_metric = counts.added;
            s.label_limit = 64;
            s.label_limit_keep = Some(vec!["pod".to_owned()]);
        });
        let mut batch = Batch::default();
        let _ = p.process(body.as_bytes(), None, 1, &mut batch);
        p
    };
    for (name, series_limit) in [
        ("steady_limits", counts.added * 2),
        ("steady_limit_hit", counts.added / 2),
    ] {
        let mut p = limited(series_limit);
        group.bench_function(name, |b| {
            b.iter(|| {
                ts += 1;
                let mut batch = Batch {
                    samples: Vec::with_capacity(samples),
                    ..Batch::default()
                };
                let c = p.process(black_box(body.as_bytes()), None, ts, &mut batch);
                black_box(c.map(|c| c.appended).unwrap_or(0))
            })
        });
    }
    group.sample_size(10);
    group.bench_function("first", |b| {
        b.iter(|| {
            let mut p = processor();
            let mut batch = Batch::default();
            let c = p.process(black_box(body.as_bytes()), None, 1, &mut batch);
            black_box(c.map(|c| c.added).unwrap_or(0))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
