//! The fast remote write encoder: protobuf written byte by byte, then snappy (block format).
//!
//! Invariants:
//! 1. A sample's wire labels are the labels the scrape loop made (shared, not copied: the
//!    agent holds each series' labels once), with the encoder's external labels merged in as
//!    the request is encoded (those the series lacks, in name order). After write relabeling
//!    the relabeled labels already hold the external labels: that endpoint's encoder has none.
//! 2. [`RequestEncoder::encode`] writes the bytes prost writes for the same `WriteRequest` (one
//!    `TimeSeries` with one `Sample` per [`WireSample`], in order), with one deliberate
//!    difference: a value of `-0.0` is written (prost, like Go's gogoproto, skips any value equal
//!    to `0.0` and so turns `-0.0` into `0.0`). Every other value, NaN bit patterns included
//!    (the staleness marker), is written as its exact bits.
//! 3. Buffers (protobuf, compressed) and the snappy encoder are reused between requests; after
//!    warm-up, encoding allocates nothing.
//! 4. [`RequestEncoder::encode_metadata`] writes the bytes prost writes for a `WriteRequest`
//!    that carries only `metadata` (no time series).

use std::sync::Arc;

use prost::encoding::{encode_varint, encoded_len_varint};

use crate::exposition::MetricType;
use crate::labels::{Labels, Pair};
use crate::metadata::Metadata;

/// One sample on its way to the wire.
#[derive(Clone, Debug)]
pub struct WireSample {
    /// Its series' labels (invariant 1).
    pub labels: Labels,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Encodes write requests, reusing its buffers.
pub struct RequestEncoder {
    /// The endpoint's external labels, merged into every sample's (invariant 1).
    external: Labels,
    raw: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

/// A request that cannot be compressed (larger than snappy's block limit, about 4 GiB).
#[derive(Debug, thiserror::Error)]
#[error("cannot compress a {len}-byte write request")]
pub struct EncodeError {
    pub len: usize,
    #[source]
    pub source: Option<snap::Error>,
}

/// Protobuf tag bytes: (field number << 3) | wire type.
const TAG_TIMESERIES: u8 = 0x0a; // WriteRequest.timeseries = 1, length-delimited
const TAG_SAMPLES: u8 = 0x12; // TimeSeries.samples = 2, length-delimited
const TAG_SAMPLE_VALUE: u8 = 0x09; // Sample.value = 1, 64-bit
const TAG_SAMPLE_TIMESTAMP: u8 = 0x10; // Sample.timestamp = 2, varint
const TAG_METADATA: u8 = 0x1a; // WriteRequest.metadata = 3, length-delimited
const TAG_METADATA_TYPE: u8 = 0x08; // MetricMetadata.type = 1, varint
const TAG_METADATA_FAMILY: u8 = 0x12; // MetricMetadata.metric_family_name = 2, length-delimited
const TAG_METADATA_HELP: u8 = 0x22; // MetricMetadata.help = 4, length-delimited
const TAG_METADATA_UNIT: u8 = 0x2a; // MetricMetadata.unit = 5, length-delimited

/// A stable 64-bit hash of `labels` as they go on the wire with `external` merged in (picks
/// the shard; the xxh3 of the encoded `TimeSeries.labels` fields, the same in every process
/// and version that encodes labels the same way).
pub fn wire_hash(labels: &Labels, external: &Labels) -> u64 {
    let mut bytes = Vec::with_capacity(labels_len(labels, external));
    write_labels(labels, external, &mut bytes);
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The encoded size of `labels`' `TimeSeries.labels` fields, `external` merged in.
fn labels_len(labels: &Labels, external: &Labels) -> usize {
    if external.is_empty() {
        return labels.pairs().iter().map(Pair::field_len).sum();
    }
    merge(labels, external).map(Pair::field_len).sum()
}

/// Writes `labels`' `TimeSeries.labels` fields, `external` merged in.
fn write_labels(labels: &Labels, external: &Labels, out: &mut Vec<u8>) {
    if external.is_empty() {
        labels.pairs().iter().for_each(|p| p.write_field(out));
        return;
    }
    merge(labels, external).for_each(|p| p.write_field(out));
}

/// Series labels and the external labels they lack, in name order (series labels win).
fn merge<'a>(labels: &'a Labels, external: &'a Labels) -> impl Iterator<Item = &'a Pair> + 'a {
    let mut a = labels.pairs().iter().peekable();
    let mut b = external.pairs().iter().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.name() < y.name() => a.next(),
        (Some(x), Some(y)) if x.name() > y.name() => b.next(),
        (Some(_), Some(_)) => {
            b.next();
            a.next()
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

impl RequestEncoder {
    /// An encoder for an endpoint without external labels.
    pub fn new() -> Self {
        Self::with_external(Labels::empty())
    }

    /// An encoder for an endpoint with `external` labels (invariant 1).
    pub fn with_external(external: Labels) -> Self {
        RequestEncoder {
            external,
            raw: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Encodes `samples` as one `WriteRequest` and compresses it; returns the request body.
    pub fn encode(&mut self, samples: &[WireSample]) -> Result<&[u8], EncodeError> {
        self.encode_uncompressed(samples);
        self.compress()
    }

    /// Encodes `metadata` as one `WriteRequest` without time series and compresses it;
    /// returns the request body.
    pub fn encode_metadata(&mut self, metadata: &[Arc<Metadata>]) -> Result<&[u8], EncodeError> {
        let out = &mut self.raw;
        out.clear();
        for m in metadata {
            let kind = metric_type_number(m.kind);
            let len = if kind != 0 {
                1 + encoded_len_varint(kind)
            } else {
                0
            } + str_field_len(&m.family)
                + str_field_len(&m.help)
                + str_field_len(&m.unit);
            out.push(TAG_METADATA);
            encode_varint(len as u64, out);
            if kind != 0 {
                out.push(TAG_METADATA_TYPE);
                encode_varint(kind, out);
            }
            put_str_field(out, TAG_METADATA_FAMILY, &m.family);
            put_str_field(out, TAG_METADATA_HELP, &m.help);
            put_str_field(out, TAG_METADATA_UNIT, &m.unit);
        }
        self.compress()
    }

    /// Compresses the protobuf bytes in `raw`; returns the request body.
    fn compress(&mut self) -> Result<&[u8], EncodeError> {
        let len = self.raw.len();
        let max = snap::raw::max_compress_len(len);
        if max == 0 && len > 0 {
            return Err(EncodeError { len, source: None });
        }
        // Only ever grows, so the buffer is zeroed once, not per request.
        if self.compressed.len() < max {
            self.compressed.resize(max, 0);
        }
        let n = self
            .snappy
            .compress(&self.raw, &mut self.compressed)
            .map_err(|e| EncodeError {
                len,
                source: Some(e),
            })?;
        Ok(&self.compressed[..n])
    }

    /// The protobuf bytes of the last request (before compression).
    pub fn uncompressed(&self) -> &[u8] {
        &self.raw
    }

    /// Writes the protobuf bytes of a request into the reused buffer.
    fn encode_uncompressed(&mut self, samples: &[WireSample]) {
        let out = &mut self.raw;
        let external = &self.external;
        out.clear();
        for s in samples {
            let bits = s.value.to_bits();
            let sample_len = if bits != 0 { 1 + 8 } else { 0 }
                + if s.timestamp_ms != 0 {
                    1 + encoded_len_varint(s.timestamp_ms as u64)
                } else {
                    0
                };
            let labels_len = labels_len(&s.labels, external);
            let series_len = labels_len + 1 + encoded_len_varint(sample_len as u64) + sample_len;
            out.push(TAG_TIMESERIES);
            put_varint(out, series_len as u64);
            write_labels(&s.labels, external, out);
            out.push(TAG_SAMPLES);
            put_varint(out, sample_len as u64);
            if bits != 0 {
                out.push(TAG_SAMPLE_VALUE);
                out.extend_from_slice(&bits.to_le_bytes());
            }
            if s.timestamp_ms != 0 {
                out.push(TAG_SAMPLE_TIMESTAMP);
                // int64 is written as the varint of its two's complement, as prost does.
                put_varint(out, s.timestamp_ms as u64);
            }
        }
    }
}

impl Default for RequestEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// `prometheus.MetricMetadata.MetricType`'s number for `kind`.
fn metric_type_number(kind: MetricType) -> u64 {
    match kind {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

/// Appends `v` as a varint (what prost's `encode_varint` writes, without its generic buffer).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    out.extend_from_slice(&buf[..=n]);
}

fn str_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn put_str_field(out: &mut Vec<u8>, tag: u8, s: &str) {
    if s.is_empty() {
        return;
    }
    out.push(tag);
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{STALE_NAN_BITS, stale_nan};
    use crate::labels::Labels;
    use crate::remote::prompb;
    use proptest::prelude::*;
    use prost::Message;

    fn wire(labels: &Labels, timestamp_ms: i64, value: f64) -> WireSample {
        WireSample {
            labels: labels.clone(),
            timestamp_ms,
            value,
        }
    }

    fn reference(samples: &[(Labels, i64, f64)]) -> prompb::WriteRequest {
        prompb::WriteRequest {
            timeseries: samples
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
        }
    }

    /// The protobuf bytes of an encoder's result.
    fn decompressed(body: Result<Vec<u8>, EncodeError>) -> Vec<u8> {
        let body = body.unwrap_or_else(|e| panic!("encode failed: {e}"));
        snap::raw::Decoder::new()
            .decompress_vec(&body)
            .unwrap_or_else(|e| panic!("not snappy block format: {e}"))
    }

    /// Encodes with the fast encoder, checks the body decompresses to prost's bytes and decodes
    /// to the expected request; returns what was decoded.
    fn check(samples: &[(Labels, i64, f64)]) -> prompb::WriteRequest {
        let wire: Vec<_> = samples.iter().map(|(l, t, v)| wire(l, *t, *v)).collect();
        let mut enc = RequestEncoder::new();
        let body = enc.encode(&wire).map(<[u8]>::to_vec);
        let raw = decompressed(body);
        let expected = reference(samples);
        assert_eq!(raw, expected.encode_to_vec(), "bytes differ from prost's");
        assert_eq!(raw, enc.uncompressed());
        let decoded = prompb::WriteRequest::decode(raw.as_slice())
            .unwrap_or_else(|e| panic!("prost cannot decode: {e}"));
        assert_eq!(decoded.encode_to_vec(), expected.encode_to_vec());
        decoded
    }

    #[test]
    fn encodes_exactly_what_prost_encodes() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("instance", "a:9100")]);
        let b = Labels::from_pairs([("__name__", "x"), ("le", "+Inf")]);
        let long = Labels::from_pairs([("__name__", "long"), ("v", "é".repeat(200).as_str())]);
        check(&[]);
        check(&[(a.clone(), 1_700_000_000_000, 1.0)]);
        check(&[
            (a.clone(), 1, 0.0),
            (b.clone(), 0, 2.5),
            (b, -5, f64::INFINITY),
            (a, i64::MAX, f64::MIN_POSITIVE),
            (long, i64::MIN, -1e300),
            (Labels::empty(), 7, 7.0),
        ]);
    }

    #[test]
    fn external_labels_are_merged_and_series_labels_win() {
        let check =
            |series: &[(&str, &str)], external: &[(&str, &str)], expected: &[(&str, &str)]| {
                let (s, e) = (
                    Labels::from_pairs(series.iter().copied()),
                    Labels::from_pairs(external.iter().copied()),
                );
                let got: Vec<_> = merge(&s, &e).map(|p| (p.name(), p.value())).collect();
                assert_eq!(got, expected, "{series:?} + {external:?}");
                // What goes on the wire is what prost writes for the merged set, and the shard
                // hash is the xxh3 of those bytes (as saved cursors of earlier versions assume).
                let merged = Labels::from_pairs(expected.iter().copied());
                let prost_bytes = prompb::TimeSeries {
                    labels: merged
                        .iter()
                        .map(|l| prompb::Label {
                            name: l.name.to_owned(),
                            value: l.value.to_owned(),
                        })
                        .collect(),
                    samples: vec![],
                }
                .encode_to_vec();
                let mut ours = Vec::new();
                write_labels(&s, &e, &mut ours);
                assert_eq!(ours, prost_bytes);
                assert_eq!(labels_len(&s, &e), prost_bytes.len());
                assert_eq!(wire_hash(&s, &e), xxhash_rust::xxh3::xxh3_64(&prost_bytes));
                assert_eq!(wire_hash(&merged, &Labels::empty()), wire_hash(&s, &e));
            };
        check(&[("__name__", "up")], &[], &[("__name__", "up")]);
        check(&[], &[("a", "1")], &[("a", "1")]);
        check(
            &[("__name__", "up"), ("job", "node"), ("zone", "series")],
            &[
                ("cluster", "c1"),
                ("job", "external"),
                ("region", "r"),
                ("zz", "z"),
            ],
            &[
                ("__name__", "up"),
                ("cluster", "c1"),
                ("job", "node"),
                ("region", "r"),
                ("zone", "series"),
                ("zz", "z"),
            ],
        );
    }

    #[test]
    fn a_request_with_external_labels_is_what_prost_writes_for_the_merged_sets() {
        let external = Labels::from_pairs([("cluster", "c1"), ("job", "ext")]);
        let a = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        let b = Labels::from_pairs([("__name__", "x"), ("zone", "z")]);
        let wire: Vec<_> = [(&a, 1, 1.0), (&b, 2, 2.0)]
            .into_iter()
            .map(|(l, t, v)| WireSample {
                labels: l.clone(),
                timestamp_ms: t,
                value: v,
            })
            .collect();
        let mut enc = RequestEncoder::with_external(external);
        let raw = decompressed(enc.encode(&wire).map(<[u8]>::to_vec));
        let expected = reference(&[
            (
                Labels::from_pairs([("__name__", "up"), ("cluster", "c1"), ("job", "node")]),
                1,
                1.0,
            ),
            (
                Labels::from_pairs([
                    ("__name__", "x"),
                    ("cluster", "c1"),
                    ("job", "ext"),
                    ("zone", "z"),
                ]),
                2,
                2.0,
            ),
        ]);
        assert_eq!(raw, expected.encode_to_vec());
    }

    #[test]
    fn staleness_marker_keeps_its_bit_pattern() {
        let a = Labels::from_pairs([("__name__", "up")]);
        let decoded = check(&[(a, 10, stale_nan())]);
        assert_eq!(
            decoded.timeseries[0].samples[0].value.to_bits(),
            STALE_NAN_BITS
        );
    }

    #[test]
    fn negative_zero_is_kept() {
        let a = Labels::from_pairs([("__name__", "z")]);
        let mut enc = RequestEncoder::new();
        let body = enc.encode(&[wire(&a, 1, -0.0)]).map(<[u8]>::to_vec);
        let raw = snap::raw::Decoder::new().decompress_vec(&body.unwrap_or_default());
        let decoded = prompb::WriteRequest::decode(raw.unwrap_or_default().as_slice());
        let value = decoded.map(|d| d.timeseries[0].samples[0].value.to_bits());
        assert_eq!(value.ok(), Some((-0.0f64).to_bits()));
    }

    #[test]
    fn buffers_are_reused_between_requests() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "j")]);
        let big: Vec<_> = (0..1000).map(|i| wire(&a, i, i as f64)).collect();
        let mut enc = RequestEncoder::new();
        assert!(enc.encode(&big).is_ok());
        let (raw_cap, comp_cap) = (enc.raw.capacity(), enc.compressed.capacity());
        assert!(enc.encode(&big[..10]).is_ok());
        assert!(enc.encode(&big).is_ok());
        assert_eq!(
            (enc.raw.capacity(), enc.compressed.capacity()),
            (raw_cap, comp_cap)
        );
    }

    #[test]
    fn metadata_is_encoded_exactly_as_prost_encodes_it() {
        use crate::exposition::MetricType as Kind;
        use crate::metadata::Metadata;
        let kinds = [
            (Kind::Unknown, prompb::MetricType::Unknown),
            (Kind::Counter, prompb::MetricType::Counter),
            (Kind::Gauge, prompb::MetricType::Gauge),
            (Kind::Histogram, prompb::MetricType::Histogram),
            (Kind::GaugeHistogram, prompb::MetricType::GaugeHistogram),
            (Kind::Summary, prompb::MetricType::Summary),
            (Kind::Info, prompb::MetricType::Info),
            (Kind::StateSet, prompb::MetricType::Stateset),
        ];
        let ours: Vec<Arc<Metadata>> = kinds
            .iter()
            .enumerate()
            .map(|(i, (kind, _))| {
                Arc::new(Metadata {
                    family: format!("family_{i}"),
                    kind: *kind,
                    // Empty strings are left out, as proto3 does.
                    help: if i % 2 == 0 {
                        format!("Help é {i}.\n")
                    } else {
                        String::new()
                    },
                    unit: if i % 3 == 0 {
                        "seconds".into()
                    } else {
                        String::new()
                    },
                })
            })
            .collect();
        let expected = prompb::WriteRequest {
            timeseries: vec![],
            metadata: ours
                .iter()
                .zip(kinds)
                .map(|(m, (_, kind))| prompb::MetricMetadata {
                    r#type: kind as i32,
                    metric_family_name: m.family.clone(),
                    help: m.help.clone(),
                    unit: m.unit.clone(),
                })
                .collect(),
        };
        let mut enc = RequestEncoder::new();
        let raw = decompressed(enc.encode_metadata(&ours).map(<[u8]>::to_vec));
        assert_eq!(raw, expected.encode_to_vec(), "bytes differ from prost's");
        assert_eq!(
            prompb::WriteRequest::decode(raw.as_slice()).ok(),
            Some(expected)
        );
    }

    proptest! {
        #[test]
        fn matches_prost_for_any_input(
            series in proptest::collection::vec(
                (
                    proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,12}", "\\PC{0,30}"), 0..6),
                    any::<i64>(),
                    any::<f64>().prop_filter("prost drops -0.0", |v| v.to_bits() != (-0.0f64).to_bits()),
                ),
                0..20,
            )
        ) {
            let samples: Vec<_> = series
                .into_iter()
                .map(|(pairs, ts, v)| (Labels::from_pairs(pairs), ts, v))
                .collect();
            check(&samples);
        }
    }
}
