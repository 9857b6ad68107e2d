//! The registry presets as the playbook writes them: each one's settings, with the default of
//! each (a template source), or whether it must be given. The HTTP calls a preset makes from
//! its settings are built by `registry::presets`, where requests are made (the README lists
//! the API call of each).

use std::time::Duration;

use super::check;
use super::decoder::Decoder;
use super::registry::{Registry, RegistrySpec};
use crate::yaml::Node;

/// What a preset setting is when the playbook leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// This template source.
    Default(&'static str),
    /// An error: the setting must be given.
    Required,
    /// Left out of the calls.
    Omitted,
}

/// A registry preset: `kind: NAME` and the settings it takes.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    /// Its settings, `address` first, in the order they are checked.
    pub settings: &'static [(&'static str, Unset)],
}

use Unset::{Default, Omitted, Required};

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "consul",
        settings: &[
            ("address", Default("http://{{ host.address }}:8500")),
            ("service_id", Default("{{ service }}")),
        ],
    },
    Preset {
        name: "nacos",
        settings: &[
            ("address", Required),
            ("service_name", Default("{{ service }}")),
            ("ip", Default("{{ host.address }}")),
            ("port", Required),
            ("namespace", Omitted),
            ("group", Omitted),
            ("cluster", Omitted),
        ],
    },
    Preset {
        name: "eureka",
        settings: &[
            ("address", Required),
            ("app", Default("{{ service | upper }}")),
            ("instance_id", Required),
        ],
    },
    Preset {
        name: "dubbo",
        settings: &[
            ("address", Default("http://{{ host.address }}:22222")),
            ("service", Omitted),
        ],
    },
    Preset {
        name: "etcd",
        settings: &[("address", Required), ("key", Required), ("value", Required)],
    },
];

/// The keys every preset takes besides its own settings.
const COMMON: [&str; 5] = ["kind", "address", "token", "drain", "retry"];

impl Decoder<'_> {
    /// A preset's settings, each compiled as a template (a setting left out: its default,
    /// compiled at the `registry` key); `token` goes in a header.
    pub(super) fn preset(&mut self, node: &Node, preset: &'static Preset) -> Option<Registry> {
        let own = preset.settings.iter().map(|(k, _)| *k).filter(|k| *k != "address");
        let allowed: Vec<&str> = COMMON.into_iter().chain(own).collect();
        let m = self.map(node, "registry", &allowed)?;
        let setting = |d: &mut Self, key: &'static str, unset: Unset| -> Option<Option<(&'static str, _)>> {
            let t = match (m.get(key), unset) {
                (Some(n), _) => d.template(n, &format!("registry.{key}"), false)?,
                (None, Default(src)) => match d.templates.add(d.file, node.pos, src, false) {
                    Ok(t) => t,
                    Err(e) => {
                        d.diags.push(e);
                        return None;
                    }
                },
                (None, Required) => {
                    d.required(&m, key, "registry");
                    return None;
                }
                (None, Omitted) => return Some(None),
            };
            Some(Some((key, t)))
        };
        let (address, unset) = preset.settings[0];
        let mut settings: Vec<(&'static str, _)> = setting(self, address, unset)?.into_iter().collect();
        let token = match m.get("token") {
            Some(n) => Some(self.template(n, "registry.token", false)?),
            None => None,
        };
        let drain = match m.get("drain") {
            Some(n) => self.duration(n, "registry.drain", check::WAIT_MAX)?,
            None => Duration::ZERO,
        };
        for &(key, unset) in &preset.settings[1..] {
            settings.extend(setting(self, key, unset)?);
        }
        let mut templates: Vec<_> = settings.iter().map(|(_, t)| t.clone()).collect();
        let mut credentials = vec![];
        if let Some(t) = token {
            templates.push(t.clone());
            credentials.push(("token".to_string(), t.clone()));
            settings.push(("token", t));
        }
        Some(Registry {
            kind: preset.name,
            drain,
            templates,
            credentials,
            ..Registry::of(RegistrySpec::Preset {
                name: preset.name,
                settings,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    fn problems(registry: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.tar.gz"), b"x").unwrap();
        let pb = dir.path().join("playbook.yml");
        let text = format!("service: demo\nversion: \"2.0.0\"\nartifact:\n  path: app.tar.gz\nregistry:\n{registry}");
        std::fs::write(&pb, text).unwrap();
        match super::super::Playbook::load(&pb, &[]) {
            Ok(_) => String::new(),
            Err(d) => d.to_string(),
        }
    }

    /// A preset's settings are checked when the playbook loads: required ones, unknown keys
    /// (with the keys it accepts), and the kind itself.
    #[test]
    fn preset_settings_are_checked_when_the_playbook_loads() {
        assert_eq!(problems("  kind: consul\n"), "");
        assert!(
            problems("  kind: nacos\n  address: http://n\n").contains("missing required key `port` in `registry`"),
            "{}",
            problems("  kind: nacos\n  address: http://n\n")
        );
        let p = problems("  kind: etcd\n  address: http://e\n  key: k\n  valeu: v\n");
        assert!(
            p.contains("unknown key `valeu`") && p.contains("missing required key `value`"),
            "{p}"
        );
        let p = problems("  kind: eureka\n  address: http://e\n  instance_id: i\n  sid: x\n");
        assert!(
            p.contains("accepts: kind, address, token, drain, retry, app, instance_id"),
            "{p}"
        );
        let p = problems("  kind: zookeeper\n");
        assert!(
            p.contains("kind is one of: none, command, http, haproxy, consul, nacos, eureka, dubbo, etcd"),
            "{p}"
        );
    }
}
