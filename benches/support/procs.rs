//! Child processes for the side-by-side benches, and what /proc says about them.
//!
//! Invariants: every child is owned by a [`Killed`], which kills and reaps it when dropped
//! (also while unwinding), so a bench leaves no process behind; a child's stdout and stderr go
//! to one log file; ports come from [`free_port`] on 127.0.0.1.
//!
//! Include with `#[path = "support/procs.rs"] mod procs;`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Killed {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether the child is still running (not exited, not reaped).
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with stdout and stderr going to `log`. Panics when it cannot start: a bench
/// has nothing to measure then.
pub fn spawn(cmd: &mut Command, log: &Path) -> Killed {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Killed(
        cmd.stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
    )
}

/// The scrapelet binary at `program` with `config`, its data in `data`, listening on
/// 127.0.0.1:`port`.
pub fn scrapelet(program: &Path, config: &Path, data: &Path, port: u16) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--listen-address")
        .arg(format!("127.0.0.1:{port}"));
    cmd
}

/// `prometheus` (2.x) in agent mode with `config`, its WAL in `data`, listening on
/// 127.0.0.1:`port`.
pub fn prometheus_agent(config: &Path, data: &Path, port: u16) -> Command {
    let mut cmd = Command::new("prometheus");
    cmd.arg("--enable-feature=agent")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.agent.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    cmd
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    Command::new("which")
        .arg(program)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Resident memory of `pid` in KiB (`VmRSS`); 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Anonymous resident memory of `pid` in KiB (`RssAnon`: heap and stacks, not file pages a
/// reader maps); 0 when it is gone.
pub fn anon_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

/// Peak resident memory of `pid` in KiB (`VmHWM`); 0 when it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes `pid` caused to be sent to the storage layer so far (`write_bytes` of
/// /proc/PID/io: what the device is asked to write, page-cache writeback included); `None`
/// when it is gone or the file cannot be read.
pub fn write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU time a process has used, all threads, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: f64,
    pub system: f64,
}

impl Cpu {
    pub fn total(self) -> f64 {
        self.user + self.system
    }

    /// The time used since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// CPU time `pid` has used so far, all threads (`utime` and `stime` of /proc/PID/stat);
/// `None` when it is gone.
pub fn cpu(pid: u32) -> Option<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    // After it come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = clock_ticks() as f64;
    Some(Cpu {
        user: utime as f64 / ticks,
        system: stime as f64 / ticks,
    })
}

/// Clock ticks a second (`getconf CLK_TCK`; 100 when that fails, Linux's usual value).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The machine's 1-minute load average (/proc/loadavg), to tell a quiet run from a busy one.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The last `lines` lines of a log file, to show why a child failed.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
