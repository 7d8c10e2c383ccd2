//! The `scrapelet` command: flags, config, signals. Everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use scrapelet::agent::{Agent, Options};
use scrapelet::config;
use scrapelet::telemetry::error_chain;
use scrapelet::telemetry::log::{self, LogFormat};

/// A node-local Prometheus scrape agent for Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "scrapelet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// The config file (Prometheus YAML).
    #[arg(long, visible_alias = "config.file", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where the web server (/metrics, /-/ready, /api/v1/targets) listens.
    #[arg(
        long,
        visible_alias = "web.listen-address",
        default_value = "0.0.0.0:9464",
        value_name = "ADDR"
    )]
    listen_address: SocketAddr,

    /// Serve `POST /-/reload` (as Prometheus; without it 403). SIGHUP and a changed config
    /// file reload without it.
    #[arg(long = "web.enable-lifecycle")]
    web_enable_lifecycle: bool,

    /// TLS, basic auth and response headers of the web server: a web config file in the
    /// format of Prometheus's exporter-toolkit. A bad file stops start-up.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,

    /// Connections the web server holds at once; at the cap the longest-idle one is closed
    /// to make room. 0: no cap.
    #[arg(long = "web.max-connections", default_value_t = 512, value_name = "N")]
    web_max_connections: usize,

    /// How long a client may take to send a request head (a new connection: its TLS
    /// handshake and first request) or a request body. 0s: no limit.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    web_read_header_timeout: Duration,

    /// Web connections without a request for this long are closed. 0s: never.
    #[arg(long = "web.idle-timeout", default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    web_idle_timeout: Duration,

    /// Where the agent keeps its state.
    #[arg(long, default_value = "data", value_name = "DIR")]
    data_dir: PathBuf,

    /// Log format.
    #[arg(long, value_enum, default_value = "logfmt")]
    log_format: LogFormat,

    /// Log level or filter (e.g. `info`, `debug`, `info,scrapelet::scrape=debug`).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,

    /// Also log a summary of what is sent to the remote endpoints.
    #[arg(long)]
    debug_output: bool,

    /// How long shutdown may spend flushing to remote endpoints.
    #[arg(long, default_value = "25s", value_parser = parse_seconds, value_name = "DURATION")]
    shutdown_grace: Duration,

    /// How often the config file is checked for changes (a change reloads it, as SIGHUP and
    /// `POST /-/reload` do); 0s turns it off.
    #[arg(long, visible_alias = "config.watch-interval", default_value = "10s", value_parser = parse_seconds, value_name = "DURATION")]
    config_watch_interval: Duration,

    /// This node's name: Kubernetes discovery watches only its pods.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validates a config file and exits non-zero with the reason when it is invalid.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Validates a web config file (`--web.config.file`) and the files it names.
    CheckWebConfig {
        /// The web config file.
        file: PathBuf,
    },
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let digits = s.strip_suffix('s').unwrap_or(s);
    digits
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{s:?} is not a whole number of seconds (e.g. 25s)"))
}

/// A Prometheus duration (`10s`, `2m`, `1m30s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file),
        Some(Command::CheckWebConfig { file }) => return check_web_config(file),
        None => {}
    }
    if let Err(e) = log::init(cli.log_format, &cli.log_level) {
        eprintln!("scrapelet: {e}");
        return ExitCode::from(2);
    }
    let Some(path) = cli.config.clone() else {
        eprintln!("scrapelet: --config <FILE> is required (try examples/scrapelet.yml)");
        return ExitCode::from(2);
    };
    // rustls with ring, once for the process (kube and hyper-rustls use the default provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scrapelet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli, path));
    // Bounded: a thread blocked in a file read that never returns (a reload's TLS file on a
    // FIFO or a hung mount, abandoned at shutdown) must not keep the process alive.
    runtime.shutdown_timeout(EXIT_BOUND);
    code
}

/// How long the exit waits for threads still blocked in file reads.
const EXIT_BOUND: Duration = Duration::from_secs(1);

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(cfg) => {
            println!(
                "{}: valid ({} scrape configs, {} remote_write endpoints)",
                file.display(),
                cfg.scrape_configs.len(),
                cfg.remote_write.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn check_web_config(file: &std::path::Path) -> ExitCode {
    match scrapelet::web::Security::load(file) {
        Ok(web) => {
            println!(
                "{}: valid (TLS {}, basic auth {})",
                file.display(),
                if web.tls() { "on" } else { "off" },
                if web.basic_auth() { "on" } else { "off" },
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, path: PathBuf) -> ExitCode {
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot load config");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        listen_address: cli.listen_address,
        data_dir: cli.data_dir,
        debug_output: cli.debug_output,
        shutdown_grace: cli.shutdown_grace,
        node_name: cli.node_name.filter(|n| !n.is_empty()),
        config_file: Some(path),
        config_watch_interval: cli.config_watch_interval,
        enable_lifecycle: cli.web_enable_lifecycle,
        web_limits: scrapelet::web::Limits {
            max_connections: cli.web_max_connections,
            header_read_timeout: cli.web_read_header_timeout,
            idle_timeout: cli.web_idle_timeout,
            ..scrapelet::web::Limits::default()
        },
        web_config_file: cli.web_config_file,
        ..Options::default()
    };
    // Installed before the agent starts: a signal during start-up is handled once it runs.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let agent = match Agent::start(config, options).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let signal = loop {
        match signals.next().await {
            Signal::Reload => {
                // Not waited for: SIGTERM is honoured while a reload runs. The outcome is
                // logged by the agent; a refused config keeps the running one.
                if !agent.request_reload() {
                    tracing::info!(
                        "SIGHUP: reloads are already queued; the last of them reads the file as it is then"
                    );
                }
            }
            Signal::Stop(name) => break name,
        }
    };
    tracing::info!(signal, "shutting down; a second signal exits at once");
    tokio::select! {
        _ = agent.shutdown() => ExitCode::SUCCESS,
        second = signals.next_stop() => {
            tracing::warn!(signal = second, "second signal; exiting without finishing shutdown");
            ExitCode::from(130)
        }
    }
}

/// The process's signals, installed once so that none is missed between waits.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

enum Signal {
    /// SIGHUP.
    Reload,
    /// SIGTERM or SIGINT, by name.
    Stop(&'static str),
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }

    /// The next SIGTERM or SIGINT (SIGHUP ignored).
    async fn next_stop(&mut self) -> &'static str {
        loop {
            if let Signal::Stop(name) = self.next().await {
                return name;
            }
        }
    }
}
