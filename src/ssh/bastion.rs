//! Bastions (ProxyJump): one connection per bastion chain, shared by every host behind it.

use std::path::PathBuf;
use std::sync::Arc;

use super::{config, Connection, SshError, SshSettings};

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
pub(super) fn bastion<'a>(
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

/// One hop of a ProxyJump list, or any `[user@]host[:port]` target (an HAProxy `ssh://`
/// load balancer host): the host in brackets when it is an IPv6 address or as `ssh -G` prints a
/// single hop (`root@[10.0.0.1]`). The one parser of that form.
pub fn hop(text: &str) -> (Option<String>, String, Option<u16>) {
    let (user, rest) = match text.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, text),
    };
    if let Some(inner) = rest.strip_prefix('[') {
        if let Some((host, after)) = inner.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (user, host.to_string(), port);
        }
    }
    match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (user, h.to_string(), p.parse().ok()),
        _ => (user, rest.to_string(), None),
    }
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
    let (user, host, port) = hop(last);
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

#[cfg(test)]
mod tests {
    use super::hop;

    #[test]
    fn hops_as_written_and_as_ssh_g_prints_them() {
        let h = |u: Option<&str>, host: &str, p: Option<u16>| (u.map(str::to_string), host.to_string(), p);
        assert_eq!(hop("bastion"), h(None, "bastion", None));
        assert_eq!(hop("root@10.0.0.1:2222"), h(Some("root"), "10.0.0.1", Some(2222)));
        assert_eq!(hop("root@[10.0.0.1]"), h(Some("root"), "10.0.0.1", None));
        assert_eq!(hop("[::1]:22"), h(None, "::1", Some(22)));
        assert_eq!(hop("[fe80::1]"), h(None, "fe80::1", None));
    }
}
