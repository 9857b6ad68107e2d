//! Flags about output are accepted by every command, and `--quiet` keeps what needs a person.
//! No fleet: the one host is a closed port on loopback, so every connection fails at once.

use std::path::Path;
use std::process::{Command, Output};

fn files(dir: &Path) -> (String, String) {
    std::fs::write(dir.join("app.tar.gz"), b"x").unwrap();
    std::fs::write(
        dir.join("inventory.yml"),
        "all:\n  hosts:\n    h1: { ansible_host: 127.0.0.1, ansible_port: 1 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("playbook.yml"),
        "service: demo\nversion: \"2.0.0\"\nartifact:\n  path: app.tar.gz\n",
    )
    .unwrap();
    (
        dir.join("inventory.yml").display().to_string(),
        dir.join("playbook.yml").display().to_string(),
    )
}

fn tranche(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env("HOME", dir)
        .output()
        .unwrap()
}

#[test]
fn every_command_accepts_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (inv, pb) = files(dir.path());
    let d = dir.path();
    // The exit code is the command's own (a usage error would be 2).
    for (args, code) in [
        (vec!["validate", "-i", &inv, &pb, "--no-progress"], 0),
        (vec!["plan", "-i", &inv, &pb, "--no-progress"], 0),
        (
            vec!["status", "-i", &inv, &pb, "--no-progress", "--connect-timeout", "2s"],
            1,
        ),
        (
            vec!["unlock", "-i", &inv, &pb, "--no-progress", "--connect-timeout", "2s"],
            3,
        ),
    ] {
        let out = tranche(d, &args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn quiet_keeps_failures_and_the_last_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let (inv, pb) = files(dir.path());
    let run = |extra: &[&str]| {
        let mut args = vec!["release", "-i", &inv, &pb, "--yes", "--connect-timeout", "2s"];
        args.extend(extra);
        let out = tranche(dir.path(), &args);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, loud) = run(&[]);
    assert_eq!(code, Some(3), "{loud}");
    assert!(loud.contains("release demo to 2.0.0 on 1 host"), "{loud}");
    let (code, quiet) = run(&["-q"]);
    assert_eq!(code, Some(3), "{quiet}");
    assert!(!quiet.contains("release demo to 2.0.0"), "{quiet}");
    assert!(quiet.contains("preflight  FAILED"), "{quiet}");
    assert!(quiet.contains("(exit 3)"), "{quiet}");
    assert!(quiet.lines().count() < loud.lines().count(), "{quiet}\n---\n{loud}");
}
