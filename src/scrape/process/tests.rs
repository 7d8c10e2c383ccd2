//! The processor alone: bodies in, batches out.

use super::*;
use crate::append::SeriesRef;
use crate::append::is_stale_nan;
use crate::relabel::RelabelConfig;

struct Rig {
    p: Processor,
    /// Every series announced so far, by ref.
    known: std::collections::HashMap<SeriesRef, Labels>,
}

fn settings(edit: impl FnOnce(&mut Settings)) -> Arc<Settings> {
    let mut s = Settings {
        honor_timestamps: true,
        ..Settings::default()
    };
    edit(&mut s);
    Arc::new(s)
}

fn rig(edit: impl FnOnce(&mut Settings)) -> Rig {
    let target = Labels::from_pairs([("job", "job1"), ("instance", "h:1")]);
    Rig {
        p: Processor::new(settings(edit), target, Arc::new(SeriesRefs::default())),
        known: Default::default(),
    }
}

fn relabel(yaml: &str) -> Relabeler {
    let rules: Vec<RelabelConfig> = serde_saphyr::from_str(yaml).expect("rules");
    Relabeler::new(&rules)
}

impl Rig {
    /// Scrapes `body` at `ts`; returns the batch, with new series remembered.
    fn scrape(&mut self, body: &str, ts: i64) -> Result<(Batch, Counts), ProcessError> {
        let mut batch = Batch::default();
        let r = self.p.process(body.as_bytes(), None, ts, &mut batch);
        match r {
            Ok(c) => {
                for (r, l) in &batch.series {
                    assert!(
                        self.known.insert(*r, l.clone()).is_none(),
                        "ref announced twice"
                    );
                }
                Ok((batch, c))
            }
            Err(e) => Err(e),
        }
    }

    /// `labels => value` for each sample, in order.
    fn render(&self, batch: &Batch) -> Vec<(String, i64, String)> {
        batch
            .samples
            .iter()
            .map(|s| {
                let labels = self
                    .known
                    .get(&s.series)
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "?".into());
                let v = if is_stale_nan(s.value) {
                    "stale".to_owned()
                } else {
                    s.value.to_string()
                };
                (labels, s.timestamp_ms, v)
            })
            .collect()
    }
}

fn row(labels: &str, ts: i64, v: &str) -> (String, i64, String) {
    (labels.to_owned(), ts, v.to_owned())
}

#[test]
fn first_scrape_creates_series_with_target_labels() {
    let mut r = rig(|_| {});
    let (batch, counts) = r
        .scrape("# TYPE a counter\na_total{x=\"1\"} 5\nb 2.5\n", 1000)
        .expect("scrape");
    assert_eq!(
        counts,
        Counts {
            scraped: 2,
            appended: 2,
            added: 2,
            ..Counts::default()
        }
    );
    assert_eq!(
        r.render(&batch),
        vec![
            row(
                r#"{__name__="a_total", instance="h:1", job="job1", x="1"}"#,
                1000,
                "5"
            ),
            row(r#"{__name__="b", instance="h:1", job="job1"}"#, 1000, "2.5"),
        ]
    );
    assert!(batch.gone.is_empty());
}

#[test]
fn steady_state_reuses_series_and_vanished_ones_go_stale() {
    let mut r = rig(|_| {});
    let (first, _) = r.scrape("a 1\nb 2\n", 1000).expect("scrape");
    let (second, counts) = r.scrape("a 3\nb 4\n", 2000).expect("scrape");
    assert!(second.series.is_empty());
    assert_eq!(counts.added, 0);
    assert_eq!(first.samples[0].series, second.samples[0].series);
    let (third, _) = r.scrape("a 5\n", 3000).expect("scrape");
    assert_eq!(
        r.render(&third),
        vec![
            row(r#"{__name__="a", instance="h:1", job="job1"}"#, 3000, "5"),
            row(
                r#"{__name__="b", instance="h:1", job="job1"}"#,
                3000,
                "stale"
            ),
        ]
    );
    assert_eq!(
        third.samples[1].value.to_bits(),
        crate::append::STALE_NAN_BITS
    );
    assert_eq!(third.gone, vec![first.samples[1].series]);
    // b comes back as a new series.
    let (fourth, c) = r.scrape("a 6\nb 7\n", 4000).expect("scrape");
    assert_eq!(c.added, 1);
    assert_ne!(fourth.samples[1].series, first.samples[1].series);
}

#[test]
fn conflicting_labels_are_exported_unless_honored() {
    let body = "m{job=\"inner\",exported_job=\"x\",instance=\"\"} 1\n";
    let mut r = rig(|_| {});
    let (b, _) = r.scrape(body, 1).expect("scrape");
    assert_eq!(
        r.render(&b)[0].0,
        r#"{__name__="m", exported_exported_job="inner", exported_job="x", instance="h:1", job="job1"}"#
    );
    let mut r = rig(|s| s.honor_labels = true);
    let (b, _) = r.scrape(body, 1).expect("scrape");
    assert_eq!(
        r.render(&b)[0].0,
        r#"{__name__="m", exported_job="x", instance="h:1", job="inner"}"#
    );
}

#[test]
fn duplicate_label_names_fail_the_scrape() {
    let mut r = rig(|_| {});
    let err = r
        .scrape("ok 1\nm{a=\"1\",a=\"2\"} 1\n", 1)
        .expect_err("duplicate");
    assert!(
        matches!(err, ProcessError::DuplicateLabel { line: 2, .. }),
        "{err}"
    );
    assert_eq!(err.reason(), "parse");
}

#[test]
fn timestamps_honored_or_not_and_never_backwards() {
    let mut r = rig(|_| {});
    let (b, _) = r.scrape("a 1 500\nb 1\n", 1000).expect("scrape");
    assert_eq!(b.samples[0].timestamp_ms, 500);
    assert_eq!(b.samples[1].timestamp_ms, 1000);
    // The same explicit timestamp again is rejected, not sent twice; explicit series never
    // get staleness markers.
    let (b, c) = r.scrape("a 2 500\n", 2000).expect("scrape");
    assert_eq!(c.out_of_order, 1);
    assert_eq!(
        r.render(&b),
        vec![row(
            r#"{__name__="b", instance="h:1", job="job1"}"#,
            2000,
            "stale"
        )]
    );

    let mut r = rig(|s| s.honor_timestamps = false);
    let (b, _) = r.scrape("a 1 500\n", 1000).expect("scrape");
    assert_eq!(b.samples[0].timestamp_ms, 1000);
}

#[test]
fn two_texts_of_one_series_share_it_and_the_second_is_a_duplicate() {
    let mut r = rig(|_| {});
    let (b, c) = r
        .scrape("a{x=\"1\"} 1\na{x=\"1\",} 2\n", 1)
        .expect("scrape");
    assert_eq!(b.series.len(), 1);
    assert_eq!(b.samples.len(), 1);
    assert_eq!(c.duplicates, 1);
}

#[test]
fn sample_limit_fails_the_scrape_at_the_limit_and_keeps_the_cache() {
    let mut r = rig(|s| s.sample_limit = 2);
    let (first, _) = r.scrape("a 1\nb 1\n", 1).expect("within limit");
    // The line after the limit is never parsed: garbage there is not reported.
    let mut batch = Batch::default();
    let err =
        r.p.process(b"a 1\nb 1\nc 1\n!!!\n", None, 2, &mut batch)
            .expect_err("over limit");
    assert!(
        matches!(err, ProcessError::SampleLimit { limit: 2 }),
        "{err}"
    );
    r.p.fail(2, &mut batch);
    assert!(batch.gone.is_empty(), "the cache keeps its series");
    assert_eq!(r.p.series(), 2);
    // The next good scrape continues the same series; nothing is announced again.
    let (b, c) = r.scrape("a 1\nb 1\n", 3).expect("back within limit");
    assert!(b.series.is_empty());
    assert_eq!(c.added, 0);
    let refs: Vec<_> = b.samples.iter().map(|s| s.series).collect();
    let want: Vec<_> = first.series.iter().map(|(r, _)| *r).collect();
    assert_eq!(refs, want);
}

#[test]
fn label_limits_fail_the_scrape() {
    let mut r = rig(|s| s.label_value_length_limit = 3);
    let err = r.scrape("a{x=\"long\"} 1\n", 1).expect_err("too long");
    assert_eq!(err.reason(), "label_limit");
    assert!(
        err.to_string().contains("label_value_length_limit"),
        "{err}"
    );
}

#[test]
fn a_failed_scrape_marks_every_announced_series_stale() {
    let mut r = rig(|_| {});
    let (first, _) = r.scrape("a 1\nb 2\n", 1000).expect("scrape");
    let mut batch = Batch::default();
    let err =
        r.p.process(b"a 1\nc 2\n!!!\n", None, 2000, &mut batch)
            .expect_err("garbage");
    assert!(err.to_string().contains("line 3"), "{err}");
    r.p.fail(2000, &mut batch);
    assert!(batch.series.is_empty(), "c must never be announced");
    assert_eq!(
        r.render(&batch),
        vec![
            row(
                r#"{__name__="a", instance="h:1", job="job1"}"#,
                2000,
                "stale"
            ),
            row(
                r#"{__name__="b", instance="h:1", job="job1"}"#,
                2000,
                "stale"
            ),
        ]
    );
    // Kept: a second failure sends no second marker; recovery continues the same refs.
    assert!(batch.gone.is_empty());
    assert_eq!(r.p.series(), 2);
    let mut batch = Batch::default();
    r.p.process(b"!!!\n", None, 3000, &mut batch)
        .expect_err("garbage");
    r.p.fail(3000, &mut batch);
    assert!(batch.samples.is_empty(), "marked stale once");
    let (b, _) = r.scrape("a 1\nb 2\n", 4000).expect("scrape");
    let refs: Vec<_> = b.samples.iter().map(|s| s.series).collect();
    let want: Vec<_> = first.series.iter().map(|(r, _)| *r).collect();
    assert_eq!(refs, want);
}

/// A body with `steady` series of `ok` and `new` series of `req_total` with user agents
/// `from..from + new`.
fn exploding(from: usize, new: usize) -> String {
    let mut body = String::from("# TYPE ok gauge\n# TYPE req counter\n");
    for i in 0..3 {
        body.push_str(&format!("ok{{n=\"{i}\"}} 1\n"));
    }
    for i in from..from + new {
        body.push_str(&format!(
            "req_total{{method=\"GET\",user_agent=\"ua{i}\"}} 1\n"
        ));
    }
    body
}

#[test]
fn series_limit_admits_up_to_the_limit_and_keeps_them_flowing() {
    let mut r = rig(|s| s.series_limit = 10);
    let (b, c) = r.scrape(&exploding(0, 20), 1000).expect("never fails");
    assert_eq!(b.series.len(), 10);
    assert_eq!(c.series_limited, 13);
    let notices = r.p.limit_notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        notices[0].to_string(),
        "series_limit exceeded by req: label user_agent has 20 values"
    );
    assert_eq!(r.p.series_limit(), Some((10, 10)));
    // The same body: the same 10 series flow, nothing new.
    let (b2, c2) = r.scrape(&exploding(0, 20), 2000).expect("scrape");
    assert!(b2.series.is_empty());
    assert_eq!(b2.samples.len(), 10);
    assert_eq!(c2.series_limited, 13);
    // No marker for a series never sent: the refused ones vanish silently.
    let (b3, _) = r.scrape(&exploding(0, 7), 3000).expect("scrape");
    assert_eq!(b3.samples.len(), 10, "the 10 admitted, none stale");
    assert!(r.p.limit_notices().is_empty(), "the episode ended");
}

#[test]
fn the_series_window_is_an_hour_from_last_seen() {
    const HOUR: i64 = 3_600_000;
    let mut r = rig(|s| s.series_limit = 5);
    r.scrape(&exploding(0, 2), 0).expect("scrape");
    // The req series go; they count for an hour, so new ones wait.
    r.scrape(&exploding(0, 0), 1000).expect("scrape");
    let (b, c) = r.scrape(&exploding(100, 2), HOUR).expect("scrape");
    assert!(b.series.is_empty());
    assert_eq!(c.series_limited, 2);
    // An hour after they were last seen (and a sweep later), there is room.
    let (b, c) = r
        .scrape(&exploding(100, 2), HOUR + 1000 + 60_000)
        .expect("scrape");
    assert_eq!(b.series.len(), 2);
    assert_eq!(c.series_limited, 0);
}

#[test]
fn series_limit_per_metric_spares_the_other_families() {
    let mut r = rig(|s| s.series_limit_per_metric = 5);
    let (b, c) = r.scrape(&exploding(0, 50), 1000).expect("scrape");
    assert_eq!(b.series.len(), 3 + 5);
    assert_eq!(c.metric_limited, 45);
    let n = &r.p.limit_notices()[0];
    assert_eq!(n.reason, "series_limit_per_metric");
    assert_eq!(n.family, "req");
    assert_eq!(n.label, Some(("user_agent".to_owned(), 50)));
}

#[test]
fn label_limit_keep_trims_and_merges_what_became_one_series() {
    let mut r = rig(|s| {
        s.label_limit = 4;
        s.label_limit_keep = Some(vec!["method".to_owned()]);
    });
    // __name__, instance, job, method kept; user_agent trimmed: three lines, one series.
    let body = "# TYPE req counter\n# TYPE temp gauge\nreq_total{method=\"GET\",user_agent=\"a\"} 1\nreq_total{method=\"GET\",user_agent=\"b\"} 2\nreq_total{method=\"GET\",user_agent=\"c\"} 4\ntemp{method=\"x\",user_agent=\"a\"} 3\ntemp{method=\"x\",user_agent=\"b\"} 5\n";
    for ts in [1000, 2000] {
        let (b, c) = r.scrape(body, ts).expect("never fails");
        assert_eq!(
            r.render(&b),
            vec![
                row(
                    r#"{__name__="req_total", instance="h:1", job="job1", method="GET"}"#,
                    ts,
                    "7"
                ),
                row(
                    r#"{__name__="temp", instance="h:1", job="job1", method="x"}"#,
                    ts,
                    "5"
                ),
            ],
            "counters summed, gauges: the larger"
        );
        assert_eq!(c.merged, 3);
        assert_eq!(c.duplicates, 0);
        assert_eq!(c.trimmed, 2);
    }
    let n = &r.p.limit_notices()[0];
    assert_eq!(n.reason, "label_limit");
    assert_eq!(n.label, Some(("user_agent".to_owned(), 3)));
    // Without label_limit_keep the same body fails the scrape, as in Prometheus.
    let mut strict = rig(|s| s.label_limit = 4);
    assert!(strict.scrape(body, 1).is_err());
}

#[test]
fn metric_relabeling_drops_and_renames() {
    let rules = relabel(
        "- source_labels: [__name__]\n  regex: drop_me\n  action: drop\n- source_labels: [x]\n  target_label: y\n- regex: x\n  action: labeldrop\n",
    );
    let mut r = rig(|s| s.metric_relabel = rules);
    let (b, c) = r
        .scrape("drop_me 1\nkeep{x=\"1\"} 2\nkeep{x=\"2\"} 3\n", 1)
        .expect("scrape");
    assert_eq!(c.scraped, 3);
    assert_eq!(c.appended, 2);
    assert_eq!(
        r.render(&b),
        vec![
            row(
                r#"{__name__="keep", instance="h:1", job="job1", y="1"}"#,
                1,
                "2"
            ),
            row(
                r#"{__name__="keep", instance="h:1", job="job1", y="2"}"#,
                1,
                "3"
            ),
        ]
    );
    // Cached drops stay dropped without re-running the rules.
    let (b, c) = r.scrape("drop_me 1\nkeep{x=\"1\"} 4\n", 2).expect("scrape");
    assert_eq!((c.scraped, c.appended, b.series.len()), (2, 1, 0));
}

#[test]
fn relabeling_that_collapses_series_yields_duplicates_not_two_series() {
    let mut r = rig(|s| s.metric_relabel = relabel("- regex: x\n  action: labeldrop\n"));
    let (b, c) = r.scrape("m{x=\"1\"} 1\nm{x=\"2\"} 2\n", 1).expect("scrape");
    assert_eq!((b.series.len(), c.appended, c.duplicates), (1, 1, 1));
}

#[test]
fn removing_the_name_fails_the_scrape() {
    let mut r = rig(|s| s.metric_relabel = relabel("- regex: __name__\n  action: labeldrop\n"));
    let err = r.scrape("m 1\n", 1).expect_err("no name");
    assert!(matches!(err, ProcessError::NoName { line: 1 }), "{err}");
}

/// `# TYPE`/`# HELP`/`# UNIT` lines reach the metadata cache by their family name as scraped,
/// whatever metric relabeling does to the samples; a failed scrape keeps what it parsed.
#[test]
fn metadata_is_taken_from_the_body_and_reported_when_it_changes() {
    use crate::exposition::MetricType;
    let mut r = rig(|s| {
        s.metric_relabel =
            relabel("- regex: dropped.*\n  source_labels: [__name__]\n  action: drop\n")
    });
    let rows = |p: &mut Processor| -> Option<Vec<(String, MetricType, String)>> {
        p.take_metadata_update().map(|list| {
            let mut rows: Vec<_> = list
                .iter()
                .map(|m| (m.family.clone(), m.kind, m.help.clone()))
                .collect();
            rows.sort();
            rows
        })
    };
    let body = "# HELP dropped_total Gone by relabeling.\n# TYPE dropped_total counter\ndropped_total 1\n\
                # TYPE temp gauge\n# HELP temp A \\\\ path.\ntemp 20\n";
    r.scrape(body, 1).expect("scrape");
    let expected = vec![
        (
            "dropped_total".to_owned(),
            MetricType::Counter,
            "Gone by relabeling.".to_owned(),
        ),
        (
            "temp".to_owned(),
            MetricType::Gauge,
            "A \\ path.".to_owned(),
        ),
    ];
    assert_eq!(rows(&mut r.p), Some(expected.clone()));
    r.scrape(body, 2).expect("scrape");
    assert_eq!(rows(&mut r.p), None, "nothing changed");

    let failing = "# TYPE temp counter\ntemp 1\nnot valid {\n";
    assert!(r.scrape(failing, 3).is_err());
    let mut changed = expected;
    changed[1].1 = MetricType::Counter;
    assert_eq!(rows(&mut r.p), Some(changed));
}
