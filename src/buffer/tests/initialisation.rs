//! Opening: fresh directories, leftovers, numbering after restarts.

use super::*;

#[test]
fn a_fresh_directory_is_created_and_empty() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("a/b");
    let (log, w, rec) = open(options(&path));
    assert!(path.is_dir());
    assert_eq!(rec, Recovery::default());
    assert_eq!(log.stats(), Stats::default());
    assert!(!w.is_active());
    let (got, gaps) = read_all(&log, log.end());
    assert!(got.is_empty() && gaps.is_empty());
}

#[test]
fn leftover_temporary_files_are_removed_and_strangers_left_alone() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("x.tmp"), b"half").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap_or_else(|e| panic!("{e}"));
    let (_log, _w, rec) = open(options(dir.path()));
    assert_eq!(rec.removed, 1);
    assert!(!dir.path().join("x.tmp").exists());
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn every_process_starts_a_new_segment_and_numbers_keep_growing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut last = None;
    for round in 0..3u32 {
        let (log, mut w, rec) = open(options(dir.path()));
        log.hold("c", Position::default());
        assert_eq!(rec.segments, round as usize);
        let p = w
            .rotate(1, round, b"first")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(last.is_none_or(|l| p.segment > l));
        last = Some(p.segment);
        w.append(2, 1, b"more").unwrap_or_else(|e| panic!("{e}"));
        if round == 1 {
            w.close();
        }
        // Rounds 0 and 2 end as a kill would: unsealed.
    }
    let (log, _w, rec) = open(options(dir.path()));
    assert_eq!(
        rec.sealed, 1,
        "round 2's segment (round 0's was sealed by round 1)"
    );
    let (got, _) = read_all(&log, Position::default());
    assert_eq!(got.len(), 6);
}

#[test]
fn an_empty_segment_file_left_by_a_crash_during_creation_is_removed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(format::segment_path(dir.path(), 4), b"").unwrap_or_else(|e| panic!("{e}"));
    let (_log, mut w, rec) = open(options(dir.path()));
    assert_eq!(rec.removed, 1);
    let p = w.rotate(1, 0, b"x").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.segment, 5, "the number is not reused");
}
