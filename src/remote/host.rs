//! The seam between the executor and a host: what a pipeline does to a host (run a command,
//! send a file, close), whatever carries it. `ssh::Connection` implements it for real hosts;
//! the executor's offline scenarios implement it with a scripted fake.

use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;

use super::ExecOutput;

/// What a host operation returns.
pub type RemoteFuture<'a, T> = BoxFuture<'a, Result<T, RemoteError>>;

/// Why a host operation failed, whatever carried it. The message reads after "failed to" or
/// stands alone, as the SSH layer wrote it; `hint` is that layer's advice for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The command did not finish within its timeout (a stop command may then be killed).
    #[error("timed out after {}", crate::units::human_duration(*.0))]
    Timeout(Duration),
    /// The host has no SFTP server: the upload goes through the stdin of a command instead.
    #[error("the SFTP subsystem is not available: {0}")]
    NoSftp(String),
    /// Anything else: the connection is gone, the channel failed, authentication...
    #[error("{msg}")]
    Failed { msg: String, hint: Option<&'static str> },
}

impl RemoteError {
    pub fn failed(msg: impl Into<String>) -> RemoteError {
        RemoteError::Failed {
            msg: msg.into(),
            hint: None,
        }
    }

    /// A line of advice for the operator, when the layer below had one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            RemoteError::Failed { hint, .. } => *hint,
            _ => None,
        }
    }
}

/// One host the executor works on, reached once and reused for every step.
pub trait RemoteHost: Send + Sync {
    /// The host's name (the inventory name), for events.
    fn name(&self) -> &str;
    /// The login user, for messages.
    fn user(&self) -> &str;
    /// Commands run through `sudo -n` (the playbook's or the host's `become`).
    fn becomes_root(&self) -> bool;
    /// Host keys recorded while connecting (trust on first use), as warnings, once.
    fn take_learned_keys(&self) -> Vec<String>;
    /// Run `command` through the login user's shell within `timeout`.
    fn exec<'a>(&'a self, command: &'a str, timeout: Duration) -> RemoteFuture<'a, ExecOutput>;
    /// Run `command` with the file at `local`, from byte `offset` on, as its stdin, at most
    /// `bandwidth` bytes per second (0: no cap).
    fn exec_with_input<'a>(
        &'a self,
        command: &'a str,
        local: &'a Path,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> RemoteFuture<'a, ExecOutput>;
    /// Write the file at `local`, from byte `offset` on, to `remote` (SFTP); `NoSftp` when the
    /// host cannot take it that way.
    fn upload<'a>(
        &'a self,
        local: &'a Path,
        remote: &'a str,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> RemoteFuture<'a, ()>;
    /// Close the connection; later operations fail.
    fn close(&self) -> BoxFuture<'_, ()>;
    /// The concrete type, for the parts that still need it (a registry that runs on the host).
    fn as_any(&self) -> &dyn std::any::Any;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failure_carries_a_hint() {
        let e = RemoteError::Failed {
            msg: "authentication as a@b failed".into(),
            hint: Some("load the key"),
        };
        assert_eq!(e.hint(), Some("load the key"));
        assert_eq!(e.to_string(), "authentication as a@b failed");
        assert_eq!(RemoteError::Timeout(Duration::from_secs(2)).hint(), None);
        assert_eq!(
            RemoteError::Timeout(Duration::from_secs(2)).to_string(),
            "timed out after 2.0s"
        );
    }
}
