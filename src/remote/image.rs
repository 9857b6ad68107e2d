//! The host-side commands of a container image artifact (`image.sh`): detect the runtime, pull by
//! digest and verify, start the image a release records, stop the service's containers, read the
//! live image. Lists (the runtime's global options, the `run` options, the command) travel as one
//! argument each, one word per line: the controller refuses words holding a line break.

use super::{field, RemoteCommand};
use crate::playbook::Image;

const IMAGE: &str = include_str!("image.sh");

/// Exit of `image.sh`: the host has no container runtime (or not the one asked for).
pub const NO_RUNTIME: u32 = 20;
/// Exit of `image.sh`: `run` failed.
pub const RUN_FAILED: u32 = 21;

/// A list as `image.sh` takes it; `Err` names the first word with a line break (or empty).
pub fn lines(words: &[String]) -> Result<String, String> {
    if let Some(w) = words.iter().find(|w| w.is_empty() || w.contains(['\n', '\r'])) {
        return Err(format!(
            "the value \"{}\" is empty or holds a line break, which a container option cannot",
            w.escape_debug()
        ));
    }
    Ok(words.join("\n"))
}

fn cmd(action: &str, root: &str, version: &str, image: &Image, service: &str, rest: &[String]) -> RemoteCommand {
    let mut args = vec![
        action.to_string(),
        root.to_string(),
        version.to_string(),
        image.runtime.as_str().to_string(),
        service.to_string(),
        // Checked when the playbook loaded (no control character).
        image.runtime_args.join("\n"),
    ];
    args.extend(rest.iter().cloned());
    RemoteCommand::new(IMAGE, args)
}

/// Which runtime the host has: prints `runtime=NAME`; exit [`NO_RUNTIME`] when none.
pub fn detect(root: &str, image: &Image, service: &str) -> RemoteCommand {
    cmd("detect", root, "", image, service, &[])
}

/// Pull the pinned image, check its digest, record it as `releases/<version>`. Prints
/// `staged=pulled` and `runtime=NAME`. Named exits: `DownloadFailed` (the pull, or the login
/// before it, failed), `ShaMismatch` (the pulled image does not have the planned digest),
/// `LiveDiffers`. With `artifact.login`, the command's stdin is the password: the script logs
/// in with `--password-stdin` into an auth file only its user reads, pulls with it, and removes
/// it, so the password is on no command line and does not stay on the host.
pub fn pull(root: &str, version: &str, image: &Image, service: &str) -> RemoteCommand {
    let rest = [
        if image.insecure { "1" } else { "0" }.to_string(),
        image.pinned(),
        image.digest_hex().to_string(),
        image.login.as_ref().map(|l| l.username.clone()).unwrap_or_default(),
        image.registry().to_string(),
    ];
    cmd("pull", root, version, image, service, &rest)
}

/// The `run` options of the default start: `--network`, `-p`, `-v`, then `run_args`. The `env`
/// values are not options: they travel on stdin ([`env_file`]), never on a command line.
pub fn run_options(image: &Image) -> Vec<String> {
    let mut o = Vec::new();
    if let Some(n) = &image.network {
        o.push(format!("--network={n}"));
    }
    for p in &image.ports {
        o.push(format!("--publish={p}"));
    }
    for v in &image.volumes {
        o.push(format!("--volume={v}"));
    }
    o.extend(image.run_args.iter().cloned());
    o
}

/// Start the image `releases/<version>` records as the container `<service>-<version>` (a
/// stopped one of that name is replaced), then prune the containers and images of releases no
/// longer on the host. Prints `container=NAME ID` and `image=REF`. With `env_on_stdin`, the
/// command's stdin is an [`env_file`]: the script keeps it in a file only its user reads,
/// passes it as `--env-file`, and removes it once `run` returned, so that no value is on a
/// command line (the SSH exec's, or the runtime's) where the host's process list shows it.
pub fn start(
    root: &str,
    version: &str,
    image: &Image,
    service: &str,
    options: &[String],
    command: &[String],
    env_on_stdin: bool,
) -> Result<RemoteCommand, String> {
    let envin = if env_on_stdin { "1" } else { "0" }.to_string();
    let rest = [lines(options)?, lines(command)?, envin];
    Ok(cmd("start", root, version, image, service, &rest))
}

/// The `env` values as the runtime's `--env-file` reads them: `KEY=VALUE` a line, taken as
/// written (no quotes, no expansion). A value with a line break cannot be one line: refused.
pub fn env_file(env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    for (k, v) in env {
        if k.contains(['\n', '\r', '=']) || v.contains(['\n', '\r']) {
            return Err(format!(
                "`artifact.env.{k}` holds a line break (or its name an `=`): it cannot be passed"
            ));
        }
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

/// Stop the running containers of `service`, waiting `secs` for each before it is killed.
pub fn stop(root: &str, image: &Image, service: &str, secs: u64) -> RemoteCommand {
    cmd("stop", root, "", image, service, &[secs.to_string()])
}

/// The image of the release `current` resolves to: prints `image=REF` (none without one).
pub fn live(root: &str, image: &Image, service: &str) -> RemoteCommand {
    cmd("live", root, "", image, service, &[])
}

/// `image=REF` of `start` or `live`.
pub fn parse_image(stdout: &str) -> Option<String> {
    field(stdout, "image")
}

/// `runtime=NAME` of `detect` or `pull`.
pub fn parse_runtime(stdout: &str) -> Option<String> {
    field(stdout, "runtime")
}

/// `NAME@sha256:0123456789ab`: a reference with its digest cut to 12 digits, for people.
pub fn short_ref(r: &str) -> String {
    match r.split_once("@sha256:") {
        // What a host recorded may be anything: cut on a character boundary only.
        Some((n, d)) if d.len() > 12 && d.is_char_boundary(12) => format!("{n}@sha256:{}", &d[..12]),
        _ => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_word_with_a_line_break_is_refused() {
        assert_eq!(lines(&["-p".into(), "80:80".into()]).unwrap(), "-p\n80:80");
        assert!(lines(&["A=1\n--privileged".into()]).is_err());
        assert!(lines(&[String::new()]).is_err());
    }

    #[test]
    fn references_are_shortened_for_people() {
        let d = "a6f64eca8dbff1ae2f7b80f966dd87af38f129ac78d1e915a2c4870879da0bc0";
        assert_eq!(
            short_ref(&format!("r:5000/demo@sha256:{d}")),
            "r:5000/demo@sha256:a6f64eca8dbf"
        );
        // A host's hostile record does not panic the controller.
        assert_eq!(short_ref("r@sha256:0123456789aé0123"), "r@sha256:0123456789aé0123");
    }
}
