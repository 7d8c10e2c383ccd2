//! The bytes on disk: segment names, the file header, record frames and the trailer.
//! docs/buffer-format.md describes the same format for readers of the files.
//!
//! ```text
//! segment file  = file header, record*, [trailer]
//! file header   = magic "SCRPLBUF" (8) | version u32 LE (= 1) | segment u64 LE | crc32c u32 LE
//!                 (crc over the 20 bytes before it)                              = 24 bytes
//! record        = len u32 LE | crc u32 LE | kind u8 | items u32 LE | payload (len bytes)
//!                 crc = crc32c(len | kind | items | payload)                     = 13 + len
//! trailer       = a record of kind 0xFF whose payload is
//!                 items u64 LE | first_append_ms i64 LE | last_append_ms i64 LE  = 37 bytes
//! ```
//!
//! NEVER reorder or remove fields or change their meaning: files written by one version are
//! read by the next. A new field needs a new version or a new record kind.

use std::path::{Path, PathBuf};

/// Magic bytes opening every segment file.
pub const FILE_MAGIC: [u8; 8] = *b"SCRPLBUF";
/// Version of the segment format written.
pub const FILE_VERSION: u32 = 1;
/// Size of the file header.
pub const FILE_HEADER_LEN: u64 = 24;
/// Size of a record's frame before its payload.
pub const FRAME_HEADER_LEN: usize = 13;
/// Record kind of the trailer that seals a segment.
pub const TRAILER_KIND: u8 = 0xFF;
/// Payload size of the trailer.
pub const TRAILER_PAYLOAD_LEN: usize = 24;
/// Size of the whole trailer record.
pub const TRAILER_LEN: u64 = (FRAME_HEADER_LEN + TRAILER_PAYLOAD_LEN) as u64;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The header of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub crc: u32,
    pub kind: u8,
    pub items: u32,
}

/// What the trailer of a sealed segment says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Items (the writer's count, e.g. samples) in the segment's records.
    pub items: u64,
    /// Wall-clock time of the first and last append, ms since the epoch.
    pub first_append_ms: i64,
    pub last_append_ms: i64,
}

/// Why bytes are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs (a torn tail, or the writer is not done).
    Short,
    /// The length is over the record limit.
    TooLong,
    /// Kind 0 (never written: zeroed or preallocated bytes).
    BadKind,
    /// The checksum does not match.
    Checksum,
}

/// The file name of segment `index`: 20 digits, so names sort like numbers.
pub fn segment_name(index: u64) -> String {
    format!("{index:020}{SEGMENT_SUFFIX}")
}

/// The path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_name(index))
}

/// The index of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file header of segment `index`.
pub fn file_header(index: u64) -> [u8; FILE_HEADER_LEN as usize] {
    let mut out = [0u8; FILE_HEADER_LEN as usize];
    out[..8].copy_from_slice(&FILE_MAGIC);
    out[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The segment index a file header names, if the header is valid.
pub fn parse_file_header(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..FILE_HEADER_LEN as usize)?;
    let crc = u32::from_le_bytes(header[20..24].try_into().ok()?);
    if header[..8] != FILE_MAGIC
        || u32::from_le_bytes(header[8..12].try_into().ok()?) != FILE_VERSION
        || crc32c::crc32c(&header[..20]) != crc
    {
        return None;
    }
    Some(u64::from_le_bytes(header[12..20].try_into().ok()?))
}

/// The checksum of a record.
pub fn record_crc(kind: u8, items: u32, payload: &[u8]) -> u32 {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; 9];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4] = kind;
    head[5..].copy_from_slice(&items.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Appends a whole record (frame and payload) to `out`. The payload must be at most
/// `u32::MAX` bytes (callers check the record limit first).
pub fn encode_record(out: &mut Vec<u8>, kind: u8, items: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(kind, items, payload).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&items.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads a frame header; checks what can be checked without the payload.
pub fn parse_frame_header(bytes: &[u8], max_len: usize) -> Result<FrameHeader, FrameError> {
    let Some(h) = bytes.get(..FRAME_HEADER_LEN) else {
        return Err(FrameError::Short);
    };
    let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let header = FrameHeader {
        len: word(0),
        crc: word(4),
        kind: h[8],
        items: word(9),
    };
    if header.kind == 0 {
        return Err(FrameError::BadKind);
    }
    if header.len as usize > max_len {
        return Err(FrameError::TooLong);
    }
    Ok(header)
}

/// Checks a payload against its header.
pub fn check_payload(header: &FrameHeader, payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() < header.len as usize {
        return Err(FrameError::Short);
    }
    if record_crc(header.kind, header.items, &payload[..header.len as usize]) != header.crc {
        return Err(FrameError::Checksum);
    }
    Ok(())
}

/// Decodes one whole record at the start of `bytes`: its header and payload.
pub fn decode_record(bytes: &[u8], max_len: usize) -> Result<(FrameHeader, &[u8]), FrameError> {
    let header = parse_frame_header(bytes, max_len)?;
    let payload = &bytes[FRAME_HEADER_LEN..];
    check_payload(&header, payload)?;
    Ok((header, &payload[..header.len as usize]))
}

/// The trailer record's bytes.
pub fn encode_trailer(trailer: &Trailer) -> Vec<u8> {
    let mut payload = [0u8; TRAILER_PAYLOAD_LEN];
    payload[..8].copy_from_slice(&trailer.items.to_le_bytes());
    payload[8..16].copy_from_slice(&trailer.first_append_ms.to_le_bytes());
    payload[16..].copy_from_slice(&trailer.last_append_ms.to_le_bytes());
    let mut out = Vec::with_capacity(TRAILER_LEN as usize);
    encode_record(&mut out, TRAILER_KIND, 0, &payload);
    out
}

/// The trailer in `bytes` (exactly the last [`TRAILER_LEN`] bytes of a file), if valid.
pub fn parse_trailer(bytes: &[u8]) -> Option<Trailer> {
    let (header, payload) = decode_record(bytes, TRAILER_PAYLOAD_LEN).ok()?;
    if header.kind != TRAILER_KIND || payload.len() != TRAILER_PAYLOAD_LEN {
        return None;
    }
    Some(trailer_from_payload(payload))
}

/// The trailer a trailer record's payload holds (which must be [`TRAILER_PAYLOAD_LEN`] long).
pub fn trailer_from_payload(payload: &[u8]) -> Trailer {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        if let Some(s) = payload.get(at..at + 8) {
            b.copy_from_slice(s);
        }
        b
    };
    Trailer {
        items: u64::from_le_bytes(word(0)),
        first_append_ms: i64::from_le_bytes(word(8)),
        last_append_ms: i64::from_le_bytes(word(16)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_numbers_and_parse_back() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "42.seg",
            "0000000000000000004a.seg",
            "00000000000000000042.tmp",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_headers_round_trip_and_reject_damage() {
        let h = file_header(7);
        assert_eq!(parse_file_header(&h), Some(7));
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert_eq!(parse_file_header(&bad), None, "byte {i}");
        }
        assert_eq!(parse_file_header(&h[..10]), None);
    }

    #[test]
    fn records_round_trip_and_every_flipped_bit_is_caught() {
        let mut rec = Vec::new();
        encode_record(&mut rec, 3, 9, b"payload");
        let (h, p) = decode_record(&rec, 64).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((h.kind, h.items, p), (3, 9, &b"payload"[..]));
        for bit in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad, 64).is_err(), "bit {bit}");
        }
        assert_eq!(
            decode_record(&rec[..rec.len() - 1], 64),
            Err(FrameError::Short)
        );
        assert_eq!(decode_record(&rec, 3), Err(FrameError::TooLong));
        assert_eq!(decode_record(&[0u8; 20], 64), Err(FrameError::BadKind));
    }

    #[test]
    fn trailers_round_trip() {
        let t = Trailer {
            items: 5,
            first_append_ms: -1,
            last_append_ms: 1_700_000_000_000,
        };
        let bytes = encode_trailer(&t);
        assert_eq!(bytes.len() as u64, TRAILER_LEN);
        assert_eq!(parse_trailer(&bytes), Some(t));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert_eq!(parse_trailer(&bad), None);
    }
}
