//! Transient faults of the registry do not fail hosts (issue 12): the load balancer goes away
//! for a few seconds in the middle of a batch, and the release still completes. Fleet slots
//! 79-82.

mod common;

use common::{events, wait_event, wait_exit, Fleet};

/// HAProxy is killed right after batch 2's three hosts left it, and started again from its
/// config 5 s later. Their `register` calls are refused meanwhile; retried with backoff, they
/// succeed once HAProxy is back, and the release ends with every host on 2.0.0 and UP. (Without
/// retries the register steps fail at once, the budget of 0 is spent, and the run rolls back.)
#[test]
fn haproxy_down_for_5s_mid_batch_does_not_fail_the_release() {
    let fleet = Fleet::up(79, 4);
    fleet.install("1.0.0");
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 3\n  max_failures: 0\n";
    let pb = fleet.playbook("r.yml", "2.0.0", body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &[]);
    for h in ["h02", "h03", "h04"] {
        wait_event(&ev, 60, |e| {
            e["type"] == "step_finished" && e["host"] == h && e["step"] == "deregister" && e["status"] == "ok"
        });
    }
    fleet.lb_stop();
    std::thread::sleep(std::time::Duration::from_secs(5));
    fleet.lb_start();
    let code = wait_exit(&mut child, 120);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(0), "{stderr}");
    let releases: Vec<String> = (1..=fleet.hosts)
        .map(|i| fleet.current(i).unwrap_or_default())
        .collect();
    assert_eq!(releases, ["2.0.0"; 4], "{stderr}");
    // HAProxy, started again, gives each server its first health check.
    assert!(fleet.wait_all_up(10), "{:?}\n{stderr}", fleet.servers());
    // The register steps of batch 2 met the stopped HAProxy, were retried, and say so.
    let all = events(&ev);
    let registers: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "register" && e["batch"] == 2)
        .collect();
    assert_eq!(registers.len(), 3, "{registers:?}");
    for e in &registers {
        assert_eq!(e["status"], "ok", "{e}");
    }
    let retried: Vec<&str> = registers
        .iter()
        .filter_map(|e| e["msg"].as_str())
        .filter(|m| m.starts_with("UP in HAProxy after ") && m.contains("(connection refused"))
        .collect();
    assert!(!retried.is_empty(), "no register step was retried: {registers:?}");
    assert!(
        stderr.contains("UP in HAProxy after "),
        "the summary does not show the retries:\n{stderr}"
    );
    assert_eq!(all.last().unwrap()["exit_code"], 0);
}
