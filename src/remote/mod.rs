//! Every command tranche runs on a host, as constant script text with its arguments, its output
//! parser and its named exit codes. Values (roots, versions, URLs, run ids, owners) reach a
//! script only as positional arguments, each quoted once by [`quote`]: what is sent is
//! `sh -c '<constant script>' tranche 'v1' 'v2' ...`, and [`RemoteCommand::to_command`] is the one
//! place that assembles it. No script is ever built from values.
//!
//! The scripts run under any POSIX shell a host has (dash, BusyBox `sh` with only BusyBox on the
//! `PATH`, bash), are `shellcheck -s sh` clean, and are tested against temporary layouts under
//! all three in `tests/remote_scripts.rs`.

pub mod bluegreen;
pub mod history;
mod host;
pub mod image;
pub mod lock;
mod output;

pub use crate::quote::quote;
pub use host::{RemoteError, RemoteFuture, RemoteHost};
pub use output::ExecOutput;

/// Functions every script starts with (`die`, `resolved`, `holds`, `low`, `sha256`, locks).
const COMMON: &str = include_str!("common.sh");

/// A script and its arguments, as it runs on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    /// The script's own text (without the common functions).
    pub script: &'static str,
    pub args: Vec<String>,
}

impl RemoteCommand {
    fn new(script: &'static str, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        RemoteCommand {
            script,
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The whole program text `sh -c` runs: the common functions, then the script.
    pub fn program(&self) -> String {
        format!("{COMMON}{}", self.script)
    }

    /// The program as it is sent: without its comment lines and blank lines. Dropbear refuses a
    /// command line longer than 9,000 bytes (its `MAX_CMD_LEN`), and the comments are most of
    /// the text past it. No script has a line starting with `#` inside a quoted string.
    pub fn sent_program(&self) -> String {
        let mut out = String::with_capacity(COMMON.len() + self.script.len());
        for line in self.program().lines() {
            let code = line.trim_start();
            if code.is_empty() || code.starts_with('#') {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The command line sent to the host: `sh -c '<program>' tranche 'arg1' 'arg2' ...`, the
    /// program as [`RemoteCommand::sent_program`] gives it.
    pub fn to_command(&self) -> String {
        let mut cmd = format!("sh -c {} tranche", quote(&self.sent_program()));
        for a in &self.args {
            cmd.push(' ');
            cmd.push_str(&quote(a));
        }
        cmd
    }
}

/// The exit codes of the scripts (see the table in `common.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostExit {
    /// The layout root cannot be created or written.
    Layout,
    /// The artifact's sha256 is not the one expected.
    ShaMismatch,
    /// The live release was not put there by tranche and differs from the artifact.
    LiveDiffers,
    /// The part of a cut upload changed since preflight.
    PartChanged,
    /// The host could not download the artifact.
    DownloadFailed,
    /// Under become, a directory root writes into is writable by another user.
    Untrusted,
    /// The lock is gone or held by another run.
    NotOurs,
    /// Another run won the lock.
    LockLost,
    /// The release to switch to is not on the host.
    NoRelease,
    /// Neither curl nor wget is installed.
    NoDownloader,
    /// A value a script refuses (a history field with a tab or a line break).
    BadValue,
    /// A program staging needs is missing (preflight prints `missing=NAMES`).
    MissingTools,
    /// Unpacking the verified artifact failed.
    Unpack,
}

impl HostExit {
    pub const ALL: [HostExit; 13] = [
        HostExit::Layout,
        HostExit::ShaMismatch,
        HostExit::LiveDiffers,
        HostExit::PartChanged,
        HostExit::DownloadFailed,
        HostExit::Untrusted,
        HostExit::NotOurs,
        HostExit::LockLost,
        HostExit::NoRelease,
        HostExit::NoDownloader,
        HostExit::BadValue,
        HostExit::MissingTools,
        HostExit::Unpack,
    ];

    pub const fn code(self) -> u32 {
        match self {
            HostExit::Layout => 10,
            HostExit::ShaMismatch => 11,
            HostExit::LiveDiffers => 12,
            HostExit::PartChanged => 13,
            HostExit::DownloadFailed => 14,
            HostExit::Untrusted => 15,
            HostExit::NotOurs => 16,
            HostExit::LockLost => 17,
            HostExit::NoRelease => 18,
            HostExit::BadValue => 19,
            HostExit::MissingTools => 20,
            HostExit::Unpack => 21,
            HostExit::NoDownloader => 127,
        }
    }

    pub fn from_code(code: u32) -> Option<HostExit> {
        HostExit::ALL.into_iter().find(|e| e.code() == code)
    }

    /// The named exit of a finished script, if it is one of ours.
    pub fn of(out: &ExecOutput) -> Option<HostExit> {
        out.status.and_then(HostExit::from_code)
    }
}

/// The value of the first `key=value` line, trimmed; `None` when missing or empty.
fn field(stdout: &str, key: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The last component of a path (`/srv/app/releases/2.0.0/` -> `2.0.0`).
fn base(path: &str) -> String {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------------------------
// Preflight.

const PREFLIGHT: &str = include_str!("preflight.sh");

/// Preflight in one round trip: the layout (created unless `check`), what is there, the free
/// space, the lock (taken, or only looked at for a check) and where `current` resolves to.
/// `become_root`: refuse directories another user could write to (root would write there).
pub fn preflight(
    root: &str,
    version: &str,
    sha256: &str,
    check: bool,
    become_root: bool,
    owner: &str,
) -> RemoteCommand {
    preflight_needing(root, version, sha256, check, become_root, owner, &[])
}

/// [`preflight`], with `needs`: the programs staging needs (`zstd`, `curl`), checked first:
/// when one is missing the script prints `missing=NAMES` and exits `MissingTools` before it
/// creates or locks anything.
pub fn preflight_needing(
    root: &str,
    version: &str,
    sha256: &str,
    check: bool,
    become_root: bool,
    owner: &str,
    needs: &[&str],
) -> RemoteCommand {
    let needs = needs.join(" ");
    RemoteCommand::new(
        PREFLIGHT,
        [
            root,
            version,
            sha256,
            if check { "check" } else { "release" },
            if become_root { "1" } else { "0" },
            owner,
            &needs,
        ],
    )
}

/// What preflight printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreflightReport {
    /// The checksum recorded in `releases/<version>` when it is already there.
    pub staged: Option<String>,
    /// What `.tranche-previous` says.
    pub previous: Option<String>,
    /// The releases on the host, sorted.
    pub releases: Vec<String>,
    /// The size of a cut upload or download of this artifact (0: none).
    pub part: u64,
    /// Free space in KiB where the layout is.
    pub avail_kib: Option<u64>,
    /// The release `current` resolves to.
    pub current: Option<String>,
    /// The programs staging needs that the host lacks (then nothing else was looked at).
    pub missing: Vec<String>,
    pub lock: lock::LockReport,
}

impl PreflightReport {
    pub fn parse(stdout: &str) -> PreflightReport {
        let mut releases: Vec<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("release="))
            .map(base)
            .filter(|r| !r.is_empty() && !r.ends_with(".tmp"))
            .collect();
        releases.sort();
        // `df -Pk`: the header, then one line whose fourth field is the free space in KiB.
        let avail_kib = stdout
            .lines()
            .skip_while(|l| !l.starts_with("Filesystem"))
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|a| a.parse::<u64>().ok());
        PreflightReport {
            staged: field(stdout, "staged"),
            previous: field(stdout, "previous"),
            releases,
            part: field(stdout, "part").and_then(|n| n.parse().ok()).unwrap_or(0),
            avail_kib,
            current: field(stdout, "current").map(|c| base(&c)).filter(|c| !c.is_empty()),
            missing: field(stdout, "missing")
                .map(|m| m.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            lock: lock::LockReport::parse(stdout),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Staging.

const STAGE: &str = include_str!("stage.sh");
const HASH: &str = include_str!("hash.sh");

/// How the artifact reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer<'a> {
    /// Already written over SFTP: only check and unpack.
    Sftp,
    /// On the command's stdin, appended to a cut upload of `offset` bytes (0: from the start).
    Stdin { offset: u64 },
    /// Downloaded by the host from `url`.
    Pull { url: &'a str },
    /// Downloaded by the host's `curl` from what its config on stdin says (an artifact store's
    /// credentials, a presigned URL): nothing secret on the command line.
    Fetch,
}

/// Stage the artifact (`sha256`) into `root/releases/version`, then print `staged=unpacked`
/// (or `staged=adopted`: the live release without a marker was the artifact). `bandwidth`: bytes
/// per second for downloads, 0 for no limit. Named exits: `ShaMismatch`, `LiveDiffers`,
/// `PartChanged`, `DownloadFailed`, `NoDownloader`.
pub fn stage(root: &str, version: &str, sha256: &str, how: Transfer, bandwidth: u64) -> RemoteCommand {
    stage_format(
        root,
        version,
        sha256,
        how,
        bandwidth,
        crate::playbook::ArtifactFormat::TarGz,
    )
}

/// [`stage`] of an archive in `format` (`tar.gz`, `tar.zst`: `zstd -dc | tar -xf -`). More
/// named exits: `MissingTools` (no curl for `Fetch`), `Unpack`.
pub fn stage_format(
    root: &str,
    version: &str,
    sha256: &str,
    how: Transfer,
    bandwidth: u64,
    format: crate::playbook::ArtifactFormat,
) -> RemoteCommand {
    let (how, offset, url) = match how {
        Transfer::Sftp => ("sftp", 0, ""),
        Transfer::Stdin { offset } => ("cat", offset, ""),
        Transfer::Pull { url } => ("pull", 0, url),
        Transfer::Fetch => ("fetch", 0, ""),
    };
    RemoteCommand::new(
        STAGE,
        [
            root.to_string(),
            version.to_string(),
            sha256.to_string(),
            how.to_string(),
            offset.to_string(),
            url.to_string(),
            bandwidth.to_string(),
            format.name().to_string(),
        ],
    )
}

/// What `stage` did with the verified artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// Unpacked into a new `releases/<version>`.
    Unpacked,
    /// The live `releases/<version>` (without a marker) was the artifact: marked, left in place.
    Adopted,
}

/// What `stage` printed (`staged=unpacked|adopted`); `None` when it did not finish.
pub fn parse_staged(stdout: &str) -> Option<Staged> {
    match field(stdout, "staged").as_deref() {
        Some("unpacked") => Some(Staged::Unpacked),
        Some("adopted") => Some(Staged::Adopted),
        _ => None,
    }
}

/// The sha256 of a cut upload at `part`: prints `sha256=HEX`.
pub fn hash(part: &str) -> RemoteCommand {
    RemoteCommand::new(HASH, [part])
}

/// What `hash` printed.
pub fn parse_hash(stdout: &str) -> Option<String> {
    field(stdout, "sha256").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------------------
// Switch, status, HAProxy.

const SWITCH: &str = include_str!("switch.sh");
const STATUS: &str = include_str!("status.sh");
const HAPROXY: &str = include_str!("haproxy.sh");

/// Point `current` at `releases/version`, record `came_from` in `.tranche-previous`, prune
/// releases beyond the `keep` newest (never `version`, `keep_too`, nor the live one). Prints
/// `current=PATH`. Named exit: `NoRelease`.
pub fn switch(root: &str, version: &str, keep: usize, keep_too: &str, came_from: &str) -> RemoteCommand {
    RemoteCommand::new(
        SWITCH,
        [
            root.to_string(),
            version.to_string(),
            keep.to_string(),
            keep_too.to_string(),
            came_from.to_string(),
        ],
    )
}

/// Where `root/current` resolves to: prints `current=PATH`.
pub fn status(root: &str) -> RemoteCommand {
    RemoteCommand::new(STATUS, [root])
}

/// The release `current` resolves to, from what `status` or `switch` printed.
pub fn parse_current(stdout: &str) -> Option<String> {
    field(stdout, "current").map(|c| base(&c)).filter(|c| !c.is_empty())
}

/// One command to HAProxy's runtime API through the Unix socket `socket` on the host.
pub fn haproxy(socket: &str, command: &str) -> RemoteCommand {
    RemoteCommand::new(HAPROXY, [socket, command])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropbear refuses a command line past 9,000 bytes (`MAX_CMD_LEN`): every script, sent,
    /// leaves at least 1,500 bytes of it to the arguments. A stage of a `.tar.zst` to a Dropbear
    /// host failed with "Channel send error" when the comments were sent too.
    #[test]
    fn every_script_fits_dropbears_command_line() {
        let scripts = [
            ("preflight", PREFLIGHT),
            ("stage", STAGE),
            ("hash", HASH),
            ("switch", SWITCH),
            ("status", STATUS),
            ("haproxy", HAPROXY),
            ("lock", include_str!("lock.sh")),
            ("history", include_str!("history.sh")),
            ("image", include_str!("image.sh")),
            ("bluegreen", include_str!("bluegreen.sh")),
        ];
        for (name, script) in scripts {
            let len = RemoteCommand::new(script, Vec::<String>::new()).to_command().len();
            assert!(len <= 7500, "{name}.sh is {len} bytes as sent");
        }
    }

    #[test]
    fn values_are_arguments_never_script_text() {
        let evil = "x'; touch /tmp/pwned; echo '$(id)`id`\n";
        let cmd = stage("/srv/app", evil, "ab", Transfer::Pull { url: evil }, 0);
        // The script text is the constant, whatever the values.
        assert_eq!(cmd.script, STAGE);
        assert!(cmd
            .to_command()
            .starts_with(&format!("sh -c {} tranche ", quote(&cmd.sent_program()))));
        assert_eq!(cmd.args[1], evil);
        assert_eq!(cmd.args[5], evil);
    }

    #[test]
    fn exit_codes_round_trip_and_are_distinct() {
        for e in HostExit::ALL {
            assert_eq!(HostExit::from_code(e.code()), Some(e));
        }
        assert_eq!(HostExit::from_code(0), None);
        assert_eq!(HostExit::from_code(1), None);
    }

    #[test]
    fn preflight_output_is_parsed() {
        let out = "staged=abc\nprevious=1.0.0\nrelease=/srv/a/releases/1.0.0/\nrelease=/srv/a/releases/0.9/\n\
                   release=/srv/a/releases/2.0.0.tmp/\npart=  1234\n\
                   Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 100 50 42 50% /\n\
                   lock=held\nowner.run=r1\nowner.operator=al\nowner.controller=c\nowner.started=s\nowner.expires=9\n\
                   current=/srv/a/releases/1.0.0\n";
        let r = PreflightReport::parse(out);
        assert_eq!(r.staged.as_deref(), Some("abc"));
        assert_eq!(r.previous.as_deref(), Some("1.0.0"));
        assert_eq!(r.releases, vec!["0.9", "1.0.0"]);
        assert_eq!(r.part, 1234);
        assert_eq!(r.avail_kib, Some(42));
        assert_eq!(r.current.as_deref(), Some("1.0.0"));
        assert_eq!(r.lock.state, lock::LockState::Held);
        assert_eq!(r.lock.owner.map(|o| o.run).as_deref(), Some("r1"));
        let empty = PreflightReport::parse("previous=\nlock=acquired\n");
        assert_eq!(empty.previous, None);
        assert_eq!(empty.current, None);
        assert_eq!(empty.lock.state, lock::LockState::Acquired);
    }

    #[test]
    fn hash_output_is_checked() {
        let h = "a".repeat(64);
        assert_eq!(parse_hash(&format!("sha256={h}\n")), Some(h));
        assert_eq!(parse_hash("sha256=zz\n"), None);
        assert_eq!(
            parse_current("current=/srv/a/releases/2.0.0\n").as_deref(),
            Some("2.0.0")
        );
        assert_eq!(parse_current("current=\n"), None);
        assert_eq!(parse_staged("staged=adopted\n"), Some(Staged::Adopted));
        assert_eq!(parse_staged("staged=unpacked\n"), Some(Staged::Unpacked));
        assert_eq!(parse_staged(""), None);
    }
}
