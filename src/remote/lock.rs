//! The host side of the lease (SPEC §4): preflight takes the lock (see [`super::preflight`]);
//! these take over a stale one, renew, release, break it and look at it. The lease itself (the
//! owner file's fields) is `crate::lock::Lease`.

use super::RemoteCommand;
use crate::lock::Lease;

const LOCK: &str = include_str!("lock.sh");

/// Take over the lock `stale` holds (expired, or our own run's from before a resume): atomic,
/// only one of two runs wins; the loser's script exits `LockLost` and prints the winner.
pub fn take_over(root: &str, stale: &Lease, ours: &Lease) -> RemoteCommand {
    RemoteCommand::new(
        LOCK,
        [
            "take-over".to_string(),
            root.to_string(),
            stale.run.clone(),
            stale.expires.to_string(),
            ours.to_file(),
        ],
    )
}

/// Renew our lease if our run still holds the lock; exits `NotOurs` (printing `lock=gone`, or
/// `lock=taken` and the holder) when it does not.
pub fn renew(root: &str, lease: &Lease) -> RemoteCommand {
    RemoteCommand::new(
        LOCK,
        [
            "renew".to_string(),
            root.to_string(),
            lease.run.clone(),
            lease.to_file(),
        ],
    )
}

/// Release the lock if `run` holds it.
pub fn release(root: &str, run: &str) -> RemoteCommand {
    RemoteCommand::new(LOCK, ["release", root, run])
}

/// Break the lock whoever holds it, printing the owner it had.
pub fn break_lock(root: &str) -> RemoteCommand {
    RemoteCommand::new(LOCK, ["break", root])
}

/// Only look at the lock.
pub fn peek(root: &str) -> RemoteCommand {
    RemoteCommand::new(LOCK, ["peek", root])
}

/// The `lock=` line of a script's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockState {
    Acquired,
    Renewed,
    Released,
    Held,
    Free,
    /// Renewal found no lock.
    Gone,
    /// Renewal found another run's lock.
    Taken,
    /// No `lock=` line.
    #[default]
    Unknown,
}

/// What a lock script printed: the state, and the holder when it printed one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockReport {
    pub state: LockState,
    pub owner: Option<Lease>,
}

impl LockReport {
    pub fn parse(stdout: &str) -> LockReport {
        let state = match stdout.lines().find_map(|l| l.strip_prefix("lock=")) {
            Some("acquired") => LockState::Acquired,
            Some("renewed") => LockState::Renewed,
            Some("released") => LockState::Released,
            Some("held") => LockState::Held,
            Some("free") => LockState::Free,
            Some("gone") => LockState::Gone,
            Some("taken") => LockState::Taken,
            _ => LockState::Unknown,
        };
        let owner: String = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("owner."))
            .map(|l| format!("{l}\n"))
            .collect();
        LockReport {
            state,
            owner: Lease::parse(&owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_output_is_parsed() {
        let l = Lease {
            run: "r1".into(),
            operator: "alice".into(),
            controller: "laptop".into(),
            started: "2026-11-22T10:00:00.000Z".into(),
            expires: 99,
        };
        let out = format!(
            "lock=taken\n{}",
            l.to_file().lines().map(|x| format!("owner.{x}\n")).collect::<String>()
        );
        assert_eq!(
            LockReport::parse(&out),
            LockReport {
                state: LockState::Taken,
                owner: Some(l)
            }
        );
        assert_eq!(LockReport::parse("lock=gone\n").state, LockState::Gone);
        assert_eq!(LockReport::parse("").state, LockState::Unknown);
    }
}
