//! The journal against the real fleet (issue 12, typed events and journal): a journal that
//! cannot be written stops the run loudly, and a run stopped at once records what it did.
//! Slots 75-78. Root (a tmpfs is mounted).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{events, signal, wait_event, wait_exit, Fleet};

const SLOW_STOP: &str = "stop:\n  command: \"sleep 2; /srv/demo/current/bin/stop\"\n  timeout: 30s\n";

fn releases(fleet: &Fleet) -> Vec<String> {
    (1..=fleet.hosts)
        .map(|i| fleet.current(i).unwrap_or_default())
        .collect()
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fill it: a file takes every free byte.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[0]);
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The disk of the journal fills while the run waits after the canary. The run goes on
/// writing events until a journal write fails; from then on no new host starts (no host is
/// taken out of the registry after the failure is reported), the hosts in flight finish, and
/// the run ends with exit 130 and a message naming the journal and the OS error. With space
/// again, `tranche resume` reads that journal and finishes the release.
#[test]
fn a_full_journal_disk_stops_the_run_and_resume_finishes_it() {
    let fleet = Fleet::up(75, 4);
    fleet.install("1.0.0");
    let state = fleet.dir.join("state");
    let tmpfs = Tmpfs::mount(&state, "256k");
    let body =
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n  canary_pause: 2s\n";
    let pb = fleet.playbook("r.yml", "2.0.0", body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &["--state-dir", state.to_str().unwrap(), "--yes"]);
    let paused = wait_event(&ev, 60, |e| e["type"] == "paused");
    let run_id = paused["run"].as_str().unwrap().to_string();
    let filler = tmpfs.fill();
    let code = wait_exit(&mut child, 120);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(130), "{stderr}");
    let journal = state.join("runs").join(&run_id).join("journal.jsonl");
    let said = format!(
        "cannot write the journal {}: No space left on device (os error 28)",
        journal.display()
    );
    assert!(stderr.contains(&format!("error: {said}")), "{stderr}");
    assert!(stderr.contains("no host started after it"), "{stderr}");

    // In the event stream (on another disk): the warning, and after it no host leaves the
    // registry; hosts in flight finish.
    let evs = events(&ev);
    let at = evs
        .iter()
        .position(|e| e["type"] == "warning" && e["msg"].as_str().unwrap_or_default().starts_with(&said))
        .unwrap_or_else(|| panic!("no journal warning in the events\n{stderr}"));
    let late: Vec<&serde_json::Value> = evs[at..]
        .iter()
        .filter(|e| e["type"] == "step_started" && e["step"] == "deregister")
        .collect();
    assert!(late.is_empty(), "hosts taken out after the journal failed: {late:?}");
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "run_finished", "{last}");
    assert_eq!(last["exit_code"], 130, "{last}");
    let now = releases(&fleet);
    assert_eq!(now[0], "2.0.0", "{stderr}");
    assert!(
        now.contains(&"1.0.0".to_string()),
        "every host was released: {now:?}\n{stderr}"
    );
    assert!(fleet.wait_all_up(10), "{:?}\n{stderr}", fleet.servers());

    // Space again: resume trusts what reached the journal and finishes.
    std::fs::remove_file(filler).unwrap();
    let out = fleet.tranche(&["resume", &run_id, "--state-dir", state.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0"; 4], "{stderr}");
    assert!(fleet.wait_all_up(10), "{:?}\n{stderr}", fleet.servers());
    drop(tmpfs);
}

/// A second Ctrl-C while h02 stops: the record says what the run did so far (h01 passed),
/// not "0 ok".
#[test]
fn a_run_stopped_at_once_records_its_counts_so_far() {
    let fleet = Fleet::up(76, 3);
    fleet.install("1.0.0");
    let body =
        format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &["--yes"]);
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    signal(&child, "-INT");
    std::thread::sleep(std::time::Duration::from_millis(200));
    signal(&child, "-INT");
    assert_eq!(wait_exit(&mut child, 30), Some(130), "{}", fleet.stderr_of("run"));
    let last = events(&ev).pop().unwrap();
    assert_eq!(last["type"], "run_finished", "{last}");
    assert_eq!(last["exit_code"], 130, "{last}");
    assert_eq!(last["ok"], 1, "{last}");
    assert_eq!(last["failed"], 0, "{last}");
    assert_eq!(last["reverted"], 0, "{last}");
    assert!(last["ms"].as_u64().unwrap() > 0, "{last}");
    // The journal has the same record.
    let run = last["run"].as_str().unwrap();
    let journal = events(&fleet.dir.join(".tranche/runs").join(run).join("journal.jsonl"));
    assert_eq!(journal.last().unwrap()["ok"], 1);
}
