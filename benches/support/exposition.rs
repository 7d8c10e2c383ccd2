//! The realistic exposition the benches parse and scrape: generated deterministically (a
//! fixed-seed xorshift), HELP/TYPE lines, counters, gauges, 12-bucket histograms
//! (`_bucket`/`_sum`/`_count`), summaries, 4–6 labels a line, a few escaped values.
//!
//! Include with `#[path = "support/exposition.rs"] mod exposition;`.

#![allow(dead_code)]

/// Target size of the generated body.
pub const BODY_BYTES: usize = 5 * 1024 * 1024;

/// A small deterministic generator (xorshift64*), so every run parses the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "checkout",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const CODES: &[&str] = &["200", "201", "204", "400", "404", "500", "503"];
const HANDLERS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/-/healthy",
    "/metrics",
];
const LE: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const QUANTILES: &[&str] = &["0.5", "0.9", "0.99"];
/// Values with escapes, about one line in twenty.
const ESCAPED: &[&str] = &[
    r#"C:\\Program Files\\app"#,
    r#"say \"hello\""#,
    r#"first\nsecond"#,
];

/// The common labels of one series: 4–5 of them (the bucket/quantile label makes 5–6).
fn base_labels(rng: &mut Rng, out: &mut String) {
    out.push_str(&format!(
        "namespace=\"{}\",pod=\"{}-{:08x}\",instance=\"10.{}.{}.{}:{}\",job=\"{}\"",
        rng.pick(NAMESPACES),
        rng.pick(&["api", "web", "worker", "db-proxy"]),
        rng.next() as u32,
        rng.below(256),
        rng.below(256),
        rng.below(256),
        8080 + rng.below(4),
        rng.pick(&["kubernetes-pods", "node-exporter", "app"]),
    ));
    if rng.below(20) == 0 {
        out.push_str(&format!(",detail=\"{}\"", rng.pick(ESCAPED)));
    } else if rng.below(2) == 0 {
        out.push_str(&format!(
            ",container=\"{}\"",
            rng.pick(&["app", "sidecar", "proxy"])
        ));
    }
}

fn value(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.below(1_000_000).to_string(),
        1 => format!("{:e}", rng.below(1_000_000_000) as f64 / 7.0),
        2 => format!("{}", rng.below(100_000) as f64 / 1000.0),
        _ => rng.below(100).to_string(),
    }
}

/// A deterministic exposition of about `target` bytes.
pub fn exposition(target: usize) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(target + 4096);
    let mut family = 0;
    while out.len() < target {
        family += 1;
        let series = 3 + rng.below(6);
        match family % 4 {
            0 => {
                let name = format!("app_http_requests_{family}_total");
                out.push_str(&format!(
                    "# HELP {name} Total HTTP requests served.\n# TYPE {name} counter\n"
                ));
                for _ in 0..series {
                    let mut labels = String::new();
                    base_labels(&mut rng, &mut labels);
                    out.push_str(&format!(
                        "{name}{{{labels},method=\"{}\",code=\"{}\"}} {}\n",
                        rng.pick(METHODS),
                        rng.pick(CODES),
                        rng.below(10_000_000)
                    ));
                }
            }
            1 => {
                let name = format!("process_resident_memory_{family}_bytes");
                out.push_str(&format!(
                    "# HELP {name} Resident memory size in bytes.\n# TYPE {name} gauge\n"
                ));
                for _ in 0..series {
                    let mut labels = String::new();
                    base_labels(&mut rng, &mut labels);
                    out.push_str(&format!("{name}{{{labels}}} {}\n", value(&mut rng)));
                }
            }
            2 => {
                let name = format!("http_request_duration_{family}_seconds");
                out.push_str(&format!(
                    "# HELP {name} Request latency.\n# TYPE {name} histogram\n"
                ));
                for _ in 0..series {
                    let mut labels = String::new();
                    base_labels(&mut rng, &mut labels);
                    labels.push_str(&format!(",handler=\"{}\"", rng.pick(HANDLERS)));
                    let mut count = 0;
                    for le in LE {
                        count += rng.below(1000);
                        out.push_str(&format!("{name}_bucket{{{labels},le=\"{le}\"}} {count}\n"));
                    }
                    out.push_str(&format!("{name}_sum{{{labels}}} {}\n", value(&mut rng)));
                    out.push_str(&format!("{name}_count{{{labels}}} {count}\n"));
                }
            }
            _ => {
                let name = format!("rpc_duration_{family}_seconds");
                out.push_str(&format!(
                    "# HELP {name} RPC latency.\n# TYPE {name} summary\n"
                ));
                for _ in 0..series {
                    let mut labels = String::new();
                    base_labels(&mut rng, &mut labels);
                    for q in QUANTILES {
                        out.push_str(&format!(
                            "{name}{{{labels},quantile=\"{q}\"}} {}\n",
                            value(&mut rng)
                        ));
                    }
                    out.push_str(&format!("{name}_sum{{{labels}}} {}\n", value(&mut rng)));
                    out.push_str(&format!(
                        "{name}_count{{{labels}}} {}\n",
                        rng.below(100_000)
                    ));
                }
            }
        }
    }
    out
}
