//! User authentication: ssh-agent, then identity files, each with the OpenSSH user certificates
//! that certify it (`CertificateFile`, `KEY-cert.pub`), as a host that trusts an SSH CA wants.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::{self, Certificate, HashAlg, PrivateKeyWithHashAlg};

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

/// The certificates a host may be offered with: the SSH config's `CertificateFile`s, then
/// `KEY-cert.pub` beside each identity file (as OpenSSH looks for them). A `CertificateFile`
/// that cannot be read is named in `tried`; a missing `-cert.pub` is simply not there.
fn certificates(ep: &Endpoint, identities: &[&PathBuf], tried: &mut Vec<String>) -> Vec<(PathBuf, Certificate)> {
    let mut out = Vec::new();
    for path in &ep.certificates {
        match Certificate::read_file(path) {
            Ok(cert) => out.push((path.clone(), cert)),
            Err(e) if !path.exists() => tried.push(format!("certificate {} (missing: {e})", path.display())),
            Err(e) => tried.push(format!("certificate {} (unreadable: {e})", path.display())),
        }
    }
    for id in identities {
        let mut beside = id.as_os_str().to_owned();
        beside.push("-cert.pub");
        let beside = PathBuf::from(beside);
        if out.iter().any(|(p, _)| *p == beside) {
            continue;
        }
        if let Ok(cert) = Certificate::read_file(&beside) {
            out.push((beside, cert));
        }
    }
    out
}

/// Why a certificate cannot serve now (expired, not yet valid), in OpenSSH's terms.
fn unusable(cert: &Certificate) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let when = |t: u64| {
        time::OffsetDateTime::from_unix_timestamp(t as i64)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| t.to_string())
    };
    if now >= cert.valid_before() {
        Some(format!("expired {}", when(cert.valid_before())))
    } else if now < cert.valid_after() {
        Some(format!("not valid before {}", when(cert.valid_after())))
    } else {
        None
    }
}

/// ssh-agent first (its certificates, then its keys, each with a `CertificateFile` that
/// certifies it), then identity files: the host's own, then the global ones, each with its
/// certificates before the plain key.
pub(super) async fn authenticate(
    handle: &mut Handle<Client>,
    ep: &Endpoint,
    settings: &SshSettings,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    let rsa_hash = |key_is_rsa: bool| if key_is_rsa { Some(HashAlg::Sha256) } else { None };
    let mut candidates: Vec<&PathBuf> = ep.identities.iter().collect();
    candidates.extend(settings.identities.iter().filter(|p| !ep.identities.contains(p)));
    let certs = certificates(ep, &candidates, &mut tried);
    let certs_of = |key: &keys::ssh_key::public::KeyData| -> Vec<&(PathBuf, Certificate)> {
        certs.iter().filter(|(_, c)| c.public_key() == key).collect()
    };
    if settings.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                let before = tried.len();
                for id in identities {
                    let key = id.public_key().into_owned();
                    let hash = rsa_hash(key.algorithm().is_rsa());
                    let mut offered: Vec<(String, Certificate)> = Vec::new();
                    if let AgentIdentity::Certificate { certificate, comment } = &id {
                        offered.push((format!("agent certificate {comment}"), certificate.clone()));
                    }
                    for (path, cert) in certs_of(key.key_data()) {
                        offered.push((
                            format!("agent key {} with certificate {}", id.comment(), path.display()),
                            cert.clone(),
                        ));
                    }
                    for (what, cert) in offered {
                        if let Some(why) = unusable(&cert) {
                            tried.push(format!("{what} ({why})"));
                            continue;
                        }
                        match handle
                            .authenticate_certificate_with(&ep.user, cert, hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => return Ok(()),
                            _ => tried.push(what),
                        }
                    }
                    if matches!(id, AgentIdentity::Certificate { .. }) {
                        continue;
                    }
                    match handle
                        .authenticate_publickey_with(&ep.user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        _ => tried.push(format!("agent key {}", id.comment())),
                    }
                }
                if tried.len() == before {
                    tried.push("ssh-agent (no keys)".into());
                }
            }
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
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
        for (cert_path, cert) in certs_of(key.public_key().key_data()) {
            let what = format!("{} with certificate {}", path.display(), cert_path.display());
            if let Some(why) = unusable(cert) {
                tried.push(format!("{what} ({why})"));
                continue;
            }
            let res = handle
                .authenticate_openssh_cert(&ep.user, key.clone(), cert.clone())
                .await?;
            tried.push(what);
            if res.success() {
                return Ok(());
            }
        }
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
