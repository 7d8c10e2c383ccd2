//! `/api/v1/targets` in Prometheus's JSON shape, so existing tools can read it.
//!
//! Query parameters as Prometheus: `state=active|dropped|any` (default any) and
//! `scrapePool=<job>`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::labels::Labels;
use crate::scrape::TargetsView;
use crate::telemetry::time::rfc3339;

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
        dropped_counts.insert(job.clone(), json!(targets.dropped_total));
        if state != "dropped" {
            for t in &targets.active {
                let s = t.state();
                let target = &t.target;
                active.push(json!({
                    "discoveredLabels": labels_json(&t.discovered()),
                    "labels": labels_json(&target.labels),
                    "scrapePool": job,
                    "scrapeUrl": target.url,
                    "globalUrl": target.url,
                    "lastError": s.last_error,
                    "lastScrape": s.last_scrape.map(|t| rfc3339(t, 9)).unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()),
                    "lastScrapeDuration": s.last_duration.as_secs_f64(),
                    "health": s.health.as_str(),
                    "scrapeInterval": crate::config::format_duration(target.interval),
                    "scrapeTimeout": crate::config::format_duration(target.timeout),
                    // scrapelet's: the limits that never fail a scrape acting now, each with
                    // its family and the label with the most values.
                    "seriesLimits": s.limits.iter().map(ToString::to_string).collect::<Vec<_>>(),
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
