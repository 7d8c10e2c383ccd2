//! Process metrics for the agent's own `/metrics`, read from `/proc/self` on every scrape,
//! under the names Prometheus's client_golang uses, so dashboards and alerts written for any
//! Prometheus exporter work unchanged:
//!
//! | metric | source |
//! | --- | --- |
//! | `process_cpu_seconds_total` | `/proc/self/stat` utime + stime, in USER_HZ ticks |
//! | `process_resident_memory_bytes` | `/proc/self/status` `VmRSS` |
//! | `process_virtual_memory_bytes` | `/proc/self/stat` vsize |
//! | `process_open_fds` | entries of `/proc/self/fd` |
//! | `process_max_fds` | `/proc/self/limits` "Max open files", soft limit |
//! | `process_start_time_seconds` | `/proc/self/stat` starttime + `/proc/stat` btime |
//! | `process_threads` | `/proc/self/stat` num_threads |
//!
//! Invariants:
//! 1. A file that cannot be read or parsed (not Linux, a locked-down `/proc`) omits the
//!    metrics it feeds; it never fails the scrape of `/metrics` and never panics.
//! 2. Nothing is cached: every value is as fresh as the scrape.
//! 3. Clock ticks are USER_HZ = 100, the fixed unit of `/proc`'s interfaces on Linux (as
//!    client_golang's procfs assumes), so no libc call is needed.

use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Collects the `process_*` metrics of the current process.
#[derive(Debug, Default)]
pub struct ProcessCollector {
    _private: (),
}

/// What `/proc/self/stat` tells.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    /// User plus system CPU time, seconds.
    cpu_seconds: f64,
    threads: i64,
    /// Since boot, seconds.
    start_after_boot_seconds: f64,
    virtual_memory_bytes: f64,
}

/// `/proc`'s clock tick (USER_HZ), fixed at 100 for user space on Linux.
const USER_HZ: f64 = 100.0;

impl ProcessCollector {
    /// A collector for the current process; register it with
    /// `registry.register_collector(Box::new(ProcessCollector::new()))`.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let proc_self = Path::new("/proc/self");
        let stat = read(&proc_self.join("stat")).and_then(|t| parse_stat(&t));
        let boot = read(Path::new("/proc/stat")).and_then(|t| parse_btime(&t));
        if let Some(stat) = stat {
            // Counters get their `_total` suffix from the encoder.
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.virtual_memory_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                stat.threads as f64,
            )?;
            if let Some(boot) = boot {
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    boot + stat.start_after_boot_seconds,
                )?;
            }
        }
        if let Some(rss) = read(&proc_self.join("status")).and_then(|t| parse_rss_bytes(&t)) {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
        }
        if let Ok(entries) = std::fs::read_dir(proc_self.join("fd")) {
            // The directory handle itself is one of the entries; client_golang counts it too.
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                entries.count() as f64,
            )?;
        }
        if let Some(max) = read(&proc_self.join("limits")).and_then(|t| parse_max_fds(&t)) {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::debug!(path = %path.display(), err = %e, "cannot read; process metrics from it omitted");
            None
        }
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `fields[0]` is field 3 (state), so field n is `fields[n - 3]`.
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
        threads: fields.get(20 - 3)?.parse().ok()?,
        start_after_boot_seconds: field(22)? / USER_HZ,
        virtual_memory_bytes: field(23)?,
    })
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
fn parse_btime(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS:  2012 kB` of `/proc/<pid>/status`, in bytes.
fn parse_rss_bytes(text: &str) -> Option<f64> {
    let value = text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: f64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024.0)
}

/// The soft limit of "Max open files" in `/proc/<pid>/limits` (`unlimited` is omitted).
fn parse_max_fds(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let check = |text: &str, expected: Option<Stat>| assert_eq!(parse_stat(text), expected);
        let tail = "R 1 1 1 0 -1 4194304 102 0 0 0 250 150 0 0 20 0 7 0 504000 3133440 388 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = Some(Stat {
            cpu_seconds: 4.0,
            threads: 7,
            start_after_boot_seconds: 5040.0,
            virtual_memory_bytes: 3_133_440.0,
        });
        check(&format!("25554 (scrapelet) {tail}"), stat);
        check(&format!("25554 (a) b (c)) {tail}"), stat);
        check(&format!("25554 (a b) {tail}\n"), stat);
        check("25554 (scrapelet) R 1 1", None);
        check("garbage", None);
        check(&format!("1 (x) {}", tail.replace("250", "x")), None);
    }

    #[test]
    fn status_limits_and_boot_time() {
        assert_eq!(
            parse_rss_bytes("Name:\tx\nVmRSS:\t    2012 kB\nVmData: 1 kB\n"),
            Some(2012.0 * 1024.0)
        );
        assert_eq!(parse_rss_bytes("Name:\tx\n"), None);
        assert_eq!(parse_rss_bytes("VmRSS:\t2012 MB\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(parse_max_fds(limits), Some(20000.0));
        assert_eq!(
            parse_max_fds("Max open files            unlimited            unlimited    files\n"),
            None
        );
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1795305287\nprocesses 9\n"),
            Some(1_795_305_287.0)
        );
        assert_eq!(parse_btime("cpu  1 2 3\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_current_process_is_described() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.split(' ').next() == Some(name))
                .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect(name)
        };
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
        // The CPU counter follows the work done: burn CPU until a fresh read shows more (in
        // USER_HZ ticks, 10 ms), or fail at the deadline.
        let before = value("process_cpu_seconds_total");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        let after = loop {
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            let mut again = String::new();
            prometheus_client::encoding::text::encode(&mut again, &registry).expect("encode");
            let now: f64 = again
                .lines()
                .find(|l| l.starts_with("process_cpu_seconds_total "))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .expect("process_cpu_seconds_total");
            if now > before || std::time::Instant::now() > deadline {
                break now;
            }
        };
        assert!(
            after > before,
            "CPU seconds stayed at {before} while the test burned CPU"
        );
        assert!(value("process_resident_memory_bytes") > 1024.0 * 1024.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start > now - 86400.0 * 365.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
