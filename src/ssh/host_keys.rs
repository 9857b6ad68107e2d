//! Host keys as OpenSSH checks them: every known_hosts file of a host (the user's, then the
//! global ones) read line by line, plain, hashed (`|1|salt|hash`) and pattern names (`*`, `?`,
//! `!` negation, comma lists, `[host]:port`), `@revoked` and `@cert-authority` markers; one
//! verdict for the key a server offers; and a new key recorded under a file lock.
//!
//! Stricter than OpenSSH in two places, both so that a key is never learned when a file says
//! anything about the host: `@revoked` refuses its key whatever the host, and a line for the host
//! whose key cannot be read (an unknown key type) counts as a line with another key.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::PublicKey;

mod certificate;
pub use certificate::CertVerdict;

/// How one host's key is checked: the name it is known by, its files, and whether a key seen
/// for the first time may be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct HostKeyPolicy {
    /// The name looked up in and written to known_hosts: `HostKeyAlias`, else the address
    /// (`[address]:port` off port 22), lowercased as OpenSSH does.
    pub name: String,
    /// The user's files (`--known-hosts`, else `UserKnownHostsFile`, else ~/.ssh/known_hosts and
    /// ~/.ssh/known_hosts2); new keys go to the first one. Empty: `UserKnownHostsFile none`.
    pub user_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile` (default /etc/ssh/ssh_known_hosts and ssh_known_hosts2), read when
    /// they are readable.
    pub global_files: Vec<PathBuf>,
    pub learning: Learning,
    /// Write new names hashed (`HashKnownHosts yes`).
    pub hash_names: bool,
}

/// What happens to the key of a host that no line of any file concerns.
#[derive(Debug, Clone, PartialEq)]
pub enum Learning {
    /// Refused (neither `--accept-new-host-keys` nor `StrictHostKeyChecking accept-new`).
    Refused,
    /// Refused because the SSH config says `StrictHostKeyChecking <value>` (`yes` or `ask`),
    /// even with `--accept-new-host-keys`.
    ForbiddenByConfig(String),
    /// Recorded on first use; the string says who allowed it (the flag or the directive).
    Allowed(String),
}

/// Where a known_hosts line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
}

/// What the known_hosts files say about the key a host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A plain line for this host names this key.
    Match,
    /// An `@revoked` line names this key (whatever its hosts).
    Revoked(Place),
    /// A plain line concerns this host and names another key (of any type); the first one.
    Mismatch(Place),
    /// Only an `@cert-authority` line concerns this host, and the host offered a plain key.
    CertAuthority(Place),
    /// No line of any file concerns this host.
    Unknown,
}

/// What recording a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Appended to this file.
    Written(PathBuf),
    /// Another process recorded the same key meanwhile.
    AlreadyThere,
    /// `UserKnownHostsFile none`: trusted for this run only.
    Nowhere,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LearnError {
    /// Under the lock, the files no longer leave the host unknown.
    Refused(Verdict),
    Io(String),
}

impl HostKeyPolicy {
    /// Every file read, in order: the user's, then the global ones.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.user_files.iter().chain(&self.global_files)
    }

    /// The files, for messages.
    pub fn describe_files(&self) -> String {
        let names: Vec<String> = self.files().map(|p| p.display().to_string()).collect();
        if names.is_empty() {
            "any known_hosts file (UserKnownHostsFile none)".to_string()
        } else {
            names.join(", ")
        }
    }

    /// The verdict of the files on `key`. A file that cannot be read (but for a missing one, or
    /// an unreadable global one) is an error: what it says about the host is not known.
    pub fn check(&self, key: &PublicKey) -> Result<Verdict, String> {
        let sources = self.read_all()?;
        Ok(verdict(&sources, &self.name, key.key_data()))
    }

    fn read_all(&self) -> Result<Vec<(PathBuf, String)>, String> {
        let mut sources = Vec::new();
        for (path, global) in self
            .user_files
            .iter()
            .map(|p| (p, false))
            .chain(self.global_files.iter().map(|p| (p, true)))
        {
            match std::fs::read(path) {
                Ok(bytes) => sources.push((path.clone(), String::from_utf8_lossy(&bytes).into_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if global && e.kind() == std::io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(sources)
    }

    /// Record `key` for this host in the first user file, under an exclusive lock of that file,
    /// after checking again under the lock that no line concerns the host (another process may
    /// have written one meanwhile).
    pub fn learn(&self, key: &PublicKey) -> Result<Recorded, LearnError> {
        use fs4::fs_std::FileExt;
        let Some(path) = self.user_files.first() else {
            return Ok(Recorded::Nowhere);
        };
        let io = |e: std::io::Error| LearnError::Io(format!("recording the key in {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        file.lock_exclusive().map_err(io)?;
        let result = (|| {
            match self.check(key).map_err(LearnError::Io)? {
                Verdict::Match => return Ok(Recorded::AlreadyThere),
                Verdict::Unknown => {}
                other => return Err(LearnError::Refused(other)),
            }
            // Start on a line of its own.
            let mut last = [0u8; 1];
            let ends_in_newline = match file.seek(SeekFrom::End(-1)) {
                Ok(_) => file.read_exact(&mut last).map(|()| last[0] == b'\n').map_err(io)?,
                Err(_) => true,
            };
            let mut line = String::new();
            if !ends_in_newline {
                line.push('\n');
            }
            line.push_str(&self.line_for(key).map_err(LearnError::Io)?);
            file.write_all(line.as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
            Ok(Recorded::Written(path.clone()))
        })();
        let _ = FileExt::unlock(&file);
        result
    }

    /// The known_hosts line for `key` under this host's name.
    fn line_for(&self, key: &PublicKey) -> Result<String, String> {
        let bare = PublicKey::new(key.key_data().clone(), "");
        let text = bare.to_openssh().map_err(|e| format!("encoding the key: {e}"))?;
        let name = if self.hash_names {
            let salt: [u8; 20] = rand::random();
            let b64 = base64::engine::general_purpose::STANDARD;
            format!("|1|{}|{}", b64.encode(salt), b64.encode(hmac_sha1(&salt, &self.name)))
        } else {
            self.name.clone()
        };
        Ok(format!("{name} {}\n", text.trim_end()))
    }
}

/// The name OpenSSH looks up for a host: the `HostKeyAlias` as given, else the address, as
/// `[address]:port` off port 22; lowercased.
pub fn lookup_name(alias: Option<&str>, address: &str, port: u16) -> String {
    let name = match alias {
        Some(a) => a.to_string(),
        None if port == 22 || port == 0 => address.to_string(),
        None => format!("[{address}]:{port}"),
    };
    name.to_ascii_lowercase()
}

/// One line of a known_hosts file that names hosts and a key.
struct Line<'a> {
    marker: Option<Marker>,
    hosts: &'a str,
    /// The key as written: read ([`decode_key`]) only for a line that matters to the check,
    /// since one run checks every host against the same files (a 1,000-line file for 1,000
    /// hosts was a million keys decoded, most of the CPU of `plan --check`).
    key: &'a str,
}

/// A line's key; `None` when it cannot be read (an unknown type, a damaged line).
fn decode_key(text: &str) -> Option<KeyData> {
    #[cfg(test)]
    tests::DECODED.with(|n| n.set(n.get() + 1));
    PublicKey::from_openssh(text).ok().map(|k| k.key_data().clone())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Marker {
    CertAuthority,
    Revoked,
}

/// A line split as OpenSSH's `hostkeys_foreach` does; `None` for blank lines, comments and lines
/// OpenSSH skips (an unknown marker, no key field).
fn parse_line(text: &str) -> Option<Line<'_>> {
    let is_space = |c: char| c == ' ' || c == '\t';
    let text = text.trim_start_matches(is_space).trim_end_matches(['\r', '\n']);
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let (first, rest) = text.split_once(is_space).unwrap_or((text, ""));
    let (marker, rest) = match first {
        "@cert-authority" => (Some(Marker::CertAuthority), rest),
        "@revoked" => (Some(Marker::Revoked), rest),
        m if m.starts_with('@') => return None,
        _ => (None, text),
    };
    let rest = rest.trim_start_matches(is_space);
    let (hosts, key) = rest.split_once(is_space)?;
    let key = key.trim_matches(is_space);
    if key.is_empty() {
        return None;
    }
    Some(Line { marker, hosts, key })
}

/// Whether a line's hosts field concerns `name` (already lowercased): a hashed name that is
/// `name`'s hash, or a pattern list where some pattern matches and no negated one does.
/// `None` for a damaged hashed name (OpenSSH skips the line).
fn concerns(hosts: &str, name: &str) -> Option<bool> {
    if let Some(hashed) = hosts.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|')?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (salt, hash) = (b64.decode(salt).ok()?, b64.decode(hash).ok()?);
        return Some(hmac_sha1(&salt, name).as_slice() == hash.as_slice());
    }
    let mut positive = false;
    for pattern in hosts.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(name.as_bytes(), pattern.to_ascii_lowercase().as_bytes()) {
            if negated {
                return Some(false);
            }
            positive = true;
        }
    }
    Some(positive)
}

/// OpenSSH's `match_pattern`: `*` matches any run of characters, `?` any one.
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn hmac_sha1(salt: &[u8], name: &str) -> Vec<u8> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).expect("HMAC takes a key of any length");
    mac.update(name.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The verdict of `sources` (file, text), read in order, on `key` offered under `name`.
fn verdict(sources: &[(PathBuf, String)], name: &str, key: &KeyData) -> Verdict {
    let (mut mismatch, mut authority) = (None, None);
    let mut matched = false;
    for (file, text) in sources {
        for (i, raw) in text.lines().enumerate() {
            let Some(line) = parse_line(raw) else { continue };
            let place = || Place {
                file: file.clone(),
                line: i + 1,
            };
            let same_key = || decode_key(line.key).as_ref() == Some(key);
            if line.marker == Some(Marker::Revoked) {
                if same_key() {
                    return Verdict::Revoked(place());
                }
                // A revoked other key says nothing about which key this host has.
                continue;
            }
            if concerns(line.hosts, name) != Some(true) {
                continue;
            }
            match line.marker {
                Some(_) => {
                    authority.get_or_insert_with(place);
                }
                None if same_key() => matched = true,
                None => {
                    mismatch.get_or_insert_with(place);
                }
            }
        }
    }
    match (matched, mismatch, authority) {
        (true, _, _) => Verdict::Match,
        (false, Some(p), _) => Verdict::Mismatch(p),
        (false, None, Some(p)) => Verdict::CertAuthority(p),
        (false, None, None) => Verdict::Unknown,
    }
}

#[cfg(test)]
mod tests;
