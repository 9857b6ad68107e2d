//! The corpus of malformed inventories and playbooks under `tests/bad/`: every case must exit 2
//! with a message naming the file (and line and column where there is one), never panic, and
//! the messages are snapshotted so their quality is reviewed in diffs.

use std::process::Command;

fn tranche() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tranche"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("NO_COLOR", "1").env_remove("TRANCHE_LIMIT");
    c
}

#[test]
fn every_malformed_file_is_a_positioned_error() {
    let mut count = 0;
    insta::glob!("bad/*.{yml,ini}", |path| {
        count += 1;
        let name = path.file_name().unwrap().to_str().unwrap();
        let rel = std::path::Path::new("tests/bad").join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let mut cmd = tranche();
        cmd.arg("validate");
        if name.starts_with("inv-") {
            cmd.args(["-i", rel.to_str().unwrap(), "tests/fixtures/playbook.yml"]);
        } else {
            cmd.args(["-i", "tests/fixtures/inventory.yml", rel.to_str().unwrap()]);
        }
        if let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# args: ")) {
            cmd.args(args.split_whitespace());
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{name}: expected exit 2\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        assert!(out.stdout.is_empty(), "{name}: stdout must stay empty on errors");
        assert!(stderr.contains("error: "), "{name}: no error line\n{stderr}");
        // The file at fault is named, with line and column when the problem has a place.
        let named = stderr.contains(&format!("--> {}", rel.display()))
            || stderr.contains("--> tests/fixtures/")
            || stderr.contains("--> --limit");
        assert!(named, "{name}: the message does not name the file\n{stderr}");
        insta::assert_snapshot!(stderr);
    });
    assert!(count >= 30, "the corpus has only {count} cases");
}

#[test]
fn validate_lists_every_problem_at_once() {
    let out = tranche()
        .args([
            "validate",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/bad/pb-bad-duration.yml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("error: ").count(), 2, "{stderr}");
    assert!(stderr.contains("tests/bad/pb-bad-duration.yml:7:12"), "{stderr}");
    assert!(stderr.contains("tests/bad/pb-bad-duration.yml:10:13"), "{stderr}");
}

#[test]
fn both_files_are_checked_in_one_run() {
    let out = tranche()
        .args([
            "validate",
            "-i",
            "tests/bad/inv-bad-port.yml",
            "tests/bad/pb-unknown-nested-key.yml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("inv-bad-port.yml:5:45"), "{stderr}");
    assert!(stderr.contains("pb-unknown-nested-key.yml:7:3"), "{stderr}");
}
