//! `ansible.cfg` as Ansible finds it (issue 13): its inventory when `-i` is not given, its
//! `remote_user` and `private_key_file`; never weaker host-key checking.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn tranche(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tranche"));
    c.args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env_remove("ANSIBLE_CONFIG")
        .env_remove("TRANCHE_INVENTORY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn project(dir: &Path) {
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::create_dir_all(dir.join("inv")).unwrap();
    std::fs::write(dir.join("app.tar.gz"), b"x").unwrap();
    std::fs::write(
        dir.join("inv/hosts.ini"),
        "[web]\nweb-01 ansible_host=127.0.0.1\nweb-02 ansible_host=127.0.0.2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pb.yml"),
        "service: demo\nversion: \"2.0.0\"\nhosts: web\nartifact:\n  path: app.tar.gz\n",
    )
    .unwrap();
}

#[test]
fn the_inventory_of_ansible_cfg_is_used_without_i() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    // Without -i and without ansible.cfg: a clear error, exit 2.
    let out = tranche(d, &["plan", "pb.yml", "--format", "json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no inventory: pass -i INVENTORY"), "{stderr}");
    // ./ansible.cfg names the inventory (relative to itself) and weaker host-key checking.
    std::fs::write(
        d.join("ansible.cfg"),
        "[defaults]\ninventory = inv/hosts.ini\nremote_user = deploy\nhost_key_checking = False\n",
    )
    .unwrap();
    let out = tranche(d, &["plan", "pb.yml", "--format", "json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = plan.to_string();
    assert!(text.contains("web-01") && text.contains("web-02"), "{text}");
    assert!(
        stderr.contains("sets host_key_checking = False; tranche checks host keys anyway"),
        "{stderr}"
    );
    // `-i` wins over ansible.cfg; $ANSIBLE_CONFIG wins over ./ansible.cfg.
    std::fs::write(d.join("other.ini"), "[web]\nweb-09 ansible_host=127.0.0.9\n").unwrap();
    let out = tranche(d, &["plan", "-i", "other.ini", "pb.yml", "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web-09") && !text.contains("web-01"), "{text}");
    std::fs::write(d.join("env.cfg"), "[defaults]\ninventory = other.ini\n").unwrap();
    let env = d.join("env.cfg");
    let out = tranche(
        d,
        &["plan", "pb.yml", "--format", "json"],
        &[("ANSIBLE_CONFIG", env.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("web-09"));
}

/// Against a real sshd: `private_key_file` of ansible.cfg is the key tried, and `remote_user` is
/// the user when the inventory names none (slot 85).
#[test]
fn remote_user_and_private_key_file_of_ansible_cfg_are_used() {
    let fleet = common::Fleet::up(85, 1);
    let d = fleet.dir.join("cfg");
    std::fs::create_dir_all(d.join("home")).unwrap();
    std::fs::write(d.join("app.tar.gz"), b"x").unwrap();
    std::fs::write(
        d.join("inv.yml"),
        format!("all:\n  hosts:\n    h01: {{ ansible_host: {}.1 }}\n", fleet.net),
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "service: demo\nversion: \"2.0.0\"\nartifact:\n  path: app.tar.gz\n",
    )
    .unwrap();
    let key = fleet.dir.join("id_ed25519");
    let check = |cfg: &str, user: &[&str]| {
        std::fs::write(d.join("ansible.cfg"), cfg).unwrap();
        let kh = fleet.known_hosts();
        let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args(["plan", "pb.yml", "--check", "--known-hosts", kh.to_str().unwrap()])
            .args(["--connect-timeout", "5s"])
            .args(user)
            .current_dir(&d)
            .env("HOME", d.join("home"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("ANSIBLE_CONFIG")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    // No key anywhere: authentication fails.
    let (code, stderr) = check("[defaults]\ninventory = inv.yml\n", &["-u", "root"]);
    assert_eq!(code, Some(3), "{stderr}");
    // The key of ansible.cfg gets in.
    let with_key = format!(
        "[defaults]\ninventory = inv.yml\nprivate_key_file = {}\n",
        key.display()
    );
    let (code, stderr) = check(&with_key, &["-u", "root"]);
    assert_eq!(code, Some(0), "{stderr}");
    // Without `-u`, remote_user is the user (one sshd does not know: refused, and named) ...
    let with_user = format!("{with_key}remote_user = ghost-of-cfg\n");
    let (code, stderr) = check(&with_user, &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("authentication as ghost-of-cfg@"), "{stderr}");
    // ... and `-u` wins over it.
    let (code, stderr) = check(&with_user, &["-u", "root"]);
    assert_eq!(code, Some(0), "{stderr}");
}
