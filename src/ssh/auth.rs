//! User authentication: ssh-agent, then identity files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg};

use super::handler::Client;
use super::{Endpoint, SshError, SshSettings};

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
pub(super) async fn authenticate(
    handle: &mut Handle<Client>,
    ep: &Endpoint,
    settings: &SshSettings,
) -> Result<(), SshError> {
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
