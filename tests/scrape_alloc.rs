//! Proves the scrape path's steady-state claim: once a target's series are cached, turning a
//! body into a batch (parse, cache lookup, sample push, staleness bookkeeping) performs no heap
//! allocation at all, whatever the number of samples.

#[path = "support/alloc.rs"]
mod alloc;

use std::sync::Arc;

use alloc::allocations_in;
use scrapelet::append::{Batch, SeriesRefs};
use scrapelet::labels::Labels;
use scrapelet::relabel::{RelabelConfig, Relabeler};
use scrapelet::scrape::{Processor, Settings};

/// About `series` sample lines: histograms, counters and gauges with 4-6 labels each.
fn body(series: usize, value: u64) -> String {
    let mut out = String::new();
    let mut n = 0;
    while n < series {
        let f = n / 16;
        out.push_str(&format!(
            "# HELP http_{f}_seconds Latency.\n# TYPE http_{f}_seconds histogram\n"
        ));
        for le in ["0.005", "0.05", "0.5", "5", "+Inf"] {
            out.push_str(&format!(
                "http_{f}_seconds_bucket{{namespace=\"prod\",pod=\"api-{n}\",method=\"GET\",code=\"200\",le=\"{le}\"}} {}\n",
                value + n as u64
            ));
        }
        out.push_str(&format!("http_{f}_seconds_sum{{namespace=\"prod\",pod=\"api-{n}\",method=\"GET\",code=\"200\"}} {value}.25\n"));
        out.push_str(&format!("http_{f}_seconds_count{{namespace=\"prod\",pod=\"api-{n}\",method=\"GET\",code=\"200\"}} {value}\n"));
        out.push_str(&format!(
            "process_open_fds:{f}{{pod=\"api-{n}\",container=\"app\",debug=\"x\"}} {}\n",
            value % 7
        ));
        out.push_str(&format!("dropped_by_relabel_{f} 1\n"));
        n += 9;
    }
    out
}

fn processor() -> Processor {
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(
        "- source_labels: [__name__]\n  regex: dropped_by_relabel_.*\n  action: drop\n- regex: debug\n  action: labeldrop\n",
    )
    .expect("rules");
    let settings = Settings {
        honor_timestamps: true,
        metric_relabel: Relabeler::new(&rules),
        ..Settings::default()
    };
    Processor::new(
        Arc::new(settings),
        Labels::from_pairs([("job", "app"), ("instance", "10.0.0.1:8080")]),
        Arc::new(SeriesRefs::default()),
    )
}

#[test]
fn a_steady_scrape_allocates_nothing() {
    let mut p = processor();
    let first = body(50_000, 1);
    let mut batch = Batch::default();
    let counts = p
        .process(first.as_bytes(), None, 1_000, &mut batch)
        .expect("first scrape");
    assert!(counts.added > 40_000, "{counts:?}");
    let capacity = batch.samples.len();

    for (i, ts) in [(2u64, 2_000i64), (3, 3_000)] {
        let next = body(50_000, i);
        let mut batch = Batch {
            samples: Vec::with_capacity(capacity),
            ..Batch::default()
        };
        let mut result = None;
        let allocations = allocations_in(|| {
            result = Some(p.process(next.as_bytes(), None, ts, &mut batch));
        });
        let counts = result.expect("ran").expect("scrape");
        assert_eq!(allocations, 0, "allocations in steady scrape {i}");
        assert_eq!(counts.added, 0);
        assert_eq!(counts.appended, capacity);
        assert!(batch.series.is_empty() && batch.gone.is_empty());
    }
}

#[test]
fn the_counter_sees_a_new_series() {
    let mut p = processor();
    let mut batch = Batch::default();
    p.process(b"a 1\n", None, 1, &mut batch).expect("scrape");
    let mut batch = Batch {
        samples: Vec::with_capacity(8),
        series: Vec::with_capacity(8),
        ..Batch::default()
    };
    let allocations = allocations_in(|| {
        p.process(b"a 2\nb 1\n", None, 2, &mut batch)
            .expect("scrape");
    });
    assert!(
        allocations >= 1,
        "a new series allocates its labels: {allocations}"
    );
}
