//! Issue 11's findings 1, 2, 6 and 8 against the real fleet (slots 50-54): what a hostile value
//! or a planted link could make a host do, and the lock races.

mod common;

use std::os::unix::fs::symlink;
use std::sync::Arc;

use common::{ensure_user, Fleet};

fn chown(user: &str, path: &std::path::Path) {
    let st = std::process::Command::new("chown")
        .arg(user)
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Finding 1: a pull whose rendered URL carries `$(...)` fails to download and runs nothing.
/// (Before: the URL was echoed inside double quotes after the failure, and the command ran.)
#[test]
fn a_hostile_url_in_pull_mode_runs_nothing_on_the_host() {
    let fleet = Fleet::up(50, 1);
    fleet.install("1.0.0");
    let marker = fleet.srv(1).join("demo/PWNED");
    let pb = fleet.playbook(
        "pull.yml",
        "2.0.0",
        "artifact:\n  url: \"http://127.0.0.1:9/{{ evil }}/demo-2.0.0.tar.gz\"\n  sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
    );
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "-e",
        "evil=$(touch${IFS}/srv/demo/PWNED)`touch${IFS}/srv/demo/PWNED`",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Refused when the files are read (exit 2) or when the download fails; never run.
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(!marker.exists(), "the URL ran as a command on the host:\n{stderr}");
    assert_eq!(fleet.current(1).as_deref(), Some("1.0.0"));
}

/// Finding 2: `current` written as an absolute path to a release tranche did not put there
/// (no checksum marker) that differs from the artifact: staging refuses, the live release stays.
/// (Before: the guard compared link text, `rm -rf`'d the live release and replaced it.)
#[test]
fn staging_never_replaces_the_live_release_behind_an_absolute_current() {
    let fleet = Fleet::up(51, 1);
    fleet.install("2.0.0");
    let demo = fleet.srv(1).join("demo");
    std::fs::write(
        demo.join("releases/2.0.0/HANDMADE"),
        "fixed by hand during an incident\n",
    )
    .unwrap();
    std::fs::remove_file(demo.join("current")).unwrap();
    symlink("/srv/demo/releases/2.0.0/", demo.join("current")).unwrap();
    let pb = fleet.playbook("pb.yml", "2.0.0", "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::fs::read_to_string(demo.join("releases/2.0.0/HANDMADE"))
            .ok()
            .as_deref(),
        Some("fixed by hand during an incident\n"),
        "the live release was replaced:\n{stderr}"
    );
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is the current release"), "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // The same release as the artifact: adopted in place (marked), not replaced.
    std::fs::remove_file(demo.join("releases/2.0.0/HANDMADE")).unwrap();
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("left in place"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(demo.join("releases/2.0.0/.tranche-sha256")).unwrap(),
        format!("{}\n", fleet.sha256("2.0.0"))
    );
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

/// Finding 6: under become, links the login user planted at the upload `.part` and at
/// `.tranche-previous` are never written through by root. (Before: root overwrote their targets.)
#[test]
fn become_never_writes_through_links_the_login_user_planted() {
    ensure_user("tranche-deploy", true);
    let fleet = Fleet::up(52, 1);
    fleet.install("1.0.0");
    let inventory = std::fs::read_to_string(fleet.inventory()).unwrap();
    let inv = fleet.dir.join("deploy.yml");
    std::fs::write(&inv, inventory.replace("user: root", "user: tranche-deploy")).unwrap();
    let pb = fleet.playbook(
        "become.yml",
        "2.0.0",
        "become: true\nartifact:\n  path: artifacts/demo-2.0.0.tar.gz\n",
    );
    let srv = fleet.srv(1);
    let demo = srv.join("demo");
    let victim = srv.join("victim");
    std::fs::write(&victim, "root's file\n").unwrap();

    // A stage directory the login user owns, with the part linked to root's file.
    let stage = demo.join(".tranche-stage");
    std::fs::create_dir_all(&stage).unwrap();
    chown("tranche-deploy", &stage);
    symlink("/srv/victim", stage.join(format!("{}.part", fleet.sha256("2.0.0")))).unwrap();
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"root's file\n",
        "root wrote through the link:\n{stderr}"
    );
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("under become"), "{stderr}");
    std::fs::remove_dir_all(&stage).unwrap();

    // A layout root the login user owns, with `.tranche-previous` linked to root's file.
    chown("tranche-deploy", &demo);
    symlink("/srv/victim", demo.join(".tranche-previous")).unwrap();
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"root's file\n",
        "root wrote through the link:\n{stderr}"
    );
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(fleet.current(1).as_deref(), Some("1.0.0"));

    // Given back to root: the release goes through, and `.tranche-previous` is a new file.
    chown("root", &demo);
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
    let prev = demo.join(".tranche-previous");
    assert!(!prev.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(prev).unwrap(), "1.0.0\n");
}

/// Finding 8: two runs that find the same expired lock at once: exactly one takes it over.
/// (Before: both overwrote the owner file and both went on.)
#[test]
fn two_runs_taking_over_one_expired_lock_exactly_one_goes_on() {
    let fleet = Arc::new(Fleet::up(53, 1));
    fleet.install("1.0.0");
    let lock = fleet.srv(1).join("demo/.tranche-lock");
    let pb = fleet.playbook(
        "pb.yml",
        "2.0.0",
        // The winner holds the lock a while in preflight, so the two runs overlap.
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nhooks:\n  precheck: \"sleep 2\"\n",
    );
    let mut wins = 0;
    for round in 0..3 {
        std::fs::create_dir_all(&lock).unwrap();
        std::fs::write(
            lock.join("owner"),
            format!("run=dead-{round}\noperator=bob\ncontroller=ci-7\nstarted=2026-11-22T00:00:00.000Z\nexpires=1\n"),
        )
        .unwrap();
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let (fleet, pb) = (fleet.clone(), pb.clone());
                std::thread::spawn(move || {
                    fleet.tranche(&[
                        "release",
                        "-i",
                        fleet.inventory().to_str().unwrap(),
                        pb.to_str().unwrap(),
                    ])
                })
            })
            .collect();
        let outs: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
        let ok: Vec<_> = outs.iter().filter(|o| o.status.code() == Some(0)).collect();
        let all: Vec<String> = outs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        assert_eq!(
            ok.len(),
            1,
            "round {round}: exactly one run may go on:\n{}",
            all.join("\n----\n")
        );
        let refused = outs.iter().find(|o| o.status.code() != Some(0)).unwrap();
        assert_eq!(refused.status.code(), Some(3), "{}", all.join("\n----\n"));
        assert!(
            all.iter()
                .any(|e| e.contains("locked by run") || e.contains("took over the expired lock first")),
            "{}",
            all.join("\n----\n")
        );
        assert!(!lock.exists(), "the winner releases the lock");
        wins += 1;
    }
    assert_eq!(wins, 3);
}
