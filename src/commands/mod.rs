//! The commands: one file each, each turning parsed options into work and returning the exit
//! code of what it did, or an error. [`error::exit_code_of`] is the one place where an error
//! becomes text on stderr and an exit code. Library code below reports through events; this
//! is where it is decided how people see them.

mod by_hand;
mod docs;
mod error;
mod history;
mod inputs;
mod inventory;
mod plan;
mod report;
mod retire;
mod run;
mod status;
mod switch;
mod unlock;
mod validate;

use crate::cli::{Cli, Command};

pub use error::{code_of, exit_code_of, hint_of, render, CommandError, Invalid};
pub use inputs::{ansible_cfg, inventories, ssh_settings};

/// Run a parsed command line; the process exit code.
pub fn run(cli: Cli) -> i32 {
    exit_code_of(dispatch(cli.command))
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Validate { files, .. } => validate::validate(&files),
        Command::Inventory {
            inventories,
            list: _,
            host,
            graph,
            group,
            playbook_dir,
            output: _,
        } => {
            let show = match (host, graph) {
                (Some(h), _) => inventory::Show::Host(h),
                (None, true) => inventory::Show::Graph(group),
                (None, false) => inventory::Show::List,
            };
            inventory::inventory(&inputs::inventories(&inventories)?, playbook_dir.as_deref(), show)
        }
        Command::Plan {
            files,
            format,
            check,
            events,
            ssh,
            ..
        } => plan::plan(&files, format, check, events.as_deref(), &ssh),
        Command::Release { files, run, ssh } => run::release(&files, &run, &ssh),
        Command::Rollback { files, to, run, ssh } => run::rollback(&files, to, &run, &ssh),
        Command::Resume {
            run_id,
            force,
            shard,
            run,
            ssh,
        } => run::resume(run_id, shard, force, &run, &ssh),
        Command::Report {
            run_id,
            latest: _,
            file,
            output: _,
            state_dir,
        } => report::report(run_id, &file, &state_dir),
        Command::History {
            state_dirs,
            service,
            limit,
            format,
            ..
        } => history::history(&state_dirs, service.as_deref(), limit.map(|n| n as usize), format),
        Command::Status {
            files,
            format,
            history,
            lines,
            ssh,
            ..
        } => status::status(&files, format, history.then_some(lines as usize), &ssh),
        Command::Unlock { files, ssh, .. } => unlock::unlock(&files, &ssh),
        Command::Switch {
            files,
            back,
            to,
            output,
            ssh,
        } => switch::switch(
            &files,
            back,
            to.as_deref().and_then(crate::playbook::Side::parse),
            &output,
            &ssh,
        ),
        Command::Retire { files, output, ssh } => retire::retire(&files, &output, &ssh),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
    }
}

/// Write data (JSON, a completion script, the man page) to stdout. A reader that went away
/// (`tranche inventory --list | head`) is not an error: the command goes on and ends with its
/// own exit code, as if its output had all been read.
fn print_data(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::from(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}
