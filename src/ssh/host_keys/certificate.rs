//! Host certificates, as OpenSSH checks them against `@cert-authority` lines: signed by an
//! authority that a line names for this host, a host certificate, valid now, naming the host
//! among its principals (or naming none), no critical options, and neither the certificate's
//! key nor its authority `@revoked`.

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::HashAlg;
use russh::keys::Certificate;

use super::{concerns, decode_key, parse_line, HostKeyPolicy, Marker, Place};

/// What the known_hosts files say about a host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    /// Signed by an authority trusted for this host, and valid for it now.
    Trusted,
    /// The certificate's key or its authority is `@revoked` at this line.
    Revoked(Place),
    /// Signed by an authority trusted for this host, but not valid for it (the reason).
    Invalid(String),
    /// No `@cert-authority` line names its authority for this host: the key inside the
    /// certificate is then checked as a plain key, as OpenSSH does.
    NoAuthority,
}

impl HostKeyPolicy {
    /// Whether an `@cert-authority` line of the files concerns this host: then the client asks
    /// for host certificates first. A file that cannot be read counts as none.
    pub fn trusts_an_authority(&self) -> bool {
        let Ok(sources) = self.read_all() else {
            return false;
        };
        sources.iter().any(|(_, text)| {
            text.lines()
                .filter_map(parse_line)
                .any(|l| l.marker == Some(Marker::CertAuthority) && concerns(l.hosts, &self.name) == Some(true))
        })
    }

    /// The verdict of the files on `cert` at `now` (seconds since the epoch).
    pub fn check_certificate(&self, cert: &Certificate, now: u64) -> Result<CertVerdict, String> {
        let sources = self.read_all()?;
        let authority = cert.signature_key();
        let mut trusted = false;
        for (file, text) in &sources {
            for (i, raw) in text.lines().enumerate() {
                let Some(line) = parse_line(raw) else { continue };
                // Only marked lines matter to a certificate.
                if line.marker.is_none() {
                    continue;
                }
                let Some(key) = decode_key(line.key) else { continue };
                let key = &key;
                let place = || Place {
                    file: file.clone(),
                    line: i + 1,
                };
                match line.marker {
                    Some(Marker::Revoked) if key == cert.public_key() || key == authority => {
                        return Ok(CertVerdict::Revoked(place()))
                    }
                    Some(Marker::CertAuthority)
                        if key == authority && concerns(line.hosts, &self.name) == Some(true) =>
                    {
                        trusted = true
                    }
                    _ => {}
                }
            }
        }
        if !trusted {
            return Ok(CertVerdict::NoAuthority);
        }
        Ok(match problem(cert, authority, &principal(&self.name), now) {
            Some(why) => CertVerdict::Invalid(why),
            None => CertVerdict::Trusted,
        })
    }
}

/// The name a host certificate must list: the lookup name without `[` `]:port`.
fn principal(name: &str) -> String {
    match name.strip_prefix('[').and_then(|r| r.rsplit_once("]:")) {
        Some((host, _)) => host.to_string(),
        None => name.to_string(),
    }
}

/// Why `cert`, signed by `authority`, does not prove it is `host` at `now`.
fn problem(cert: &Certificate, authority: &KeyData, host: &str, now: u64) -> Option<String> {
    if cert.cert_type() != CertType::Host {
        return Some("it is a user certificate, not a host certificate".into());
    }
    let fingerprint = authority.fingerprint(HashAlg::Sha256);
    if cert.validate_at(now, [&fingerprint]).is_err() {
        return Some(if now < cert.valid_after() {
            "it is not valid yet".into()
        } else if now >= cert.valid_before() {
            "it has expired".into()
        } else {
            "its signature does not verify".into()
        });
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p.eq_ignore_ascii_case(host)) {
        return Some(format!("it names the principals {}, not {host}", principals.join(", ")));
    }
    if let Some((option, _)) = cert.critical_options().iter().next() {
        return Some(format!(
            "it carries the critical option `{option}`, which tranche does not know"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::ssh::host_keys::Learning;

    fn keygen(args: &[&str]) {
        let out = Command::new("ssh-keygen").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA, a host key and its certificate for `principals`, made by ssh-keygen in `dir`.
    fn signed(dir: &Path, principals: &str, validity: &str) -> (String, Certificate) {
        let (ca, host) = (dir.join("ca"), dir.join("host"));
        for f in [&ca, &host] {
            let _ = std::fs::remove_file(f);
            let _ = std::fs::remove_file(f.with_extension("pub"));
        }
        let _ = std::fs::remove_file(dir.join("host-cert.pub"));
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca.to_str().unwrap()]);
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", host.to_str().unwrap()]);
        let mut args = vec!["-q", "-s", ca.to_str().unwrap(), "-I", "h", "-h", "-V", validity];
        if !principals.is_empty() {
            args.extend(["-n", principals]);
        }
        args.push(host.to_str().unwrap());
        keygen(&args[..]);
        let ca_pub = std::fs::read_to_string(dir.join("ca.pub")).unwrap();
        let cert = Certificate::read_file(&dir.join("host-cert.pub")).unwrap();
        (ca_pub.trim().to_string(), cert)
    }

    fn policy(file: PathBuf, name: &str) -> HostKeyPolicy {
        HostKeyPolicy {
            name: name.into(),
            user_files: vec![file],
            global_files: vec![],
            learning: Learning::Refused,
            hash_names: false,
        }
    }

    #[test]
    fn host_certificates_are_checked_as_openssh_does() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (ca, cert) = signed(dir.path(), "web-01.example.com,web-01", "-5m:+1h");
        let check = |text: &str, name: &str| {
            std::fs::write(&kh, text).unwrap();
            policy(kh.clone(), name).check_certificate(&cert, now).unwrap()
        };
        let p = policy(kh.clone(), "web-01.example.com");
        std::fs::write(&kh, format!("@cert-authority *.example.com {ca}\n")).unwrap();
        assert!(p.trusts_an_authority());
        assert_eq!(
            check(&format!("@cert-authority *.example.com {ca}\n"), "web-01.example.com"),
            CertVerdict::Trusted
        );
        // Off port 22, the principal is the name without the brackets and port.
        assert_eq!(
            check(&format!("@cert-authority [web-01]:2222 {ca}\n"), "[web-01]:2222"),
            CertVerdict::Trusted
        );
        // The authority trusted for other hosts only, or a plain line with the CA's key: not trusted.
        assert_eq!(
            check(&format!("@cert-authority *.example.org {ca}\n"), "web-01.example.com"),
            CertVerdict::NoAuthority
        );
        assert_eq!(
            check(&format!("web-01.example.com {ca}\n"), "web-01.example.com"),
            CertVerdict::NoAuthority
        );
        std::fs::write(&kh, format!("web-01.example.com {ca}\n")).unwrap();
        assert!(!p.trusts_an_authority());
        // A name the certificate does not list.
        assert_eq!(
            check(&format!("@cert-authority * {ca}\n"), "db-01.example.com"),
            CertVerdict::Invalid("it names the principals web-01.example.com, web-01, not db-01.example.com".into())
        );
        // The authority revoked.
        assert_eq!(
            check(&format!("@cert-authority * {ca}\n@revoked * {ca}\n"), "web-01"),
            CertVerdict::Revoked(Place {
                file: kh.clone(),
                line: 2
            })
        );
        // Expired, and another authority's signature.
        let (ca, cert) = signed(dir.path(), "", "-2h:-1h");
        std::fs::write(&kh, format!("@cert-authority * {ca}\n")).unwrap();
        assert_eq!(
            policy(kh.clone(), "web-01").check_certificate(&cert, now).unwrap(),
            CertVerdict::Invalid("it has expired".into())
        );
        let (_, other) = signed(dir.path(), "", "-5m:+1h");
        assert_eq!(
            policy(kh.clone(), "web-01").check_certificate(&other, now).unwrap(),
            CertVerdict::NoAuthority
        );
    }
}
