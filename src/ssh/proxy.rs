//! `ProxyCommand`: a local process whose stdin and stdout carry the SSH connection (an SSM or
//! cloudflared tunnel, `nc`, `corkscrew`). It runs through `sh -c 'exec …'` as OpenSSH runs it,
//! is killed when the connection is dropped, and its stderr is kept for the error message when
//! the connection cannot be set up.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Part of the message of a connection whose ProxyCommand exited (not worth trying again).
pub(super) const EXITED: &str = "the command exited";

/// How much of the command's stderr is kept (the tail).
const STDERR_CAP: usize = 4 * 1024;

/// The transport of a connection through a ProxyCommand: read the child's stdout, write its stdin.
pub(super) type ProxyStream = tokio::io::Join<ChildStdout, ChildStdin>;

/// The running ProxyCommand of one connection. Dropping it kills the process.
pub(super) struct ProxyProcess {
    pub(super) command: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// Start `command` (already expanded), its stdio piped.
pub(super) fn spawn(command: &str) -> Result<(ProxyProcess, ProxyStream), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the ProxyCommand `{command}`: {e}"))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    // Drained all along, so that a talkative command never blocks on a full pipe.
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut kept = sink.lock().expect("proxy stderr lock");
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > STDERR_CAP {
                let cut = kept.len() - STDERR_CAP;
                kept.drain(..cut);
            }
        }
    });
    let process = ProxyProcess {
        command: command.to_string(),
        child,
        stderr,
    };
    Ok((process, tokio::io::join(stdout, stdin)))
}

impl ProxyProcess {
    /// Why the connection through this command failed: the command, how it ended (if it did)
    /// and the last line of its stderr.
    pub(super) async fn describe_failure(&mut self, reason: &str) -> String {
        // The command's last words arrive with its exit: wait a moment for them.
        let status = tokio::time::timeout(std::time::Duration::from_millis(500), self.child.wait())
            .await
            .ok()
            .and_then(|r| r.ok());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let stderr = String::from_utf8_lossy(&self.stderr.lock().expect("proxy stderr lock")).into_owned();
        let said = stderr.trim();
        let mut out = format!("through the ProxyCommand `{}`: {reason}", self.command);
        if let Some(status) = status {
            match status.code() {
                Some(code) => out.push_str(&format!("; {EXITED} with status {code}")),
                None => out.push_str(&format!("; {EXITED} on a signal")),
            }
        }
        if !said.is_empty() {
            out.push_str(&format!("; its stderr: {}", said.lines().last().unwrap_or(said)));
        }
        out
    }

    /// Stop the command (the connection is closed).
    pub(super) async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_command_is_described_with_its_stderr() {
        let (mut p, _stream) = spawn("sh -c \"echo 'no route to bastion' >&2; exit 7\"").unwrap();
        let said = p.describe_failure("connection closed").await;
        assert_eq!(
            said,
            "through the ProxyCommand `sh -c \"echo 'no route to bastion' >&2; exit 7\"`: connection closed; the command exited with status 7; its stderr: no route to bastion"
        );
    }
}
