//! Tests of the buffer, by theme: what must always hold (`invariants`), damaged files and
//! failing writes (`known_errors`), the caps (`size_limits`), opening (`initialisation`), and
//! a property test against a model (`model`). The module's constants are small under
//! `cfg(test)` (4 KiB segments, 64 KiB records), so rotation and deletion really run.

mod initialisation;
mod invariants;
mod known_errors;
mod model;
mod size_limits;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::buffer::testing::FlakyFs;

/// Options for `dir` with small segments and syncing after every append.
fn options(dir: &Path) -> Options {
    Options {
        segment_size: MAX_SEGMENT_BYTES,
        fsync_interval: Duration::ZERO,
        ..Options::new(dir)
    }
}

fn open(opts: Options) -> (Log, Writer, Recovery) {
    Log::open(opts).unwrap_or_else(|e| panic!("open: {e}"))
}

/// A payload of `len` bytes that tells records apart.
fn payload(n: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = n.to_le_bytes().iter().copied().cycle().take(len).collect();
    if len >= 4 {
        p[..4].copy_from_slice(&n.to_le_bytes());
    }
    p
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    position: Position,
    kind: u8,
    items: u32,
    payload: Vec<u8>,
    before_start: bool,
}

/// Everything a reader from `from` finds until it catches up: records and gaps.
fn read_all(log: &Log, from: Position) -> (Vec<Got>, Vec<Gap>) {
    let mut reader = log.reader(from);
    let mut records = Vec::new();
    let mut gaps = Vec::new();
    loop {
        match reader.read().unwrap_or_else(|e| panic!("read: {e}")) {
            Event::Record(r) => records.push(Got {
                position: r.position,
                kind: r.kind,
                items: r.items,
                payload: r.payload.to_vec(),
                before_start: r.before_start,
            }),
            Event::Gap(g) => gaps.push(g),
            Event::Segment(_) => {}
            Event::End | Event::Closed => return (records, gaps),
        }
    }
}

fn append(w: &mut Writer, n: u32, len: usize) -> Position {
    if !w.fits(len) {
        return w
            .rotate(1, n, &payload(n, len))
            .unwrap_or_else(|e| panic!("rotate: {e}"));
    }
    w.append(2, n, &payload(n, len))
        .unwrap_or_else(|e| panic!("append: {e}"))
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| format::parse_segment_name(&e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}
