//! Monitoring around a release: Alertmanager silences for a host while it is out of traffic
//! (lifecycle steps 3 and 10), and the Prometheus metric gate checked after each batch.

use std::time::Duration;

use serde_json::{json, Value};

use crate::inventory::Host;
use crate::playbook::{Gate, Silence};
use crate::registry::error_chain;
use crate::release::Release;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Create a silence for `host` (Alertmanager API v2). Returns its id.
pub async fn create_silence(
    http: &reqwest::Client,
    r: &Release,
    s: &Silence,
    host: &Host,
    run_id: &str,
) -> Result<String, String> {
    let ctx = r.context(host, run_id, None);
    let mut matchers = Vec::new();
    for (name, value, regex) in &s.matchers {
        let v = r.playbook.templates.render(value, &ctx)?;
        matchers.push(json!({"name": name, "value": v, "isRegex": regex, "isEqual": true}));
    }
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    // Bounded when the playbook is read (7 days); checked here too, as an overflow would panic.
    let ends = i64::try_from(s.duration.as_secs())
        .ok()
        .and_then(|secs| now.checked_add(time::Duration::seconds(secs)))
        .ok_or("the silence's duration is out of range")?;
    let body = json!({
        "matchers": matchers,
        "startsAt": now.format(fmt).unwrap_or_default(),
        "endsAt": ends.format(fmt).unwrap_or_default(),
        "createdBy": "tranche",
        "comment": format!("tranche run {run_id}: {} {} on {}", r.playbook.service, r.playbook.version, host.name),
    });
    let url = format!("{}/api/v2/silences", s.alertmanager);
    let resp = http
        .post(&url)
        .json(&body)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status != 200 {
        return Err(format!("POST {url} answered {status}: {}", text.trim()));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("POST {url}: unreadable answer ({e})"))?;
    v["silenceID"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("POST {url}: no silenceID in {text}"))
}

/// Expire a silence.
pub async fn expire_silence(http: &reqwest::Client, s: &Silence, id: &str) -> Result<(), String> {
    let url = format!("{}/api/v2/silence/{id}", s.alertmanager);
    let resp = http
        .delete(&url)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("DELETE {url}: {}", error_chain(&e)))?;
    match resp.status().as_u16() {
        200 => Ok(()),
        code => Err(format!(
            "DELETE {url} answered {code}: {}",
            resp.text().await.unwrap_or_default().trim()
        )),
    }
}

/// One evaluation of the gate's query: its value (no data counts as 0, as does NaN: no
/// traffic, no errors).
pub async fn gate_value(http: &reqwest::Client, g: &Gate, query: &str) -> Result<f64, String> {
    let url = format!("{}/api/v1/query", g.prometheus);
    let resp = http
        .get(&url)
        .query(&[("query", query)])
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).map_err(|_| format!("Prometheus answered {status}: {}", text.trim()))?;
    if v["status"] != "success" {
        return Err(format!(
            "Prometheus rejected `{query}`: {}",
            v["error"].as_str().unwrap_or(text.trim())
        ));
    }
    let data = &v["data"];
    let raw = match data["resultType"].as_str() {
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) | None => return Ok(0.0),
            Some([one]) => one["value"][1].as_str().map(str::to_string),
            Some(many) => {
                return Err(format!(
                    "`{query}` returns {} series; the gate needs one number (wrap it in sum() or max())",
                    many.len()
                ))
            }
        },
        Some("scalar") => data["result"][1].as_str().map(str::to_string),
        other => {
            return Err(format!(
                "`{query}` returns a {}; the gate needs one number",
                other.unwrap_or("nothing")
            ))
        }
    };
    let value: f64 = raw
        .as_deref()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unreadable value in {text}"))?;
    Ok(if value.is_nan() { 0.0 } else { value })
}

/// Watch the gate for `g.hold` (at least one evaluation): Ok with the highest value seen, or
/// Err at the first value over `g.max`.
pub async fn watch_gate(http: &reqwest::Client, g: &Gate, query: &str) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + g.hold;
    let mut highest = f64::MIN;
    let mut n = 0;
    loop {
        let v = gate_value(http, g, query).await?;
        n += 1;
        highest = highest.max(v);
        if v > g.max {
            return Err(format!("`{query}` is {v}, over the limit of {}", g.max));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(format!(
                "`{query}` stayed at or under {} for {} (highest {highest}, {n} checks)",
                g.max,
                crate::units::human_duration(g.hold)
            ));
        }
        tokio::time::sleep(Duration::from_secs(2).min(deadline - tokio::time::Instant::now())).await;
    }
}
