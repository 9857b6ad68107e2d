//! A container image as the artifact, in the host pipeline: the runtime checked at preflight,
//! the default stop (the service's running containers) and start (the image the release folder
//! records, so that a revert or a rollback starts the previous image). Staging is the pull, in
//! `stage.rs`, under the same fleet-wide limit as a tarball.

use super::host::StepFailure;
use super::STEP_TIMEOUT;
use crate::inventory::Host;
use crate::playbook::{Image, Playbook};
use crate::release::Release;
use crate::remote::image as remote;
use crate::remote::RemoteHost;

/// The host has the runtime the image needs.
pub(super) async fn preflight(conn: &dyn RemoteHost, img: &Image, p: &Playbook) -> Result<(), String> {
    let cmd = remote::detect(&p.layout.root, img, &p.service).to_command();
    let out = conn.exec(&cmd, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(());
    }
    Err(match out.status {
        Some(remote::NO_RUNTIME) => format!(
            "{}; install podman or docker on the host, or name the one it has in `artifact.runtime`",
            out.stderr.trim().lines().last().unwrap_or("no container runtime")
        ),
        _ => format!("checking the container runtime: {}", out.describe()),
    })
}

/// Stop the service's running containers (`stop --time <stop.timeout>`).
pub(super) async fn stop(conn: &dyn RemoteHost, img: &Image, p: &Playbook) -> Result<String, String> {
    let secs = p.stop.timeout.as_secs().max(1);
    let cmd = remote::stop(&p.layout.root, img, &p.service, secs).to_command();
    let out = conn
        .exec(&cmd, p.stop.timeout + STEP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.describe());
    }
    let n = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopped="))
        .unwrap_or("0")
        .trim()
        .to_string();
    Ok(match n.as_str() {
        "0" => "no container of the service was running".to_string(),
        "1" => "stopped its container".to_string(),
        n => format!("stopped its {n} containers"),
    })
}

/// Render one of the operator's own commands (`stop.command`, `stop.kill_command`,
/// `start.command`, `hooks.after_start`) for `host`. With an image as the artifact, `{{ image }}`
/// is the image of the release `current` resolves to when the step runs, as the host recorded
/// it: the image being stopped, or the one being started, which on a revert or a rollback is
/// the previous release's and not the playbook's. A host without a record (a release from
/// before images) gets the playbook's; a record that is not a pinned reference is refused.
pub(super) async fn render_command(
    r: &Release,
    conn: &dyn RemoteHost,
    host: &Host,
    run_id: &str,
    previous: Option<&str>,
    t: &crate::playbook::Template,
) -> Result<String, StepFailure> {
    let crate::playbook::ArtifactSource::Image(img) = &r.playbook.artifact.source else {
        return Ok(r.render(t, host, run_id, previous)?);
    };
    if !t.source.contains("image") {
        return Ok(r.render(t, host, run_id, previous)?);
    }
    let p = &r.playbook;
    let out = conn
        .exec(
            &remote::live(&p.layout.root, img, &p.service).to_command(),
            STEP_TIMEOUT,
        )
        .await?;
    if !out.success() {
        return Err(format!("reading the image of the current release: {}", out.describe()).into());
    }
    match remote::parse_image(&out.stdout) {
        None => Ok(r.render(t, host, run_id, previous)?),
        Some(recorded) => {
            let pinned = matches!(crate::playbook::parse_reference(&recorded), Ok((_, _, Some(_))));
            if !pinned {
                return Err(format!(
                    "the current release records the image {:?}, which is not a reference pinned by digest",
                    recorded.escape_debug().to_string()
                )
                .into());
            }
            Ok(r.render_with_image(t, host, run_id, previous, &recorded)?)
        }
    }
}

/// What `run` gets for a host.
pub(super) struct RunParts {
    /// The playbook's options.
    pub options: Vec<String>,
    /// The words after the image, rendered for the host.
    pub command: Vec<String>,
    /// The `env` values rendered for the host (for `--env-file`, on stdin).
    pub env: Vec<(String, String)>,
}

/// What `run` gets for `host`.
pub(super) fn options(
    r: &Release,
    host: &Host,
    run_id: &str,
    img: &Image,
    previous: Option<&str>,
) -> Result<RunParts, String> {
    let mut env = Vec::new();
    for (k, t) in &img.env {
        env.push((k.clone(), r.render(t, host, run_id, previous)?));
    }
    let command = img
        .command
        .iter()
        .map(|t| r.render(t, host, run_id, previous))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunParts {
        options: remote::run_options(img),
        command,
        env,
    })
}

/// Start `releases/<version>`'s image as `<service>-<version>`, then `hooks.after_start`.
pub(super) async fn start(
    r: &Release,
    conn: &dyn RemoteHost,
    host: &Host,
    run_id: &str,
    img: &Image,
    version: &str,
) -> Result<String, StepFailure> {
    let p = &r.playbook;
    let RunParts {
        options: opts,
        command,
        env,
    } = options(r, host, run_id, img, None)?;
    let cmd = remote::start(
        &p.layout.root,
        version,
        img,
        &p.service,
        &opts,
        &command,
        !env.is_empty(),
    )?
    .to_command();
    let out = if env.is_empty() {
        conn.exec(&cmd, STEP_TIMEOUT).await?
    } else {
        // The values reach the host on stdin, from a file only this user reads, removed after.
        let file = crate::artifact_store::ConfigFile::write(&remote::env_file(&env)?)
            .map_err(|e| format!("writing the container's env for the host: {e}"))?;
        let out = conn.exec_with_input(&cmd, file.path(), 0, 0, STEP_TIMEOUT).await?;
        drop(file);
        out
    };
    if !out.success() {
        return Err(StepFailure {
            msg: out.describe(),
            stderr: Some(out.stderr_tail(20)).filter(|s| !s.is_empty()),
            hint: None,
            may_have_acted: true,
        });
    }
    if let Some(after) = &p.hooks.after_start {
        let a = r.render(after, host, run_id, None)?;
        let out2 = conn.exec(&a, STEP_TIMEOUT).await?;
        if !out2.success() {
            return Err(format!("hooks.after_start failed: {}", out2.describe()).into());
        }
    }
    let image = remote::parse_image(&out.stdout).unwrap_or_default();
    let pruned = out.stdout.lines().filter(|l| l.starts_with("pruned=")).count();
    let pruned = match pruned {
        0 => String::new(),
        n => format!(
            "; removed {n} container{} of pruned releases",
            if n == 1 { "" } else { "s" }
        ),
    };
    Ok(format!(
        "started {}-{version} from {}{pruned}",
        p.service,
        remote::short_ref(&image)
    ))
}
