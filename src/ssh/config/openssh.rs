//! The SSH config as the OpenSSH client itself resolves it: `ssh -G -F CONFIG [-l USER]
//! [-p PORT] HOST` prints every option's final value for a host, `Match`, `Include`,
//! `CanonicalizeHostname` and tokens in `HostName` included. One process per distinct host,
//! cached for the run and started a few at a time ([`OpenSsh::prefetch`]); values that are only
//! OpenSSH's defaults (as printed for an empty config) count as not set, so that the inventory
//! and tranche's flags keep their place under the config.
//!
//! Turned off with `TRANCHE_SSH_G=0`; not used when no `ssh` is on `PATH` or it rejects the
//! config (the built-in parser reads it then).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{Directives, HostSpec};

/// What is asked of `ssh -G`: the name as typed, and the user and port the inventory gives
/// (they decide `Match user`, `%r` and `%p`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

impl Query {
    pub fn of(spec: &HostSpec) -> Query {
        Query {
            host: spec.address.clone().unwrap_or_else(|| spec.name.clone()),
            user: spec.user.clone(),
            port: spec.port,
        }
    }
}

/// `ssh -G`'s answer: each option (lowercase) and its lines' values.
type Options = HashMap<String, Vec<String>>;

/// The OpenSSH client of a run and its answers so far.
pub struct OpenSsh {
    program: PathBuf,
    config: PathBuf,
    version: String,
    /// The answer for a host of an empty config: OpenSSH's defaults.
    defaults: Options,
    cache: Mutex<HashMap<Query, Result<Directives, String>>>,
}

impl std::fmt::Debug for OpenSsh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenSsh({})", self.describe())
    }
}

/// The name no config is expected to match, for the questions about the config as a whole.
const PROBE: &str = "tranche-probe.invalid";

impl OpenSsh {
    /// The OpenSSH client that resolves `config`. `Ok(None)`: turned off (`TRANCHE_SSH_G=0`) or
    /// no `ssh` on `PATH`; `Err`: `ssh -G` rejects the config (the reason).
    pub fn detect(config: &Path) -> Result<Option<OpenSsh>, String> {
        if std::env::var("TRANCHE_SSH_G").is_ok_and(|v| matches!(v.as_str(), "0" | "no" | "false" | "off")) {
            return Ok(None);
        }
        let program = PathBuf::from("ssh");
        let version = match Command::new(&program).arg("-V").stdin(Stdio::null()).output() {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr);
                let first = text.split([',', ' ', '\n']).next().unwrap_or("").trim().to_string();
                if !first.starts_with("OpenSSH") {
                    return Ok(None);
                }
                first
            }
            Err(_) => return Ok(None),
        };
        let defaults = run(&program, Path::new("/dev/null"), &probe())?;
        run(&program, config, &probe()).map_err(|e| format!("`ssh -G -F {}` fails: {e}", config.display()))?;
        Ok(Some(OpenSsh {
            program,
            config: config.to_path_buf(),
            version,
            defaults,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// For messages: "`ssh -G` (OpenSSH_9.2p1) on ~/.ssh/config".
    pub fn describe(&self) -> String {
        format!("`ssh -G` ({}) on {}", self.version, self.config.display())
    }

    /// The directives for `q`, asked once per run.
    pub fn query(&self, q: &Query) -> Result<Directives, String> {
        if let Some(hit) = self.cache.lock().expect("ssh -G cache").get(q) {
            return hit.clone();
        }
        let answer = run(&self.program, &self.config, q).map(|o| directives(&o, &self.defaults, q));
        self.cache
            .lock()
            .expect("ssh -G cache")
            .entry(q.clone())
            .or_insert(answer)
            .clone()
    }

    /// Ask about every query not yet cached, on a few threads at once (each `ssh -G` is a
    /// short CPU-bound process: twice the cores, at most 16).
    pub fn prefetch(&self, queries: Vec<Query>) {
        let todo: Vec<Query> = {
            let cache = self.cache.lock().expect("ssh -G cache");
            let mut seen = std::collections::HashSet::new();
            queries
                .into_iter()
                .filter(|q| !cache.contains_key(q) && seen.insert(q.clone()))
                .collect()
        };
        let workers = std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
            .clamp(1, 16)
            .min(todo.len());
        let queue = Mutex::new(todo);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(q) = queue.lock().expect("ssh -G queue").pop() else {
                        break;
                    };
                    let _ = self.query(&q);
                });
            }
        });
    }
}

fn probe() -> Query {
    Query {
        host: PROBE.to_string(),
        user: None,
        port: None,
    }
}

/// Run `ssh -G` for `q` on `config`.
fn run(program: &Path, config: &Path, q: &Query) -> Result<Options, String> {
    let mut cmd = Command::new(program);
    cmd.arg("-G").arg("-F").arg(config);
    if let Some(user) = &q.user {
        cmd.arg("-l").arg(user);
    }
    if let Some(port) = q.port {
        cmd.arg("-p").arg(port.to_string());
    }
    let out = cmd
        .arg("--")
        .arg(&q.host)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ssh -G: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Pseudo-terminal"))
            .collect();
        return Err(said.join("; "));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// `ssh -G`'s output: `option value` lines; an option given several times (IdentityFile) has
/// several lines.
fn parse(text: &str) -> Options {
    let mut options = Options::new();
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        options
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
    }
    options
}

/// The directives of an answer: what differs from OpenSSH's defaults, and never the user or
/// port the inventory gave (it wins anyway).
fn directives(o: &Options, defaults: &Options, q: &Query) -> Directives {
    let first = |key: &str| o.get(key).and_then(|v| v.first()).cloned();
    let set = |key: &str| first(key).filter(|v| Some(v) != defaults.get(key).and_then(|d| d.first()));
    let all = |key: &str| -> Vec<String> { o.get(key).cloned().unwrap_or_default() };
    let changed_list = |key: &str| -> Vec<String> {
        let list = all(key);
        if Some(&list) == defaults.get(key) {
            Vec::new()
        } else {
            list
        }
    };
    // Lists on one line, space-separated (OpenSSH prints them unquoted).
    let files = |key: &str| set(key).map(|v| v.split(' ').map(str::to_string).collect::<Vec<_>>());
    let hostname = first("hostname").filter(|h| !h.eq_ignore_ascii_case(&q.host));
    Directives {
        hostname,
        user: if q.user.is_some() { None } else { set("user") },
        port: if q.port.is_some() {
            None
        } else {
            set("port").and_then(|p| p.parse().ok())
        },
        identity_files: changed_list("identityfile"),
        certificate_files: all("certificatefile"),
        proxy_command: first("proxycommand").filter(|c| !c.eq_ignore_ascii_case("none")),
        proxy_jump: first("proxyjump").filter(|j| !j.eq_ignore_ascii_case("none")),
        user_known_hosts: files("userknownhostsfile"),
        global_known_hosts: files("globalknownhostsfile"),
        // OpenSSH prints `yes` and `no` as true and false.
        strict_host_key_checking: set("stricthostkeychecking").map(|v| match v.as_str() {
            "true" => "yes".to_string(),
            "false" => "no".to_string(),
            _ => v,
        }),
        host_key_alias: first("hostkeyalias").filter(|a| !a.eq_ignore_ascii_case("none")),
        hash_known_hosts: set("hashknownhosts").map(|v| v == "yes"),
        // Seconds, or `none` (OpenSSH's default: the system's TCP timeout).
        connect_timeout: first("connecttimeout")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map(std::time::Duration::from_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(host: &str) -> Query {
        Query {
            host: host.into(),
            user: None,
            port: None,
        }
    }

    const DEFAULTS: &str = "user me\nhostname tranche-probe.invalid\nport 22\nidentityfile ~/.ssh/id_rsa\nidentityfile ~/.ssh/id_ed25519\nstricthostkeychecking ask\nhashknownhosts no\nuserknownhostsfile /home/me/.ssh/known_hosts /home/me/.ssh/known_hosts2\nglobalknownhostsfile /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2\nconnecttimeout none\n";

    #[test]
    fn defaults_count_as_not_set() {
        let defaults = parse(DEFAULTS);
        let same = DEFAULTS.replace("tranche-probe.invalid", "web-01");
        assert_eq!(
            directives(&parse(&same), &defaults, &q("Web-01")),
            Directives::default()
        );
    }

    #[test]
    fn what_the_config_sets_is_taken() {
        let defaults = parse(DEFAULTS);
        let out = "user deploy\nhostname 10.0.0.5\nport 2222\nidentityfile ~/k/%h\ncertificatefile ~/k/%h-cert.pub\ncertificatefile /c2\nproxycommand nc -X 5 %h %p\nstricthostkeychecking true\nhashknownhosts yes\nhostkeyalias front\nuserknownhostsfile /kh/a /kh/b\nglobalknownhostsfile /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2\nconnecttimeout 4\n";
        let d = directives(&parse(out), &defaults, &q("web-01"));
        assert_eq!(
            d,
            Directives {
                hostname: Some("10.0.0.5".into()),
                user: Some("deploy".into()),
                port: Some(2222),
                identity_files: vec!["~/k/%h".into()],
                certificate_files: vec!["~/k/%h-cert.pub".into(), "/c2".into()],
                proxy_command: Some("nc -X 5 %h %p".into()),
                proxy_jump: None,
                user_known_hosts: Some(vec!["/kh/a".into(), "/kh/b".into()]),
                global_known_hosts: None,
                strict_host_key_checking: Some("yes".into()),
                host_key_alias: Some("front".into()),
                hash_known_hosts: Some(true),
                connect_timeout: Some(std::time::Duration::from_secs(4)),
            }
        );
        // The inventory's user and port were given to ssh -G: not taken back from it.
        let given = Query {
            user: Some("deploy".into()),
            port: Some(2222),
            ..q("web-01")
        };
        let d = directives(&parse(out), &defaults, &given);
        assert_eq!((d.user, d.port), (None, None));
    }

    /// Against the OpenSSH client of this machine, when there is one: `Match`, `%h` in
    /// `HostName` and `Match user` with the inventory's user, none of which the built-in
    /// parser reads.
    #[test]
    fn the_openssh_client_resolves_match_and_tokens() {
        if Command::new("ssh").arg("-V").output().is_err() {
            eprintln!("no OpenSSH client: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "Host web-*\n  HostName %h.internal\n  ProxyCommand nc %h %p\n\nMatch user ops\n  Port 2200\n  CertificateFile ~/.ssh/ops-cert.pub\n",
        )
        .unwrap();
        let ssh = OpenSsh::detect(&config).unwrap().expect("an OpenSSH client");
        assert!(ssh.describe().starts_with("`ssh -G` (OpenSSH_"), "{}", ssh.describe());
        let d = ssh.query(&q("web-01")).unwrap();
        assert_eq!(d.hostname.as_deref(), Some("web-01.internal"));
        assert_eq!(d.proxy_command.as_deref(), Some("nc %h %p"));
        assert_eq!((d.port, d.certificate_files.len()), (None, 0));
        let ops = Query {
            user: Some("ops".into()),
            ..q("db-01")
        };
        ssh.prefetch(vec![ops.clone(), q("web-01"), ops.clone()]);
        let d = ssh.query(&ops).unwrap();
        assert_eq!(d.port, Some(2200));
        assert_eq!(d.certificate_files, ["~/.ssh/ops-cert.pub"]);
        assert_eq!(ssh.cache.lock().unwrap().len(), 2);

        // A config OpenSSH rejects is said to be rejected.
        std::fs::write(&config, "Host x\n  NoSuchOption 1\n").unwrap();
        let e = OpenSsh::detect(&config).unwrap_err();
        assert!(
            e.contains("NoSuchOption") || e.contains("Bad configuration option"),
            "{e}"
        );
    }
}
