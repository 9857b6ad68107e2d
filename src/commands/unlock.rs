//! `tranche unlock`: break the lock on every targeted host, saying whose it was.

use super::{inputs, run};
use crate::cli::{Files, SshOptions};
use crate::exit_code;
use crate::remote::lock::{LockReport, LockState};

pub fn unlock(files: &Files, ssh: &SshOptions) -> anyhow::Result<i32> {
    let (_, r) = inputs::release(files)?;
    let settings = inputs::ssh_settings(ssh)?;
    let script = crate::remote::lock::break_lock(&r.playbook.layout.root);
    let results = inputs::runtime().block_on(run::on_each_host(&r.playbook, &r.targets, &settings, &script));
    let mut failed = 0;
    for (host, res) in results {
        match res.map(|out| LockReport::parse(&out.stdout)) {
            Ok(LockReport {
                state: LockState::Held,
                owner: Some(owner),
            }) => eprintln!("{host}: removed the lock of {}", owner.describe()),
            Ok(LockReport {
                state: LockState::Held,
                owner: None,
            }) => eprintln!("{host}: removed a lock without an owner file"),
            Ok(_) => eprintln!("{host}: not locked"),
            Err(e) => {
                failed += 1;
                eprintln!("{host}: {e}");
            }
        }
    }
    Ok(if failed > 0 {
        exit_code::PREFLIGHT
    } else {
        exit_code::SUCCESS
    })
}
