//! `ansible.cfg`, found the way Ansible finds it, for the few settings an operator expects
//! tranche to share with Ansible: `inventory`, `remote_user` and `private_key_file` of
//! `[defaults]`. Never for weaker host-key checking: `host_key_checking = False` is ignored, and
//! said so.

use std::path::{Path, PathBuf};

/// What tranche takes from an `ansible.cfg`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnsibleCfg {
    pub path: PathBuf,
    /// `inventory`: comma-separated sources, relative to the file's folder.
    pub inventory: Vec<PathBuf>,
    pub remote_user: Option<String>,
    pub private_key_file: Option<PathBuf>,
    /// `host_key_checking` is off there: tranche checks host keys anyway, and warns.
    pub host_key_checking_off: bool,
}

/// The file Ansible would read: `$ANSIBLE_CONFIG`, `./ansible.cfg` (unless the current folder
/// is world-writable, as Ansible refuses it then), `~/.ansible.cfg`, `/etc/ansible/ansible.cfg`.
pub fn find(cwd: &Path, home: Option<&Path>, env: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        let p = if p.is_dir() { p.join("ansible.cfg") } else { p };
        if p.is_file() {
            return Some(p);
        }
    }
    let local = cwd.join("ansible.cfg");
    if local.is_file() && !world_writable(cwd) {
        return Some(local);
    }
    if let Some(h) = home {
        let p = h.join(".ansible.cfg");
        if p.is_file() {
            return Some(p);
        }
    }
    Some(PathBuf::from("/etc/ansible/ansible.cfg")).filter(|p| p.is_file())
}

fn world_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}

/// Read the file at `path`. `home` expands a leading `~/`.
pub fn load(path: &Path, home: Option<&Path>) -> Result<AnsibleCfg, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(parse(&text, path, home))
}

/// The `[defaults]` settings tranche uses; every other section and key is Ansible's alone.
pub fn parse(text: &str, path: &Path, home: Option<&Path>) -> AnsibleCfg {
    let base = path.parent().unwrap_or(Path::new("."));
    let expand = |v: &str| -> PathBuf {
        match (v.strip_prefix("~/"), home) {
            (Some(rest), Some(h)) => h.join(rest),
            _ => base.join(v),
        }
    };
    let mut cfg = AnsibleCfg {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let mut in_defaults = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_defaults = section.trim() == "defaults";
            continue;
        }
        if !in_defaults {
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            continue;
        };
        // An inline comment starts with ` ;` or ` #` (Python's configparser as Ansible sets it).
        let value = value
            .split(" ;")
            .next()
            .unwrap_or("")
            .split(" #")
            .next()
            .unwrap_or("")
            .trim();
        match key.trim() {
            "inventory" | "hostfile" => {
                cfg.inventory = value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(expand)
                    .collect()
            }
            "remote_user" if !value.is_empty() => cfg.remote_user = Some(value.to_string()),
            "private_key_file" if !value.is_empty() => cfg.private_key_file = Some(expand(value)),
            "host_key_checking" => {
                cfg.host_key_checking_off = matches!(value.to_ascii_lowercase().as_str(), "false" | "no" | "0" | "off")
            }
            _ => {}
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_tranche_uses() {
        let text = "# ansible.cfg\n[defaults]\ninventory = hosts.ini, ./more/ ; two sources\nremote_user=deploy\nprivate_key_file = ~/.ssh/deploy_ed25519\nhost_key_checking = False\nforks = 20\n\n[ssh_connection]\nremote_user = nobody\n";
        let cfg = parse(text, Path::new("/repo/ansible.cfg"), Some(Path::new("/home/op")));
        assert_eq!(
            cfg.inventory,
            [PathBuf::from("/repo/hosts.ini"), PathBuf::from("/repo/./more/")]
        );
        assert_eq!(cfg.remote_user.as_deref(), Some("deploy"));
        assert_eq!(
            cfg.private_key_file,
            Some(PathBuf::from("/home/op/.ssh/deploy_ed25519"))
        );
        assert!(cfg.host_key_checking_off);
        let none = parse("[defaults]\nhost_key_checking = True\n", Path::new("/a.cfg"), None);
        assert_eq!(none.inventory, Vec::<PathBuf>::new());
        assert!(!none.host_key_checking_off && none.remote_user.is_none());
    }

    #[test]
    fn found_as_ansible_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cwd, home) = (dir.path().join("cwd"), dir.path().join("home"));
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        assert_eq!(find(&cwd, Some(&home), None).filter(|p| !p.starts_with("/etc")), None);
        std::fs::write(home.join(".ansible.cfg"), "").unwrap();
        assert_eq!(find(&cwd, Some(&home), None), Some(home.join(".ansible.cfg")));
        std::fs::write(cwd.join("ansible.cfg"), "").unwrap();
        assert_eq!(find(&cwd, Some(&home), None), Some(cwd.join("ansible.cfg")));
        let env = dir.path().join("env.cfg");
        std::fs::write(&env, "").unwrap();
        assert_eq!(find(&cwd, Some(&home), env.to_str()), Some(env.clone()));
        // A world-writable current folder: its ansible.cfg is not read, as in Ansible.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(find(&cwd, Some(&home), None), Some(home.join(".ansible.cfg")));
    }
}
