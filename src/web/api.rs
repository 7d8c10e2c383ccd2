//! `/api/v1/targets` in Prometheus's JSON shape, so existing tools can read it.
//!
//! Query parameters as Prometheus: `state=active|dropped|any` (default any) and
//! `scrapePool=<job>`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::labels::Labels;
use crate::scrape::{Health, TargetsView};

pub(super) fn targets(view: &TargetsView, query: &str) -> Response<Full<Bytes>> {
    let mut state = "any";
    let mut pool: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "state" => {
                state = if v.eq_ignore_ascii_case("active") {
                    "active"
                } else if v.eq_ignore_ascii_case("dropped") {
                    "dropped"
                } else {
                    "any"
                }
            }
            "scrapePool" => pool = Some(v.to_owned()),
            _ => {}
        }
    }
    let jobs = view.snapshot();
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    let mut dropped_counts = Map::new();
    for (job, targets) in &jobs {
        if pool.as_deref().is_some_and(|p| p != job) {
            continue;
        }
        dropped_counts.insert(job.clone(), json!(targets.dropped.len()));
        if state != "dropped" {
            for t in &targets.active {
                let s = t.state();
                let target = &t.target;
                active.push(json!({
                    "discoveredLabels": labels_json(&target.discovered),
                    "labels": labels_json(&target.labels),
                    "scrapePool": job,
                    "scrapeUrl": target.url,
                    "globalUrl": target.url,
                    "lastError": s.last_error,
                    "lastScrape": s.last_scrape.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()),
                    "lastScrapeDuration": s.last_duration.as_secs_f64(),
                    "health": match s.health { Health::Up => "up", Health::Down => "down", Health::Unknown => "unknown" },
                    "scrapeInterval": crate::config::format_duration(target.interval),
                    "scrapeTimeout": crate::config::format_duration(target.timeout),
                }));
            }
        }
        if state != "active" {
            for d in &targets.dropped {
                dropped.push(json!({
                    "discoveredLabels": labels_json(&d.discovered),
                    "scrapePool": job,
                    "reason": d.reason,
                }));
            }
        }
    }
    let body = json!({
        "status": "success",
        "data": {
            "activeTargets": active,
            "droppedTargets": dropped,
            "droppedTargetCounts": dropped_counts,
        }
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.to_owned(), Value::String(l.value.to_owned())))
            .collect(),
    )
}

/// RFC 3339 in UTC with nanoseconds, as Go's `time.Time` marshals.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }
}
