//! Batches as buffer records, compactly: the steady state of a scrape costs about one bit
//! per unchanged sample and a few bytes per changed one.
//!
//! Two record kinds (docs/buffer-format.md has the byte layout):
//! - [`KIND_SNAPSHOT`], the first record of every segment: every live series (ref and
//!   labels), so that a reader can start at any segment without the ones before it. Encoder
//!   and decoder state start afresh after it.
//! - [`KIND_BATCH`]: one [`Batch`]. Its samples share one timestamp unless flagged otherwise
//!   (a scrape's samples do); its list of refs is written as "the same list as the last batch
//!   scrape), else as delta varints; values are compressed against the series' previous
//!   value in the segment: `0` for an unchanged value, else the cheapest of the XOR's changed
//!   bits (Gorilla) and the change of the value's decimal mantissa (values are parsed from
//!   decimal text: 12.345 -> 12.362 is a step of 17 at scale 3, a few bits where XOR needs
//!   dozens).
//!   Definitions larger than [`DEFLATE_OVER`] bytes are deflated.
//!
//! Invariants:
//! 1. The decoder rebuilds exactly the encoder's state from the records of one segment in
//!    order, so a batch decodes to the series refs, timestamps and value bits it was encoded
//!    from (bit for bit: NaN payloads and the staleness marker included).
//! 2. Decoding never panics and never allocates more than [`MAX_DECODED_BYTES`] for one
//!    record, whatever the bytes: a record that does not decode is an error the caller treats
//!    as damage.
//! 3. State is bounded by the live series: a `gone` ref's value state and ref list are dropped.
//! 4. The encoder keeps the writer's table of live series: each defined series' labels beside
//!    its value state, in one slot (no second map of labels); a segment start resets value
//!    states and lists but keeps the table, which the snapshot is written from, streamed
//!    through the deflater (no copy of every label in between). Slots live in pages, so the
//!    table grows without ever holding two copies of itself.

use std::io::{Read, Write};

use crate::append::{Batch, Sample, SeriesRef};
use crate::labels::{Labels, LabelsBuilder};
use crate::pages::Pages;

/// Record kind of a segment's first record.
pub const KIND_SNAPSHOT: u8 = 1;
/// Record kind of a batch.
pub const KIND_BATCH: u8 = 2;
/// Definition blocks larger than this are deflated.
pub const DEFLATE_OVER: usize = 256;
/// Snapshots of at most this many series are written as they are, larger ones deflated.
const SNAPSHOT_RAW_SERIES: usize = 4;
/// A snapshot goes to the deflater in pieces of about this size.
const SNAPSHOT_CHUNK: usize = 64 << 10;
/// Decoded definitions of one record are at most this large.
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

const FLAG_DEFS: u8 = 1;
const FLAG_GONE: u8 = 1 << 1;
const FLAG_SAME_REFS: u8 = 1 << 2;
const FLAG_TIMESTAMPS: u8 = 1 << 3;
const FLAG_DEFLATED: u8 = 1 << 4;

/// A record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the record does, or a number does not fit.
    #[error("record truncated or malformed at byte {0}")]
    Malformed(usize),
    /// A label is not UTF-8 or a label set is invalid.
    #[error("invalid label in a series definition")]
    Label,
    /// Deflated definitions do not inflate.
    #[error("definitions do not inflate")]
    Inflate(#[source] std::io::Error),
    /// A record of a kind this version does not know.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// A batch uses "same refs" for a list the decoder never saw.
    #[error("batch refers to an unknown ref list")]
    UnknownList,
}

/// The writer's side of the codec.
#[derive(Debug, Default)]
pub struct Encoder {
    state: State,
    defs: Vec<u8>,
    refs: Vec<u64>,
    /// Scratch for [`list_hash`].
    ref_bytes: Vec<u8>,
    /// The slots of `refs`.
    slots: Vec<u32>,
}

/// The reader's side of the codec.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    refs: Vec<u64>,
    /// The slots of `refs`.
    slots: Vec<u32>,
    inflated: Vec<u8>,
}

/// What one batch record holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub series: Vec<(u64, Labels)>,
    /// (ref, timestamp ms, value)
    pub samples: Vec<(u64, i64, f64)>,
    pub gone: Vec<u64>,
}

/// State shared in shape by encoder and decoder; reset at every segment start.
///
/// Each series' value state lives in a slot; each ref list remembers its series' slots, so a
/// batch with the same list as last time (the steady state of a scrape) walks its value states
/// in order instead of looking each series up: with a hundred thousand series the states do
/// not stay in the CPU's caches between scrapes, and a random probe per sample cost more than
/// the rest of the encoding.
#[derive(Debug, Default)]
struct State {
    /// Value states (and, in the encoder, labels) by slot; a slot is free when its series is
    /// gone. In pages: the table grows without holding two copies of itself.
    slots: Pages<Slot>,
    free: Vec<u32>,
    /// Live slots.
    live: usize,
    /// The live slots, found by their series ref ([`ref_hash`]).
    index: hashbrown::HashTable<u32>,
    /// Ref lists by first ref.
    lists: hashbrown::HashMap<u64, List>,
    last_ts: i64,
    /// Lists keep their refs (the decoder's), else a hash of them (the encoder's).
    keep_refs: bool,
}

#[derive(Debug, Default)]
struct Slot {
    series: u64,
    /// The series' labels, in the encoder's table (invariant 4); `None` in the decoder.
    labels: Option<Labels>,
    value: ValueState,
    live: bool,
}

/// A ref list and, in the same order, its series' slots. The decoder keeps the refs (it
/// expands a "same list" from them); the encoder keeps a 128-bit hash of them instead (it
/// only compares), 8 bytes per series less on the side that runs all the time.
#[derive(Debug, Default)]
struct List {
    refs: Vec<u64>,
    hash: u128,
    slots: Vec<u32>,
}

/// Laid out in 16 bytes (a slot in 48, with the labels): it is kept for every live series by
/// the writer, and by each endpoint's reader while it reads the log.
#[derive(Clone, Copy, Debug, Default)]
struct ValueState {
    bits: u64,
    /// The previous value is a decimal at scale k (value = n / 10^k for an integer n, which
    /// [`ValueState::scale`] computes from `bits` when it is needed); see `at_scale`.
    scale_k: u8,
    has_scale: bool,
    /// The XOR window (leading and trailing zero bits), when `window`.
    leading: u8,
    trailing: u8,
    window: bool,
}

impl Encoder {
    /// Starts a segment: value states and lists are forgotten, the table of live series
    /// stays (invariant 4); write its snapshot next.
    pub fn reset(&mut self) {
        let st = &mut self.state;
        for slot in st.slots.iter_mut() {
            slot.value = ValueState::default();
        }
        st.lists = Default::default();
        st.last_ts = 0;
    }

    /// Live series in the table.
    pub fn live_series(&self) -> usize {
        self.state.live
    }

    /// Writes the snapshot record of the live series to `out`, streamed through the deflater.
    pub fn snapshot(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let st = &self.state;
        let series = st
            .slots
            .iter()
            .filter(|s| s.live)
            .filter_map(|s| Some((s.series, s.labels.as_ref()?)));
        let count = series.clone().count();
        if count <= SNAPSHOT_RAW_SERIES {
            out.push(0);
            put_definitions(out, count, series);
            return;
        }
        out.push(FLAG_DEFLATED);
        let mut enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
        let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK + 1024);
        put_varint(&mut chunk, count as u64);
        let mut prev = 0u64;
        for (r, labels) in series {
            put_definition(&mut chunk, &mut prev, r, labels);
            if chunk.len() >= SNAPSHOT_CHUNK {
                // Writing to a Vec cannot fail.
                let _ = enc.write_all(&chunk);
                chunk.clear();
            }
        }
        let _ = enc.write_all(&chunk);
        let _ = enc.finish();
    }

    /// Done with `batch`, written or not: the table takes its definitions (again: that is
    /// harmless) and forgets its gone refs.
    pub fn finish(&mut self, batch: &Batch) {
        self.state.define(batch);
        for r in &batch.gone {
            self.state.forget(r.0);
        }
    }

    /// Writes `batch` as a record to `out`, advancing the state; the table takes its
    /// definitions. Its gone refs stay in the table until [`Encoder::finish`] (a batch that
    /// did not fit is encoded again after a snapshot, which must still hold them).
    pub fn batch(&mut self, batch: &Batch, out: &mut Vec<u8>) {
        out.clear();
        self.state.define(batch);
        let st = &mut self.state;
        let mut flags = 0;
        if !batch.series.is_empty() {
            flags |= FLAG_DEFS;
        }
        if !batch.gone.is_empty() {
            flags |= FLAG_GONE;
        }
        let base = batch.samples.first().map_or(st.last_ts, |s| s.timestamp_ms);
        if batch.samples.iter().any(|s| s.timestamp_ms != base) {
            flags |= FLAG_TIMESTAMPS;
        }
        self.refs.clear();
        self.refs.extend(batch.samples.iter().map(|s| s.series.0));
        let hash = list_hash(&self.refs, &mut self.ref_bytes);
        let same = self
            .refs
            .first()
            .and_then(|first| st.lists.get(first))
            .is_some_and(|l| l.slots.len() == self.refs.len() && l.hash == hash);
        if same {
            flags |= FLAG_SAME_REFS;
        }
        st.resolve(&self.refs, same, &mut self.slots, hash);
        self.defs.clear();
        if !batch.series.is_empty() {
            put_definitions(
                &mut self.defs,
                batch.series.len(),
                batch.series.iter().map(|(r, l)| (r.0, l)),
            );
            if self.defs.len() > DEFLATE_OVER {
                flags |= FLAG_DEFLATED;
            }
        }
        out.push(flags);
        put_varint(out, zigzag(base.wrapping_sub(st.last_ts)));
        st.last_ts = base;
        put_varint(out, batch.samples.len() as u64);
        if flags & FLAG_DEFS != 0 {
            if flags & FLAG_DEFLATED != 0 {
                let mut packed = Vec::new();
                deflate(&self.defs, &mut packed);
                put_varint(out, packed.len() as u64);
                out.extend_from_slice(&packed);
            } else {
                put_varint(out, self.defs.len() as u64);
                out.extend_from_slice(&self.defs);
            }
        }
        if flags & FLAG_GONE != 0 {
            put_varint(out, batch.gone.len() as u64);
            let mut prev = 0u64;
            for r in &batch.gone {
                put_varint(out, zigzag(r.0.wrapping_sub(prev) as i64));
                prev = r.0;
            }
        }
        if let Some(&first) = self.refs.first() {
            put_varint(out, first);
            if !same {
                let mut prev = first;
                for &r in &self.refs[1..] {
                    put_varint(out, zigzag(r.wrapping_sub(prev) as i64));
                    prev = r;
                }
            }
        }
        if flags & FLAG_TIMESTAMPS != 0 {
            for s in &batch.samples {
                put_varint(out, zigzag(s.timestamp_ms.wrapping_sub(base)));
            }
        }
        let mut bits = BitWriter::new(out);
        for (s, &slot) in batch.samples.iter().zip(&self.slots) {
            if let Some(slot) = st.slots.get_mut(slot as usize) {
                slot.value.encode(s.value.to_bits(), &mut bits);
            }
        }
        bits.finish();
    }
}

impl Decoder {
    /// Forgets all state: the next record starts a segment.
    pub fn reset(&mut self) {
        self.state = State::default();
    }

    /// The series of a snapshot record.
    pub fn snapshot(&mut self, payload: &[u8]) -> Result<Vec<(u64, Labels)>, DecodeError> {
        let (&flags, rest) = payload.split_first().ok_or(DecodeError::Malformed(0))?;
        let defs = if flags & FLAG_DEFLATED != 0 {
            inflate(rest, &mut self.inflated)?;
            &self.inflated[..]
        } else {
            rest
        };
        read_definitions(defs)
    }

    /// Decodes a batch record, advancing the state.
    pub fn batch(&mut self, payload: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
        out.series.clear();
        out.samples.clear();
        out.gone.clear();
        let mut r = Cursor {
            bytes: payload,
            at: 0,
        };
        let flags = r.byte()?;
        let st = &mut self.state;
        let base = st.last_ts.wrapping_add(unzigzag(r.varint()?));
        st.last_ts = base;
        let n = usize::try_from(r.varint()?).map_err(|_| DecodeError::Malformed(r.at))?;
        // Every sample takes at least one bit.
        if n > payload.len().saturating_mul(8) {
            return Err(DecodeError::Malformed(r.at));
        }
        if flags & FLAG_DEFS != 0 {
            let len = r.len()?;
            let block = r.take(len)?;
            out.series = if flags & FLAG_DEFLATED != 0 {
                inflate(block, &mut self.inflated)?;
                read_definitions(&self.inflated)?
            } else {
                read_definitions(block)?
            };
        }
        if flags & FLAG_GONE != 0 {
            let count = r.len()?;
            let mut prev = 0u64;
            for _ in 0..count {
                prev = prev.wrapping_add(unzigzag(r.varint()?) as u64);
                out.gone.push(prev);
            }
        }
        self.refs.clear();
        self.slots.clear();
        if n > 0 {
            let first = r.varint()?;
            let same = flags & FLAG_SAME_REFS != 0;
            if same {
                let list = st.lists.get(&first).ok_or(DecodeError::UnknownList)?;
                if list.refs.len() != n {
                    return Err(DecodeError::UnknownList);
                }
                self.refs.extend_from_slice(&list.refs);
            } else {
                self.refs.push(first);
                let mut prev = first;
                for _ in 1..n {
                    prev = prev.wrapping_add(unzigzag(r.varint()?) as u64);
                    self.refs.push(prev);
                }
            }
            // The decoder's lists keep their refs: a "same list" is expanded from them.
            st.keep_refs = true;
            st.resolve(&self.refs, same, &mut self.slots, 0);
        }
        let mut timestamps = Vec::new();
        if flags & FLAG_TIMESTAMPS != 0 {
            for _ in 0..n {
                timestamps.push(base.wrapping_add(unzigzag(r.varint()?)));
            }
        }
        let mut bits = BitReader::new(&payload[r.at..]);
        out.samples.reserve(n);
        for (i, (&series, &slot)) in self.refs.iter().zip(&self.slots).enumerate() {
            let value = st
                .slots
                .get_mut(slot as usize)
                .and_then(|s| s.value.decode(&mut bits))
                .ok_or(DecodeError::Malformed(payload.len()))?;
            let ts = timestamps.get(i).copied().unwrap_or(base);
            out.samples.push((series, ts, f64::from_bits(value)));
        }
        for &g in &out.gone {
            st.forget(g);
        }
        Ok(())
    }
}

impl Decoded {
    /// The batch with refs as given.
    pub fn to_batch(&self) -> Batch {
        Batch {
            series: self
                .series
                .iter()
                .map(|(r, l)| (SeriesRef(*r), l.clone()))
                .collect(),
            samples: self
                .samples
                .iter()
                .map(|&(r, t, v)| Sample {
                    series: SeriesRef(r),
                    timestamp_ms: t,
                    value: v,
                })
                .collect(),
            gone: self.gone.iter().map(|r| SeriesRef(*r)).collect(),
        }
    }
}

impl State {
    /// Sets `slots` to the slots of `refs` (each series gets one when it has none) and
    /// remembers the list under its first ref. `same`: `refs` is the list already remembered
    /// under its first ref, whose slots are reused when they still belong to its series.
    fn resolve(&mut self, refs: &[u64], same: bool, slots: &mut Vec<u32>, hash: u128) {
        slots.clear();
        let Some(&first) = refs.first() else {
            return;
        };
        if same && let Some(list) = self.lists.get(&first) {
            // A list's slots stay its series' until one of them is gone, and a gone ref never
            // comes back (a decoder may be fed anything, so this is checked, not assumed).
            let valid = list.slots.len() == refs.len()
                && list.slots.iter().zip(refs).all(|(&slot, &r)| {
                    self.slots
                        .get(slot as usize)
                        .is_some_and(|s| s.live && s.series == r)
                });
            if valid {
                slots.extend_from_slice(&list.slots);
                return;
            }
        }
        slots.extend(refs.iter().map(|&r| self.slot(r)));
        let keep_refs = self.keep_refs;
        let list = self.lists.entry(first).or_default();
        list.refs.clear();
        if keep_refs {
            list.refs.extend_from_slice(refs);
        } else {
            list.hash = hash;
        }
        list.slots.clear();
        list.slots.extend_from_slice(slots);
    }

    /// The slot of `series`, taken from the free ones (or added) when it has none.
    fn slot(&mut self, series: u64) -> u32 {
        let hash = ref_hash(series);
        let State { index, slots, .. } = self;
        if let Some(&slot) = index.find(hash, |&i| holds(slots, i, series)) {
            return slot;
        }
        let fresh = Slot {
            series,
            labels: None,
            live: true,
            value: ValueState::default(),
        };
        self.live += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = fresh;
                }
                slot
            }
            None => {
                // More than u32::MAX live series would not fit in memory long before.
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(fresh);
                slot
            }
        };
        let State { index, slots, .. } = self;
        index.insert_unique(hash, slot, |&i| {
            slots.get(i as usize).map_or(0, |s| ref_hash(s.series))
        });
        slot
    }

    /// Drops a gone series' value state and the ref list it heads (invariant 3).
    fn forget(&mut self, series: u64) {
        let State { index, slots, .. } = self;
        if let Ok(entry) = index.find_entry(ref_hash(series), |&i| holds(slots, i, series)) {
            let (slot, _) = entry.remove();
            if let Some(s) = slots.get_mut(slot as usize) {
                s.live = false;
                s.labels = None;
                self.free.push(slot);
                self.live -= 1;
            }
        }
        self.lists.remove(&series);
    }

    /// Gives `batch`'s series their slots with their labels (the encoder's table).
    fn define(&mut self, batch: &Batch) {
        for (r, labels) in &batch.series {
            let slot = self.slot(r.0);
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.labels = Some(labels.clone());
            }
        }
    }
}

/// A 128-bit hash of a ref list (the encoder's lists keep it instead of the refs); `bytes` is
/// scratch.
fn list_hash(refs: &[u64], bytes: &mut Vec<u8>) -> u128 {
    bytes.clear();
    for r in refs {
        bytes.extend_from_slice(&r.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// Whether slot `i` is `series`' (the index holds live slots only).
fn holds(slots: &Pages<Slot>, i: u32, series: u64) -> bool {
    slots.get(i as usize).is_some_and(|s| s.series == series)
}

/// The index's hash of a series ref (SplitMix64's finaliser).
fn ref_hash(series: u64) -> u64 {
    let mut z = series;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ValueState {
    fn lead(&self) -> u32 {
        u32::from(self.leading)
    }

    fn trail(&self) -> u32 {
        u32::from(self.trailing)
    }

    /// Sets the window; `leading + trailing <= 64` (both callers check).
    fn set_window(&mut self, leading: u32, trailing: u32) {
        self.leading = leading.min(64) as u8;
        self.trailing = trailing.min(64) as u8;
    }

    /// The previous value's decimal form (scale k, mantissa n), when it has one: n is a
    /// function of the value's bits and k, so encoder and decoder compute the same.
    fn scale(&self) -> Option<(u8, i64)> {
        if !self.has_scale {
            return None;
        }
        let k = self.scale_k;
        Some((k, at_scale(f64::from_bits(self.bits), k)?))
    }

    fn set_scale(&mut self, scale: Option<(u8, i64)>) {
        self.has_scale = scale.is_some();
        self.scale_k = scale.map_or(0, |(k, _)| k);
    }

    fn encode(&mut self, bits: u64, w: &mut BitWriter<'_>) {
        let xor = bits ^ self.bits;
        if xor == 0 {
            w.put(0, 1);
            return;
        }
        let value = f64::from_bits(bits);
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        let in_window = self.window && leading >= self.lead() && trailing >= self.trail();
        let window_cost = if in_window {
            2 + 64 - self.lead() - self.trail()
        } else {
            u32::MAX
        };
        let width = 64 - leading - trailing;
        let new_window_cost = 3 + 5 + 6 + width;
        let decimal = self
            .scale()
            .and_then(|(k, n0)| Some((k, at_scale(value, k)?, n0)))
            .map(|(k, n, n0)| (k, n, zigzag(n - n0)));
        let decimal_cost = decimal.map_or(u32::MAX, |(_, _, z)| 3 + delta_len(z));
        if decimal_cost < window_cost && decimal_cost < new_window_cost {
            if let Some((k, n, z)) = decimal {
                w.put(0b110, 3);
                put_delta(w, z);
                self.set_scale(Some((k, n)));
            }
        } else if in_window {
            w.put(0b10, 2);
            w.put(xor >> self.trail(), 64 - self.lead() - self.trail());
            self.rescale(value);
        } else {
            w.put(0b111, 3);
            w.put(u64::from(leading), 5);
            w.put(u64::from(width - 1), 6);
            w.put(xor >> trailing, width);
            self.set_window(leading, trailing);
            self.window = true;
            self.rescale(value);
        }
        self.bits = bits;
    }

    fn decode(&mut self, r: &mut BitReader<'_>) -> Option<u64> {
        if r.get(1)? == 0 {
            return Some(self.bits);
        }
        if r.get(1)? == 0 {
            if !self.window {
                return None;
            }
            let width = 64 - self.lead() - self.trail();
            self.bits ^= r.get(width)? << self.trail();
            self.rescale(f64::from_bits(self.bits));
            return Some(self.bits);
        }
        if r.get(1)? == 0 {
            let (k, n0) = self.scale()?;
            let n = n0.checked_add(unzigzag(get_delta(r)?))?;
            if n.unsigned_abs() >= MAX_DECIMAL {
                return None;
            }
            self.bits = (n as f64 / POW10[usize::from(k)]).to_bits();
            self.set_scale(Some((k, n)));
            return Some(self.bits);
        }
        let leading = r.get(5)? as u32;
        let width = r.get(6)? as u32 + 1;
        if leading + width > 64 {
            return None;
        }
        let trailing = 64 - leading - width;
        self.set_window(leading, trailing);
        self.window = true;
        self.bits ^= r.get(width)? << trailing;
        self.rescale(f64::from_bits(self.bits));
        Some(self.bits)
    }

    /// The decimal form of a value reached by XOR: at the current scale if it fits, else
    /// the smallest that does (encoder and decoder compute the same).
    fn rescale(&mut self, value: f64) {
        let scale = self
            .has_scale
            .then_some(self.scale_k)
            .and_then(|k| Some((k, at_scale(value, k)?)))
            .or_else(|| decimal(value));
        self.set_scale(scale);
    }
}

/// Powers of ten for decimal scales 0 to 9.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Decimal mantissas stay below 2^53 (exact as f64).
const MAX_DECIMAL: u64 = 1 << 53;

/// `n` with `n / 10^k` exactly `value` (same bits), if there is one below 2^53.
fn at_scale(value: f64, k: u8) -> Option<i64> {
    let pow = *POW10.get(usize::from(k))?;
    let n = (value * pow).round();
    if !n.is_finite() || n.abs() >= MAX_DECIMAL as f64 {
        return None;
    }
    let n = n as i64;
    // Compared as the decoder computes it (an integer has no negative zero: -0.0 is not a
    // decimal here).
    ((n as f64 / pow).to_bits() == value.to_bits()).then_some(n)
}

/// The smallest scale (0 to 9) at which `value` is a decimal (as values parsed from text
/// are: "12.345" is exactly 12345 / 10^3 correctly rounded).
fn decimal(value: f64) -> Option<(u8, i64)> {
    (0..POW10.len() as u8).find_map(|k| Some((k, at_scale(value, k)?)))
}

/// Bits [`put_delta`] takes for `z`.
fn delta_len(z: u64) -> u32 {
    match z {
        0..64 => 1 + 6,
        64..16384 => 2 + 14,
        16384..16_777_216 => 3 + 24,
        _ => 3 + 6 + (64 - z.leading_zeros()),
    }
}

/// A zigzagged delta in a prefix code: `0`+6 bits, `10`+14, `110`+24, `111`+length+bits.
fn put_delta(w: &mut BitWriter<'_>, z: u64) {
    match z {
        0..64 => {
            w.put(0, 1);
            w.put(z, 6);
        }
        64..16384 => {
            w.put(0b10, 2);
            w.put(z, 14);
        }
        16384..16_777_216 => {
            w.put(0b110, 3);
            w.put(z, 24);
        }
        _ => {
            let n = 64 - z.leading_zeros();
            w.put(0b111, 3);
            w.put(u64::from(n - 1), 6);
            w.put(z, n);
        }
    }
}

fn get_delta(r: &mut BitReader<'_>) -> Option<u64> {
    if r.get(1)? == 0 {
        return r.get(6);
    }
    if r.get(1)? == 0 {
        return r.get(14);
    }
    if r.get(1)? == 0 {
        return r.get(24);
    }
    let n = r.get(6)? as u32 + 1;
    r.get(n)
}

/// Writes bits most significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    used: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            used: 0,
        }
    }

    /// Writes the low `n` (at most 64) bits of `value`.
    fn put(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        if n > 32 {
            self.put(value >> 32, n - 32);
            self.put(value & 0xffff_ffff, 32);
            return;
        }
        let value = value & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | value;
        self.used += n;
        while self.used >= 8 {
            self.used -= 8;
            self.out.push((self.acc >> self.used) as u8);
        }
        self.acc &= (1u64 << self.used) - 1;
    }

    fn finish(mut self) {
        if self.used > 0 {
            let pad = 8 - self.used;
            self.put(0, pad);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, bit: 0 }
    }

    /// The next `n` (at most 64) bits, or `None` past the end.
    fn get(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if self.bit + n as usize > self.bytes.len() * 8 {
            return None;
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.bit / 8];
            let offset = (self.bit % 8) as u32;
            let take = (8 - offset).min(left);
            let bits = (byte >> (8 - offset - take)) & ((1u16 << take) - 1) as u8;
            out = (out << take) | u64::from(bits);
            left -= take;
            self.bit += take as usize;
        }
        Some(out)
    }
}

/// Reads bytes of a record with bounds checks.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(DecodeError::Malformed(self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(DecodeError::Malformed(self.at))
    }

    /// A length that must fit in what is left.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n > left.saturating_mul(8) {
            return Err(DecodeError::Malformed(self.at));
        }
        Ok(n as usize)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(DecodeError::Malformed(self.at))?;
        let s = self
            .bytes
            .get(self.at..end)
            .ok_or(DecodeError::Malformed(self.at))?;
        self.at = end;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Label)
    }
}

/// `count, (ref delta, label count, (name, value)*)*`, refs as zigzag deltas.
fn put_definitions<'a>(
    out: &mut Vec<u8>,
    count: usize,
    series: impl Iterator<Item = (u64, &'a Labels)>,
) {
    put_varint(out, count as u64);
    let mut prev = 0u64;
    for (r, labels) in series {
        put_definition(out, &mut prev, r, labels);
    }
}

/// One series of [`put_definitions`], its ref as a delta from `prev`.
fn put_definition(out: &mut Vec<u8>, prev: &mut u64, r: u64, labels: &Labels) {
    put_varint(out, zigzag(r.wrapping_sub(*prev) as i64));
    *prev = r;
    put_varint(out, labels.len() as u64);
    for l in labels {
        put_varint(out, l.name.len() as u64);
        out.extend_from_slice(l.name.as_bytes());
        put_varint(out, l.value.len() as u64);
        out.extend_from_slice(l.value.as_bytes());
    }
}

fn read_definitions(bytes: &[u8]) -> Result<Vec<(u64, Labels)>, DecodeError> {
    let mut r = Cursor { bytes, at: 0 };
    let count = r.len()?;
    let mut out = Vec::with_capacity(count.min(bytes.len()));
    let mut prev = 0u64;
    let mut builder = LabelsBuilder::new();
    for _ in 0..count {
        prev = prev.wrapping_add(unzigzag(r.varint()?) as u64);
        let n = r.len()?;
        builder.clear();
        for _ in 0..n {
            let name = r.str()?;
            let value = r.str()?;
            if name.is_empty() || value.is_empty() || builder.get(name).is_some() {
                return Err(DecodeError::Label);
            }
            builder.set(name, value);
        }
        out.push((prev, builder.build()));
    }
    if r.at != bytes.len() {
        return Err(DecodeError::Malformed(r.at));
    }
    Ok(out)
}

fn deflate(bytes: &[u8], out: &mut Vec<u8>) {
    let mut enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    let _ = enc.finish();
}

/// Inflates at most [`MAX_DECODED_BYTES`] (invariant 2).
fn inflate(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    let mut dec = flate2::read::DeflateDecoder::new(bytes).take(MAX_DECODED_BYTES + 1);
    dec.read_to_end(out).map_err(DecodeError::Inflate)?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        return Err(DecodeError::Malformed(bytes.len()));
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{STALE_NAN_BITS, stale_nan};
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn per_series_state_stays_small() {
        // Kept for every live series by the writer (value state and labels pointer, the only
        // per-series state of the writer besides its index): a regression here is memory per
        // series.
        assert_eq!(std::mem::size_of::<ValueState>(), 16);
        assert_eq!(std::mem::size_of::<Slot>(), 48);
    }

    fn labels(i: u64) -> Labels {
        Labels::from_pairs([
            ("__name__", format!("metric_{}", i % 7)),
            ("instance", "10.0.0.1:9100".to_owned()),
            ("job", "node".to_owned()),
            ("le", format!("{i}")),
        ])
    }

    fn sample(r: u64, ts: i64, v: f64) -> Sample {
        Sample {
            series: SeriesRef(r),
            timestamp_ms: ts,
            value: v,
        }
    }

    /// Encodes batches into one segment's worth of records and decodes them back.
    fn round_trip(batches: &[Batch]) -> (Vec<Batch>, usize) {
        let (mut enc, mut dec) = (Encoder::default(), Decoder::default());
        let mut buf = Vec::new();
        let mut bytes = 0;
        let mut out = Vec::new();
        let mut decoded = Decoded::default();
        for b in batches {
            enc.batch(b, &mut buf);
            enc.finish(b);
            bytes += buf.len();
            dec.batch(&buf, &mut decoded)
                .unwrap_or_else(|e| panic!("{e}"));
            out.push(decoded.to_batch());
        }
        (out, bytes)
    }

    fn same_bits(a: &Batch, b: &Batch) -> bool {
        a.series == b.series
            && a.gone == b.gone
            && a.samples.len() == b.samples.len()
            && a.samples.iter().zip(&b.samples).all(|(x, y)| {
                x.series == y.series
                    && x.timestamp_ms == y.timestamp_ms
                    && x.value.to_bits() == y.value.to_bits()
            })
    }

    #[test]
    fn a_scrape_stream_round_trips_and_costs_little() {
        let n = 500u64;
        let mut batches = Vec::new();
        for scrape in 0..100i64 {
            let ts = 1_700_000_000_000 + scrape * 15_000;
            let series = if scrape == 0 {
                (1..=n).map(|r| (SeriesRef(r), labels(r))).collect()
            } else {
                Vec::new()
            };
            let samples = (1..=n)
                .map(|r| {
                    let v = match r % 4 {
                        0 => 42.0,                                // constant
                        1 => (scrape * 3 + r as i64) as f64,      // counter
                        2 => (scrape as f64 * 0.37).sin() * 10.0, // gauge
                        _ => 1_000_000.0 + (scrape * 1024) as f64,
                    };
                    sample(r, ts, v)
                })
                .collect();
            batches.push(Batch {
                series,
                samples,
                gone: Vec::new(),
            });
        }
        let (out, _) = round_trip(&batches);
        assert!(batches.iter().zip(&out).all(|(a, b)| same_bits(a, b)));
        let (_, steady) = round_trip(&batches[1..]);
        let per_sample = steady as f64 / (99.0 * n as f64);
        // Exact sizes depend on the values; this bounds the steady state well below the
        // 8 bytes of a raw float.
        assert!(per_sample < 4.0, "{per_sample} bytes per sample");
    }

    #[test]
    fn decimal_steps_cost_a_few_bits() {
        // 100 float counters in seconds with millisecond steps: XOR would take dozens of
        // bits a step, the decimal mantissa's step 10 to 19.
        let batches: Vec<Batch> = (0..50i64)
            .map(|k| Batch {
                series: vec![],
                samples: (0..100i64)
                    .map(|r| {
                        sample(
                            r as u64 + 1,
                            k * 15_000,
                            (1_234_567 + r * 1000 + k * (r % 50)) as f64 / 1000.0,
                        )
                    })
                    .collect(),
                gone: vec![],
            })
            .collect();
        let (out, _) = round_trip(&batches);
        assert!(batches.iter().zip(&out).all(|(a, b)| same_bits(a, b)));
        let (_, steady) = round_trip(&batches[1..]);
        let (_, first) = round_trip(&batches[1..2]);
        let per_sample = (steady - first) as f64 / (48.0 * 100.0);
        assert!(per_sample < 2.0, "{per_sample} bytes per sample");
    }

    #[test]
    fn special_values_and_timestamps_round_trip_bit_for_bit() {
        let b1 = Batch {
            series: vec![(SeriesRef(5), labels(5)), (SeriesRef(9), labels(9))],
            samples: vec![
                sample(5, 10, f64::from_bits(0x7ff8_0000_0000_0001)),
                sample(9, 12, -0.0),
                sample(5, 11, stale_nan()),
                sample(9, -3, f64::INFINITY),
            ],
            gone: vec![],
        };
        let b2 = Batch {
            series: vec![],
            samples: vec![sample(9, i64::MAX, f64::MIN_POSITIVE)],
            gone: vec![SeriesRef(5), SeriesRef(9)],
        };
        let (out, _) = round_trip(&[b1.clone(), b2.clone()]);
        assert!(same_bits(&out[0], &b1));
        assert!(same_bits(&out[1], &b2));
        assert_eq!(out[0].samples[2].value.to_bits(), STALE_NAN_BITS);
    }

    #[test]
    fn snapshots_of_the_table_round_trip_deflated_or_not() {
        for n in [0u64, 1, 300, 20_000] {
            let all: Vec<(u64, Labels)> = (1..=n).map(|r| (r * 3, labels(r))).collect();
            let mut enc = Encoder::default();
            // The table is what batches defined and did not end.
            let define = Batch {
                series: all
                    .iter()
                    .chain([(7, labels(7))].iter())
                    .map(|(r, l)| (SeriesRef(*r + 1_000_000), l.clone()))
                    .collect(),
                samples: vec![],
                gone: vec![SeriesRef(1_000_007)],
            };
            let mut buf = Vec::new();
            enc.batch(&define, &mut buf);
            // Not finished: a batch's gone refs stay in the table until it is.
            assert_eq!(enc.live_series(), n as usize + 1);
            enc.finish(&define);
            assert_eq!(enc.live_series(), n as usize);
            enc.reset();
            enc.snapshot(&mut buf);
            let got = Decoder::default()
                .snapshot(&buf)
                .unwrap_or_else(|e| panic!("{e}"));
            let want: Vec<(u64, Labels)> = all
                .iter()
                .map(|(r, l)| (*r + 1_000_000, l.clone()))
                .collect();
            assert_eq!(got, want);
            if n >= 300 {
                assert_eq!(buf[0], FLAG_DEFLATED);
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = Decoder::default();
        let mut out = Decoded::default();
        for bytes in [
            &[][..],
            &[0xff],
            &[FLAG_SAME_REFS, 0, 2, 1],
            &[
                0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            &[FLAG_DEFS, 0, 0, 5, 1, 0, 1, 1],
        ] {
            assert!(dec.batch(bytes, &mut out).is_err(), "{bytes:?}");
            assert!(
                dec.snapshot(bytes).is_err() || bytes.len() <= 1,
                "{bytes:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_batches_round_trip(
            steps in proptest::collection::vec(
                (proptest::collection::vec((1u64..20, -5i64..5, proptest::num::u64::ANY), 0..30),
                 proptest::collection::vec(1u64..20, 0..3)),
                1..20)
        ) {
            let mut batches = Vec::new();
            let mut last_ts: HashMap<u64, i64> = HashMap::new();
            let mut ts = 1000i64;
            for (samples, gone) in steps {
                ts += 1000;
                let mut b = Batch::default();
                for (r, dt, bits) in samples {
                    let t = (ts + dt).max(last_ts.get(&r).map_or(i64::MIN, |t| t + 1));
                    last_ts.insert(r, t);
                    b.samples.push(sample(r, t, f64::from_bits(bits)));
                }
                b.gone = gone.into_iter().map(SeriesRef).collect();
                b.gone.sort();
                b.gone.dedup();
                if b.samples.len() % 3 == 0 {
                    b.series = vec![(SeriesRef(ts as u64), labels(ts as u64))];
                }
                batches.push(b);
            }
            let (out, _) = round_trip(&batches);
            for (a, b) in batches.iter().zip(&out) {
                prop_assert!(same_bits(a, b), "{:?} != {:?}", a, b);
            }
        }

        #[test]
        fn decimal_values_round_trip_bit_for_bit(
            steps in proptest::collection::vec(
                proptest::collection::vec((0u8..10, -5_000_000i64..5_000_000, 0u8..4), 4),
                1..30)
        ) {
            // Values as text parsers make them (decimal / 10^k), with some left unchanged,
            // some negative zeros and some non-decimal bits mixed in.
            let mut batches = Vec::new();
            for (i, scrape) in steps.into_iter().enumerate() {
                let samples = scrape
                    .into_iter()
                    .enumerate()
                    .map(|(r, (k, n, kind))| {
                        let v = match kind {
                            0 => n as f64 / 10f64.powi(i32::from(k)),
                            1 => -0.0,
                            2 => (n as f64).sqrt(),
                            _ => n as f64,
                        };
                        sample(r as u64 + 1, 1000 * i as i64, v)
                    })
                    .collect();
                batches.push(Batch { series: vec![], samples, gone: vec![] });
            }
            let (out, _) = round_trip(&batches);
            for (a, b) in batches.iter().zip(&out) {
                prop_assert!(same_bits(a, b), "{:?} != {:?}", a, b);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut dec = Decoder::default();
            let mut out = Decoded::default();
            let _ = dec.batch(&bytes, &mut out);
            let _ = dec.snapshot(&bytes);
        }
    }
}
