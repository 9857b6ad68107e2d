//! Container images as the artifact, end to end: a real registry (Debian's `docker-registry`,
//! plain HTTP on a loopback address of the test's slot), images built here and pushed to it,
//! and rootful podman (runc, host networking) on the fleet's hosts, each host with its own
//! container storage under its private /srv. Needs root, podman, runc and docker-registry.
//! Run under the fleet lock: `flock /tmp/tranche-fleet.lock cargo test --test images -- --test-threads=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{events, Fleet, Requests};

/// The registry of a test and the images pushed to it; the registry stops when dropped.
struct Registry {
    dir: PathBuf,
    addr: String,
    /// `USER:PASS` when the registry wants a login (htpasswd).
    creds: Option<String>,
}

fn env_sh(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/image_env.sh"))
        .args(args)
        .output()
        .expect("run image_env.sh");
    assert!(
        out.status.success(),
        "image_env.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Registry {
    fn up(fleet: &Fleet, slot: u16) -> Registry {
        let dir = fleet.dir.join("images");
        let addr = format!("{}.250:{}", fleet.net, 5000 + slot);
        env_sh(&["registry-up", dir.to_str().unwrap(), &addr]);
        Registry { dir, addr, creds: None }
    }

    /// A registry that wants `user`'s login (htpasswd, plain HTTP).
    fn up_with_login(fleet: &Fleet, slot: u16, user: &str, pass: &str) -> Registry {
        let dir = fleet.dir.join("images");
        let addr = format!("{}.250:{}", fleet.net, 5000 + slot);
        env_sh(&["registry-up", dir.to_str().unwrap(), &addr, user, pass]);
        Registry {
            dir,
            addr,
            creds: Some(format!("{user}:{pass}")),
        }
    }

    /// Build and push the demo image answering `version`; its digest.
    fn push(&self, version: &str) -> String {
        let mut args = vec!["build-push", self.dir.to_str().unwrap(), &self.addr, version];
        args.extend(self.creds.as_deref());
        let d = env_sh(&args);
        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
        d
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/image_env.sh"))
            .args(["registry-down", self.dir.to_str().unwrap()])
            .output();
    }
}

/// podman on a fleet host, with that host's own storage (its /srv is private to it).
const PODMAN: &str =
    "podman --root /srv/containers/storage --runroot /srv/containers/run --tmpdir /srv/containers/tmp --runtime runc";

/// Remove every container of the hosts (they outlive sshd), before the fleet goes down.
struct Containers<'a>(&'a Fleet);

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        for i in 1..=self.0.hosts {
            let _ = self.0.ssh(i, &format!("{PODMAN} rm -af -t 1 >/dev/null 2>&1"));
        }
    }
}

/// A playbook releasing `image` (a full `NAME@sha256:...` or with `digest:` in `extra_artifact`).
fn playbook(fleet: &Fleet, name: &str, version: &str, image: &str, extra_artifact: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"service: demo
version: "{version}"
hosts: fleet
artifact:
  image: "{image}"
  runtime: podman
  insecure: true
  runtime_args: [--root, /srv/containers/storage, --runroot, /srv/containers/run, --tmpdir, /srv/containers/tmp, --runtime, runc]
  network: host
  run_args: ["--ulimit=nofile=4096:4096", "--ulimit=nproc=4096:4096"]
  env:
    DEMO_TOKEN: "{{{{ env.TRANCHE_TEST_IMAGE_TOKEN }}}}"
  command: [/bin/sh, /serve, "{{{{ host.address }}}}"]
{extra_artifact}
stop:
  timeout: 5s
registry:
  kind: haproxy
  address: 127.0.0.1:{api}
  backend: demo
  server: "{{{{ host.name }}}}"
  drain: 1s
health:
  http: "http://{{{{ host.address }}}}:8080/health"
  expect_body: "{{{{ version }}}}"
  interval: 200ms
  timeout: 20s
{extra}"#,
        api = fleet.api_port
    );
    let path = fleet.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn tranche(fleet: &Fleet, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args(args)
        .args(["--known-hosts", fleet.known_hosts().to_str().unwrap(), "--no-progress"])
        .env("CI", "true")
        .env("TRANCHE_TEST_IMAGE_TOKEN", "s3cr3t-image-token-value")
        .env("TRANCHE_TEST_REGISTRY_PASSWORD", "s3cr3t-registry-pass")
        .env("TRANCHE_TEST_WRONG_PASSWORD", "not-the-password")
        .current_dir(&fleet.dir)
        .output()
        .expect("run tranche")
}

fn release(fleet: &Fleet, pb: &Path, events_file: &Path, extra: &[&str]) -> std::process::Output {
    let inv = fleet.inventory();
    let mut args = vec![
        "release",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        events_file.to_str().unwrap(),
    ];
    args.extend(extra);
    tranche(fleet, &args)
}

/// What host `i` serves on /health.
fn health(fleet: &Fleet, i: usize) -> String {
    let out = Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "5",
            &format!("http://{}.{i}:8080/health", fleet.net),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The running containers of host `i`: `NAME IMAGE` lines.
fn running(fleet: &Fleet, i: usize) -> String {
    let out = fleet.ssh(i, &format!("{PODMAN} ps --format '{{{{.Names}}}} {{{{.Image}}}}'"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The largest number of hosts whose `stage` step was in progress at once, from the events.
fn max_concurrent_stage(evs: &[serde_json::Value]) -> usize {
    let (mut cur, mut max) = (0usize, 0usize);
    for e in evs {
        if e["step"] == "stage" {
            match e["type"].as_str() {
                Some("step_started") => {
                    cur += 1;
                    max = max.max(cur);
                }
                Some("step_finished") => cur -= 1,
                _ => {}
            }
        }
    }
    max
}

#[test]
fn an_image_release_and_its_rollback_drop_no_request() {
    let slot = 106;
    let fleet = Fleet::up(slot, 3);
    let _containers = Containers(&fleet);
    let reg = Registry::up(&fleet, slot);
    let d1 = reg.push("1.0.0");
    let d2 = reg.push("2.0.0");
    let img1 = format!("{}/demo:1.0.0@{d1}", reg.addr);
    let pb1 = playbook(
        &fleet,
        "v1.yml",
        "1.0.0",
        &img1,
        "",
        "rollout:\n  stage:\n    concurrency: 1\n",
    );

    // The first release: nothing runs yet.
    let ev1 = fleet.dir.join("ev1.jsonl");
    let out = release(&fleet, &pb1, &ev1, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for i in 1..=3 {
        assert_eq!(health(&fleet, i), "1.0.0", "host {i}");
        assert_eq!(
            running(&fleet, i),
            format!("demo-1.0.0 {}/demo@{d1}", reg.addr),
            "host {i}"
        );
    }
    assert!(fleet.wait_all_up(10), "{:?}", fleet.servers());
    // Stage limit 1: one pull at a time.
    assert_eq!(max_concurrent_stage(&events(&ev1)), 1);

    // `plan` shows the image, shortened.
    let inv = fleet.inventory();
    let pb2 = playbook(
        &fleet,
        "v2.yml",
        "2.0.0",
        &format!("{}/demo:2.0.0", reg.addr),
        &format!("  digest: \"{d2}\""),
        "rollout:\n  stage:\n    concurrency: 2\n",
    );
    let out = tranche(&fleet, &["plan", "-i", inv.to_str().unwrap(), pb2.to_str().unwrap()]);
    // The human plan goes to stderr when stdout is not a terminal.
    let plan = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{plan}");
    eprintln!("--- plan\n{plan}");
    let short2 = format!("{}/demo:2.0.0@sha256:{}", reg.addr, &d2[7..19]);
    assert!(
        plan.contains(&format!("pull image {short2} by digest (podman)")),
        "{plan}"
    );

    // 2.0.0 under a request loop through HAProxy.
    let requests = Requests::start(fleet.lb_port);
    let ev2 = fleet.dir.join("ev2.jsonl");
    let (junit, summary) = (fleet.dir.join("junit.xml"), fleet.dir.join("summary.md"));
    let out = release(
        &fleet,
        &pb2,
        &ev2,
        &[
            "--junit",
            junit.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    let (ok, failed, errors) = requests.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(failed, 0, "failed requests: {errors:?}\n{stderr}");
    assert!(ok > 20, "the request loop barely ran: {ok}");
    for i in 1..=3 {
        assert_eq!(health(&fleet, i), "2.0.0", "host {i}");
        assert_eq!(
            running(&fleet, i),
            format!("demo-2.0.0 {}/demo@{d2}", reg.addr),
            "host {i}"
        );
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    let evs = events(&ev2);
    assert!((1..=2).contains(&max_concurrent_stage(&evs)));
    let stage_notes: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage")
        .map(|e| e["msg"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(stage_notes.len(), 3, "{stage_notes:?}");
    for n in &stage_notes {
        assert_eq!(*n, format!("{short2} pulled by podman on the host, digest verified"));
    }
    // The run's first event carries the plan with the pinned image; JUnit and the summary
    // name it.
    assert_eq!(evs[0]["plan"]["stage"]["mode"], "image");
    assert_eq!(evs[0]["plan"]["stage"]["source"], format!("{}/demo@{d2}", reg.addr));
    let short_pinned = format!("{}/demo@sha256:{}", reg.addr, &d2[7..19]);
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains(&short2), "{junit}");
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains(&format!("Image `{short_pinned}`.")), "{summary}");
    // The secret env value never shows in events, journal or output; the container has it.
    eprintln!("--- release\n{stdout}{stderr}");
    let all = format!("{stdout}{stderr}{}", std::fs::read_to_string(&ev2).unwrap());
    assert!(!all.contains("s3cr3t-image-token-value"), "the secret leaked");
    let inspect = fleet.ssh(
        1,
        &format!("{PODMAN} inspect --format '{{{{.Config.Env}}}}' demo-2.0.0"),
    );
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("DEMO_TOKEN=s3cr3t-image-token-value"));

    // `status` names the live image of every host.
    let out = tranche(&fleet, &["status", "-i", inv.to_str().unwrap(), pb2.to_str().unwrap()]);
    let status = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{status}");
    eprintln!("--- status\n{status}");
    assert_eq!(
        status
            .matches(&format!("image {}/demo@sha256:{}", reg.addr, &d2[7..19]))
            .count(),
        3,
        "{status}"
    );

    // Rollback under the request loop starts the previous image.
    let requests = Requests::start(fleet.lb_port);
    let out = tranche(
        &fleet,
        &["rollback", "-i", inv.to_str().unwrap(), pb2.to_str().unwrap()],
    );
    let (ok, failed, errors) = requests.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(failed, 0, "failed requests: {errors:?}\n{stderr}");
    assert!(ok > 10, "{ok}");
    for i in 1..=3 {
        assert_eq!(health(&fleet, i), "1.0.0", "host {i}");
        assert_eq!(
            running(&fleet, i),
            format!("demo-1.0.0 {}/demo@{d1}", reg.addr),
            "host {i}"
        );
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"));
    }
    assert!(fleet.wait_all_up(10), "{:?}", fleet.servers());
}

#[test]
fn a_digest_the_registry_does_not_hold_is_refused_and_keep_prunes_old_images() {
    let slot = 107;
    let fleet = Fleet::up(slot, 2);
    let _containers = Containers(&fleet);
    let reg = Registry::up(&fleet, slot);
    let d1 = reg.push("1.0.0");
    let d2 = reg.push("2.0.0");
    let d3 = reg.push("3.0.0");
    let keep = "layout:\n  keep: 1\n";
    let pb = |v: &str, d: &str| {
        playbook(
            &fleet,
            &format!("v{v}.yml"),
            v,
            &format!("{}/demo:{v}@{d}", reg.addr),
            "",
            keep,
        )
    };
    let ev = fleet.dir.join("ev.jsonl");
    let out = release(&fleet, &pb("1.0.0", &d1), &ev, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // A digest the registry does not have under that name (a tag that moved, an image rebuilt):
    // staging fails on every host, no host is touched.
    let wrong = format!("sha256:{}", "e".repeat(64));
    let out = release(&fleet, &pb("2.0.0", &wrong), &ev, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let evs = events(&ev);
    let failed: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage")
        .map(|e| e["status"].as_str().unwrap_or(""))
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|s| *s == "failed"),
        "{failed:?}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("pulling {}/demo@{wrong} failed", reg.addr)),
        "{stderr}"
    );
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"));
        assert_eq!(health(&fleet, i), "1.0.0");
        assert!(!fleet.srv(i).join("demo/releases/2.0.0").exists());
    }

    // keep: 1: after 2.0.0 then 3.0.0, the release 1.0.0 is pruned, and with it its container
    // and its image; 2.0.0 (the one the host left) stays for a rollback.
    for (v, d) in [("2.0.0", &d2), ("3.0.0", &d3)] {
        let out = release(&fleet, &pb(v, d), &ev, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for i in 1..=2 {
        assert_eq!(health(&fleet, i), "3.0.0");
        let images = fleet.ssh(i, &format!("{PODMAN} images --digests --format '{{{{.Digest}}}}'"));
        let images = String::from_utf8_lossy(&images.stdout);
        assert!(!images.contains(&d1), "host {i} still has 1.0.0's image: {images}");
        assert!(images.contains(&d2) && images.contains(&d3), "host {i}: {images}");
        let all = fleet.ssh(i, &format!("{PODMAN} ps -a --format '{{{{.Names}}}}'"));
        let all = String::from_utf8_lossy(&all.stdout);
        assert!(!all.contains("demo-1.0.0"), "host {i}: {all}");
    }
}

// ---------------------------------------------------------------------------------------------
// The host-side script against a fake runtime (no fleet, no root): what it refuses, and what
// reaches the runtime, word for word.

mod script {
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::process::{Command, Output};

    use tranche::playbook::{Image, Runtime};
    use tranche::remote::image;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(runtime_args: &[&str]) -> Image {
        Image {
            name: "127.0.0.1:5000/demo".into(),
            tag: Some("2.0.0".into()),
            digest: D1.into(),
            runtime: Runtime::Podman,
            runtime_args: runtime_args.iter().map(|s| s.to_string()).collect(),
            insecure: true,
            ports: vec![],
            env: vec![],
            volumes: vec![],
            network: None,
            run_args: vec![],
            command: vec![],
            login: None,
        }
    }

    /// A PATH with dash as `sh` and a fake `podman` that logs its arguments (one per line, then
    /// `---`) and prints `$FAKE_DIGESTS` for `image inspect`.
    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        fn new(with_podman: bool) -> Host {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            symlink("/usr/bin/dash", bin.join("sh")).unwrap();
            if with_podman {
                let fake = bin.join("podman");
                std::fs::write(
                    &fake,
                    "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> \"$FAKE_LOG\"\necho --- >> \"$FAKE_LOG\"\n\
                     prev=; for a in \"$@\"; do if [ \"$prev\" = --env-file ]; then echo \"envfile-mode=$(stat -c %a \"$a\")\"; sed 's/^/envfile:/' \"$a\"; fi; prev=$a; done >> \"$FAKE_LOG.env\"\n\
                     case \" $* \" in\n  *' login '*) cat > \"$FAKE_LOG.stdin\"; echo \"login-authfile=$REGISTRY_AUTH_FILE dir-mode=$(stat -c %a \"${REGISTRY_AUTH_FILE%/*}\")\" >> \"$FAKE_LOG.auth\" ;;\n  \
                     *' pull '*) echo \"pull-authfile=$REGISTRY_AUTH_FILE\" >> \"$FAKE_LOG.auth\" ;;\n  \
                     *' inspect '*) printf '%s\\n' \"$FAKE_DIGESTS\" ;;\n  *' run '*) echo 0123456789abcdef0123 ;;\nesac\n",
                )
                .unwrap();
                std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::fs::create_dir_all(dir.path().join("root/releases")).unwrap();
            Host { dir }
        }

        fn root(&self) -> String {
            self.dir.path().join("root").display().to_string()
        }

        fn run(&self, cmd: &tranche::remote::RemoteCommand, digests: &str, path_tail: &str) -> Output {
            Command::new("/usr/bin/dash")
                .arg("-c")
                .arg(cmd.to_command())
                .env("PATH", format!("{}{path_tail}", self.dir.path().join("bin").display()))
                .env("FAKE_LOG", self.dir.path().join("log"))
                .env("FAKE_DIGESTS", digests)
                .output()
                .unwrap()
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        }
    }

    #[test]
    fn a_pulled_image_without_the_planned_digest_is_refused() {
        let h = Host::new(true);
        let img = image(&[]);
        let cmd = image::pull(&h.root(), "2.0.0", &img, "demo");
        // The registry answered with another image under that name.
        let out = h.run(&cmd, &format!("127.0.0.1:5000/demo@{D2}"), ":/usr/bin:/bin");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(11), "{stderr}");
        assert!(stderr.contains("digest mismatch"), "{stderr}");
        assert!(!h.dir.path().join("root/releases/2.0.0").exists());
        // The wrong image is removed again.
        assert!(
            h.log().contains("rmi\n--\n127.0.0.1:5000/demo@sha256:1111"),
            "{}",
            h.log()
        );

        // The planned digest: recorded as the release.
        let out = h.run(&cmd, &format!("127.0.0.1:5000/demo@{D1}"), ":/usr/bin:/bin");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rec = std::fs::read_to_string(h.dir.path().join("root/releases/2.0.0/.tranche-image")).unwrap();
        assert_eq!(rec.trim(), format!("127.0.0.1:5000/demo@{D1}"));
        assert!(
            h.log()
                .contains("pull\n-q\n--tls-verify=false\n--\n127.0.0.1:5000/demo@sha256:1111"),
            "{}",
            h.log()
        );
    }

    #[test]
    fn hostile_values_reach_the_runtime_as_words_and_are_never_run() {
        let h = Host::new(true);
        let img = image(&["--root", "/srv/c s/*"]);
        std::fs::create_dir_all(h.dir.path().join("root/releases/2.0.0")).unwrap();
        std::fs::write(
            h.dir.path().join("root/releases/2.0.0/.tranche-image"),
            format!("127.0.0.1:5000/demo@{D1}\n"),
        )
        .unwrap();
        let pwned = h.dir.path().join("pwned");
        let evil = format!("x'; touch {0}; $(touch {0}) `touch {0}` *", pwned.display());
        let opts = vec![format!("--env=TOKEN={evil}"), "--publish=8080:80".to_string()];
        let command = vec!["/bin/sh".to_string(), "-c".to_string(), format!("echo {evil}")];
        let cmd = image::start(&h.root(), "2.0.0", &img, "demo", &opts, &command, false).unwrap();
        let out = h.run(&cmd, "", ":/usr/bin:/bin");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!pwned.exists(), "a value was run");
        let log = h.log();
        let run: Vec<&str> = log
            .split("---\n")
            .find(|c| c.contains("\nrun\n"))
            .unwrap()
            .lines()
            .collect();
        let want: Vec<String> = [
            "--root",
            "/srv/c s/*",
            "run",
            "-d",
            "--name",
            "demo-2.0.0",
            "--label",
            "tranche.service=demo",
            "--label",
            "tranche.version=2.0.0",
            &format!("--env=TOKEN={evil}"),
            "--publish=8080:80",
            &format!("127.0.0.1:5000/demo@{D1}"),
            "/bin/sh",
            "-c",
            &format!("echo {evil}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(run, want);
        // A value with a line break would become two words: refused before anything is sent.
        assert!(image::start(
            &h.root(),
            "2.0.0",
            &img,
            "demo",
            &["--env=A=1\n--privileged".into()],
            &[],
            false
        )
        .is_err());
    }

    /// `artifact.login`: the password reaches `login --password-stdin` on stdin, never a command
    /// line; the login goes into an auth file in a folder only the user reads, which the pull
    /// uses and which is removed after.
    #[test]
    fn a_registry_password_reaches_the_login_on_stdin_only() {
        let h = Host::new(true);
        let mut img = image(&[]);
        img.login = Some(tranche::playbook::RegistryLogin {
            username: "deploy".into(),
            password: "s3cr3t-pw".into(),
        });
        let cmd = image::pull(&h.root(), "2.0.0", &img, "demo");
        assert!(!cmd.to_command().contains("s3cr3t"), "{}", cmd.to_command());
        let mut child = Command::new("/usr/bin/dash")
            .arg("-c")
            .arg(cmd.to_command())
            .env("PATH", format!("{}:/usr/bin:/bin", h.dir.path().join("bin").display()))
            .env("FAKE_LOG", h.dir.path().join("log"))
            .env("FAKE_DIGESTS", format!("127.0.0.1:5000/demo@{D1}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"s3cr3t-pw").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let log = h.log();
        assert!(!log.contains("s3cr3t"), "{log}");
        assert!(
            log.contains("login\n--tls-verify=false\n--username\ndeploy\n--password-stdin\n--\n127.0.0.1:5000\n"),
            "{log}"
        );
        let stdin = std::fs::read_to_string(h.dir.path().join("log.stdin")).unwrap();
        assert_eq!(stdin, "s3cr3t-pw");
        let auth = std::fs::read_to_string(h.dir.path().join("log.auth")).unwrap();
        let lines: Vec<&str> = auth.lines().collect();
        let file = lines[0]
            .strip_prefix("login-authfile=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(file.starts_with(&format!("{}/.tranche-auth.", h.root())), "{auth}");
        assert!(lines[0].ends_with("dir-mode=700"), "{auth}");
        assert_eq!(lines[1], format!("pull-authfile={file}"), "{auth}");
        assert!(
            !std::path::Path::new(file).parent().unwrap().exists(),
            "the auth folder stayed"
        );
    }

    /// The `env` values reach the runtime through `--env-file`, from stdin into a file only the
    /// user reads, removed once `run` returned: on no command line (before, each was a
    /// `--env=KEY=VALUE` word of the SSH command and of `podman run`, in the host's `ps`).
    #[test]
    fn env_values_reach_the_runtime_through_a_private_file_not_the_command_line() {
        let h = Host::new(true);
        let img = image(&[]);
        std::fs::create_dir_all(h.dir.path().join("root/releases/2.0.0")).unwrap();
        std::fs::write(
            h.dir.path().join("root/releases/2.0.0/.tranche-image"),
            format!("127.0.0.1:5000/demo@{D1}\n"),
        )
        .unwrap();
        let secret = "s3cr3t value with 'quotes' and $(touch nothing)";
        let env = image::env_file(&[("TOKEN".into(), secret.into()), ("MODE".into(), "prod".into())]).unwrap();
        let cmd = image::start(
            &h.root(),
            "2.0.0",
            &img,
            "demo",
            &["--publish=8080:80".into()],
            &[],
            true,
        )
        .unwrap();
        assert!(!cmd.to_command().contains("s3cr3t"), "{}", cmd.to_command());
        let mut child = Command::new("/usr/bin/dash")
            .arg("-c")
            .arg(cmd.to_command())
            .env("PATH", format!("{}:/usr/bin:/bin", h.dir.path().join("bin").display()))
            .env("FAKE_LOG", h.dir.path().join("log"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(env.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let log = h.log();
        assert!(
            !log.contains("s3cr3t"),
            "a value is on the runtime's command line: {log}"
        );
        let run: Vec<&str> = log
            .split("---\n")
            .find(|c| c.lines().any(|l| l == "run"))
            .unwrap()
            .lines()
            .collect();
        let at = run.iter().position(|w| *w == "--env-file").expect("--env-file");
        assert_eq!(run[at + 2], "--publish=8080:80", "{run:?}");
        // What the fake runtime found in the file while `run` ran: the values, in a 0600 file.
        let seen = std::fs::read_to_string(h.dir.path().join("log.env")).unwrap();
        assert!(
            seen.contains(&format!("envfile:TOKEN={secret}\nenvfile:MODE=prod\n")),
            "{seen}"
        );
        assert!(seen.starts_with("envfile-mode=600\n"), "{seen}");
        // Removed once `run` returned.
        let left: Vec<_> = std::fs::read_dir(h.dir.path().join("root"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tranche-env"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // A value with a line break cannot be one line of the file: refused before anything runs.
        assert!(image::env_file(&[("A".into(), "1\nB=2".into())]).is_err());
    }

    #[test]
    fn a_host_without_a_runtime_is_named_at_preflight() {
        let h = Host::new(false);
        let mut img = image(&[]);
        img.runtime = Runtime::Auto;
        // Only dash on the PATH: neither podman nor docker.
        let out = h.run(&image::detect(&h.root(), &img, "demo"), "", "");
        assert_eq!(out.status.code(), Some(image::NO_RUNTIME as i32));
        assert!(String::from_utf8_lossy(&out.stderr).contains("neither podman nor docker is installed"));
        img.runtime = Runtime::Docker;
        let out = h.run(&image::detect(&h.root(), &img, "demo"), "", "");
        assert!(String::from_utf8_lossy(&out.stderr).contains("docker is not installed on the host"));
        // With podman: found.
        let h = Host::new(true);
        img.runtime = Runtime::Auto;
        let out = h.run(&image::detect(&h.root(), &img, "demo"), "", "");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "runtime=podman");
    }
}

// ---------------------------------------------------------------------------------------------
// The playbook: an image must be pinned by digest; hostile values are refused where they load.

mod playbook {
    use tranche::playbook::{ArtifactSource, Playbook};

    const D: &str = "sha256:a6f64eca8dbff1ae2f7b80f966dd87af38f129ac78d1e915a2c4870879da0bc0";

    /// Load a playbook whose `artifact` is `artifact` (YAML lines, indented by two).
    fn load(artifact: &str) -> Result<Playbook, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yml");
        std::fs::write(
            &path,
            format!("service: demo\nversion: \"2.0.0\"\nhosts: all\nartifact:\n{artifact}\n"),
        )
        .unwrap();
        Playbook::load(&path, &[]).map_err(|d| {
            d.0.iter()
                .map(|x| {
                    format!(
                        "{}:{} {}",
                        x.pos.map(|p| p.line).unwrap_or(0),
                        x.pos.map(|p| p.col).unwrap_or(0),
                        x.message
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn an_image_not_pinned_by_digest_is_refused_where_it_is_written() {
        let e = load("  image: \"registry.internal:5000/demo:2.0.0\"").unwrap_err();
        assert_eq!(
            e,
            "5:10 `artifact.image` \"registry.internal:5000/demo:2.0.0\" is not pinned by digest"
        );
        // Pinned in the reference, or by `digest:` beside it.
        for a in [
            format!("  image: \"registry.internal:5000/demo:2.0.0@{D}\""),
            format!("  image: registry.internal:5000/demo:2.0.0\n  digest: \"{D}\""),
        ] {
            let p = load(&a).unwrap();
            let ArtifactSource::Image(img) = &p.artifact.source else {
                panic!("not an image")
            };
            assert_eq!(img.pinned(), format!("registry.internal:5000/demo@{D}"));
            assert_eq!(img.short(), "registry.internal:5000/demo:2.0.0@sha256:a6f64eca8dbf");
        }
        // Two digests that differ.
        let other = D.replace("a6f6", "b6f6");
        let e = load(&format!("  image: \"r:5000/demo@{D}\"\n  digest: \"{other}\"")).unwrap_err();
        assert!(e.starts_with("6:11 `artifact.digest`") && e.contains("differs"), "{e}");
    }

    #[test]
    fn hostile_image_settings_are_refused_when_the_playbook_loads() {
        let cases = [
            (format!("  image: \"demo;id@{D}\""), "`artifact.image`"),
            (
                format!("  image: \"r/demo@{D}\"\n  ports: [\"--privileged\"]"),
                "starts with `-`",
            ),
            (
                format!("  image: \"r/demo@{D}\"\n  network: \"--privileged\""),
                "starts with `-`",
            ),
            (
                format!("  image: \"r/demo@{D}\"\n  env:\n    \"A B\": x"),
                "is not a variable name",
            ),
            (format!("  image: \"r/demo@{D}\"\n  runtime: lxc"), "podman or docker"),
            (format!("  image: \"r/demo@{D}\"\n  path: x.tar.gz"), "not both"),
            (
                "  path: x.tar.gz\n  ports: [\"80:80\"]".to_string(),
                "belongs to a container image",
            ),
        ];
        for (a, want) in cases {
            let e = load(&a).unwrap_err();
            assert!(e.contains(want), "{a}: {e}");
        }
    }
}

/// A registry that wants a login (htpasswd): `artifact.login` logs the hosts in with the password
/// on stdin into an auth file removed after the pull; without it, or with a wrong password, the
/// stage fails on every host and nothing is touched; the password is in no output.
#[test]
fn a_registry_login_pulls_and_leaves_no_credentials_behind() {
    let slot = 123;
    let fleet = Fleet::up(slot, 2);
    let _containers = Containers(&fleet);
    let reg = Registry::up_with_login(&fleet, slot, "deploy", "s3cr3t-registry-pass");
    let d1 = reg.push("1.0.0");
    let image = format!("{}/demo:1.0.0@{d1}", reg.addr);
    let login = |env: &str| format!("  login:\n    username: deploy\n    password: \"{{{{ env.{env} }}}}\"\n");
    let ev = fleet.dir.join("ev.jsonl");
    // No login: the registry refuses the pull.
    let out = release(&fleet, &playbook(&fleet, "none.yml", "1.0.0", &image, "", ""), &ev, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("pulling") && stderr.contains("failed"), "{stderr}");
    // A wrong password: the login fails, nothing is pulled.
    let pb = playbook(
        &fleet,
        "wrong.yml",
        "1.0.0",
        &image,
        &login("TRANCHE_TEST_WRONG_PASSWORD"),
        "",
    );
    let out = release(&fleet, &pb, &ev, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("logging in to {} as deploy failed", reg.addr)),
        "{stderr}"
    );
    for i in 1..=2 {
        assert_eq!(fleet.current(i), None, "host {i}");
    }
    // The right one: pulled and running on both hosts.
    let pb = playbook(
        &fleet,
        "login.yml",
        "1.0.0",
        &image,
        &login("TRANCHE_TEST_REGISTRY_PASSWORD"),
        "",
    );
    let out = release(&fleet, &pb, &ev, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for i in 1..=2 {
        assert_eq!(health(&fleet, i), "1.0.0", "host {i}");
        // The auth file is gone from the host.
        let left: Vec<String> = std::fs::read_dir(fleet.srv(i).join("demo"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(".tranche-auth"))
            .collect();
        assert!(left.is_empty(), "host {i}: {left:?}");
    }
    let events = std::fs::read_to_string(&ev).unwrap();
    for text in [&stderr.to_string(), &events, &std::fs::read_to_string(&pb).unwrap()] {
        assert!(!text.contains("s3cr3t-registry-pass"), "the password leaked: {text}");
    }
}

/// The operator's own start and stop commands: `{{ image }}` is the image of the release the
/// step acts on (the one stopped, the one started), so a rollback starts the previous image and
/// not the playbook's. Before, `{{ image }}` was always the playbook's: the rollback started
/// 2.0.0 again and its health check (expecting 1.0.0) failed.
#[test]
fn own_commands_see_the_image_of_the_release_they_act_on() {
    let slot = 108;
    let fleet = Fleet::up(slot, 2);
    let _containers = Containers(&fleet);
    let reg = Registry::up(&fleet, slot);
    let d1 = reg.push("1.0.0");
    let d2 = reg.push("2.0.0");
    let own = format!(
        "stop:\n  timeout: 5s\n  command: \"{PODMAN} stop -t 5 --ignore demo\"\nstart:\n  command: \"{PODMAN} run -d --replace --name demo --network host --ulimit=nofile=4096:4096 --ulimit=nproc=4096:4096 {{{{ image }}}} /bin/sh /serve {{{{ host.address }}}}\"\n"
    );
    let pb = |v: &str, d: &str| {
        let path = playbook(
            &fleet,
            &format!("own{v}.yml"),
            v,
            &format!("{}/demo:{v}@{d}", reg.addr),
            "",
            "",
        );
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("stop:\n  timeout: 5s\n", &own);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ev = fleet.dir.join("ev.jsonl");
    let (pb1, pb2) = (pb("1.0.0", &d1), pb("2.0.0", &d2));
    for (pb, d, v) in [(&pb1, &d1, "1.0.0"), (&pb2, &d2, "2.0.0")] {
        let out = release(&fleet, pb, &ev, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        for i in 1..=2 {
            assert_eq!(running(&fleet, i), format!("demo {}/demo@{d}", reg.addr), "host {i}");
            assert_eq!(health(&fleet, i), v, "host {i}");
        }
    }
    let inv = fleet.inventory();
    let out = tranche(
        &fleet,
        &["rollback", "-i", inv.to_str().unwrap(), pb2.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for i in 1..=2 {
        assert_eq!(
            running(&fleet, i),
            format!("demo {}/demo@{d1}", reg.addr),
            "host {i}: {stderr}"
        );
        assert_eq!(health(&fleet, i), "1.0.0", "host {i}");
    }
}
