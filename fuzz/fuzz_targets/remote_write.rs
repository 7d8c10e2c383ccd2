//! Fuzzes the remote-write encoder: samples with arbitrary labels, values and timestamps, and
//! external labels, encoded and compressed by scrapelet's hand-written encoder, then
//! decompressed and decoded with prost's derived messages. What comes back must be exactly
//! what went in: one series per sample, labels sorted with the external ones merged (series
//! labels win), the value's bits and the timestamp; metadata likewise.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run remote_write corpus/remote_write
//! seeds/remote_write -- -max_total_time=60`.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use scrapelet::exposition::MetricType;
use scrapelet::labels::Labels;
use scrapelet::metadata::Metadata;
use scrapelet::remote::prompb::WriteRequest;
use scrapelet::remote::{RequestEncoder, WireSample};

#[derive(Arbitrary, Debug)]
struct Input {
    external: Vec<(String, String)>,
    samples: Vec<(Vec<(String, String)>, i64, u64)>,
    metadata: Vec<(String, u8, String, String)>,
}

fn labels(pairs: &[(String, String)]) -> Labels {
    // Labels hold unique names and no empty value (as the scrape side makes them).
    let mut seen = std::collections::BTreeMap::new();
    for (n, v) in pairs {
        if !n.is_empty() && !v.is_empty() {
            seen.insert(n.as_str(), v.as_str());
        }
    }
    Labels::from_pairs(seen)
}

fn decode(body: &[u8]) -> WriteRequest {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .unwrap_or_else(|e| panic!("not snappy: {e}"));
    WriteRequest::decode(raw.as_slice()).unwrap_or_else(|e| panic!("not a WriteRequest: {e}"))
}

const KINDS: [MetricType; 8] = [
    MetricType::Counter,
    MetricType::Gauge,
    MetricType::Histogram,
    MetricType::GaugeHistogram,
    MetricType::Summary,
    MetricType::Info,
    MetricType::StateSet,
    MetricType::Unknown,
];

fuzz_target!(|input: Input| {
    let external = labels(&input.external);
    let samples: Vec<WireSample> = input
        .samples
        .iter()
        .map(|(l, ts, bits)| WireSample {
            labels: labels(l),
            timestamp_ms: *ts,
            value: f64::from_bits(*bits),
        })
        .collect();
    let mut encoder = RequestEncoder::with_external(external.clone());
    let Ok(body) = encoder.encode(&samples) else {
        return;
    };
    let request = decode(body);
    assert_eq!(request.timeseries.len(), samples.len());
    assert!(request.metadata.is_empty());
    for (sent, got) in samples.iter().zip(&request.timeseries) {
        let mut want: Vec<(String, String)> = sent
            .labels
            .iter()
            .map(|l| (l.name.to_owned(), l.value.to_owned()))
            .collect();
        for e in external.iter() {
            if sent.labels.get(e.name).is_none() {
                want.push((e.name.to_owned(), e.value.to_owned()));
            }
        }
        want.sort();
        let got_labels: Vec<(String, String)> = got
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        assert_eq!(got_labels, want);
        assert_eq!(got.samples.len(), 1);
        assert_eq!(got.samples[0].value.to_bits(), sent.value.to_bits());
        assert_eq!(got.samples[0].timestamp, sent.timestamp_ms);
    }

    let metadata: Vec<Arc<Metadata>> = input
        .metadata
        .iter()
        .map(|(family, kind, help, unit)| {
            Arc::new(Metadata {
                family: family.clone(),
                kind: KINDS[usize::from(*kind) % KINDS.len()],
                help: help.clone(),
                unit: unit.clone(),
            })
        })
        .collect();
    let Ok(body) = encoder.encode_metadata(&metadata) else {
        return;
    };
    let request = decode(body);
    assert!(request.timeseries.is_empty());
    assert_eq!(request.metadata.len(), metadata.len());
    for (sent, got) in metadata.iter().zip(&request.metadata) {
        assert_eq!(got.metric_family_name, sent.family);
        assert_eq!(got.help, sent.help);
        assert_eq!(got.unit, sent.unit);
    }
});
