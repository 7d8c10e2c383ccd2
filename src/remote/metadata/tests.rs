use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::*;
use crate::config::RemoteWriteConfig;
use crate::exposition::MetricType;
use crate::labels::Labels;
use crate::remote::metrics::EndpointMetrics;
use crate::remote::prompb;
use crate::remote::queue::tests::{Fake, Step, config};
use crate::remote::queue::{QueueHandle, QueueOptions, spawn_queue_with};
use crate::remote::source::{EndpointInput, Fanout};
use crate::remote::write_client::SendError;

fn entries(n: usize) -> Vec<Arc<Metadata>> {
    (0..n)
        .map(|i| {
            Arc::new(Metadata {
                family: format!("family_{i}"),
                kind: MetricType::Counter,
                help: format!("Help {i}."),
                unit: String::new(),
            })
        })
        .collect()
}

fn sender(fake: &Fake) -> Sender<Fake> {
    Sender::new(
        "test".into(),
        fake.clone(),
        config(1, 10).queue_config,
        EndpointMetrics::unregistered(),
        CancellationToken::new(),
    )
}

/// The family names of each request, checking that requests carry metadata only.
fn families(fake: &Fake) -> Vec<Vec<String>> {
    fake.requests()
        .into_iter()
        .map(|r| {
            assert!(r.timeseries.is_empty(), "metadata requests carry no series");
            r.metadata
                .into_iter()
                .map(|m| m.metric_family_name)
                .collect()
        })
        .collect()
}

fn unavailable() -> SendError {
    SendError::Server {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        retry_after: None,
        message: "down".into(),
    }
}

fn in_a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn a_round_is_cut_into_requests_of_at_most_max_samples_per_send() {
    let fake = Fake::default();
    let s = sender(&fake);
    let all = entries(5);
    assert!(send_round(&s, &mut RequestEncoder::new(), &all, 2, in_a_minute()).await);
    assert_eq!(
        families(&fake),
        [
            vec!["family_0", "family_1"],
            vec!["family_2", "family_3"],
            vec!["family_4"]
        ]
    );
    let first = &fake.requests()[0].metadata[0];
    assert_eq!(
        (first.r#type, first.help.as_str(), first.unit.as_str()),
        (prompb::MetricType::Counter as i32, "Help 0.", "")
    );
    let m = &s.metrics;
    assert_eq!(m.metadata_sent.get(), 5);
    assert!(m.metadata_bytes_sent.get() > 0);
    assert_eq!(m.requests.ok.get(), 3);
    // Samples' counters are untouched.
    assert_eq!((m.samples_sent.get(), m.bytes_sent.get()), (0, 0));
}

#[tokio::test]
async fn failures_are_retried_and_refusals_counted_without_ending_the_round() {
    let fake = Fake::default();
    fake.script([
        Step::Fail(unavailable),
        Step::Fail(|| SendError::Timeout(Duration::from_secs(1))),
        Step::Fail(|| SendError::Rejected {
            status: http::StatusCode::BAD_REQUEST,
            message: "no metadata here".into(),
        }),
    ]);
    let s = sender(&fake);
    let all = entries(5);
    assert!(send_round(&s, &mut RequestEncoder::new(), &all, 2, in_a_minute()).await);
    // The first request is retried twice, then refused; the round goes on.
    assert_eq!(
        families(&fake),
        [vec!["family_2", "family_3"], vec!["family_4"]]
    );
    let m = &s.metrics;
    assert_eq!((m.metadata_sent.get(), m.metadata_retried.get()), (3, 4));
    assert_eq!(
        (m.metadata_failed.rejected.get(), m.metadata_expired.get()),
        (2, 0)
    );
    assert_eq!(s.metrics.failed.rejected.get(), 0, "not counted as samples");
}

#[tokio::test]
async fn what_a_round_cannot_deliver_in_time_expires_and_the_next_round_sends_it() {
    let fake = Fake::default();
    fake.script((0..100_000).map(|_| Step::Fail(unavailable)));
    let s = sender(&fake);
    let all = entries(5);
    let deadline = Instant::now() + Duration::from_millis(200);
    assert!(send_round(&s, &mut RequestEncoder::new(), &all, 2, deadline).await);
    let m = &s.metrics;
    assert_eq!((m.metadata_sent.get(), m.metadata_expired.get()), (0, 5));
    assert!(m.metadata_retried.get() > 0);
    assert!(!s.is_retrying(), "metadata is no retrying shard");

    fake.script_clear();
    assert!(send_round(&s, &mut RequestEncoder::new(), &all, 2, in_a_minute()).await);
    assert_eq!(m.metadata_sent.get(), 5);
}

#[tokio::test]
async fn an_empty_round_sends_nothing() {
    let fake = Fake::default();
    let s = sender(&fake);
    assert!(send_round(&s, &mut RequestEncoder::new(), &[], 2, in_a_minute()).await);
    assert!(fake.requests().is_empty());
    assert_eq!(s.metrics.requests.ok.get(), 0);
}

#[tokio::test]
async fn a_hard_stop_ends_the_round() {
    let fake = Fake::default();
    fake.script([Step::Hang]);
    let s = sender(&fake);
    let all = entries(3);
    let mut encoder = RequestEncoder::new();
    let round = send_round(&s, &mut encoder, &all, 2, in_a_minute());
    tokio::pin!(round);
    // The first request hangs: the round cannot end on its own.
    let hung = tokio::time::timeout(Duration::from_millis(50), &mut round).await;
    assert!(hung.is_err());
    s.hard_stop.cancel();
    assert!(!round.await);
    let m = &s.metrics;
    assert_eq!(
        (
            m.metadata_sent.get(),
            m.metadata_expired.get(),
            m.metadata_failed.rejected.get()
        ),
        (0, 0, 0)
    );
}

/// A queue of `cfg` reading an input that never has samples, with `view` as metadata.
fn queue(cfg: &RemoteWriteConfig, fake: &Fake, view: &MetadataView) -> (Fanout, QueueHandle) {
    let fanout = Fanout::new();
    let source = fanout.add_output(10, Counter::default(), Counter::default());
    let (resume, store) = (None, None);
    let input = EndpointInput {
        source,
        resume,
        store,
    };
    let options = QueueOptions {
        metadata: Some(view.clone()),
        ..QueueOptions::default()
    };
    let metrics = EndpointMetrics::unregistered();
    let handle = spawn_queue_with(cfg, &Labels::empty(), input, fake.clone(), metrics, options);
    (fanout, handle)
}

fn metadata_config(send: bool) -> RemoteWriteConfig {
    let mut cfg = config(1, 10);
    cfg.metadata_config = MetadataConfig {
        send,
        send_interval: Duration::from_millis(50),
        max_samples_per_send: 2,
    };
    cfg
}

/// Waits until `fake` has received `n` requests.
async fn wait_for_requests(fake: &Fake, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.requests().len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} requests"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_task_sends_what_the_view_holds_every_interval_and_ends_with_its_queue() {
    let fake = Fake::default();
    let view = MetadataView::default();
    let target = view.slot();
    target.publish(entries(3).into());
    let (fanout, handle) = queue(&metadata_config(true), &fake, &view);
    assert!(handle.sends_metadata());
    wait_for_requests(&fake, 2).await;
    assert_eq!(
        families(&fake)[..2],
        [vec!["family_0", "family_1"], vec!["family_2"]]
    );
    // Every round sends it all again.
    wait_for_requests(&fake, 4).await;
    assert_eq!(families(&fake)[2..4], families(&fake)[..2]);

    // The queue's end ends the task: join returns.
    fanout.close();
    tokio::time::timeout(Duration::from_secs(10), handle.join())
        .await
        .unwrap_or_else(|_| panic!("the queue did not end"));
}

#[tokio::test]
async fn without_send_there_is_no_metadata_task() {
    let fake = Fake::default();
    let view = MetadataView::default();
    let (fanout, handle) = queue(&metadata_config(false), &fake, &view);
    assert!(!handle.sends_metadata());
    fanout.close();
    handle.join().await;
}
