//! Connection tests against an in-process russh server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::upload::{writes_in_flight, SFTP_PACKET, SFTP_PACKET_MIN};
use super::*;

/// An SSH server on loopback that, like Dropbear now and then, closes the first session
/// channel it gets an `exec` on without running the command (no reply, EOF, close). Later
/// channels run any command: answer, echo the bytes received on stdin, exit 0.
#[derive(Clone, Default)]
struct ClosesFirstChannel {
    execs: Arc<std::sync::atomic::AtomicUsize>,
    stdin: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl russh::server::Server for ClosesFirstChannel {
    type Handler = Self;
    fn new_client(&mut self, _: Option<std::net::SocketAddr>) -> Self {
        self.clone()
    }
}

impl russh::server::Handler for ClosesFirstChannel {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _: &str,
        _: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<russh::server::Auth, Self::Error> {
        Ok(russh::server::Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        _: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: russh::ChannelId,
        _: &[u8],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        if self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            session.eof(channel)?;
            session.close(channel)?;
        } else {
            self.stdin.lock().unwrap().clear();
            session.channel_success(channel)?;
        }
        Ok(())
    }

    async fn data(
        &mut self,
        _: russh::ChannelId,
        data: &[u8],
        _: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        self.stdin.lock().unwrap().extend_from_slice(data);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: russh::ChannelId,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        if self.execs.load(std::sync::atomic::Ordering::SeqCst) > 1 {
            let got = format!("ran, {} bytes in\n", self.stdin.lock().unwrap().len());
            session.data(channel, got.into_bytes())?;
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }
}

/// A [`ClosesFirstChannel`] server and a connection to it.
async fn connect_to_closing_server(dir: &Path) -> (Connection, ClosesFirstChannel) {
    use russh::server::Server as _;
    let keygen = |path: &Path| {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(path.with_extension("pub"));
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen");
        russh::keys::load_secret_key(path, None).unwrap()
    };
    let host_key = keygen(&dir.join("host_key"));
    let identity = dir.join("id_ed25519");
    keygen(&identity);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", host_key.public_key().to_openssh().unwrap()),
    )
    .unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key],
        ..Default::default()
    });
    let mut server = ClosesFirstChannel::default();
    let state = server.clone();
    tokio::spawn(async move {
        let _ = server.run_on_socket(config, &listener).await;
    });
    let settings = SshSettings {
        known_hosts: Some(known_hosts),
        accept_new_host_keys: false,
        identities: vec![],
        use_agent: false,
        ask_passphrase: false,
        config: None,
        openssh: None,
        bastions: Bastions::default(),
        max_connecting: 1,
        connect_timeout: Some(Duration::from_secs(5)),
        default_user: "root".into(),
    };
    let spec = config::HostSpec {
        name: "closing".into(),
        address: Some("127.0.0.1".into()),
        port: Some(port),
        user: Some("root".into()),
        identity: Some(identity),
        jump: None,
    };
    let ep = config::resolve(&spec, &settings);
    (Connection::open(&ep, &settings).await.unwrap(), state)
}

#[tokio::test]
async fn a_channel_closed_before_the_command_ran_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, server) = connect_to_closing_server(dir.path()).await;
    let out = conn.exec("true", Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (Some(0), "ran, 0 bytes in\n"),
        "{out:?}"
    );
    assert_eq!(server.execs.load(std::sync::atomic::Ordering::SeqCst), 2);

    // With a file on stdin (the upload through `cat`): all of it reaches the second channel.
    let (conn, server) = connect_to_closing_server(dir.path()).await;
    let file = dir.path().join("artifact");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let out = conn
        .exec_with_input("cat > x.part", &file, 0, 0, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (Some(0), "ran, 300000 bytes in\n"),
        "{out:?}"
    );
    assert_eq!(server.execs.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn writes_in_flight_follow_the_round_trip() {
    assert_eq!(writes_in_flight(Some(Duration::from_micros(50)), SFTP_PACKET), 2);
    // 100 MB/s × 10 ms = 1 MB = 8 writes of 129 KiB, or 30 of 34000 bytes.
    assert_eq!(writes_in_flight(Some(Duration::from_millis(10)), SFTP_PACKET), 8);
    assert_eq!(writes_in_flight(Some(Duration::from_millis(80)), SFTP_PACKET), 15);
    assert_eq!(writes_in_flight(None, SFTP_PACKET), 15);
    assert_eq!(writes_in_flight(Some(Duration::from_micros(50)), SFTP_PACKET_MIN), 3);
    assert_eq!(writes_in_flight(Some(Duration::from_millis(10)), SFTP_PACKET_MIN), 30);
    assert_eq!(writes_in_flight(None, SFTP_PACKET_MIN), 61);
}
