//! Bastions against the real fleet: `jump` in the inventory (chains too) and ProxyJump in the
//! SSH config, one connection per bastion, the target's host key checked under its own name.

mod common;

use common::Fleet;

fn logins(fleet: &Fleet, i: usize) -> usize {
    std::fs::read_to_string(fleet.dir.join(format!("hosts/h{i}/sshd.log")))
        .unwrap_or_default()
        .matches("Accepted publickey")
        .count()
}

fn verbose_logs(fleet: &Fleet) {
    for i in 1..=fleet.hosts {
        let cfg = fleet.dir.join(format!("hosts/h{i}/sshd_config"));
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("LogLevel ERROR", "LogLevel VERBOSE");
        std::fs::write(&cfg, text).unwrap();
        let pid = std::fs::read_to_string(fleet.dir.join(format!("hosts/h{i}/sshd.pid"))).unwrap();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap()
            .success());
        std::fs::write(fleet.dir.join(format!("hosts/h{i}/sshd.log")), "").unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
}

#[test]
fn releases_through_bastions_from_the_inventory_and_the_ssh_config() {
    let fleet = Fleet::up(22, 3);
    fleet.install("1.0.0");
    verbose_logs(&fleet);
    let net = &fleet.net;
    // h02 behind h01; h03 behind h01 then h02 (a chain).
    let inv = std::fs::read_to_string(fleet.inventory()).unwrap();
    let jumps = inv
        .replace(
            &format!("h02: {{ ansible_host: {net}.2"),
            &format!("h02: {{ jump: root@{net}.1, ansible_host: {net}.2"),
        )
        .replace(
            &format!("h03: {{ ansible_host: {net}.3"),
            &format!("h03: {{ jump: 'root@{net}.1,root@{net}.2:22', ansible_host: {net}.3"),
        );
    assert_ne!(jumps, inv);
    let jinv = fleet.dir.join("jumps.yml");
    std::fs::write(&jinv, jumps).unwrap();
    let pb = fleet.playbook_with(
        "b.yml",
        "2.0.0",
        "h02:h03",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n",
        "",
    );
    let out = fleet.tranche(&["release", "-i", jinv.to_str().unwrap(), pb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fleet.current(2).as_deref(), Some("2.0.0"));
    assert_eq!(fleet.current(3).as_deref(), Some("2.0.0"));
    assert_eq!(
        fleet.current(1).as_deref(),
        Some("1.0.0"),
        "the bastion is not released"
    );
    // One connection to h01 (the bastion of both), two to h02 (as a target, and as the second
    // bastion of h03's chain, reached through h01), one to h03.
    assert_eq!((logins(&fleet, 1), logins(&fleet, 2), logins(&fleet, 3)), (1, 2, 1));

    // The target's key is checked under the target's name, not the bastion's.
    let kh = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    let without_h02: String = kh
        .lines()
        .filter(|l| !l.starts_with(&format!("{net}.2 ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let partial = fleet.dir.join("partial_known_hosts");
    std::fs::write(&partial, without_h02).unwrap();
    let pb2 = fleet.playbook_with(
        "b2.yml",
        "1.0.0",
        "h02",
        "artifact:\n  path: artifacts/demo-1.0.0.tar.gz\n",
        "",
    );
    let out = fleet.tranche_raw(&[
        "release",
        "-i",
        jinv.to_str().unwrap(),
        pb2.to_str().unwrap(),
        "--known-hosts",
        partial.to_str().unwrap(),
        "--no-progress",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("host key verification for h02"), "{stderr}");

    // ProxyJump from the SSH config, with the plain inventory.
    verbose_logs(&fleet);
    let cfg = fleet.dir.join("jump_ssh_config");
    std::fs::write(&cfg, format!("Host {net}.2 {net}.3\n  ProxyJump root@{net}.1\n")).unwrap();
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap().replace("b.yml", "b2.yml").as_str(),
        "--ssh-config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fleet.current(2).as_deref(), Some("1.0.0"));
    assert_eq!(logins(&fleet, 1), 1, "h02 must be reached through h01");
    // No registry in these runs: HAProxy sees the services back through its own checks.
    assert!(fleet.wait_all_up(5), "{:?}", fleet.servers());
}
