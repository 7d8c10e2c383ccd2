//! A disk that stalls: every write and sync of the buffer blocks for 30 s. Meanwhile the
//! agent's own pages answer at once, the scrape loops keep their schedule (what they cannot
//! append is counted as dropped, not waited for), and the endpoint keeps sending what was
//! buffered before the stall. Afterwards writing resumes by itself.

mod support;

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use scrapelet::agent::BufferFs;
use scrapelet::buffer::{Fs, SegmentFile, StdFs};
use support::agent::TestAgent;
use support::binary::{buffer_test_config, churning_target, now_ms, up_timestamps};
use support::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(60);
/// How long every write and sync blocks once the disk stalls.
const STALL: Duration = Duration::from_secs(30);

/// The stall: writes and syncs wait while it is on, at most [`STALL`] from when it began.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<Option<Instant>>, Condvar)>);

impl Gate {
    fn stall(&self) {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn pass(&self) {
        let (lock, cv) = &*self.0;
        let mut since = lock.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(began) = *since {
            let left = STALL.saturating_sub(began.elapsed());
            if left.is_zero() {
                *since = None;
                cv.notify_all();
                break;
            }
            since = cv
                .wait_timeout(since, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// The real filesystem behind [`Gate`].
struct StallFs(Gate);

struct StallFile(Arc<dyn SegmentFile>, Gate);

impl Fs for StallFs {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        self.0.pass();
        Ok(Arc::new(StallFile(StdFs.create_new(path)?, self.0.clone())))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        Ok(Arc::new(StallFile(
            StdFs.open_append(path)?,
            self.0.clone(),
        )))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.pass();
        StdFs.sync_dir(dir)
    }
}

impl SegmentFile for StallFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.1.pass();
        self.0.append(buf)
    }

    fn sync(&self) -> io::Result<()> {
        self.1.pass();
        self.0.sync()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_delays_nothing_but_the_buffer() {
    let rx = Receiver::start().await;
    // Down at first, so that what is scraped waits in the buffer.
    rx.set_default(Reply::status(503));
    // 3000 series every 100 ms: the writer's queue fills within the stall.
    let (target, stop) = churning_target(3000).await;
    let gate = Gate::default();
    let config = scrapelet::config::parse(
        &buffer_test_config(&[("rx", &rx)], &target.address(), "256MiB"),
        "test.yml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let agent = TestAgent::start_with_fs(config, BufferFs(Arc::new(StallFs(gate.clone())))).await;
    support::eventually_async(WAIT, "buffered scrapes", || async {
        agent
            .metric("scrapelet_buffer_samples_written_total", &[])
            .await
            .unwrap_or(0.0)
            > 20.0 * 3000.0
    })
    .await;

    gate.stall();
    let stalled_at = now_ms();
    let scrapes_before = target.requests();
    let written_before = agent
        .metric("scrapelet_buffer_samples_written_total", &[])
        .await
        .unwrap_or(0.0);
    rx.set_default(Reply::ok());

    // For 10 s of the stall: the agent's pages answer within a second, every time.
    let watch_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < watch_until {
        for path in ["/metrics", "/-/healthy"] {
            let asked = Instant::now();
            let (status, _) = tokio::time::timeout(Duration::from_secs(1), agent.get(path))
                .await
                .unwrap_or_else(|_| panic!("{path} did not answer within 1 s during the stall"));
            assert_eq!(status, 200, "{path}");
            assert!(asked.elapsed() < Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The scrape loops kept their schedule (about 100 scrapes in 10 s).
    let scrapes = target.requests() - scrapes_before;
    assert!(scrapes >= 70, "{scrapes} scrapes in 10 s of stall");
    // What they could not queue was counted, not waited for.
    let stalled = agent
        .metric(
            "scrapelet_buffer_samples_dropped_total",
            &[("reason", "stalled")],
        )
        .await
        .unwrap_or(0.0);
    assert!(
        stalled > 0.0,
        "samples dropped for the stalled disk are counted"
    );
    // Nothing was written meanwhile...
    let written_during = agent
        .metric("scrapelet_buffer_samples_written_total", &[])
        .await
        .unwrap_or(0.0);
    assert!(
        written_during - written_before <= 3000.0 * 5.0,
        "the disk was stalled: {written_during} written, {written_before} before"
    );
    // ...but what was buffered before the stall was sent.
    let before: Vec<i64> = up_timestamps(&rx.accepted(), "app")
        .into_iter()
        .filter(|t| *t < stalled_at)
        .collect();
    assert!(
        before.len() >= 15,
        "the buffered scrapes were sent during the stall: {}",
        before.len()
    );

    // Once the stall ends, new scrapes are written and delivered again.
    let stall_ends = stalled_at + STALL.as_millis() as i64;
    rx.wait_until(WAIT, "a scrape after the stall", |r| {
        up_timestamps(&r.accepted(), "app")
            .iter()
            .any(|t| *t > stall_ends + 500)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    agent.agent.shutdown().await;
}
