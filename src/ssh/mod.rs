//! The one place that speaks SSH (russh): connect with a timeout, verify the host key against
//! known_hosts, authenticate, run commands on channels of one reused connection, upload files.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg};
use russh::{kex, ChannelMsg, Preferred};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

pub mod config;
pub mod host_keys;
mod remote_host;

pub use crate::remote::ExecOutput;

/// Connections being set up at once by default (`--max-connecting`). sshd's MaxStartups starts
/// refusing unauthenticated connections past 10 per sshd; spread over hosts, 32 is safe.
pub const CONNECT_CONCURRENCY: usize = 32;

use host_keys::{HostKeyPolicy, Learning, Recorded, Verdict};

/// OpenSSH's default `MaxSessions`: more session channels at once on one connection are refused.
const MAX_SESSIONS: usize = 10;
/// How much of a command's stdout and stderr is kept (the tail).
const OUTPUT_CAP: usize = 64 * 1024;
/// The length of an SFTP write packet: about 128 KiB of data. Larger writes than the usual
/// 32 KiB: measured against OpenSSH's sshd and sftp-server on loopback, 128 KiB writes two at a
/// time cost the server about a third less CPU per byte than 32 KiB writes four at a time
/// (`sftp -B 131072 -R 2` against `-B 32768 -R 4`).
const SFTP_PACKET: usize = 129 * 1024;
/// The packet length every SFTP server must take (the SFTP draft's 34000 bytes).
const SFTP_PACKET_MIN: usize = 34000;

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
    /// Bastion connections of this run.
    pub bastions: Bastions,
    /// Connections being set up at once.
    pub max_connecting: usize,
    pub connect_timeout: Duration,
    pub default_user: String,
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
    /// How its host key is checked (known_hosts files, name, learning).
    pub host_keys: HostKeyPolicy,
    /// Directives the SSH config sets for this host that tranche does not apply (for a warning).
    pub ignored_directives: Vec<String>,
}

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
    #[error("host key verification for {host}: {known_hosts} line {line} trusts a certificate authority for it, and host certificates (@cert-authority) are not supported; no line names its plain {algo} key")]
    HostKeyCertAuthority {
        host: String,
        algo: String,
        known_hosts: String,
        line: usize,
    },
    #[error("host key verification for {host}: it offered a host certificate, and host certificates (@cert-authority) are not supported")]
    HostCertificate { host: String },
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
            SshError::HostKeyCertAuthority { .. } | SshError::HostCertificate { .. } => Some(
                "check the host's plain key out of band and add it to known_hosts (ssh-keyscan -t ed25519 HOST)",
            ),
            SshError::Auth { .. } => {
                Some("set `ansible_ssh_private_key_file` in the inventory, --identity, or load the key into ssh-agent")
            }
            _ => None,
        }
    }
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Protocol(e.to_string())
    }
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

/// What the host key check decided, kept by the handler so that `open` can say why.
#[derive(Debug, Default)]
struct KeyCheck {
    refused: Option<SshError>,
    learned: Option<LearnedKey>,
}

struct Client {
    /// The host's name, for messages.
    host: String,
    policy: HostKeyPolicy,
    check: Arc<Mutex<KeyCheck>>,
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
        let keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            // A host certificate needs a trusted authority, which tranche does not check.
            return self.refuse(SshError::HostCertificate {
                host: self.host.clone(),
            });
        };
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

/// How long output may go on after a command's exit status before tranche stops waiting: a
/// process the command put in the background still holds the stream, and would otherwise keep
/// the step open until it exits or the step's timeout passes.
const LEAK_GRACE: Duration = Duration::from_secs(2);

/// One SSH connection to one host, reused for every step of that host.
pub struct Connection {
    handle: Handle<Client>,
    sessions: Semaphore,
    pub endpoint: Endpoint,
    /// The host keys this connection recorded (trust on first use), its bastions' included,
    /// until someone reports them ([`Connection::take_learned_keys`]).
    learned_keys: Mutex<Vec<LearnedKey>>,
    /// Run every command through `sudo -n` (the playbook's or the host's `become`).
    pub become_root: bool,
    /// The time the TCP connection took to open (about one round trip); None through a bastion.
    pub rtt: Option<Duration>,
}

/// AES-GCM first where this CPU has AES and carry-less multiply instructions (then both ends
/// encrypt in hardware: OpenSSH's chacha20-poly1305 computes Poly1305 in plain C), otherwise
/// russh's default order, chacha20-poly1305 first.
fn ciphers() -> Vec<russh::cipher::Name> {
    use russh::cipher;
    #[cfg(target_arch = "x86_64")]
    let hw = std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let hw = std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let hw = false;
    let mut order: Vec<cipher::Name> = Preferred::DEFAULT.cipher.to_vec();
    if hw {
        order.retain(|c| *c != cipher::AES_256_GCM);
        order.insert(0, cipher::AES_256_GCM);
    }
    order
}

fn client_config() -> client::Config {
    // curve25519 first: a tenth of the CPU of the post-quantum hybrids per handshake.
    let mut kexes: Vec<kex::Name> = vec![kex::CURVE25519, kex::CURVE25519_PRE_RFC_8731];
    let rest: Vec<kex::Name> = Preferred::DEFAULT
        .kex
        .iter()
        .copied()
        .filter(|k| !kexes.contains(k))
        .collect();
    kexes.extend(rest);
    client::Config {
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        inactivity_timeout: None,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        preferred: Preferred {
            kex: Cow::Owned(kexes),
            cipher: Cow::Owned(ciphers()),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    }
}

impl Connection {
    /// Connect, verify the host key and authenticate, all within the connect timeout.
    pub async fn open(ep: &Endpoint, settings: &SshSettings) -> Result<Connection, SshError> {
        let addr = format!("{}:{}", ep.address, ep.port);
        // sshd's MaxStartups drops connections past its limit before the banner: try again
        // with backoff, within the same deadline.
        let attempts = async {
            let mut delay = Duration::from_millis(100);
            for _ in 0..4 {
                match Self::open_inner(ep, settings, &addr).await {
                    Err(SshError::Connect { reason, .. }) if is_transient(&reason) => {
                        tokio::time::sleep(delay + Duration::from_millis(rand::random::<u64>() % 100)).await;
                        delay *= 2;
                    }
                    other => return other,
                }
            }
            Self::open_inner(ep, settings, &addr).await
        };
        match tokio::time::timeout(settings.connect_timeout, attempts).await {
            Ok(r) => r,
            Err(_) => Err(SshError::ConnectTimeout {
                addr,
                timeout: settings.connect_timeout,
            }),
        }
    }

    async fn open_inner(ep: &Endpoint, settings: &SshSettings, addr: &str) -> Result<Connection, SshError> {
        let check = Arc::new(Mutex::new(KeyCheck::default()));
        let handler = Client {
            host: ep.name.clone(),
            policy: ep.host_keys.clone(),
            check: check.clone(),
        };
        let config = Arc::new(client_config());
        let mut rtt = None;
        let mut via = None;
        // Through a bastion: a direct-tcpip channel of the bastion's one connection carries the
        // target's own SSH session; its host key is checked under the target's name.
        let connected = match &ep.jump {
            Some(jump) => {
                let bastion = bastion(jump, settings, &ep.identities).await?;
                let channel = bastion
                    .handle
                    .channel_open_direct_tcpip(ep.address.clone(), u32::from(ep.port), "127.0.0.1", 0)
                    .await
                    .map_err(|e| SshError::Connect {
                        addr: addr.to_string(),
                        reason: format!("through the bastion {}: {}", bastion.endpoint.name, connect_reason(&e)),
                    })?;
                via = Some(bastion);
                client::connect_stream(config, channel.into_stream(), handler).await
            }
            None => {
                // The TCP handshake, timed: about one round trip, which sizes the uploads' writes
                // in flight (see `upload_sftp`).
                let t = std::time::Instant::now();
                let stream = tokio::net::TcpStream::connect((ep.address.as_str(), ep.port))
                    .await
                    .map_err(|e| SshError::Connect {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })?;
                rtt = Some(t.elapsed());
                let _ = stream.set_nodelay(true);
                client::connect_stream(config, stream, handler).await
            }
        };
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                return Err(match check.lock().expect("key check lock").refused.take() {
                    Some(refused) => refused,
                    None => SshError::Connect {
                        addr: addr.to_string(),
                        reason: connect_reason(&e),
                    },
                });
            }
        };
        let own = check.lock().expect("key check lock").learned.take();
        authenticate(&mut handle, ep, settings).await?;
        // The keys a bastion recorded are reported by the first host that got through it.
        let mut learned: Vec<LearnedKey> = match &via {
            Some(b) => b
                .take_learned_keys()
                .into_iter()
                .map(|mut k| {
                    k.bastion.get_or_insert_with(|| b.endpoint.name.clone());
                    k
                })
                .collect(),
            None => Vec::new(),
        };
        learned.extend(own);
        Ok(Connection {
            handle,
            sessions: Semaphore::new(MAX_SESSIONS),
            endpoint: ep.clone(),
            learned_keys: Mutex::new(learned),
            become_root: false,
            rtt,
        })
    }

    /// The host keys recorded while this connection was set up (its own, its bastions'), once.
    pub fn take_learned_keys(&self) -> Vec<LearnedKey> {
        std::mem::take(&mut *self.learned_keys.lock().expect("learned keys lock"))
    }

    /// Run `command` through the remote user's shell, collecting its output, within `timeout`.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let command = self.wrap(command);
        match tokio::time::timeout(timeout, self.exec_started(&command, None)).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout(timeout)),
        }
    }

    /// Run `command` with the file at `local`, from byte `offset` on, as its stdin (the upload
    /// path: `cat > x.part`), at most `bandwidth` bytes per second (0: no cap).
    pub async fn exec_with_input(
        &self,
        command: &str,
        local: &Path,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let input = Input {
            path: local.to_path_buf(),
            bandwidth,
            offset,
        };
        let command = self.wrap(command);
        match tokio::time::timeout(timeout, self.exec_started(&command, Some(input))).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout(timeout)),
        }
    }

    /// `command` as it is sent: through `sudo -n sh -c` when the connection becomes root.
    fn wrap(&self, command: &str) -> String {
        if self.become_root {
            format!("sudo -n -- sh -c {}", crate::remote::quote(command))
        } else {
            command.to_string()
        }
    }

    /// [`Connection::exec_inner`], once more on a new channel if the server closed the first
    /// one without running the command: Dropbear (2022.83) now and then closes the session
    /// channel opened right after an SFTP subsystem whose server could not start, before it
    /// answers the `exec`. A command that never started can be sent again.
    async fn exec_started(&self, command: &str, input: Option<Input>) -> Result<ExecOutput, SshError> {
        for _ in 0..2 {
            if let Some(out) = self.exec_inner(command, input.clone()).await? {
                return Ok(out);
            }
        }
        Err(SshError::Protocol(
            "the server closed the channel without running the command, twice".into(),
        ))
    }

    /// Run `command` on a new channel; `None` if the server closed the channel (or refused
    /// the `exec`) before the command started: no answer to the request, no output, no exit.
    async fn exec_inner(&self, command: &str, input: Option<Input>) -> Result<Option<ExecOutput>, SshError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let mut started = false;
        let mut send_error = None;
        let mut out = ExecOutput::default();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let writer = input.map(|input| {
            let sender = channel.make_writer();
            tokio::spawn(async move { send_file(sender, input).await })
        });
        let mut eof_sent = writer.is_none();
        if eof_sent {
            channel.eof().await?;
        }
        let mut writer = writer;
        // After the exit status: the last output, and whether stdout's EOF came.
        let mut after_exit: Option<tokio::time::Instant> = None;
        let mut stdout_closed = false;
        loop {
            let grace = async {
                match after_exit {
                    Some(t) => tokio::time::sleep_until(t + LEAK_GRACE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = grace => {
                    out.leaked = Some(if stdout_closed { "stderr" } else { "stdout" });
                    let _ = channel.close().await;
                    break;
                }
                res = async { writer.as_mut().expect("writer").await }, if writer.is_some() => {
                    writer = None;
                    let failed = match res {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(e) = failed {
                        let e = SshError::Protocol(format!("sending the file: {e}"));
                        if started {
                            return Err(e);
                        }
                        // The channel may be closing before the command ran: see below.
                        send_error = Some(e);
                        continue;
                    }
                    if !eof_sent {
                        channel.eof().await?;
                        eof_sent = true;
                    }
                }
                msg = channel.wait() => {
                    let Some(msg) = msg else { break };
                    match msg {
                        ChannelMsg::Success => started = true,
                        ChannelMsg::Failure if !started => break,
                        ChannelMsg::Data { data } => {
                            started = true;
                            after_exit = after_exit.map(|_| tokio::time::Instant::now());
                            push_capped(&mut stdout, &data)
                        }
                        ChannelMsg::ExtendedData { data, ext: 1 } => {
                            started = true;
                            after_exit = after_exit.map(|_| tokio::time::Instant::now());
                            push_capped(&mut stderr, &data)
                        }
                        ChannelMsg::Eof => stdout_closed = true,
                        ChannelMsg::ExitStatus { exit_status } => {
                            started = true;
                            after_exit = Some(tokio::time::Instant::now());
                            out.status = Some(exit_status)
                        }
                        ChannelMsg::ExitSignal { signal_name, .. } => {
                            started = true;
                            after_exit = Some(tokio::time::Instant::now());
                            out.signal = Some(format!("{signal_name:?}"))
                        }
                        ChannelMsg::Close => break,
                        _ => {}
                    }
                }
            }
        }
        if !started {
            if let Some(w) = writer {
                w.abort();
            }
            return Ok(None);
        }
        if let Some(e) = send_error {
            return Err(e);
        }
        out.stdout = String::from_utf8_lossy(&stdout).into_owned();
        out.stderr = String::from_utf8_lossy(&stderr).into_owned();
        Ok(Some(out))
    }

    /// Upload `local` to `remote` over SFTP, at most `bandwidth` bytes per second (0: no cap).
    /// `NoSftp` when the server offers no SFTP subsystem, so the caller can fall back to
    /// [`Connection::exec_with_input`].
    ///
    /// SFTP because its writes are acknowledged: the bytes in flight are bounded by the
    /// client (see [`writes_in_flight`]), not by the server's 2 MiB channel window. OpenSSH's
    /// sshd grows its channel buffer to whatever is in flight, copying it at every step, and
    /// each new connection does it again: on the benchmark machine, 50 uploads of 10 MB cost
    /// sshd about twice the CPU with 2 MiB in flight as with 128 KiB.
    ///
    /// The writes are [`SFTP_PACKET`] bytes long (less if the server's `limits@openssh.com`
    /// says so). A server that does not announce its limits need only take 34000 bytes: if one
    /// fails the writes, the upload starts again from `offset` with packets of that length.
    pub async fn upload_sftp(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let fut = async {
            match self.sftp_send(local, remote, offset, bandwidth, SFTP_PACKET).await {
                Err(SftpFailure::Writing(first)) => {
                    match self.sftp_send(local, remote, offset, bandwidth, SFTP_PACKET_MIN).await {
                        // Not even a new session (the connection is gone): the first error says why.
                        Err(SftpFailure::Before(_)) => Err(first),
                        other => other.map_err(SftpFailure::into_error),
                    }
                }
                other => other.map_err(SftpFailure::into_error),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout(timeout)),
        }
    }

    /// One SFTP session: open `remote` (from `offset` on) and write `local` into it in write
    /// packets of `packet` bytes.
    async fn sftp_send(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        bandwidth: u64,
        packet: usize,
    ) -> Result<(), SftpFailure> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SftpFailure::Before(e.into()))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpFailure::Before(SshError::NoSftp(e.to_string())))?;
        // Wait for the server's answer: OpenSSH refuses an unconfigured subsystem.
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => return Ok(()),
                    Some(ChannelMsg::Failure) => return Err("the server refused the subsystem".to_string()),
                    Some(ChannelMsg::Close | ChannelMsg::Eof) | None => return Err("the channel closed".to_string()),
                    Some(_) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("no answer to the subsystem request".to_string()));
        answer.map_err(|e| SftpFailure::Before(SshError::NoSftp(e)))?;
        let cfg = russh_sftp::client::Config {
            max_concurrent_writes: writes_in_flight(self.rtt, packet),
            // The server's `limits@openssh.com` (OpenSSH: 256 KiB) lowers it if need be.
            max_write_packet_len: packet as u32,
            request_timeout_secs: 60,
            ..Default::default()
        };
        let sftp = russh_sftp::client::SftpSession::new_with_config(channel.into_stream(), cfg)
            .await
            .map_err(|e| SftpFailure::Before(SshError::NoSftp(e.to_string())))?;
        let before = |what: &str, e: russh_sftp::client::error::Error| {
            SftpFailure::Before(SshError::Protocol(format!("{what} {remote}: {e}")))
        };
        // From `offset` on, the file already holds the right bytes (a resumed upload).
        let file = if offset > 0 {
            use tokio::io::AsyncSeekExt;
            let mut f = sftp
                .open_with_flags(remote, russh_sftp::protocol::OpenFlags::WRITE)
                .await
                .map_err(|e| before("opening", e))?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| SftpFailure::Before(SshError::Protocol(format!("seeking {remote}: {e}"))))?;
            f
        } else {
            sftp.create(remote).await.map_err(|e| before("creating", e))?
        };
        send_file(
            file,
            Input {
                path: local.to_path_buf(),
                bandwidth,
                offset,
            },
        )
        .await
        .map_err(|e| SftpFailure::Writing(SshError::Protocol(format!("writing {remote}: {e}"))))?;
        let _ = sftp.close().await;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

#[derive(Clone)]
struct Input {
    path: PathBuf,
    bandwidth: u64,
    /// Bytes of the file to skip (already on the other side).
    offset: u64,
}

async fn send_file(mut sink: impl tokio::io::AsyncWrite + Unpin, input: Input) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::open(&input.path).await?;
    if input.offset > 0 {
        use tokio::io::AsyncSeekExt;
        f.seek(std::io::SeekFrom::Start(input.offset)).await?;
    }
    let mut buf = vec![0u8; 256 * 1024];
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n]).await?;
        sent += n as u64;
        if input.bandwidth > 0 {
            // Sleep until the average rate is back under the cap.
            let due = Duration::from_secs_f64(sent as f64 / input.bandwidth as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    sink.flush().await?;
    sink.shutdown().await.ok();
    Ok(())
}

/// One connection per bastion, shared by every host behind it.
#[derive(Default, Clone)]
pub struct Bastions(Arc<tokio::sync::Mutex<std::collections::HashMap<String, BastionCell>>>);

type BastionCell = Arc<tokio::sync::OnceCell<Arc<Connection>>>;

impl std::fmt::Debug for Bastions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bastions")
    }
}

impl Bastions {
    /// Close every bastion connection (at the end of a run).
    pub async fn close(&self) {
        for (_, cell) in self.0.lock().await.drain() {
            if let Some(c) = cell.get() {
                c.close().await;
            }
        }
    }
}

/// The connection to the last bastion of a `jump` chain (`[user@]host[:port]`, comma-separated,
/// as ProxyJump), itself reached through the earlier ones. Each is resolved through the SSH
/// config like any host.
fn bastion<'a>(
    chain: &'a str,
    settings: &'a SshSettings,
    identities: &'a [PathBuf],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<Connection>, SshError>> + Send + 'a>> {
    Box::pin(async move {
        // One cell per chain: the first caller connects, the others wait for it.
        let cell = settings
            .bastions
            .0
            .lock()
            .await
            .entry(chain.to_string())
            .or_default()
            .clone();
        let conn = cell
            .get_or_try_init(|| connect_bastion(chain, settings, identities))
            .await?;
        Ok(conn.clone())
    })
}

/// A bastion is resolved like any host; the identities of the host behind it are tried after
/// its own (one key for the bastion and its hosts is the common case).
async fn connect_bastion(
    chain: &str,
    settings: &SshSettings,
    identities: &[PathBuf],
) -> Result<Arc<Connection>, SshError> {
    let (before, last) = match chain.rsplit_once(',') {
        Some((b, l)) => (Some(b.trim().to_string()), l.trim()),
        None => (None, chain.trim()),
    };
    let (user, rest) = match last.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, last),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().ok()),
        _ => (rest.to_string(), None),
    };
    let spec = config::HostSpec {
        name: host.clone(),
        address: None,
        port,
        user,
        identity: None,
        jump: None,
    };
    let mut ep = config::resolve(&spec, settings);
    for id in identities {
        if !ep.identities.contains(id) {
            ep.identities.push(id.clone());
        }
    }
    // The chain given wins over the bastion's own ProxyJump.
    ep.jump = before.or(ep.jump.filter(|j| j != chain));
    let conn = Connection::open(&ep, settings).await.map_err(|e| match e {
        SshError::Connect { addr, reason } => SshError::Connect {
            addr,
            reason: format!("bastion {host}: {reason}"),
        },
        other => other,
    })?;
    Ok(Arc::new(conn))
}

/// Decrypted keys, loaded once per process and shared by every connection.
static KEYS: tokio::sync::Mutex<Vec<(PathBuf, Arc<keys::PrivateKey>)>> = tokio::sync::Mutex::const_new(Vec::new());

/// Load `path`, asking for its passphrase on the terminal when allowed. Held under the cache's
/// lock so that one prompt serves every host.
async fn load_key(path: &Path, ask: bool) -> Result<Arc<keys::PrivateKey>, String> {
    let mut cache = KEYS.lock().await;
    if let Some((_, k)) = cache.iter().find(|(p, _)| p == path) {
        return Ok(k.clone());
    }
    let key = match keys::load_secret_key(path, None) {
        Ok(k) => k,
        Err(keys::Error::KeyIsEncrypted) if ask => {
            let p = path.to_path_buf();
            let pass = tokio::task::spawn_blocking(move || {
                rpassword::prompt_password(format!("passphrase for {}: ", p.display()))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the passphrase: {e}"))?;
            keys::load_secret_key(path, Some(&pass)).map_err(|e| format!("{e}"))?
        }
        Err(keys::Error::KeyIsEncrypted) => {
            return Err("encrypted, and there is no terminal to ask for its passphrase; load it into ssh-agent".into())
        }
        Err(e) => return Err(e.to_string()),
    };
    let key = Arc::new(key);
    cache.push((path.to_path_buf(), key.clone()));
    Ok(key)
}

/// ssh-agent first, then identity files: the host's own, then the global ones.
async fn authenticate(handle: &mut Handle<Client>, ep: &Endpoint, settings: &SshSettings) -> Result<(), SshError> {
    let mut tried = Vec::new();
    let rsa_hash = |key_is_rsa: bool| if key_is_rsa { Some(HashAlg::Sha256) } else { None };
    if settings.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for id in identities {
                    let key = id.public_key().into_owned();
                    let hash = rsa_hash(key.algorithm().is_rsa());
                    match handle
                        .authenticate_publickey_with(&ep.user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        _ => tried.push(format!("agent key {}", id.comment())),
                    }
                }
                if tried.is_empty() {
                    tried.push("ssh-agent (no keys)".into());
                }
            }
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
    let mut candidates: Vec<&PathBuf> = ep.identities.iter().collect();
    candidates.extend(settings.identities.iter().filter(|p| !ep.identities.contains(p)));
    for path in candidates {
        if !path.exists() {
            if ep.identities.contains(path) {
                tried.push(format!("{} (missing)", path.display()));
            }
            continue;
        }
        let key = match load_key(path, settings.ask_passphrase).await {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} ({e})", path.display()));
                continue;
            }
        };
        let hash = rsa_hash(key.algorithm().is_rsa());
        let res = handle
            .authenticate_publickey(&ep.user, PrivateKeyWithHashAlg::new(key, hash))
            .await?;
        tried.push(path.display().to_string());
        if res.success() {
            return Ok(());
        }
    }
    let tried = if tried.is_empty() {
        "no identity file found".to_string()
    } else {
        tried.join(", ")
    };
    Err(SshError::Auth {
        user: ep.user.clone(),
        host: ep.name.clone(),
        tried,
    })
}

fn push_capped(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    if buf.len() > OUTPUT_CAP {
        let cut = buf.len() - OUTPUT_CAP;
        buf.drain(..cut);
    }
}

/// A connection dropped during the handshake (sshd busy), not a host that is down.
fn is_transient(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "reset by peer",
        "connection closed",
        "end of file",
        "disconnected",
        "broken pipe",
    ]
    .iter()
    .any(|w| r.contains(w))
}

/// SFTP writes of `packet` bytes in flight: enough for about 100 MB/s per host at the
/// connection's round trip, at least two and about 128 KiB (a LAN), at most 2 MiB (the server's
/// window; also through a bastion, where the round trip is not known).
fn writes_in_flight(rtt: Option<Duration>, packet: usize) -> usize {
    const RATE: f64 = 100e6;
    let (lo, hi) = ((128 * 1024 / packet).max(2), (2 * 1024 * 1024 / packet).max(2));
    match rtt {
        Some(rtt) => ((RATE * rtt.as_secs_f64() / packet as f64).ceil() as usize).clamp(lo, hi),
        None => hi,
    }
}

/// Where an SFTP upload failed: before the first write (the subsystem, opening the file), or
/// while writing.
enum SftpFailure {
    Before(SshError),
    Writing(SshError),
}

impl SftpFailure {
    fn into_error(self) -> SshError {
        match self {
            SftpFailure::Before(e) | SftpFailure::Writing(e) => e,
        }
    }
}

fn connect_reason(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::UnknownKey => "host key rejected".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SSH server on loopback that, like Dropbear now and then, closes the first session
    /// channel it gets an `exec` on without running the command (no reply, EOF, close). Later
    /// channels run any command: answer, echo the bytes received on stdin, exit 0.
    #[derive(Clone, Default)]
    struct ClosesFirstChannel {
        execs: Arc<std::sync::atomic::AtomicUsize>,
        stdin: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl russh::server::Server for ClosesFirstChannel {
        type Handler = Self;
        fn new_client(&mut self, _: Option<std::net::SocketAddr>) -> Self {
            self.clone()
        }
    }

    impl russh::server::Handler for ClosesFirstChannel {
        type Error = russh::Error;

        async fn auth_publickey(
            &mut self,
            _: &str,
            _: russh::server::VerifiedPublicKey<'_>,
        ) -> Result<russh::server::Auth, Self::Error> {
            Ok(russh::server::Auth::Accept)
        }

        async fn channel_open_session(
            &mut self,
            _: russh::Channel<russh::server::Msg>,
            reply: russh::server::ChannelOpenHandle,
            _: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            reply.accept().await;
            Ok(())
        }

        async fn exec_request(
            &mut self,
            channel: russh::ChannelId,
            _: &[u8],
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            if self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                session.eof(channel)?;
                session.close(channel)?;
            } else {
                self.stdin.lock().unwrap().clear();
                session.channel_success(channel)?;
            }
            Ok(())
        }

        async fn data(
            &mut self,
            _: russh::ChannelId,
            data: &[u8],
            _: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            self.stdin.lock().unwrap().extend_from_slice(data);
            Ok(())
        }

        async fn channel_eof(
            &mut self,
            channel: russh::ChannelId,
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            if self.execs.load(std::sync::atomic::Ordering::SeqCst) > 1 {
                let got = format!("ran, {} bytes in\n", self.stdin.lock().unwrap().len());
                session.data(channel, got.into_bytes())?;
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
            Ok(())
        }
    }

    /// A [`ClosesFirstChannel`] server and a connection to it.
    async fn connect_to_closing_server(dir: &Path) -> (Connection, ClosesFirstChannel) {
        use russh::server::Server as _;
        let keygen = |path: &Path| {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(path.with_extension("pub"));
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen");
            russh::keys::load_secret_key(path, None).unwrap()
        };
        let host_key = keygen(&dir.join("host_key"));
        let identity = dir.join("id_ed25519");
        keygen(&identity);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", host_key.public_key().to_openssh().unwrap()),
        )
        .unwrap();
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key],
            ..Default::default()
        });
        let mut server = ClosesFirstChannel::default();
        let state = server.clone();
        tokio::spawn(async move {
            let _ = server.run_on_socket(config, &listener).await;
        });
        let settings = SshSettings {
            known_hosts: Some(known_hosts),
            accept_new_host_keys: false,
            identities: vec![],
            use_agent: false,
            ask_passphrase: false,
            config: None,
            bastions: Bastions::default(),
            max_connecting: 1,
            connect_timeout: Duration::from_secs(5),
            default_user: "root".into(),
        };
        let spec = config::HostSpec {
            name: "closing".into(),
            address: Some("127.0.0.1".into()),
            port: Some(port),
            user: Some("root".into()),
            identity: Some(identity),
            jump: None,
        };
        let ep = config::resolve(&spec, &settings);
        (Connection::open(&ep, &settings).await.unwrap(), state)
    }

    #[tokio::test]
    async fn a_channel_closed_before_the_command_ran_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, server) = connect_to_closing_server(dir.path()).await;
        let out = conn.exec("true", Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (Some(0), "ran, 0 bytes in\n"),
            "{out:?}"
        );
        assert_eq!(server.execs.load(std::sync::atomic::Ordering::SeqCst), 2);

        // With a file on stdin (the upload through `cat`): all of it reaches the second channel.
        let (conn, server) = connect_to_closing_server(dir.path()).await;
        let file = dir.path().join("artifact");
        std::fs::write(&file, vec![7u8; 300_000]).unwrap();
        let out = conn
            .exec_with_input("cat > x.part", &file, 0, 0, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (Some(0), "ran, 300000 bytes in\n"),
            "{out:?}"
        );
        assert_eq!(server.execs.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn writes_in_flight_follow_the_round_trip() {
        assert_eq!(writes_in_flight(Some(Duration::from_micros(50)), SFTP_PACKET), 2);
        // 100 MB/s × 10 ms = 1 MB = 8 writes of 129 KiB, or 30 of 34000 bytes.
        assert_eq!(writes_in_flight(Some(Duration::from_millis(10)), SFTP_PACKET), 8);
        assert_eq!(writes_in_flight(Some(Duration::from_millis(80)), SFTP_PACKET), 15);
        assert_eq!(writes_in_flight(None, SFTP_PACKET), 15);
        assert_eq!(writes_in_flight(Some(Duration::from_micros(50)), SFTP_PACKET_MIN), 3);
        assert_eq!(writes_in_flight(Some(Duration::from_millis(10)), SFTP_PACKET_MIN), 30);
        assert_eq!(writes_in_flight(None, SFTP_PACKET_MIN), 61);
    }
}
