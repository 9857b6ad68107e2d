//! A scripted fleet for the offline scenarios: hosts that answer each kind of command (the
//! remote scripts, the playbook's commands, registry calls) from a script, with delays,
//! failures and connections that go away, and remember what `current` points to. Time is
//! tokio's: with a paused clock, delays and timeouts pass at once.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Connector, GateProbe, Registrar};
use crate::inventory::Host;
use crate::playbook::Gate;
use crate::registry::RegistryError;
use crate::remote::{ExecOutput, RemoteCommand, RemoteError, RemoteFuture, RemoteHost};

/// What a host is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Connect,
    Preflight,
    Hash,
    Upload,
    Stage,
    Switch,
    Lock,
    Stop,
    Kill,
    Start,
    Health,
    Deregister,
    Register,
    /// An append to (or a read of) the host's `.tranche-history`.
    History,
    /// Any other command (hooks).
    Other,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Exit 0 (with the output the kind normally prints).
    Ok,
    /// Exit with this status and this stderr.
    Exit(u32, &'static str),
    /// The operation fails on the way (a channel error).
    Error(&'static str),
    /// The connection goes away: this and every later operation on the host fail.
    Gone,
    /// Never answers (the operation's timeout ends it).
    Hang,
}

/// What one host is and will answer.
#[derive(Debug, Default)]
pub struct HostModel {
    pub current: Option<String>,
    pub releases: Vec<String>,
    /// The sha256 recorded in the release's folder when the target is already staged.
    pub staged: Option<String>,
    pub gone: bool,
    /// The health check fails while `current` is this release.
    pub unhealthy_on: Option<String>,
    /// Answers per kind, used up in order; once a kind's queue is empty it answers `Ok`.
    pub script: HashMap<Kind, VecDeque<Answer>>,
    /// How long each kind of operation takes.
    pub delay: HashMap<Kind, Duration>,
}

/// Every operation the fleet saw: host, kind, and for a switch the version it went to (for a
/// history append: the line's operator, controller, versions and outcome).
pub type Log = Arc<Mutex<Vec<(String, Kind, String)>>>;

/// The scripted hosts, shared by the connector, every host handle and the registrar.
#[derive(Clone, Default)]
pub struct FakeFleet {
    hosts: Arc<Mutex<HashMap<String, HostModel>>>,
    pub log: Log,
}

impl FakeFleet {
    /// A host on `current` (with that release on disk).
    pub fn host(&self, name: &str, current: Option<&str>) {
        let model = HostModel {
            current: current.map(str::to_string),
            releases: current.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        self.hosts.lock().unwrap().insert(name.to_string(), model);
    }

    /// `name` answers `answers` to its next operations of `kind`.
    pub fn script(&self, name: &str, kind: Kind, answers: impl IntoIterator<Item = Answer>) {
        let mut hosts = self.hosts.lock().unwrap();
        let h = hosts.get_mut(name).expect("scripted host exists");
        h.script.entry(kind).or_default().extend(answers);
    }

    /// Every operation of `kind` on `name` takes `d`.
    pub fn delay(&self, name: &str, kind: Kind, d: Duration) {
        let mut hosts = self.hosts.lock().unwrap();
        hosts.get_mut(name).expect("scripted host exists").delay.insert(kind, d);
    }

    /// The release already staged on `name` with this sha256.
    pub fn staged(&self, name: &str, version: &str, sha: &str) {
        let mut hosts = self.hosts.lock().unwrap();
        let h = hosts.get_mut(name).expect("scripted host exists");
        h.staged = Some(sha.to_string());
        h.releases.push(version.to_string());
    }

    /// The health check of `name` fails whenever it runs `version`.
    pub fn unhealthy_on(&self, name: &str, version: &str) {
        let mut hosts = self.hosts.lock().unwrap();
        hosts.get_mut(name).expect("scripted host exists").unhealthy_on = Some(version.to_string());
    }

    pub fn current(&self, name: &str) -> Option<String> {
        self.hosts.lock().unwrap()[name].current.clone()
    }

    /// The operations of `kind` the fleet saw, in order, as (host, detail).
    pub fn seen(&self, kind: Kind) -> Vec<(String, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(h, _, d)| (h.clone(), d.clone()))
            .collect()
    }

    /// One operation: its scripted answer after its delay, within `timeout`.
    async fn answer(
        &self,
        host: &str,
        kind: Kind,
        detail: String,
        timeout: Duration,
    ) -> Result<(u32, String), RemoteError> {
        let (answer, delay) = {
            let mut hosts = self.hosts.lock().unwrap();
            let h = hosts.get_mut(host).expect("scripted host exists");
            if h.gone {
                return Err(RemoteError::failed("connection closed"));
            }
            let a = h
                .script
                .get_mut(&kind)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Answer::Ok);
            (a, h.delay.get(&kind).copied().unwrap_or_default())
        };
        self.log.lock().unwrap().push((host.to_string(), kind, detail));
        let op = async {
            tokio::time::sleep(delay).await;
            match answer {
                Answer::Ok => Ok((0, String::new())),
                Answer::Exit(code, stderr) => Ok((code, stderr.to_string())),
                Answer::Error(msg) => Err(RemoteError::failed(msg)),
                Answer::Gone => {
                    self.hosts.lock().unwrap().get_mut(host).expect("host").gone = true;
                    Err(RemoteError::failed("connection closed"))
                }
                Answer::Hang => futures::future::pending().await,
            }
        };
        tokio::time::timeout(timeout, op)
            .await
            .unwrap_or(Err(RemoteError::Timeout(timeout)))
    }
}

/// The program part of each remote script's command line, to tell them apart.
struct Scripts {
    preflight: String,
    hash: String,
    stage: String,
    switch: String,
    lock: String,
    history: String,
}

fn program(c: RemoteCommand) -> String {
    RemoteCommand {
        script: c.script,
        args: Vec::new(),
    }
    .to_command()
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            preflight: program(crate::remote::preflight("r", "v", "s", false, false, "o")),
            hash: program(crate::remote::hash("p")),
            stage: program(crate::remote::stage("r", "v", "s", crate::remote::Transfer::Sftp, 0)),
            switch: program(crate::remote::switch("r", "v", 1, "", "")),
            lock: program(crate::remote::lock::release("r", "x")),
            history: program(crate::remote::history::tail("r", 1)),
        }
    }

    /// The kind of a command line and its arguments (unquoted).
    fn classify(&self, cmd: &str) -> (Kind, Vec<String>) {
        for (prefix, kind) in [
            (&self.preflight, Kind::Preflight),
            (&self.hash, Kind::Hash),
            (&self.stage, Kind::Stage),
            (&self.switch, Kind::Switch),
            (&self.lock, Kind::Lock),
            (&self.history, Kind::History),
        ] {
            if let Some(rest) = cmd.strip_prefix(prefix.as_str()) {
                return (kind, unquote(rest));
            }
        }
        let kind = match cmd.split_whitespace().next().unwrap_or("") {
            "stop-svc" => Kind::Stop,
            "kill-svc" => Kind::Kill,
            "start-svc" => Kind::Start,
            "check-health" => Kind::Health,
            _ => Kind::Other,
        };
        (kind, vec![cmd.to_string()])
    }
}

/// The arguments `quote` wrote: `'a' 'b'\''c'` -> [a, b'c].
fn unquote(s: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.get_or_insert_with(String::new);
            }
            '\\' if !quoted => {
                if let Some(n) = chars.next() {
                    cur.get_or_insert_with(String::new).push(n);
                }
            }
            ' ' if !quoted => {
                if let Some(a) = cur.take() {
                    args.push(a);
                }
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    args.extend(cur);
    args
}

/// One scripted host, as the executor holds it.
pub struct FakeHost {
    name: String,
    become_root: bool,
    fleet: FakeFleet,
    scripts: Arc<Scripts>,
}

impl FakeHost {
    async fn run(&self, command: &str, timeout: Duration) -> Result<ExecOutput, RemoteError> {
        let (kind, args) = self.scripts.classify(command);
        // What the log keeps: the version a switch goes to, a lock script's action.
        let detail = match kind {
            Kind::Switch => args.get(1).cloned().unwrap_or_default(),
            Kind::Lock => args.first().cloned().unwrap_or_default(),
            // An append: `OPERATOR CONTROLLER FROM->TO OUTCOME` (the run id is the scenario's).
            Kind::History if args.len() == 9 => {
                format!("{} {} {}->{} {}", args[4], args[5], args[6], args[7], args[8])
            }
            _ => String::new(),
        };
        let (mut status, mut stderr) = self.fleet.answer(&self.name, kind, detail, timeout).await?;
        if kind == Kind::Health && status == 0 {
            let hosts = self.fleet.hosts.lock().unwrap();
            let h = &hosts[&self.name];
            if h.unhealthy_on.is_some() && h.unhealthy_on == h.current {
                (status, stderr) = (1, "unhealthy".to_string());
            }
        }
        let mut stdout = String::new();
        if status == 0 {
            let mut hosts = self.fleet.hosts.lock().unwrap();
            let h = hosts.get_mut(&self.name).expect("host");
            match kind {
                Kind::Preflight => {
                    stdout.push_str("lock=acquired\n");
                    if let Some(c) = &h.current {
                        stdout.push_str(&format!("current=/srv/demo/releases/{c}\n"));
                    }
                    for r in &h.releases {
                        stdout.push_str(&format!("release=/srv/demo/releases/{r}\n"));
                    }
                    if let Some(s) = &h.staged {
                        stdout.push_str(&format!("staged={s}\n"));
                    }
                }
                Kind::Stage => {
                    stdout.push_str("staged=unpacked\n");
                    h.releases.push(args.get(1).cloned().unwrap_or_default());
                }
                Kind::Switch => {
                    let v = args.get(1).cloned().unwrap_or_default();
                    stdout.push_str(&format!("current=/srv/demo/releases/{v}\n"));
                    h.current = Some(v);
                }
                Kind::Lock => stdout.push_str("lock=released\n"),
                Kind::Health => stdout.push_str(h.current.as_deref().unwrap_or("")),
                _ => {}
            }
        }
        Ok(ExecOutput {
            status: Some(status),
            stdout,
            stderr,
            ..Default::default()
        })
    }
}

impl RemoteHost for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn user(&self) -> &str {
        "deploy"
    }

    fn becomes_root(&self) -> bool {
        self.become_root
    }

    fn take_learned_keys(&self) -> Vec<String> {
        Vec::new()
    }

    fn exec<'a>(&'a self, command: &'a str, timeout: Duration) -> RemoteFuture<'a, ExecOutput> {
        self.run(command, timeout).boxed()
    }

    fn exec_with_input<'a>(
        &'a self,
        command: &'a str,
        _local: &'a Path,
        _offset: u64,
        _bandwidth: u64,
        timeout: Duration,
    ) -> RemoteFuture<'a, ExecOutput> {
        self.run(command, timeout).boxed()
    }

    fn upload<'a>(
        &'a self,
        _local: &'a Path,
        _remote: &'a str,
        _offset: u64,
        _bandwidth: u64,
        timeout: Duration,
    ) -> RemoteFuture<'a, ()> {
        async move {
            match self
                .fleet
                .answer(&self.name, Kind::Upload, String::new(), timeout)
                .await?
            {
                (0, _) => Ok(()),
                (_, e) => Err(RemoteError::failed(e)),
            }
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Connector for FakeFleet {
    fn connect<'a>(&'a self, host: &'a Host, become_root: bool) -> RemoteFuture<'a, Arc<dyn RemoteHost>> {
        async move {
            match self
                .answer(&host.name, Kind::Connect, String::new(), Duration::from_secs(10))
                .await?
            {
                (0, _) => Ok(Arc::new(FakeHost {
                    name: host.name.clone(),
                    become_root,
                    fleet: self.clone(),
                    scripts: Arc::new(Scripts::new()),
                }) as Arc<dyn RemoteHost>),
                (_, why) => Err(RemoteError::Failed {
                    msg: format!("connecting to {}: {why}", host.name),
                    hint: Some("is the host up?"),
                }),
            }
        }
        .boxed()
    }
}

impl Registrar for FakeFleet {
    fn deregister<'a>(
        &'a self,
        host: &'a Host,
        _conn: &'a dyn RemoteHost,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        self.registry_call(host, Kind::Deregister).boxed()
    }

    fn register<'a>(
        &'a self,
        host: &'a Host,
        _conn: &'a dyn RemoteHost,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        self.registry_call(host, Kind::Register).boxed()
    }
}

impl FakeFleet {
    /// A scripted code 400 to 499 is a refusal (the registry did not act); any other failure,
    /// or a connection error, may have acted.
    async fn registry_call(&self, host: &Host, kind: Kind) -> Result<String, RegistryError> {
        match self
            .answer(&host.name, kind, String::new(), Duration::from_secs(60))
            .await
        {
            Ok((0, _)) => Ok("scripted".into()),
            Ok((code, e)) if (400..500).contains(&code) => {
                Err(RegistryError::Refused(format!("registry answered {code}: {e}")))
            }
            Ok((code, e)) => Err(RegistryError::MayHaveActed(format!("registry answered {code}: {e}"))),
            Err(e) => Err(RegistryError::MayHaveActed(e.to_string())),
        }
    }
}

/// The metric gate's verdicts, one per watch (a pass once they run out); its value is 0.
#[derive(Default)]
pub struct FakeGate {
    pub verdicts: Mutex<VecDeque<Result<String, String>>>,
    pub window: Duration,
}

impl GateProbe for FakeGate {
    fn value<'a>(&'a self, _gate: &'a Gate, _query: &'a str) -> BoxFuture<'a, Result<f64, String>> {
        async { Ok(0.0) }.boxed()
    }

    fn watch<'a>(&'a self, _gate: &'a Gate, _query: &'a str) -> BoxFuture<'a, Result<String, String>> {
        async move {
            tokio::time::sleep(self.window).await;
            let v = self.verdicts.lock().unwrap().pop_front();
            v.unwrap_or_else(|| Ok("under the limit".into()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_are_read_back_as_quoted() {
        let c = crate::remote::switch("/srv/demo", "it's 2.0", 3, "", "1.0").to_command();
        let (kind, args) = super::Scripts::new().classify(&c);
        assert_eq!(kind, super::Kind::Switch);
        assert_eq!(args, ["/srv/demo", "it's 2.0", "3", "", "1.0"]);
    }
}
