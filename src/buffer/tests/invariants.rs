//! What always holds: order, framing limits, following the writer, holds.

use super::*;

#[test]
fn records_come_back_in_order_across_rotations_and_segments_keep_their_size() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(options(dir.path()));
    log.hold("c", Position::default());
    let sizes: Vec<usize> = (0..300).map(|i| (i * 37) % 700).collect();
    for (n, len) in sizes.iter().enumerate() {
        append(&mut w, n as u32, *len);
    }
    let (got, gaps) = read_all(&log, Position::default());
    assert!(gaps.is_empty(), "{gaps:?}");
    assert_eq!(got.len(), sizes.len());
    for (n, (g, len)) in got.iter().zip(&sizes).enumerate() {
        assert_eq!(g.payload, payload(n as u32, *len), "record {n}");
        assert_eq!(g.items, n as u32);
    }
    assert!(got.windows(2).all(|w| w[0].position < w[1].position));
    let files = segment_files(dir.path());
    assert!(files.len() > 10, "rotation ran: {files:?}");
    for i in &files[..files.len() - 1] {
        let len = std::fs::metadata(format::segment_path(dir.path(), *i))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len <= MAX_SEGMENT_BYTES, "segment {i}: {len} bytes");
    }
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(options(dir.path()));
    log.hold("c", Position::default());
    append(&mut w, 0, 10);
    let big = MAX_SEGMENT_BYTES as usize * 3;
    append(&mut w, 1, big);
    append(&mut w, 2, 10);
    let (got, _) = read_all(&log, Position::default());
    let lens: Vec<usize> = got.iter().map(|g| g.payload.len()).collect();
    assert_eq!(lens, [10, big, 10]);
    assert_eq!(got[1].position.segment + 1, got[2].position.segment);
}

#[test]
fn a_reader_follows_the_writer_and_sees_the_close() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(options(dir.path()));
    let mut reader = log.reader(log.end());
    assert!(matches!(reader.read(), Ok(Event::End)));
    let follower = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            match reader.read() {
                Ok(Event::Record(r)) => seen.push(r.items),
                Ok(Event::End) => {
                    reader.wait(Duration::from_secs(10));
                }
                Ok(Event::Closed) => return seen,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    for n in 0..50 {
        append(&mut w, n, 100);
    }
    w.close();
    let seen = follower.join().unwrap_or_default();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[test]
fn a_reader_started_inside_a_segment_reads_it_from_its_start_marking_the_earlier_records() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(options(dir.path()));
    let positions: Vec<Position> = (0..4).map(|n| append(&mut w, n, 10)).collect();
    let (got, _) = read_all(&log, positions[2]);
    let marks: Vec<(u32, bool)> = got.iter().map(|g| (g.items, g.before_start)).collect();
    assert_eq!(marks, [(0, true), (1, true), (2, false), (3, false)]);
}

#[test]
fn segments_are_deleted_only_when_every_holder_is_past_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (log, mut w, _) = open(options(dir.path()));
    log.hold("a", Position::default());
    log.hold("b", Position::default());
    for n in 0..100 {
        append(&mut w, n, 300);
    }
    let all = segment_files(dir.path());
    assert!(all.len() > 5);
    let end = log.end();
    log.hold("a", end);
    assert_eq!(segment_files(dir.path()), all, "b still needs them");
    log.hold(
        "b",
        Position {
            segment: all[3],
            offset: 0,
        },
    );
    assert_eq!(segment_files(dir.path()).first(), Some(&all[3]));
    log.release("b");
    assert_eq!(segment_files(dir.path()), [end.segment]);
    assert_eq!(log.stats().segments, 1);
}

#[test]
fn positions_pack_into_u64_in_order() {
    let a = Position {
        segment: 3,
        offset: 70_000,
    };
    let b = Position {
        segment: 4,
        offset: 24,
    };
    assert_eq!(Position::from_u64(a.to_u64()), a);
    assert!(a.to_u64() < b.to_u64());
}
