//! Finding 8 of issue 11 against the real fleet (slot 54): a run whose lock was removed and
//! taken by another run while it goes on notices at the next renewal and fails loudly.

mod common;

use std::sync::{Arc, Mutex};

use common::Fleet;

/// Finding 8: a lock removed (`tranche unlock`) and taken by another run while a run goes on:
/// the renewal finds it is not ours, says so loudly, writes nothing, and the run fails.
/// (Before: the renewal overwrote the new owner's file and the run succeeded.)
#[test]
fn renewal_after_unlock_fails_the_run_and_leaves_the_new_owner_alone() {
    use tranche::cli::SshOptions;
    use tranche::release::{Release, ReleaseRequest};

    let fleet = Fleet::up(54, 1);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "pb.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nstop:\n  command: \"sleep 4; /srv/demo/current/bin/stop\"\n  timeout: 30s\n",
    );
    let release = Release::load(&ReleaseRequest {
        inventories: vec![fleet.inventory()],
        playbook: pb,
        limit: None,
        extra_vars: vec![],
    })
    .unwrap();
    let settings = tranche::commands::ssh_settings(&SshOptions {
        ssh_config: None,
        known_hosts: Some(fleet.known_hosts()),
        accept_new_host_keys: false,
        user: None,
        identity: None,
        max_connecting: 8,
        connect_timeout: Some(std::time::Duration::from_secs(5)),
    })
    .unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = events.clone();
    let mut exec = tranche::executor::Executor::new(
        release,
        settings,
        "renewing-run".into(),
        Arc::new(move |e| {
            sink.lock().unwrap().push(serde_json::to_string(&e).unwrap());
            Ok(())
        }),
    );
    exec.renew_every = std::time::Duration::from_millis(500);
    let lock = fleet.srv(1).join("demo/.tranche-lock");
    let other =
        "run=other-run\noperator=carol\ncontroller=ci-9\nstarted=2026-12-01T00:00:00.000Z\nexpires=99999999999\n";
    let breaker = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            // Once the run holds the lock: `tranche unlock`, then another run takes it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !std::fs::read_to_string(lock.join("owner")).is_ok_and(|o| o.contains("run=renewing-run")) {
                assert!(std::time::Instant::now() < deadline, "the run never took the lock");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::fs::remove_dir_all(&lock).unwrap();
            std::fs::create_dir(&lock).unwrap();
            std::fs::write(lock.join("owner"), other).unwrap();
        })
    };
    let outcome = tokio::runtime::Runtime::new().unwrap().block_on(exec.run());
    breaker.join().unwrap();
    let events = events.lock().unwrap().join("\n");
    assert!(events.contains("LOST THE LOCK"), "{events}");
    assert!(events.contains("run other-run by carol"), "{events}");
    assert_ne!(outcome.exit_code, 0, "{events}");
    assert_eq!(
        std::fs::read_to_string(lock.join("owner")).unwrap(),
        other,
        "the new owner's lock was overwritten"
    );
}
