//! Running the built `scrapelet` binary (for crash tests: `kill -9`, failpoints) and checking
//! what a receiver got the way Prometheus would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use super::receiver::ReceivedSample;
use super::target::{Exposition, Target};

/// A running `scrapelet` process.
pub struct Process {
    child: Child,
    pub addr: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Set once its stderr ended (everything it logged was read).
    logs_ended: Arc<AtomicBool>,
}

/// A process's log, readable after the [`Process`] is gone (e.g. consumed by `terminate`).
pub struct Logs {
    logs: Arc<Mutex<Vec<String>>>,
    ended: Arc<AtomicBool>,
}

impl Logs {
    /// Everything logged, once the process closed its stderr (it exited); panics if that
    /// takes longer than 10 s.
    pub fn text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ended.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "the process's stderr did not end"
            );
            #[expect(
                clippy::disallowed_methods,
                reason = "a synchronous poll with a deadline: the reader thread sets no signal to wait on"
            )]
            std::thread::sleep(Duration::from_millis(10));
        }
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

/// What a Prometheus receiver would have made of a stream of samples.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Samples that repeat a series' latest sample exactly (Prometheus accepts them silently).
    pub duplicates: usize,
    /// Samples older than their series' latest, or at its timestamp with another value
    /// (Prometheus answers "out of order" / "duplicate sample for timestamp").
    pub rejected: Vec<String>,
}

impl Process {
    /// Starts the binary with `config` (a file path) and `data_dir`, extra environment `env`;
    /// waits until it logs that it started (or exits).
    pub fn start(config: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Process {
        Self::start_args(config, data_dir, env, &[])
    }

    /// [`Process::start`] with extra command-line arguments.
    pub fn start_args(
        config: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scrapelet"));
        cmd.arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-address", "127.0.0.1:0", "--log-format", "logfmt"])
            .args(["--shutdown-grace", "5s"])
            .args(if args.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "info"][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .args(args)
            .env_remove("SCRAPELET_FAILPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run scrapelet: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let logs_ended = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            let ended = logs_ended.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("scrapelet started")
                        && let Some(addr) = field(&line, "listen")
                    {
                        let _ = tx.send(addr.parse::<SocketAddr>().ok());
                    }
                    logs.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
                ended.store(true, Ordering::Relaxed);
                let _ = tx.send(None);
            });
        }
        let addr = rx.recv_timeout(Duration::from_secs(20)).ok().flatten();
        Process {
            child,
            addr,
            logs,
            logs_ended,
        }
    }

    /// Its log, readable after the process is gone.
    pub fn log_handle(&self) -> Logs {
        Logs {
            logs: self.logs.clone(),
            ended: self.logs_ended.clone(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name for kill(1), e.g. `HUP`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// `http://addr`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr.expect("the process did not start"))
    }

    /// The value of a self-metric, if the process answers.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (_, text) = super::agent::get(&format!("{}/metrics", self.base())).await;
        super::metric_in_text(&text, name, labels)
    }

    /// Like [`Process::metric`], 0 when absent.
    pub async fn metric_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric(name, labels).await.unwrap_or(0.0)
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit; returns its status.
    pub fn terminate(mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(timeout)
    }

    /// Waits until the process exits on its own (a failpoint aborted it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "a synchronous poll with a deadline: std's Child has no wait with a timeout"
            )]
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A logfmt field's value (unquoted).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// Judges `samples` (in arrival order) as Prometheus's TSDB would: per series, a sample must
/// be newer than the latest, or repeat it exactly.
pub fn judge(samples: &[ReceivedSample]) -> Verdict {
    let mut latest: HashMap<&[(String, String)], (i64, u64)> = HashMap::new();
    let mut v = Verdict::default();
    for s in samples {
        let bits = s.value.to_bits();
        match latest.get(s.labels.as_slice()) {
            Some(&(t, b)) if s.timestamp_ms < t || (s.timestamp_ms == t && bits != b) => {
                v.rejected
                    .push(format!("{:?} @{} after @{t}", s.labels, s.timestamp_ms));
                continue;
            }
            Some(&(t, _)) if s.timestamp_ms == t => {
                v.duplicates += 1;
                continue;
            }
            _ => {}
        }
        latest.insert(s.labels.as_slice(), (s.timestamp_ms, bits));
    }
    v
}

/// Timestamps of the `up` samples of `job`, deduplicated and sorted.
pub fn up_timestamps(samples: &[ReceivedSample], job: &str) -> Vec<i64> {
    let mut ts: Vec<i64> = samples
        .iter()
        .filter(|s| s.name() == Some("up") && s.label("job") == Some(job))
        .map(|s| s.timestamp_ms)
        .collect();
    ts.sort_unstable();
    ts.dedup();
    ts
}

/// Writes `yaml` to `dir/scrapelet.yml`.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("scrapelet.yml");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("cannot write config: {e}"));
    path
}

/// An exposition of `series` series whose values change with `seed` (so records do not
/// compress to nothing and segments fill quickly).
pub fn churning_body(series: usize, seed: u64) -> String {
    let mut out = String::new();
    for i in 0..series as u64 {
        let v = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9))
            >> 11;
        out.push_str(&format!("churn_metric{{i=\"{i}\"}} {v}\n"));
    }
    out
}

/// A target of `series` series whose values change every few milliseconds, until the
/// returned flag is set.
pub async fn churning_target(series: usize) -> (Arc<Target>, Arc<AtomicBool>) {
    let target = Arc::new(Target::start(Exposition::text(&churning_body(series, 0))).await);
    let stop = Arc::new(AtomicBool::new(false));
    let t = target.clone();
    let flag = stop.clone();
    tokio::spawn(async move {
        let mut seed = 1;
        while !flag.load(Ordering::Relaxed) {
            t.set_body(&churning_body(series, seed));
            seed += 1;
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    });
    (target, stop)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A config scraping `target` every 100 ms into `endpoints` (name, receiver) with fast queue
/// settings and a buffer capped at `max_size`: the buffer tests' common set-up.
pub fn buffer_test_config(
    endpoints: &[(&str, &super::receiver::Receiver)],
    target: &str,
    max_size: &str,
) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 90ms\nagent:\n  buffer:\n    max_size: {max_size}\nremote_write:\n"
    );
    for (name, rx) in endpoints {
        yaml.push_str(&format!(
            "  - url: {}\n    name: {name}\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 10ms\n      max_backoff: 100ms\n",
            rx.url()
        ));
    }
    yaml.push_str(&format!(
        "scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
    ));
    yaml
}
