//! Fuzzes the buffer's segment reader and the agent's record decoder: any bytes as a segment
//! file (raw, or after a valid file header so the fuzzer reaches the records), opened as a
//! crash leaves it (recovery), then read to the end and every record decoded. It must never
//! panic, never hand out a record whose checksum fails, and account for every byte it skips.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run buffer_segment corpus/buffer_segment
//! seeds/buffer_segment -- -max_total_time=120 -detect_leaks=0` (new inputs go to the
//! first directory, which git ignores). Leak
//! detection is off because each opened log has a background sync thread whose thread-local
//! destructor registration LeakSanitizer reports while that thread winds down.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scrapelet::buffer::{Event, Log, Options, Position, format};
use scrapelet::wal::{Decoded, Decoder, KIND_BATCH, KIND_SNAPSHOT};

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| std::env::temp_dir().join(format!("scrapelet-fuzz-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = dir();
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let mut file = Vec::with_capacity(rest.len() + 24);
    if mode & 1 == 1 {
        file.extend_from_slice(&format::file_header(0));
    }
    file.extend_from_slice(rest);
    if std::fs::write(format::segment_path(dir, 0), &file).is_err() {
        return;
    }
    let options = Options {
        fsync_interval: std::time::Duration::ZERO,
        ..Options::new(dir.clone())
    };
    let Ok((log, _writer, _recovery)) = Log::open(options) else {
        return;
    };
    let mut reader = log.reader(Position::default());
    let mut decoder = Decoder::default();
    let mut decoded = Decoded::default();
    for _ in 0..100_000 {
        match reader.read() {
            Ok(Event::Record(r)) => {
                let full = std::fs::read(format::segment_path(dir, 0)).unwrap_or_default();
                let at = r.position.offset as usize;
                let end = r.end.offset as usize;
                // What is handed out is exactly a valid record of the file.
                let (_, payload) = format::decode_record(&full[at..end], usize::MAX)
                    .unwrap_or_else(|e| panic!("record at {at} fails its checks: {e:?}"));
                assert_eq!(payload, r.payload);
                match r.kind {
                    KIND_SNAPSHOT => {
                        decoder.reset();
                        let _ = decoder.snapshot(r.payload);
                    }
                    KIND_BATCH => {
                        let _ = decoder.batch(r.payload, &mut decoded);
                    }
                    _ => {}
                }
            }
            Ok(Event::Segment(_)) | Ok(Event::Gap(_)) => {}
            Ok(Event::End) | Ok(Event::Closed) | Err(_) => break,
        }
    }
});
