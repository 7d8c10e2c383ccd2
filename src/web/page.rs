//! `/targets`: the targets as a plain HTML page, per job, readable in a browser through
//! `kubectl port-forward`. No scripts, no external assets; everything shown is escaped.

use std::fmt::Write;
use std::time::SystemTime;

use super::tsdb::{Cardinality, Stat};
use crate::labels::Labels;
use crate::scrape::{Health, JobTargets, TargetsView};

/// The page. `query` may hold `job=<name>` to show one job only.
pub(super) fn targets(view: &TargetsView, query: &str) -> String {
    let only = query
        .split('&')
        .find_map(|p| p.strip_prefix("job="))
        .map(percent_decode);
    let jobs = view.snapshot();
    let now = SystemTime::now();
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>scrapelet targets</title>\n",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;width:100%}",
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;font-size:90%}",
        ".up{color:#070}.down{color:#b00}.unknown{color:#777}code{font-size:90%}</style>\n",
        "</head><body>\n<h1>Targets</h1>\n"
    ));
    let (up, total): (usize, usize) = jobs
        .values()
        .flat_map(|j| &j.active)
        .fold((0, 0), |(up, n), t| {
            (up + usize::from(t.state().health == Health::Up), n + 1)
        });
    let _ = writeln!(
        out,
        "<p>{up} of {total} targets up in {} jobs. <a href=\"/api/v1/targets\">JSON</a></p>",
        jobs.len()
    );
    for (job, targets) in &jobs {
        if only.as_deref().is_some_and(|o| o != job) {
            continue;
        }
        job_section(&mut out, job, targets, now);
    }
    out.push_str("</body></html>\n");
    out
}

fn job_section(out: &mut String, job: &str, targets: &JobTargets, now: SystemTime) {
    let up = targets
        .active
        .iter()
        .filter(|t| t.state().health == Health::Up)
        .count();
    let _ = writeln!(
        out,
        "<h2 id=\"{}\">{} ({up}/{} up)</h2>",
        escape(job),
        escape(job),
        targets.active.len()
    );
    out.push_str("<table><tr><th>Endpoint</th><th>State</th><th>Labels</th><th>Last scrape</th><th>Duration</th><th>Error</th><th>Series limits</th></tr>\n");
    for t in &targets.active {
        let s = t.state();
        let ago = s
            .last_scrape
            .and_then(|at| now.duration_since(at).ok())
            .map(|d| format!("{:.1}s ago", d.as_secs_f64()))
            .unwrap_or_else(|| "never".to_owned());
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{url}\">{url}</a></td><td class=\"{h}\">{h}</td><td>{labels}</td><td>{ago}</td><td>{:.3}s</td><td>{err}</td><td>{limits}</td></tr>",
            s.last_duration.as_secs_f64(),
            url = escape(&t.target.url),
            h = s.health.as_str(),
            labels = labels_html(&t.target.labels),
            err = escape(&s.last_error),
            limits = s
                .limits
                .iter()
                .map(|n| escape(&n.to_string()))
                .collect::<Vec<_>>()
                .join("<br>"),
        );
    }
    out.push_str("</table>\n");
    cardinality_section(out, targets);
    if targets.dropped_total > 0 {
        let _ = writeln!(
            out,
            "<details><summary>{} dropped targets{}</summary><table><tr><th>Discovered labels</th><th>Reason</th></tr>",
            targets.dropped_total,
            if targets.dropped.len() < targets.dropped_total {
                format!(
                    " ({} shown, see keep_dropped_targets)",
                    targets.dropped.len()
                )
            } else {
                String::new()
            }
        );
        for d in &targets.dropped {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                labels_html(&d.discovered),
                escape(&d.reason)
            );
        }
        out.push_str("</table></details>\n");
    }
}

/// Families and labels per target, largest first: where a job's series come from. Computed
/// now from the targets' caches (see `tsdb`).
fn cardinality_section(out: &mut String, targets: &JobTargets) {
    const TOP: usize = 5;
    out.push_str("<details><summary>Series by target: top metric families and labels</summary><table><tr><th>Endpoint</th><th>Series</th><th>Top metric names (series)</th><th>Top labels (distinct values)</th></tr>\n");
    for t in &targets.active {
        let mut c = Cardinality::default();
        c.add_target(t);
        let list = |stats: Vec<Stat>| {
            stats
                .iter()
                .map(|s| format!("<code>{}</code> {}", escape(&s.name), s.value))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let labels: Vec<Stat> = c
            .values_by_label(TOP + 1)
            .into_iter()
            .filter(|s| s.name != crate::labels::METRIC_NAME)
            .take(TOP)
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&t.target.url),
            c.series,
            list(c.by_metric_name(TOP)),
            list(labels),
        );
    }
    out.push_str("</table></details>\n");
}

fn labels_html(labels: &Labels) -> String {
    let mut out = String::new();
    for l in labels.iter() {
        let _ = write!(
            out,
            "<code>{}=\"{}\"</code> ",
            escape(l.name),
            escape(l.value)
        );
    }
    out
}

/// Escapes text for HTML element content and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes `%XX` and `+` in a query value (invalid escapes are kept as written).
pub(super) fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("kube%2Dpods+x"), "kube-pods x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("é%"), "é%");
    }
}
