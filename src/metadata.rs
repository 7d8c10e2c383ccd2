//! The metadata seam: what scrape loops learn about metric families (`# TYPE`, `# HELP`,
//! `# UNIT`) and what remote write sends as `MetricMetadata`, as Prometheus's scrape cache and
//! `MetadataWatcher` do.
//!
//! Each scrape loop holds a [`MetadataSlot`] of the shared [`MetadataView`] and publishes its
//! target's families there when they change; remote write collects the view every
//! `metadata_config.send_interval`.
//!
//! Invariants:
//! 1. The view holds exactly the families of the running loops: a slot's entry is removed
//!    when the slot is dropped (its loop ended, whatever the reason).
//! 2. A loop publishes only when something changed, so a steady scrape neither allocates nor
//!    takes the lock.
//! 3. [`MetadataView::collect`] returns each distinct (family, type, help, unit) once, in a
//!    stable order, however many targets expose it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::exposition::MetricType;

/// One metric family's metadata as a target exposes it. Ordered by family name first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metadata {
    /// The family name as written on its `# TYPE`/`# HELP`/`# UNIT` line.
    pub family: String,
    /// `Unknown` when the family has no `# TYPE` line.
    pub kind: MetricType,
    /// Unescaped; empty when there is no `# HELP` line.
    pub help: String,
    /// Empty when there is no `# UNIT` line.
    pub unit: String,
}

/// The families of one target, as last published.
pub type TargetMetadata = Arc<[Arc<Metadata>]>;

/// The metadata of every running scrape loop. Cheap to clone (shared); read-mostly.
#[derive(Clone, Default)]
pub struct MetadataView {
    inner: Arc<Inner>,
}

/// One loop's place in a [`MetadataView`]; dropping it removes what it published.
pub struct MetadataSlot {
    inner: Arc<Inner>,
    id: u64,
}

#[derive(Default)]
struct Inner {
    /// By slot id. Written when a target's families change, read by remote write.
    targets: RwLock<HashMap<u64, TargetMetadata>>,
    next_id: AtomicU64,
}

impl MetadataView {
    /// A new slot, publishing nothing yet.
    pub fn slot(&self) -> MetadataSlot {
        MetadataSlot {
            inner: self.inner.clone(),
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Every distinct entry of every running loop, sorted (invariant 3).
    pub fn collect(&self) -> Vec<Arc<Metadata>> {
        let mut all: Vec<Arc<Metadata>> = {
            let targets = self.inner.targets.read().unwrap_or_else(|p| p.into_inner());
            targets.values().flat_map(|t| t.iter().cloned()).collect()
        };
        all.sort_unstable();
        all.dedup();
        all
    }

    /// How many loops have published metadata.
    pub fn targets(&self) -> usize {
        self.inner
            .targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl std::fmt::Debug for MetadataView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataView")
            .field("targets", &self.targets())
            .finish()
    }
}

impl MetadataSlot {
    /// Replaces what this slot published with `families`.
    pub fn publish(&self, families: TargetMetadata) {
        let mut targets = self
            .inner
            .targets
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if families.is_empty() {
            targets.remove(&self.id);
        } else {
            targets.insert(self.id, families);
        }
    }
}

impl Drop for MetadataSlot {
    fn drop(&mut self) {
        self.inner
            .targets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(family: &str, kind: MetricType, help: &str) -> Arc<Metadata> {
        Arc::new(Metadata {
            family: family.to_owned(),
            kind,
            help: help.to_owned(),
            unit: String::new(),
        })
    }

    fn families(view: &MetadataView) -> Vec<(String, MetricType, String)> {
        view.collect()
            .iter()
            .map(|m| (m.family.clone(), m.kind, m.help.clone()))
            .collect()
    }

    #[test]
    fn collect_deduplicates_across_targets_and_sorts() {
        let view = MetadataView::default();
        let a = view.slot();
        let b = view.slot();
        a.publish(Arc::from(vec![
            meta("up_total", MetricType::Counter, "Ups."),
            meta("fds", MetricType::Gauge, "Open fds."),
        ]));
        // Same family, same metadata: once. Same family, other help: both.
        b.publish(Arc::from(vec![
            meta("fds", MetricType::Gauge, "Open fds."),
            meta("up_total", MetricType::Counter, "Other help."),
        ]));
        assert_eq!(view.targets(), 2);
        assert_eq!(
            families(&view),
            [
                ("fds".into(), MetricType::Gauge, "Open fds.".into()),
                ("up_total".into(), MetricType::Counter, "Other help.".into()),
                ("up_total".into(), MetricType::Counter, "Ups.".into()),
            ]
        );
        // A dropped slot takes its entries with it; publishing nothing removes the target.
        drop(b);
        assert_eq!(families(&view).len(), 2);
        a.publish(Arc::from(Vec::new()));
        assert_eq!(view.targets(), 0);
        assert!(view.collect().is_empty());
    }
}
