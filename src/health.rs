//! Health checks: `http` from the controller, `tcp` connect, or `command` on the host; polled at
//! an interval until they pass or the deadline passes.

use std::time::Duration;

use tokio::time::Instant;

use crate::inventory::Host;
use crate::playbook::HealthCheck;
use crate::release::Release;
use crate::ssh::Connection;

/// Poll the playbook's health check for `host` until it passes (Ok with a note) or the
/// deadline passes (Err with the last failure).
pub async fn wait_healthy(
    r: &Release,
    host: &Host,
    conn: &Connection,
    run_id: &str,
    version: &str,
    http: &reqwest::Client,
) -> Result<String, String> {
    let Some(h) = &r.playbook.health else {
        return Ok("no health check".into());
    };
    let mut ctx = r.context(host, run_id, None);
    ctx["version"] = serde_json::Value::String(version.to_string());
    let render = |t| r.playbook.templates.render(t, &ctx);
    let expect_body = match &h.expect_body {
        Some(t) => Some(render(t)?),
        None => None,
    };
    let deadline = Instant::now() + h.timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let attempt_timeout = left.min(Duration::from_secs(5));
        let result = match &h.check {
            HealthCheck::Http(t) => {
                let url = render(t)?;
                match http.get(&url).timeout(attempt_timeout).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.text().await.unwrap_or_default();
                        if status != h.expect_status {
                            Err(format!("{url} answered {status}, expected {}", h.expect_status))
                        } else if let Some(want) = expect_body.as_deref().filter(|w| !body.contains(*w)) {
                            Err(format!("{url} answered {status} without \"{want}\" in the body"))
                        } else {
                            Ok(format!(
                                "{status} after {tries} tr{}",
                                if tries == 1 { "y" } else { "ies" }
                            ))
                        }
                    }
                    Err(e) => Err(format!("{url}: {}", crate::registry::error_chain(&e))),
                }
            }
            HealthCheck::Tcp(t) => {
                let addr = render(t)?;
                match tokio::time::timeout(attempt_timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => Ok(format!("{addr} accepts after {tries} tries")),
                    Ok(Err(e)) => Err(format!("{addr}: {e}")),
                    Err(_) => Err(format!("{addr}: no answer")),
                }
            }
            HealthCheck::Command(t) => {
                let cmd = render(t)?;
                match conn.exec(&cmd, attempt_timeout).await {
                    Ok(out) if out.success() => match expect_body.as_deref() {
                        Some(want) if !out.stdout.contains(want) => Err(format!("output lacks \"{want}\"")),
                        _ => Ok(format!("passed after {tries} tries")),
                    },
                    Ok(out) => Err(out.describe()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match result {
            Ok(note) => return Ok(note),
            Err(e) if Instant::now() + h.interval >= deadline => {
                return Err(format!(
                    "not healthy within {}: {e}",
                    crate::units::human_duration(h.timeout)
                ));
            }
            Err(_) => tokio::time::sleep(h.interval).await,
        }
    }
}
