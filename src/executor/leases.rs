//! The locks this run holds on its hosts: renewed while the run goes on, released at its end.

use futures::future::join_all;

use super::{Executor, HostState, STEP_TIMEOUT};
use crate::events::EventKind;
use crate::remote::lock::LockState;
use crate::remote::HostExit;

impl Executor {
    pub(super) async fn release_lock(&self, st: &HostState) {
        if st.locked {
            // The script removes the lock only if this run still holds it.
            let cmd = crate::remote::lock::release(&self.release.playbook.layout.root, &self.run_id);
            let res = st.conn.exec(&cmd.to_command(), STEP_TIMEOUT).await;
            let why = match res {
                Ok(out) if out.success() => return,
                Ok(out) => out.describe(),
                Err(e) => e.to_string(),
            };
            self.event(EventKind::Warning {
                host: Some(st.conn.name().to_string()),
                msg: format!("could not release the lock: {why}; it expires by itself"),
            });
        }
    }

    /// Renew the lease on every host this run locked. A host whose lock is gone or held by
    /// another run (`tranche unlock`, then another run) is a loud warning, and the run ends
    /// failed: no new host starts, and the summary names it. A renewal that cannot run is a
    /// warning; the next one tries again.
    pub(super) async fn renew_locks(&self, states: &[Option<HostState>]) {
        let cmd = crate::remote::lock::renew(&self.release.playbook.layout.root, &self.lease.renewed()).to_command();
        let lost = self.lost_locks.lock().expect("lost locks").clone();
        let locked: Vec<&HostState> = states
            .iter()
            .flatten()
            .filter(|s| s.locked && !lost.iter().any(|h| h == s.conn.name()))
            .collect();
        let results = join_all(locked.iter().map(|s| s.conn.exec(&cmd, STEP_TIMEOUT))).await;
        for (st, res) in locked.into_iter().zip(results) {
            let host = st.conn.name().to_string();
            let msg = match res {
                Ok(out) if out.success() => continue,
                Ok(out) if HostExit::of(&out) == Some(HostExit::NotOurs) => {
                    let report = crate::remote::lock::LockReport::parse(&out.stdout);
                    let now = match (report.state, report.owner) {
                        (LockState::Taken, Some(o)) => format!("{} holds it now", o.describe()),
                        (LockState::Taken, None) => "another lock without an owner file is there".into(),
                        _ => "it was removed (`tranche unlock`?)".into(),
                    };
                    self.lost_locks.lock().expect("lost locks").push(host.clone());
                    format!("LOST THE LOCK: this run no longer holds the lock of {host}: {now}; no new host starts and the run fails")
                }
                Ok(out) => format!(
                    "could not renew the lock: {}; the next renewal tries again",
                    out.describe()
                ),
                Err(e) => format!("could not renew the lock: {e}; the next renewal tries again"),
            };
            self.event(EventKind::Warning { host: Some(host), msg });
        }
    }

    /// Renew the locks every `renew_every`, forever: run it beside whatever must hold them.
    pub(super) async fn keep_renewing(&self, states: &[Option<HostState>]) {
        loop {
            tokio::time::sleep(self.renew_every).await;
            self.renew_locks(states).await;
        }
    }
}
