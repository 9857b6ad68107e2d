//! The host side of blue-green: which side is live on a host, recorded in
//! `layout.root/.tranche-live` so that an interrupted run can be resumed or switched back, and
//! `status` can show it. The script is constant; the side and the run id are its arguments.

use super::{field, RemoteCommand};

const BLUEGREEN: &str = include_str!("bluegreen.sh");

/// Read the record and where each slot's `current` resolves.
pub fn get(root: &str) -> RemoteCommand {
    RemoteCommand::new(BLUEGREEN, ["get", root])
}

/// Record `side` (`blue` or `green`, else the script exits `BadValue`) as live, switched by
/// `run`; prints the record as `get` does.
pub fn set(root: &str, side: &str, run: &str) -> RemoteCommand {
    RemoteCommand::new(BLUEGREEN, ["set", root, side, run])
}

/// Unless `side` is live on the host (the script exits 20): run `stop` (empty: nothing) and
/// record `side` retired; prints the record as `get` does.
pub fn retire(root: &str, side: &str, stop: &str) -> RemoteCommand {
    RemoteCommand::new(BLUEGREEN, ["retire", root, side, stop])
}

/// What a host says about its two sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRecord {
    /// The side recorded live (`blue` or `green`); none before the first switch.
    pub live: Option<String>,
    pub previous: Option<String>,
    /// The run that switched last.
    pub run: Option<String>,
    /// The side stopped by `tranche retire` (until a switch makes it live again).
    pub retired: Option<String>,
    /// The release each slot's `current` resolves to (slots only).
    pub blue: Option<String>,
    pub green: Option<String>,
    /// The release `layout.root/current` resolves to: what a host of a group runs.
    pub current: Option<String>,
}

impl LiveRecord {
    pub fn parse(stdout: &str) -> LiveRecord {
        let side = |k| field(stdout, k).filter(|s| s == "blue" || s == "green");
        let release = |k| field(stdout, k).map(|p| super::base(&p)).filter(|v| !v.is_empty());
        LiveRecord {
            live: side("live"),
            previous: side("previous"),
            run: field(stdout, "run"),
            retired: side("retired"),
            blue: release("blue"),
            green: release("green"),
            current: release("current"),
        }
    }

    /// The release in a side's slot.
    pub fn release(&self, side: &str) -> Option<&str> {
        match side {
            "blue" => self.blue.as_deref(),
            "green" => self.green.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_parsed() {
        let r = LiveRecord::parse(
            "live=green\nprevious=blue\nrun=r1\nblue=/srv/a/blue/releases/1.0.0\ngreen=/srv/a/green/releases/2.0.0\ncurrent=/srv/a/releases/0.9.0\n",
        );
        assert_eq!(r.live.as_deref(), Some("green"));
        assert_eq!(r.previous.as_deref(), Some("blue"));
        assert_eq!(r.run.as_deref(), Some("r1"));
        assert_eq!(r.release("blue"), Some("1.0.0"));
        assert_eq!(r.release("green"), Some("2.0.0"));
        assert_eq!(r.current.as_deref(), Some("0.9.0"));
        let none = LiveRecord::parse("live=\nprevious=\nrun=\nblue=\ngreen=\ncurrent=\n");
        assert_eq!(none, LiveRecord::default());
    }

    /// The record round-trips through the real script under the shell this machine has.
    #[test]
    fn set_then_get_round_trips_on_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("svc");
        let root = root.to_str().unwrap();
        let run = |c: RemoteCommand| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(c.program())
                .arg("tranche")
                .args(&c.args)
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
        };
        let (code, out) = run(get(root));
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(LiveRecord::parse(&out).live, None);
        run(set(root, "blue", "r1"));
        let (_, out) = run(set(root, "green", "r2"));
        let r = LiveRecord::parse(&out);
        let got = (r.live.as_deref(), r.previous.as_deref(), r.run.as_deref());
        assert_eq!(got, (Some("green"), Some("blue"), Some("r2")));
        // Setting the live side again keeps what was before it.
        let (_, out) = run(set(root, "green", "r3"));
        assert_eq!(LiveRecord::parse(&out).previous.as_deref(), Some("blue"));
        // A run id that could break the record, or a side that is not one, is refused.
        let (code, _) = run(set(root, "blue", "r\nlive=blue"));
        assert_eq!(code, Some(19));
        let (code, _) = run(set(root, "red", "r4"));
        assert_eq!(code, Some(19));
        // Retiring the live side is refused, and its stop command never runs.
        let marker = dir.path().join("stopped");
        let stop = format!("touch {}", marker.display());
        let (code, _) = run(retire(root, "green", &stop));
        assert_eq!(code, Some(20));
        assert!(!marker.exists());
        // The other side: stopped, recorded, and no longer retired once it is switched to.
        let (code, out) = run(retire(root, "blue", &stop));
        assert_eq!(code, Some(0), "{out}");
        assert!(marker.exists());
        let r = LiveRecord::parse(&out);
        assert_eq!((r.live.as_deref(), r.retired.as_deref()), (Some("green"), Some("blue")));
        let (code, _) = run(retire(root, "blue", "exit 3"));
        assert_eq!(code, Some(21));
        let (_, out) = run(set(root, "blue", "r5"));
        assert_eq!(LiveRecord::parse(&out).retired, None);
    }

    /// Under become (root through sudo), the record is written only into a folder no other user
    /// can write to (exit 15, nothing written, the stop command not run); a root login and a
    /// trusted folder write as before.
    #[test]
    fn under_become_an_untrusted_root_is_refused_on_a_real_shell() {
        if !nix_is_root() {
            eprintln!("skipped: needs root (the script checks only when it runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("svc");
        std::fs::create_dir(&root).unwrap();
        let root_s = root.to_str().unwrap();
        let run = |c: RemoteCommand, sudo: bool| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(c.program()).arg("tranche").args(&c.args);
            if sudo {
                cmd.env("SUDO_UID", "1000");
            } else {
                cmd.env_remove("SUDO_UID");
            }
            let out = cmd.output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (code, err) = run(set(root_s, "blue", "r1"), true);
        assert_eq!(code, Some(15), "{err}");
        assert!(err.contains("under become"), "{err}");
        assert!(!root.join(".tranche-live").exists());
        let marker = dir.path().join("stopped");
        let (code, _) = run(retire(root_s, "green", &format!("touch {}", marker.display())), true);
        assert_eq!(code, Some(15));
        assert!(!marker.exists());
        // A root login (no sudo) writes as before; so does become into root's own folder.
        let (code, err) = run(set(root_s, "blue", "r1"), false);
        assert_eq!(code, Some(0), "{err}");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (code, err) = run(set(root_s, "green", "r2"), true);
        assert_eq!(code, Some(0), "{err}");
        // A folder that does not exist yet is created by root: its own.
        let fresh = dir.path().join("fresh");
        let (code, err) = run(set(fresh.to_str().unwrap(), "blue", "r3"), true);
        assert_eq!(code, Some(0), "{err}");
    }

    fn nix_is_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    }
}
