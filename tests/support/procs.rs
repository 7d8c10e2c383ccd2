//! External programs for the end-to-end tests: the built `scrapelet` binary, Prometheus as a
//! remote-write receiver, VictoriaMetrics, and node exporter, each on 127.0.0.1 with its own
//! temporary directory.
//!
//! Invariants:
//! 1. Every child is owned by a [`Proc`]; dropping it (also while a test panics) kills the
//!    child and reaps it, so no test leaves a process behind.
//! 2. A child's stdout and stderr go to one log file in its directory; [`Proc::log`] reads it
//!    at any time, and a panic while waiting prints its tail.
//! 3. Ports come from [`free_port`] (bind 127.0.0.1:0, close); a server that finds its port
//!    taken before it is ready is started again on another one.
//! 4. Every wait polls with a deadline; nothing sleeps to synchronise.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long a server may take to become ready.
pub const READY_WAIT: Duration = Duration::from_secs(30);

/// Times a server is started on a fresh port when its port was taken.
const PORT_ATTEMPTS: usize = 5;

/// A child process that is killed and reaped when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A label set as a sorted map (what Prometheus's APIs return).
pub type LabelMap = BTreeMap<String, String>;

/// Prometheus as a remote-write receiver (`--web.enable-remote-write-receiver`).
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A single-node VictoriaMetrics that can be killed and started again on the same port and
/// data directory.
pub struct VictoriaMetrics {
    proc: Option<Proc>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    starts: usize,
}

/// One series as VictoriaMetrics exports it.
#[derive(Clone, Debug)]
pub struct Exported {
    pub labels: LabelMap,
    pub timestamps_ms: Vec<i64>,
    pub values: Vec<f64>,
}

/// prometheus-node-exporter with a fixed, quick set of collectors.
pub struct NodeExporter {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// The built `scrapelet` binary, running with a config file in its own directory.
pub struct Scrapelet {
    pub proc: Proc,
    /// Where its web server listens (read from its start-up log line).
    pub listen: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log file handle: {e}"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of the log, for panic messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` (a name for kill(1), e.g. `TERM`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -s {signal} {} failed", self.name);
    }

    /// Waits until the process exits; panics with its log after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still running after {timeout:?}; log:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log holds a line for which `found` is true; returns that line.
    pub async fn wait_log_line(
        &mut self,
        timeout: Duration,
        what: &str,
        found: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| found(l)) {
                return line.to_owned();
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before logging {what}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not log {what} in {timeout:?}; log:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

/// GETs `url`: (status, body), or why there was no answer.
pub async fn try_get(url: &str) -> Result<(u16, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| format!("GET {url} timed out"))?
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {url}: body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes `s` for a URL query (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Waits until `url` answers 200; `Err` with the exit status if `proc` exited first.
async fn wait_ready(proc: &mut Proc, url: &str) -> Result<(), ExitStatus> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        if let Ok((200, _)) = try_get(url).await {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            return Err(status);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} not ready after {READY_WAIT:?}; log:\n{}",
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a server on fresh ports until one is ready at `ready_path`; `command(port)` builds
/// the command.
async fn start_on_free_port(
    name: &str,
    dir: &Path,
    ready_path: &str,
    command: impl Fn(u16) -> Command,
) -> (Proc, u16) {
    let log = dir.join(format!("{name}.log"));
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let mut proc = Proc::spawn(name, command(port), &log);
        match wait_ready(&mut proc, &format!("http://127.0.0.1:{port}{ready_path}")).await {
            Ok(()) => return (proc, port),
            Err(status) if proc.log().contains("address already in use") => {
                eprintln!("{name}: port {port} taken ({status}); trying another");
            }
            Err(status) => panic!("{name} exited ({status}); log:\n{}", proc.log_tail()),
        }
    }
    panic!("{name}: no free port after {PORT_ATTEMPTS} attempts");
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

impl Prometheus {
    /// Starts Prometheus with an empty config as a remote-write receiver; waits for /-/ready.
    pub async fn start() -> Prometheus {
        let dir = tempdir("e2e-prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "# receives remote write only\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let data = dir.path().join("data");
        let (proc, port) = start_on_free_port("prometheus", dir.path(), "/-/ready", |port| {
            let mut cmd = Command::new("prometheus");
            cmd.arg("--web.enable-remote-write-receiver")
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--config.file={}", config.display()));
            cmd
        })
        .await;
        Prometheus { proc, port, dir }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    /// GETs an API path and returns `data` of a successful answer.
    pub async fn api(&self, path_and_query: &str) -> Value {
        let url = format!("{}{path_and_query}", self.base());
        let (status, body) = try_get(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}; prometheus log:\n{}", self.proc.log_tail()));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {url}: {status}: not JSON ({e}): {body}"));
        assert!(
            status == 200 && json["status"] == "success",
            "GET {url}: {status}: {body}"
        );
        json["data"].clone()
    }

    /// An instant query at now: each result's labels and value.
    pub async fn query(&self, query: &str) -> Vec<(LabelMap, f64)> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(query)))
            .await;
        assert_eq!(data["resultType"], "vector", "{query}: {data}");
        results(&data)
            .iter()
            .map(|r| (labels(&r["metric"]), value(&r["value"][1])))
            .collect()
    }

    /// A query returning a range vector (`x[1m]`): each series' raw samples (ms, value).
    pub async fn query_samples(&self, query: &str) -> Vec<(LabelMap, Vec<(i64, f64)>)> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(query)))
            .await;
        assert_eq!(data["resultType"], "matrix", "{query}: {data}");
        matrix(&data)
    }

    /// A range query from `start` to `end` (seconds) every `step` seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Vec<(LabelMap, Vec<(i64, f64)>)> {
        let data = self
            .api(&format!(
                "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
                encode(query)
            ))
            .await;
        matrix(&data)
    }

    /// The label sets of the series matching `selector` in the last hour.
    pub async fn series(&self, selector: &str) -> Vec<LabelMap> {
        let now = now_secs();
        let data = self
            .api(&format!(
                "/api/v1/series?match[]={}&start={:.3}&end={:.3}",
                encode(selector),
                now - 3600.0,
                now + 60.0
            ))
            .await;
        data.as_array()
            .unwrap_or_else(|| panic!("series: not an array: {data}"))
            .iter()
            .map(labels)
            .collect()
    }

    /// Prometheus's own /metrics.
    pub async fn self_metrics(&self) -> String {
        let url = format!("{}/metrics", self.base());
        try_get(&url).await.unwrap_or_else(|e| panic!("{e}")).1
    }

    /// Panics if Prometheus refused anything scrapelet sent: complaints in its log, write
    /// requests answered other than 2xx, or samples its TSDB counted as out of order, out of
    /// bounds, too old or duplicate. Also requires that some writes succeeded.
    pub async fn assert_clean(&self) {
        let log = self.proc.log();
        for complaint in [
            "out of order",
            "Out of order",
            "duplicate sample",
            "out of bounds",
            "too old",
            "Error on ingesting",
            "level=error",
        ] {
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(complaint)).collect();
            assert!(
                lines.is_empty(),
                "prometheus logged {complaint:?}: {lines:#?}"
            );
        }
        let metrics = self.self_metrics().await;
        let mut ok = 0.0;
        for (name, labels, value) in super::samples_in_text(&metrics) {
            let is_write = labels.get("handler").map(String::as_str) == Some("/api/v1/write");
            if name == "prometheus_http_requests_total" && is_write {
                let code = labels.get("code").cloned().unwrap_or_default();
                if code.starts_with('2') {
                    ok += value;
                } else {
                    assert_eq!(value, 0.0, "prometheus answered {code} to writes");
                }
            }
            if [
                "prometheus_tsdb_out_of_order_samples_total",
                "prometheus_tsdb_out_of_bound_samples_total",
                "prometheus_tsdb_too_old_samples_total",
                "prometheus_tsdb_head_out_of_order_samples_appended_total",
            ]
            .contains(&name.as_str())
            {
                assert_eq!(value, 0.0, "{name}{labels:?}");
            }
        }
        assert!(ok > 0.0, "no successful write reached prometheus");
    }
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics; waits for /health.
    pub async fn start() -> VictoriaMetrics {
        let dir = tempdir("e2e-victoria-metrics");
        let data = dir.path().join("data");
        let (proc, port) = start_on_free_port("victoria-metrics", dir.path(), "/health", |port| {
            Self::command(port, &data)
        })
        .await;
        VictoriaMetrics {
            proc: Some(proc),
            port,
            dir,
            starts: 1,
        }
    }

    fn command(port: u16, data: &Path) -> Command {
        let mut cmd = Command::new("victoria-metrics");
        cmd.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-search.disableCache")
            .arg("-loggerLevel=WARN");
        cmd
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    /// Kills it (SIGKILL): it stops answering at once.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again on the same port and data directory; waits for /health. Retries while
    /// the port is still held (a killed process's socket can linger briefly).
    pub async fn restart(&mut self) {
        assert!(self.proc.is_none(), "restart of a running VictoriaMetrics");
        let data = self.dir.path().join("data");
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            self.starts += 1;
            let log = self
                .dir
                .path()
                .join(format!("victoria-metrics.{}.log", self.starts));
            let mut proc = Proc::spawn("victoria-metrics", Self::command(self.port, &data), &log);
            let url = format!("{}/health", self.base());
            match wait_ready(&mut proc, &url).await {
                Ok(()) => {
                    self.proc = Some(proc);
                    return;
                }
                Err(status) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "victoria-metrics did not restart on port {} ({status}); log:\n{}",
                    self.port,
                    proc.log_tail()
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes recently received samples searchable.
    pub async fn flush(&self) {
        let url = format!("{}/internal/force_flush", self.base());
        let (status, body) = try_get(&url).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "force_flush: {body}");
    }

    /// Raw samples of the series matching `selector` (`/api/v1/export`), after a flush.
    pub async fn export(&self, selector: &str) -> Vec<Exported> {
        self.flush().await;
        let url = format!("{}/api/v1/export?match[]={}", self.base(), encode(selector));
        let (status, body) = try_get(&url).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "export: {body}");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let json: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("export line not JSON ({e}): {line}"));
                Exported {
                    labels: labels(&json["metric"]),
                    timestamps_ms: json["timestamps"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default(),
                    values: json["values"]
                        .as_array()
                        .map(|a| a.iter().map(value).collect())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

impl NodeExporter {
    /// Collectors that are quick and give a stable set of series.
    pub const COLLECTORS: [&str; 7] = [
        "cpu", "loadavg", "meminfo", "stat", "time", "uname", "vmstat",
    ];

    /// Starts node exporter with [`Self::COLLECTORS`] only; waits for /metrics.
    pub async fn start() -> NodeExporter {
        let dir = tempdir("e2e-node-exporter");
        let (proc, port) = start_on_free_port("node-exporter", dir.path(), "/metrics", |port| {
            let mut cmd = Command::new("prometheus-node-exporter");
            cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--collector.disable-defaults")
                .arg("--log.level=warn");
            for c in Self::COLLECTORS {
                cmd.arg(format!("--collector.{c}"));
            }
            cmd
        })
        .await;
        NodeExporter { proc, port, dir }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One scrape of its /metrics, as text.
    pub async fn scrape(&self) -> String {
        let url = format!("http://{}/metrics", self.address());
        let (status, body) = try_get(&url).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200);
        body
    }
}

impl Scrapelet {
    /// The built binary.
    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_scrapelet")
    }

    /// Writes `config` to a file and runs `scrapelet --config <file>` with `args`, listening on
    /// 127.0.0.1:0, a temporary data directory and logfmt logs; waits for its start-up line.
    pub async fn start(config: &str, args: &[&str]) -> Scrapelet {
        let dir = tempdir("e2e-scrapelet");
        let file = dir.path().join("scrapelet.yml");
        std::fs::write(&file, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--config")
            .arg(&file)
            .args(["--listen-address", "127.0.0.1:0", "--log-format", "logfmt"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args);
        let mut proc = Proc::spawn("scrapelet", cmd, &dir.path().join("scrapelet.log"));
        let line = proc
            .wait_log_line(READY_WAIT, "its start-up line", |l| {
                l.contains("msg=\"scrapelet started\"")
            })
            .await;
        let listen = line
            .split(' ')
            .find_map(|field| field.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen address in {line:?}"));
        Scrapelet { proc, listen, dir }
    }

    /// The value of `name{labels}` in its /metrics.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let url = format!("http://{}/metrics", self.listen);
        let (_, text) = try_get(&url).await.unwrap_or_else(|e| panic!("{e}"));
        super::metric_in_text(&text, name, labels)
    }
}

/// The current time in seconds since the epoch.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn results(data: &Value) -> &[Value] {
    data["result"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no result array: {data}"))
}

fn matrix(data: &Value) -> Vec<(LabelMap, Vec<(i64, f64)>)> {
    results(data)
        .iter()
        .map(|r| {
            let points = r["values"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            let secs = p[0].as_f64().unwrap_or(f64::NAN);
                            ((secs * 1000.0).round() as i64, value(&p[1]))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (labels(&r["metric"]), points)
        })
        .collect()
}

fn labels(v: &Value) -> LabelMap {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A sample value as the APIs write it: a JSON string (`"1.5"`, `"+Inf"`, `"NaN"`) or number.
fn value(v: &Value) -> f64 {
    if let Some(f) = v.as_f64() {
        return f;
    }
    match v.as_str().unwrap_or("") {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s
            .parse()
            .unwrap_or_else(|e| panic!("not a sample value {s:?}: {e}")),
    }
}
