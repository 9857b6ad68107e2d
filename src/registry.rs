//! Taking a host out of traffic and putting it back: `none`, `command` (on the host or a
//! delegate), `http` (templated calls), and `haproxy` (runtime API: drain, wait for sessions,
//! maintenance; ready, wait until UP).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

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
        let info = api.command("show info").await?;
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

    /// Take `host` out of traffic and drain it. Returns a note for the event.
    pub async fn deregister(
        &self,
        r: &Release,
        host: &Host,
        conn: &Connection,
        run_id: &str,
    ) -> Result<String, String> {
        match &r.playbook.registry {
            Registry::None => Ok("no registry".into()),
            Registry::Command { deregister, drain, .. } => {
                let cmd = r.render(deregister, host, run_id, None)?;
                let note = self.run_command(conn, &cmd).await?;
                sleep_drain(*drain).await;
                Ok(note)
            }
            Registry::Http { deregister, drain, .. } => {
                let note = self.call(r, host, run_id, deregister).await?;
                sleep_drain(*drain).await;
                Ok(note)
            }
            Registry::Haproxy { drain, .. } => {
                let (api, b, s) = haproxy_target(r, host, run_id, self.lb.get().cloned())?;
                api.command(&format!("set server {b}/{s} state drain"))
                    .await
                    .and_then(expect_empty)?;
                // Wait until the server has no sessions left, or the drain time is up.
                let deadline = tokio::time::Instant::now() + *drain;
                let mut sessions = api.sessions(&b, &s).await?;
                while sessions > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    sessions = api.sessions(&b, &s).await?;
                }
                api.command(&format!("set server {b}/{s} state maint"))
                    .await
                    .and_then(expect_empty)?;
                Ok(if sessions == 0 {
                    "drained, in maintenance".into()
                } else {
                    format!("in maintenance with {sessions} sessions left after the drain time")
                })
            }
        }
    }

    /// Put `host` back into traffic and wait until the registry reports it serving.
    pub async fn register(&self, r: &Release, host: &Host, conn: &Connection, run_id: &str) -> Result<String, String> {
        match &r.playbook.registry {
            Registry::None => Ok("no registry".into()),
            Registry::Command { register, .. } => {
                let cmd = r.render(register, host, run_id, None)?;
                self.run_command(conn, &cmd).await
            }
            Registry::Http { register, .. } => self.call(r, host, run_id, register).await,
            Registry::Haproxy { .. } => {
                let (api, b, s) = haproxy_target(r, host, run_id, self.lb.get().cloned())?;
                api.command(&format!("set server {b}/{s} state ready"))
                    .await
                    .and_then(expect_empty)?;
                let deadline = tokio::time::Instant::now() + UP_TIMEOUT;
                loop {
                    if api.is_up(&b, &s).await? {
                        return Ok("UP in HAProxy".into());
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!(
                            "HAProxy did not report {b}/{s} UP within {}s",
                            UP_TIMEOUT.as_secs()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
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

    async fn call(&self, r: &Release, host: &Host, run_id: &str, call: &HttpCall) -> Result<String, String> {
        let url = r.render(&call.url, host, run_id, None)?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.http.request(method, &url);
        for (name, value) in &call.headers {
            req = req.header(name, r.render(value, host, run_id, None)?);
        }
        if let Some(body) = &call.body {
            req = req.body(r.render(body, host, run_id, None)?);
        }
        let shown = crate::redact::url(&url);
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{} {shown}: {}", call.method, error_chain(&e)))?;
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
            Err(format!("{} {shown} answered {status}: {}", call.method, body.trim()))
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

fn expect_empty(answer: String) -> Result<(), String> {
    let a = answer.trim();
    if a.is_empty() {
        Ok(())
    } else {
        Err(format!("HAProxy answered: {a}"))
    }
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
    pub async fn command(&self, cmd: &str) -> Result<String, String> {
        if let (Some(conn), Some((_, path))) = (&self.via, ssh_address(&self.address)) {
            // socat, else Python, else OpenBSD nc: whichever the load balancer host has.
            let script = crate::remote::haproxy(path, cmd).to_command();
            let out = conn
                .exec(&script, Duration::from_secs(10))
                .await
                .map_err(|e| format!("HAProxy runtime API at {}: {e}", self.address))?;
            if !out.success() {
                return Err(format!("HAProxy runtime API at {}: {}", self.address, out.describe()));
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
            Ok(Err(e)) => Err(format!("HAProxy runtime API at {}: {e}", self.address)),
            Err(_) => Err(format!("HAProxy runtime API at {}: no answer within 10s", self.address)),
        }
    }

    /// Current sessions of one server (`show stat`, column `scur`).
    pub async fn sessions(&self, backend: &str, server: &str) -> Result<u64, String> {
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
        Err(format!("HAProxy has no server {backend}/{server}"))
    }

    /// Whether HAProxy reports the server UP with a passed health check.
    pub async fn is_up(&self, backend: &str, server: &str) -> Result<bool, String> {
        let state = self.server_state(backend, server).await?;
        // srv_op_state 2 = running; srv_check_result 3 = passed (or no checks: 0 with state 2).
        Ok(state.op_state == 2 && (state.check_result == 3 || !state.check_enabled))
    }

    pub async fn server_state(&self, backend: &str, server: &str) -> Result<ServerState, String> {
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
        ))
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
        let err = client.call(&r, &r.targets[0], "run", deregister).await.unwrap_err();
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
