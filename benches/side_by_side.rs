//! Side by side: CPU, memory, disk and delivery latency per sample of scrapelet, Prometheus in
//! agent mode and vmagent on the same workloads, from one run. Prints figures; asserts nothing.
//!
//! `cargo bench --bench side_by_side [-- --sizes 100k,400k,1m --values mixed --warmup 2
//! --window 60 --node-exporter --agents scrapelet,prometheus,vmagent]`
//!
//! For every size (`--sizes`; or one custom size from `--targets`, `--series`, `--interval`)
//! the bench serves the size's synthetic targets on 127.0.0.1, each one replica of a web
//! service whose values move on every scrape (benches/support/app.rs; with `--values mixed`,
//! the default, half of its series are random gauges), plus, with `--node-exporter`, the real
//! `prometheus-node-exporter`. Then, one agent at a time (so they never compete for the
//! cores), it starts the agent with its own temporary data directory and its own fast
//! remote-write receiver (which decodes every request, counts its samples and records each
//! one's delivery latency), waits for the first delivery, lets it warm up for `--warmup` scrape
//! intervals, and measures a window of `--window` seconds (at least 4 scrape intervals):
//! - samples the receiver got in the window, and the expected number;
//! - CPU seconds of the whole process (utime + stime of /proc/PID/stat, end minus start);
//! - peak RSS (VmHWM at the end: the process's whole life, start-up and first scrapes
//!   included) and average RSS (VmRSS every 250 ms in the window), and RSS per active series;
//! - bytes the process asked the device to write (`write_bytes` of /proc/PID/io) in the
//!   window, per delivered sample;
//! - delivery latency p50 and p99: receiver arrival time minus sample timestamp.
//!
//! Sizes: `100k` = 100 targets x 1000 series every 5 s, `400k` = 200 x 2000 every 10 s,
//! `1m` = 500 x 2000 every 30 s (two cores cannot scrape a million series every 10 s with
//! every agent and the bench's own targets on them).
//!
//! All agents scrape with the same interval and timeout. scrapelet and Prometheus read the
//! same config file, whose `queue_config` spells out today's Prometheus defaults (10000
//! capacity, 50 shards, 2000 samples a request, 5 s deadline) since 2.42's are older; vmagent
//! reads the same scrape configs and runs on its own queue defaults. The scrapelet binary is
//! `$SCRAPELET_BIN` or the one cargo builds with the bench; the peers are `prometheus`
//! (2.x, `--enable-feature=agent`) and `vmagent` from PATH, skipped (with a line saying so)
//! when missing. Everything listens on 127.0.0.1; every child is killed when its run ends,
//! when the bench panics or on Ctrl-C.

#[path = "support/app.rs"]
mod app;
#[path = "support/http.rs"]
mod http_support;
#[path = "support/procs.rs"]
mod procs;
#[path = "support/rng.rs"]
mod rng;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use http_support::{Latency, Sink, get_text, serve_text};
use procs::{
    Cpu, Killed, anon_rss_kib, cpu, free_port, load_average, log_tail, on_path, peak_rss_kib,
    prometheus_agent, rss_kib, scrapelet, spawn, write_bytes,
};

/// Below this share of the expected samples, a run is flagged.
const LOW_DELIVERY: f64 = 0.75;
/// How long an agent may take to deliver its first samples.
const FIRST_DELIVERY_WAIT: Duration = Duration::from_secs(180);
/// Series every scrape adds per target (`up`, `scrape_duration_seconds`,
/// `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`, `scrape_series_added`).
const AUTO_SERIES: u64 = 5;
/// The window covers at least this many scrape intervals.
const MIN_WINDOW_ROUNDS: u64 = 4;

#[derive(Parser, Debug)]
#[command(about = "scrapelet, Prometheus agent and vmagent side by side")]
struct Args {
    /// Sizes to run, in order: `100k`, `400k`, `1m` (see the bench's docs). Without it, one
    /// size made of `--targets`, `--series` and `--interval`.
    #[arg(long, value_enum, value_delimiter = ',')]
    sizes: Vec<SizeName>,
    /// Synthetic targets (without `--sizes`).
    #[arg(long, default_value_t = 50)]
    targets: usize,
    /// Series a synthetic target serves, rounded up to whole units (without `--sizes`).
    #[arg(long, default_value_t = 2000)]
    series: usize,
    /// Scrape interval in seconds; the timeout is four fifths of it (without `--sizes`).
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// What the values look like: `smooth` (counters, histograms, slow gauges) or `mixed`
    /// (half of the series random gauges).
    #[arg(long, value_enum, default_value_t = app::Values::Mixed)]
    values: app::Values,
    /// Scrape intervals of warm-up after the first delivery, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds measured per agent (at least 4 scrape intervals are).
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Also scrape a real prometheus-node-exporter.
    #[arg(long)]
    node_exporter: bool,
    /// After the window, take the receiver down for this many seconds, bring it back, and
    /// measure the catch-up: how long until delivery is back to the live rate, the CPU it
    /// took and the peak RSS over outage and replay.
    #[arg(long, default_value_t = 0)]
    outage: u64,
    /// Agents to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Agent::Scrapelet, Agent::Prometheus, Agent::Vmagent])]
    agents: Vec<Agent>,
    /// Instead of measuring: serve the (first) size's targets and one receiver, write
    /// scrapelet's config to this file, print the receiver's counts every interval and wait
    /// for Ctrl-C, so that an agent can be run by hand (under perf, heaptrack, massif)
    /// against the same workload.
    #[arg(long, value_name = "CONFIG_FILE")]
    hold: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Agent {
    Scrapelet,
    Prometheus,
    Vmagent,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SizeName {
    #[value(name = "100k")]
    K100,
    #[value(name = "400k")]
    K400,
    #[value(name = "1m")]
    M1,
}

/// One workload size.
#[derive(Clone, Copy, Debug)]
struct Size {
    targets: usize,
    series: usize,
    interval: u64,
}

impl SizeName {
    fn size(self) -> Size {
        let (targets, series, interval) = match self {
            SizeName::K100 => (100, 1000, 5),
            SizeName::K400 => (200, 2000, 10),
            SizeName::M1 => (500, 2000, 30),
        };
        Size {
            targets,
            series,
            interval,
        }
    }
}

/// What every agent scrapes.
struct Workload {
    targets: Vec<SocketAddr>,
    /// Node exporter's port and process (its temporary directory lives in `_dir`).
    node_exporter: Option<(u16, Killed)>,
    /// Samples one round of scrapes yields, the agents' own series included.
    samples_per_round: u64,
    /// Active series (the same as `samples_per_round`: one sample per series a round).
    series: u64,
    interval: u64,
    _dir: tempfile::TempDir,
}

/// One agent's figures on one size.
struct Measured {
    agent: Agent,
    version: String,
    series: u64,
    samples: u64,
    expected: u64,
    requests: u64,
    window: Duration,
    cpu: Cpu,
    peak_kib: u64,
    avg_kib: u64,
    /// Average of `RssAnon`: RSS without file pages (mapped segments, binary text).
    avg_anon_kib: u64,
    /// `write_bytes` in the window.
    disk_bytes: u64,
    /// Delivery latency in seconds (p50, p99) of the samples delivered in the window.
    latency: (Option<f64>, Option<f64>),
    /// The machine's load average at the end of the window (other work competing).
    load: f64,
    /// With `--outage`: how it went.
    outage: Option<Outage>,
}

/// An outage of the receiver and the catch-up after it.
struct Outage {
    seconds: u64,
    /// Samples delivered from the end of the outage until caught up.
    replayed: u64,
    /// From the end of the outage until delivery was back to the live rate.
    catch_up: Duration,
    cpu: Cpu,
    /// VmHWM before the outage, and after the catch-up.
    peak_before_kib: u64,
    peak_after_kib: u64,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::select! {
            () = run(&args) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted; stopping the children"),
        }
    });
}

async fn run(args: &Args) {
    let sizes: Vec<Size> = if args.sizes.is_empty() {
        vec![Size {
            targets: args.targets,
            series: args.series,
            interval: args.interval.max(1),
        }]
    } else {
        args.sizes.iter().map(|s| s.size()).collect()
    };
    if let Some(path) = &args.hold {
        let workload = workload(args, sizes[0]).await;
        hold(&workload, path).await;
        return;
    }
    let mut results = Vec::new();
    for size in sizes {
        let workload = workload(args, size).await;
        let window = args.window.max(MIN_WINDOW_ROUNDS * size.interval);
        println!(
            "workload: {} targets x {} series ({:?} values){}, scrape every {} s, {} active series; per agent: first delivery, {} s warm-up, {} s measured",
            size.targets,
            size.series.div_ceil(app::unit_series(args.values)) * app::unit_series(args.values),
            args.values,
            if workload.node_exporter.is_some() {
                " + node exporter"
            } else {
                ""
            },
            size.interval,
            workload.series,
            args.warmup * size.interval,
            window,
        );
        for &agent in &args.agents {
            let Some(program) = program(agent) else {
                println!("{agent:?}: skipped (binary not found on PATH / SCRAPELET_BIN)");
                continue;
            };
            match measure(agent, &program, &workload, args, window).await {
                Ok(m) => {
                    println!(
                        "{agent:?}: {} samples in {:.1} s, {:.2} CPU s ({:.2} user, {:.2} system), peak RSS {} MiB, {:.2} disk bytes/sample, p99 {:.2} s, machine load {:.2}",
                        m.samples,
                        m.window.as_secs_f64(),
                        m.cpu.total(),
                        m.cpu.user,
                        m.cpu.system,
                        m.peak_kib / 1024,
                        m.disk_bytes as f64 / m.samples.max(1) as f64,
                        m.latency.1.unwrap_or(f64::NAN),
                        m.load
                    );
                    results.push(m);
                }
                Err(why) => println!("{agent:?}: failed: {why}"),
            }
        }
    }
    println!();
    print!("{}", table(&results));
}

/// Serves the workload and a receiver until interrupted, with the config for them in `path`.
async fn hold(workload: &Workload, path: &Path) {
    let sink = Sink::start(true).await;
    std::fs::write(path, config(workload, Some(&sink.url()))).expect("config file");
    println!(
        "holding: config in {}; {} samples a round expected; Ctrl-C stops",
        path.display(),
        workload.samples_per_round
    );
    let mut last = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_secs(workload.interval.max(1))).await;
        let now = (sink.counts.samples(), sink.counts.requests());
        println!(
            "receiver: {} samples, {} requests since the last line",
            now.0 - last.0,
            now.1 - last.1
        );
        last = now;
    }
}

/// Starts the targets (and node exporter) every agent will scrape.
async fn workload(args: &Args, size: Size) -> Workload {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut targets = Vec::with_capacity(size.targets);
    let mut samples_per_round = 0;
    for t in 0..size.targets {
        let mut replica = app::App::with_values(
            size.series,
            0x9e37_79b9_7f4a_7c15 ^ (t as u64) << 20,
            args.values,
        );
        samples_per_round += replica.series() as u64 + AUTO_SERIES;
        targets.push(serve_text(move || replica.scrape()).await);
    }
    let mut node_exporter = None;
    if args.node_exporter {
        if on_path("prometheus-node-exporter") {
            let textfiles = dir.path().join("textfile");
            std::fs::create_dir_all(&textfiles).expect("textfile dir");
            let port = free_port();
            let child = spawn(
                Command::new("prometheus-node-exporter")
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg(format!(
                        "--collector.textfile.directory={}",
                        textfiles.display()
                    )),
                &dir.path().join("node-exporter.log"),
            );
            let series = node_exporter_series(port).await;
            println!("node exporter: {series} series");
            samples_per_round += series + AUTO_SERIES;
            node_exporter = Some((port, child));
        } else {
            println!("node exporter: skipped (prometheus-node-exporter not on PATH)");
        }
    }
    Workload {
        targets,
        node_exporter,
        samples_per_round,
        series: samples_per_round,
        interval: size.interval,
        _dir: dir,
    }
}

/// Sample lines node exporter serves, once it answers (0 if it never does within 10 s).
async fn node_exporter_series(port: u16) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(text) = get_text(port, "/metrics").await {
            return text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count() as u64;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    0
}

/// The agent's binary, if there is one.
fn program(agent: Agent) -> Option<PathBuf> {
    match agent {
        Agent::Scrapelet => {
            let path = std::env::var_os("SCRAPELET_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scrapelet")));
            path.is_file().then_some(path)
        }
        Agent::Prometheus => on_path("prometheus").then(|| PathBuf::from("prometheus")),
        Agent::Vmagent => on_path("vmagent").then(|| PathBuf::from("vmagent")),
    }
}

/// The scrape configs every agent reads; with `remote_write`, the remote-write section too.
fn config(workload: &Workload, remote_write: Option<&str>) -> String {
    let interval = workload.interval.max(1);
    let timeout_ms = interval * 800;
    let targets: Vec<String> = workload.targets.iter().map(|a| format!("'{a}'")).collect();
    let mut out = format!(
        "global:\n  scrape_interval: {interval}s\n  scrape_timeout: {timeout_ms}ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    if let Some((port, _)) = &workload.node_exporter {
        let _ = write!(
            out,
            "  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        );
    }
    if let Some(url) = remote_write {
        let _ = write!(
            out,
            "remote_write:\n  - url: {url}\n    name: sink\n    queue_config:\n      capacity: 10000\n      max_shards: 50\n      max_samples_per_send: 2000\n      batch_send_deadline: 5s\n"
        );
    }
    out
}

/// Runs one agent against the workload and measures it over `window` seconds.
async fn measure(
    agent: Agent,
    program: &Path,
    workload: &Workload,
    args: &Args,
    window: u64,
) -> Result<Measured, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let sink = Sink::start(true).await;
    let port = free_port();
    let data = dir.path().join("data");
    let config_path = dir.path().join("config.yml");
    let remote_write = (agent != Agent::Vmagent).then(|| sink.url());
    std::fs::write(&config_path, config(workload, remote_write.as_deref()))
        .map_err(|e| format!("config: {e}"))?;
    let mut cmd = match agent {
        Agent::Scrapelet => scrapelet(program, &config_path, &data, port),
        Agent::Prometheus => prometheus_agent(&config_path, &data, port),
        Agent::Vmagent => {
            let mut cmd = Command::new(program);
            cmd.arg(format!("-promscrape.config={}", config_path.display()))
                .arg(format!("-remoteWrite.url={}", sink.url()))
                .arg(format!("-remoteWrite.tmpDataPath={}", data.display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"));
            cmd
        }
    };
    let log = dir.path().join("agent.log");
    let mut child = spawn(&mut cmd, &log);
    let pid = child.pid();
    let failed = |child: &mut Killed, what: &str| {
        let state = if child.running() { "running" } else { "exited" };
        format!("{what} ({state}); log tail:\n{}", log_tail(&log, 15))
    };

    // Up and delivering, then warm: every series seen, queues sized, caches full.
    let deadline = Instant::now() + FIRST_DELIVERY_WAIT;
    while sink.counts.samples() == 0 {
        if Instant::now() > deadline || !child.running() {
            return Err(failed(&mut child, "no samples delivered"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup * workload.interval)).await;

    let cpu0 = cpu(pid).ok_or_else(|| failed(&mut child, "gone before the window"))?;
    let disk0 = write_bytes(pid).ok_or_else(|| failed(&mut child, "no /proc/PID/io"))?;
    let samples0 = sink.counts.samples();
    let requests0 = sink.counts.requests();
    let latency0 = sink.counts.latency.snapshot();
    let undecodable0 = sink
        .counts
        .undecodable
        .load(std::sync::atomic::Ordering::Relaxed);
    let began = Instant::now();
    let end = began + Duration::from_secs(window);
    let (mut rss_sum, mut anon_sum, mut rss_n) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        if !child.running() {
            return Err(failed(&mut child, "exited during the window"));
        }
        rss_sum += rss_kib(pid);
        anon_sum += anon_rss_kib(pid);
        rss_n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cpu1 = cpu(pid).ok_or_else(|| failed(&mut child, "gone in the window"))?;
    let disk1 = write_bytes(pid).ok_or_else(|| failed(&mut child, "gone in the window"))?;
    let window = began.elapsed();
    let samples = sink.counts.samples() - samples0;
    let requests = sink.counts.requests() - requests0;
    let latency1 = sink.counts.latency.snapshot();
    let undecodable = sink
        .counts
        .undecodable
        .load(std::sync::atomic::Ordering::Relaxed)
        - undecodable0;
    let peak_kib = peak_rss_kib(pid);
    let load = load_average();
    let version = version(agent, program);
    let outage = if args.outage > 0 {
        Some(outage(&sink, pid, workload, args.outage).await?)
    } else {
        None
    };
    drop(child);

    let expected = (workload.samples_per_round as f64 * window.as_secs_f64()
        / workload.interval as f64) as u64;
    if (samples as f64) < LOW_DELIVERY * expected as f64 {
        println!(
            "warning: {agent:?} delivered {samples} samples, {:.0}% of the {expected} expected",
            100.0 * samples as f64 / expected.max(1) as f64
        );
    }
    if undecodable > 0 {
        println!("warning: {agent:?} sent {undecodable} requests the receiver could not decode");
    }
    Ok(Measured {
        agent,
        version,
        series: workload.series,
        samples,
        expected,
        requests,
        window,
        cpu: cpu1.since(cpu0),
        peak_kib,
        avg_kib: rss_sum / rss_n.max(1),
        avg_anon_kib: anon_sum / rss_n.max(1),
        disk_bytes: disk1.saturating_sub(disk0),
        outage,
        latency: (
            Latency::quantile(&latency0, &latency1, 0.5),
            Latency::quantile(&latency0, &latency1, 0.99),
        ),
        load,
    })
}

/// Takes the receiver down for `seconds`, then measures the catch-up (see `Outage`).
async fn outage(
    sink: &Sink,
    pid: u32,
    workload: &Workload,
    seconds: u64,
) -> Result<Outage, String> {
    let peak_before_kib = peak_rss_kib(pid);
    let began = Instant::now();
    let received0 = sink.counts.samples();
    sink.counts
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    sink.counts
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let recovered = Instant::now();
    let cpu0 = cpu(pid).ok_or("gone during the outage")?;
    let at_recovery = sink.counts.samples();
    // Caught up: everything scraped since the outage began has arrived (95% of the rounds,
    // as rounds straddle the edges).
    let rate = workload.samples_per_round as f64 / workload.interval as f64;
    let deadline = recovered + Duration::from_secs(60 + 20 * seconds);
    loop {
        let expected = rate * began.elapsed().as_secs_f64();
        if (sink.counts.samples() - received0) as f64 >= 0.95 * expected {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not caught up {} s after a {seconds} s outage",
                recovered.elapsed().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up = recovered.elapsed();
    let cpu1 = cpu(pid).ok_or("gone during the catch-up")?;
    Ok(Outage {
        seconds,
        replayed: sink.counts.samples() - at_recovery,
        catch_up,
        cpu: cpu1.since(cpu0),
        peak_before_kib,
        peak_after_kib: peak_rss_kib(pid),
    })
}

/// The version the agent's binary prints (`--version`, vmagent's `-version`); Debian's vmagent
/// is built without one.
fn version(agent: Agent, program: &Path) -> String {
    let flag = if agent == Agent::Vmagent {
        "-version"
    } else {
        "--version"
    };
    let out = Command::new(program)
        .arg(flag)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let first = out.lines().next().unwrap_or_default();
    // "prometheus, version 2.42.0+ds (branch: ...)", "scrapelet 0.1.0".
    let version = match first.split_once("version ") {
        Some((_, rest)) => rest.split_whitespace().next(),
        None => first.split_whitespace().last(),
    };
    version.unwrap_or("unknown").to_owned()
}

/// The figures as markdown tables: per size and agent; scrapelet over each peer per size;
/// and the RSS slope per added series between sizes.
fn table(results: &[Measured]) -> String {
    let mut out = String::new();
    out.push_str("| series | agent | version | samples delivered (expected) | requests | CPU s | CPU s / M samples | peak RSS MiB | avg RSS MiB | avg anon RSS MiB | RSS bytes / series | disk bytes / sample | latency p50 / p99 s | load |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let fmt_s = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for m in results {
        let _ = writeln!(
            out,
            "| {} | {:?} | {} | {} ({}) | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {} / {} | {:.2} |",
            m.series,
            m.agent,
            m.version,
            m.samples,
            m.expected,
            m.requests,
            m.cpu.total(),
            per_million(m),
            m.peak_kib as f64 / 1024.0,
            m.avg_kib as f64 / 1024.0,
            m.avg_anon_kib as f64 / 1024.0,
            m.avg_kib as f64 * 1024.0 / m.series.max(1) as f64,
            disk_per_sample(m),
            fmt_s(m.latency.0),
            fmt_s(m.latency.1),
            m.load,
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    out.push_str("\n| series | scrapelet / peer | samples | CPU s / M samples | peak RSS | avg RSS | disk bytes / sample | latency p99 (difference, s) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for base in results.iter().filter(|m| m.agent == Agent::Scrapelet) {
        for m in results
            .iter()
            .filter(|m| m.agent != Agent::Scrapelet && m.series == base.series)
        {
            let _ = writeln!(
                out,
                "| {} | {:?} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                base.series,
                m.agent,
                ratio(base.samples as f64, m.samples as f64),
                ratio(per_million(base), per_million(m)),
                ratio(base.peak_kib as f64, m.peak_kib as f64),
                ratio(base.avg_kib as f64, m.avg_kib as f64),
                ratio(disk_per_sample(base), disk_per_sample(m)),
                match (base.latency.1, m.latency.1) {
                    (Some(a), Some(b)) => format!("{:+.2}", a - b),
                    _ => "-".to_owned(),
                },
            );
        }
    }
    // The RSS slope: bytes each added series costs, between the smallest and largest size.
    let mut slopes = String::new();
    for agent in [Agent::Scrapelet, Agent::Prometheus, Agent::Vmagent] {
        let runs: Vec<&Measured> = results.iter().filter(|m| m.agent == agent).collect();
        let (Some(lo), Some(hi)) = (
            runs.iter().min_by_key(|m| m.series),
            runs.iter().max_by_key(|m| m.series),
        ) else {
            continue;
        };
        if hi.series <= lo.series {
            continue;
        }
        let added = (hi.series - lo.series) as f64;
        let _ = writeln!(
            slopes,
            "| {:?} | {} -> {} | {:.0} | {:.0} |",
            agent,
            lo.series,
            hi.series,
            (hi.avg_kib as f64 - lo.avg_kib as f64) * 1024.0 / added,
            (hi.peak_kib as f64 - lo.peak_kib as f64) * 1024.0 / added,
        );
    }
    if !slopes.is_empty() {
        out.push_str("\n| agent | series | avg RSS bytes per added series | peak RSS bytes per added series |\n");
        out.push_str("|---|---|---|---|\n");
        out.push_str(&slopes);
    }
    let outages: Vec<(&Measured, &Outage)> = results
        .iter()
        .filter_map(|m| Some((m, m.outage.as_ref()?)))
        .collect();
    if !outages.is_empty() {
        out.push_str("\n| series | agent | outage s | replayed samples | catch-up s | CPU s in catch-up | peak RSS MiB before | peak RSS MiB after outage and replay |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for (m, o) in outages {
            let _ = writeln!(
                out,
                "| {} | {:?} | {} | {} | {:.1} | {:.2} | {:.1} | {:.1} |",
                m.series,
                m.agent,
                o.seconds,
                o.replayed,
                o.catch_up.as_secs_f64(),
                o.cpu.total(),
                o.peak_before_kib as f64 / 1024.0,
                o.peak_after_kib as f64 / 1024.0,
            );
        }
    }
    out
}

fn per_million(m: &Measured) -> f64 {
    m.cpu.total() / (m.samples as f64 / 1e6).max(1e-9)
}

fn disk_per_sample(m: &Measured) -> f64 {
    m.disk_bytes as f64 / m.samples.max(1) as f64
}
