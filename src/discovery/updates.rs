//! [`Updates`]: what discovery hands the scrape manager, latest wins per job.
//!
//! Invariants:
//! 1. At most one update per job waits: a newer update of a job replaces the one waiting (it
//!    is that job's complete list of groups, so nothing is lost by skipping the older one).
//!    What waits is bounded by the number of jobs, however long the consumer is busy (a
//!    reload that takes seconds while pods churn).
//! 2. First lists (readiness): a job expected to list (Kubernetes discovery) stays in
//!    [`Updates::waiting`] until its discovery has completed its first list *and* the update
//!    made from it was taken and then marked [`Updates::applied`] by the consumer (or no
//!    update was needed). So "nothing waiting" means the scrape manager has the pods.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{TargetGroup, Update};

/// Discovery's output: per job, the latest full list of groups not yet taken.
#[derive(Debug, Default)]
pub struct Updates {
    state: Mutex<State>,
    /// Woken on every [`Updates::send`]; a wake with no waiter is kept for the next one.
    sent: Notify,
}

/// Covered by `Updates::state`.
#[derive(Debug, Default)]
struct State {
    /// By job.
    pending: BTreeMap<String, Vec<TargetGroup>>,
    /// Jobs whose first list is not applied yet (invariant 2).
    first_lists: BTreeMap<String, FirstList>,
    /// Updates replaced before they were taken.
    replaced: u64,
}

/// Where a job's first list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstList {
    /// Discovery has not completed it.
    Listing,
    /// The update made from it waits in `pending`.
    Sent,
    /// The consumer took it and has not yet said it applied it.
    Taken,
}

impl Updates {
    /// No update waiting, no first list expected.
    pub fn new() -> Updates {
        Updates::default()
    }

    /// Hands over `update`, replacing the one of its job that still waits (invariant 1).
    pub fn send(&self, update: Update) {
        let mut st = self.lock();
        if st.pending.insert(update.job, update.groups).is_some() {
            st.replaced += 1;
        }
        drop(st);
        self.sent.notify_one();
    }

    /// `job`'s discovery completed its first list; `update` is what it made of it (`None`:
    /// nothing changed for the consumer).
    pub fn listed(&self, job: &str, update: Option<Update>) {
        if let Some(update) = update {
            self.send(update);
        }
        let mut st = self.lock();
        if !st.first_lists.contains_key(job) {
            return;
        }
        if st.pending.contains_key(job) {
            st.first_lists.insert(job.to_owned(), FirstList::Sent);
        } else {
            st.first_lists.remove(job);
        }
    }

    /// From now on, `jobs` are expected to complete a first list (replacing what was
    /// expected before: jobs no longer configured expect nothing).
    pub fn expect_first_lists<'a>(&self, jobs: impl IntoIterator<Item = &'a str>) {
        let mut st = self.lock();
        st.first_lists = jobs
            .into_iter()
            .map(|j| (j.to_owned(), FirstList::Listing))
            .collect();
    }

    /// Every update waiting (at most one per job, in job order), taken; empty if none.
    pub fn try_take(&self) -> Vec<Update> {
        let mut st = self.lock();
        let pending = std::mem::take(&mut st.pending);
        for job in pending.keys() {
            if let Some(stage) = st.first_lists.get_mut(job)
                && *stage == FirstList::Sent
            {
                *stage = FirstList::Taken;
            }
        }
        pending
            .into_iter()
            .map(|(job, groups)| Update { job, groups })
            .collect()
    }

    /// Waits until updates wait, and takes them (see [`Updates::try_take`]). Cancel-safe.
    pub async fn next(&self) -> Vec<Update> {
        loop {
            let taken = self.try_take();
            if !taken.is_empty() {
                return taken;
            }
            self.sent.notified().await;
        }
    }

    /// The consumer applied everything it took so far (invariant 2).
    pub fn applied(&self) {
        self.lock()
            .first_lists
            .retain(|_, stage| *stage != FirstList::Taken);
    }

    /// Jobs whose first list is not applied yet, in order.
    pub fn waiting(&self) -> Vec<String> {
        self.lock().first_lists.keys().cloned().collect()
    }

    /// Updates replaced by a newer one of their job before they were taken.
    pub fn replaced(&self) -> u64 {
        self.lock().replaced
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every edit is a few map operations that leave a valid state; a poisoned lock is
        // still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(job: &str, source: &str) -> Update {
        Update {
            job: job.to_owned(),
            groups: vec![TargetGroup {
                source: source.to_owned(),
                ..TargetGroup::default()
            }],
        }
    }

    fn sources(updates: &[Update]) -> Vec<(String, String)> {
        updates
            .iter()
            .map(|u| (u.job.clone(), u.groups[0].source.clone()))
            .collect()
    }

    #[test]
    fn the_latest_update_of_each_job_wins_and_what_waits_is_one_per_job() {
        let updates = Updates::new();
        for i in 0..10_000 {
            updates.send(update("a", &format!("pod/{i}")));
            updates.send(update("b", &format!("pod/{i}")));
        }
        assert_eq!(updates.lock().pending.len(), 2, "bounded by the jobs");
        assert_eq!(updates.replaced(), 2 * 9_999);
        let taken = updates.try_take();
        assert_eq!(
            sources(&taken),
            [
                ("a".to_owned(), "pod/9999".to_owned()),
                ("b".to_owned(), "pod/9999".to_owned())
            ]
        );
        assert!(updates.try_take().is_empty());
    }

    #[tokio::test]
    async fn next_waits_for_an_update_and_keeps_a_wake_that_came_first() {
        let updates = std::sync::Arc::new(Updates::new());
        updates.send(update("a", "1"));
        // Sent before anyone waited: taken at once.
        assert_eq!(sources(&updates.next().await).len(), 1);
        let waiter = tokio::spawn({
            let updates = updates.clone();
            async move { updates.next().await }
        });
        updates.send(update("a", "2"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(sources(&got), [("a".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn a_first_list_counts_once_its_update_is_applied() {
        let updates = Updates::new();
        updates.expect_first_lists(["a", "b", "c"]);
        assert_eq!(updates.waiting(), ["a", "b", "c"]);
        // a: listed with an update, which the consumer takes and then applies.
        updates.listed("a", Some(update("a", "pod/1")));
        assert_eq!(updates.waiting(), ["a", "b", "c"]);
        let taken = updates.try_take();
        assert_eq!(taken.len(), 1);
        assert_eq!(updates.waiting(), ["a", "b", "c"], "taken is not applied");
        // b lists while a's update is being applied: b's update is not applied with it.
        updates.listed("b", Some(update("b", "pod/2")));
        updates.applied();
        assert_eq!(updates.waiting(), ["b", "c"]);
        // c: listed, nothing new to send.
        updates.listed("c", None);
        assert_eq!(updates.waiting(), ["b"]);
        updates.try_take();
        updates.applied();
        assert!(updates.waiting().is_empty());
        // A job not expected to list changes nothing.
        updates.listed("d", None);
        assert!(updates.waiting().is_empty());
    }

    #[test]
    fn a_first_list_without_an_update_waits_for_an_update_still_pending() {
        let updates = Updates::new();
        updates.expect_first_lists(["a"]);
        // The static groups went out before the first list and were not taken yet.
        updates.send(update("a", "static/0"));
        updates.listed("a", None);
        assert_eq!(updates.waiting(), ["a"]);
        updates.try_take();
        updates.applied();
        assert!(updates.waiting().is_empty());
    }
}
