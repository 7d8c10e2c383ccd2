//! The appender under write errors: counted, never fatal, recovered from, and the series of a
//! batch that could not be written still defined for the batches after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::registry::Registry;

use super::*;
use crate::append::{Batch, Sample, SeriesRef};
use crate::buffer::Event;
use crate::buffer::testing::FlakyFs;
use crate::labels::Labels;

fn batch(define: &[u64], sample: &[u64], ts: i64) -> Batch {
    Batch {
        series: define
            .iter()
            .map(|r| {
                (
                    SeriesRef(*r),
                    Labels::from_pairs([("__name__", format!("m{r}"))]),
                )
            })
            .collect(),
        samples: sample
            .iter()
            .map(|r| Sample {
                series: SeriesRef(*r),
                timestamp_ms: ts,
                value: *r as f64,
            })
            .collect(),
        gone: Vec::new(),
    }
}

fn metric(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn write_errors_are_counted_and_recovered_from_and_definitions_survive_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let disk = FlakyFs::default();
    let mut registry = Registry::default();
    let wal = Wal::open_with(
        dir.path(),
        &BufferConfig::default(),
        &[],
        &mut registry,
        Arc::new(disk.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wal.log().hold("test", crate::buffer::Position::default());
    let appender = wal.appender();
    appender.append(batch(&[1], &[1], 1000));
    appender.flush();
    disk.full.store(true, Ordering::SeqCst);
    // Series 2 is defined in a batch that cannot be written.
    appender.append(batch(&[2], &[1, 2], 2000));
    appender.append(batch(&[], &[1, 2], 3000));
    appender.flush();
    assert_eq!(
        metric(&registry, "scrapelet_buffer_samples_dropped_total"),
        4.0
    );
    disk.full.store(false, Ordering::SeqCst);
    // The back-off under test is 1 ms; appends retry until one is written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while metric(&registry, "scrapelet_buffer_samples_written_total") < 3.0 {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        appender.append(batch(&[], &[1, 2], 4000));
        appender.flush();
    }
    // Read back: the new segment's snapshot defines series 2, so its samples make sense.
    let mut reader = wal.log().reader(crate::buffer::Position::default());
    let mut decoder = Decoder::default();
    let mut decoded = Decoded::default();
    let mut known = std::collections::HashSet::new();
    let mut samples = Vec::new();
    loop {
        match reader.read().unwrap_or_else(|e| panic!("{e}")) {
            Event::Segment(_) => decoder.reset(),
            Event::Record(r) if r.kind == KIND_SNAPSHOT => {
                for (r, _) in decoder.snapshot(r.payload).unwrap_or_default() {
                    known.insert(r);
                }
            }
            Event::Record(r) => {
                decoder
                    .batch(r.payload, &mut decoded)
                    .unwrap_or_else(|e| panic!("{e}"));
                known.extend(decoded.series.iter().map(|(r, _)| *r));
                for (r, t, _) in &decoded.samples {
                    assert!(known.contains(r), "sample of undefined series {r}");
                    samples.push((*r, *t));
                }
            }
            Event::Gap(g) => panic!("{g:?}"),
            Event::End | Event::Closed => break,
        }
    }
    assert_eq!(samples.first(), Some(&(1, 1000)));
    assert!(samples.contains(&(2, 4000)));
    assert!(!samples.iter().any(|(_, t)| *t == 2000 || *t == 3000));
}
