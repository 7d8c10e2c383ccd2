//! Debug output: a consumer that logs, every few seconds, what would be sent.
//!
//! It reads the same input seam as an endpoint. Each line sums what arrived since the previous
//! one (batches, new series, samples), the number of live series, and up to [`EXAMPLES`]
//! example series with their latest sample. Labels are shown with the external labels merged
//! in, as an endpoint without write relabeling would send them. Nothing is logged for an
//! interval in which nothing arrived. Memory follows the live series (gone refs are forgotten).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::source::BatchSource;
use crate::append::{Batch, SeriesRef};
use crate::labels::Labels;

/// Default time between two summary lines.
pub const DEBUG_INTERVAL: Duration = Duration::from_secs(5);

/// Example series per line.
pub const EXAMPLES: usize = 3;

/// What arrived during one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Summary {
    pub(super) batches: u64,
    pub(super) new_series: u64,
    pub(super) samples: u64,
    pub(super) live_series: usize,
    /// Labels, timestamp (ms) and value of the latest sample of a few series.
    pub(super) examples: Vec<(Labels, i64, f64)>,
}

/// The consumer's state.
#[derive(Debug, Default)]
pub(super) struct DebugState {
    external: Labels,
    series: HashMap<SeriesRef, Labels>,
    current: Summary,
    /// The refs of `current.examples`, same order.
    example_refs: Vec<SeriesRef>,
}

/// Starts the debug consumer; it ends when `source` does or `stop` is cancelled (after a last
/// line).
pub(crate) fn spawn_debug_sink<S: BatchSource>(
    mut source: S,
    external_labels: Labels,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let mut state = DebugState::new(external_labels);
    let task = async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => log(state.take()),
                item = source.next() => match item {
                    Some((_, batch)) => state.observe(&batch),
                    None => break,
                },
            }
        }
        log(state.take());
    };
    tokio::spawn(task.instrument(tracing::info_span!("debug_output")))
}

impl DebugState {
    pub(super) fn new(external: Labels) -> Self {
        DebugState {
            external,
            ..Default::default()
        }
    }

    pub(super) fn observe(&mut self, batch: &Batch) {
        let cur = &mut self.current;
        cur.batches += 1;
        cur.samples += batch.samples.len() as u64;
        cur.new_series += batch.series.len() as u64;
        for (r, labels) in &batch.series {
            self.series
                .insert(*r, with_external(labels, &self.external));
        }
        for s in &batch.samples {
            if let Some(i) = self.example_refs.iter().position(|r| *r == s.series) {
                let example = &mut cur.examples[i];
                example.1 = s.timestamp_ms;
                example.2 = s.value;
            } else if self.example_refs.len() < EXAMPLES
                && let Some(labels) = self.series.get(&s.series)
            {
                self.example_refs.push(s.series);
                cur.examples.push((labels.clone(), s.timestamp_ms, s.value));
            }
        }
        for r in &batch.gone {
            self.series.remove(r);
        }
    }

    /// The summary since the last call; starts a new interval.
    pub(super) fn take(&mut self) -> Summary {
        self.example_refs.clear();
        let mut out = std::mem::take(&mut self.current);
        out.live_series = self.series.len();
        out
    }
}

fn log(summary: Summary) {
    if summary.batches == 0 {
        return;
    }
    let mut examples = String::new();
    for (i, (labels, ts, value)) in summary.examples.iter().enumerate() {
        if i > 0 {
            examples.push_str("; ");
        }
        let _ = write!(examples, "{labels} {value} @{ts}");
    }
    tracing::info!(
        batches = summary.batches,
        samples = summary.samples,
        new_series = summary.new_series,
        live_series = summary.live_series,
        examples = %examples,
        "debug output: what remote write would send"
    );
}

fn with_external(labels: &Labels, external: &Labels) -> Labels {
    if external.is_empty() {
        return labels.clone();
    }
    let mut b = labels.to_builder();
    for l in external {
        if b.get(l.name).is_none() {
            b.set(l.name, l.value);
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::Sample;

    fn sample(r: u64, timestamp_ms: i64, value: f64) -> Sample {
        Sample {
            series: SeriesRef(r),
            timestamp_ms,
            value,
        }
    }

    fn series(r: u64, name: &str) -> (SeriesRef, Labels) {
        (
            SeriesRef(r),
            Labels::from_pairs([("__name__", name), ("job", "j")]),
        )
    }

    #[test]
    fn summarises_each_interval_with_latest_values_of_a_few_series() {
        let mut state = DebugState::new(Labels::from_pairs([("cluster", "c1"), ("job", "ext")]));
        state.observe(&Batch {
            series: (1..=5).map(|r| series(r, &format!("m{r}"))).collect(),
            samples: (1..=5).map(|r| sample(r, 10, r as f64)).collect(),
            gone: vec![],
        });
        state.observe(&Batch {
            series: vec![],
            samples: vec![sample(2, 20, 22.0), sample(9, 20, 9.0)],
            gone: vec![SeriesRef(5)],
        });
        let s = state.take();
        assert_eq!(
            (s.batches, s.new_series, s.samples, s.live_series),
            (2, 5, 7, 4)
        );
        let examples: Vec<_> = s
            .examples
            .iter()
            .map(|(l, t, v)| (l.to_string(), *t, *v))
            .collect();
        assert_eq!(
            examples,
            [
                (
                    r#"{__name__="m1", cluster="c1", job="j"}"#.to_owned(),
                    10,
                    1.0
                ),
                (
                    r#"{__name__="m2", cluster="c1", job="j"}"#.to_owned(),
                    20,
                    22.0
                ),
                (
                    r#"{__name__="m3", cluster="c1", job="j"}"#.to_owned(),
                    10,
                    3.0
                ),
            ]
        );
        // A new interval starts empty and picks examples afresh.
        state.observe(&Batch {
            series: vec![],
            samples: vec![sample(4, 30, 4.5)],
            gone: vec![],
        });
        let s = state.take();
        assert_eq!(
            (s.batches, s.new_series, s.samples, s.live_series),
            (1, 0, 1, 4)
        );
        assert_eq!(s.examples.len(), 1);
        assert_eq!(s.examples[0].2, 4.5);
        assert_eq!(state.take().batches, 0);
    }
}
