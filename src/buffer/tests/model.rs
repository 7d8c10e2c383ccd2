//! A property test against a model: whatever the sequence of appends, rotations, crashes
//! (the writer dropped without closing) and clean restarts, a reader from the start returns
//! exactly the records appended, in order.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Append { len: usize },
    Rotate { len: usize },
    Crash,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..900).prop_map(|len| Op::Append { len }),
        1 => (0usize..300).prop_map(|len| Op::Rotate { len }),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn reads_return_exactly_what_was_appended(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut model: Vec<Vec<u8>> = Vec::new();
        let (mut log, mut w, _) = open(options(dir.path()));
        log.hold("c", Position::default());
        for op in ops {
            match op {
                Op::Append { len } | Op::Rotate { len } => {
                    let n = model.len() as u32;
                    let body = payload(n, len);
                    let rotate = matches!(op, Op::Rotate { .. }) || !w.fits(len);
                    let r = if rotate { w.rotate(1, n, &body) } else { w.append(2, n, &body) };
                    r.unwrap_or_else(|e| panic!("{e}"));
                    model.push(body);
                }
                Op::Crash | Op::Restart => {
                    if matches!(op, Op::Restart) {
                        w.close();
                    } else {
                        drop(w);
                    }
                    (log, w, _) = open(options(dir.path()));
                    log.hold("c", Position::default());
                }
            }
        }
        let (got, gaps) = read_all(&log, Position::default());
        prop_assert!(gaps.is_empty(), "{:?}", gaps);
        let bodies: Vec<Vec<u8>> = got.into_iter().map(|g| g.payload).collect();
        prop_assert_eq!(bodies, model);
    }
}
