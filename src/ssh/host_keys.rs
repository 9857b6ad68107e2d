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
    /// Only an `@cert-authority` line concerns this host, and tranche checks no certificates.
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
    /// `None` when the key cannot be read (an unknown type, a damaged line).
    key: Option<KeyData>,
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
    Some(Line {
        marker,
        hosts,
        key: PublicKey::from_openssh(key).ok().map(|k| k.key_data().clone()),
    })
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
            let same_key = line.key.as_ref() == Some(key);
            if line.marker == Some(Marker::Revoked) {
                if same_key {
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
                None if same_key => matched = true,
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
mod tests {
    use super::*;
    use std::path::Path;

    // Two ed25519 keys and an ECDSA key (ssh-keygen output, comments dropped).
    const ED_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINl64FknVPssiMjP+6mmSh2+HAQCTtMqi0hfUCg7pkpJ";
    const ED_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF24ckmbXQpZtcGaMpVYr+EDvkHVbMLviVA0OUx2q+Kf";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKCHVs7Z615310GQe6UUoURopEiajtd9QVELA2EdOwxoTHX7SsIneM/BEpHyKJ+P1y1KlQh8Tn6WfcyjZIQTIyM=";

    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDYRAYqlRJbrX3Lql0r96zXAHNvR2L8IfzurRt+x7y8/nFmA1MpCdtbOiWaLa7Jo+LkqBhaVppD1j5cwm4V/1JJA/nj2kEVp/um09g3ny/puNnAMPdVspIUC2HL8bp9fudA37igTFWpb3lPqmyS1QORA0avD00/jScCaSp88ZEeHQ==";

    #[test]
    fn an_rsa_key_is_read_and_matched() {
        let rsa = key(RSA);
        assert_eq!(verdict(&one(&format!("h {RSA}\n")), "h", &rsa), Verdict::Match);
        assert_eq!(
            verdict(&one(&format!("h {ED_A}\n")), "h", &rsa),
            Verdict::Mismatch(at(1))
        );
    }

    fn key(text: &str) -> KeyData {
        PublicKey::from_openssh(text).unwrap().key_data().clone()
    }

    fn one(text: &str) -> Vec<(PathBuf, String)> {
        vec![(PathBuf::from("kh"), text.to_string())]
    }

    fn at(line: usize) -> Place {
        Place {
            file: PathBuf::from("kh"),
            line,
        }
    }

    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("|1|{}|{}", b64.encode(salt), b64.encode(hmac_sha1(&salt, name)))
    }

    #[test]
    fn the_rules_of_openssh() {
        let a = key(ED_A);
        let name = "web-01.example.com";
        let table: Vec<(&str, String, Verdict)> = vec![
            ("empty file", String::new(), Verdict::Unknown),
            (
                "comments and blank lines",
                format!("# {name} {ED_B}\n\n   \n"),
                Verdict::Unknown,
            ),
            ("exact name, same key", format!("{name} {ED_A}\n"), Verdict::Match),
            (
                "exact name, another key",
                format!("{name} {ED_B}\n"),
                Verdict::Mismatch(at(1)),
            ),
            (
                "another key type is a mismatch, not unknown",
                format!("{name} {ECDSA}\n"),
                Verdict::Mismatch(at(1)),
            ),
            (
                "names are case-insensitive",
                format!("WEB-01.Example.COM {ED_A}\n"),
                Verdict::Match,
            ),
            (
                "in a comma list",
                format!("db-01,{name},10.0.0.1 {ED_A}\n"),
                Verdict::Match,
            ),
            ("another host", format!("web-02.example.com {ED_B}\n"), Verdict::Unknown),
            (
                "a `*` pattern with another key",
                format!("*.example.com {ED_B}\n"),
                Verdict::Mismatch(at(1)),
            ),
            (
                "a `*` pattern with this key",
                format!("*.example.com {ED_A}\n"),
                Verdict::Match,
            ),
            (
                "a `?` pattern",
                format!("web-0?.example.com {ED_B}\n"),
                Verdict::Mismatch(at(1)),
            ),
            (
                "`?` is one character",
                format!("web-?.example.com {ED_B}\n"),
                Verdict::Unknown,
            ),
            (
                "a negated match makes the line not apply",
                format!("*.example.com,!web-01.example.com {ED_B}\n"),
                Verdict::Unknown,
            ),
            (
                "negation wins in any order",
                format!("!web-01.*,*.example.com {ED_A}\n"),
                Verdict::Unknown,
            ),
            (
                "a negation alone concerns nobody",
                format!("!db-* {ED_B}\n"),
                Verdict::Unknown,
            ),
            ("a hashed name", format!("{} {ED_A}\n", hashed(name)), Verdict::Match),
            (
                "a hashed name, another key",
                format!("{} {ED_B}\n", hashed(name)),
                Verdict::Mismatch(at(1)),
            ),
            (
                "another hashed name",
                format!("{} {ED_B}\n", hashed("web-02")),
                Verdict::Unknown,
            ),
            ("an RSA key", format!("{name} {RSA}\n"), Verdict::Mismatch(at(1))),
            (
                "a damaged hashed name is skipped",
                format!("|1|@@@|### {ED_B}\n"),
                Verdict::Unknown,
            ),
            (
                "the same key on a later line wins over another key (a rotation)",
                format!("{name} {ED_B}\n{name} {ED_A}\n"),
                Verdict::Match,
            ),
            (
                "the first mismatching line is named",
                format!("db {ED_A}\n{name} {ECDSA}\n{name} {ED_B}\n"),
                Verdict::Mismatch(at(2)),
            ),
            (
                "tabs and spaces",
                format!("\t{name}\t \t{ED_A} a comment\n"),
                Verdict::Match,
            ),
            (
                "a key that cannot be read is another key",
                format!("{name} ssh-future AAAAB3NzaC1yc2E\n"),
                Verdict::Mismatch(at(1)),
            ),
            (
                "@revoked with this key, whatever the host",
                format!("@revoked * {ED_A}\n"),
                Verdict::Revoked(at(1)),
            ),
            (
                "@revoked with this key for another host",
                format!("@revoked db-01 {ED_A}\n{name} {ED_A}\n"),
                Verdict::Revoked(at(1)),
            ),
            (
                "@revoked wins over a matching line",
                format!("{name} {ED_A}\n@revoked {name} {ED_A}\n"),
                Verdict::Revoked(at(2)),
            ),
            (
                "@revoked with another key says nothing",
                format!("@revoked {name} {ED_B}\n"),
                Verdict::Unknown,
            ),
            (
                "@cert-authority for the host",
                format!("@cert-authority *.example.com {ED_B}\n"),
                Verdict::CertAuthority(at(1)),
            ),
            (
                "@cert-authority and a plain line that accepts the key",
                format!("@cert-authority *.example.com {ED_B}\n{name} {ED_A}\n"),
                Verdict::Match,
            ),
            (
                "@cert-authority for another host",
                format!("@cert-authority *.example.org {ED_B}\n"),
                Verdict::Unknown,
            ),
            (
                "an unknown marker is skipped",
                format!("@future {name} {ED_B}\n"),
                Verdict::Unknown,
            ),
            ("a line without a key is skipped", format!("{name}\n"), Verdict::Unknown),
        ];
        for (what, text, want) in table {
            assert_eq!(verdict(&one(&text), name, &a), want, "{what}: {text}");
        }
    }

    #[test]
    fn names_hashed_by_ssh_keygen() {
        // `ssh-keygen -H` of "web-01.example.com ED_A" and "[10.0.0.1]:2222 ED_B".
        let text = format!(
            "|1|b+JzdUH4gVM2EzY5DGpq+cSPBOo=|C5C48M6OiDLSUFdze9rxieeCdgE= {ED_A}\n\
             |1|mT2YaxqY6w347KZ4uEd9+ARm0jU=|9cTkOXSVlrfKaz4VRbJ5j4K+8k4= {ED_B}\n"
        );
        let (a, b) = (key(ED_A), key(ED_B));
        assert_eq!(verdict(&one(&text), "web-01.example.com", &a), Verdict::Match);
        assert_eq!(verdict(&one(&text), "web-01.example.com", &b), Verdict::Mismatch(at(1)));
        assert_eq!(verdict(&one(&text), "[10.0.0.1]:2222", &b), Verdict::Match);
        assert_eq!(verdict(&one(&text), "[10.0.0.1]:2222", &a), Verdict::Mismatch(at(2)));
        assert_eq!(verdict(&one(&text), "10.0.0.1", &a), Verdict::Unknown);
    }

    #[test]
    fn ports_as_openssh_writes_them() {
        assert_eq!(lookup_name(None, "Web-01", 22), "web-01");
        assert_eq!(lookup_name(None, "10.0.0.1", 2222), "[10.0.0.1]:2222");
        assert_eq!(lookup_name(Some("Front"), "10.0.0.1", 2222), "front");
        let a = key(ED_A);
        let table = [
            ("[10.0.0.1]:2222", format!("[10.0.0.1]:2222 {ED_A}\n"), Verdict::Match),
            ("[10.0.0.1]:2222", format!("10.0.0.1 {ED_B}\n"), Verdict::Unknown),
            ("[10.0.0.1]:2222", format!("[10.0.0.1]:22 {ED_B}\n"), Verdict::Unknown),
            (
                "[10.0.0.1]:2222",
                format!("[10.0.0.*]:2222 {ED_B}\n"),
                Verdict::Mismatch(at(1)),
            ),
            (
                "[10.0.0.1]:2222",
                format!("{} {ED_B}\n", hashed("[10.0.0.1]:2222")),
                Verdict::Mismatch(at(1)),
            ),
            ("10.0.0.1", format!("[10.0.0.1]:2222 {ED_B}\n"), Verdict::Unknown),
            // `*` covers the brackets and the port too, as in OpenSSH.
            ("[10.0.0.1]:2222", format!("* {ED_B}\n"), Verdict::Mismatch(at(1))),
        ];
        for (name, text, want) in table {
            assert_eq!(verdict(&one(&text), name, &a), want, "{name}: {text}");
        }
    }

    #[test]
    fn every_file_counts_in_order() {
        let a = key(ED_A);
        let files = |user: &str, global: &str| {
            vec![
                (PathBuf::from("user"), user.to_string()),
                (PathBuf::from("global"), global.to_string()),
            ]
        };
        let global_line = Place {
            file: PathBuf::from("global"),
            line: 2,
        };
        // A mismatch in the global file is a mismatch.
        assert_eq!(
            verdict(&files("", &format!("db {ED_A}\nweb-* {ED_B}\n")), "web-01", &a),
            Verdict::Mismatch(global_line.clone())
        );
        // A match in one file and another key in the other: the match (a second key of the host).
        assert_eq!(
            verdict(
                &files(&format!("web-01 {ED_A}\n"), &format!("db {ED_A}\nweb-* {ED_B}\n")),
                "web-01",
                &a
            ),
            Verdict::Match
        );
        // A revocation in the global file wins over the user's match.
        assert_eq!(
            verdict(
                &files(&format!("web-01 {ED_A}\n"), &format!("#\n@revoked * {ED_A}\n")),
                "web-01",
                &a
            ),
            Verdict::Revoked(global_line)
        );
    }

    fn policy(dir: &Path, user: &[&str], learning: Learning) -> HostKeyPolicy {
        HostKeyPolicy {
            name: "web-01".into(),
            user_files: user.iter().map(|f| dir.join(f)).collect(),
            global_files: vec![dir.join("global")],
            learning,
            hash_names: false,
        }
    }

    #[test]
    fn learning_writes_one_line_and_checks_again_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let offered = PublicKey::from_openssh(ED_A).unwrap();
        let p = policy(dir.path(), &["sub/first", "second"], Learning::Allowed("test".into()));
        assert_eq!(p.check(&offered).unwrap(), Verdict::Unknown);
        // Into the first file, its folder created, on a line of its own.
        assert_eq!(
            p.learn(&offered).unwrap(),
            Recorded::Written(dir.path().join("sub/first"))
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/first")).unwrap(),
            format!("web-01 {ED_A}\n")
        );
        assert_eq!(p.check(&offered).unwrap(), Verdict::Match);
        assert_eq!(p.learn(&offered).unwrap(), Recorded::AlreadyThere);
        // A file without a final newline gets one before the new line.
        std::fs::write(dir.path().join("second"), format!("db {ED_B}")).unwrap();
        let p2 = HostKeyPolicy {
            user_files: vec![dir.path().join("second")],
            ..p.clone()
        };
        assert_eq!(
            p2.learn(&offered).unwrap(),
            Recorded::Written(dir.path().join("second"))
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("second")).unwrap(),
            format!("db {ED_B}\nweb-01 {ED_A}\n")
        );
        // A line written meanwhile (here: in the global file) is seen under the lock.
        let p3 = HostKeyPolicy {
            name: "web-02".into(),
            ..p.clone()
        };
        std::fs::write(dir.path().join("global"), format!("web-* {ED_B}\n")).unwrap();
        assert_eq!(
            p3.learn(&offered),
            Err(LearnError::Refused(Verdict::Mismatch(Place {
                file: dir.path().join("global"),
                line: 1
            })))
        );
        // No user file: trusted for the run, written nowhere.
        let none = policy(dir.path(), &[], Learning::Allowed("test".into()));
        assert_eq!(none.learn(&offered).unwrap(), Recorded::Nowhere);
        assert_eq!(none.describe_files(), dir.path().join("global").display().to_string());
    }

    #[test]
    fn writers_at_once_record_a_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let offered = PublicKey::from_openssh(ED_A).unwrap();
        let p = policy(dir.path(), &["kh"], Learning::Allowed("test".into()));
        let results: Vec<Recorded> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| p.learn(&offered).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| matches!(r, Recorded::Written(_))).count(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kh")).unwrap(),
            format!("web-01 {ED_A}\n")
        );
    }

    #[test]
    fn hashed_names_are_written_when_asked_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let offered = PublicKey::from_openssh(ED_A).unwrap();
        let p = HostKeyPolicy {
            hash_names: true,
            ..policy(dir.path(), &["kh"], Learning::Allowed("test".into()))
        };
        p.learn(&offered).unwrap();
        let text = std::fs::read_to_string(dir.path().join("kh")).unwrap();
        assert!(text.starts_with("|1|") && !text.contains("web-01"), "{text}");
        assert_eq!(p.check(&offered).unwrap(), Verdict::Match);
    }

    #[test]
    fn an_unreadable_user_file_is_an_error_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let offered = PublicKey::from_openssh(ED_A).unwrap();
        let p = policy(dir.path(), &["missing"], Learning::Refused);
        assert_eq!(p.check(&offered).unwrap(), Verdict::Unknown);
        // A folder where the file should be: it cannot be read.
        std::fs::create_dir(dir.path().join("missing")).unwrap();
        let err = p.check(&offered).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
    }

    #[test]
    fn glob_is_openssh_match_pattern() {
        for (s, p, want) in [
            ("abc", "abc", true),
            ("abc", "a*", true),
            ("abc", "*c", true),
            ("abc", "*", true),
            ("", "*", true),
            ("abc", "a?c", true),
            ("abc", "a?", false),
            ("abc", "*b*", true),
            ("aXbYc", "a*b*c", true),
            ("abc", "abcd", false),
            ("abcd", "abc", false),
            ("a.b.c", "*.c", true),
            ("ab", "a**b", true),
        ] {
            assert_eq!(glob(s.as_bytes(), p.as_bytes()), want, "{s} ~ {p}");
        }
    }
}
