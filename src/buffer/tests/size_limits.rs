//! The size and age caps: the oldest data goes, readers behind count what they lost.

use super::*;

#[test]
fn the_size_cap_deletes_the_oldest_and_a_reader_behind_counts_the_loss() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cap = 8 * MAX_SEGMENT_BYTES;
    let (log, mut w, _) = open(Options {
        max_size: cap,
        ..options(dir.path())
    });
    log.hold("slow", Position::default());
    let mut reader = log.reader(Position::default());
    let mut total = 0u64;
    for n in 0..400 {
        append(&mut w, 1, 150 + (n % 7) * 30);
        total += 1;
        assert!(log.stats().bytes <= cap, "over the cap after {n}");
    }
    let disk: u64 = segment_files(dir.path())
        .iter()
        .map(|i| {
            std::fs::metadata(format::segment_path(dir.path(), *i))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(disk, log.stats().bytes);
    let (mut read, mut lost) = (0u64, 0u64);
    loop {
        match reader.read().unwrap_or_else(|e| panic!("{e}")) {
            Event::Record(r) => read += u64::from(r.items),
            Event::Gap(g) => {
                assert_eq!(g.reason, GapReason::Cap);
                lost += g.items;
            }
            Event::Segment(_) => {}
            Event::End | Event::Closed => break,
        }
    }
    assert!(lost > 0);
    assert_eq!(read + lost, total, "every item is read or counted as lost");
}

#[test]
fn a_reader_whose_open_segment_is_deleted_counts_what_it_had_not_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(Options {
        max_size: 4 * MAX_SEGMENT_BYTES,
        ..options(dir.path())
    });
    log.hold("slow", Position::default());
    for _ in 0..10 {
        append(&mut w, 1, 300);
    }
    let mut reader = log.reader(Position::default());
    let mut read = 0;
    while read < 3 {
        if let Ok(Event::Record(_)) = reader.read() {
            read += 1;
        }
    }
    for _ in 0..200 {
        append(&mut w, 1, 300);
    }
    let mut lost = 0;
    let mut rest = 0;
    loop {
        match reader.read().unwrap_or_else(|e| panic!("{e}")) {
            Event::Gap(g) => lost += g.items,
            Event::Record(_) => rest += 1,
            Event::End => break,
            _ => {}
        }
    }
    assert_eq!(read + lost + rest, 210);
}

#[test]
fn the_age_cap_deletes_segments_whose_newest_record_is_too_old() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(Options {
        max_age: Some(Duration::from_millis(50)),
        ..options(dir.path())
    });
    log.hold("slow", Position::default());
    for _ in 0..40 {
        append(&mut w, 1, 300);
    }
    let before = segment_files(dir.path()).len();
    #[expect(
        clippy::disallowed_methods,
        reason = "the age cap reads the wall clock: the segments must really be older"
    )]
    std::thread::sleep(Duration::from_millis(60));
    log.enforce_age();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the active one stays of {before}"
    );
    let (got, gaps) = read_all(&log, Position::default());
    let lost: u64 = gaps.iter().map(|g| g.items).sum();
    assert!(gaps.iter().all(|g| g.reason == GapReason::Age), "{gaps:?}");
    assert_eq!(got.len() as u64 + lost, 40);
}

#[test]
fn a_record_that_cannot_fit_under_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_log, mut w, _) = open(Options {
        max_size: 1000,
        ..options(dir.path())
    });
    assert!(matches!(
        w.rotate(1, 0, &[0u8; 2000]),
        Err(Error::OverCap { .. })
    ));
}

#[test]
fn segment_size_follows_the_cap_within_bounds() {
    assert_eq!(Options::segment_size_for(u64::MAX), MAX_SEGMENT_BYTES);
    assert_eq!(Options::segment_size_for(0), MIN_SEGMENT_BYTES);
    assert_eq!(Options::segment_size_for(8 * 1000), 1000);
}
