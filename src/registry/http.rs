//! The `http` registry and the presets built on it: one templated HTTP call to take a host out
//! of traffic and one to put it back.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::retry::{http_transient, retry, status_transient, CallError};
use super::{sleep_drain, Registry, RegistryError, CALL_TIMEOUT};
use crate::http_body::error_chain;
use crate::inventory::Host;
use crate::playbook::{HttpCall, Template, Templates};
use crate::release::Release;
use crate::ssh::Connection;

/// The most of an error answer that is read (its first 200 characters are shown).
const ERROR_BODY_LIMIT: usize = 4096;

pub struct Http {
    pub deregister: HttpCall,
    pub register: HttpCall,
    pub drain: Duration,
    pub retry: Duration,
    pub client: reqwest::Client,
    /// The templates of a preset's calls, compiled apart from the playbook's.
    pub templates: Option<Templates>,
}

impl Http {
    pub fn new(deregister: HttpCall, register: HttpCall, drain: Duration, retry: Duration) -> Self {
        Http {
            deregister,
            register,
            drain,
            retry,
            client: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .expect("http client"),
            templates: None,
        }
    }

    /// An HTTP call, its transient failures retried for `registry.retry`; the note says what
    /// was retried.
    async fn call_retrying(
        &self,
        r: &Release,
        host: &Host,
        run_id: &str,
        call: &HttpCall,
    ) -> Result<String, RegistryError> {
        let (note, retried) = retry(self.retry, || self.call(r, host, run_id, call)).await?;
        Ok(format!("{note}{}", retried.note()))
    }

    /// A call's URL, headers and body, rendered for `host`.
    fn render(&self, r: &Release, host: &Host, run_id: &str, call: &HttpCall) -> Result<Rendered, String> {
        let ctx = self
            .templates
            .as_ref()
            .map(|_| crate::release::template_context(&r.playbook, host, run_id, None));
        let render = |t: &Template| match (&self.templates, &ctx) {
            (Some(own), Some(ctx)) => own.render(t, ctx),
            _ => r.render(t, host, run_id, None),
        };
        let mut headers = vec![];
        for (name, value) in &call.headers {
            headers.push((name.clone(), render(value)?));
        }
        Ok(Rendered {
            url: render(&call.url)?,
            headers,
            body: call.body.as_ref().map(render).transpose()?,
        })
    }

    /// One try of an HTTP call.
    async fn call(&self, r: &Release, host: &Host, run_id: &str, call: &HttpCall) -> Result<String, CallError> {
        let Rendered { url, headers, body } = self.render(r, host, run_id, call)?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| CallError::from(e.to_string()))?;
        let mut req = self.client.request(method, &url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let shown = crate::redact::url(&url);
        let resp = req.send().await.map_err(|e| {
            let msg = format!("{} {shown}: {}", call.method, error_chain(&e));
            match http_transient(&e) {
                Some(reason) => CallError::transient(reason, msg),
                // A request that could not be built was never sent.
                None if e.is_builder() => CallError::from(msg),
                None => CallError::unknown(msg),
            }
        })?;
        let status = resp.status().as_u16();
        let ok = if call.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            call.expect_status.contains(&status)
        };
        if ok {
            return Ok(format!("{} {shown} -> {status}", call.method));
        }
        // Only the start of the answer is shown, so only that much is read.
        let body = crate::http_body::read_prefix(resp, ERROR_BODY_LIMIT).await;
        let body: String = body.text.chars().take(200).collect();
        let msg = format!("{} {shown} answered {status}: {}", call.method, body.trim());
        Err(match status_transient(status) {
            Some(reason) => CallError::transient(reason, msg),
            // A 4xx is a clear refusal: the registry did not act.
            None if (400..500).contains(&status) => CallError::from(msg),
            // A status other than the ones expected (a 2xx or 3xx not listed): it may have acted.
            None => CallError::unknown(msg),
        })
    }
}

/// A call rendered for one host.
struct Rendered {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Registry for Http {
    fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        async { Ok(()) }.boxed()
    }

    fn deregister_call(&self, r: &Release, host: &Host, run_id: &str) -> Result<String, RegistryError> {
        let c = self
            .render(r, host, run_id, &self.deregister)
            .map_err(RegistryError::NotSent)?;
        Ok(format!(
            "{} {} {}",
            self.deregister.method,
            c.url,
            c.body.unwrap_or_default()
        ))
    }

    fn deregister<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        _conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move {
            let note = self.call_retrying(r, host, run_id, &self.deregister).await?;
            sleep_drain(self.drain).await;
            Ok(note)
        }
        .boxed()
    }

    fn register<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        _conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move { self.call_retrying(r, host, run_id, &self.register).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::http_body::tests::{endless_server, test_release};
    use crate::playbook::RegistrySpec as Spec;

    /// The `http` adapter of a release whose registry is `kind: http`.
    fn adapter(r: &Release) -> Http {
        let Spec::Http { deregister, register } = &r.playbook.registry.spec else {
            panic!("not http")
        };
        Http::new(
            deregister.clone(),
            register.clone(),
            Duration::ZERO,
            r.playbook.registry_retry,
        )
    }

    /// A registry that fails with an endless error page: the call fails on the first lines of
    /// it, and the rest is not read.
    #[tokio::test]
    async fn an_endless_error_answer_is_not_read_whole() {
        let (port, sent) = endless_server(500, "maintenance failed: ");
        let (_dir, r) = test_release(&format!(
            "registry:\n  kind: http\n  deregister: \"http://u:pw123@127.0.0.1:{port}/out?token=t0ken\"\n  register: \"http://127.0.0.1:{port}/in\"\n"
        ));
        let client = adapter(&r);
        let t = Instant::now();
        let err = client
            .call(&r, &r.targets[0], "run", &client.deregister)
            .await
            .unwrap_err()
            .msg;
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert!(
            err.starts_with(&format!(
                "PUT http://***@127.0.0.1:{port}/out?token=*** answered 500: maintenance failed: xxx"
            )),
            "{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
        let n = sent.load(Ordering::SeqCst);
        assert!(n < 32 << 20, "the server sent {n} bytes");
    }

    /// An HTTP server answering the given statuses in turn (the last one from then on).
    fn scripted_server(statuses: &'static [u16]) -> (u16, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
                );
            }
        });
        (port, seen)
    }

    fn http_release(port: u16, retry: &str) -> (tempfile::TempDir, Release) {
        test_release(&format!(
            "registry:\n  kind: http\n  deregister: \"http://127.0.0.1:{port}/out\"\n  register: \"http://127.0.0.1:{port}/in\"\n{retry}"
        ))
    }

    /// An HTTP registry answering 503 twice, then 200: the call succeeds, and says so.
    #[tokio::test]
    async fn an_http_registry_is_retried_through_5xx() {
        let (port, seen) = scripted_server(&[503, 429, 200]);
        let (_dir, r) = http_release(port, "");
        assert_eq!(r.playbook.registry_retry, Duration::from_secs(30));
        let client = adapter(&r);
        let note = client
            .call_retrying(&r, &r.targets[0], "run", &client.register)
            .await
            .unwrap();
        assert_eq!(
            note,
            format!("PUT http://127.0.0.1:{port}/in -> 200 after 2 retries (HTTP 503, HTTP 429)")
        );
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    /// A 404 is an answer, not a fault: one request, and the step fails.
    #[tokio::test]
    async fn an_http_registry_answering_404_is_asked_once() {
        let (port, seen) = scripted_server(&[404]);
        let (_dir, r) = http_release(port, "");
        let client = adapter(&r);
        let err = client
            .call_retrying(&r, &r.targets[0], "run", &client.register)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("PUT http://127.0.0.1:{port}/in answered 404: busy")
        );
        assert!(!err.may_have_acted(), "{err:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    /// `registry.retry: 0` turns retries off.
    #[tokio::test]
    async fn registry_retry_zero_asks_once() {
        let (port, seen) = scripted_server(&[503, 200]);
        let (_dir, r) = http_release(port, "  retry: 0s\n");
        assert_eq!(r.playbook.registry_retry, Duration::ZERO);
        let client = adapter(&r);
        let err = client
            .call_retrying(&r, &r.targets[0], "run", &client.register)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("answered 503"), "{err}");
        assert!(err.may_have_acted(), "{err:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
