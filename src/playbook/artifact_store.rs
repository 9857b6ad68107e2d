//! The artifact's format (`.tar.gz` or `.tar.zst`) and the credentials of the store a pulled
//! artifact comes from (`artifact.basic_auth`, `artifact.s3`): their model and their decoding.
//! The credentials never reach a host's command line: see `crate::artifact_store`.

use std::time::Duration;

use super::decoder::{Decoder, Map};
use super::ArtifactSource;

/// How the artifact is compressed: it decides the program that unpacks it on the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArtifactFormat {
    /// `tar -xzf`: every host has it.
    #[default]
    TarGz,
    /// `zstd -dc | tar -xf -`: only hosts with `zstd`, checked at preflight.
    TarZst,
}

impl ArtifactFormat {
    /// The format a file name or URL says: `.tar.zst` and `.tzst` are zstd, anything else gzip.
    pub fn of_name(name: &str) -> ArtifactFormat {
        let path = name.split(['?', '#']).next().unwrap_or(name).to_ascii_lowercase();
        if path.ends_with(".tar.zst") || path.ends_with(".tzst") {
            ArtifactFormat::TarZst
        } else {
            ArtifactFormat::TarGz
        }
    }

    /// The name of the format in the playbook and for `stage.sh` (`tar.gz`, `tar.zst`).
    pub fn name(self) -> &'static str {
        match self {
            ArtifactFormat::TarGz => "tar.gz",
            ArtifactFormat::TarZst => "tar.zst",
        }
    }

    /// The program a host needs to unpack it, beyond `tar` and `gzip`.
    pub fn needs(self) -> Option<&'static str> {
        match self {
            ArtifactFormat::TarGz => None,
            ArtifactFormat::TarZst => Some("zstd"),
        }
    }
}

/// The credentials of the store a pulled artifact comes from. They are secrets: never shown,
/// never on a host's command line, and `Debug` hides them.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum StoreAuth {
    /// A plain URL (a mirror that needs no credentials).
    #[default]
    None,
    /// `artifact.basic_auth: {username, password}`, rendered from the controller's environment.
    Basic { username: String, password: String },
    /// `artifact.s3`: the URL is an S3 object (path style), presigned for each run with the
    /// controller's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    S3(S3Store),
}

impl std::fmt::Debug for StoreAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAuth::None => f.write_str("None"),
            StoreAuth::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, password: *** }}"),
            StoreAuth::S3(s) => write!(
                f,
                "S3 {{ region: {:?}, expires: {:?}, access_key: {:?}, secret: *** }}",
                s.region, s.expires, s.credentials.access_key
            ),
        }
    }
}

impl StoreAuth {
    /// The kind, for the plan and messages: never a value.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            StoreAuth::None => None,
            StoreAuth::Basic { .. } => Some("basic_auth"),
            StoreAuth::S3(_) => Some("s3"),
        }
    }

    /// The values to redact everywhere (the username and the access key id are not secrets).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            StoreAuth::None => vec![],
            StoreAuth::Basic { password, .. } => vec![password.clone()],
            StoreAuth::S3(s) => {
                let mut v = vec![s.credentials.secret_key.clone()];
                v.extend(s.credentials.session_token.iter().cloned());
                v
            }
        }
    }
}

/// `artifact.s3`.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Store {
    /// The signing region (`us-east-1` unless said).
    pub region: String,
    /// How long a presigned URL is valid: short, the time a run's stage takes.
    pub expires: Duration,
    pub credentials: S3Credentials,
}

/// Read from the controller's environment when the playbook loads, never from the playbook.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl S3Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, when set, `AWS_SESSION_TOKEN`; the
    /// names of the missing ones otherwise.
    pub fn from_env() -> Result<S3Credentials, Vec<&'static str>> {
        let get = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let (a, s) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"));
        match (a, s) {
            (Some(access_key), Some(secret_key)) => Ok(S3Credentials {
                access_key,
                secret_key,
                session_token: get("AWS_SESSION_TOKEN"),
            }),
            (a, s) => {
                let mut missing = Vec::new();
                if a.is_none() {
                    missing.push("AWS_ACCESS_KEY_ID");
                }
                if s.is_none() {
                    missing.push("AWS_SECRET_ACCESS_KEY");
                }
                Err(missing)
            }
        }
    }
}

/// The longest a presigned URL may be valid (SigV4's own limit is 7 days).
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);
/// `artifact.s3.expires` when the playbook leaves it out.
pub const DEFAULT_PRESIGN: Duration = Duration::from_secs(15 * 60);

/// What `artifact` says beyond its source and checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArtifactStore {
    pub format: ArtifactFormat,
    pub auth: StoreAuth,
}

impl ArtifactStore {
    /// The programs a host needs to stage this artifact beyond a POSIX shell, `tar`, `gzip`
    /// and a downloader: `zstd` for `.tar.zst`, `curl` for credentials (it reads them on stdin).
    pub fn needs(&self) -> Vec<&'static str> {
        let mut n: Vec<&'static str> = self.format.needs().into_iter().collect();
        if self.auth != StoreAuth::None {
            n.push("curl");
        }
        n
    }
}

/// The keys of `artifact` this file decodes.
pub(super) const KEYS: [&str; 3] = ["format", "basic_auth", "s3"];

impl Decoder<'_> {
    /// `artifact.format`, `artifact.basic_auth` and `artifact.s3`, given the decoded source.
    pub(super) fn artifact_store(&mut self, m: &Map, source: Option<&ArtifactSource>) -> Option<ArtifactStore> {
        let named = match source {
            Some(ArtifactSource::Path(p)) => ArtifactFormat::of_name(&p.to_string_lossy()),
            Some(ArtifactSource::Url(t)) => ArtifactFormat::of_name(&t.source),
            Some(ArtifactSource::Image(_)) | None => ArtifactFormat::TarGz,
        };
        let format = match m.get("format") {
            None => Some(named),
            Some(n) => match self.string(n, "artifact.format")?.as_str() {
                "tar.gz" | "tgz" => Some(ArtifactFormat::TarGz),
                "tar.zst" | "tzst" => Some(ArtifactFormat::TarZst),
                other => {
                    self.error_hint(
                        n,
                        format!(
                            "`artifact.format` \"{}\" is not a format tranche unpacks",
                            other.escape_debug()
                        ),
                        "`tar.gz` or `tar.zst` (by default, the file name's ending decides)",
                    );
                    None
                }
            },
        };
        let pulled = matches!(source, Some(ArtifactSource::Url(_)));
        let auth = match (m.get("basic_auth"), m.get("s3")) {
            (None, None) => Some(StoreAuth::None),
            (Some(_), Some(s)) => {
                self.error(s, "`artifact` takes `basic_auth` or `s3`, not both");
                None
            }
            (Some(b), None) if !pulled => {
                self.error_hint(
                    b,
                    "`artifact.basic_auth` needs `artifact.url`",
                    "a pushed `path` needs no credentials",
                );
                None
            }
            (None, Some(s)) if !pulled => {
                self.error_hint(
                    s,
                    "`artifact.s3` needs `artifact.url`",
                    "the URL of the object, path style: `https://ENDPOINT/BUCKET/KEY`",
                );
                None
            }
            (Some(b), None) => self.artifact_basic_auth(b),
            (None, Some(s)) => self.artifact_s3(s),
        };
        if let (Some(StoreAuth::Basic { .. } | StoreAuth::S3(_)), Some(ArtifactSource::Url(t)), Some(u)) =
            (&auth, source, m.get("url"))
        {
            let rest = t.source.split_once("://").map_or(t.source.as_str(), |(_, r)| r);
            if rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].contains('@') {
                self.error_hint(
                    u,
                    "`artifact.url` carries credentials, and `artifact` sets them too",
                    "keep them out of the URL: hosts get `basic_auth` and S3 signatures on stdin, never on a command line",
                );
            }
        }
        Some(ArtifactStore {
            format: format?,
            auth: auth?,
        })
    }

    fn artifact_basic_auth(&mut self, b: &crate::yaml::Node) -> Option<StoreAuth> {
        let what = "artifact.basic_auth";
        let bm = self.map(b, what, &["username", "password"])?;
        let username = self
            .required(&bm, "username", what)
            .and_then(|n| self.credential(n, "artifact.basic_auth.username"));
        let password = self
            .required(&bm, "password", what)
            .and_then(|n| self.env_password(n, "artifact.basic_auth.password", "ARTIFACT_PASSWORD"));
        let (username, password) = (username?, password?);
        if username.contains(['\n', '\r']) || password.contains(['\n', '\r']) {
            self.error(b, "`artifact.basic_auth` holds a line break");
            return None;
        }
        Some(StoreAuth::Basic { username, password })
    }

    fn artifact_s3(&mut self, s: &crate::yaml::Node) -> Option<StoreAuth> {
        let what = "artifact.s3";
        let sm = self.map(s, what, &["region", "expires"])?;
        let region = match sm.get("region") {
            Some(n) => {
                let r = self.string(n, "artifact.s3.region")?;
                if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    self.error(
                        n,
                        format!("`artifact.s3.region` \"{}\" is not a region name", r.escape_debug()),
                    );
                    return None;
                }
                r
            }
            None => "us-east-1".to_string(),
        };
        let expires = match sm.get("expires") {
            Some(n) => {
                let d = self.duration(n, "artifact.s3.expires", MAX_PRESIGN)?;
                if d < Duration::from_secs(1) {
                    self.error(n, "`artifact.s3.expires` must be at least 1s");
                    return None;
                }
                d
            }
            None => DEFAULT_PRESIGN,
        };
        let credentials = match S3Credentials::from_env() {
            Ok(c) => c,
            Err(missing) => {
                self.error_hint(
                    s,
                    format!("`artifact.s3` needs {} in the environment", missing.join(" and ")),
                    "S3 credentials are read from the controller's environment only, never from the playbook",
                );
                return None;
            }
        };
        Some(StoreAuth::S3(S3Store {
            region,
            expires,
            credentials,
        }))
    }
}
