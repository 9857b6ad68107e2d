//! `tranche completions SHELL` and `tranche man`: the command line described for a shell and
//! for `man`, on stdout.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit_code;

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    // Into memory first: `generate` panics when it cannot write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tranche", &mut script);
    super::print_data(&script)?;
    Ok(exit_code::SUCCESS)
}

pub fn man() -> anyhow::Result<i32> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    super::print_data(&page)?;
    Ok(exit_code::SUCCESS)
}
