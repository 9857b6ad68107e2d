//! Health checks: `http` from the controller, `tcp` connect, or `command` on the host; polled at
//! an interval until they pass or the deadline passes.

use std::time::Duration;

use tokio::time::Instant;

use crate::inventory::Host;
use crate::playbook::HealthCheck;
use crate::release::Release;
use crate::remote::RemoteHost;

/// One HTTP health check: the status, or why it failed. Only the first
/// [`BODY_LIMIT`](crate::http_body::BODY_LIMIT) bytes of the body are read (the `expect_body`
/// substring must be in them), so an endless or huge body costs bounded time and memory.
pub async fn http_check(
    http: &reqwest::Client,
    url: &str,
    expect_status: u16,
    expect_body: Option<&str>,
    timeout: Duration,
) -> Result<u16, String> {
    let shown = crate::redact::url(url);
    let resp = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", crate::http_body::error_chain(&e)))?;
    let status = resp.status().as_u16();
    if status != expect_status {
        return Err(format!("{shown} answered {status}, expected {expect_status}"));
    }
    let Some(want) = expect_body else {
        return Ok(status);
    };
    let body = crate::http_body::read_prefix(resp, crate::http_body::BODY_LIMIT).await;
    if body.text.contains(want) {
        Ok(status)
    } else if body.truncated {
        Err(format!(
            "{shown} answered {status} without \"{want}\" in the first {} of the body",
            crate::units::human_size(crate::http_body::BODY_LIMIT as u64)
        ))
    } else {
        Err(format!("{shown} answered {status} without \"{want}\" in the body"))
    }
}

/// Poll the playbook's health check for `host` until it passes (Ok with a note) or the
/// deadline passes (Err with the last failure).
pub async fn wait_healthy(
    r: &Release,
    host: &Host,
    conn: &dyn RemoteHost,
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
                http_check(http, &url, h.expect_status, expect_body.as_deref(), attempt_timeout)
                    .await
                    .map(|status| format!("{status} after {}", attempts(tries)))
            }
            HealthCheck::Tcp(t) => {
                let addr = render(t)?;
                match tokio::time::timeout(attempt_timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => Ok(format!("{addr} accepts after {}", attempts(tries))),
                    Ok(Err(e)) => Err(format!("{addr}: {e}")),
                    Err(_) => Err(format!("{addr}: no answer")),
                }
            }
            HealthCheck::Command(t) => {
                let cmd = render(t)?;
                match conn.exec(&cmd, attempt_timeout).await {
                    Ok(out) if out.success() => match expect_body.as_deref() {
                        Some(want) if !out.stdout.contains(want) => Err(format!("output lacks \"{want}\"")),
                        _ => Ok(format!("passed after {}", attempts(tries))),
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

/// "1 try", "4 tries".
fn attempts(n: u32) -> String {
    if n == 1 {
        "1 try".to_string()
    } else {
        format!("{n} tries")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_try_is_singular() {
        assert_eq!(super::attempts(1), "1 try");
        assert_eq!(super::attempts(4), "4 tries");
    }

    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::http_check;
    use crate::http_body::tests::endless_server;

    /// A health endpoint that never stops talking: the check passes or fails on the first MiB,
    /// quickly, and stops reading (the server is not drained).
    #[tokio::test]
    async fn an_endless_health_body_is_judged_on_its_start() {
        let http = reqwest::Client::new();
        let (port, sent) = endless_server(200, "version 2.0.0 ");
        let url = format!("http://127.0.0.1:{port}/health");
        let t = Instant::now();
        let res = http_check(&http, &url, 200, Some("2.0.0"), Duration::from_secs(20)).await;
        assert_eq!(res, Ok(200));
        let res = http_check(&http, &url, 200, Some("3.0.0"), Duration::from_secs(20)).await;
        let err = res.unwrap_err();
        assert!(err.contains("without \"3.0.0\" in the first 1.0 MiB"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
        let n = sent.load(Ordering::SeqCst);
        assert!(n < 64 << 20, "the server sent {n} bytes for two checks");
    }

    #[tokio::test]
    async fn a_health_url_is_shown_without_its_credentials() {
        let http = reqwest::Client::new();
        let (port, _) = endless_server(503, "");
        let url = format!("http://user:pa55word@127.0.0.1:{port}/health?token=t0ken");
        let err = http_check(&http, &url, 200, None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!("http://***@127.0.0.1:{port}/health?token=*** answered 503, expected 200")
        );
    }
}
