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

    /// Take `host` out of traffic and drain it; the note is for the event.
    fn deregister<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        conn: &'a Connection,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;

    /// Put `host` back into traffic and wait until the registry reports it serving.
    fn register<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        conn: &'a Connection,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;

    /// Close the links; an adapter without one has nothing to close.
    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
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

    fn deregister<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: &'a Connection,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        self.preflight().map(|r| r.map(|()| String::new())).boxed()
    }

    fn register<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: &'a Connection,
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
        _: &'a Connection,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async { Ok("no registry".to_string()) }.boxed()
    }

    fn register<'a>(
        &'a self,
        _: &'a Release,
        _: &'a Host,
        _: &'a Connection,
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
