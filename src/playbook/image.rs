//! `artifact: {image: ...}`: a container image as the artifact, pinned by digest, pulled by each
//! host with its container runtime and run with the options the playbook gives.
//!
//! Every value here is hostile: it reaches a host only as an argument of the constant script
//! `src/remote/image.sh`, quoted once by `remote::quote`; names and options are checked here so
//! that none can be read as an option of the runtime it is not meant to be.

use super::decoder::{Decoder, Map};
use super::Template;
use crate::yaml::Node;

/// Which container runtime runs the image on the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Whichever the host has: podman, else docker (checked at preflight).
    Auto,
    Podman,
    Docker,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Auto => "auto",
            Runtime::Podman => "podman",
            Runtime::Docker => "docker",
        }
    }
}

/// The image and how it runs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The repository, without tag nor digest: `registry.internal:5000/demo`.
    pub name: String,
    /// The tag the playbook wrote, shown only (the digest decides what runs).
    pub tag: Option<String>,
    /// `sha256:` and 64 lowercase hexadecimal digits.
    pub digest: String,
    pub runtime: Runtime,
    /// Options of the runtime itself, before its command (`--root DIR`, `--host URL`).
    pub runtime_args: Vec<String>,
    /// Pull over plain HTTP or without checking the registry's certificate (podman's
    /// `--tls-verify=false`; docker decides that in its daemon's `insecure-registries`).
    pub insecure: bool,
    /// `run` of the default start: published ports (`8080:80`), `-e` variables (templates,
    /// rendered per host; `{{ env.X }}` values are secrets), volumes (`/data:/data:ro`), the
    /// network (`host`), further `run` options, and the command after the image.
    pub ports: Vec<String>,
    pub env: Vec<(String, Template)>,
    pub volumes: Vec<String>,
    pub network: Option<String>,
    pub run_args: Vec<String>,
    pub command: Vec<Template>,
    /// `login: {username, password}`: the registry's credentials for the pull (the password
    /// from the controller's environment, a secret); none: the hosts pull as they are.
    pub login: Option<RegistryLogin>,
}

/// The credentials of `artifact.login`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl Image {
    /// The registry of the image: the name's first part (`registry.internal:5000`).
    pub fn registry(&self) -> &str {
        self.name.split('/').next().unwrap_or(&self.name)
    }
}

impl Image {
    /// What runs: `NAME@sha256:...`.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }

    /// The digest's 64 hexadecimal digits (what the host records, as a tarball's sha256).
    pub fn digest_hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// How plans and reports show it: `NAME:TAG@sha256:0123456789ab` (12 digits).
    pub fn short(&self) -> String {
        let tag = self.tag.as_deref().map(|t| format!(":{t}")).unwrap_or_default();
        format!("{}{tag}@sha256:{}", self.name, &self.digest_hex()[..12])
    }

    /// Every template the image brings (checked per host and scanned for secrets).
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.env.iter().map(|(_, t)| t).chain(self.command.iter())
    }
}

/// A reference split: (repository, tag, digest). `None` with the reason when it is not one.
pub fn parse_reference(s: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (s, None),
    };
    // A tag is after the last `:` that comes after the last `/` (a registry's port is not one).
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err("has no repository name".into());
    }
    if let Some(c) = name.chars().find(|c| !name_char_ok(*c)) {
        return Err(format!(
            "has `{}` in its name (allowed: a-z 0-9 . _ - / : and a port)",
            c.escape_debug()
        ));
    }
    if name.starts_with(['-', '.', '/', ':']) || name.ends_with(['/', ':']) || name.contains("//") {
        return Err("is not a repository name".into());
    }
    if let Some(t) = &tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(format!("has the tag \"{}\", which is not a tag", t.escape_debug()));
        }
    }
    let digest = match digest {
        Some(d) => Some(check_digest(&d)?),
        None => None,
    };
    Ok((name.to_string(), tag, digest))
}

fn name_char_ok(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c)
}

/// `sha256:` and 64 hexadecimal digits, lowercased; the reason otherwise.
pub fn check_digest(d: &str) -> Result<String, String> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest \"{}\" must start with `sha256:`", d.escape_debug()))?;
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    } else {
        Err(format!(
            "digest \"{}\" must be `sha256:` and 64 hexadecimal digits",
            d.escape_debug()
        ))
    }
}

/// A list of plain options (`ports`, `volumes`, `runtime_args`, `run_args`): strings without
/// control characters; `starts_dash`: whether a value may start with `-` (an option itself).
fn check_word(s: &str, starts_dash: bool) -> Option<String> {
    if s.chars().any(|c| c.is_control()) {
        return Some("holds a control character".into());
    }
    if !starts_dash && s.starts_with('-') {
        return Some("starts with `-` (it would be read as an option)".into());
    }
    None
}

pub(super) const IMAGE_KEYS: &[&str] = &[
    "image",
    "digest",
    "runtime",
    "runtime_args",
    "insecure",
    "ports",
    "env",
    "volumes",
    "network",
    "run_args",
    "command",
    "login",
];

impl Decoder<'_> {
    /// `artifact: {image: ..., ...}` (the mapping `m` of `artifact`, `node` its node).
    pub(super) fn image_artifact(&mut self, m: &Map, node: &Node) -> Option<Image> {
        let image_node = m.get("image")?;
        let s = self.string(image_node, "artifact.image")?;
        let (name, tag, digest) = match parse_reference(s.trim()) {
            Ok(r) => r,
            Err(why) => {
                self.error_hint(
                    image_node,
                    format!("`artifact.image` \"{}\" {why}", s.escape_debug()),
                    "e.g. `image: registry.internal:5000/demo:2.0.0@sha256:<64 hex digits>`",
                );
                return None;
            }
        };
        let given = match m.get("digest") {
            Some(n) => {
                let d = self.string(n, "artifact.digest")?;
                match check_digest(d.trim()) {
                    Ok(d) => Some((d, n)),
                    Err(why) => {
                        self.error_hint(
                            n,
                            format!("`artifact.digest`: {why}"),
                            "the digest `podman push --digestfile` or `docker inspect` prints",
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        let digest = match (digest, given) {
            (Some(a), Some((b, n))) if a != b => {
                self.error_hint(
                    n,
                    format!("`artifact.digest` {b} differs from the digest in `artifact.image` ({a})"),
                    "give the digest once, in the image (`NAME@sha256:...`) or in `digest:`",
                );
                return None;
            }
            (Some(a), _) => a,
            (None, Some((b, _))) => b,
            (None, None) => {
                self.error_hint(
                    image_node,
                    format!("`artifact.image` \"{}\" is not pinned by digest", s.escape_debug()),
                    "a tag can move: write `NAME:TAG@sha256:...` or add `digest: sha256:...`, so that what runs is exactly what was planned",
                );
                return None;
            }
        };
        let runtime = match m.get("runtime") {
            None => Runtime::Auto,
            Some(n) => match self.string(n, "artifact.runtime")?.as_str() {
                "podman" => Runtime::Podman,
                "docker" => Runtime::Docker,
                "auto" => Runtime::Auto,
                other => {
                    self.error_hint(
                        n,
                        format!(
                            "`artifact.runtime` must be podman or docker, not \"{}\"",
                            other.escape_debug()
                        ),
                        "leave it out to use whichever the host has (podman first)",
                    );
                    return None;
                }
            },
        };
        let insecure = match m.get("insecure") {
            None => false,
            Some(n) => match n.to_json().as_bool() {
                Some(b) => b,
                None => {
                    self.error(n, "`artifact.insecure` must be true or false");
                    return None;
                }
            },
        };
        let mut ok = true;
        let mut words = |d: &mut Self, key: &str, dash: bool| -> Vec<String> {
            let Some(n) = m.get(key) else { return Vec::new() };
            let what = format!("artifact.{key}");
            let Some(items) = n.as_seq() else {
                d.error(n, format!("`{what}` must be a list of strings, not {}", n.type_name()));
                ok = false;
                return Vec::new();
            };
            let mut out = Vec::new();
            for it in items {
                match d.string(it, &what) {
                    Some(s) => match check_word(&s, dash) {
                        Some(why) => {
                            d.error(it, format!("`{what}` \"{}\" {why}", s.escape_debug()));
                            ok = false;
                        }
                        None => out.push(s),
                    },
                    None => ok = false,
                }
            }
            out
        };
        let runtime_args = words(self, "runtime_args", true);
        let ports = words(self, "ports", false);
        let volumes = words(self, "volumes", false);
        let run_args = words(self, "run_args", true);
        let network = match m.get("network") {
            None => None,
            Some(n) => {
                let s = self.string(n, "artifact.network")?;
                if let Some(why) = check_word(&s, false) {
                    self.error(n, format!("`artifact.network` \"{}\" {why}", s.escape_debug()));
                    return None;
                }
                Some(s)
            }
        };
        let mut env = Vec::new();
        if let Some(n) = m.get("env") {
            match n.as_map() {
                Some(entries) => {
                    for (k, v) in entries {
                        let key = k.scalar().unwrap_or("");
                        let valid = !key.is_empty()
                            && !key.starts_with(|c: char| c.is_ascii_digit())
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if !valid {
                            self.error_hint(
                                k,
                                format!("`artifact.env` key \"{}\" is not a variable name", key.escape_debug()),
                                "names are letters, digits and `_`, not starting with a digit",
                            );
                            ok = false;
                            continue;
                        }
                        match self.template(v, &format!("artifact.env.{key}"), false) {
                            Some(t) => env.push((key.to_string(), t)),
                            None => ok = false,
                        }
                    }
                }
                None => {
                    self.error(n, format!("`artifact.env` must be a mapping, not {}", n.type_name()));
                    ok = false;
                }
            }
        }
        let mut command = Vec::new();
        if let Some(n) = m.get("command") {
            match n.as_seq() {
                Some(items) => {
                    for it in items {
                        match self.template(it, "artifact.command", false) {
                            Some(t) => command.push(t),
                            None => ok = false,
                        }
                    }
                }
                None => {
                    self.error_hint(
                        n,
                        format!("`artifact.command` must be a list, not {}", n.type_name()),
                        "one item per word: `command: [httpd, -f, -p, \"{{ host.address }}:8080\"]`",
                    );
                    ok = false;
                }
            }
        }
        let login = match m.get("login") {
            None => None,
            Some(n) => match self.registry_login(n) {
                Some(l) => Some(l),
                None => return None,
            },
        };
        let _ = node;
        if !ok {
            return None;
        }
        Some(Image {
            name,
            tag,
            digest,
            runtime,
            runtime_args,
            insecure,
            ports,
            env,
            volumes,
            network,
            run_args,
            command,
            login,
        })
    }

    /// `artifact.login: {username, password}`; the password from the environment.
    fn registry_login(&mut self, n: &Node) -> Option<RegistryLogin> {
        let what = "artifact.login";
        let lm = self.map(n, what, &["username", "password"])?;
        let username = self
            .required(&lm, "username", what)
            .and_then(|u| self.credential(u, "artifact.login.username"));
        let password = self
            .required(&lm, "password", what)
            .and_then(|p| self.env_password(p, "artifact.login.password", "REGISTRY_PASSWORD"));
        let (username, password) = (username?, password?);
        if let Some(why) = check_word(&username, false) {
            self.error(n, format!("`artifact.login.username` {why}"));
            return None;
        }
        if password.contains(['\n', '\r']) {
            self.error(n, "`artifact.login.password` holds a line break");
            return None;
        }
        Some(RegistryLogin { username, password })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:a6f64eca8dbff1ae2f7b80f966dd87af38f129ac78d1e915a2c4870879da0bc0";

    #[test]
    fn references_split_into_name_tag_and_digest() {
        let (n, t, d) = parse_reference(&format!("127.0.0.1:5000/team/demo:2.0.0@{D}")).unwrap();
        assert_eq!(n, "127.0.0.1:5000/team/demo");
        assert_eq!(t.as_deref(), Some("2.0.0"));
        assert_eq!(d.as_deref(), Some(D));
        // The registry's port is not a tag.
        let (n, t, d) = parse_reference("registry.internal:5000/demo").unwrap();
        assert_eq!((n.as_str(), t, d), ("registry.internal:5000/demo", None, None));
    }

    #[test]
    fn hostile_references_are_refused() {
        for bad in [
            "demo;rm -rf /",
            "-demo:1",
            "demo:1 --privileged",
            "Demo:1",
            "demo:$(id)",
            &format!("demo@{}", &D[..20]),
            "demo@md5:0123",
            "demo:..",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn words_that_would_be_options_are_refused_where_they_are_values() {
        assert!(check_word("--privileged", false).is_some());
        assert!(check_word("8080:80", false).is_none());
        assert!(check_word("--root=/srv/c", true).is_none());
        assert!(check_word("a\nb", true).is_some());
    }
}
