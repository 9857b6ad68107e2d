//! One connection per host: connect (directly, through a bastion or a ProxyCommand) within the
//! connect timeout, verify the host key, authenticate.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::{kex, Preferred};
use tokio::sync::Semaphore;

use super::bastion::bastion;
use super::handler::{Client, KeyCheck};
use super::proxy::{self, ProxyProcess};
use super::{auth, Endpoint, LearnedKey, SshError, SshSettings};

/// OpenSSH's default `MaxSessions`: more session channels at once on one connection are refused.
const MAX_SESSIONS: usize = 10;

/// One SSH connection to one host, reused for every step of that host.
pub struct Connection {
    pub(super) handle: Handle<Client>,
    pub(super) sessions: Semaphore,
    pub endpoint: Endpoint,
    /// The host keys this connection recorded (trust on first use), its bastions' included,
    /// until someone reports them ([`Connection::take_learned_keys`]).
    learned_keys: Mutex<Vec<LearnedKey>>,
    /// Run every command through `sudo -n` (the playbook's or the host's `become`).
    pub become_root: bool,
    /// The time the TCP connection took to open (about one round trip); None through a bastion
    /// or a ProxyCommand.
    pub rtt: Option<Duration>,
    /// The ProxyCommand carrying this connection, killed when the connection is closed or dropped.
    proxy: Option<tokio::sync::Mutex<ProxyProcess>>,
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
                    // A ProxyCommand that exited is not a busy sshd.
                    Err(SshError::Connect { reason, .. })
                        if is_transient(&reason) && !reason.contains(proxy::EXITED) =>
                    {
                        tokio::time::sleep(delay + Duration::from_millis(rand::random::<u64>() % 100)).await;
                        delay *= 2;
                    }
                    other => return other,
                }
            }
            Self::open_inner(ep, settings, &addr).await
        };
        let timeout = settings.connect_timeout_for(ep);
        match tokio::time::timeout(timeout, attempts).await {
            Ok(r) => r,
            Err(_) => Err(SshError::ConnectTimeout { addr, timeout }),
        }
    }

    async fn open_inner(ep: &Endpoint, settings: &SshSettings, addr: &str) -> Result<Connection, SshError> {
        let check = Arc::new(Mutex::new(KeyCheck::default()));
        let handler = Client {
            host: ep.name.clone(),
            policy: ep.host_keys.clone(),
            check: check.clone(),
        };
        let mut config = client_config();
        // As OpenSSH: a host that an `@cert-authority` line concerns is asked for its host
        // certificate first (the server offers a plain key when it has none).
        if ep.host_keys.trusts_an_authority() {
            config.preferred.host_key_certificates = Cow::Owned(config.preferred.key.to_vec());
        }
        let config = Arc::new(config);
        let mut rtt = None;
        let mut via = None;
        let mut proxy = None;
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
            None if ep.proxy_command.is_some() => {
                let command = ep.proxy_command.as_deref().unwrap_or_default();
                let (process, stream) = proxy::spawn(command).map_err(|reason| SshError::Connect {
                    addr: addr.to_string(),
                    reason,
                })?;
                proxy = Some(process);
                client::connect_stream(config, stream, handler).await
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
                let refused = check.lock().expect("key check lock").refused.take();
                return Err(match (refused, proxy.as_mut()) {
                    (Some(refused), _) => refused,
                    (None, Some(p)) => SshError::Connect {
                        addr: addr.to_string(),
                        reason: p.describe_failure(&connect_reason(&e)).await,
                    },
                    (None, None) => SshError::Connect {
                        addr: addr.to_string(),
                        reason: connect_reason(&e),
                    },
                });
            }
        };
        let own = check.lock().expect("key check lock").learned.take();
        auth::authenticate(&mut handle, ep, settings).await?;
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
            proxy: proxy.map(tokio::sync::Mutex::new),
        })
    }

    /// The host keys recorded while this connection was set up (its own, its bastions'), once.
    pub fn take_learned_keys(&self) -> Vec<LearnedKey> {
        std::mem::take(&mut *self.learned_keys.lock().expect("learned keys lock"))
    }

    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        if let Some(p) = &self.proxy {
            p.lock().await.kill().await;
        }
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

fn connect_reason(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::UnknownKey => "host key rejected".into(),
        other => other.to_string(),
    }
}
