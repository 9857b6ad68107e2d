//! Monitoring around a release: Alertmanager silences for a host while it is out of traffic
//! (lifecycle steps 3 and 10), and the Prometheus metric gate checked after each batch.

use std::time::Duration;

use serde_json::{json, Value};

use crate::http_body::error_chain;
use crate::http_body::{read_prefix, BODY_LIMIT};
use crate::inventory::Host;
use crate::playbook::{Gate, HttpAuth, Silence};
use crate::redact;
use crate::registry::{http_transient, retry, status_transient, CallError};
use crate::release::Release;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoint's credentials on a request (`token` or `basic_auth`; a URL's userinfo is
/// applied by reqwest itself).
fn authorize(req: reqwest::RequestBuilder, auth: &HttpAuth) -> reqwest::RequestBuilder {
    match auth {
        HttpAuth::None => req,
        HttpAuth::Bearer(t) => req.bearer_auth(t),
        HttpAuth::Basic { username, password } => req.basic_auth(username, Some(password)),
    }
}

/// Alertmanager answers `GET /api/v2/status` with 200 (checked before any host changes).
pub async fn check_alertmanager(http: &reqwest::Client, s: &Silence) -> Result<(), String> {
    let url = format!("{}/api/v2/status", s.alertmanager);
    let shown = redact::url(&s.alertmanager);
    let resp = authorize(http.get(&url), &s.auth)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("Alertmanager at {shown}: {}", error_chain(&e)))?;
    match resp.status().as_u16() {
        200..=299 => Ok(()),
        code => Err(format!(
            "Alertmanager at {shown} does not answer GET /api/v2/status with 200 (it answered {code})"
        )),
    }
}

/// Create a silence for `host` (Alertmanager API v2), retrying transient failures for
/// `registry.retry`. Returns its id and what was retried (` after 2 retries (HTTP 503)` or
/// nothing).
pub async fn create_silence(
    http: &reqwest::Client,
    r: &Release,
    s: &Silence,
    host: &Host,
    run_id: &str,
) -> Result<(String, String), String> {
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
    let (id, retried) = retry(r.playbook.registry_retry, || post_silence(http, s, &body)).await?;
    Ok((id, retried.note()))
}

/// One try of creating a silence.
async fn post_silence(http: &reqwest::Client, s: &Silence, body: &Value) -> Result<String, CallError> {
    let url = format!("{}/api/v2/silences", s.alertmanager);
    let shown = redact::url(&url);
    let resp = authorize(http.post(&url), &s.auth)
        .json(body)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            CallError::new(
                format!("POST {shown}: {}", error_chain(&e)),
                http_transient(&e).map(str::to_string),
            )
        })?;
    let status = resp.status().as_u16();
    let answer = read_prefix(resp, BODY_LIMIT).await;
    if status != 200 {
        return Err(CallError::new(
            format!("POST {shown} answered {status}: {}", excerpt(&answer.text)),
            status_transient(status),
        ));
    }
    let text = answer.whole().map_err(|e| format!("POST {shown}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("POST {shown}: unreadable answer ({e})"))?;
    v["silenceID"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("POST {shown}: no silenceID in {}", excerpt(&text)).into())
}

/// Expire a silence, retrying transient failures for `retry`. Returns what was retried
/// (` after 1 retry (connection refused)` or nothing).
pub async fn expire_silence(
    http: &reqwest::Client,
    s: &Silence,
    id: &str,
    retry_for: Duration,
) -> Result<String, String> {
    let ((), retried) = retry(retry_for, || delete_silence(http, s, id)).await?;
    Ok(retried.note())
}

/// One try of expiring a silence.
async fn delete_silence(http: &reqwest::Client, s: &Silence, id: &str) -> Result<(), CallError> {
    let url = format!("{}/api/v2/silence/{id}", s.alertmanager);
    let shown = redact::url(&url);
    let resp = authorize(http.delete(&url), &s.auth)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            CallError::new(
                format!("DELETE {shown}: {}", error_chain(&e)),
                http_transient(&e).map(str::to_string),
            )
        })?;
    match resp.status().as_u16() {
        200 => Ok(()),
        code => Err(CallError::new(
            format!(
                "DELETE {shown} answered {code}: {}",
                excerpt(&read_prefix(resp, BODY_LIMIT).await.text)
            ),
            status_transient(code),
        )),
    }
}

/// One evaluation of the gate's query: its value (no data counts as 0, as does NaN: no
/// traffic, no errors).
pub async fn gate_value(http: &reqwest::Client, g: &Gate, query: &str) -> Result<f64, String> {
    let url = format!("{}/api/v1/query", g.prometheus);
    let shown = redact::url(&url);
    let resp = authorize(http.get(&url), &g.auth)
        .query(&[("query", query)])
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {shown}: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let text = read_prefix(resp, BODY_LIMIT)
        .await
        .whole()
        .map_err(|e| format!("Prometheus answered {status}: {e}"))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|_| format!("Prometheus answered {status}: {}", excerpt(&text)))?;
    if v["status"] != "success" {
        return Err(format!(
            "Prometheus rejected `{query}`: {}",
            v["error"].as_str().map_or_else(|| excerpt(&text), str::to_string)
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
        .ok_or_else(|| format!("unreadable value in {}", excerpt(&text)))?;
    Ok(if value.is_nan() { 0.0 } else { value })
}

/// The start of an answer, for an error message.
fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};

    use crate::http_body::tests::{endless_server, test_release};

    /// (method, path, Authorization header) of every request a fake monitoring server got.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A fake Alertmanager and Prometheus on loopback that records the requests' credentials.
    fn fake_monitoring() -> (u16, Seen) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let (mut auth, mut len) = (String::new(), 0usize);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim().split_once(':') {
                        match k.to_ascii_lowercase().as_str() {
                            "authorization" => auth = v.trim().to_string(),
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let answer = match (method.as_str(), path.split('?').next().unwrap_or("")) {
                    ("POST", "/api/v2/silences") => r#"{"silenceID":"s-1"}"#,
                    ("GET", "/api/v1/query") => {
                        r#"{"status":"success","data":{"resultType":"scalar","result":[0,"0.5"]}}"#
                    }
                    _ => "{}",
                };
                log.lock().unwrap().push((method, path, auth));
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (port, seen)
    }

    /// `token` and `basic_auth` come from the environment, reach the servers as Authorization
    /// headers, are secrets of the release, and are never shown.
    #[tokio::test]
    async fn monitoring_credentials_come_from_settings_and_are_sent() {
        std::env::set_var("TRANCHE_TEST_AM_TOKEN", "am-token-5up3r");
        std::env::set_var("TRANCHE_TEST_PROM_PASS", "prom-pa55-w0rd");
        let (port, seen) = fake_monitoring();
        let (_dir, r) = test_release(&format!(
            "silence:\n  alertmanager: http://127.0.0.1:{port}\n  token: \"{{{{ env.TRANCHE_TEST_AM_TOKEN }}}}\"\n  matchers: {{instance: \"{{{{ host.name }}}}\"}}\n\
             rollout:\n  gate:\n    prometheus: http://127.0.0.1:{port}\n    basic_auth:\n      username: tranche\n      password: \"{{{{ env.TRANCHE_TEST_PROM_PASS }}}}\"\n    query: up\n    max: 1\n"
        ));
        let (sil, gate) = (
            r.playbook.silence.as_ref().unwrap(),
            r.playbook.rollout.gate.as_ref().unwrap(),
        );
        let http = reqwest::Client::new();
        super::check_alertmanager(&http, sil).await.unwrap();
        let (id, _) = super::create_silence(&http, &r, sil, &r.targets[0], "run")
            .await
            .unwrap();
        assert_eq!(id, "s-1");
        super::expire_silence(&http, sil, &id, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(super::gate_value(&http, gate, "up").await, Ok(0.5));
        let seen = seen.lock().unwrap().clone();
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "tranche:prom-pa55-w0rd")
        );
        let auth: Vec<(&str, &str)> = seen.iter().map(|(m, _, a)| (m.as_str(), a.as_str())).collect();
        assert_eq!(
            auth,
            [
                ("GET", "Bearer am-token-5up3r"),
                ("POST", "Bearer am-token-5up3r"),
                ("DELETE", "Bearer am-token-5up3r"),
                ("GET", basic.as_str()),
            ],
            "{seen:?}"
        );
        // Both are secrets of the release, and neither shows in the plan or in Debug output.
        let secrets = crate::redact::secrets_of(&r);
        assert!(secrets.contains(&"am-token-5up3r".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"prom-pa55-w0rd".to_string()), "{secrets:?}");
        let plan = crate::report::plan::to_json(&r);
        assert_eq!(
            (plan["silence"]["auth"].as_str(), plan["gate"]["auth"].as_str()),
            (Some("token"), Some("basic_auth"))
        );
        let shown = format!("{:?} {plan} {}", r.playbook, crate::report::plan::to_table(&r));
        assert!(
            !shown.contains("am-token-5up3r") && !shown.contains("prom-pa55-w0rd"),
            "{shown}"
        );
    }

    #[test]
    fn credentials_that_cannot_be_rendered_are_positioned_errors() {
        let dir = tempfile::tempdir().unwrap();
        let pb = dir.path().join("p.yml");
        std::fs::write(dir.path().join("a.tgz"), b"x").unwrap();
        std::fs::write(
            &pb,
            "service: demo\nversion: \"1\"\nartifact:\n  path: a.tgz\nsilence:\n  alertmanager: http://am:9093\n  token: \"{{ env.TRANCHE_TEST_NOT_SET_ANYWHERE }}\"\n  basic_auth: {username: u, password: p}\n  matchers: {a: b}\n",
        )
        .unwrap();
        let err = crate::playbook::Playbook::load(&pb, &[]).unwrap_err().to_string();
        assert!(
            err.contains("`silence` takes `token` or `basic_auth`, not both"),
            "{err}"
        );
        std::fs::write(
            &pb,
            "service: demo\nversion: \"1\"\nartifact:\n  path: a.tgz\nsilence:\n  alertmanager: http://am:9093\n  token: \"{{ env.TRANCHE_TEST_NOT_SET_ANYWHERE }}\"\n  matchers: {a: b}\n",
        )
        .unwrap();
        let err = crate::playbook::Playbook::load(&pb, &[]).unwrap_err().to_string();
        assert!(err.contains("p.yml:7:"), "{err}");
        assert!(err.contains("`silence.token` cannot be rendered"), "{err}");
        std::fs::write(
            &pb,
            "service: demo\nversion: \"1\"\nartifact:\n  path: a.tgz\nsilence:\n  alertmanager: http://u:p@am:9093\n  token: t0ken\n  matchers: {a: b}\n",
        )
        .unwrap();
        let err = crate::playbook::Playbook::load(&pb, &[]).unwrap_err().to_string();
        assert!(
            err.contains("`silence.alertmanager` carries credentials, and `silence` sets them too"),
            "{err}"
        );
    }

    /// A Prometheus that answers forever: the gate fails cleanly on the first MiB.
    #[tokio::test]
    async fn an_endless_prometheus_answer_is_not_read_whole() {
        let (port, sent) = endless_server(200, "{\"status\":\"success\",\"data\":");
        let (_dir, r) = test_release(&format!(
            "rollout:\n  gate:\n    prometheus: http://127.0.0.1:{port}\n    query: up\n    max: 1\n"
        ));
        let t = std::time::Instant::now();
        let err = super::gate_value(&reqwest::Client::new(), r.playbook.rollout.gate.as_ref().unwrap(), "up")
            .await
            .unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(
            err,
            "Prometheus answered 200: the answer is larger than 1.0 MiB; it was not read"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        let n = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(n < 32 << 20, "the server sent {n} bytes");
    }

    /// An Alertmanager answering 503 then 200 (with `body`), counting requests.
    fn flaky_alertmanager(body: &'static str) -> (u16, Arc<Mutex<usize>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(Mutex::new(0usize));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let n = {
                    let mut c = seen.lock().unwrap();
                    *c += 1;
                    *c
                };
                let mut req = [0u8; 8192];
                let _ = s.read(&mut req);
                let (status, answer) = if n == 1 { (503, "busy") } else { (200, body) };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (port, count)
    }

    /// Creating and expiring a silence retry a 503 (for `registry.retry`), and say so.
    #[tokio::test]
    async fn silences_are_retried_through_a_503() {
        let (port, count) = flaky_alertmanager(r#"{"silenceID":"s-7"}"#);
        let (_dir, r) = test_release(&format!(
            "silence:\n  alertmanager: http://127.0.0.1:{port}\n  matchers: {{instance: \"{{{{ host.name }}}}\"}}\n"
        ));
        let sil = r.playbook.silence.as_ref().unwrap();
        let http = reqwest::Client::new();
        let created = super::create_silence(&http, &r, sil, &r.targets[0], "run").await;
        assert_eq!(
            created,
            Ok(("s-7".to_string(), " after 1 retry (HTTP 503)".to_string()))
        );
        assert_eq!(*count.lock().unwrap(), 2);

        let (port, count) = flaky_alertmanager("");
        let (_dir, r) = test_release(&format!(
            "silence:\n  alertmanager: http://127.0.0.1:{port}\n  matchers: {{instance: x}}\n"
        ));
        let sil = r.playbook.silence.as_ref().unwrap();
        let expired = super::expire_silence(&http, sil, "s-7", r.playbook.registry_retry).await;
        assert_eq!(expired, Ok(" after 1 retry (HTTP 503)".to_string()));
        assert_eq!(*count.lock().unwrap(), 2);
    }
}
