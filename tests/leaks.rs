//! A command of the playbook that leaves a process running in the background without
//! redirecting its output (issue 13): the step ends when the command exits, with a warning that
//! names the stream, instead of waiting for the process. Real fleet, slot 84.

mod common;

use common::Fleet;

#[test]
fn a_background_process_holding_stdout_does_not_hold_the_step() {
    let fleet = Fleet::up(84, 1);
    fleet.install("1.0.0");
    // `sleep 30 &` keeps the session's stdout open for 30 s after the hook itself exited.
    let pb = fleet.playbook(
        "r.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nhooks:\n  after_start: \"sleep 30 &\"\n",
    );
    let inv = fleet.inventory();
    let t = std::time::Instant::now();
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        took.as_secs() < 20,
        "the step waited for the background process: {took:?}\n{stderr}"
    );
    assert!(
        stderr.contains("hooks.after_start exited, but a process it left running still holds its stdout"),
        "{stderr}"
    );
    assert_eq!(fleet.current(1).as_deref(), Some("2.0.0"));
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}
