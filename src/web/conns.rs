//! The connections the server holds: the cap, the two timeouts and eviction.
//!
//! Each connection is in one of three states, kept in atomics its task, its I/O wrapper and
//! its requests' bodies update:
//! - **busy**: a request is being handled (from the moment its head is parsed until its
//!   response body has been handed to hyper); no timer runs;
//! - **pending**: bytes of a request have arrived (or the connection is new: a client that
//!   connects must send a request) but no head is complete yet; it is closed when
//!   `header_read_timeout` passes (the TLS handshake counts here too);
//! - **idle**: between requests; closed when `idle_timeout` passes. HTTP/2 connections are
//!   never pending after their first request (frames like PING and WINDOW_UPDATE are not
//!   requests): only the idle timeout applies.
//!
//! The cap (`--web.max-connections`, 0: none): the server holds at most that many. When one
//! more arrives at the cap, it is accepted and the connection that has been pending or idle
//! the longest is closed to make room (a client between two requests reconnects; a client in
//! the middle of a request is never cut). When every connection is busy, nothing more is
//! accepted until one ends: new connections wait in the kernel's backlog. So thousands of
//! idle or slow connections cannot lock out a scraper, and the server never holds more than
//! the cap plus the one connection waiting for room.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// No time (for `pending_since`).
const NEVER: u64 = u64::MAX;

/// The connection table of one server.
pub(super) struct Table {
    common: Arc<Common>,
    /// None: no cap.
    permits: Option<Arc<Semaphore>>,
    max_connections: usize,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// Times room was made at the cap since the last warning, and when that was (ms since
    /// the epoch; [`NEVER`] before the first): one warning a minute at most.
    evictions: AtomicU64,
    warned_at: AtomicU64,
}

/// What every connection of a table shares.
struct Common {
    epoch: Instant,
    /// A connection became idle: a candidate for eviction, which `admit` may be waiting for.
    became_idle: Notify,
}

/// One connection's state.
pub(super) struct Conn {
    common: Arc<Common>,
    /// Requests being handled (HTTP/2 has several at once).
    in_flight: AtomicU32,
    /// Milliseconds since the epoch at which the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since the epoch at which a request began to arrive; [`NEVER`] when none.
    pending_since: AtomicU64,
    /// Speaks HTTP/2: never pending after its first request.
    h2: AtomicBool,
    /// Something above changed: the connection's task recomputes its deadline.
    changed: Notify,
    /// `admit` wants room: close if idle.
    evict: Notify,
}

/// A place in the table, held by a connection's task; dropping it frees the place.
pub(super) struct Slot {
    id: u64,
    conn: Arc<Conn>,
    table: Arc<Table>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Why a connection's task stops waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    /// Its header timeout passed.
    HeaderTimeout,
    /// Its idle timeout passed.
    IdleTimeout,
    /// It was idle and room was needed.
    Evicted,
}

/// A request being handled; dropping it (with the response body) ends it.
pub(super) struct RequestGuard {
    conn: Arc<Conn>,
}

/// An I/O stream that tells its connection when request bytes arrive.
pub(super) struct Tracked<I> {
    inner: I,
    conn: Arc<Conn>,
    sniffed: bool,
}

impl Table {
    /// `max_connections` 0: no cap; a zero timeout: none.
    pub(super) fn new(
        max_connections: usize,
        header_read_timeout: Duration,
        idle_timeout: Duration,
    ) -> Arc<Table> {
        Arc::new(Table {
            common: Arc::new(Common {
                epoch: Instant::now(),
                became_idle: Notify::new(),
            }),
            permits: (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections))),
            max_connections,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            header_read_timeout: Some(header_read_timeout).filter(|d| !d.is_zero()),
            idle_timeout: Some(idle_timeout).filter(|d| !d.is_zero()),
            evictions: AtomicU64::new(0),
            warned_at: AtomicU64::new(NEVER),
        })
    }

    /// A place for a connection just accepted: at once below the cap; at the cap after the
    /// longest-idle connection has closed, or, when all are busy, after one has ended. None
    /// when `stop` fires first.
    pub(super) async fn admit(self: &Arc<Self>, stop: &CancellationToken) -> Option<Slot> {
        let permit = match &self.permits {
            None => None,
            Some(permits) => Some(loop {
                if let Ok(p) = permits.clone().try_acquire_owned() {
                    break p;
                }
                // Registered before looking, so that a connection going idle meanwhile wakes us.
                let idle = self.common.became_idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if let Some(victim) = self.longest_idle() {
                    victim.evict.notify_one();
                    self.note_eviction();
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return None,
                    },
                    _ = idle => {}
                    _ = stop.cancelled() => return None,
                }
            }),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.common.now();
        let conn = Arc::new(Conn {
            common: self.common.clone(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            // A new connection must send a request within the header timeout.
            pending_since: AtomicU64::new(now),
            h2: AtomicBool::new(false),
            changed: Notify::new(),
            evict: Notify::new(),
        });
        self.lock().insert(id, conn.clone());
        Some(Slot {
            id,
            conn,
            table: self.clone(),
            _permit: permit,
        })
    }

    /// Connections held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Counts room made at the cap; warns once a minute at most (a flood of connections
    /// must not flood the log too).
    fn note_eviction(&self) {
        let evictions = self.evictions.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.common.now();
        let last = self.warned_at.load(Ordering::Relaxed);
        if last != NEVER && now.saturating_sub(last) < 60_000 {
            return;
        }
        if self
            .warned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.evictions.fetch_sub(evictions, Ordering::Relaxed);
            tracing::warn!(
                max_connections = self.max_connections,
                evicted = evictions,
                "the web server is at --web.max-connections; closing the connections idle the longest to make room"
            );
        }
    }

    /// The connection that has been pending or idle the longest.
    fn longest_idle(&self) -> Option<Arc<Conn>> {
        self.lock()
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.quiet_since())
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Common {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }
}

impl Conn {
    /// Since when it has been pending or idle (meaningless while busy).
    fn quiet_since(&self) -> u64 {
        match self.pending_since.load(Ordering::Acquire) {
            NEVER => self.idle_since.load(Ordering::Acquire),
            t => t,
        }
    }

    /// A request's head was parsed: busy until the guard drops.
    pub(super) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.pending_since.store(NEVER, Ordering::Release);
        RequestGuard { conn: self.clone() }
    }

    fn bytes_arrived(&self) {
        if self.h2.load(Ordering::Relaxed)
            || self.in_flight.load(Ordering::Acquire) > 0
            || self.pending_since.load(Ordering::Acquire) != NEVER
        {
            return;
        }
        self.pending_since
            .store(self.common.now(), Ordering::Release);
        self.changed.notify_one();
    }
}

impl Slot {
    pub(super) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Waits until the connection's timer runs out or it is evicted while idle. Returns at
    /// once when that has happened already; never while a request is being handled.
    pub(super) async fn expired(&self) -> Wake {
        let conn = &self.conn;
        loop {
            let changed = conn.changed.notified();
            let evict = conn.evict.notified();
            tokio::pin!(changed, evict);
            changed.as_mut().enable();
            evict.as_mut().enable();
            let deadline = self.deadline();
            if let Some((at, wake)) = deadline
                && at <= Instant::now()
            {
                return wake;
            }
            let sleep = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = changed => {}
                _ = evict => {
                    if conn.in_flight.load(Ordering::Acquire) == 0 {
                        return Wake::Evicted;
                    }
                }
            }
        }
    }

    /// When the connection's current timer runs out, and which it is; None while busy.
    fn deadline(&self) -> Option<(Instant, Wake)> {
        let conn = &self.conn;
        if conn.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let (since, timeout, wake) = match conn.pending_since.load(Ordering::Acquire) {
            NEVER => (
                conn.idle_since.load(Ordering::Acquire),
                self.table.idle_timeout?,
                Wake::IdleTimeout,
            ),
            t => (t, self.table.header_read_timeout?, Wake::HeaderTimeout),
        };
        Some((
            conn.common.epoch + Duration::from_millis(since) + timeout,
            wake,
        ))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let conn = &self.conn;
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            conn.idle_since.store(conn.common.now(), Ordering::Release);
            conn.changed.notify_one();
            conn.common.became_idle.notify_one();
        }
    }
}

impl<I> Tracked<I> {
    pub(super) fn new(inner: I, conn: Arc<Conn>) -> Self {
        Tracked {
            inner,
            conn,
            sniffed: false,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            if !this.sniffed {
                this.sniffed = true;
                // The HTTP/2 connection preface ("PRI * HTTP/2.0"), with or without TLS.
                if buf.filled()[before..].starts_with(b"PRI ") {
                    this.conn.h2.store(true, Ordering::Relaxed);
                }
            }
            this.conn.bytes_arrived();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_a_request_within_the_header_timeout() {
        let table = Table::new(4, SECOND, 10 * SECOND);
        let stop = CancellationToken::new();
        let slot = table.admit(&stop).await.expect("slot");
        let started = Instant::now();
        assert_eq!(slot.expired().await, Wake::HeaderTimeout);
        assert_eq!(started.elapsed(), SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_never_expires_and_an_idle_one_does_after_the_idle_timeout() {
        let table = Table::new(4, SECOND, 10 * SECOND);
        let stop = CancellationToken::new();
        let slot = table.admit(&stop).await.expect("slot");
        let guard = slot.conn().request_started();
        let busy = tokio::time::timeout(60 * SECOND, slot.expired()).await;
        assert!(busy.is_err(), "a busy connection expired: {busy:?}");
        drop(guard);
        let idle_from = Instant::now();
        assert_eq!(slot.expired().await, Wake::IdleTimeout);
        assert_eq!(idle_from.elapsed(), 10 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let table = Table::new(2, 60 * SECOND, 60 * SECOND);
        let stop = CancellationToken::new();
        let oldest = table.admit(&stop).await.expect("slot");
        tokio::time::advance(SECOND).await;
        let busy = table.admit(&stop).await.expect("slot");
        let request = busy.conn().request_started();
        assert_eq!(table.len(), 2);

        // The third waits; the oldest is told to go and goes (as its task would).
        let admitting = tokio::spawn({
            let (table, stop) = (table.clone(), stop.clone());
            async move { table.admit(&stop).await }
        });
        assert_eq!(oldest.expired().await, Wake::Evicted);
        drop(oldest);
        let third = admitting.await.expect("join").expect("slot");
        assert_eq!(table.len(), 2);

        // All busy: the next waits until one ends, and the busy one is not evicted.
        let third_request = third.conn().request_started();
        let waiting = tokio::spawn({
            let (table, stop) = (table.clone(), stop.clone());
            async move { table.admit(&stop).await.is_some() }
        });
        let evicted = tokio::time::timeout(30 * SECOND, busy.expired()).await;
        assert!(evicted.is_err(), "a busy connection was evicted");
        assert!(!waiting.is_finished());
        drop((request, third_request));
        drop(busy);
        assert!(waiting.await.expect("join"));
    }

    #[tokio::test(start_paused = true)]
    async fn without_timeouts_nothing_expires() {
        let table = Table::new(0, Duration::ZERO, Duration::ZERO);
        let stop = CancellationToken::new();
        let slot = table.admit(&stop).await.expect("slot");
        assert!(
            tokio::time::timeout(3600 * SECOND, slot.expired())
                .await
                .is_err()
        );
    }
}
