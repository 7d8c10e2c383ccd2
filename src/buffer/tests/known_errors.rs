//! Damaged files and failing writes: detected, skipped, counted, never fatal.

use std::io::{Seek, SeekFrom, Write};

use super::*;

fn flip_byte(path: &Path, at: u64) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{e}"));
    let at = at.min(bytes.len() as u64 - 1);
    f.seek(SeekFrom::Start(at))
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(&[bytes[at as usize] ^ 0x5a])
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Writes `n` records of 200 bytes (one item each) and closes; returns the segment files.
fn write_closed(dir: &Path, n: u32) -> Vec<u64> {
    let (log, mut w, _) = open(options(dir));
    log.hold("c", Position::default());
    for i in 0..n {
        append(&mut w, i, 200);
    }
    w.close();
    segment_files(dir)
}

#[test]
fn a_flipped_byte_skips_the_rest_of_its_segment_and_counts_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = write_closed(dir.path(), 60);
    let damaged = files[1];
    let (log, _w, rec) = open(options(dir.path()));
    assert_eq!(rec.sealed, 0, "closed segments are sealed");
    let (before, _) = read_all(&log, Position::default());
    let in_damaged = before
        .iter()
        .filter(|g| g.position.segment == damaged)
        .count();
    flip_byte(&format::segment_path(dir.path(), damaged), 300);
    let (got, gaps) = read_all(&log, Position::default());
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].reason, GapReason::Corrupt);
    let kept = got.iter().filter(|g| g.position.segment == damaged).count();
    assert!(kept < in_damaged);
    let lost: u64 = before
        .iter()
        .filter(|g| !got.contains(g))
        .map(|g| u64::from(g.items))
        .sum();
    assert_eq!(gaps[0].items, lost, "the lost items are counted");
    assert!(
        got.iter().any(|g| g.position.segment > damaged),
        "later segments are read"
    );
    for g in &got {
        assert_eq!(g.payload, payload(g.items, 200), "never damaged data");
    }
}

#[test]
fn a_torn_tail_is_cut_and_the_segment_sealed_at_open() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let (_log, mut w, _) = open(options(dir.path()));
        for i in 0..5 {
            append(&mut w, i, 100);
        }
        // Dropped without close, as by a kill.
    }
    let last = *segment_files(dir.path()).last().unwrap_or(&0);
    let path = format::segment_path(dir.path(), last);
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    // A power loss kept only part of the last record.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len - 30))
        .unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, rec) = open(options(dir.path()));
    assert_eq!(rec.sealed, 1);
    assert_eq!(rec.torn_bytes, 113 - 30);
    let (got, gaps) = read_all(&log, Position::default());
    assert!(gaps.is_empty(), "{gaps:?}");
    assert_eq!(
        got.iter().map(|g| g.items).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    // The next process starts a new segment after it.
    let p = w.rotate(1, 9, b"x").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.segment, last + 1);
}

#[test]
fn a_segment_with_a_damaged_file_header_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = write_closed(dir.path(), 30);
    flip_byte(&format::segment_path(dir.path(), files[0]), 2);
    let (log, _w, rec) = open(options(dir.path()));
    assert_eq!(rec.removed, 1);
    assert!(rec.removed_bytes > 0);
    let (got, gaps) = read_all(&log, Position::default());
    assert!(got.iter().all(|g| g.position.segment > files[0]));
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].reason, GapReason::Missing);
}

#[test]
fn a_full_disk_fails_appends_then_the_writer_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fs = FlakyFs::default();
    let (log, mut w, _) = open(Options {
        fs: Arc::new(fs.clone()),
        ..options(dir.path())
    });
    log.hold("c", Position::default());
    append(&mut w, 0, 50);
    fs.full.store(true, Ordering::SeqCst);
    let err = w.append(2, 1, &payload(1, 50));
    assert!(matches!(err, Err(Error::Write { .. })), "{err:?}");
    assert!(err.as_ref().is_err_and(Error::is_retryable));
    assert!(!w.is_active());
    // During the back-off nothing is tried.
    assert!(matches!(w.append(2, 2, b"x"), Err(Error::BackingOff)));
    #[expect(
        clippy::disallowed_methods,
        reason = "the writer's back-off reads the monotonic clock: it must really elapse"
    )]
    std::thread::sleep(MIN_RETRY_DELAY * 2);
    assert!(matches!(w.rotate(1, 2, b"x"), Err(Error::Write { .. })));
    fs.full.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let p = loop {
        match w.rotate(1, 3, &payload(3, 50)) {
            Ok(p) => break p,
            Err(Error::BackingOff) if std::time::Instant::now() < deadline => {
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    append(&mut w, 4, 50);
    let (got, gaps) = read_all(&log, Position::default());
    assert!(gaps.is_empty(), "the partial write was undone: {gaps:?}");
    assert_eq!(got.iter().map(|g| g.items).collect::<Vec<_>>(), [0, 3, 4]);
    assert_eq!(got[1].position, p);
}

#[test]
fn reserved_kinds_and_oversized_records_are_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_log, mut w, _) = open(options(dir.path()));
    assert!(matches!(w.rotate(0, 0, b""), Err(Error::ReservedKind(0))));
    assert!(matches!(
        w.rotate(format::TRAILER_KIND, 0, b""),
        Err(Error::ReservedKind(_))
    ));
    let big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        w.rotate(1, 0, &big),
        Err(Error::RecordTooLarge { .. })
    ));
    assert!(matches!(w.append(1, 0, b"x"), Err(Error::NoActiveSegment)));
}
