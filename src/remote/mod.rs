//! Remote write: delivers appended samples to Prometheus remote-write 1.0 endpoints, exactly as
//! the spec (<https://prometheus.io/docs/specs/remote_write_spec/>) requires of a sender.
//!
//! The path of a batch, one role per file:
//!
//! ```text
//! Appender (scrape loops)
//!   -> source::Fanout        one bounded input queue per endpoint (append never blocks)
//!   -> queue (reader)        series table: wire labels computed once per series
//!                            (external labels, then write_relabel_configs, then protobuf);
//!                            series limits decided once per series (limits)
//!   -> shards                hash(wire labels) -> shard; batches cut by size or deadline
//!   -> send + retry          encode once (encode), snappy, POST (write_client); retry 5xx,
//!                            timeouts and network errors with backoff; 429 if configured
//!
//! MetadataView (scrape loops)
//!   -> metadata              per endpoint, every send_interval: collect, cut into requests,
//!                            send + retry as above (not buffered, beside the shards)
//! ```
//!
//! Invariants that hold across the files (each file states its own):
//! 1. Per-series order: a series always goes to one shard, a shard sends one request at a
//!    time and retries in place, and a reshard flushes the old shards before starting new ones.
//! 2. Accounting: every sample read is sent, refused (`samples_failed_total{reason}`) or
//!    dropped (`samples_dropped_total{reason}`).
//! 3. Bounded memory: per endpoint, the series table follows the active series, queues are
//!    bounded by configured capacities, and series limits (`limits`) by the limits.
//! 4. Isolation: endpoints share nothing but the immutable input batches.
//! 5. The input seam is [`BatchSource`]; a queue publishes the lowest position it has not fully
//!    handled ([`QueueHandle::progress`]), so the on-disk buffer can replace [`Fanout`].
//!
//! 6. Reload ([`RemoteWrite::reload`]): endpoints are keyed by [`endpoint_key`]; only those
//!    whose key changed restart (from their saved cursors), removed ones release the input,
//!    new ones start at its end; a configuration with an endpoint that cannot be built
//!    changes nothing.
//!
//! Without any endpoint (or with `agent.debug_output`), the debug output logs a summary of
//! what would be sent.

mod debug;
mod encode;
mod error;
mod limits;
mod metadata;
mod metrics;
pub mod prompb;
mod queue;
mod retry;
mod send;
mod sharding;
mod shards;
mod source;
mod table;
mod write;
mod write_client;

pub use debug::{DEBUG_INTERVAL, EXAMPLES};
pub use encode::{EncodeError, RequestEncoder, WireSample, wire_hash};
pub use error::Error;
pub(crate) use metrics::EndpointMetrics;
pub use metrics::{RemoteMetrics, drop_reason, fail_reason, ignored_setting, series_window};
pub use queue::{QueueHandle, QueueTuning};
pub use retry::RETRY_AFTER_CAP;
pub use sharding::SHARD_UPDATE_INTERVAL;
pub use source::{
    BatchSource, CursorStore, Cursors, EndpointInput, Fanout, MemoryQueue, Position, ShardCursor,
};
pub use write::{
    HARD_STOP_BOUND, INPUT_QUEUE_FACTOR, RELOAD_FLUSH_DEADLINE, ReloadSummary, RemoteWrite,
    Validator, endpoint_key,
};
pub(crate) use write::{Input, Start};
pub use write_client::{
    HttpWriteClient, MAX_ERROR_MESSAGE_BYTES, REMOTE_WRITE_VERSION, SendError, USER_AGENT_VALUE,
    WriteClient,
};
