//! The host-side scripts of `src/remote/`, run against temporary layouts without SSH and without
//! root, under the three shells a host may have: dash, BusyBox `sh` with a PATH holding only
//! BusyBox applets (no `nice`, no curl, no openssl, no GNU coreutils), and bash in POSIX mode.
//! Each command runs exactly as a host gets it: the line `RemoteCommand::to_command()` builds,
//! parsed by the shell, which starts `sh -c '<script>' tranche ARGS...` (`sh` being that shell).
//! The hostile cases of issue 11 are here: absolute, trailing-slash and `./` `current`, a live
//! release without the checksum marker, planted symlinks, values with quotes, `$()`, backticks,
//! `;` and newlines.

use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tranche::lock::Lease;
use tranche::remote::lock::{LockReport, LockState};
use tranche::remote::{self, HostExit, PreflightReport, RemoteCommand, Transfer};

/// A shell to run the scripts under: a directory holding `sh` (and, for BusyBox, every applet
/// but `nice`) put first on the PATH, or alone on it.
struct Shell {
    name: &'static str,
    _dir: tempfile::TempDir,
    path: String,
}

const INSTALL: &str = "install dash and busybox (scripts/setup.sh does)";

fn shells() -> Vec<Shell> {
    let mut out = Vec::new();
    for (name, bin) in [
        ("dash", "/usr/bin/dash"),
        ("busybox", "/usr/bin/busybox"),
        ("bash --posix", "/usr/bin/bash"),
    ] {
        assert!(Path::new(bin).exists(), "{bin} is missing: {INSTALL}");
        let dir = tempfile::tempdir().unwrap();
        let path = if name == "busybox" {
            let list = Command::new(bin).arg("--list").output().expect(INSTALL);
            for applet in String::from_utf8_lossy(&list.stdout).lines() {
                // Hosts may lack `nice`: the scripts must not need it.
                if applet != "nice" {
                    symlink(bin, dir.path().join(applet)).unwrap();
                }
            }
            dir.path().display().to_string()
        } else {
            // bash started as `sh` runs in POSIX mode, as `bash --posix` does.
            symlink(bin, dir.path().join("sh")).unwrap();
            format!("{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", dir.path().display())
        };
        out.push(Shell { name, _dir: dir, path });
    }
    out
}

impl Shell {
    fn sh(&self) -> PathBuf {
        PathBuf::from(self.path.split(':').next().unwrap()).join("sh")
    }

    /// Run `cmd` as a host does: its command line parsed by this shell; `input` on stdin.
    fn run_with(&self, cmd: &RemoteCommand, input: &[u8]) -> Output {
        let mut child = Command::new(self.sh())
            .arg("-c")
            .arg(cmd.to_command())
            .env_clear()
            .env("PATH", &self.path)
            .env("USER", "tester")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}: {INSTALL}", self.name));
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    fn run(&self, cmd: &RemoteCommand) -> Output {
        self.run_with(cmd, b"")
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn show(sh: &Shell, out: &Output) -> String {
    format!(
        "[{}] exit {:?}\nstdout: {}\nstderr: {}",
        sh.name,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn exit(e: HostExit) -> Option<i32> {
    Some(e.code() as i32)
}

/// Values that must reach a script as data, never as code. Each tries to create `PWNED` in the
/// working directory of the test (the layout's parent).
const HOSTILE: &[&str] = &[
    "$(touch PWNED)",
    "`touch PWNED`",
    "x; touch PWNED",
    "it's'; touch PWNED; '",
    "a\ntouch PWNED",
    "\"$(touch PWNED)\"",
];

/// A temporary layout: `<tmp>/srv/app`, the layout root.
struct Layout {
    tmp: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let l = Layout {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(l.root().join("releases")).unwrap();
        std::fs::create_dir_all(l.root().join(".tranche-stage")).unwrap();
        l
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("srv/app")
    }
    fn r(&self) -> String {
        self.root().display().to_string()
    }
    fn rel(&self, v: &str) -> PathBuf {
        self.root().join("releases").join(v)
    }
    /// A release tranche did not put there (no marker), holding VERSION = `text`.
    fn foreign_release(&self, v: &str, text: &str) {
        std::fs::create_dir_all(self.rel(v)).unwrap();
        std::fs::write(self.rel(v).join("VERSION"), text).unwrap();
    }
    fn set_current(&self, target: &str) {
        let _ = std::fs::remove_file(self.root().join("current"));
        symlink(target, self.root().join("current")).unwrap();
    }
    fn pwned(&self) -> bool {
        self.tmp.path().join("PWNED").exists() || self.root().join("PWNED").exists()
    }
}

/// A `.tar.gz` holding `VERSION` = `text`, and its sha256.
fn artifact(text: &str) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("VERSION"), text).unwrap();
    let tgz = dir.path().join("a.tar.gz");
    let st = Command::new("tar")
        .args(["-czf"])
        .arg(&tgz)
        .arg("-C")
        .arg(dir.path())
        .arg("VERSION")
        .status()
        .unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&tgz).unwrap();
    (bytes.clone(), sha256(&bytes))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn lease(run: &str, expires: u64) -> Lease {
    Lease {
        run: run.into(),
        operator: "alice".into(),
        controller: "laptop".into(),
        started: "2026-12-01T00:00:00.000Z".into(),
        expires,
    }
}

fn preflight(l: &Layout, version: &str, check: bool, become_root: bool, owner: &Lease) -> RemoteCommand {
    remote::preflight(&l.r(), version, &"0".repeat(64), check, become_root, &owner.to_file())
}

#[test]
fn preflight_creates_the_layout_takes_the_lock_and_reports_what_is_there() {
    for sh in shells() {
        let l = Layout::new();
        std::fs::remove_dir_all(l.root()).unwrap();
        // A check changes nothing.
        let out = sh.run(&preflight(&l, "2.0.0", true, false, &lease("r1", 9)));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert!(!l.root().exists(), "{}", show(&sh, &out));
        assert_eq!(PreflightReport::parse(&stdout(&out)).lock.state, LockState::Free);

        let out = sh.run(&preflight(&l, "2.0.0", false, false, &lease("r1", 9)));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        let rep = PreflightReport::parse(&stdout(&out));
        assert_eq!(rep.lock.state, LockState::Acquired, "{}", show(&sh, &out));
        assert!(rep.avail_kib.is_some(), "{}", show(&sh, &out));
        assert_eq!((rep.current, rep.previous, rep.part), (None, None, 0));
        assert_eq!(
            Lease::parse(&std::fs::read_to_string(l.root().join(".tranche-lock/owner")).unwrap()),
            Some(lease("r1", 9))
        );

        // A second run sees the holder.
        l.foreign_release("1.0.0", "1.0.0");
        std::fs::write(l.rel("1.0.0").join(".tranche-sha256"), "abc\n").unwrap();
        std::fs::write(l.root().join(".tranche-previous"), "0.9.0\n").unwrap();
        std::fs::write(
            l.root().join(format!(".tranche-stage/{}.part", "0".repeat(64))),
            "12345",
        )
        .unwrap();
        l.set_current(&format!("{}/releases/1.0.0/", l.r()));
        let out = sh.run(&preflight(&l, "1.0.0", false, false, &lease("r2", 9)));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        let rep = PreflightReport::parse(&stdout(&out));
        assert_eq!(rep.lock.state, LockState::Held, "{}", show(&sh, &out));
        assert_eq!(rep.lock.owner, Some(lease("r1", 9)));
        assert_eq!(
            rep.current.as_deref(),
            Some("1.0.0"),
            "absolute current with a trailing slash"
        );
        assert_eq!(rep.previous.as_deref(), Some("0.9.0"));
        assert_eq!(rep.staged.as_deref(), Some("abc"));
        assert_eq!(rep.releases, vec!["1.0.0"]);
        assert_eq!(rep.part, 5);
    }
}

#[test]
fn preflight_treats_hostile_values_as_data() {
    for sh in shells() {
        for v in HOSTILE {
            let l = Layout::new();
            let cmd = remote::preflight(&l.r(), v, v, false, false, &lease(v, 9).to_file());
            let out = Command::new(sh.sh())
                .arg("-c")
                .arg(cmd.to_command())
                .current_dir(l.tmp.path())
                .env("PATH", &sh.path)
                .output()
                .unwrap();
            assert_eq!(code(&out), Some(0), "{v:?} {}", show(&sh, &out));
            assert!(!l.pwned(), "{v:?} ran as code: {}", show(&sh, &out));
            let owner = std::fs::read_to_string(l.root().join(".tranche-lock/owner")).unwrap();
            assert_eq!(owner, lease(v, 9).to_file(), "{}", sh.name);
        }
    }
}

#[test]
fn preflight_under_become_refuses_a_layout_another_user_can_write() {
    for sh in shells() {
        let l = Layout::new();
        let stage = l.root().join(".tranche-stage");
        std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = sh.run(&preflight(&l, "2.0.0", false, true, &lease("r1", 9)));
        assert_eq!(code(&out), exit(HostExit::Untrusted), "{}", show(&sh, &out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(".tranche-stage"),
            "{}",
            show(&sh, &out)
        );
        assert!(!l.root().join(".tranche-lock").exists(), "no lock is left behind");
        // Without become (the login user writes as itself) it is fine.
        let out = sh.run(&preflight(&l, "2.0.0", false, false, &lease("r1", 9)));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
    }
}

fn stage_stdin(l: &Layout, v: &str, sha: &str, offset: u64) -> RemoteCommand {
    remote::stage(&l.r(), v, sha, Transfer::Stdin { offset }, 0)
}

fn part(l: &Layout, sha: &str) -> PathBuf {
    l.root().join(".tranche-stage").join(format!("{sha}.part"))
}

#[test]
fn stage_writes_checks_and_unpacks_and_resumes_a_cut_upload() {
    for sh in shells() {
        let l = Layout::new();
        let (tgz, sha) = artifact("2.0.0");
        let out = sh.run_with(&stage_stdin(&l, "2.0.0", &sha, 0), &tgz);
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(
            std::fs::read_to_string(l.rel("2.0.0").join("VERSION")).unwrap(),
            "2.0.0"
        );
        assert_eq!(
            std::fs::read_to_string(l.rel("2.0.0").join(".tranche-sha256")).unwrap(),
            format!("{sha}\n")
        );
        assert!(!part(&l, &sha).exists(), "the part is removed");

        // Resumed: the first half is there, the rest comes on stdin.
        let (tgz, sha) = artifact("3.0.0");
        let half = tgz.len() / 2;
        std::fs::write(part(&l, &sha), &tgz[..half]).unwrap();
        let out = sh.run_with(&stage_stdin(&l, "3.0.0", &sha, half as u64), &tgz[half..]);
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(
            std::fs::read_to_string(l.rel("3.0.0").join("VERSION")).unwrap(),
            "3.0.0"
        );

        // A part that changed since preflight is not appended to.
        std::fs::write(part(&l, &sha), b"xyz").unwrap();
        let out = sh.run_with(&stage_stdin(&l, "4.0.0", &sha, 7), &tgz[7..]);
        assert_eq!(code(&out), exit(HostExit::PartChanged), "{}", show(&sh, &out));

        // A wrong checksum: refused, the part removed, nothing unpacked.
        let out = sh.run_with(&stage_stdin(&l, "5.0.0", &"0".repeat(64), 0), &tgz);
        assert_eq!(code(&out), exit(HostExit::ShaMismatch), "{}", show(&sh, &out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"));
        assert!(!l.rel("5.0.0").exists());
        assert!(!part(&l, &"0".repeat(64)).exists());
    }
}

/// Finding 2: however `current` is written, a live release without the marker that differs
/// from the artifact is never removed nor replaced; one that is the artifact is adopted.
#[test]
fn stage_never_replaces_the_live_release_however_current_is_written() {
    for sh in shells() {
        for how in ["absolute", "absolute-slash", "relative-slash", "dot", "root-symlink"] {
            let l = Layout::new();
            l.foreign_release("2.0.0", "hand-made");
            let abs = format!("{}/releases/2.0.0", l.r());
            let mut root = l.r();
            match how {
                "absolute" => l.set_current(&abs),
                "absolute-slash" => l.set_current(&format!("{abs}/")),
                "relative-slash" => l.set_current("releases/2.0.0/"),
                "dot" => l.set_current("./releases/2.0.0"),
                _ => {
                    // The layout root reached through a link, `current` absolute through the
                    // real path.
                    l.set_current(&abs);
                    let link = l.tmp.path().join("app-link");
                    symlink(l.root(), &link).unwrap();
                    root = link.display().to_string();
                }
            }
            let (tgz, sha) = artifact("2.0.0");
            let cmd = remote::stage(&root, "2.0.0", &sha, Transfer::Stdin { offset: 0 }, 0);
            let out = sh.run_with(&cmd, &tgz);
            assert_eq!(code(&out), exit(HostExit::LiveDiffers), "{how}: {}", show(&sh, &out));
            assert_eq!(
                std::fs::read_to_string(l.rel("2.0.0").join("VERSION")).unwrap(),
                "hand-made",
                "{how}: the live release was replaced ({})",
                sh.name
            );
            assert!(!l.rel("2.0.0").join(".tranche-sha256").exists());
            // No unpack directory is left behind.
            let left: Vec<_> = std::fs::read_dir(l.root().join("releases"))
                .unwrap()
                .flatten()
                .collect();
            assert_eq!(left.len(), 1, "{how} {}: {left:?}", sh.name);
        }
        // The same content: adopted in place (marker added), not replaced.
        let l = Layout::new();
        l.foreign_release("2.0.0", "2.0.0");
        l.set_current(&format!("{}/releases/2.0.0", l.r()));
        let inode = std::fs::metadata(l.rel("2.0.0")).unwrap();
        let (tgz, sha) = artifact("2.0.0");
        let out = sh.run_with(&stage_stdin(&l, "2.0.0", &sha, 0), &tgz);
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert!(stdout(&out).contains("staged=adopted"), "{}", show(&sh, &out));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(l.rel("2.0.0")).unwrap().ino(), inode.ino());
        assert_eq!(
            std::fs::read_to_string(l.rel("2.0.0").join(".tranche-sha256")).unwrap(),
            format!("{sha}\n")
        );
        // A release that is not live is replaced.
        let l = Layout::new();
        l.foreign_release("2.0.0", "stale");
        l.foreign_release("1.0.0", "1.0.0");
        l.set_current("releases/1.0.0");
        let out = sh.run_with(&stage_stdin(&l, "2.0.0", &sha, 0), &tgz);
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(
            std::fs::read_to_string(l.rel("2.0.0").join("VERSION")).unwrap(),
            "2.0.0"
        );
    }
}

/// The leftovers of a cut staging are removed, unless `current` resolves to one of them.
#[test]
fn stage_cleans_leftovers_but_never_the_live_one() {
    for sh in shells() {
        let l = Layout::new();
        let (tgz, sha) = artifact("2.0.0");
        l.foreign_release(".tranche-unpack.old111", "junk");
        l.foreign_release("2.0.0.tmp", "live");
        l.set_current("releases/2.0.0.tmp");
        let out = sh.run_with(&stage_stdin(&l, "2.0.0", &sha, 0), &tgz);
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert!(!l.rel(".tranche-unpack.old111").exists(), "{}", sh.name);
        assert_eq!(
            std::fs::read_to_string(l.rel("2.0.0.tmp").join("VERSION")).unwrap(),
            "live",
            "{}",
            sh.name
        );
    }
}

/// Finding 1: the URL is an argument; a download that fails runs nothing from it.
#[test]
fn pull_with_a_hostile_url_fails_without_running_it() {
    for sh in shells() {
        for v in HOSTILE {
            let l = Layout::new();
            let url = format!("http://127.0.0.1:9/{v}");
            let cmd = remote::stage(&l.r(), "2.0.0", &"0".repeat(64), Transfer::Pull { url: &url }, 0);
            let out = Command::new(sh.sh())
                .arg("-c")
                .arg(cmd.to_command())
                .current_dir(l.tmp.path())
                .env("PATH", &sh.path)
                .output()
                .unwrap();
            assert_eq!(code(&out), exit(HostExit::DownloadFailed), "{v:?} {}", show(&sh, &out));
            assert!(!l.pwned(), "{v:?} ran: {}", show(&sh, &out));
            // The message does not echo the URL (it may carry credentials).
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("downloading http"),
                "{}",
                show(&sh, &out)
            );
        }
    }
}

/// A one-shot HTTP server for `body`; returns its URL.
fn serve(body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(4) {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/demo-2.0.0.tar.gz")
}

#[test]
fn pull_downloads_checks_and_unpacks() {
    for sh in shells() {
        let l = Layout::new();
        let (tgz, sha) = artifact("2.0.0");
        let url = serve(tgz);
        let out = sh.run(&remote::stage(&l.r(), "2.0.0", &sha, Transfer::Pull { url: &url }, 0));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(
            std::fs::read_to_string(l.rel("2.0.0").join("VERSION")).unwrap(),
            "2.0.0"
        );
    }
}

/// Finding 6: links planted at the names root writes are replaced, never followed.
#[test]
fn planted_symlinks_are_never_written_through() {
    for sh in shells() {
        let l = Layout::new();
        let victim = l.tmp.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let (tgz, sha) = artifact("2.0.0");

        // `.part`, for a fresh upload: the link is removed, the victim untouched.
        symlink(&victim, part(&l, &sha)).unwrap();
        let out = sh.run_with(&stage_stdin(&l, "2.0.0", &sha, 0), &tgz);
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        // `.part`, for a resumed upload: refused.
        symlink(&victim, part(&l, &sha)).unwrap();
        let out = sh.run_with(&stage_stdin(&l, "3.0.0", &sha, 9), &tgz[9..]);
        assert_eq!(code(&out), exit(HostExit::PartChanged), "{}", show(&sh, &out));
        std::fs::remove_file(part(&l, &sha)).unwrap();
        // The hash of a cut upload does not read through a link either.
        symlink(&victim, part(&l, &sha)).unwrap();
        let out = sh.run(&remote::hash(&part(&l, &sha).display().to_string()));
        assert_ne!(code(&out), Some(0), "{}", show(&sh, &out));
        std::fs::remove_file(part(&l, &sha)).unwrap();

        // `.tranche-previous` and `current`.
        symlink(&victim, l.root().join(".tranche-previous")).unwrap();
        let out = sh.run(&remote::switch(&l.r(), "2.0.0", 5, "", "1.0.0"));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        let prev = l.root().join(".tranche-previous");
        assert!(!prev.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&prev).unwrap(), "1.0.0\n");

        // The lock's owner file.
        let lock = l.root().join(".tranche-lock");
        std::fs::create_dir_all(&lock).unwrap();
        std::fs::write(l.tmp.path().join("crafted"), "run=r1\n").unwrap();
        symlink(l.tmp.path().join("crafted"), lock.join("owner")).unwrap();
        let out = sh.run(&remote::lock::renew(&l.r(), &lease("r1", 99)));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert!(!lock.join("owner").symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(
            std::fs::read_to_string(l.tmp.path().join("crafted")).unwrap(),
            "run=r1\n"
        );

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "{}", sh.name);
    }
}

#[test]
fn switch_points_current_records_previous_and_prunes_but_never_the_live_release() {
    for sh in shells() {
        let l = Layout::new();
        for (i, v) in ["0.1", "0.2", "0.3", "0.4", "1.0", "zz-real"].iter().enumerate() {
            l.foreign_release(v, v);
            // Oldest first.
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64 * 10);
            std::fs::File::open(l.rel(v)).unwrap().set_modified(t).unwrap();
        }
        // `2.0` is a link to an old directory: pruning that directory would remove the live one.
        symlink(l.rel("0.2"), l.rel("2.0")).unwrap();
        l.set_current("releases/1.0");
        let out = sh.run(&remote::switch(&l.r(), "2.0", 2, "1.0", "1.0"));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(
            std::fs::read_link(l.root().join("current")).unwrap(),
            PathBuf::from("releases/2.0")
        );
        assert_eq!(
            std::fs::read_to_string(l.root().join(".tranche-previous")).unwrap(),
            "1.0\n"
        );
        let mut left: Vec<String> = std::fs::read_dir(l.root().join("releases"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // Kept: the two newest (2.0, zz-real), the one left (1.0), and 0.2 which `current` resolves to.
        assert_eq!(left, ["0.2", "1.0", "2.0", "zz-real"], "{}", show(&sh, &out));
        assert_eq!(remote::parse_current(&stdout(&out)).as_deref(), Some("0.2"));

        let out = sh.run(&remote::switch(&l.r(), "9.9", 2, "", ""));
        assert_eq!(code(&out), exit(HostExit::NoRelease), "{}", show(&sh, &out));
    }
}

#[test]
fn status_reports_where_current_resolves() {
    for sh in shells() {
        let l = Layout::new();
        let out = sh.run(&remote::status(&l.r()));
        assert_eq!((code(&out), remote::parse_current(&stdout(&out))), (Some(0), None));
        l.foreign_release("2.0.0", "2.0.0");
        for target in [
            "releases/2.0.0",
            "./releases/2.0.0/",
            &format!("{}/releases/2.0.0", l.r()),
        ] {
            l.set_current(target);
            let out = sh.run(&remote::status(&l.r()));
            assert_eq!(
                remote::parse_current(&stdout(&out)).as_deref(),
                Some("2.0.0"),
                "{target}"
            );
        }
    }
}

fn history_line(operator: &str, to: &str, outcome: &str) -> remote::history::HistoryLine {
    remote::history::HistoryLine {
        time: "2026-12-02T02:00:00Z".into(),
        run: "20261202-020000-ab12".into(),
        operator: operator.into(),
        controller: "ctl-a".into(),
        from: String::new(),
        to: to.into(),
        outcome: outcome.into(),
    }
}

#[test]
fn history_appends_one_line_per_change_and_tails_the_last_ones() {
    use remote::history::{append, parse_tail, tail};
    for sh in shells() {
        let l = Layout::new();
        let out = sh.run(&tail(&l.r(), 5));
        assert_eq!(
            (code(&out), stdout(&out)),
            (Some(0), String::new()),
            "{}",
            show(&sh, &out)
        );
        let mut want = Vec::new();
        for (i, op) in ["alice"].iter().chain(HOSTILE).chain(&["x	y"]).enumerate() {
            let line = history_line(op, &format!("{i}.0"), "ok");
            let out = sh.run(&append(&l.r(), &line));
            assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
            want.push(line);
        }
        assert!(!l.pwned(), "[{}] a value ran as code", sh.name);
        let text = std::fs::read_to_string(l.root().join(".tranche-history")).unwrap();
        assert_eq!(text.lines().count(), want.len(), "[{}] {text}", sh.name);
        assert!(text.lines().all(|x| x.split('\t').count() == 7), "[{}] {text}", sh.name);
        let out = sh.run(&tail(&l.r(), 2));
        let got = parse_tail(&stdout(&out));
        assert_eq!(got.len(), 2, "{}", show(&sh, &out));
        // Escaped, not split: the tab and the newline of a value are `\t` and `\n` in its field.
        assert_eq!(got[0].operator, "\"$(touch PWNED)\"");
        assert_eq!(got[1].operator, "x\\ty");
        assert_eq!((got[1].from.as_str(), got[1].to.as_str()), ("-", "7.0"));
        let out = sh.run(&tail(&l.r(), 100));
        assert_eq!(parse_tail(&stdout(&out)).len(), want.len());
        assert_eq!(parse_tail(&stdout(&out))[5].operator, "a\\ntouch PWNED");
    }
}

#[test]
fn history_refuses_raw_tabs_and_newlines_and_planted_links() {
    for sh in shells() {
        let l = Layout::new();
        // A command built around the escaping, as a careless caller would: refused whole.
        for bad in ["a\tb", "a\nb", "a\rb"] {
            let mut cmd = remote::history::append(&l.r(), &history_line("al", "1", "ok"));
            cmd.args[4] = bad.into();
            let out = sh.run(&cmd);
            assert_eq!(code(&out), exit(HostExit::BadValue), "{}", show(&sh, &out));
        }
        assert!(!l.root().join(".tranche-history").exists());
        let victim = l.tmp.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        symlink(&victim, l.root().join(".tranche-history")).unwrap();
        let out = sh.run(&remote::history::append(&l.r(), &history_line("al", "1", "ok")));
        assert_eq!(code(&out), exit(HostExit::Layout), "{}", show(&sh, &out));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        let mut cmd = remote::history::tail(&l.r(), 1);
        cmd.args[2] = "1; touch PWNED".into();
        assert_eq!(code(&sh.run(&cmd)), exit(HostExit::BadValue));
        assert!(!l.pwned());
    }
}

#[test]
fn hash_of_a_cut_upload() {
    for sh in shells() {
        let l = Layout::new();
        let p = l.root().join(".tranche-stage/x.part");
        std::fs::write(&p, b"hello").unwrap();
        let out = sh.run(&remote::hash(&p.display().to_string()));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(remote::parse_hash(&stdout(&out)), Some(sha256(b"hello")));
    }
}

/// Finding 8: taking over an expired lock is atomic: of many runs at once, exactly one wins.
#[test]
fn take_over_of_a_stale_lock_has_exactly_one_winner() {
    for sh in shells() {
        let l = Layout::new();
        let stale = lease("dead-run", 1);
        let lock = l.root().join(".tranche-lock");
        std::fs::create_dir_all(&lock).unwrap();
        std::fs::write(lock.join("owner"), stale.to_file()).unwrap();
        let children: Vec<_> = (0..8)
            .map(|i| {
                let cmd = remote::lock::take_over(&l.r(), &stale, &lease(&format!("run-{i}"), 99));
                Command::new(sh.sh())
                    .arg("-c")
                    .arg(cmd.to_command())
                    .env("PATH", &sh.path)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let winners: Vec<usize> = (0..8).filter(|&i| code(&outs[i]) == Some(0)).collect();
        assert_eq!(
            winners.len(),
            1,
            "{}: {:?}",
            sh.name,
            outs.iter().map(|o| show(&sh, o)).collect::<Vec<_>>()
        );
        for (i, o) in outs.iter().enumerate() {
            if i != winners[0] {
                assert_eq!(code(o), exit(HostExit::LockLost), "{}", show(&sh, o));
            }
        }
        let owner = Lease::parse(&std::fs::read_to_string(lock.join("owner")).unwrap()).unwrap();
        assert_eq!(owner.run, format!("run-{}", winners[0]));
        // No renamed lock is left behind.
        let left: Vec<_> = std::fs::read_dir(l.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tranche-lock."))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", sh.name);
    }
}

/// Finding 8: renewal checks that the run still holds the lock.
#[test]
fn renewal_after_unlock_or_takeover_says_not_ours_and_writes_nothing() {
    for sh in shells() {
        let l = Layout::new();
        let out = sh.run(&preflight(&l, "2.0.0", false, false, &lease("r1", 10)));
        assert_eq!(PreflightReport::parse(&stdout(&out)).lock.state, LockState::Acquired);
        let owner = l.root().join(".tranche-lock/owner");

        let out = sh.run(&remote::lock::renew(&l.r(), &lease("r1", 20)));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert_eq!(LockReport::parse(&stdout(&out)).state, LockState::Renewed);
        assert_eq!(
            Lease::parse(&std::fs::read_to_string(&owner).unwrap()),
            Some(lease("r1", 20))
        );

        // `tranche unlock`, then another run takes the lock.
        let out = sh.run(&remote::lock::break_lock(&l.r()));
        assert_eq!(LockReport::parse(&stdout(&out)).owner, Some(lease("r1", 20)));
        let out = sh.run(&remote::lock::renew(&l.r(), &lease("r1", 30)));
        assert_eq!(code(&out), exit(HostExit::NotOurs), "{}", show(&sh, &out));
        assert_eq!(LockReport::parse(&stdout(&out)).state, LockState::Gone);
        assert!(
            !l.root().join(".tranche-lock").exists(),
            "renewal must not create a lock"
        );

        let out = sh.run(&preflight(&l, "2.0.0", false, false, &lease("r2", 40)));
        assert_eq!(PreflightReport::parse(&stdout(&out)).lock.state, LockState::Acquired);
        let out = sh.run(&remote::lock::renew(&l.r(), &lease("r1", 50)));
        assert_eq!(code(&out), exit(HostExit::NotOurs), "{}", show(&sh, &out));
        let rep = LockReport::parse(&stdout(&out));
        assert_eq!((rep.state, rep.owner), (LockState::Taken, Some(lease("r2", 40))));
        assert_eq!(
            Lease::parse(&std::fs::read_to_string(&owner).unwrap()),
            Some(lease("r2", 40))
        );

        // Release removes only our own lock.
        let out = sh.run(&remote::lock::release(&l.r(), "r1"));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert!(owner.exists());
        let out = sh.run(&remote::lock::release(&l.r(), "r2"));
        assert_eq!(code(&out), Some(0), "{}", show(&sh, &out));
        assert!(!l.root().join(".tranche-lock").exists(), "{}", show(&sh, &out));
        let out = sh.run(&remote::lock::peek(&l.r()));
        assert_eq!(LockReport::parse(&stdout(&out)).state, LockState::Free);
    }
}

/// A take-over that lands between renewal's look at the owner and its write (a renewal that came
/// late, a lease another run saw expire) does not get the other run's lock overwritten: the
/// renewal says the lock was taken, and the lock stays the other run's. A `mktemp` put first on
/// the PATH does the take-over at the moment the renewal starts writing.
#[test]
fn a_take_over_racing_a_renewal_keeps_the_new_owner() {
    for sh in shells() {
        let l = Layout::new();
        let out = sh.run(&preflight(&l, "2.0.0", false, false, &lease("r1", 10)));
        assert_eq!(PreflightReport::parse(&stdout(&out)).lock.state, LockState::Acquired);
        let root = l.root();
        std::fs::write(l.tmp.path().join("r2-owner"), lease("r2", 99).to_file()).unwrap();
        let shim = tempfile::tempdir().unwrap();
        let real = if sh.name == "busybox" {
            "/usr/bin/busybox mktemp"
        } else {
            "/usr/bin/mktemp"
        };
        let script = format!(
            "#!/bin/sh\ncase \"$*\" in *.tranche-tmp.*)\n  if mkdir '{r}/.raced' 2>/dev/null; then\n    mv '{r}/.tranche-lock' '{r}/.stolen' && mkdir '{r}/.tranche-lock' && cat '{o}' > '{r}/.tranche-lock/owner'\n  fi;;\nesac\nexec {real} \"$@\"\n",
            r = root.display(),
            o = l.tmp.path().join("r2-owner").display(),
        );
        let mktemp = shim.path().join("mktemp");
        std::fs::write(&mktemp, script).unwrap();
        std::fs::set_permissions(&mktemp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = Command::new(sh.sh())
            .arg("-c")
            .arg(remote::lock::renew(&l.r(), &lease("r1", 20)).to_command())
            .env_clear()
            .env("PATH", format!("{}:{}", shim.path().display(), sh.path))
            .output()
            .unwrap();
        assert!(root.join(".raced").exists(), "{}: the race was not staged", sh.name);
        assert_eq!(code(&out), exit(HostExit::NotOurs), "{}", show(&sh, &out));
        let rep = LockReport::parse(&stdout(&out));
        assert_eq!(
            (rep.state, rep.owner),
            (LockState::Taken, Some(lease("r2", 99))),
            "{}",
            sh.name
        );
        assert_eq!(
            Lease::parse(&std::fs::read_to_string(root.join(".tranche-lock/owner")).unwrap()),
            Some(lease("r2", 99)),
            "{}: the other run's lock was overwritten",
            sh.name
        );
    }
}

/// Every script, with the common functions in front, is `shellcheck -s sh` clean.
#[test]
fn scripts_are_shellcheck_clean() {
    let l = "/srv/app";
    let cmds = [
        remote::preflight(l, "1", "a", false, false, ""),
        remote::stage(l, "1", "a", Transfer::Sftp, 0),
        remote::hash(l),
        remote::switch(l, "1", 1, "", ""),
        remote::status(l),
        remote::haproxy(l, "show info"),
        remote::lock::peek(l),
        remote::history::tail(l, 5),
        remote::bluegreen::get(l),
    ];
    for cmd in cmds {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script.sh");
        std::fs::write(&f, cmd.program()).unwrap();
        let out = Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(&f)
            .output()
            .expect("shellcheck runs (install shellcheck: scripts/setup.sh does)");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            cmd.script.lines().take(3).collect::<Vec<_>>().join("\n")
        );
    }
}

/// A host with GNU wget and no curl: the download goes through `wget -T 60 -- URL`, and a hostile
/// URL runs nothing there either.
#[test]
fn pull_with_gnu_wget_when_curl_is_missing() {
    assert!(
        Path::new("/usr/bin/wget").exists(),
        "/usr/bin/wget is missing: install wget"
    );
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        let name = e.file_name();
        if name != "curl" && name != "sh" {
            symlink(e.path(), dir.path().join(&name)).unwrap();
        }
    }
    symlink("/usr/bin/dash", dir.path().join("sh")).unwrap();
    let path = dir.path().display().to_string();
    let run = |cmd: &RemoteCommand, cwd: &Path| {
        Command::new(dir.path().join("sh"))
            .arg("-c")
            .arg(cmd.to_command())
            .current_dir(cwd)
            .env_clear()
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let l = Layout::new();
    let (tgz, sha) = artifact("2.0.0");
    let url = serve(tgz);
    let out = run(
        &remote::stage(&l.r(), "2.0.0", &sha, Transfer::Pull { url: &url }, 0),
        l.tmp.path(),
    );
    assert_eq!(code(&out), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(l.rel("2.0.0").join("VERSION")).unwrap(),
        "2.0.0"
    );
    for v in HOSTILE {
        let url = format!("http://127.0.0.1:9/{v}");
        let out = run(
            &remote::stage(&l.r(), "3.0.0", &sha, Transfer::Pull { url: &url }, 1024),
            l.tmp.path(),
        );
        assert_eq!(
            code(&out),
            exit(HostExit::DownloadFailed),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("wget exit"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!l.pwned(), "{v:?} ran");
    }
}
