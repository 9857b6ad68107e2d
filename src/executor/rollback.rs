//! `on_failure: rollback` (every host this run moved) and `revert-failed` after a breached
//! gate (the hosts of that batch): back to the release each had, a batch at a time, the latest
//! batch first, each host through the same pipeline and limits as the release.

use std::collections::HashMap;
use std::time::Instant;

use futures::future::join_all;

use super::{Executor, HostState};
use crate::events::{EventKind, Status};
use crate::inventory::Host;
use crate::policy::Undo;
use crate::remote::history::HostOutcome;

impl Executor {
    /// Undo what the policy says; the hosts brought back become `Reverted` in `results`.
    pub(super) async fn rollback_pass(
        &self,
        undo: Undo,
        states: &[Option<HostState>],
        results: &mut HashMap<usize, Status>,
        batch_of: &HashMap<usize, usize>,
    ) {
        if undo == Undo::Nothing {
            return;
        }
        let r = &self.release;
        let mut changed: Vec<usize> = results
            .iter()
            .filter(|(i, s)| {
                **s == Status::Ok
                    && match undo {
                        Undo::Batch(n) => r.batches[n - 1].hosts.contains(i),
                        _ => true,
                    }
            })
            .map(|(i, _)| *i)
            .collect();
        changed.sort_unstable();
        let mut rolled = Vec::new();
        let pass = async {
            for b in r.batches.iter().rev() {
                let these: Vec<usize> = changed.iter().copied().filter(|i| b.hosts.contains(i)).collect();
                let res = join_all(these.iter().map(|&i| {
                    let st = states[i].as_ref().expect("changed hosts passed preflight");
                    self.rollback_host(&r.targets[i], st, batch_of[&i])
                }))
                .await;
                rolled.extend(these.into_iter().zip(res));
            }
        };
        // The locks are renewed through the rollback pass too.
        tokio::select! {
            _ = pass => {}
            _ = self.keep_renewing(states) => {}
        }
        for (i, ok) in rolled {
            if ok {
                results.insert(i, Status::Reverted);
            }
        }
    }

    /// Return a host this run changed to the release it had before.
    async fn rollback_host(&self, host: &Host, st: &HostState, batch: usize) -> bool {
        let t = Instant::now();
        let _zone = self.zone_permit(host).await;
        let Some(prev) = st.previous.clone() else {
            self.event(EventKind::Warning {
                host: Some(host.name.clone()),
                msg: "no previous release to roll back to".into(),
            });
            return false;
        };
        // A silence that cannot be made does not stop a rollback: the host must go back.
        let silence_id = self.silence(host, batch).await.unwrap_or(None);
        let result = self.switch(host, st, batch, &prev).await;
        self.unsilence(host, batch, silence_id).await;
        let outcome = match result {
            Ok(()) => HostOutcome::RolledBack,
            Err(_) => HostOutcome::Failed,
        };
        self.record_history(host, st, Some(&st.target), &prev, outcome).await;
        match result {
            Ok(()) => {
                self.host_done(batch, &host.name, Status::Reverted, t, format!("rolled back to {prev}"));
                true
            }
            Err((step, e, _)) => {
                self.leave_out(
                    host,
                    format!(
                        "rollback to {prev} failed at {}: {e}; check its registry state",
                        step.as_str()
                    ),
                );
                false
            }
        }
    }
}
