//! Sending metric metadata, as Prometheus's `MetadataWatcher` and `QueueManager.AppendMetadata`
//! do: per endpoint with `metadata_config.send`, a task that every `send_interval` collects the
//! metadata of every running scrape loop ([`MetadataView::collect`]: deduplicated by family,
//! type, help and unit) and sends it in `WriteRequest`s that carry only `metadata`, at most
//! `max_samples_per_send` entries each.
//!
//! Invariants:
//! 1. Separate from the shards: it never delays samples and never holds back resharding. It
//!    shares the endpoint's client (headers, auth, TLS), request encoding and attempt/backoff
//!    classification ([`Sender::deliver`]): 5xx, timeouts and network errors are retried,
//!    other refusals are counted (`metadata_failed{reason}`) and the round goes on.
//! 2. Nothing is kept: metadata never goes to the buffer. What a round has not delivered when
//!    its `send_interval` is over is counted as failed (`expired`); the next round collects
//!    and sends it afresh.
//! 3. The first round comes one `send_interval` after the start (as Prometheus's ticker); a
//!    round's requests are sent one after the other; an empty collection sends nothing.
//! 4. It ends with its queue: at once when the queue drains or stops hard, or when the queue
//!    ends (its input closed).

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::encode::RequestEncoder;
use super::send::{Load, Outcome, Refresh, Sender};
use super::write_client::WriteClient;
use crate::config::MetadataConfig;
use crate::metadata::{Metadata, MetadataView};
use crate::telemetry::error_chain;

/// Starts the metadata task of the endpoint `sender` sends to; it ends when `stop` is
/// cancelled or the sender's hard stop comes.
pub(super) fn spawn_metadata<C: WriteClient>(
    sender: Arc<Sender<C>>,
    cfg: MetadataConfig,
    view: MetadataView,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let span = tracing::info_span!("remote_write_metadata", endpoint = %sender.name);
    tokio::spawn(run(sender, cfg, view, stop).instrument(span))
}

async fn run<C: WriteClient>(
    sender: Arc<Sender<C>>,
    cfg: MetadataConfig,
    view: MetadataView,
    stop: CancellationToken,
) {
    let interval = cfg.send_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut encoder = RequestEncoder::new();
    let hard_stop = sender.hard_stop.clone();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = hard_stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let metadata = view.collect();
        let deadline = Instant::now() + interval;
        let per_request = cfg.max_samples_per_send.max(1);
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            done = send_round(&sender, &mut encoder, &metadata, per_request, deadline) => {
                if !done {
                    break;
                }
            }
        }
    }
}

/// Sends `metadata` in requests of at most `per_request` entries, each retried until
/// `deadline` (invariant 2). Returns false when the hard stop came.
async fn send_round<C: WriteClient>(
    sender: &Sender<C>,
    encoder: &mut RequestEncoder,
    metadata: &[Arc<Metadata>],
    per_request: usize,
    deadline: Instant,
) -> bool {
    let m = &sender.metrics;
    for (i, chunk) in metadata.chunks(per_request).enumerate() {
        let n = chunk.len() as u64;
        let body = match encoder.encode_metadata(chunk) {
            Ok(body) => Bytes::copy_from_slice(body),
            Err(e) => {
                tracing::error!(metadata = n, error = %error_chain(&e), "cannot encode a metadata request; dropped");
                m.metadata_failed.encode.inc_by(n);
                continue;
            }
        };
        let sent = sender.deliver(Load::Metadata, body, n, || Refresh::Same);
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Outcome::Cancelled) => return false,
            Ok(Outcome::Sent | Outcome::Failed) => {}
            Err(_) => {
                let left = metadata.len() - i * per_request;
                m.metadata_expired.inc_by(left as u64);
                tracing::debug!(
                    metadata = left,
                    "metadata not delivered within send_interval; the next round sends it again"
                );
                return true;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
