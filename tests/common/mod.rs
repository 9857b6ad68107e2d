//! Test support: the local fleet of real sshd hosts and HAProxy (tests/fleet/fleet.sh), brought
//! up per test on its own loopback network and torn down on drop.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod bluegreen;

/// Run `tests/fleet/fleet.sh` with `args`.
fn fleet_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(root().join("tests/fleet/fleet.sh"))
        .args(args)
        .output()
        .expect("run fleet.sh")
}

pub struct Fleet {
    pub dir: PathBuf,
    pub net: String,
    pub hosts: usize,
    pub lb_port: u16,
    pub api_port: u16,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kind of one host of the fleet (tests/fleet/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// OpenSSH's sshd, the machine's own shell and `PATH` (every host of [`Fleet::up`]).
    OpenSsh,
    /// sshd, but root's login shell and `/bin/sh` are busybox, and the sessions' `PATH` holds
    /// only busybox applets: no bash, GNU coreutils, curl, openssl or nice by name.
    Busybox,
    /// Dropbear instead of sshd, without an SFTP subsystem.
    Dropbear,
}

impl Fleet {
    /// `slot` picks the network 127.0.<20+slot> and the ports, so tests can run side by side.
    pub fn up(slot: u16, hosts: usize) -> Fleet {
        Fleet::up_with(slot, hosts, &[])
    }

    /// [`Fleet::up`] where the hosts named in `kinds` (1-based index, kind) are of another
    /// kind than OpenSSH, e.g. `&[(3, HostKind::Busybox), (4, HostKind::Dropbear)]`.
    pub fn up_with(slot: u16, hosts: usize, kinds: &[(usize, HostKind)]) -> Fleet {
        let dir = std::env::temp_dir().join(format!("tranche-fleet-{slot}-{}", std::process::id()));
        let net = format!("127.0.{}", 20 + slot);
        let (lb_port, api_port) = (18100 + slot, 19100 + slot);
        let (hosts_s, lb_s, api_s) = (hosts.to_string(), lb_port.to_string(), api_port.to_string());
        let list = |want: HostKind| -> String {
            kinds
                .iter()
                .filter(|(_, k)| *k == want)
                .map(|(i, _)| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (busybox, dropbear) = (list(HostKind::Busybox), list(HostKind::Dropbear));
        let mut args = vec![
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--hosts",
            &hosts_s,
            "--net",
            &net,
            "--lb-port",
            &lb_s,
            "--api-port",
            &api_s,
        ];
        if !busybox.is_empty() {
            args.extend(["--busybox", busybox.as_str()]);
        }
        if !dropbear.is_empty() {
            args.extend(["--dropbear", dropbear.as_str()]);
        }
        let out = fleet_sh(&args);
        assert!(
            out.status.success(),
            "fleet up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fleet {
            dir,
            net,
            hosts,
            lb_port,
            api_port,
        }
    }

    /// Run `command` on host `i` (1-based) with plain OpenSSH (`ssh -F DIR/ssh_config`).
    pub fn ssh(&self, i: usize, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.dir.join("ssh_config"))
            .arg(format!("{}.{i}", self.net))
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh")
    }

    pub fn install(&self, version: &str) {
        let out = fleet_sh(&["install-service", "--dir", self.dir.to_str().unwrap(), version]);
        assert!(
            out.status.success(),
            "install-service failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yml")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn artifact(&self, version: &str) -> PathBuf {
        self.dir.join("artifacts").join(format!("demo-{version}.tar.gz"))
    }

    /// `artifacts/big-<version>.tar.gz`: the sample service of `version` with `kib` KiB of random
    /// data beside it (so the archive is about that large), and its sha256.
    pub fn big_artifact(&self, version: &str, kib: usize) -> (PathBuf, String) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "set -e; rm -rf big && mkdir big && tar -xzf artifacts/demo-{version}.tar.gz -C big; \
                 head -c {} /dev/urandom > big/payload.bin; tar -czf artifacts/big-{version}.tar.gz -C big .; \
                 rm -rf big; sha256sum artifacts/big-{version}.tar.gz",
                kib * 1024
            ))
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sha = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        (self.dir.join(format!("artifacts/big-{version}.tar.gz")), sha)
    }

    pub fn sha256(&self, version: &str) -> String {
        let sums = std::fs::read_to_string(self.dir.join("artifacts/SHA256SUMS")).unwrap();
        sums.lines()
            .find(|l| l.ends_with(&format!("demo-{version}.tar.gz")))
            .and_then(|l| l.split_whitespace().next())
            .expect("sum")
            .to_string()
    }

    /// The host's own /srv on the controller.
    pub fn srv(&self, i: usize) -> PathBuf {
        self.dir.join("hosts").join(format!("h{i}")).join("srv")
    }

    /// The release `current` points to on host `i` (1-based).
    pub fn current(&self, i: usize) -> Option<String> {
        std::fs::read_link(self.srv(i).join("demo/current"))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
    }

    /// HAProxy's runtime API.
    pub fn api(&self, cmd: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.api_port)).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// (server name, operational state, admin state) of every server of backend `demo`.
    pub fn servers(&self) -> Vec<(String, u32, u32)> {
        let out = self.api("show servers state demo");
        out.lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c[3].to_string(), c[5].parse().unwrap(), c[6].parse().unwrap())
            })
            .collect()
    }

    pub fn all_up(&self) -> bool {
        let s = self.servers();
        s.len() == self.hosts && s.iter().all(|(_, op, admin)| *op == 2 && *admin == 0)
    }

    /// Host `i`'s SFTP subsystem: `Some(command)` instead of sshd's own, `None` for none at
    /// all; sshd re-reads its config (SIGHUP).
    pub fn set_sftp_subsystem(&self, i: usize, command: Option<&str>) {
        let cfg = self.dir.join(format!("hosts/h{i}/sshd_config"));
        let text: String = std::fs::read_to_string(&cfg)
            .unwrap()
            .lines()
            .filter_map(|l| match (l.starts_with("Subsystem"), command) {
                (false, _) => Some(format!("{l}\n")),
                (true, Some(c)) => Some(format!("Subsystem sftp {c}\n")),
                (true, None) => None,
            })
            .collect();
        std::fs::write(&cfg, text).unwrap();
        let pid = std::fs::read_to_string(self.dir.join(format!("hosts/h{i}/sshd.pid"))).unwrap();
        assert!(Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    /// Add `lines` to host `i`'s sshd_config (e.g. `TrustedUserCAKeys`, `HostCertificate`);
    /// sshd re-reads its config (SIGHUP) and answers again before this returns.
    pub fn add_sshd_config(&self, i: usize, lines: &str) {
        let cfg = self.dir.join(format!("hosts/h{i}/sshd_config"));
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(lines);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        std::fs::write(&cfg, text).unwrap();
        let check = Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "sshd rejects {}: {}",
            cfg.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let pid = std::fs::read_to_string(self.dir.join(format!("hosts/h{i}/sshd.pid"))).unwrap();
        assert!(Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap()
            .success());
        // sshd re-executes itself on SIGHUP: wait until it accepts connections again.
        let addr = format!("{}.{i}:22", self.net);
        let deadline = Instant::now() + Duration::from_secs(10);
        std::thread::sleep(Duration::from_millis(200));
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "sshd of h{i} did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `all_up` within `secs`, for runs whose registry is not this HAProxy: it learns that a
    /// restarted service is back from its own health checks (every 500 ms), not from tranche.
    pub fn wait_all_up(&self, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !self.all_up() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        true
    }

    /// A playbook for this fleet, with `extra` appended (YAML) and `version`'s artifact.
    pub fn playbook(&self, name: &str, version: &str, body: &str) -> PathBuf {
        let haproxy = format!(
            "registry:\n  kind: haproxy\n  address: 127.0.0.1:{}\n  backend: demo\n  server: \"{{{{ host.name }}}}\"\n  drain: 5s\n",
            self.api_port
        );
        self.playbook_with(name, version, "fleet", body, &haproxy)
    }

    /// A playbook for this fleet on the hosts `pattern`, with `body` and `registry` (YAML).
    pub fn playbook_with(&self, name: &str, version: &str, pattern: &str, body: &str, registry: &str) -> PathBuf {
        // `body` may bring its own `stop:` or `health:`; otherwise the sample service's are used.
        let stop = if body.contains("stop:") {
            ""
        } else {
            "stop:\n  command: /srv/demo/current/bin/stop\n  timeout: 30s\n"
        };
        let health = if body.contains("health:") {
            ""
        } else {
            "health:\n  http: \"http://{{ host.address }}:8080/health\"\n  expect_body: \"{{ version }}\"\n  interval: 200ms\n  timeout: 10s\n"
        };
        let text = format!(
            "service: demo\nversion: \"{version}\"\nhosts: \"{pattern}\"\n{body}\n{registry}{stop}\
             start:\n  command: \"/srv/demo/current/bin/start {{{{ host.address }}}}\"\n{health}"
        );
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `tranche release` of `playbook` on this fleet's inventory with the given known_hosts file
    /// and extra flags, plain output.
    pub fn release_with_known_hosts(&self, playbook: &Path, known_hosts: &Path, extra: &[&str]) -> Output {
        let inventory = self.inventory();
        let mut args = vec!["release", "-i", inventory.to_str().unwrap(), playbook.to_str().unwrap()];
        args.extend(["--known-hosts", known_hosts.to_str().unwrap(), "--no-progress"]);
        args.extend(extra);
        self.tranche_raw(&args)
    }

    /// Run tranche in the fleet's folder with exactly `args`.
    pub fn tranche_raw(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run tranche")
    }

    pub fn tranche(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args(args)
            .args([
                "--known-hosts",
                self.known_hosts().to_str().unwrap(),
                "--no-progress",
                "--connect-timeout",
                "5s",
            ])
            .env("CI", "true")
            .current_dir(&self.dir)
            .output()
            .expect("run tranche")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = fleet_sh(&["down", "--dir", self.dir.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP file server on `127.0.0.1:port` for the hosts to pull from: `/usr/bin/python3`
/// with `args` (which end with the port and whatever else they need), up when this returns,
/// stopped when dropped.
pub struct FileServer(std::process::Child);

impl FileServer {
    pub fn start(port: u16, args: &[&std::ffi::OsStr]) -> FileServer {
        let child = Command::new("/usr/bin/python3")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = FileServer(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "file server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The JSON events of a run's events file.
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A recording HTTP server on loopback that answers every request with `status`, for
/// registries whose real servers cannot be installed here. It stops when dropped.
pub struct Recorder {
    pub port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    pub fn start(status: u16) -> Recorder {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reqs, st, stp) = (requests.clone(), status.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stp.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut headers = Vec::new();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim().split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                reqs.lock().unwrap().push(Recorded {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let code = st.load(Ordering::SeqCst);
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {code} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
                );
            }
        });
        Recorder {
            port,
            requests,
            status,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Fleet {
    /// Kill host `i`'s sshd and every connection it serves (SIGKILL), as a crashed host would.
    pub fn kill_sshd(&self, i: usize) {
        let pid = std::fs::read_to_string(self.dir.join(format!("hosts/h{i}/sshd.pid"))).unwrap();
        let pid = pid.trim();
        let _ = Command::new("pkill").args(["-KILL", "-P", pid]).status();
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }

    /// Start tranche in the background (plain output to `name.out`/`name.err` in the fleet's
    /// folder), with this fleet's known_hosts.
    pub fn spawn_tranche(&self, name: &str, args: &[&str]) -> std::process::Child {
        let out = std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args(args)
            .args(["--known-hosts", self.known_hosts().to_str().unwrap(), "--no-progress"])
            .env("CI", "true")
            .current_dir(&self.dir)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn tranche")
    }

    /// Start `tranche release -i <this fleet's inventory> PLAYBOOK --events EVENTS` and `extra`
    /// in the background, as [`Fleet::spawn_tranche`] does.
    pub fn spawn_release(&self, name: &str, playbook: &Path, events: &Path, extra: &[&str]) -> std::process::Child {
        let inventory = self.inventory();
        let mut args = vec![
            "release",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ];
        args.extend(extra);
        self.spawn_tranche(name, &args)
    }

    pub fn stderr_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.err"))).unwrap_or_default()
    }
}

/// Wait (at most `secs`) until the events file has an event for which `pred` holds.
pub fn wait_event(path: &Path, secs: u64, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if pred(&v) {
                        return v;
                    }
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such event in {} after {secs}s",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Send `sig` (e.g. "-INT") to a child process.
pub fn signal(child: &std::process::Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Wait (at most `secs`) for a child to exit; kill it past that.
pub fn wait_exit(child: &mut std::process::Child, secs: u64) -> Option<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tranche did not exit within {secs}s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Make sure a local user exists (the fleet's sshd takes the same authorized_keys file for
/// every user); with `sudo`, it may run anything through `sudo -n`.
pub fn ensure_user(name: &str, sudo: bool) {
    if !Command::new("id").arg(name).output().unwrap().status.success() {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", name])
            .output()
            .unwrap();
        // Another test may have created it meanwhile.
        assert!(
            out.status.success() || Command::new("id").arg(name).output().unwrap().status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Not locked (`!`), or sshd without PAM refuses the account; `*`: no password either.
    let _ = Command::new("usermod").args(["-p", "*", name]).status();
    let rule = PathBuf::from(format!("/etc/sudoers.d/{name}"));
    if sudo {
        std::fs::write(&rule, format!("{name} ALL=(ALL) NOPASSWD: ALL\n")).unwrap();
        let _ = Command::new("chmod").args(["0440", rule.to_str().unwrap()]).status();
    } else {
        let _ = std::fs::remove_file(&rule);
    }
}

/// A real server from tests/services/services.sh (etcd, alertmanager, prometheus, metrics),
/// stopped on drop.
pub struct Service {
    pub dir: PathBuf,
    pub port: u16,
}

impl Service {
    pub fn up(what: &str, port: u16, extra: &[&str]) -> Service {
        let dir = std::env::temp_dir().join(format!("tranche-{what}-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("bash")
            .arg(root().join("tests/services/services.sh"))
            .args(["up", what, "--dir", dir.to_str().unwrap(), "--port", &port.to_string()])
            .args(extra)
            .output()
            .expect("run services.sh");
        assert!(
            out.status.success(),
            "{what} did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Service { dir, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("tests/services/services.sh"))
            .args(["down", "--dir", self.dir.to_str().unwrap()])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small HTTP client for the tests: (status, body).
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// GET / through HAProxy in a loop until told to stop (bounded: 3 minutes, 100000 requests);
/// counts answers 200 and everything else (with what went wrong).
pub struct Requests {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Requests {
    pub fn start(port: u16) -> Requests {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (st, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut errors = Vec::new();
            let mut n = 0;
            while !st.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(180) && n < 100_000 {
                n += 1;
                let res = (|| -> std::io::Result<String> {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    s.write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                })();
                match res {
                    Ok(r) if r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200") => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        errors.push(r.lines().next().unwrap_or("").to_string());
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        errors.push(e.to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            errors
        });
        Requests {
            stop,
            ok,
            failed,
            thread,
        }
    }

    /// Stop; (answered 200, failed, what failed).
    pub fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.thread.join().unwrap();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

impl Fleet {
    /// Kill HAProxy (SIGKILL, by its pidfile), as a crashed load balancer.
    pub fn lb_stop(&self) {
        let out = fleet_sh(&["lb-stop", "--dir", self.dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "lb-stop failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start HAProxy again from the same config; returns once its runtime API answers.
    pub fn lb_start(&self) {
        let out = fleet_sh(&["lb-start", "--dir", self.dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "lb-start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Fleet {
    /// [`Fleet::up`] for blue-green's slots shape: HAProxy's backend `demo` has one server per
    /// host and slot, `hNN-NAME` at the host's address on the slot's port, e.g.
    /// `&[("blue", 8081), ("green", 8082)]` (`fleet.sh up --slots blue:8081,green:8082`).
    pub fn up_slots(slot: u16, hosts: usize, slots: &[(&str, u16)]) -> Fleet {
        let dir = std::env::temp_dir().join(format!("tranche-fleet-{slot}-{}", std::process::id()));
        let net = format!("127.0.{}", 20 + slot);
        let (lb_port, api_port) = (18100 + slot, 19100 + slot);
        let spec: Vec<String> = slots.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        let spec = spec.join(",");
        let out = fleet_sh(&[
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--hosts",
            &hosts.to_string(),
            "--net",
            &net,
            "--lb-port",
            &lb_port.to_string(),
            "--api-port",
            &api_port.to_string(),
            "--slots",
            &spec,
        ]);
        assert!(
            out.status.success(),
            "fleet up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fleet {
            dir,
            net,
            hosts,
            lb_port,
            api_port,
        }
    }

    /// The release `layout.root/<slot>/current` points to on host `i` (blue-green slots).
    pub fn slot_current(&self, i: usize, slot: &str) -> Option<String> {
        std::fs::read_link(self.srv(i).join(format!("demo/{slot}/current")))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
    }

    /// The pid in host `i`'s pidfile `/srv/demo/<name>` (e.g. `app-8081.pid`), if any.
    pub fn pid_of(&self, i: usize, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.srv(i).join("demo").join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}
