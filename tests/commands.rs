//! The commands as a user meets them: what each prints when it stops, with which exit code, and
//! what happens when the reader of stdout goes away. No fleet: nothing here connects.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn project(dir: &Path) {
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
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tranche"));
    c.args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env("HOME", dir)
        .env_remove("ANSIBLE_CONFIG")
        .env_remove("RUST_BACKTRACE");
    c
}

fn tranche(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

/// Run with stdout a pipe whose reader is already gone.
fn tranche_into_closed_pipe(dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command(dir, args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["inventory", "-i", "inventory.yml", "--list"],
        &["plan", "-i", "inventory.yml", "playbook.yml", "--format", "json"],
    ] {
        let out = tranche_into_closed_pipe(dir.path(), args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("error"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn errors_print_once_with_their_hint_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let cases: [(&[&str], &str); 5] = [
        (&["resume"], "error: no unfinished run in .tranche\n"),
        (
            &["inventory", "-i", "inventory.yml", "--host", "nope"],
            "error: no host `nope` in the inventory\n",
        ),
        (
            &["inventory", "-i", "inventory.yml", "--graph", "nope"],
            "error: no group `nope` in the inventory (--graph takes a group name)\n",
        ),
        (
            &["inventory", "--list"],
            "error: no inventory: pass -i INVENTORY (or set `inventory` in ansible.cfg)\n",
        ),
        (
            &[
                "plan",
                "-i",
                "inventory.yml",
                "playbook.yml",
                "--format",
                "json",
                "--check",
                "--events",
                "-",
            ],
            "error: --format json and --events - would both write to stdout; give --events a file\n",
        ),
    ];
    for (args, expected) in cases {
        let out = tranche(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), expected, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_missing_run_names_the_state_dir_and_how_to_point_at_another() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = tranche(dir.path(), &["resume", "20261121-100000-ab12", "--state-dir", "st"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("error: no run 20261121-100000-ab12 in st: "), "{err}");
    assert!(
        err.ends_with(
            "\n  = hint: the runs are the folders of st/runs; pass the --state-dir the run was started with\n"
        ),
        "{err}"
    );
}

#[test]
fn a_secret_from_an_unset_variable_says_what_to_export() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = command(
        dir.path(),
        &[
            "validate",
            "-i",
            "inventory.yml",
            "playbook.yml",
            "-e",
            "token=@env:TRANCHE_TEST_UNSET",
        ],
    )
    .env_remove("TRANCHE_TEST_UNSET")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.ends_with("\n  = hint: export TRANCHE_TEST_UNSET before running tranche\n"),
        "{err}"
    );
}

/// A secret typed without its key (`-e hunter2`) or with a bad key is refused by its place, and
/// no part of it reaches the terminal (clap's own error used to echo the whole value).
#[test]
fn a_malformed_extra_var_is_refused_without_being_echoed() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    for bad in ["hunter2-s3cret", "=hunter2-s3cret", "bad key=hunter2-s3cret"] {
        for cmd in ["release", "plan", "validate"] {
            let out = tranche(
                dir.path(),
                &[cmd, "-i", "inventory.yml", "-e", "ok=1", "-e", bad, "playbook.yml"],
            );
            assert_eq!(out.status.code(), Some(2), "{cmd} -e {bad}");
            let err = stderr(&out);
            assert!(!err.contains("hunter2"), "{cmd} echoed the value: {err}");
            assert!(err.starts_with("error: -e value 2 of 2 is not KEY=VALUE"), "{err}");
            assert!(String::from_utf8_lossy(&out.stdout).is_empty());
            assert!(!dir.path().join(".tranche").exists(), "{cmd} wrote its state");
        }
    }
}

#[test]
fn problems_in_the_files_are_counted_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    std::fs::write(dir.path().join("playbook.yml"), "service: demo\nversion: \"2.0.0\"\n").unwrap();
    let out = tranche(dir.path(), &["validate", "-i", "inventory.yml", "playbook.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.ends_with("\n\n1 problem found; nothing was touched\n"), "{err}");
}
