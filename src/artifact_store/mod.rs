//! Pulling from an artifact store that wants credentials: an S3-compatible store through a URL
//! presigned for each run (AWS Signature Version 4, query string), or an HTTP server with basic
//! auth. Neither the presigned URL nor the password reaches a host's command line: both go to
//! `curl --config -` on the stage command's stdin ([`curl_config`]), so `ps` on the host, the
//! events, the journal and the terminal never see them.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::playbook::{S3Store, StoreAuth};

/// What the host's `curl` reads on stdin for an authenticated download, and what to redact.
pub struct Fetch {
    /// `curl` config-file text: `url = "..."` and, for basic auth, `user = "..."`.
    pub config: String,
    /// The presigned signature (a secret for the run's redactor too).
    pub signature: Option<String>,
}

/// The download of `url` (rendered for one host) with `auth`, at `now`.
pub fn fetch(url: &str, auth: &StoreAuth, now: time::OffsetDateTime) -> Result<Fetch, String> {
    match auth {
        StoreAuth::None => Ok(Fetch {
            config: curl_config(url, None),
            signature: None,
        }),
        StoreAuth::Basic { username, password } => Ok(Fetch {
            config: curl_config(url, Some(&format!("{username}:{password}"))),
            signature: None,
        }),
        StoreAuth::S3(s3) => {
            let (signed, signature) = presign(url, s3, now)?;
            Ok(Fetch {
                config: curl_config(&signed, None),
                signature: Some(signature),
            })
        }
    }
}

/// `curl` config-file text (the format of `curl --config`): each value in double quotes, with
/// `\` and `"` escaped. Values hold no line break (refused when the playbook loads).
pub fn curl_config(url: &str, user: Option<&str>) -> String {
    let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut c = format!("url = \"{}\"\n", q(url));
    if let Some(u) = user {
        c.push_str(&format!("user = \"{}\"\n", q(u)));
    }
    c
}

/// SigV4's encoding: every byte but the unreserved `A-Za-z0-9-._~` as `%XX` (and `/` kept when
/// `slash` says so, for a path).
fn aws_encode(s: &[u8], slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` sequences decoded (the URL in the playbook may be percent-encoded already).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && s.is_char_boundary(i + 3) {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A presigned GET of the object at `url` (path style: `http(s)://ENDPOINT/BUCKET/KEY`, or a
/// bucket's own host name), valid for `s3.expires` from `now`: the URL and its signature.
pub fn presign(url: &str, s3: &S3Store, now: time::OffsetDateTime) -> Result<(String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| "an S3 URL starts with http:// or https://".to_string())?;
    if rest.contains(['?', '#']) {
        return Err("an S3 URL has no query string nor fragment: tranche adds the signature".into());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') {
        return Err("an S3 URL names its endpoint, without credentials".into());
    }
    if path.len() <= 1 {
        return Err("an S3 URL names the object: http(s)://ENDPOINT/BUCKET/KEY".into());
    }
    // The Host header curl sends: without the scheme's default port.
    let host = match (scheme, authority.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
        _ => authority,
    };
    let path = aws_encode(&percent_decode(path), true);
    let creds = &s3.credentials;
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let amz_date = now
        .to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .map_err(|e| e.to_string())?;
    let day = &amz_date[..8];
    let scope = format!("{day}/{}/s3/aws4_request", s3.region);
    let mut query: Vec<(String, String)> = vec![
        ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
        ("X-Amz-Credential".into(), format!("{}/{scope}", creds.access_key)),
        ("X-Amz-Date".into(), amz_date.clone()),
        ("X-Amz-Expires".into(), s3.expires.as_secs().max(1).to_string()),
        ("X-Amz-SignedHeaders".into(), "host".into()),
    ];
    if let Some(t) = &creds.session_token {
        query.push(("X-Amz-Security-Token".into(), t.clone()));
    }
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                aws_encode(k.as_bytes(), false),
                aws_encode(v.as_bytes(), false)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!("GET\n{path}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", creds.secret_key).as_bytes(), day);
    for part in [s3.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    Ok((
        format!("{scheme}://{authority}{path}?{canonical_query}&X-Amz-Signature={signature}"),
        signature,
    ))
}

/// A file only this user can read, holding a download's `curl` config until the stage command
/// has read it from stdin; removed when dropped.
pub struct ConfigFile(PathBuf);

impl ConfigFile {
    pub fn write(text: &str) -> std::io::Result<ConfigFile> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = std::env::temp_dir();
        for _ in 0..16 {
            let path = dir.join(format!(
                "tranche-fetch-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match f {
                Ok(mut f) => {
                    let file = ConfigFile(path);
                    f.write_all(text.as_bytes())?;
                    return Ok(file);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free name for a temporary file"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::S3Credentials;
    use std::time::Duration;

    fn store(region: &str, secs: u64, token: Option<&str>) -> S3Store {
        S3Store {
            region: region.into(),
            expires: Duration::from_secs(secs),
            credentials: S3Credentials {
                access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                session_token: token.map(str::to_string),
            },
        }
    }

    #[test]
    fn presign_matches_the_aws_documentation_example() {
        // "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", the
        // example GET of examplebucket/test.txt valid 86400 s from 2013-05-24T00:00:00Z.
        let now = time::macros::datetime!(2013-05-24 00:00:00 UTC);
        let (url, sig) = presign(
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &store("us-east-1", 86400, None),
            now,
        )
        .unwrap();
        assert_eq!(sig, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn presign_keeps_a_port_drops_a_default_one_and_refuses_a_query() {
        let now = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        let s = store("eu-west-1", 300, Some("tok/en+="));
        let (a, _) = presign("http://127.0.0.1:9000/rel/a b.tar.zst", &s, now).unwrap();
        assert!(a.starts_with("http://127.0.0.1:9000/rel/a%20b.tar.zst?"), "{a}");
        assert!(
            a.contains("X-Amz-Security-Token=tok%2Fen%2B%3D&X-Amz-SignedHeaders=host"),
            "{a}"
        );
        assert!(a.contains("X-Amz-Expires=300&"), "{a}");
        // The default port is not in the Host header curl sends, so not in the signature.
        let (_, with) = presign("https://s3.example:443/rel/x", &s, now).unwrap();
        let (_, without) = presign("https://s3.example/rel/x", &s, now).unwrap();
        assert_eq!(with, without);
        assert!(presign("https://s3.example/rel/x?v=1", &s, now).is_err());
        assert!(presign("https://u:p@s3.example/rel/x", &s, now).is_err());
        assert!(presign("https://s3.example/", &s, now).is_err());
    }

    #[test]
    fn curl_config_quotes_its_values() {
        assert_eq!(
            curl_config("http://h/a", Some("dep\"loy:p\\w")),
            "url = \"http://h/a\"\nuser = \"dep\\\"loy:p\\\\w\"\n"
        );
        let f = ConfigFile::write("secret").unwrap();
        let mode = std::fs::metadata(f.path()).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        let p = f.path().to_path_buf();
        drop(f);
        assert!(!p.exists());
    }
}
