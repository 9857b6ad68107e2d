//! Uploads: SFTP with bounded writes in flight, or a file as a command's stdin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::ChannelMsg;
use tokio::io::AsyncReadExt;

use super::{Connection, SshError};

/// The length of an SFTP write packet: about 128 KiB of data. Larger writes than the usual
/// 32 KiB: measured against OpenSSH's sshd and sftp-server on loopback, 128 KiB writes two at a
/// time cost the server about a third less CPU per byte than 32 KiB writes four at a time
/// (`sftp -B 131072 -R 2` against `-B 32768 -R 4`).
pub(super) const SFTP_PACKET: usize = 129 * 1024;
/// The packet length every SFTP server must take (the SFTP draft's 34000 bytes).
pub(super) const SFTP_PACKET_MIN: usize = 34000;

impl Connection {
    /// Upload `local` to `remote` over SFTP, at most `bandwidth` bytes per second (0: no cap).
    /// `NoSftp` when the server offers no SFTP subsystem, so the caller can fall back to
    /// [`Connection::exec_with_input`].
    ///
    /// SFTP because its writes are acknowledged: the bytes in flight are bounded by the
    /// client (see [`writes_in_flight`]), not by the server's 2 MiB channel window. OpenSSH's
    /// sshd grows its channel buffer to whatever is in flight, copying it at every step, and
    /// each new connection does it again: on the benchmark machine, 50 uploads of 10 MB cost
    /// sshd about twice the CPU with 2 MiB in flight as with 128 KiB.
    ///
    /// The writes are [`SFTP_PACKET`] bytes long (less if the server's `limits@openssh.com`
    /// says so). A server that does not announce its limits need only take 34000 bytes: if one
    /// fails the writes, the upload starts again from `offset` with packets of that length.
    pub async fn upload_sftp(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        bandwidth: u64,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let fut = async {
            match self.sftp_send(local, remote, offset, bandwidth, SFTP_PACKET).await {
                Err(SftpFailure::Writing(first)) => {
                    match self.sftp_send(local, remote, offset, bandwidth, SFTP_PACKET_MIN).await {
                        // Not even a new session (the connection is gone): the first error says why.
                        Err(SftpFailure::Before(_)) => Err(first),
                        other => other.map_err(SftpFailure::into_error),
                    }
                }
                other => other.map_err(SftpFailure::into_error),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout(timeout)),
        }
    }

    /// One SFTP session: open `remote` (from `offset` on) and write `local` into it in write
    /// packets of `packet` bytes.
    async fn sftp_send(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        bandwidth: u64,
        packet: usize,
    ) -> Result<(), SftpFailure> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SftpFailure::Before(e.into()))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpFailure::Before(SshError::NoSftp(e.to_string())))?;
        // Wait for the server's answer: OpenSSH refuses an unconfigured subsystem.
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => return Ok(()),
                    Some(ChannelMsg::Failure) => return Err("the server refused the subsystem".to_string()),
                    Some(ChannelMsg::Close | ChannelMsg::Eof) | None => return Err("the channel closed".to_string()),
                    Some(_) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("no answer to the subsystem request".to_string()));
        answer.map_err(|e| SftpFailure::Before(SshError::NoSftp(e)))?;
        let cfg = russh_sftp::client::Config {
            max_concurrent_writes: writes_in_flight(self.rtt, packet),
            // The server's `limits@openssh.com` (OpenSSH: 256 KiB) lowers it if need be.
            max_write_packet_len: packet as u32,
            request_timeout_secs: 60,
            ..Default::default()
        };
        let sftp = russh_sftp::client::SftpSession::new_with_config(channel.into_stream(), cfg)
            .await
            .map_err(|e| SftpFailure::Before(SshError::NoSftp(e.to_string())))?;
        let before = |what: &str, e: russh_sftp::client::error::Error| {
            SftpFailure::Before(SshError::Protocol(format!("{what} {remote}: {e}")))
        };
        // From `offset` on, the file already holds the right bytes (a resumed upload).
        let file = if offset > 0 {
            use tokio::io::AsyncSeekExt;
            let mut f = sftp
                .open_with_flags(remote, russh_sftp::protocol::OpenFlags::WRITE)
                .await
                .map_err(|e| before("opening", e))?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| SftpFailure::Before(SshError::Protocol(format!("seeking {remote}: {e}"))))?;
            f
        } else {
            sftp.create(remote).await.map_err(|e| before("creating", e))?
        };
        send_file(
            file,
            Input {
                path: local.to_path_buf(),
                bandwidth,
                offset,
            },
        )
        .await
        .map_err(|e| SftpFailure::Writing(SshError::Protocol(format!("writing {remote}: {e}"))))?;
        let _ = sftp.close().await;
        Ok(())
    }
}

#[derive(Clone)]
pub(super) struct Input {
    pub(super) path: PathBuf,
    pub(super) bandwidth: u64,
    /// Bytes of the file to skip (already on the other side).
    pub(super) offset: u64,
}

pub(super) async fn send_file(mut sink: impl tokio::io::AsyncWrite + Unpin, input: Input) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::open(&input.path).await?;
    if input.offset > 0 {
        use tokio::io::AsyncSeekExt;
        f.seek(std::io::SeekFrom::Start(input.offset)).await?;
    }
    let mut buf = vec![0u8; 256 * 1024];
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n]).await?;
        sent += n as u64;
        if input.bandwidth > 0 {
            // Sleep until the average rate is back under the cap.
            let due = Duration::from_secs_f64(sent as f64 / input.bandwidth as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    sink.flush().await?;
    sink.shutdown().await.ok();
    Ok(())
}

/// SFTP writes of `packet` bytes in flight: enough for about 100 MB/s per host at the
/// connection's round trip, at least two and about 128 KiB (a LAN), at most 2 MiB (the server's
/// window; also through a bastion, where the round trip is not known).
pub(super) fn writes_in_flight(rtt: Option<Duration>, packet: usize) -> usize {
    const RATE: f64 = 100e6;
    let (lo, hi) = ((128 * 1024 / packet).max(2), (2 * 1024 * 1024 / packet).max(2));
    match rtt {
        Some(rtt) => ((RATE * rtt.as_secs_f64() / packet as f64).ceil() as usize).clamp(lo, hi),
        None => hi,
    }
}

/// Where an SFTP upload failed: before the first write (the subsystem, opening the file), or
/// while writing.
enum SftpFailure {
    Before(SshError),
    Writing(SshError),
}

impl SftpFailure {
    fn into_error(self) -> SshError {
        match self {
            SftpFailure::Before(e) | SftpFailure::Writing(e) => e,
        }
    }
}
