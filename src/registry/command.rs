//! The `command` registry: a shell command on the released host, or on a delegate host that
//! the run reaches over its own link.

use std::sync::OnceLock;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{sleep_drain, Link, LinkRole, Registry, RegistryError, CALL_TIMEOUT};
use crate::inventory::Host;
use crate::playbook::Template;
use crate::release::Release;
use crate::ssh::Connection;

pub struct Command {
    pub deregister: Template,
    pub register: Template,
    /// The inventory host the commands run on instead of the released one.
    pub delegate: Option<String>,
    pub drain: Duration,
    /// The delegate's connection, attached before the run.
    pub link: OnceLock<Connection>,
    /// Calls to one delegate host are serialised; calls on the host itself are not.
    pub serial: tokio::sync::Mutex<()>,
}

impl Command {
    pub fn new(deregister: Template, register: Template, delegate: Option<String>, drain: Duration) -> Self {
        Command {
            deregister,
            register,
            delegate,
            drain,
            link: OnceLock::new(),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    async fn run(
        &self,
        r: &Release,
        host: &Host,
        conn: Option<&Connection>,
        run_id: &str,
        t: &Template,
    ) -> Result<String, RegistryError> {
        let cmd = r.render(t, host, run_id, None).map_err(RegistryError::NotSent)?;
        match self.link.get() {
            Some(delegate) => {
                let _one_at_a_time = self.serial.lock().await;
                exec_checked(delegate, &cmd).await
            }
            None => match conn {
                Some(conn) => exec_checked(conn, &cmd).await,
                None => Err(RegistryError::NotSent(format!(
                    "the registry command runs on {}, and no connection to it is open",
                    host.name
                ))),
            },
        }
    }
}

/// A command that exits non-zero may have done part of its work: it may have acted.
async fn exec_checked(target: &Connection, cmd: &str) -> Result<String, RegistryError> {
    let out = target
        .exec(cmd, CALL_TIMEOUT)
        .await
        .map_err(|e| RegistryError::MayHaveActed(e.to_string()))?;
    if out.success() {
        Ok(format!("ran on {}", target.endpoint.name))
    } else {
        Err(RegistryError::MayHaveActed(format!(
            "registry command on {} failed: {}",
            target.endpoint.name,
            out.describe()
        )))
    }
}

impl Registry for Command {
    fn link(&self) -> Option<Link> {
        Some(Link {
            target: self.delegate.clone()?,
            role: LinkRole::Delegate,
        })
    }

    fn attach(&self, conn: Connection) {
        let _ = self.link.set(conn);
    }

    fn runs_on_host(&self) -> bool {
        self.delegate.is_none()
    }

    fn deregister_call(&self, r: &Release, host: &Host, run_id: &str) -> Result<String, RegistryError> {
        let cmd = r
            .render(&self.deregister, host, run_id, None)
            .map_err(RegistryError::NotSent)?;
        Ok(match &self.delegate {
            Some(d) => format!("on {d}: {cmd}"),
            None => format!("on {}: {cmd}", host.name),
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        async { Ok(()) }.boxed()
    }

    fn deregister<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move {
            let note = self.run(r, host, conn, run_id, &self.deregister).await?;
            sleep_drain(self.drain).await;
            Ok(note)
        }
        .boxed()
    }

    fn register<'a>(
        &'a self,
        r: &'a Release,
        host: &'a Host,
        conn: Option<&'a Connection>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        async move { self.run(r, host, conn, run_id, &self.register).await }.boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            if let Some(c) = self.link.get() {
                c.close().await;
            }
        }
        .boxed()
    }
}
