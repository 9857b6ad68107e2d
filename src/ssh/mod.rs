//! The one place that speaks SSH (russh): connect with a timeout, verify the host key against
//! known_hosts, authenticate, run commands on channels of one reused connection, upload files.

use std::path::PathBuf;
use std::time::Duration;

mod auth;
mod bastion;
pub mod config;
mod connection;
mod error;
mod exec;
mod handler;
pub mod host_keys;
mod proxy;
mod remote_host;
mod upload;

pub use crate::remote::ExecOutput;
pub use bastion::{hop as parse_target, Bastions};
pub use connection::Connection;
pub use error::SshError;

/// Connections being set up at once by default (`--max-connecting`). sshd's MaxStartups starts
/// refusing unauthenticated connections past 10 per sshd; spread over hosts, 32 is safe.
pub const CONNECT_CONCURRENCY: usize = 32;

use host_keys::HostKeyPolicy;

/// How to reach and trust hosts; the same for every host of a run.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// `--known-hosts`: when given, the one user known_hosts file of every host (the SSH
    /// config's `UserKnownHostsFile` is then not used).
    pub known_hosts: Option<PathBuf>,
    /// `--accept-new-host-keys` (the SSH config's `StrictHostKeyChecking` wins over it).
    pub accept_new_host_keys: bool,
    /// Tried after the host's own identity files (`--identity`, then ~/.ssh/id_*).
    pub identities: Vec<PathBuf>,
    /// Try keys held by ssh-agent (`SSH_AUTH_SOCK`) first.
    pub use_agent: bool,
    /// Ask for the passphrase of an encrypted key (only on a terminal, never in CI).
    pub ask_passphrase: bool,
    /// The OpenSSH client config applied under the inventory's variables.
    pub config: Option<std::sync::Arc<ssh2_config::SshConfig>>,
    /// The OpenSSH client that resolves that config (`ssh -G`); `None`: the built-in parser.
    pub openssh: Option<std::sync::Arc<config::OpenSsh>>,
    /// Bastion connections of this run.
    pub bastions: Bastions,
    /// Connections being set up at once.
    pub max_connecting: usize,
    /// `--connect-timeout` or `TRANCHE_CONNECT_TIMEOUT`, when given: it wins over the SSH
    /// config's `ConnectTimeout`; see [`SshSettings::connect_timeout_for`].
    pub connect_timeout: Option<Duration>,
    pub default_user: String,
}

/// How long connecting to a host may take when neither the command line nor the SSH config says.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl SshSettings {
    /// How long connecting to `ep` may take: the command line's, else the SSH config's
    /// `ConnectTimeout` for the host, else [`DEFAULT_CONNECT_TIMEOUT`] (OpenSSH's `-o` wins over
    /// its config the same way).
    pub fn connect_timeout_for(&self, ep: &Endpoint) -> Duration {
        self.connect_timeout
            .or(ep.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }
}

/// Where one host is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The host's own identity files (inventory, then SSH config), tried before the global ones.
    pub identities: Vec<PathBuf>,
    /// A bastion (`jump` or ProxyJump), when one is configured.
    pub jump: Option<String>,
    /// The SSH config's `ProxyCommand`, its tokens expanded, when there is no bastion: a local
    /// process's stdin and stdout carry the connection.
    pub proxy_command: Option<String>,
    /// The SSH config's `CertificateFile`s (tokens expanded), tried with the identity whose
    /// public key each certifies; `KEY-cert.pub` beside an identity file is tried as well.
    pub certificates: Vec<PathBuf>,
    /// How its host key is checked (known_hosts files, name, learning).
    pub host_keys: HostKeyPolicy,
    /// The SSH config's `ConnectTimeout` for this host; `--connect-timeout` (or
    /// `TRANCHE_CONNECT_TIMEOUT`), when given, wins over it.
    pub connect_timeout: Option<Duration>,
    /// Directives the SSH config sets for this host that tranche does not apply (for a warning).
    pub ignored_directives: Vec<String>,
    /// Why `ssh -G` could not resolve this host (the built-in parser did), for a warning.
    pub ssh_g_failed: Option<String>,
}

/// A host key recorded on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedKey {
    pub algo: String,
    /// The file it went to; `None` when the host has no user known_hosts file
    /// (`UserKnownHostsFile none`) and the key is trusted for this run only.
    pub file: Option<PathBuf>,
    /// Who allowed it: `--accept-new-host-keys` or the SSH config's `StrictHostKeyChecking`.
    pub allowed_by: String,
    /// The bastion whose key it is, when it is not the host's own.
    pub bastion: Option<String>,
}

impl std::fmt::Display for LearnedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let of = match &self.bastion {
            Some(b) => format!(" of the bastion {b}"),
            None => String::new(),
        };
        match &self.file {
            Some(file) => write!(
                f,
                "recorded a new {} host key{of} in {} ({})",
                self.algo,
                file.display(),
                self.allowed_by
            ),
            None => write!(
                f,
                "trusted a new {} host key{of} for this run only: there is no known_hosts file to record it in (UserKnownHostsFile none; {})",
                self.algo, self.allowed_by
            ),
        }
    }
}

#[cfg(test)]
mod tests;
