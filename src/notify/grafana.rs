//! The Grafana release marker: a region annotation over the run, through Grafana's HTTP
//! annotations API. It is created when the run starts (`POST /api/annotations` with `time`,
//! `tags` and `text`; the answer carries its `id`) and closed when it ends (`PATCH
//! /api/annotations/:id` with `timeEnd` and the outcome as `text`). If the creation failed or
//! is still unanswered, the end creates the whole region at once (`time` and `timeEnd`).
//! Times are epoch milliseconds. <https://grafana.com/docs/grafana/latest/developers/http_api/annotations/>

use serde_json::{json, Value};

use super::moment::Message;
use super::payload::Request;
use crate::playbook::Annotate;

/// The tags of the run's annotation: `tranche`, `service:NAME`, `version:V`, `run:ID`, then
/// the playbook's own.
pub fn tags(a: &Annotate, m: &Message) -> Vec<String> {
    let mut t = vec![
        "tranche".to_string(),
        format!("service:{}", m.service),
        format!("version:{}", m.version),
        format!("run:{}", m.run),
    ];
    for extra in &a.tags {
        if !t.contains(extra) {
            t.push(extra.clone());
        }
    }
    t
}

/// The annotation's text: the message's title and lines.
pub fn text(m: &Message) -> String {
    let mut lines = vec![m.title.clone()];
    lines.extend(m.lines.iter().cloned());
    lines.extend(m.failed_lines());
    lines.join("\n")
}

fn request(a: &Annotate, method: &'static str, path: &str, body: Value) -> Request {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("accept", "application/json".to_string()),
    ];
    if let Some(t) = &a.token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    Request {
        method,
        url: format!("{}{path}", a.grafana),
        headers,
        body: serde_json::to_vec(&body).expect("JSON"),
    }
}

/// `POST /api/annotations` at the start: a point that the end turns into a region.
pub fn create(a: &Annotate, m: &Message, time_ms: u64) -> Request {
    request(
        a,
        "POST",
        "/api/annotations",
        json!({"time": time_ms, "tags": tags(a, m), "text": text(m)}),
    )
}

/// `POST /api/annotations` at the end, when the start's annotation does not exist: the region.
pub fn create_region(a: &Annotate, m: &Message, time_ms: u64, end_ms: u64) -> Request {
    request(
        a,
        "POST",
        "/api/annotations",
        json!({"time": time_ms, "timeEnd": end_ms, "tags": tags(a, m), "text": text(m)}),
    )
}

/// `PATCH /api/annotations/:id` at the end: the region's end and the outcome.
pub fn close(a: &Annotate, id: u64, m: &Message, end_ms: u64) -> Request {
    request(
        a,
        "PATCH",
        &format!("/api/annotations/{id}"),
        json!({"timeEnd": end_ms, "tags": tags(a, m), "text": text(m)}),
    )
}

/// The `id` of a created annotation (`{"message": "Annotation added", "id": 1}`).
pub fn created_id(body: &str) -> Option<u64> {
    serde_json::from_str::<Value>(body).ok()?.get("id")?.as_u64()
}

/// Epoch milliseconds of an event's `ts` (`2026-11-21T10:00:00.123Z`).
pub fn epoch_ms(ts: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_epoch_milliseconds() {
        assert_eq!(epoch_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(epoch_ms("not a time"), None);
    }

    #[test]
    fn the_created_id_is_read() {
        assert_eq!(created_id(r#"{"message":"Annotation added","id":42}"#), Some(42));
        assert_eq!(created_id("oops"), None);
    }
}
