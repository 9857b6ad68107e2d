//! The russh client handler: the host key a server offers, checked against known_hosts (and
//! recorded on first use when allowed).

use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys;

use super::host_keys::{self, CertVerdict, HostKeyPolicy, Learning, Recorded, Verdict};
use super::{LearnedKey, SshError};

/// What the host key check decided, kept by the handler so that `open` can say why.
#[derive(Debug, Default)]
pub(super) struct KeyCheck {
    pub(super) refused: Option<SshError>,
    pub(super) learned: Option<LearnedKey>,
}

pub(super) struct Client {
    /// The host's name, for messages.
    pub(super) host: String,
    pub(super) policy: HostKeyPolicy,
    pub(super) check: Arc<Mutex<KeyCheck>>,
}

/// Serialises writes to known_hosts within this process; a file lock covers other processes.
static KNOWN_HOSTS_WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Client {
    fn refuse(&self, e: SshError) -> Result<bool, russh::Error> {
        self.check.lock().expect("key check lock").refused = Some(e);
        Ok(false)
    }

    /// The error of a verdict that refuses `algo`'s key.
    fn refusal(&self, verdict: Verdict, algo: &str) -> SshError {
        let host = self.host.clone();
        let algo = algo.to_string();
        match verdict {
            Verdict::Revoked(p) => SshError::HostKeyRevoked {
                host,
                algo,
                known_hosts: p.file.display().to_string(),
                line: p.line,
            },
            Verdict::Mismatch(p) => SshError::HostKeyChanged {
                host,
                known_hosts: p.file.display().to_string(),
                line: p.line,
            },
            Verdict::CertAuthority(p) => SshError::HostKeyCertAuthority {
                host,
                algo,
                known_hosts: p.file.display().to_string(),
                line: p.line,
            },
            Verdict::Match | Verdict::Unknown => match &self.policy.learning {
                Learning::ForbiddenByConfig(value) => SshError::UnknownHostKeyStrict {
                    host,
                    algo,
                    known_hosts: self.policy.describe_files(),
                    value: value.clone(),
                },
                _ => SshError::UnknownHostKey {
                    host,
                    algo,
                    known_hosts: self.policy.describe_files(),
                },
            },
        }
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        match key {
            keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.check_key(key).await,
            keys::PublicKeyOrCertificate::Certificate(cert) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let host = self.host.clone();
                match self.policy.check_certificate(cert, now) {
                    Ok(CertVerdict::Trusted) => Ok(true),
                    Ok(CertVerdict::Revoked(p)) => self.refuse(SshError::HostKeyRevoked {
                        host,
                        algo: format!("{} certificate", cert.algorithm()),
                        known_hosts: p.file.display().to_string(),
                        line: p.line,
                    }),
                    Ok(CertVerdict::Invalid(reason)) => self.refuse(SshError::HostCertificateInvalid { host, reason }),
                    // As OpenSSH: the key inside, checked as a plain key.
                    Ok(CertVerdict::NoAuthority) => {
                        let plain = keys::PublicKey::new(cert.public_key().clone(), "");
                        self.check_key(&plain).await
                    }
                    Err(reason) => self.refuse(SshError::KnownHosts { host, reason }),
                }
            }
        }
    }
}

impl Client {
    /// A plain host key: a line names it, or it is recorded on first use when allowed.
    async fn check_key(&mut self, key: &keys::PublicKey) -> Result<bool, russh::Error> {
        let algo = key.algorithm().to_string();
        let verdict = match self.policy.check(key) {
            Ok(v) => v,
            Err(reason) => {
                return self.refuse(SshError::KnownHosts {
                    host: self.host.clone(),
                    reason,
                })
            }
        };
        let allowed_by = match (&verdict, &self.policy.learning) {
            (Verdict::Match, _) => return Ok(true),
            (Verdict::Unknown, Learning::Allowed(by)) => by.clone(),
            _ => return self.refuse(self.refusal(verdict, &algo)),
        };
        // Trust on first use: one writer at a time, and the files are read again under the lock.
        let _guard = KNOWN_HOSTS_WRITER.lock().await;
        let (policy, offered) = (self.policy.clone(), key.clone());
        let recorded = tokio::task::spawn_blocking(move || policy.learn(&offered))
            .await
            .map_err(|_| russh::Error::Disconnect)?;
        let file = match recorded {
            Ok(Recorded::Written(file)) => Some(file),
            Ok(Recorded::AlreadyThere) => return Ok(true),
            Ok(Recorded::Nowhere) => None,
            Err(host_keys::LearnError::Refused(verdict)) => return self.refuse(self.refusal(verdict, &algo)),
            Err(host_keys::LearnError::Io(reason)) => {
                return self.refuse(SshError::KnownHosts {
                    host: self.host.clone(),
                    reason,
                })
            }
        };
        self.check.lock().expect("key check lock").learned = Some(LearnedKey {
            algo,
            file,
            allowed_by,
            bastion: None,
        });
        Ok(true)
    }
}
