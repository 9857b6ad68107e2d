//! What the environment says about how to talk to people, resolved once: whether this is CI,
//! whether colour is wanted, whether there is a terminal to draw on and to ask on, the home
//! directory and `ANSIBLE_CONFIG`. Flags win over these (`--no-progress`, `--yes`); the `TRANCHE_<NAME>` variables
//! are read by clap as the flags' own values, so the order is flags > env > defaults.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The environment of this process, as read once at the first use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `CI` is set to something other than empty, `false` or `0`.
    pub ci: bool,
    /// `NO_COLOR` is set to a non-empty value (no-color.org).
    pub no_color: bool,
    pub stdin_tty: bool,
    pub stderr_tty: bool,
    /// `$HOME`, where `~/.ssh` and `~/.ansible.cfg` live.
    pub home: Option<PathBuf>,
    /// `ANSIBLE_CONFIG`: the `ansible.cfg` to read before looking in the usual places.
    pub ansible_config: Option<String>,
}

impl Settings {
    /// The settings of this process, read from the environment the first time.
    pub fn get() -> &'static Settings {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        SETTINGS.get_or_init(|| {
            use std::io::IsTerminal;
            let mut s = Settings::from_vars(
                |name| std::env::var(name).ok(),
                std::io::stdin().is_terminal(),
                std::io::stderr().is_terminal(),
            );
            // A home directory need not be UTF-8.
            s.home = std::env::var_os("HOME").map(PathBuf::from);
            s
        })
    }

    /// The settings from named variables and the terminals (pure, for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, stdin_tty: bool, stderr_tty: bool) -> Settings {
        Settings {
            ci: is_ci(var("CI").as_deref()),
            no_color: var("NO_COLOR").is_some_and(|v| !v.is_empty()),
            stdin_tty,
            stderr_tty,
            home: var("HOME").map(PathBuf::from),
            ansible_config: var("ANSIBLE_CONFIG"),
        }
    }

    /// Progress bars: only on a terminal, never in CI, nor with `--no-progress` or `--quiet`.
    pub fn progress_bars(&self, no_progress: bool, quiet: bool) -> bool {
        self.stderr_tty && !self.ci && !no_progress && !quiet
    }

    /// Colour on stderr: only on a terminal, and not when `NO_COLOR` asks for none.
    pub fn color(&self) -> bool {
        self.stderr_tty && !self.no_color
    }

    /// Whether a question (a confirmation, a key passphrase) can be asked of a person: a
    /// terminal on both stdin and stderr.
    pub fn can_ask(&self) -> bool {
        self.stdin_tty && self.stderr_tty
    }
}

/// Whether the value of `CI` says this is a CI job (`CI=true`, `CI=1`, `CI=yes`...).
pub fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)], stdin_tty: bool, stderr_tty: bool) -> Settings {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_vars(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            stdin_tty,
            stderr_tty,
        )
    }

    #[test]
    fn ci_values() {
        for (value, ci) in [
            (None, false),
            (Some(""), false),
            (Some("false"), false),
            (Some("0"), false),
            (Some("true"), true),
            (Some("1"), true),
            (Some("yes"), true),
        ] {
            assert_eq!(is_ci(value), ci, "CI={value:?}");
        }
    }

    /// (CI, NO_COLOR, stderr a terminal, --no-progress, --quiet) -> bars, colour.
    #[test]
    fn bars_and_colour_table() {
        let cases = [
            (None, None, true, false, false, true, true),
            (Some("true"), None, true, false, false, false, true),
            (Some("false"), None, true, false, false, true, true),
            (None, Some("1"), true, false, false, true, false),
            // no-color.org: an empty NO_COLOR asks for nothing.
            (None, Some(""), true, false, false, true, true),
            (None, None, false, false, false, false, false),
            (None, None, true, true, false, false, true),
            (None, None, true, false, true, false, true),
        ];
        for (ci, no_color, tty, no_progress, quiet, bars, color) in cases {
            let mut vars = Vec::new();
            vars.extend(ci.map(|v| ("CI", v)));
            vars.extend(no_color.map(|v| ("NO_COLOR", v)));
            let s = with(&vars, true, tty);
            let case = format!("CI={ci:?} NO_COLOR={no_color:?} tty={tty} no_progress={no_progress} quiet={quiet}");
            assert_eq!(s.progress_bars(no_progress, quiet), bars, "bars: {case}");
            assert_eq!(s.color(), color, "colour: {case}");
        }
    }

    #[test]
    fn asking_needs_both_terminals() {
        assert!(with(&[], true, true).can_ask());
        assert!(!with(&[], false, true).can_ask());
        assert!(!with(&[], true, false).can_ask());
        // CI does not forbid a question by itself; no terminal does.
        assert!(with(&[("CI", "true")], true, true).can_ask());
    }

    #[test]
    fn home_is_read() {
        assert_eq!(
            with(&[("HOME", "/home/x")], false, false).home,
            Some(PathBuf::from("/home/x"))
        );
        assert_eq!(with(&[], false, false).home, None);
    }
}
