//! The lease of SPEC §4: preflight runs `mkdir <layout.root>/.tranche-lock` on every targeted
//! host and writes an owner file (run id, operator, controller host, start, expiry). A second
//! run on an overlapping set of hosts is refused with the owner's details; the lease is
//! released at the end of the run, survives a crash until it expires, and `tranche unlock`
//! breaks it. The lease's fields live here; the scripts that take, renew, release and break the
//! lock are in `crate::remote::lock`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a lease lasts without renewal. A run renews its leases every `renew_every` (ten
/// minutes) while it goes on, rollback pass included, whatever a batch or a pause takes.
pub const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run: String,
    pub operator: String,
    pub controller: String,
    pub started: String,
    /// Seconds since the epoch.
    pub expires: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Lease {
    /// A lease for `run`, held by the person and machine running tranche.
    pub fn new(run: &str, started: &str) -> Lease {
        let operator = crate::operator::current_user();
        let controller = crate::operator::controller_host();
        Lease {
            run: run.into(),
            operator,
            controller,
            started: started.into(),
            expires: now_secs() + LEASE_TTL.as_secs(),
        }
    }

    pub fn renewed(&self) -> Lease {
        Lease {
            expires: now_secs() + LEASE_TTL.as_secs(),
            ..self.clone()
        }
    }

    pub fn is_expired(&self) -> bool {
        self.expires <= now_secs()
    }

    /// The owner file's text: `key=value` lines.
    pub fn to_file(&self) -> String {
        format!(
            "run={}\noperator={}\ncontroller={}\nstarted={}\nexpires={}\n",
            one_line(&self.run),
            one_line(&self.operator),
            one_line(&self.controller),
            one_line(&self.started),
            self.expires
        )
    }

    /// Read an owner file; `None` when it is missing or garbled.
    pub fn parse(text: &str) -> Option<Lease> {
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        Some(Lease {
            run: get("run")?,
            operator: get("operator")?,
            controller: get("controller")?,
            started: get("started")?,
            expires: get("expires")?.parse().ok()?,
        })
    }

    /// "run 20261122-... by alice on laptop since 2026-11-22T10:00:00Z, expires in 42m".
    pub fn describe(&self) -> String {
        let now = now_secs();
        let left = if self.expires > now {
            format!("expires in {}m", (self.expires - now).div_ceil(60))
        } else {
            "expired".into()
        };
        format!(
            "run {} by {} on {} since {}, {left}",
            self.run, self.operator, self.controller, self.started
        )
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_file_round_trips() {
        let l = Lease {
            run: "r1".into(),
            operator: "alice".into(),
            controller: "laptop".into(),
            started: "2026-11-22T10:00:00.000Z".into(),
            expires: 99,
        };
        assert_eq!(Lease::parse(&l.to_file()), Some(l.clone()));
        assert!(l.is_expired());
        assert!(l.describe().contains("run r1 by alice on laptop"));
        assert!(Lease::parse("run=x\n").is_none());
    }
}
