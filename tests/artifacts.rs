//! Artifact formats and artifact stores on the local fleet (slots 109-111): a `.tar.zst`
//! release, a host without `zstd` refused at preflight, and pulls from an HTTP server with basic
//! auth and from an S3-compatible store (moto, with every presigned GET checked by botocore's
//! signer) that leak no secret to the terminal, the events, the journal or the process list.
//!
//! Run under the fleet lock: `flock /tmp/tranche-fleet.lock cargo test --test artifacts --
//! --test-threads=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{events, Fleet};

fn tranche(fleet: &Fleet, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args(args)
        .args([
            "--known-hosts",
            fleet.known_hosts().to_str().unwrap(),
            "--no-progress",
            "--connect-timeout",
            "5s",
        ])
        .envs(env.iter().copied())
        .env("CI", "true")
        .current_dir(&fleet.dir)
        .output()
        .expect("run tranche")
}

/// `artifacts/demo-VERSION.tar.zst`: the fleet's service of VERSION (2.0.0's files with this
/// VERSION when the fleet has no such .tar.gz), compressed with zstd -19, and its sha256.
fn zst_artifact(fleet: &Fleet, version: &str) -> (PathBuf, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; rm -rf zst-src && mkdir zst-src; \
             if [ -f artifacts/demo-{version}.tar.gz ]; then tar -xzf artifacts/demo-{version}.tar.gz -C zst-src; \
             else tar -xzf artifacts/demo-2.0.0.tar.gz -C zst-src && echo {version} > zst-src/VERSION; fi; \
             tar -C zst-src -cf - . | zstd -q -19 -f -o artifacts/demo-{version}.tar.zst; rm -rf zst-src; \
             sha256sum artifacts/demo-{version}.tar.zst"
        ))
        .current_dir(&fleet.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sha = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (fleet.dir.join(format!("artifacts/demo-{version}.tar.zst")), sha)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_tar_zst_artifact_is_released_end_to_end() {
    let fleet = Fleet::up(109, 3);
    fleet.install("1.0.0");
    let (zst, sha) = zst_artifact(&fleet, "2.0.0");
    let pb = fleet.playbook(
        "zst.yml",
        "2.0.0",
        &format!(
            "artifact:\n  path: {}\n  sha256: \"{sha}\"\nrollout:\n  canary: 1\n  batch: 2\n",
            zst.display()
        ),
    );
    let ev = fleet.dir.join("ev.jsonl");
    let inv = fleet.inventory();
    let out = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--events",
            ev.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "h{i}");
        // Unpacked, not copied: the service's files are there, and the checksum marker.
        let rel = fleet.srv(i).join("demo/releases/2.0.0");
        assert!(rel.join("bin/start").exists(), "h{i}: {rel:?}");
        assert_eq!(
            std::fs::read_to_string(rel.join(".tranche-sha256")).unwrap().trim(),
            sha
        );
    }
    let staged = events(&ev)
        .into_iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage" && e["status"] == "ok")
        .count();
    assert_eq!(staged, 3);
}

#[test]
fn a_host_without_zstd_is_refused_at_preflight_and_nothing_changes() {
    let fleet = Fleet::up(110, 3);
    fleet.install("1.0.0");
    let (zst, sha) = zst_artifact(&fleet, "2.0.0");
    // Hide zstd on h02 only, in its own mount namespace: a file without the execute bit over it.
    let hide = fleet.ssh(
        2,
        "set -e; : > /tmp/no-zstd; chmod 644 /tmp/no-zstd; mount --bind /tmp/no-zstd \"$(command -v zstd)\"; \
         if zstd --version; then exit 1; fi",
    );
    assert!(hide.status.success(), "{}", text(&hide));
    assert!(fleet.ssh(1, "command -v zstd").status.success(), "h01 still has zstd");
    let pb = fleet.playbook(
        "zst.yml",
        "2.0.0",
        &format!(
            "artifact:\n  path: {}\n  sha256: \"{sha}\"\nrollout:\n  canary: 1\n  batch: 2\n  max_failures: 2\n",
            zst.display()
        ),
    );
    let inv = fleet.inventory();
    let out = tranche(
        &fleet,
        &["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        &[],
    );
    let all = text(&out);
    // Refused whatever the failure budget (2 of 3 may fail here): exit 3, preflight.
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("zstd is not installed on h02 (it unpacks .tar.zst artifacts); nothing was changed"),
        "{all}"
    );
    assert!(!all.contains("h01 (") && !all.contains("on h01"), "{all}");
    for i in 1..=3 {
        let demo = fleet.srv(i).join("demo");
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "h{i}");
        assert!(!demo.join("releases/2.0.0").exists(), "h{i} was staged");
        assert!(!demo.join(".tranche-lock").exists(), "h{i} keeps a lock");
        let stage_dir = demo.join(".tranche-stage");
        let parts = std::fs::read_dir(&stage_dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(parts, 0, "h{i} received an upload");
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

/// An HTTP server that wants basic auth `deploy:$STORE_PASSWORD`, takes a `ps` snapshot while
/// a download waits for its answer, and logs each request's path and verdict.
const BASIC_SERVER: &str = r#"
import base64, http.server, os, subprocess, sys, time
want = 'Basic ' + base64.b64encode(('deploy:' + os.environ['STORE_PASSWORD']).encode()).decode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get('Authorization') == want
        with open(sys.argv[3], 'a') as f:
            f.write(self.path + (' ok' if ok else ' unauthorized') + '\n')
        if not ok:
            self.send_response(401)
            self.send_header('WWW-Authenticate', 'Basic realm="artifacts"')
            self.end_headers()
            return
        with open(sys.argv[4], 'a') as f:
            f.write(subprocess.run(['ps', '-eww', '-o', 'args'], capture_output=True, text=True).stdout)
        data = open(os.path.join(sys.argv[2], self.path.lstrip('/')), 'rb').read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;

/// Every output of the runs so far: the terminal's, the events files, the journal and run
/// records under `.tranche`.
fn outputs(fleet: &Fleet, runs: &[&Output], event_files: &[&Path]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = runs
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("run {i} terminal"), text(o)))
        .collect();
    for p in event_files {
        out.push((p.display().to_string(), std::fs::read_to_string(p).unwrap()));
    }
    let state = files_under(&fleet.dir.join(".tranche"));
    assert!(state.iter().any(|p| p.ends_with("journal.jsonl")), "{state:?}");
    for p in state {
        out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap_or_default()));
    }
    out
}

#[test]
fn basic_auth_and_s3_presigned_pulls_keep_their_secrets_off_hosts_and_logs() {
    let python = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/store-venv.sh"))
        .output()
        .unwrap();
    assert!(python.status.success(), "{}", text(&python));
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();

    let fleet = Fleet::up(111, 2);
    fleet.install("1.0.0");
    let inv = fleet.inventory();
    let ps = fleet.dir.join("ps.txt");

    // Basic auth: 2.0.0 as .tar.zst from a server that wants a password.
    let password = "pw-Zq8v3-never-shown";
    let (_, sha2) = zst_artifact(&fleet, "2.0.0");
    let port = 18600 + (std::process::id() % 100) as u16;
    let requests = fleet.dir.join("basic.log");
    let server = {
        let child = Command::new("/usr/bin/python3")
            .args(["-c", BASIC_SERVER, &port.to_string()])
            .arg(fleet.dir.join("artifacts"))
            .arg(&requests)
            .arg(&ps)
            .env("STORE_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(port);
        child
    };
    let _server = Killed(server);
    let pb = fleet.playbook(
        "basic.yml",
        "2.0.0",
        &format!(
            "artifact:\n  url: \"http://127.0.0.1:{port}/demo-2.0.0.tar.zst\"\n  sha256: \"{sha2}\"\n  \
             basic_auth:\n    username: deploy\n    password: \"{{{{ env.STORE_PASSWORD }}}}\"\n\
             rollout:\n  canary: 0\n  batch: 2\n"
        ),
    );
    let ev2 = fleet.dir.join("ev2.jsonl");
    let run2 = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--events",
            ev2.to_str().unwrap(),
        ],
        &[("STORE_PASSWORD", password)],
    );
    assert_eq!(run2.status.code(), Some(0), "{}", text(&run2));
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "h{i}");
    }
    let seen = std::fs::read_to_string(&requests).unwrap();
    assert_eq!(seen, "/demo-2.0.0.tar.zst ok\n/demo-2.0.0.tar.zst ok\n");

    // S3: 3.0.0 from moto through a URL presigned for this run, checked by botocore's signer.
    let secret = "s3SecretKey/Never+Shown0123456789abcdefg";
    let (zst3, sha3) = zst_artifact(&fleet, "3.0.0");
    let s3_port = port + 100;
    let s3_log = fleet.dir.join("s3.log");
    let mut s3 = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store_s3.py"))
        .arg(s3_port.to_string())
        .arg(&s3_log)
        .env("STORE_PS", &ps)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(s3.stdin.take().unwrap(), "{secret}").unwrap();
    }
    let _s3 = Killed(s3);
    wait_port(s3_port);
    let put = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store_s3.py"))
        .args(["put", &s3_port.to_string(), "releases", "demo/demo-3.0.0.tar.zst"])
        .arg(&zst3)
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", text(&put));
    let body = format!(
        "artifact:\n  url: \"http://127.0.0.1:{s3_port}/releases/demo/demo-3.0.0.tar.zst\"\n  sha256: \"{sha3}\"\n  \
         s3:\n    region: us-east-1\n    expires: 2m\nrollout:\n  canary: 0\n  batch: 2\n  max_failures: 2\n  on_failure: halt\n"
    );
    let pb3 = fleet.playbook("s3.yml", "3.0.0", &body);
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIASTORETEST0000001"),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ];
    // A wrong secret key: the store refuses the signature, no host changes.
    let wrong = [
        ("AWS_ACCESS_KEY_ID", "AKIASTORETEST0000001"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-right-secret-key-000000000000000"),
    ];
    let ev_wrong = fleet.dir.join("ev-wrong.jsonl");
    let refused = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb3.to_str().unwrap(),
            "--events",
            ev_wrong.to_str().unwrap(),
        ],
        &wrong,
    );
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused));
    assert!(
        text(&refused).contains("downloading the artifact failed (curl exit 22)"),
        "{}",
        text(&refused)
    );
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "h{i}");
    }
    let ev3 = fleet.dir.join("ev3.jsonl");
    let run3 = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb3.to_str().unwrap(),
            "--events",
            ev3.to_str().unwrap(),
        ],
        &creds,
    );
    assert_eq!(run3.status.code(), Some(0), "{}", text(&run3));
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("3.0.0"), "h{i}");
    }
    let log = std::fs::read_to_string(&s3_log).unwrap();
    // The wrong key's GETs were refused by the store, the right key's accepted, 2 minutes each.
    let verdicts: Vec<&str> = log.lines().collect();
    let bad = "/releases/demo/demo-3.0.0.tar.zst expires=120 signature mismatch";
    let good = "/releases/demo/demo-3.0.0.tar.zst expires=120 ok";
    let n_bad = verdicts.iter().take_while(|l| **l == bad).count();
    assert!(n_bad >= 1, "{log}");
    assert_eq!(&verdicts[n_bad..], [good, good], "{log}");
    let signatures: Vec<String> = std::fs::read_to_string(s3_log.with_extension("log.sig"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(!signatures.is_empty());

    // The process list taken while each download waited: curl was there, reading its config
    // on stdin, and no secret was on any command line.
    let snapshot = std::fs::read_to_string(&ps).unwrap();
    assert!(snapshot.contains("--config -"), "{snapshot}");
    // The secrets of both stores, everywhere.
    let mut secrets: Vec<String> = vec![password.into(), secret.into(), "Never+Shown".into()];
    secrets.extend(signatures);
    let mut all = outputs(&fleet, &[&run2, &refused, &run3], &[&ev2, &ev_wrong, &ev3]);
    all.push(("ps on the hosts".into(), snapshot));
    all.push((
        "playbooks".into(),
        format!("{}{body}", std::fs::read_to_string(&pb).unwrap()),
    ));
    for (name, text) in &all {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name} shows the secret {s}:\n{text}");
        }
    }
    // The URL is shown without its signature: the events name the plain object.
    let evs = std::fs::read_to_string(&ev3).unwrap();
    assert!(!evs.contains("X-Amz-Signature="), "{evs}");
}

fn wait_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server on {port} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A child process stopped when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Without the fleet: `stage.sh` under dash, with a `zstd` on the PATH that fails. The failure
/// is zstd's (not the tar that read its empty output), and no unpacked folder is left behind.
#[test]
fn a_failing_zstd_is_named_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("srv");
    std::fs::create_dir_all(root.join("releases")).unwrap();
    std::fs::create_dir_all(root.join(".tranche-stage")).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("zstd"), "#!/bin/sh\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(bin.join("zstd"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = b"not really zstd";
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(data))
    };
    std::fs::write(root.join(format!(".tranche-stage/{sha}.part")), data).unwrap();
    let cmd = tranche::remote::stage_format(
        root.to_str().unwrap(),
        "2.0.0",
        &sha,
        tranche::remote::Transfer::Sftp,
        0,
        tranche::playbook::ArtifactFormat::TarZst,
    );
    let out = Command::new("dash")
        .arg("-c")
        .arg(cmd.program())
        .arg("tranche")
        .args(&cmd.args)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(21), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).ends_with("unpacking the artifact failed (zstd exit 3)\n"),
        "{}",
        text(&out)
    );
    let left: Vec<_> = std::fs::read_dir(root.join("releases")).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}
