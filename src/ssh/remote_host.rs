//! `Connection` as the executor's [`RemoteHost`]: the SSH error is mapped to the remote layer's,
//! keeping its message and its hint.

use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Connection, SshError};
use crate::remote::{ExecOutput, RemoteError, RemoteFuture, RemoteHost};

impl From<SshError> for RemoteError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::Timeout(d) => RemoteError::Timeout(d),
            SshError::NoSftp(why) => RemoteError::NoSftp(why),
            e => RemoteError::Failed {
                hint: e.hint(),
                msg: e.to_string(),
            },
        }
    }
}

impl RemoteHost for Connection {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn user(&self) -> &str {
        &self.endpoint.user
    }

    fn becomes_root(&self) -> bool {
        self.become_root
    }

    fn take_learned_keys(&self) -> Vec<String> {
        Connection::take_learned_keys(self)
            .into_iter()
            .map(|k| k.to_string())
            .collect()
    }

    fn exec<'a>(&'a self, command: &'a str, timeout: Duration) -> RemoteFuture<'a, ExecOutput> {
        async move { Ok(Connection::exec(self, command, timeout).await?) }.boxed()
    }

    fn exec_with_input<'a>(
        &'a self,
        command: &'a str,
        local: &'a Path,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> RemoteFuture<'a, ExecOutput> {
        async move { Ok(Connection::exec_with_input(self, command, local, offset, bandwidth, timeout).await?) }.boxed()
    }

    fn upload<'a>(
        &'a self,
        local: &'a Path,
        remote: &'a str,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> RemoteFuture<'a, ()> {
        async move { Ok(self.upload_sftp(local, remote, offset, bandwidth, timeout).await?) }.boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Connection::close(self).boxed()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_survives_the_mapping() {
        let e = SshError::Auth {
            user: "deploy".into(),
            host: "web-01".into(),
            tried: "publickey".into(),
        };
        let hint = e.hint();
        let msg = e.to_string();
        let r = RemoteError::from(e);
        assert!(hint.is_some());
        assert_eq!(r.hint(), hint);
        assert_eq!(r.to_string(), msg);
        assert_eq!(
            RemoteError::from(SshError::Timeout(Duration::from_secs(3))),
            RemoteError::Timeout(Duration::from_secs(3))
        );
    }
}
