//! `become: true` against the real fleet: a login user without rights on the layout releases
//! through `sudo -n`; a user without sudo rights gets a clear preflight error.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{ensure_user, Fleet};

#[test]
fn become_runs_commands_through_sudo_and_a_missing_right_is_a_preflight_error() {
    ensure_user("tranche-deploy", true);
    ensure_user("tranche-nosudo", false);
    let fleet = Fleet::up(17, 2);
    fleet.install("1.0.0");
    let inventory = std::fs::read_to_string(fleet.inventory()).unwrap();
    let as_user = |user: &str| {
        let path = fleet.dir.join(format!("{user}.yml"));
        std::fs::write(
            &path,
            inventory.replace("ansible_user: root", &format!("ansible_user: {user}")),
        )
        .unwrap();
        path
    };
    let (deploy, nosudo) = (as_user("tranche-deploy"), as_user("tranche-nosudo"));
    let plain = fleet.playbook("plain.yml", "2.0.0", "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n");
    let with_become = fleet.playbook(
        "become.yml",
        "2.0.0",
        "become: true\nartifact:\n  path: artifacts/demo-2.0.0.tar.gz\n",
    );

    // Without become the deploy user cannot write the root-owned layout: refused at preflight.
    let out = fleet.tranche(&["release", "-i", deploy.to_str().unwrap(), plain.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("checking the layout"), "{stderr}");

    // A user without sudo rights: a clear preflight error, nothing changed.
    let out = fleet.tranche(&["release", "-i", nosudo.to_str().unwrap(), with_become.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("become: `sudo -n` does not work for tranche-nosudo"),
        "{stderr}"
    );
    assert_eq!(fleet.current(1).as_deref(), Some("1.0.0"));

    // With become, the release goes through sudo: root owns what it put on the hosts.
    let out = fleet.tranche(&["release", "-i", deploy.to_str().unwrap(), with_become.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
        let md = std::fs::metadata(fleet.srv(i).join("demo/releases/2.0.0/VERSION")).unwrap();
        assert_eq!(md.uid(), 0, "files unpacked through sudo belong to root");
        assert!(
            !fleet.srv(i).join("demo/.tranche-lock").exists(),
            "the lock is released through sudo too"
        );
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}
