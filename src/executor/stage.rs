//! Staging: the artifact onto every host that passed preflight, ahead of the batches, at most
//! `rollout.stage.concurrency` hosts at once; each batch waits for its own hosts only.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::{join_all, BoxFuture, FutureExt};
use tokio::sync::{watch, Semaphore};

use super::{Executor, HostState, Mode, STEP_TIMEOUT, UPLOAD_TIMEOUT};
use crate::events::{EventKind, Status, Step};
use crate::inventory::Host;
use crate::playbook::{ArtifactSource, StoreAuth};
use crate::remote::{HostExit, RemoteError, RemoteHost, Transfer};

/// How many hosts are staged at once, fleet-wide (`rollout.stage.concurrency`).
pub(super) struct StageLimit(Arc<Semaphore>);

impl StageLimit {
    pub fn new(concurrency: usize) -> Self {
        StageLimit(Arc::new(Semaphore::new(concurrency.max(1))))
    }

    async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.0.acquire().await.expect("the stage limit is never closed")
    }
}

/// How a host's staging ended, for the host's pipeline waiting on it.
pub(super) type Staged = watch::Receiver<Option<Result<(), String>>>;

impl Executor {
    /// No more host is staged: the run stopped starting hosts.
    fn staging_stopped(&self) -> bool {
        self.stage_halted.load(Ordering::SeqCst)
            || self.is_interrupted()
            || !self.lost_locks.lock().expect("lost locks").is_empty()
    }

    /// Stage every host that passed preflight: one receiver per host (a host that failed
    /// preflight has its answer already), and the future that does the work.
    pub(super) fn staging<'a>(
        &'a self,
        states: &'a [Option<HostState>],
        batch_of: &'a std::collections::HashMap<usize, usize>,
    ) -> (Vec<Staged>, BoxFuture<'a, ()>) {
        let r = &self.release;
        let limit = Arc::new(StageLimit::new(r.playbook.rollout.stage_concurrency));
        let mut done = Vec::new();
        let mut tasks = Vec::new();
        for (i, st) in states.iter().enumerate() {
            let (tx, rx) = watch::channel(None);
            done.push(rx);
            let Some(st) = st else {
                let _ = tx.send(Some(Err("preflight failed".into())));
                continue;
            };
            let limit = limit.clone();
            let host = &r.targets[i];
            let batch = batch_of[&i];
            tasks.push(async move {
                let res = {
                    let _slot = limit.slot().await;
                    if self.staging_stopped() {
                        Err("the run stopped before this host was staged".to_string())
                    } else {
                        self.stage(host, &*st.conn, batch, st.staged_sha.as_deref(), st.part, &st.target)
                            .await
                    }
                };
                let _ = tx.send(Some(res));
            });
        }
        (done, join_all(tasks).map(|_| ()).boxed())
    }

    /// Put the artifact on the host, verified, unpacked into `releases/<version>`.
    async fn stage(
        &self,
        host: &Host,
        conn: &dyn RemoteHost,
        batch: usize,
        staged_sha: Option<&str>,
        part_size: u64,
        target: &str,
    ) -> Result<(), String> {
        let t = Instant::now();
        let r = &self.release;
        let p = &r.playbook;
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Stage,
        });
        if matches!(self.mode, Mode::Rollback { .. }) {
            // Preflight checked that the release is on the host.
            self.step_done(
                batch,
                &host.name,
                Step::Stage,
                Status::Skipped,
                t,
                format!("{target} is on the host"),
            );
            return Ok(());
        }
        if staged_sha == Some(r.sha256.as_str()) {
            self.step_done(
                batch,
                &host.name,
                Step::Stage,
                Status::Skipped,
                t,
                "already staged with the same sha256",
            );
            return Ok(());
        }
        let root = &p.layout.root;
        let part = r.part_path();
        let rel = r.release_dir(&p.version);
        // After the transfer, in the same shell: check the sha256, unpack into a fresh directory,
        // mark it with the checksum and rename it into place (a release folder another tool
        // left, without the marker, is replaced unless it is live). One channel and one shell.
        let stage = |how: Transfer<'_>| {
            crate::remote::stage_format(
                root,
                &p.version,
                &r.sha256,
                how,
                p.rollout.stage_bandwidth,
                p.artifact.store.format,
            )
            .to_command()
        };
        let result = async {
            if staged_sha.is_some() {
                return Err(format!(
                    "{rel} already exists with another sha256 ({}); remove it or release under a new version",
                    staged_sha.unwrap_or_default()
                ));
            }
            let bw = p.rollout.stage_bandwidth;
            let (via, out) = match &p.artifact.source {
                ArtifactSource::Path(local) => {
                    // An upload cut earlier goes on from where it stopped, if what is there is
                    // the start of this artifact.
                    let size = r.artifact_size.unwrap_or(0);
                    let offset = resumable(conn, local, &part, part_size, size).await;
                    let resumed = match offset {
                        0 => String::new(),
                        n => format!(", resumed at {}", crate::units::human_size(n)),
                    };
                    // SFTP, whose acknowledged writes keep few bytes in flight (cheaper for
                    // sshd, see `upload_sftp`), then the check in one exec. Under `become`, or
                    // without an SFTP server, through the stdin of `sudo`/`sh` into `cat`, with
                    // the check in the same shell.
                    let sftp = if conn.becomes_root() {
                        None
                    } else {
                        match conn.upload(local, &part, offset, bw, UPLOAD_TIMEOUT).await {
                            Ok(()) => Some(()),
                            Err(RemoteError::NoSftp(why)) => {
                                self.event(EventKind::Warning {
                                    host: Some(host.name.clone()),
                                    msg: format!("no SFTP ({why}); uploading through `cat`"),
                                });
                                None
                            }
                            Err(e) => return Err(format!("uploading: {e}")),
                        }
                    };
                    match sftp {
                        Some(()) => {
                            let out = conn
                                .exec(&stage(Transfer::Sftp), STEP_TIMEOUT)
                                .await
                                .map_err(|e| e.to_string())?;
                            (format!("sftp{resumed}"), out)
                        }
                        None => {
                            let out = conn
                                .exec_with_input(&stage(Transfer::Stdin { offset }), local, offset, bw, UPLOAD_TIMEOUT)
                                .await
                                .map_err(|e| format!("uploading: {e}"))?;
                            (format!("exec{resumed}"), out)
                        }
                    }
                }
                ArtifactSource::Url(u) if p.artifact.store.auth != StoreAuth::None => {
                    // The URL (presigned for S3) and the credentials go to `curl --config -`
                    // on stdin, through a file only this user reads, removed at once.
                    let url = r.render(u, host, &self.run_id, None)?;
                    let fetch =
                        crate::artifact_store::fetch(&url, &p.artifact.store.auth, time::OffsetDateTime::now_utc())?;
                    if let Some(sig) = &fetch.signature {
                        crate::redact::mark_secret(sig);
                    }
                    let config = crate::artifact_store::ConfigFile::write(&fetch.config)
                        .map_err(|e| format!("writing the download's credentials for the host: {e}"))?;
                    let out = conn
                        .exec_with_input(&stage(Transfer::Fetch), config.path(), 0, 0, UPLOAD_TIMEOUT)
                        .await
                        .map_err(|e| format!("downloading: {e}"))?;
                    drop(config);
                    ("pull".to_string(), out)
                }
                ArtifactSource::Image(img) => {
                    let cmd = crate::remote::image::pull(root, &p.version, img, &p.service).to_command();
                    let out = match &img.login {
                        None => conn.exec(&cmd, UPLOAD_TIMEOUT).await,
                        // The registry's password on stdin, from a file only this user reads.
                        Some(login) => {
                            let file = crate::artifact_store::ConfigFile::write(&login.password)
                                .map_err(|e| format!("writing the registry's password for the host: {e}"))?;
                            let out = conn.exec_with_input(&cmd, file.path(), 0, 0, UPLOAD_TIMEOUT).await;
                            drop(file);
                            out
                        }
                    }
                    .map_err(|e| format!("pulling the image: {e}"))?;
                    let runtime = crate::remote::image::parse_runtime(&out.stdout).unwrap_or_default();
                    (runtime, out)
                }
                ArtifactSource::Url(u) => {
                    let url = r.render(u, host, &self.run_id, None)?;
                    let cmd = stage(Transfer::Pull { url: &url });
                    let out = conn
                        .exec(&cmd, UPLOAD_TIMEOUT)
                        .await
                        .map_err(|e| format!("downloading: {e}"))?;
                    ("pull".to_string(), out)
                }
            };
            if !out.success() {
                return Err(match HostExit::of(&out) {
                    Some(HostExit::PartChanged) => format!("{}; the next run uploads it again", out.describe()),
                    _ => out.describe(),
                });
            }
            Ok((via, crate::remote::parse_staged(&out.stdout)))
        }
        .await;
        match &result {
            Ok((via, staged)) => {
                let note = match (r.artifact_size, &p.artifact.source) {
                    (_, ArtifactSource::Image(img)) => {
                        format!("{} pulled by {via} on the host, digest verified", img.short())
                    }
                    (Some(size), _) => format!("{} sent over {via}, sha256 verified", crate::units::human_size(size)),
                    (None, _) => "downloaded by the host, sha256 verified".into(),
                };
                let note = match staged {
                    Some(crate::remote::Staged::Adopted) => {
                        format!("{note}; the live {rel} was this artifact already: marked, left in place")
                    }
                    _ => note,
                };
                self.step_done(batch, &host.name, Step::Stage, Status::Ok, t, note)
            }
            Err(e) => self.step_done(batch, &host.name, Step::Stage, Status::Failed, t, e.clone()),
        }
        result.map(|_| ())
    }
}

/// How many bytes of `local` the host already has in `part` (an upload cut earlier, `n` bytes
/// long at preflight): `n`, when those bytes have the same sha256 as the start of the local
/// file; 0 otherwise.
async fn resumable(conn: &dyn RemoteHost, local: &std::path::Path, part: &str, n: u64, size: u64) -> u64 {
    if n == 0 || n >= size {
        return 0;
    }
    let cmd = crate::remote::hash(part).to_command();
    let Ok(out) = conn.exec(&cmd, STEP_TIMEOUT).await else {
        return 0;
    };
    let remote = crate::remote::parse_hash(&out.stdout).unwrap_or_default();
    let path = local.to_path_buf();
    let local_hash = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open(path)?.take(n);
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()))
    })
    .await;
    match local_hash {
        Ok(Ok(h)) if out.success() && !remote.is_empty() && h == remote => n,
        _ => 0,
    }
}
