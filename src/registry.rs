//! Taking a host out of traffic and putting it back: `none`, `command` (on the host or a
//! delegate), `http` (templated calls), and `haproxy` (runtime API: drain, wait for sessions,
//! maintenance; ready, wait until UP).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::http_body::error_chain;
use crate::inventory::Host;
use crate::playbook::{HttpCall, Registry};
use crate::release::Release;
use crate::ssh::Connection;

/// Remote registry commands and HTTP calls get this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of an error answer that is read (its first 200 characters are shown).
const ERROR_BODY_LIMIT: usize = 4096;
/// How long to wait for HAProxy to report a server UP after `ready`.
const UP_TIMEOUT: Duration = Duration::from_secs(60);

/// The registry of a run, shared by every host pipeline.
pub struct RegistryClient {
    http: reqwest::Client,
    /// Calls to one delegate host are serialised.
    delegate: Mutex<Option<Connection>>,
    /// The load balancer host of an `ssh://` HAProxy address.
    lb: std::sync::OnceLock<Arc<Connection>>,
}

impl RegistryClient {
    pub fn new(delegate: Option<Connection>) -> Self {
        RegistryClient {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .expect("http client"),
            delegate: Mutex::new(delegate),
            lb: std::sync::OnceLock::new(),
        }
    }

    /// HAProxy's runtime API answers `show info`.
    pub async fn check_haproxy(&self, address: &str) -> Result<(), String> {
        let api = HaproxyApi {
            address: address.to_string(),
            via: self.lb.get().cloned(),
        };
        let info = api.command("show info").await.map_err(|e| e.msg)?;
        if info.contains("Name:") {
            Ok(())
        } else {
            Err(format!(
                "HAProxy runtime API at {address} does not answer `show info`: {}",
                info.trim()
            ))
        }
    }

    /// The load balancer host of an `ssh://` HAProxy address.
    pub fn set_lb(&self, conn: Connection) {
        let _ = self.lb.set(Arc::new(conn));
    }

    /// Run `command` registry calls on this host instead of the released one.
    pub async fn set_delegate(&self, conn: Connection) {
        *self.delegate.lock().await = Some(conn);
    }

    pub async fn close(&self) {
        if let Some(c) = self.delegate.lock().await.take() {
            c.close().await;
        }
        if let Some(c) = self.lb.get() {
            c.close().await;
        }
    }

    /// Take `host` out of traffic and drain it. Returns a note for the event. Transient
    /// failures of HTTP and HAProxy calls are retried for `registry.retry`.
    pub async fn deregister(
        &self,
        r: &Release,
        host: &Host,
        conn: &Connection,
        run_id: &str,
    ) -> Result<String, String> {
        let budget = r.playbook.registry_retry;
        match &r.playbook.registry {
            Registry::None => Ok("no registry".into()),
            Registry::Command { deregister, drain, .. } => {
                let cmd = r.render(deregister, host, run_id, None)?;
                let note = self.run_command(conn, &cmd).await?;
                sleep_drain(*drain).await;
                Ok(note)
            }
            Registry::Http { deregister, drain, .. } => {
                let note = self.call_retrying(r, host, run_id, deregister).await?;
                sleep_drain(*drain).await;
                Ok(note)
            }
            Registry::Haproxy { drain, .. } => {
                let (api, b, s) = haproxy_target(r, host, run_id, self.lb.get().cloned())?;
                let (note, retried) = retry(budget, || api.drain(&b, &s, *drain)).await?;
                Ok(format!("{note}{}", retried.note()))
            }
        }
    }

    /// Put `host` back into traffic and wait until the registry reports it serving. Transient
    /// failures of HTTP and HAProxy calls are retried for `registry.retry`.
    pub async fn register(&self, r: &Release, host: &Host, conn: &Connection, run_id: &str) -> Result<String, String> {
        let budget = r.playbook.registry_retry;
        match &r.playbook.registry {
            Registry::None => Ok("no registry".into()),
            Registry::Command { register, .. } => {
                let cmd = r.render(register, host, run_id, None)?;
                self.run_command(conn, &cmd).await
            }
            Registry::Http { register, .. } => self.call_retrying(r, host, run_id, register).await,
            Registry::Haproxy { .. } => {
                let (api, b, s) = haproxy_target(r, host, run_id, self.lb.get().cloned())?;
                let (note, retried) = retry(budget, || api.ready(&b, &s)).await?;
                Ok(format!("{note}{}", retried.note()))
            }
        }
    }

    async fn run_command(&self, conn: &Connection, cmd: &str) -> Result<String, String> {
        // Calls to the delegate are serialised by its lock; calls on the host itself are not.
        let guard = self.delegate.lock().await;
        let target = match guard.as_ref() {
            Some(d) => d,
            None => {
                drop(guard);
                return self.exec_checked(conn, cmd).await;
            }
        };
        self.exec_checked(target, cmd).await
    }

    async fn exec_checked(&self, target: &Connection, cmd: &str) -> Result<String, String> {
        let out = target.exec(cmd, CALL_TIMEOUT).await.map_err(|e| e.to_string())?;
        if out.success() {
            Ok(format!("ran on {}", target.endpoint.name))
        } else {
            Err(format!(
                "registry command on {} failed: {}",
                target.endpoint.name,
                out.describe()
            ))
        }
    }

    /// An HTTP call, its transient failures retried for `registry.retry`; the note says what
    /// was retried.
    async fn call_retrying(&self, r: &Release, host: &Host, run_id: &str, call: &HttpCall) -> Result<String, String> {
        let (note, retried) = retry(r.playbook.registry_retry, || self.call(r, host, run_id, call)).await?;
        Ok(format!("{note}{}", retried.note()))
    }

    /// One try of an HTTP call.
    async fn call(&self, r: &Release, host: &Host, run_id: &str, call: &HttpCall) -> Result<String, CallError> {
        let url = r.render(&call.url, host, run_id, None)?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| CallError::from(e.to_string()))?;
        let mut req = self.http.request(method, &url);
        for (name, value) in &call.headers {
            req = req.header(name, r.render(value, host, run_id, None)?);
        }
        if let Some(body) = &call.body {
            req = req.body(r.render(body, host, run_id, None)?);
        }
        let shown = crate::redact::url(&url);
        let resp = req.send().await.map_err(|e| CallError {
            msg: format!("{} {shown}: {}", call.method, error_chain(&e)),
            transient: http_transient(&e).map(str::to_string),
        })?;
        let status = resp.status().as_u16();
        let ok = if call.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            call.expect_status.contains(&status)
        };
        if ok {
            Ok(format!("{} {shown} -> {status}", call.method))
        } else {
            // Only the start of the answer is shown, so only that much is read.
            let body = crate::http_body::read_prefix(resp, ERROR_BODY_LIMIT).await;
            let body: String = body.text.chars().take(200).collect();
            Err(CallError {
                msg: format!("{} {shown} answered {status}: {}", call.method, body.trim()),
                transient: status_transient(status),
            })
        }
    }
}

/// The runtime API and the `backend`/`server` names of `host` in an HAProxy registry.
fn haproxy_target(
    r: &Release,
    host: &Host,
    run_id: &str,
    via: Option<Arc<Connection>>,
) -> Result<(HaproxyApi, String, String), String> {
    let Registry::Haproxy {
        address,
        backend,
        server,
        ..
    } = &r.playbook.registry
    else {
        return Err("the registry is not haproxy".into());
    };
    let b = r.render(backend, host, run_id, None)?;
    let s = r.render(server, host, run_id, None)?;
    // Checked per host when the release was planned; refused here too, as the runtime API
    // splits commands on `;` and one bad name would run another command.
    for (what, name) in [("backend", &b), ("server", &s)] {
        if let Some(problem) = crate::playbook::check::haproxy_name_problem(name) {
            return Err(format!("HAProxy {what} name {:?} {problem}", name));
        }
    }
    Ok((
        HaproxyApi {
            address: address.clone(),
            via,
        },
        b,
        s,
    ))
}

async fn sleep_drain(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn expect_empty(answer: String) -> Result<(), CallError> {
    let a = answer.trim();
    if a.is_empty() {
        Ok(())
    } else {
        Err(format!("HAProxy answered: {a}").into())
    }
}

/// The first wait before a retry; it doubles up to [`RETRY_DELAY_MAX`].
pub const RETRY_DELAY_FIRST: Duration = Duration::from_millis(200);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

/// A failed registry, load balancer or monitoring call: `transient` names a failure worth
/// another try (`connection refused`, `connection reset`, `timeout`, `HTTP 503`, ...).
#[derive(Debug, Clone)]
pub struct CallError {
    pub msg: String,
    pub transient: Option<String>,
}

impl CallError {
    pub fn transient(reason: impl Into<String>, msg: impl Into<String>) -> Self {
        CallError {
            msg: msg.into(),
            transient: Some(reason.into()),
        }
    }
}

impl From<String> for CallError {
    fn from(msg: String) -> Self {
        CallError { msg, transient: None }
    }
}

impl From<&str> for CallError {
    fn from(msg: &str) -> Self {
        msg.to_string().into()
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Whether an I/O error of a connection is worth another try.
pub fn io_transient(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Some("connection refused"),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Some("connection reset"),
        TimedOut => Some("timeout"),
        // A Unix socket is removed and made again while its server restarts.
        NotFound => Some("socket missing"),
        _ => None,
    }
}

/// Whether a failed HTTP request (no answer) is worth another try.
pub fn http_transient(e: &reqwest::Error) -> Option<&'static str> {
    let chain = error_chain(e).to_ascii_lowercase();
    if e.is_timeout() || chain.contains("timed out") {
        Some("timeout")
    } else if chain.contains("refused") {
        Some("connection refused")
    } else if chain.contains("reset") || chain.contains("connection closed") || chain.contains("broken pipe") {
        Some("connection reset")
    } else if e.is_connect() {
        Some("connection failed")
    } else {
        None
    }
}

/// Whether an HTTP answer's status is worth another try: 5xx and 429.
pub fn status_transient(status: u16) -> Option<String> {
    (status == 429 || (500..=599).contains(&status)).then(|| format!("HTTP {status}"))
}

/// What a retried call went through, for the step's message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retried {
    pub count: u32,
    /// The distinct transient failures, in the order first seen.
    pub reasons: Vec<String>,
}

impl Retried {
    /// ` after 3 retries (connection refused)`, or nothing when there was none.
    pub fn note(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        format!(" after {} ({})", self.counted(), self.reasons.join(", "))
    }

    fn counted(&self) -> String {
        match self.count {
            1 => "1 retry".to_string(),
            n => format!("{n} retries"),
        }
    }
}

/// Run `op` until it succeeds, fails for good (not transient), or `budget` has passed since
/// the first try: transient failures are tried again after 200 ms, doubling up to 5 s (the
/// last wait is cut to what is left of the budget). A zero budget tries once.
pub async fn retry<T, F, Fut>(budget: Duration, mut op: F) -> Result<(T, Retried), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = RETRY_DELAY_FIRST;
    let mut retried = Retried::default();
    loop {
        let e = match op().await {
            Ok(v) => return Ok((v, retried)),
            Err(e) => e,
        };
        let Some(reason) = e.transient else {
            return Err(if retried.count == 0 {
                e.msg
            } else {
                format!(
                    "{} (after {}: {})",
                    e.msg,
                    retried.counted(),
                    retried.reasons.join(", ")
                )
            });
        };
        if !retried.reasons.contains(&reason) {
            retried.reasons.push(reason);
        }
        let left = budget.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(if budget.is_zero() {
                e.msg
            } else {
                format!(
                    "{} (gave up after {} in {}: {})",
                    e.msg,
                    retried.counted(),
                    crate::units::human_duration(budget),
                    retried.reasons.join(", ")
                )
            });
        }
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(RETRY_DELAY_MAX);
        retried.count += 1;
    }
}

/// HAProxy's runtime API over TCP (`host:port`), a local Unix socket (`/path`), or a Unix
/// socket on another machine reached over SSH (`ssh://lb-host/path`, through `via`).
pub struct HaproxyApi {
    pub address: String,
    pub via: Option<Arc<Connection>>,
}

/// The host and socket path of an `ssh://[user@]host[:port]/path` address.
pub fn ssh_address(address: &str) -> Option<(&str, &str)> {
    let rest = address.strip_prefix("ssh://")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// The most of a runtime API answer that is read.
const API_ANSWER_MAX: u64 = 8 << 20;

impl HaproxyApi {
    /// One command; refused, reset, timed out or a missing socket are transient.
    pub async fn command(&self, cmd: &str) -> Result<String, CallError> {
        if let (Some(conn), Some((_, path))) = (&self.via, ssh_address(&self.address)) {
            // socat, else Python, else OpenBSD nc: whichever the load balancer host has.
            let script = crate::remote::haproxy(path, cmd).to_command();
            let out = conn
                .exec(&script, Duration::from_secs(10))
                .await
                .map_err(|e| format!("HAProxy runtime API at {}: {e}", self.address))?;
            if !out.success() {
                let msg = format!("HAProxy runtime API at {}: {}", self.address, out.describe());
                let said = out.stderr.to_ascii_lowercase();
                let reason = if said.contains("refused") {
                    Some("connection refused")
                } else if said.contains("no such file") {
                    Some("socket missing")
                } else if said.contains("reset") || said.contains("broken pipe") {
                    Some("connection reset")
                } else {
                    None
                };
                return Err(CallError {
                    msg,
                    transient: reason.map(str::to_string),
                });
            }
            return Ok(out.stdout);
        }
        // The answer is read up to a bound (`show stat` of a large backend is tens of KiB): an
        // endpoint that is not HAProxy and streams forever cannot fill the memory.
        let fut = async {
            let mut answer = String::new();
            if self.address.starts_with('/') {
                let mut s = tokio::net::UnixStream::connect(&self.address).await?;
                s.write_all(format!("{cmd}\n").as_bytes()).await?;
                s.take(API_ANSWER_MAX).read_to_string(&mut answer).await?;
            } else {
                let mut s = tokio::net::TcpStream::connect(&self.address).await?;
                s.write_all(format!("{cmd}\n").as_bytes()).await?;
                s.take(API_ANSWER_MAX).read_to_string(&mut answer).await?;
            }
            Ok::<String, std::io::Error>(answer)
        };
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(CallError {
                msg: format!("HAProxy runtime API at {}: {e}", self.address),
                transient: io_transient(&e).map(str::to_string),
            }),
            Err(_) => Err(CallError::transient(
                "timeout",
                format!("HAProxy runtime API at {}: no answer within 10s", self.address),
            )),
        }
    }

    /// Drain the server, wait until it has no sessions left or `drain` is up, then put it in
    /// maintenance. Every command is idempotent, so a retry starts over.
    pub async fn drain(&self, b: &str, s: &str, drain: Duration) -> Result<String, CallError> {
        self.command(&format!("set server {b}/{s} state drain"))
            .await
            .and_then(expect_empty)?;
        let deadline = tokio::time::Instant::now() + drain;
        let mut sessions = self.sessions(b, s).await?;
        while sessions > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sessions = self.sessions(b, s).await?;
        }
        self.command(&format!("set server {b}/{s} state maint"))
            .await
            .and_then(expect_empty)?;
        Ok(if sessions == 0 {
            "drained, in maintenance".into()
        } else {
            format!("in maintenance with {sessions} sessions left after the drain time")
        })
    }

    /// Set the server ready and wait until HAProxy reports it UP. Idempotent, so a retry
    /// starts over.
    pub async fn ready(&self, b: &str, s: &str) -> Result<String, CallError> {
        self.command(&format!("set server {b}/{s} state ready"))
            .await
            .and_then(expect_empty)?;
        let deadline = tokio::time::Instant::now() + UP_TIMEOUT;
        loop {
            if self.is_up(b, s).await? {
                return Ok("UP in HAProxy".into());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("HAProxy did not report {b}/{s} UP within {}s", UP_TIMEOUT.as_secs()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Current sessions of one server (`show stat`, column `scur`).
    pub async fn sessions(&self, backend: &str, server: &str) -> Result<u64, CallError> {
        let stat = self.command("show stat").await?;
        let mut lines = stat.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").trim_start_matches("# ").split(',').collect();
        let scur = header
            .iter()
            .position(|h| *h == "scur")
            .ok_or("HAProxy `show stat` has no scur column")?;
        for line in lines {
            let cols: Vec<&str> = line.split(',').collect();
            if cols.first() == Some(&backend) && cols.get(1) == Some(&server) {
                return Ok(cols.get(scur).and_then(|v| v.parse().ok()).unwrap_or(0));
            }
        }
        Err(format!("HAProxy has no server {backend}/{server}").into())
    }

    /// Whether HAProxy reports the server UP with a passed health check.
    pub async fn is_up(&self, backend: &str, server: &str) -> Result<bool, CallError> {
        let state = self.server_state(backend, server).await?;
        // srv_op_state 2 = running; srv_check_result 3 = passed (or no checks: 0 with state 2).
        Ok(state.op_state == 2 && (state.check_result == 3 || !state.check_enabled))
    }

    pub async fn server_state(&self, backend: &str, server: &str) -> Result<ServerState, CallError> {
        let out = self.command(&format!("show servers state {backend}")).await?;
        let mut lines = out.lines().filter(|l| !l.trim().is_empty());
        let _version = lines.next();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split_whitespace()
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (name_i, op_i, admin_i, res_i, chk_i) = (
            col("srv_name"),
            col("srv_op_state"),
            col("srv_admin_state"),
            col("srv_check_result"),
            col("srv_check_state"),
        );
        for line in lines {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if name_i.and_then(|i| cols.get(i)) == Some(&server) {
                let num = |i: Option<usize>| {
                    i.and_then(|i| cols.get(i))
                        .and_then(|v| v.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                return Ok(ServerState {
                    op_state: num(op_i),
                    admin_state: num(admin_i),
                    check_result: num(res_i),
                    check_enabled: num(chk_i) & 0x2 != 0 || num(res_i) != 0,
                });
            }
        }
        Err(format!(
            "HAProxy has no server {backend}/{server}: {}",
            out.lines().next().unwrap_or("").trim()
        )
        .into())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ServerState {
    pub op_state: u32,
    pub admin_state: u32,
    pub check_result: u32,
    pub check_enabled: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use crate::http_body::tests::{endless_server, test_release};
    use crate::playbook::Registry;

    /// An address that is not HAProxy and streams forever: the answer is read up to its bound,
    /// in bounded time, and the rest is not read.
    #[tokio::test]
    async fn an_endless_runtime_api_answer_is_not_read_whole() {
        let (port, sent) = endless_server(200, "");
        let api = super::HaproxyApi {
            address: format!("127.0.0.1:{port}"),
            via: None,
        };
        let t = Instant::now();
        let answer = api.command("show info").await.expect("an answer");
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert_eq!(answer.len() as u64, super::API_ANSWER_MAX);
        std::thread::sleep(Duration::from_millis(200));
        let n = sent.load(Ordering::SeqCst);
        assert!(n < 64 << 20, "the server sent {n} bytes");
    }

    /// A registry that fails with an endless error page: the call fails on the first lines of
    /// it, and the rest is not read.
    #[tokio::test]
    async fn an_endless_error_answer_is_not_read_whole() {
        let (port, sent) = endless_server(500, "maintenance failed: ");
        let (_dir, r) = test_release(&format!(
            "registry:\n  kind: http\n  deregister: \"http://u:pw123@127.0.0.1:{port}/out?token=t0ken\"\n  register: \"http://127.0.0.1:{port}/in\"\n"
        ));
        let Registry::Http { deregister, .. } = &r.playbook.registry else {
            panic!("not http")
        };
        let client = super::RegistryClient::new(None);
        let t = Instant::now();
        let err = client.call(&r, &r.targets[0], "run", deregister).await.unwrap_err().msg;
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
}

#[cfg(test)]
mod name_check_tests {
    use super::*;
    use crate::release::ReleaseRequest;

    /// The plan refuses such names; the registry refuses them too, should a name reach it
    /// another way (here an inventory changed after planning).
    #[test]
    fn haproxy_names_outside_haproxys_charset_are_refused() {
        let dir = std::env::current_dir().unwrap().join("tests/bad/hosts");
        let req = ReleaseRequest {
            inventories: vec![dir.join("inventory.yml")],
            playbook: dir.join("haproxy-server.yml"),
            limit: Some("web-01".into()),
            extra_vars: vec![],
        };
        let r = Release::load(&req).unwrap();
        let mut host = r.targets[0].clone();
        assert!(haproxy_target(&r, &host, "run", None).is_ok());
        host.vars.insert("lb_name".into(), "web-01;disable frontend www".into());
        let err = haproxy_target(&r, &host, "run", None).err().unwrap();
        assert!(err.contains("server name") && err.contains("`;`"), "{err}");
    }
}

#[cfg(test)]
mod retry_tests {
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::http_body::tests::test_release;

    fn refused() -> CallError {
        CallError::transient(
            "connection refused",
            "HAProxy runtime API at 127.0.0.1:1: Connection refused",
        )
    }

    /// A call that fails transiently every time is tried until the budget is spent (waits of
    /// 0.2, 0.4, 0.8, 1.6, 3.2 s, then 5 s, the last cut to what is left), then fails saying so.
    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(refused()) }
        })
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // 0.2+0.4+0.8+1.6+3.2 = 6.2 s, four waits of 5 s to 26.2 s, then 3.8 s to 30 s.
        assert_eq!(tries.get(), 11);
        assert_eq!(
            err,
            "HAProxy runtime API at 127.0.0.1:1: Connection refused \
             (gave up after 10 retries in 30.0s: connection refused)"
        );
    }

    /// A failure that is not transient (an HTTP 404, a refused HAProxy command) is not tried
    /// again, and its message is the call's own.
    #[tokio::test(start_paused = true)]
    async fn does_not_retry_a_4xx() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            async {
                Err::<(), _>(CallError {
                    msg: "PUT http://r/out answered 404: no such service".into(),
                    transient: status_transient(404),
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(err, "PUT http://r/out answered 404: no such service");
    }

    /// After transient failures the call succeeds, and the note says what was retried.
    #[tokio::test(start_paused = true)]
    async fn succeeds_after_transient_failures() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let (v, retried) = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                match n {
                    1 | 3 => Err(refused()),
                    2 => Err(CallError::transient("HTTP 503", "answered 503")),
                    _ => Ok("UP in HAProxy"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, "UP in HAProxy");
        assert_eq!(tries.get(), 4);
        assert_eq!(start.elapsed(), Duration::from_millis(200 + 400 + 800));
        assert_eq!(
            format!("{v}{}", retried.note()),
            "UP in HAProxy after 3 retries (connection refused, HTTP 503)"
        );
    }

    /// A failure for good after transient ones says how many retries came before it.
    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_after_retries_names_them() {
        let tries = Cell::new(0);
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n == 1 {
                    Err::<(), _>(refused())
                } else {
                    Err("HAProxy answered: No such server.".into())
                }
            }
        })
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 2);
        assert_eq!(
            err,
            "HAProxy answered: No such server. (after 1 retry: connection refused)"
        );
    }

    /// `registry.retry: 0` tries once, and the message is the call's own.
    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_tries_once() {
        let tries = Cell::new(0);
        let err = retry(Duration::ZERO, || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(refused()) }
        })
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 1);
        assert_eq!(err, "HAProxy runtime API at 127.0.0.1:1: Connection refused");
    }

    #[test]
    fn statuses_worth_another_try() {
        for (status, transient) in [
            (400, false),
            (401, false),
            (404, false),
            (409, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (599, true),
        ] {
            assert_eq!(status_transient(status).is_some(), transient, "{status}");
        }
    }

    /// HAProxy's runtime API not listening (stopped, restarting) is a transient failure.
    #[tokio::test]
    async fn a_runtime_api_that_refuses_is_transient() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let api = HaproxyApi {
            address: format!("127.0.0.1:{port}"),
            via: None,
        };
        let e = api.command("show info").await.unwrap_err();
        assert_eq!(e.transient.as_deref(), Some("connection refused"), "{e}");
        let gone = HaproxyApi {
            address: "/nonexistent/haproxy.sock".into(),
            via: None,
        };
        let e = gone.command("show info").await.unwrap_err();
        assert_eq!(e.transient.as_deref(), Some("socket missing"), "{e}");
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
        let Registry::Http { register, .. } = &r.playbook.registry else {
            panic!("not http")
        };
        let client = RegistryClient::new(None);
        let note = client.call_retrying(&r, &r.targets[0], "run", register).await.unwrap();
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
        let Registry::Http { register, .. } = &r.playbook.registry else {
            panic!("not http")
        };
        let err = RegistryClient::new(None)
            .call_retrying(&r, &r.targets[0], "run", register)
            .await
            .unwrap_err();
        assert_eq!(err, format!("PUT http://127.0.0.1:{port}/in answered 404: busy"));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    /// `registry.retry: 0` turns retries off.
    #[tokio::test]
    async fn registry_retry_zero_asks_once() {
        let (port, seen) = scripted_server(&[503, 200]);
        let (_dir, r) = http_release(port, "  retry: 0s\n");
        assert_eq!(r.playbook.registry_retry, Duration::ZERO);
        let Registry::Http { register, .. } = &r.playbook.registry else {
            panic!("not http")
        };
        let err = RegistryClient::new(None)
            .call_retrying(&r, &r.targets[0], "run", register)
            .await
            .unwrap_err();
        assert!(err.contains("answered 503"), "{err}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
