//! Who runs tranche, and on which machine: the lock owner, `%u` in ssh config, and the
//! operator and controller of a run's record and of each host's history.

/// The name of the user running tranche: `$USER`, `$LOGNAME`, or `id -un`.
pub fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let out = std::process::Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The name of the machine running tranche (the controller): the kernel's host name, or
/// `$HOSTNAME`.
pub fn controller_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
