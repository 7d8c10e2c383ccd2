//! The agent's write-ahead log: scrape batches in the buffer ([`crate::buffer`]) between the
//! scrape loops and remote write.
//!
//! ```text
//! scrape loops -> WalAppender (bounded queue) -> writer thread (codec: batch -> record)
//!                                                  -> buffer::Writer -> segments on disk
//!                                                  -> tail (the newest batches, in memory)
//!   per endpoint: reader thread (the log while behind, the tail once caught up)
//!                 -> WalSource -> remote queue
//!                 shards' cursors -> FileStore -> <data-dir>/cursors/<endpoint>.cursor
//!                                             -> Log::hold (segments before it can go)
//! ```
//!
//! Invariants (each file states its own):
//! 1. Written before sent: the scrape loops' batches reach endpoints only once the writer
//!    thread has written their record (the tail holds only written batches); a killed process
//!    loses nothing written, and what is queued for the writer when it dies is what a crash
//!    a moment earlier would have cost. What cannot be written is counted (`write_error`,
//!    `too_large`, `stalled`).
//! 2. Every endpoint resumes where its shards' saved cursors say; what it sends again after
//!    a crash is, per shard, at most one sample per series (the receiver's latest), and is
//!    counted (`scrapelet_remote_samples_resent_total`).
//! 3. An endpoint without a cursor file (new in the config) starts at this process's first
//!    segment ("now"), or at the log's end when a reload adds it, and its cursor file is
//!    written (and its hold registered) before anything is read; a cursor file of an endpoint
//!    no longer configured is deleted and its hold released: at start-up, or when a reload
//!    removes it, after its cursor store has finished (never racing its last write).
//! 6. A reload restarting an endpoint (its configuration changed) resumes it from the
//!    cursors its previous store held last, with the same cursor file and hold throughout.
//! 4. Endpoints are independent: each has its own reader and cursors; one that falls behind
//!    only holds segments until the size cap deletes them (its loss is counted, the others
//!    lose nothing).
//! 5. Memory does not grow with the backlog (see `source`).
//!
//! Start-up: open the buffer (recovery seals what a crash left) -> read the cursor files ->
//! register every endpoint's hold -> start this process's segment -> start readers and
//! stores as remote write asks for them. Reload: remote write stops a removed or changed
//! endpoint's queue (which saves its cursors), then retires it here (its store finishes;
//! a removed one's file is deleted and hold released), then starts changed and added ones.
//! Shutdown: close the appender (seals the segment) -> readers drain to the end -> queues
//! flush and save their cursors.
//!
//! Lock: `Wal::endpoints` covers the saved cursors not yet claimed and the running stores;
//! nothing is awaited under it.

mod appender;
mod codec;
mod cursors;
mod metrics;
mod source;
mod tail;
#[cfg(test)]
mod tests;

pub use codec::{DecodeError, Decoded, Decoder, Encoder, KIND_BATCH, KIND_SNAPSHOT};
pub use cursors::{CursorError, cursor_path};
pub use metrics::{WalMetrics, drop_reason};
pub use source::{CHANNEL_BATCHES, WalSource};
pub use tail::{TAIL_ENTRIES, TAIL_SAMPLES};

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::registry::Registry;

use self::appender::{Observer, WalAppender};
use self::cursors::{FileStore, StoreSetup};
use self::source::{ReaderSetup, spawn_reader};
use crate::append::Appender;
use crate::buffer::{self, Log, Options};
use crate::config::{BufferConfig, RemoteWriteConfig};
use crate::remote::{Cursors, EndpointInput, Position, Start};
use crate::telemetry::error_chain;

/// The write-ahead log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The buffer directory cannot be used or this process's first segment cannot be
    /// written. Retryable when the cause is (disk space, permissions).
    #[error("cannot open the write-ahead buffer")]
    Buffer(#[source] buffer::Error),
    /// The cursor directory cannot be used, or an endpoint's first cursor file cannot be
    /// written. Retryable when the cause is.
    #[error("cannot use the endpoints' cursor files")]
    Cursors(#[source] CursorError),
}

/// An open write-ahead log, handing out one input per endpoint (`remote::Input`), at
/// start-up and whenever a reload adds or restarts one.
pub struct Wal {
    log: Log,
    appender: Arc<WalAppender>,
    metrics: WalMetrics,
    cursors_dir: PathBuf,
    /// Where endpoints configured at start-up without cursors start: this process's first
    /// segment.
    start: buffer::Position,
    endpoints: Mutex<Endpoints>,
}

/// Covered by `Wal::endpoints`.
#[derive(Default)]
struct Endpoints {
    /// Cursors saved by the previous run, per configured endpoint, until it starts.
    saved: HashMap<String, Cursors>,
    /// The stores of the running endpoints.
    stores: HashMap<String, Arc<FileStore>>,
}

impl Wal {
    /// Opens the buffer under `data_dir` for the endpoints `endpoints` (their names). See the
    /// module docs for the steps.
    pub fn open(
        data_dir: &Path,
        cfg: &BufferConfig,
        endpoints: &[&str],
        registry: &mut Registry,
    ) -> Result<Wal, Error> {
        Self::open_with(data_dir, cfg, endpoints, registry, Arc::new(buffer::StdFs))
    }

    /// [`Wal::open`] writing through `fs` (tests inject failures with it).
    pub fn open_with(
        data_dir: &Path,
        cfg: &BufferConfig,
        endpoints: &[&str],
        registry: &mut Registry,
        fs: Arc<dyn buffer::Fs>,
    ) -> Result<Wal, Error> {
        let metrics = WalMetrics::register(registry);
        let options = Options {
            max_size: cfg.max_size,
            max_age: cfg.max_age,
            segment_size: Options::segment_size_for(cfg.max_size),
            fsync_interval: cfg.fsync_interval,
            observer: Arc::new(Observer::new(metrics.clone())),
            fs,
            ..Options::new(data_dir.join("buffer"))
        };
        let (log, writer, recovery) = Log::open(options).map_err(Error::Buffer)?;
        if recovery != buffer::Recovery::default() {
            tracing::info!(
                segments = recovery.segments,
                sealed = recovery.sealed,
                torn_bytes = recovery.torn_bytes,
                removed_files = recovery.removed,
                removed_bytes = recovery.removed_bytes,
                "buffer recovered"
            );
        }
        metrics
            .corrupt_bytes
            .inc_by(recovery.torn_bytes + recovery.removed_bytes);
        let cursors_dir = data_dir.join("cursors");
        let mut saved = HashMap::new();
        let start = log.end();
        for (name, cursors) in cursors::load_all(&cursors_dir).map_err(Error::Cursors)? {
            if !endpoints.contains(&name.as_str()) {
                let path = cursor_path(&cursors_dir, &name);
                tracing::info!(endpoint = %name, "endpoint no longer configured; its buffer cursor is deleted");
                let _ = std::fs::remove_file(path);
                continue;
            }
            match cursors {
                Ok(c) => {
                    saved.insert(name, c);
                }
                Err(e) => {
                    // Resending everything kept beats losing it.
                    tracing::error!(endpoint = %name, error = %error_chain(&e), "endpoint's buffer cursor unreadable; it starts at the oldest data kept");
                    saved.insert(
                        name,
                        Cursors {
                            shards: Vec::new(),
                            routed: Position(0),
                        },
                    );
                }
            }
        }
        for name in endpoints {
            let at = saved
                .get(*name)
                .map_or(start, |c| buffer::Position::from_u64(c.min_position().0));
            log.hold(name, at);
        }
        let (appender, first) =
            WalAppender::start(writer, log.clone(), metrics.clone()).map_err(Error::Buffer)?;
        let appender = Arc::new(appender);
        Ok(Wal {
            log,
            appender,
            metrics,
            cursors_dir,
            start: buffer::Position {
                segment: first.segment,
                offset: 0,
            },
            endpoints: Mutex::new(Endpoints {
                saved,
                stores: HashMap::new(),
            }),
        })
    }

    /// The appender for the scrape loops.
    pub fn appender(&self) -> Arc<dyn Appender> {
        self.appender.clone()
    }

    /// The buffer's log (tests, tools).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Seals the buffer (tools that write a buffer without running the agent).
    pub fn close(self) {
        self.appender.close();
    }

    fn lock(&self) -> MutexGuard<'_, Endpoints> {
        // Single-step map edits; a poisoned lock still guards a consistent state.
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new endpoint `name` starting at `at`: its hold, then its first cursor file, before
    /// anything is read (invariant 3).
    fn fresh(&self, name: &str, path: &Path, at: buffer::Position) -> Cursors {
        let fresh = Cursors {
            shards: Vec::new(),
            routed: Position(at.to_u64()),
        };
        self.log.hold(name, at);
        // A crash before the first delivery must not make this endpoint look new again (it
        // would skip what was appended meanwhile).
        if let Err(e) = cursors::write(path, &fresh, false) {
            self.metrics.cursor_write_failures.inc();
            tracing::error!(endpoint = %name, error = %error_chain(&e), "cannot save the endpoint's first cursor");
        }
        fresh
    }
}

/// Saves `cursors` as endpoint `name`'s cursor file under `data_dir` (tools, benches: e.g. to
/// make an endpoint replay a prepared backlog).
pub fn save_cursors(data_dir: &Path, name: &str, cursors: &Cursors) -> Result<(), CursorError> {
    let dir = data_dir.join("cursors");
    std::fs::create_dir_all(&dir).map_err(|source| CursorError::Io {
        path: dir.clone(),
        source,
    })?;
    cursors::write(&cursor_path(&dir, name), cursors, false)
}

/// Delivery reading the write-ahead log (what the agent does). Written here, beside the log,
/// so that `remote` does not depend on the buffer: imports flow one way, wal -> remote.
impl crate::remote::RemoteWrite {
    /// Starts every endpoint reading the write-ahead log `wal`; the appender is then the
    /// log's.
    pub fn with_wal(
        wal: Wal,
        config: &crate::config::Config,
        debug_output: bool,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, crate::remote::Error> {
        let metrics = crate::remote::RemoteMetrics::register(registry);
        Self::start_from(
            wal,
            config,
            debug_output,
            &metrics,
            crate::remote::QueueTuning::default(),
            crate::remote::HttpWriteClient::new,
        )
    }

    /// [`crate::remote::RemoteWrite::with_wal`] with the metrics, tuning and write client
    /// given (tests, benches).
    pub fn with_wal_tuned<C, F>(
        wal: Wal,
        config: &crate::config::Config,
        debug_output: bool,
        metrics: &crate::remote::RemoteMetrics,
        tuning: crate::remote::QueueTuning,
        make_client: F,
    ) -> Result<Self, crate::remote::Error>
    where
        C: crate::remote::WriteClient,
        F: Fn(&RemoteWriteConfig) -> Result<C, crate::remote::Error> + Send + Sync + 'static,
    {
        Self::start_from(wal, config, debug_output, metrics, tuning, make_client)
    }
}

impl crate::remote::Input for Wal {
    type Source = WalSource;

    fn endpoint(
        &self,
        cfg: &RemoteWriteConfig,
        _remote: &crate::remote::EndpointMetrics,
        start: Start,
    ) -> EndpointInput<WalSource> {
        let name = cfg.name.clone();
        let path = cursor_path(&self.cursors_dir, &name);
        let resume = match start {
            // Invariant 6: the hold and the file stay as the previous store left them.
            Start::Resume(c) => c,
            Start::Now => {
                // What was appended before this point is not this endpoint's to send.
                self.appender.flush();
                self.fresh(&name, &path, self.log.end())
            }
            Start::Configured => {
                let saved = self.lock().saved.remove(&name);
                match saved {
                    // Shard cursors: the previous runs wrote (so routed) nothing after this
                    // process's first segment, which bounds what they may have sent.
                    Some(c) if !c.shards.is_empty() => Cursors {
                        routed: Position(self.start.to_u64()),
                        ..c
                    },
                    // No shard cursors yet: `routed` is where the endpoint starts.
                    Some(c) => c,
                    None => self.fresh(&name, &path, self.start),
                }
            }
        };
        let from = buffer::Position::from_u64(resume.min_position().0);
        let m = self.metrics.endpoint(&name);
        let in_flight = cursors::new_in_flight();
        let source = spawn_reader(
            self.log.clone(),
            ReaderSetup {
                name: name.clone(),
                from,
                own_segment: self.start.segment,
                metrics: Some(m.clone()),
                in_flight: Some(in_flight.clone()),
                tail: self.appender.tail.clone(),
            },
        );
        let store = FileStore::spawn(StoreSetup {
            name: name.clone(),
            path,
            log: self.log.clone(),
            in_flight,
            metrics: m,
            wal_metrics: self.metrics.clone(),
            newest_appended: self.appender.newest_ts.clone(),
            start: resume.clone(),
        });
        self.lock().stores.insert(name, store.clone());
        EndpointInput {
            source,
            resume: Some(resume),
            store: Some(store),
        }
    }

    fn debug(&self) -> WalSource {
        // From the end: what was appended before it started is not of interest (at start-up
        // the end is this process's first segment).
        spawn_reader(
            self.log.clone(),
            ReaderSetup {
                name: "debug".into(),
                from: self.log.end().max(self.start),
                own_segment: self.start.segment,
                metrics: None,
                in_flight: None,
                tail: self.appender.tail.clone(),
            },
        )
    }

    fn retire(
        self: &Arc<Self>,
        name: &str,
        forget: bool,
    ) -> impl Future<Output = Option<Cursors>> + Send + 'static {
        let store = self.lock().stores.remove(name);
        let wal = self.clone();
        let name = name.to_owned();
        async move {
            let cursors = match store {
                Some(store) => store.finish().await,
                None => None,
            };
            if forget {
                // Invariant 3: the store has finished, so nothing rewrites the file or moves
                // the hold after this.
                wal.lock().saved.remove(&name);
                let path = cursor_path(&wal.cursors_dir, &name);
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(endpoint = %name, path = %path.display(), error = %e, "cannot delete the removed endpoint's buffer cursor");
                }
                wal.log.release(&name);
                wal.metrics.remove_endpoint(&name);
            }
            cursors
        }
    }

    fn appender(self: Arc<Self>) -> Arc<dyn Appender> {
        self.appender.clone()
    }

    fn close(&self) {
        self.appender.close();
    }

    fn discard(&self) -> usize {
        // What endpoints did not send stays in the buffer for the next run.
        0
    }

    fn keeps_unsent(&self) -> bool {
        true
    }
}
