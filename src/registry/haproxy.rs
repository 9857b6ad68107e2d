//! The `haproxy` registry: HAProxy's runtime API (drain, wait for sessions, maintenance; ready,
//! wait until UP), over TCP, a local Unix socket, or a socket on the load balancer host reached
//! over its own SSH link.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::retry::{io_transient, retry, CallError};
use super::{Link, LinkRole, Registry, RegistryError};
use crate::inventory::Host;
use crate::playbook::Template;
use crate::release::Release;
use crate::ssh::Connection;

/// How long to wait for HAProxy to report a server UP after `ready`.
const UP_TIMEOUT: Duration = Duration::from_secs(60);

/// A host taken out of traffic in HAProxy: `backend`/`server` rendered per host.
pub struct Haproxy {
    pub address: String,
    pub backend: Template,
    pub server: Template,
    pub drain: Duration,
    pub retry: Duration,
    /// The load balancer host of an `ssh://` address, attached before the run.
    pub lb: OnceLock<Arc<Connection>>,
}

impl Haproxy {
    fn api(&self) -> HaproxyApi {
        HaproxyApi {
            address: self.address.clone(),
            via: self.lb.get().cloned(),
        }
    }

    /// The `backend` and `server` names of `host`.
    fn names(&self, r: &Release, host: &Host, run_id: &str) -> Result<(String, String), RegistryError> {
        let render = |t| r.render(t, host, run_id, None).map_err(RegistryError::NotSent);
        let (b, s) = (render(&self.backend)?, render(&self.server)?);
        // Checked per host when the release was planned; refused here too, as the runtime API
        // splits commands on `;` and one bad name would run another command.
        for (what, name) in [("backend", &b), ("server", &s)] {
            if let Some(problem) = crate::playbook::check::haproxy_name_problem(name) {
                return Err(RegistryError::NotSent(format!(
                    "HAProxy {what} name {name:?} {problem}"
                )));
            }
        }
        Ok((b, s))
    }
}

impl Registry for Haproxy {
    fn link(&self) -> Option<Link> {
        let (target, _) = ssh_address(&self.address)?;
        Some(Link {
            target: target.to_string(),
            role: LinkRole::LoadBalancer,
        })
    }

    fn attach(&self, conn: Connection) {
        let _ = self.lb.set(Arc::new(conn));
    }

    /// HAProxy's runtime API answers `show info`.
    fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        async move {
            let info = self.api().command("show info").await?;
            if info.contains("Name:") {
                Ok(())
            } else {
                Err(RegistryError::Refused(format!(
                    "HAProxy runtime API at {} does not answer `show info`: {}",
                    self.address,
                    info.trim()
                )))
            }
        }
        .boxed()
    }

    fn deregister<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        _conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move {
            let (b, s) = self.names(r, host, run_id)?;
            let api = self.api();
            let (note, retried) = retry(self.retry, || api.drain(&b, &s, self.drain)).await?;
            Ok(format!("{note}{}", retried.note()))
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
        async move {
            let (b, s) = self.names(r, host, run_id)?;
            let api = self.api();
            let (note, retried) = retry(self.retry, || api.ready(&b, &s)).await?;
            Ok(format!("{note}{}", retried.note()))
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            if let Some(c) = self.lb.get() {
                c.close().await;
            }
        }
        .boxed()
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
                .map_err(|e| CallError::unknown(format!("HAProxy runtime API at {}: {e}", self.address)))?;
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
                return Err(match reason {
                    Some(reason) => CallError::transient(reason, msg),
                    None => CallError::unknown(msg),
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
            Ok(Err(e)) => {
                let msg = format!("HAProxy runtime API at {}: {e}", self.address);
                Err(match io_transient(&e) {
                    Some(reason) => CallError::transient(reason, msg),
                    None => CallError::unknown(msg),
                })
            }
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
        // From here the server is draining: a failure leaves it out of traffic.
        let deadline = tokio::time::Instant::now() + drain;
        let mut sessions = self.sessions(b, s).await.map_err(CallError::after_acting)?;
        while sessions > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sessions = self.sessions(b, s).await.map_err(CallError::after_acting)?;
        }
        self.command(&format!("set server {b}/{s} state maint"))
            .await
            .and_then(expect_empty)
            .map_err(CallError::after_acting)?;
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
            // The server is set ready: a failure from here may leave it in traffic.
            if self.is_up(b, s).await.map_err(CallError::after_acting)? {
                return Ok("UP in HAProxy".into());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(CallError::unknown(format!(
                    "HAProxy did not report {b}/{s} UP within {}s",
                    UP_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Blue-green's switch: every server's weight (`backend`, `server`, weight), sent as
    /// `;`-separated commands on one line of one connection, so HAProxy applies them one after
    /// the other as it reads the line: no reload, and every server changes within the time
    /// HAProxy takes to run one line. A server given weight is also set `ready` (a rolling run
    /// may have left it in maintenance). A very long switch is cut into lines of at most
    /// [`SWITCH_LINE_MAX`] bytes (HAProxy reads a command line into one buffer), sent at once.
    /// Returns the time from sending the first line to the last answer: an upper bound on the
    /// time between the first and the last server switched.
    pub async fn set_weights(&self, servers: &[(String, String, u32)]) -> Result<Duration, CallError> {
        let lines = weight_lines(servers);
        let started = tokio::time::Instant::now();
        let answers = futures::future::join_all(lines.iter().map(|l| self.command(l))).await;
        let took = started.elapsed();
        for a in answers {
            expect_empty(a?)?;
        }
        Ok(took)
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
        let (name_i, op_i, res_i, chk_i) = (
            col("srv_name"),
            col("srv_op_state"),
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

/// The longest command line a switch sends (HAProxy's default buffer is 16 KiB).
pub const SWITCH_LINE_MAX: usize = 8 * 1024;

/// The command lines of a switch: `set server B/S state ready; set weight B/S W` per server
/// with weight, `set weight B/S 0` per server without, joined by `;` up to the line limit.
pub fn weight_lines(servers: &[(String, String, u32)]) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for (b, s, w) in servers {
        let cmd = if *w > 0 {
            format!("set server {b}/{s} state ready; set weight {b}/{s} {w}")
        } else {
            format!("set weight {b}/{s} 0")
        };
        if !line.is_empty() && line.len() + 2 + cmd.len() > SWITCH_LINE_MAX {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push_str("; ");
        }
        line.push_str(&cmd);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[derive(Debug, Clone, Copy)]
pub struct ServerState {
    pub op_state: u32,
    pub check_result: u32,
    pub check_enabled: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use crate::http_body::tests::endless_server;

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

    #[test]
    fn a_switch_is_one_line_until_it_is_too_long() {
        let servers: Vec<(String, String, u32)> = (0..12)
            .map(|i| {
                (
                    "demo".to_string(),
                    format!("web-{i:02}-blue"),
                    if i % 2 == 0 { 100 } else { 0 },
                )
            })
            .collect();
        let lines = super::weight_lines(&servers);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("set server demo/web-00-blue state ready; set weight demo/web-00-blue 100; set weight demo/web-01-blue 0;"), "{}", lines[0]);
        let many: Vec<(String, String, u32)> = (0..1000)
            .map(|i| ("demo".to_string(), format!("web-{i:04}"), 100))
            .collect();
        let lines = super::weight_lines(&many);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= super::SWITCH_LINE_MAX));
        assert_eq!(
            lines.iter().map(|l| l.matches("set weight").count()).sum::<usize>(),
            1000
        );
    }

    /// HAProxy's runtime API not listening (stopped, restarting) is a transient failure.
    #[tokio::test]
    async fn a_runtime_api_that_refuses_is_transient() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let api = super::HaproxyApi {
            address: format!("127.0.0.1:{port}"),
            via: None,
        };
        let e = api.command("show info").await.unwrap_err();
        assert_eq!(e.transient.as_deref(), Some("connection refused"), "{e}");
        let gone = super::HaproxyApi {
            address: "/nonexistent/haproxy.sock".into(),
            via: None,
        };
        let e = gone.command("show info").await.unwrap_err();
        assert_eq!(e.transient.as_deref(), Some("socket missing"), "{e}");
    }

    /// The plan refuses such names; the registry refuses them too, should a name reach it
    /// another way (here an inventory changed after planning), and nothing is sent.
    #[test]
    fn haproxy_names_outside_haproxys_charset_are_refused() {
        use crate::release::ReleaseRequest;
        let dir = std::env::current_dir().unwrap().join("tests/bad/hosts");
        let req = ReleaseRequest {
            inventories: vec![dir.join("inventory.yml")],
            playbook: dir.join("haproxy-server.yml"),
            limit: Some("web-01".into()),
            extra_vars: vec![],
        };
        let r = crate::release::Release::load(&req).unwrap();
        let crate::playbook::RegistrySpec::Haproxy {
            address,
            backend,
            server,
        } = &r.playbook.registry.spec
        else {
            panic!("not haproxy")
        };
        let adapter = super::Haproxy {
            address: address.clone(),
            backend: backend.clone(),
            server: server.clone(),
            drain: Duration::ZERO,
            retry: Duration::ZERO,
            lb: Default::default(),
        };
        let mut host = r.targets[0].clone();
        assert!(adapter.names(&r, &host, "run").is_ok());
        host.vars.insert("lb_name".into(), "web-01;disable frontend www".into());
        let err = adapter.names(&r, &host, "run").unwrap_err();
        assert!(matches!(err, super::RegistryError::NotSent(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("server name") && err.contains("`;`"), "{err}");
    }
}
