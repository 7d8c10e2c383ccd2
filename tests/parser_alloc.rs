//! Proves the parser's zero-allocation claim: iterating a large body without escapes,
//! including every sample's `labels()`, performs no heap allocation.
//!
//! A counting global allocator counts only on the thread that enabled counting, so the test
//! harness's own threads cannot disturb the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use scrapelet::exposition::{Entry, Format, Parser};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: defers every operation to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// A body of every kind of line, no escapes, about `lines` sample lines.
fn body(format: Format, lines: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    while n < lines {
        let family = n / 20;
        out.push_str(&format!(
            "# HELP req_{family}_seconds Request latency, with = and {{ in it.\n# TYPE req_{family}_seconds histogram\n"
        ));
        if format == Format::OpenMetrics {
            out.push_str(&format!("# UNIT req_{family}_seconds seconds\n"));
        } else {
            out.push_str("# a comment\n\n");
        }
        for le in ["0.1", "1", "+Inf"] {
            out.push_str(&format!(
                "req_{family}_seconds_bucket{{namespace=\"ns-{n}\",pod=\"api-{n:x}\",path=\"/a,b=c}}\",method=\"GET\",le=\"{le}\"}} {n}\n"
            ));
            n += 1;
        }
        out.push_str(&format!(
            "req_{family}_seconds_sum{{namespace=\"ns\",le=\"x\",}} 1.5e-3 17\n"
        ));
        out.push_str(&format!("req_{family}_seconds_count{{}} NaN\n"));
        out.push_str(&format!("up:{family} -Inf\n"));
        n += 3;
    }
    if format == Format::OpenMetrics {
        out.push_str("up_total 1 # {trace_id=\"abc\"} 1 1.5\n# EOF\n");
    }
    out
}

fn walk(format: Format, body: &[u8]) -> (usize, usize) {
    let (mut samples, mut labels) = (0, 0);
    for entry in Parser::new(body, format) {
        match entry {
            Ok(Entry::Sample(s)) => {
                samples += 1;
                for label in s.labels() {
                    match label {
                        Ok((name, value)) => labels += name.len() + value.len(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    (samples, labels)
}

#[test]
fn parsing_without_escapes_allocates_nothing() {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let text = body(format, 50_000);
        let mut seen = (0, 0);
        let allocations = allocations_in(|| seen = walk(format, text.as_bytes()));
        assert_eq!(allocations, 0, "{format:?}: allocations while parsing");
        assert!(
            seen.0 >= 50_000 && seen.1 > 0,
            "{format:?}: parsed {seen:?}"
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    // The counter works: an escaped value is unescaped into an owned string.
    let body = b"m{a=\"x\\\"y\"} 1\n";
    let allocations = allocations_in(|| {
        walk(Format::PrometheusText, body);
    });
    assert!(allocations >= 1, "{allocations}");
}
