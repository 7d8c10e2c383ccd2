//! The per-target metadata cache: the `# TYPE`, `# HELP` and `# UNIT` of each metric family
//! the target exposes, keyed by the family name as scraped (as Prometheus's scrape cache; metric
//! relabeling does not change it).
//!
//! Invariants:
//! 1. Zero allocation while nothing changes: a line is hashed, looked up and compared byte for
//!    byte with what is cached; only a new family or a changed field allocates.
//! 2. A field is updated by its own line only: a family whose `# HELP` line disappears keeps
//!    its last help (as Prometheus).
//! 3. A family is forgotten once more than [`FORGET_AFTER`] scrapes passed without it, checked
//!    at each successful scrape (as Prometheus); a failed scrape forgets nothing.
//! 4. [`MetadataCache::take_update`] returns the full list once after every change, and
//!    `None` otherwise.

use std::sync::Arc;

use hashbrown::HashTable;

use crate::exposition::{Format, MetricType};
use crate::metadata::{Metadata, TargetMetadata};

/// Scrapes without a family that its metadata outlives (Prometheus keeps it "for 10 scrapes
/// after its metric disappeared").
pub(super) const FORGET_AFTER: u64 = 10;

pub(super) struct MetadataCache {
    families: HashTable<Family>,
    /// The current scrape's number; starts at 1.
    iter: u64,
    /// Families seen in the current scrape.
    seen: usize,
    /// Something changed since the last `take_update`.
    changed: bool,
}

struct Family {
    hash: u64,
    /// The `# HELP` text as on the wire, when it differs from `meta.help` (it had escapes).
    help_raw: Option<Box<str>>,
    last_iter: u64,
    /// Shared with what was published; copied on write.
    meta: Arc<Metadata>,
}

/// Which line of a family.
pub(super) enum Line<'a> {
    Type(MetricType),
    Help(&'a str),
    Unit(&'a str),
}

impl MetadataCache {
    pub(super) fn new() -> Self {
        MetadataCache {
            families: HashTable::new(),
            iter: 0,
            seen: 0,
            changed: false,
        }
    }

    /// Starts a scrape.
    pub(super) fn begin(&mut self) {
        self.iter += 1;
        self.seen = 0;
    }

    /// Records a `# TYPE`, `# HELP` or `# UNIT` line of `family` in a body of `format`.
    pub(super) fn line(&mut self, family: &str, line: Line<'_>, format: Format) {
        let hash = xxhash_rust::xxh3::xxh3_64(family.as_bytes());
        let iter = self.iter;
        let f = match self
            .families
            .find_mut(hash, |f| f.hash == hash && f.meta.family == family)
        {
            Some(f) => f,
            None => {
                self.changed = true;
                let meta = Arc::new(Metadata {
                    family: family.to_owned(),
                    kind: MetricType::Unknown,
                    help: String::new(),
                    unit: String::new(),
                });
                self.families
                    .insert_unique(
                        hash,
                        Family {
                            hash,
                            help_raw: None,
                            last_iter: 0,
                            meta,
                        },
                        |f| f.hash,
                    )
                    .into_mut()
            }
        };
        if f.last_iter != iter {
            f.last_iter = iter;
            self.seen += 1;
        }
        match line {
            Line::Type(kind) if f.meta.kind != kind => {
                Arc::make_mut(&mut f.meta).kind = kind;
                self.changed = true;
            }
            Line::Help(text) => {
                let same = match &f.help_raw {
                    Some(raw) => **raw == *text,
                    None => f.meta.help == text,
                };
                if !same {
                    let help = format.unescape_help(text);
                    f.help_raw = (help != text).then(|| text.into());
                    Arc::make_mut(&mut f.meta).help = help.into_owned();
                    self.changed = true;
                }
            }
            Line::Unit(unit) if f.meta.unit != unit => {
                Arc::make_mut(&mut f.meta).unit = unit.to_owned();
                self.changed = true;
            }
            Line::Type(_) | Line::Unit(_) => {}
        }
    }

    /// The `# TYPE` of `family`, if the target declared one.
    pub(super) fn kind(&self, family: &str) -> Option<MetricType> {
        let hash = xxhash_rust::xxh3::xxh3_64(family.as_bytes());
        self.families
            .find(hash, |f| f.hash == hash && f.meta.family == family)
            .map(|f| f.meta.kind)
            .filter(|k| *k != MetricType::Unknown)
    }

    /// Ends a successful scrape: forgets families absent for more than [`FORGET_AFTER`]
    /// scrapes.
    pub(super) fn commit(&mut self) {
        if self.seen == self.families.len() {
            return;
        }
        let iter = self.iter;
        let before = self.families.len();
        self.families
            .retain(|f| iter.saturating_sub(f.last_iter) <= FORGET_AFTER);
        if self.families.len() != before {
            self.changed = true;
        }
    }

    /// The target's families when they changed since the last call (invariant 4).
    pub(super) fn take_update(&mut self) -> Option<TargetMetadata> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(self.families.iter().map(|f| f.meta.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (&'static str, MetricType, &'static str, &'static str);
    /// One scrape's lines, and the update they make (`None`: nothing changed).
    type Step<'a> = (&'a [(&'a str, Line<'a>)], Option<&'a [Row]>);

    /// Scrapes `lines` (family, line) as one successful scrape and returns the update.
    fn scrape(
        cache: &mut MetadataCache,
        format: Format,
        lines: &[(&str, Line<'_>)],
    ) -> Option<Vec<(String, MetricType, String, String)>> {
        cache.begin();
        for (family, line) in lines {
            let line = match line {
                Line::Type(k) => Line::Type(*k),
                Line::Help(t) => Line::Help(t),
                Line::Unit(u) => Line::Unit(u),
            };
            cache.line(family, line, format);
        }
        cache.commit();
        cache.take_update().map(|list| {
            let mut rows: Vec<_> = list
                .iter()
                .map(|m| (m.family.clone(), m.kind, m.help.clone(), m.unit.clone()))
                .collect();
            rows.sort();
            rows
        })
    }

    fn rows(expected: &[Row]) -> Option<Vec<(String, MetricType, String, String)>> {
        Some(
            expected
                .iter()
                .map(|(f, k, h, u)| ((*f).into(), *k, (*h).into(), (*u).into()))
                .collect(),
        )
    }

    #[test]
    fn collects_type_help_and_unit_and_reports_changes_only() {
        use MetricType::{Counter, Gauge, Unknown};
        let first = [
            ("http_requests", Line::Type(Counter)),
            ("http_requests", Line::Help("Requests.")),
            ("temp", Line::Help("A \\\\ path\\nand \\\"quotes\\\".")),
            ("size", Line::Unit("bytes")),
        ];
        // A changed help and type are updates; a vanished HELP line keeps the last help.
        let changed = [
            ("http_requests", Line::Type(Counter)),
            ("http_requests", Line::Help("All requests.")),
            ("temp", Line::Type(Gauge)),
            ("size", Line::Unit("bytes")),
        ];
        let temp_help = "A \\ path\nand \\\"quotes\\\".";
        let after_first: &[Row] = &[
            ("http_requests", Counter, "Requests.", ""),
            ("size", Unknown, "", "bytes"),
            ("temp", Unknown, temp_help, ""),
        ];
        let after_changed: &[Row] = &[
            ("http_requests", Counter, "All requests.", ""),
            ("size", Unknown, "", "bytes"),
            ("temp", Gauge, temp_help, ""),
        ];
        let mut c = MetadataCache::new();
        let steps: [Step<'_>; 4] = [
            (&first, Some(after_first)),
            (&first, None),
            (&changed, Some(after_changed)),
            (&changed, None),
        ];
        for (i, (lines, expected)) in steps.into_iter().enumerate() {
            let got = scrape(&mut c, Format::PrometheusText, lines);
            assert_eq!(got, expected.and_then(rows), "scrape {i}");
        }
    }

    #[test]
    fn openmetrics_help_unescapes_quotes() {
        let mut c = MetadataCache::new();
        let body = [("temp", Line::Help("\\\"hot\\\""))];
        let expected = rows(&[("temp", MetricType::Unknown, "\"hot\"", "")]);
        assert_eq!(scrape(&mut c, Format::OpenMetrics, &body), expected);
        assert_eq!(scrape(&mut c, Format::OpenMetrics, &body), None);
    }

    #[test]
    fn a_family_is_forgotten_after_more_than_ten_scrapes_without_it() {
        let mut c = MetadataCache::new();
        let both = [
            ("a", Line::Type(MetricType::Gauge)),
            ("b", Line::Type(MetricType::Gauge)),
        ];
        let only_a = [("a", Line::Type(MetricType::Gauge))];
        assert!(scrape(&mut c, Format::PrometheusText, &both).is_some());
        // A failed scrape (no commit) forgets nothing, but counts as a scrape.
        c.begin();
        assert_eq!(c.take_update().map(|l| l.len()), None);
        for _ in 0..FORGET_AFTER - 1 {
            assert_eq!(scrape(&mut c, Format::PrometheusText, &only_a), None);
        }
        let expected = rows(&[("a", MetricType::Gauge, "", "")]);
        assert_eq!(scrape(&mut c, Format::PrometheusText, &only_a), expected);
    }
}
