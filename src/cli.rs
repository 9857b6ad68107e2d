//! The command line. Doc comments here are the `--help` text. Every option also reads
//! `TRANCHE_<NAME>` from the environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Release a new version of a service to a fleet of hosts over SSH, in batches, with nothing
/// installed on the hosts.
#[derive(Debug, Parser)]
#[command(name = "tranche", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show which host lands in which batch, the staging schedule and the limits, without
    /// connecting (with --check: also run preflight on every host, changing nothing).
    Plan {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        output: QuietOutput,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table, env = "TRANCHE_FORMAT")]
        format: Format,
        /// Also connect to every host and run preflight, changing nothing.
        #[arg(long)]
        check: bool,
        /// With --check: write the preflight's events as JSON Lines to FILE, or to stdout with `-`.
        #[arg(long, value_name = "FILE|-", requires = "check")]
        events: Option<String>,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Release the playbook's version to the targeted hosts.
    Release {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Take the hosts back to their previous release (or --to VERSION, if still on the hosts)
    /// through the same pipeline and limits.
    Rollback {
        #[command(flatten)]
        files: Files,
        /// The release to go to; it must still be on every host.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: Option<String>,
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Continue an interrupted run from its journal (default: the latest unfinished run).
    Resume {
        /// The run to continue.
        run_id: Option<String>,
        /// Resume even if the playbook or the inventory changed since the run started.
        #[arg(long)]
        force: bool,
        /// Without RUN_ID: the latest unfinished run of this shard (needed when runs of
        /// several shards share the state directory).
        #[arg(long, value_name = "K/N", conflicts_with = "run_id")]
        shard: Option<crate::shard::Shard>,
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Write the HTML report of a past run, rebuilt from its journal.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["run_id", "latest"])))]
    Report {
        /// The run (a folder of `<state-dir>/runs`).
        run_id: Option<String>,
        /// The newest run in the state directory.
        #[arg(long)]
        latest: bool,
        /// Where to write the page (`-`: stdout).
        #[arg(short = 'o', long = "output", value_name = "FILE|-")]
        file: PathBuf,
        #[command(flatten)]
        output: QuietOutput,
        /// Where runs keep their journal.
        #[arg(long, default_value = ".tranche", env = "TRANCHE_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// List past runs, newest first: when, who, from which controller, service, version, mode,
    /// hosts, outcome, duration and run id.
    History {
        /// Where runs keep their journal; repeat to merge several controllers' state
        /// directories by time.
        #[arg(
            long = "state-dir",
            value_name = "DIR",
            default_value = ".tranche",
            env = "TRANCHE_STATE_DIR",
            value_delimiter = ','
        )]
        state_dirs: Vec<PathBuf>,
        /// Only the runs of this service.
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// At most N runs (the newest).
        #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        limit: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table, env = "TRANCHE_FORMAT")]
        format: Format,
        #[command(flatten)]
        output: QuietOutput,
    },
    /// Remove the lock a dead run left on the targeted hosts.
    Unlock {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        output: QuietOutput,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Blue-green: move all traffic to the other side at once (every HAProxy server in one
    /// step, or the new side registered, then the old deregistered) and record the live side
    /// on every host; a run of its own, journaled (`tranche history` lists it).
    Switch {
        #[command(flatten)]
        files: Files,
        /// Go back to the side that was live before the last switch.
        #[arg(long, conflicts_with = "to")]
        back: bool,
        /// Move all traffic to this side (`blue` or `green`), also when no side is live yet (a
        /// fleet that rolling releases left with both sides in traffic).
        #[arg(long, value_name = "SIDE", value_parser = ["blue", "green"])]
        to: Option<String>,
        #[command(flatten)]
        output: TrafficOutput,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Blue-green: stop the side that is not live (its instances on the idle slot, or the idle
    /// group's) and record it retired on every host; refused on a host where that side is live.
    /// A run of its own, journaled.
    Retire {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        output: TrafficOutput,
        #[command(flatten)]
        ssh: SshOptions,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: `tranche man > tranche.1`.
    Man,
    /// Check the inventory and the playbook, listing every problem at once.
    Validate {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        output: QuietOutput,
    },
    /// Show the inventory as tranche reads it, shaped like `ansible-inventory`'s output:
    /// --list (JSON), --host H (its variables as JSON) or --graph [GROUP] (a tree).
    #[command(group(clap::ArgGroup::new("show").required(true).args(["list", "host", "graph"])))]
    Inventory {
        /// Inventory source (file, directory, script, --list JSON); may repeat [default: the `inventory` of ansible.cfg].
        #[arg(short = 'i', long = "inventory", env = "TRANCHE_INVENTORY", value_delimiter = ',')]
        inventories: Vec<PathBuf>,
        #[command(flatten)]
        output: QuietOutput,
        /// Every group and host, with each host's variables under `_meta.hostvars`.
        #[arg(long)]
        list: bool,
        /// One host's variables.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The group tree from `all` (or from GROUP).
        #[arg(long)]
        graph: bool,
        /// With --graph: the group to start from.
        #[arg(requires = "graph")]
        group: Option<String>,
        /// Also read `group_vars/` and `host_vars/` beside the playbook in DIR, as a release does.
        #[arg(long, value_name = "DIR")]
        playbook_dir: Option<PathBuf>,
    },
    /// Report the release `current` points to on every host, and flag a mixed fleet.
    Status {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        output: QuietOutput,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table, env = "TRANCHE_FORMAT")]
        format: Format,
        /// Also show the last changes of each host, from its `.tranche-history`: when, which
        /// run, who, from which controller, from which release to which, and how it ended.
        #[arg(long)]
        history: bool,
        /// With --history: how many of each host's last changes.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 5, requires = "history", value_parser = clap::value_parser!(u64).range(1..=1000))]
        lines: u64,
        #[command(flatten)]
        ssh: SshOptions,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// The inventory and the playbook.
#[derive(Debug, Args)]
pub struct Files {
    /// Inventory source (file, directory, script, --list JSON); may repeat [default: the `inventory` of ansible.cfg].
    #[arg(short = 'i', long = "inventory", env = "TRANCHE_INVENTORY", value_delimiter = ',')]
    pub inventories: Vec<PathBuf>,
    /// The release plan.
    #[arg(env = "TRANCHE_PLAYBOOK")]
    pub playbook: PathBuf,
    /// Narrow the playbook's `hosts` with an Ansible pattern (`web:&dc1`, `web-0*`, `all:!db`).
    #[arg(short = 'l', long, env = "TRANCHE_LIMIT")]
    pub limit: Option<String>,
    /// Release only the K-th of N parts of the targeted hosts (sorted by zone, then name, cut
    /// into N even runs), so that N jobs release one fleet in parallel.
    #[arg(long, value_name = "K/N", env = "TRANCHE_SHARD")]
    pub shard: Option<crate::shard::Shard>,
    /// Set a template variable; may repeat. `KEY=@env:NAME` reads the value from the
    /// environment variable NAME and treats it as a secret: shown as `***` everywhere, never
    /// written to run.json (`tranche resume` reads NAME again).
    /// Kept as written: `commands::inputs::extra_vars` splits it, so that a malformed one (which
    /// may be a secret typed in the wrong place) is never echoed back, as clap's own errors do.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,
}

/// Options of a run.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Answer every confirmation with yes.
    #[arg(short = 'y', long, env = "TRANCHE_YES")]
    pub yes: bool,
    /// Write every event as JSON Lines to FILE, or to stdout with `-`.
    #[arg(long, value_name = "FILE|-", env = "TRANCHE_EVENTS")]
    pub events: Option<String>,
    /// Write a JUnit XML report (a test case per host) to FILE when the run ends.
    #[arg(long, value_name = "FILE", env = "TRANCHE_JUNIT")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown summary to FILE (it is also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_name = "FILE", env = "TRANCHE_SUMMARY")]
    pub summary: Option<PathBuf>,
    /// Write an HTML report of the run to FILE, rewritten as events arrive (open it while the
    /// run goes on: it reloads itself) and once more at the end.
    #[arg(long, value_name = "FILE", env = "TRANCHE_REPORT")]
    pub report: Option<PathBuf>,
    /// Plain lines instead of progress bars.
    #[arg(long, env = "TRANCHE_NO_PROGRESS")]
    pub no_progress: bool,
    /// Only what needs a person: failures, warnings, pauses and the last lines.
    #[arg(short = 'q', long, env = "TRANCHE_QUIET")]
    pub quiet: bool,
    /// Where runs keep their journal.
    #[arg(long, default_value = ".tranche", env = "TRANCHE_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// Output flags every command accepts, so a wrapper can pass them everywhere; these commands
/// draw no progress bars, so there is nothing for them to turn off.
#[derive(Debug, Args, Clone, Default)]
pub struct QuietOutput {
    /// Accepted for symmetry with `release`: this command draws no progress bars.
    #[arg(long, env = "TRANCHE_NO_PROGRESS")]
    pub no_progress: bool,
}

/// `tranche switch` and `tranche retire`: each is a run of its own, journaled under the state
/// folder (`tranche history` lists it).
#[derive(Debug, Args, Clone)]
pub struct TrafficOutput {
    /// Also write the events as JSON Lines to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE|-", env = "TRANCHE_EVENTS")]
    pub events: Option<String>,
    /// Accepted for symmetry with `release`: this command draws no progress bars.
    #[arg(long, env = "TRANCHE_NO_PROGRESS")]
    pub no_progress: bool,
    /// Where runs are recorded.
    #[arg(long, default_value = ".tranche", env = "TRANCHE_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// How to reach the hosts.
#[derive(Debug, Args, Clone)]
pub struct SshOptions {
    /// OpenSSH client config to apply under the inventory's variables.
    #[arg(long, value_name = "FILE", env = "TRANCHE_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// known_hosts file, instead of the SSH config's UserKnownHostsFile [default: UserKnownHostsFile, else ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE", env = "TRANCHE_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record the key of a host that no known_hosts line concerns (the SSH config's StrictHostKeyChecking wins).
    #[arg(long, env = "TRANCHE_ACCEPT_NEW_HOST_KEYS")]
    pub accept_new_host_keys: bool,
    /// Remote user when neither the inventory nor the SSH config names one.
    #[arg(short = 'u', long, env = "TRANCHE_USER")]
    pub user: Option<String>,
    /// Identity file to try after the inventory's and the SSH config's.
    #[arg(long, value_name = "FILE", env = "TRANCHE_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Connections being set up at once (the rest wait their turn).
    #[arg(long, default_value_t = crate::ssh::CONNECT_CONCURRENCY, value_name = "N", env = "TRANCHE_MAX_CONNECTING")]
    pub max_connecting: usize,
    /// Give up connecting to a host after this long [default: the SSH config's ConnectTimeout
    /// for the host, else 10s]. Given, it wins over the SSH config.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "TRANCHE_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<std::time::Duration>,
}

fn parse_version(s: &str) -> Result<String, String> {
    match crate::playbook::check::version_problem(s) {
        Some(problem) => Err(format!("the version \"{}\" {problem}", s.escape_debug())),
        None => Ok(s.to_string()),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use crate::playbook::check::WAIT_MAX;
    match crate::units::parse_duration(s)? {
        d if d > WAIT_MAX => Err(format!("`{s}` is more than {}", crate::units::bound_text(WAIT_MAX))),
        d => Ok(d),
    }
}
