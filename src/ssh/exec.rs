//! Commands on session channels of a connection: output drained and capped, a command the
//! server never started sent again, a leaked background process noticed.

use std::path::Path;
use std::time::Duration;

use russh::ChannelMsg;

use super::upload::{send_file, Input};
use super::{Connection, ExecOutput, SshError};

/// How much of a command's stdout and stderr is kept (the tail).
const OUTPUT_CAP: usize = 64 * 1024;

/// How long output may go on after a command's exit status before tranche stops waiting: a
/// process the command put in the background still holds the stream, and would otherwise keep
/// the step open until it exits or the step's timeout passes.
const LEAK_GRACE: Duration = Duration::from_secs(2);

impl Connection {
    /// Run `command` through the remote user's shell, collecting its output, within `timeout`.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let command = self.wrap(command);
        match tokio::time::timeout(timeout, self.exec_started(&command, None)).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout(timeout)),
        }
    }

    /// Run `command` with the file at `local`, from byte `offset` on, as its stdin (the upload
    /// path: `cat > x.part`), at most `bandwidth` bytes per second (0: no cap).
    pub async fn exec_with_input(
        &self,
        command: &str,
        local: &Path,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let input = Input {
            path: local.to_path_buf(),
            bandwidth,
            offset,
        };
        let command = self.wrap(command);
        match tokio::time::timeout(timeout, self.exec_started(&command, Some(input))).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout(timeout)),
        }
    }

    /// `command` as it is sent: through `sudo -n sh -c` when the connection becomes root.
    fn wrap(&self, command: &str) -> String {
        if self.become_root {
            format!("sudo -n -- sh -c {}", crate::remote::quote(command))
        } else {
            command.to_string()
        }
    }

    /// [`Connection::exec_inner`], once more on a new channel if the server closed the first
    /// one without running the command: Dropbear (2022.83) now and then closes the session
    /// channel opened right after an SFTP subsystem whose server could not start, before it
    /// answers the `exec`. A command that never started can be sent again.
    async fn exec_started(&self, command: &str, input: Option<Input>) -> Result<ExecOutput, SshError> {
        for _ in 0..2 {
            if let Some(out) = self.exec_inner(command, input.clone()).await? {
                return Ok(out);
            }
        }
        Err(SshError::Protocol(
            "the server closed the channel without running the command, twice".into(),
        ))
    }

    /// Run `command` on a new channel; `None` if the server closed the channel (or refused
    /// the `exec`) before the command started: no answer to the request, no output, no exit.
    async fn exec_inner(&self, command: &str, input: Option<Input>) -> Result<Option<ExecOutput>, SshError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let mut started = false;
        let mut send_error = None;
        let mut out = ExecOutput::default();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let writer = input.map(|input| {
            let sender = channel.make_writer();
            tokio::spawn(async move { send_file(sender, input).await })
        });
        let mut eof_sent = writer.is_none();
        if eof_sent {
            channel.eof().await?;
        }
        let mut writer = writer;
        // After the exit status: the last output, and whether stdout's EOF came.
        let mut after_exit: Option<tokio::time::Instant> = None;
        let mut stdout_closed = false;
        loop {
            let grace = async {
                match after_exit {
                    Some(t) => tokio::time::sleep_until(t + LEAK_GRACE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = grace => {
                    out.leaked = Some(if stdout_closed { "stderr" } else { "stdout" });
                    let _ = channel.close().await;
                    break;
                }
                res = async { writer.as_mut().expect("writer").await }, if writer.is_some() => {
                    writer = None;
                    let failed = match res {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(e) = failed {
                        let e = SshError::Protocol(format!("sending the file: {e}"));
                        if started {
                            return Err(e);
                        }
                        // The channel may be closing before the command ran: see below.
                        send_error = Some(e);
                        continue;
                    }
                    if !eof_sent {
                        channel.eof().await?;
                        eof_sent = true;
                    }
                }
                msg = channel.wait() => {
                    let Some(msg) = msg else { break };
                    match msg {
                        ChannelMsg::Success => started = true,
                        ChannelMsg::Failure if !started => break,
                        ChannelMsg::Data { data } => {
                            started = true;
                            after_exit = after_exit.map(|_| tokio::time::Instant::now());
                            push_capped(&mut stdout, &data)
                        }
                        ChannelMsg::ExtendedData { data, ext: 1 } => {
                            started = true;
                            after_exit = after_exit.map(|_| tokio::time::Instant::now());
                            push_capped(&mut stderr, &data)
                        }
                        ChannelMsg::Eof => stdout_closed = true,
                        ChannelMsg::ExitStatus { exit_status } => {
                            started = true;
                            after_exit = Some(tokio::time::Instant::now());
                            out.status = Some(exit_status)
                        }
                        ChannelMsg::ExitSignal { signal_name, .. } => {
                            started = true;
                            after_exit = Some(tokio::time::Instant::now());
                            out.signal = Some(format!("{signal_name:?}"))
                        }
                        ChannelMsg::Close => break,
                        _ => {}
                    }
                }
            }
        }
        if !started {
            if let Some(w) = writer {
                w.abort();
            }
            return Ok(None);
        }
        if let Some(e) = send_error {
            return Err(e);
        }
        out.stdout = String::from_utf8_lossy(&stdout).into_owned();
        out.stderr = String::from_utf8_lossy(&stderr).into_owned();
        Ok(Some(out))
    }
}

fn push_capped(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    if buf.len() > OUTPUT_CAP {
        let cut = buf.len() - OUTPUT_CAP;
        buf.drain(..cut);
    }
}
