//! Taking a host out of traffic and putting it back: one [`Registry`] trait, one adapter per
//! kind (`none`, `command` on the host or a delegate, `http` and its presets, `haproxy` with its
//! own load balancer link), and [`build`], the one place that matches the playbook's
//! `registry` to an adapter. Adapters never print: they return notes and typed errors.

mod command;
mod error;
mod haproxy;
mod http;
mod presets;
mod retry;

use std::sync::OnceLock;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

pub use error::RegistryError;
pub use haproxy::{ssh_address, HaproxyApi, ServerState};
pub use retry::{
    http_transient, io_transient, retry, status_transient, CallError, Retried, RETRY_DELAY_FIRST, RETRY_DELAY_MAX,
};

use crate::inventory::Host;
use crate::playbook::Playbook;
use crate::release::Release;
use crate::ssh::Connection;

/// Remote registry commands and HTTP calls get this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Another host a registry's calls go through, which the run connects to before anything
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// An inventory host, or for a load balancer `[user@]host[:port]` as SSH resolves it.
    pub target: String,
    pub role: LinkRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRole {
    /// `registry.delegate`: must be a host of the inventory.
    Delegate,
    /// The host of an `ssh://` HAProxy address.
    LoadBalancer,
}

/// How a host leaves traffic and comes back. Shared by every host pipeline of a run.
pub trait Registry: Send + Sync {
    /// The host the calls go through, if not the released one.
    fn link(&self) -> Option<Link> {
        None
    }

    /// The connection to [`Registry::link`], once the run has opened it.
    fn attach(&self, _conn: Connection) {}

    /// Before anything changes: the registry answers.
    fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// Take `host` out of traffic and drain it; the note is for the event. `conn` is the
    /// released host's connection: only a `command` registry without a delegate runs on it,
    /// and blue-green's switch (which has no host pipeline) opens it only for that one.
    fn deregister<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;

    /// Put `host` back into traffic and wait until the registry reports it serving.
    fn register<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;

    /// Whether the calls run on the released host itself (a `command` registry without a
    /// delegate): the `conn` given to `register` and `deregister` must then be that host's.
    fn runs_on_host(&self) -> bool {
        false
    }

    /// `host`'s deregister call as it would be sent (rendered, nothing sent): blue-green
    /// refuses two sides whose instances are one in the registry (deregistering the old side
    /// would take the new one out too). It may hold credentials: compared, never shown.
    fn deregister_call(&self, _r: &Release, host: &Host, _run_id: &str) -> Result<String, RegistryError> {
        Ok(host.name.clone())
    }

    /// Close the links; an adapter without one has nothing to close.
    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

/// Where a registry's [`Link`] is reached: an inventory host as the run reaches it, or (a load
/// balancer only) any host the SSH config resolves. The executor's preflight connects it with
/// its own events; [`open_link`] without.
pub fn link_endpoint(
    r: &Release,
    link: &Link,
    settings: &crate::ssh::SshSettings,
) -> Result<crate::ssh::Endpoint, String> {
    let target = &link.target;
    Ok(match (r.inventory.host(target), link.role) {
        (Some(h), _) => crate::reach::endpoint(h, settings),
        (None, LinkRole::Delegate) => return Err(format!("the registry delegate {target} is not in the inventory")),
        (None, LinkRole::LoadBalancer) => {
            let (user, name, port) = crate::ssh::parse_target(target);
            let spec = crate::ssh::config::HostSpec {
                name,
                address: None,
                port,
                user,
                identity: None,
                jump: None,
            };
            crate::ssh::config::resolve(&spec, settings)
        }
    })
}

/// Open the connection to a registry's [`Link`] (blue-green's switch, which runs outside a
/// host pipeline: `tranche switch`).
pub async fn open_link(r: &Release, link: &Link, settings: &crate::ssh::SshSettings) -> Result<Connection, String> {
    let target = &link.target;
    let host = r.inventory.host(target);
    let ep = link_endpoint(r, link, settings)?;
    let mut conn = Connection::open(&ep, settings).await.map_err(|e| match link.role {
        LinkRole::Delegate => format!("the registry delegate {target} cannot be reached: {e}"),
        LinkRole::LoadBalancer => format!("the load balancer host {target}: {e}"),
    })?;
    // As the executor's preflight: the load balancer host's socket may need root.
    if let (Some(h), LinkRole::LoadBalancer) = (host, link.role) {
        conn.become_root = crate::reach::wants_become(&r.playbook, h);
    }
    Ok(conn)
}

/// The adapter for the playbook's `registry`: the one place its kinds are told apart.
pub fn build(p: &Playbook) -> Box<dyn Registry> {
    use crate::playbook::RegistrySpec as Spec;
    let (retry, drain) = (p.registry_retry, p.registry.drain);
    match &p.registry.spec {
        Spec::None => Box::new(NoRegistry),
        Spec::Command { deregister, register } => Box::new(command::Command::new(
            deregister.clone(),
            register.clone(),
            p.registry.delegate.clone(),
            drain,
        )),
        Spec::Http { deregister, register } => {
            Box::new(http::Http::new(deregister.clone(), register.clone(), drain, retry))
        }
        Spec::Preset { name, settings } => match presets::calls(name, settings) {
            Ok((deregister, register, templates)) => {
                let mut http = http::Http::new(deregister, register, drain, retry);
                http.templates = Some(templates);
                Box::new(http)
            }
            Err(e) => Box::new(Unusable(e)),
        },
        Spec::Haproxy {
            address,
            backend,
            server,
        } => Box::new(haproxy::Haproxy {
            address: address.clone(),
            backend: backend.clone(),
            server: server.clone(),
            drain,
            retry,
            lb: OnceLock::new(),
        }),
    }
}

/// A registry whose calls could not be built: it fails its preflight, before anything changes.
struct Unusable(String);

impl Registry for Unusable {
    fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        let e = RegistryError::NotSent(self.0.clone());
        async move { Err(e) }.boxed()
    }

    fn deregister_call(&self, _: &Release, _: &Host, _: &str) -> Result<String, RegistryError> {
        Err(RegistryError::NotSent(self.0.clone()))
    }

    fn deregister<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: Option<&'a Connection>,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        self.preflight().map(|r| r.map(|()| String::new())).boxed()
    }

    fn register<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: Option<&'a Connection>,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        self.preflight().map(|r| r.map(|()| String::new())).boxed()
    }
}

/// `kind: none`: hosts are not taken out of traffic.
struct NoRegistry;

impl Registry for NoRegistry {
    fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        async { Ok(()) }.boxed()
    }

    fn deregister<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: Option<&'a Connection>,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async { Ok("no registry".to_string()) }.boxed()
    }

    fn register<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: Option<&'a Connection>,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async { Ok("no registry".to_string()) }.boxed()
    }
}

async fn sleep_drain(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}
