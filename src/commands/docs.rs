//! `tranche completions SHELL` and `tranche man`: the command line described for a shell and
//! for `man`, on stdout.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit_code;

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    clap_complete::generate(shell, &mut Cli::command(), "tranche", &mut std::io::stdout());
    Ok(exit_code::SUCCESS)
}

pub fn man() -> anyhow::Result<i32> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(exit_code::SUCCESS)
}
