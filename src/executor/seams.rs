//! What the executor reaches the world through: hosts (a [`Connector`] that hands out
//! [`RemoteHost`]s), the registry ([`Registrar`]) and the metric gate ([`GateProbe`]). The real
//! ones are SSH, the playbook's [`Registry`] adapter and Prometheus; the offline scenarios script all three.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::inventory::Host;
use crate::playbook::Gate;
use crate::registry::{Registry, RegistryError};
use crate::release::Release;
use crate::remote::{RemoteFuture, RemoteHost};
use crate::ssh::{Connection, SshSettings};

/// Opens the connection to a host.
pub trait Connector: Send + Sync {
    /// Connect to `host`; every command then runs through `sudo -n` when `become_root`.
    fn connect<'a>(&'a self, host: &'a Host, become_root: bool) -> RemoteFuture<'a, Arc<dyn RemoteHost>>;
}

/// Hosts reached over SSH.
pub struct SshConnector {
    pub settings: SshSettings,
}

impl Connector for SshConnector {
    fn connect<'a>(&'a self, host: &'a Host, become_root: bool) -> RemoteFuture<'a, Arc<dyn RemoteHost>> {
        async move {
            let mut conn = Connection::open(&super::endpoint(host, &self.settings), &self.settings).await?;
            conn.become_root = become_root;
            Ok(Arc::new(conn) as Arc<dyn RemoteHost>)
        }
        .boxed()
    }
}

/// Takes a host out of traffic and puts it back; a note for the event, or why it failed.
pub trait Registrar: Send + Sync {
    fn deregister<'a>(
        &'a self,
        host: &'a Host,
        conn: &'a dyn RemoteHost,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;
    fn register<'a>(&'a self, host: &'a Host, conn: &'a dyn RemoteHost)
        -> BoxFuture<'a, Result<String, RegistryError>>;
}

/// The playbook's registry through its adapter ([`crate::registry::build`]).
pub struct ClientRegistrar {
    pub registry: Arc<dyn Registry>,
    pub release: Arc<Release>,
    pub run_id: String,
}

impl ClientRegistrar {
    /// The client's calls that run on the host itself want its SSH connection.
    fn connection(conn: &dyn RemoteHost) -> Result<&Connection, RegistryError> {
        conn.as_any()
            .downcast_ref::<Connection>()
            .ok_or_else(|| RegistryError::NotSent(format!("the registry needs an SSH connection to {}", conn.name())))
    }
}

impl Registrar for ClientRegistrar {
    fn deregister<'a>(
        &'a self,
        host: &'a Host,
        conn: &'a dyn RemoteHost,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move {
            let conn = Self::connection(conn)?;
            self.registry
                .deregister(&self.release, host, Some(conn), &self.run_id)
                .await
        }
        .boxed()
    }

    fn register<'a>(
        &'a self,
        host: &'a Host,
        conn: &'a dyn RemoteHost,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move {
            let conn = Self::connection(conn)?;
            self.registry
                .register(&self.release, host, Some(conn), &self.run_id)
                .await
        }
        .boxed()
    }
}

/// The metric gate's query, evaluated once or watched over its window.
pub trait GateProbe: Send + Sync {
    fn value<'a>(&'a self, gate: &'a Gate, query: &'a str) -> BoxFuture<'a, Result<f64, String>>;
    /// Ok with a note when the metric stayed under `max` for the window, Err on a breach.
    fn watch<'a>(&'a self, gate: &'a Gate, query: &'a str) -> BoxFuture<'a, Result<String, String>>;
}

/// Prometheus over HTTP.
pub struct PrometheusGate {
    pub http: reqwest::Client,
}

impl GateProbe for PrometheusGate {
    fn value<'a>(&'a self, gate: &'a Gate, query: &'a str) -> BoxFuture<'a, Result<f64, String>> {
        crate::monitor::gate_value(&self.http, gate, query).boxed()
    }

    fn watch<'a>(&'a self, gate: &'a Gate, query: &'a str) -> BoxFuture<'a, Result<String, String>> {
        crate::monitor::watch_gate(&self.http, gate, query).boxed()
    }
}
