//! What can go wrong talking to a host over SSH, each with a line of advice.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connecting to {addr}: no answer within {}", crate::units::human_duration(*.timeout))]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("host key verification for {host}: its {algo} key is not in {known_hosts}")]
    UnknownHostKey {
        host: String,
        algo: String,
        known_hosts: String,
    },
    #[error("host key verification for {host}: its {algo} key is not in {known_hosts}, and the SSH config's `StrictHostKeyChecking {value}` forbids recording it (even with --accept-new-host-keys)")]
    UnknownHostKeyStrict {
        host: String,
        algo: String,
        known_hosts: String,
        value: String,
    },
    #[error("host key verification for {host}: the key does NOT match {known_hosts} line {line}; the host was reinstalled or someone is intercepting the connection")]
    HostKeyChanged {
        host: String,
        known_hosts: String,
        line: usize,
    },
    #[error(
        "host key verification for {host}: its {algo} key is REVOKED ({known_hosts} line {line}); refusing to connect"
    )]
    HostKeyRevoked {
        host: String,
        algo: String,
        known_hosts: String,
        line: usize,
    },
    #[error("host key verification for {host}: {known_hosts} line {line} trusts a certificate authority for it, but it offered a plain {algo} key (no certificate signed by that authority), and no line names that key")]
    HostKeyCertAuthority {
        host: String,
        algo: String,
        known_hosts: String,
        line: usize,
    },
    #[error("host key verification for {host}: its host certificate is signed by a trusted authority, but {reason}")]
    HostCertificateInvalid { host: String, reason: String },
    #[error("host key verification for {host}: {reason}")]
    KnownHosts { host: String, reason: String },
    #[error("authentication as {user}@{host} failed (tried: {tried})")]
    Auth { user: String, host: String, tried: String },
    #[error("{0}")]
    Protocol(String),
    #[error("timed out after {}", crate::units::human_duration(*.0))]
    Timeout(Duration),
    #[error("the SFTP subsystem is not available: {0}")]
    NoSftp(String),
}

impl SshError {
    /// A line of advice for the operator.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SshError::UnknownHostKey { .. } => {
                Some("check the key out of band, then run with --accept-new-host-keys to record it")
            }
            SshError::UnknownHostKeyStrict { .. } => Some(
                "check the key out of band and add it to known_hosts (ssh-keyscan), or set `StrictHostKeyChecking accept-new` for this host",
            ),
            SshError::HostKeyChanged { .. } => {
                Some("if the host was reinstalled, remove its old line from known_hosts (ssh-keygen -R HOST)")
            }
            SshError::HostKeyRevoked { .. } => {
                Some("give the host a new key pair, check the new key out of band, then record it")
            }
            SshError::HostKeyCertAuthority { .. } => Some(
                "give the host a certificate signed by that authority (sshd's HostCertificate), or check its plain key out of band and add it to known_hosts (ssh-keyscan -t ed25519 HOST)",
            ),
            SshError::HostCertificateInvalid { .. } => Some(
                "sign the host key again (ssh-keygen -s CA -h -n HOSTNAME -V VALIDITY) and reload sshd, or add the host's plain key to known_hosts",
            ),
            SshError::Auth { .. } => Some(
                "set `ansible_ssh_private_key_file` in the inventory, --identity, or load the key into ssh-agent; a host that trusts an SSH CA (TrustedUserCAKeys) needs the key's certificate (CertificateFile, or KEY-cert.pub beside the key)",
            ),
            _ => None,
        }
    }
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Protocol(e.to_string())
    }
}
