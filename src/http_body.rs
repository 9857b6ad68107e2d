//! Reading HTTP answers without trusting their size: every body tranche reads (health checks,
//! registry calls, Alertmanager, Prometheus) is read chunk by chunk up to a bound, and the rest
//! is never read (the connection is dropped), so a server that sends an endless body costs a
//! bounded amount of memory and time.

/// The most of a body that is ever read: far above what a health check, a registry or a
/// monitoring API answers.
pub const BODY_LIMIT: usize = 1 << 20;

/// The first bytes of a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyPrefix {
    /// At most the limit, decoded as UTF-8 (lossily).
    pub text: String,
    /// The body went on past the limit (unread).
    pub truncated: bool,
    /// Reading stopped on an error (a timeout, a cut connection); `text` is what came before.
    pub error: Option<String>,
}

impl BodyPrefix {
    /// The body when it came whole, or why it cannot be used whole.
    pub fn whole(self) -> Result<String, String> {
        match (self.truncated, self.error) {
            (true, _) => Err(format!(
                "the answer is larger than {}; it was not read",
                crate::units::human_size(BODY_LIMIT as u64)
            )),
            (false, Some(e)) => Err(format!("the answer was cut: {e}")),
            (false, None) => Ok(self.text),
        }
    }
}

/// Read at most `limit` bytes of `resp`'s body.
pub async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> BodyPrefix {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = BodyPrefix::default();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - buf.len();
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    out.truncated = true;
                    break;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                out.error = Some(error_chain(&e));
                break;
            }
        }
    }
    out.text = String::from_utf8_lossy(&buf).into_owned();
    out
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A server on loopback that answers every request with `status`, `head` and then an
    /// endless body (stopped at 256 MiB per connection, so a client that reads it all cannot
    /// exhaust the test machine). Returns its port and the bytes it has sent in all.
    pub(crate) fn endless_server(status: u16, head: &'static str) -> (u16, Arc<AtomicU64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let total = sent.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let total = total.clone();
                std::thread::spawn(move || {
                    let mut req = [0u8; 4096];
                    let _ = s.read(&mut req);
                    let hdr =
                        format!("HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{head}");
                    if s.write_all(hdr.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..(256 * 16) {
                        if s.write_all(&chunk).is_err() {
                            return;
                        }
                        total.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        (port, sent)
    }

    /// A release of one host (`h1`, 127.0.0.1) from a playbook of `body` (YAML after
    /// `service`, `version` and `artifact`), loaded from files in a temporary folder.
    pub(crate) fn test_release(body: &str) -> (tempfile::TempDir, crate::release::Release) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.tar.gz"), b"not really an archive").unwrap();
        std::fs::write(
            dir.path().join("inventory.yml"),
            "all:\n  hosts:\n    h1: { ansible_host: 127.0.0.1 }\n",
        )
        .unwrap();
        let pb = dir.path().join("playbook.yml");
        std::fs::write(
            &pb,
            format!("service: demo\nversion: \"2.0.0\"\nartifact:\n  path: app.tar.gz\n{body}"),
        )
        .unwrap();
        let req = crate::release::ReleaseRequest {
            inventories: vec![dir.path().join("inventory.yml")],
            playbook: pb,
            limit: None,
            extra_vars: vec![],
        };
        let r = crate::release::Release::load(&req).unwrap_or_else(|d| panic!("{d}"));
        (dir, r)
    }

    #[tokio::test]
    async fn an_endless_body_is_read_up_to_the_limit_only() {
        let (port, sent) = endless_server(200, "hello ");
        let t = std::time::Instant::now();
        let resp = reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap();
        let body = read_prefix(resp, BODY_LIMIT).await;
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(body.text.len(), BODY_LIMIT);
        assert!(body.text.starts_with("hello xxx"));
        assert!(body.truncated);
        assert!(
            body.clone().whole().unwrap_err().contains("larger than 1.0 MiB"),
            "{body:?}"
        );
        // Give the server a moment to notice the closed connection.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            sent.load(Ordering::SeqCst) < 32 << 20,
            "the server sent {} bytes",
            sent.load(Ordering::SeqCst)
        );
    }
}
