//! The one place where an error that stopped a command becomes text on stderr and an exit
//! code (SPEC §6). Commands return `anyhow::Result<i32>`; below them every layer has its own
//! error type, and those with advice for the operator are asked for it here.

use std::fmt;

use crate::error::Diagnostics;
use crate::exit_code;
use crate::units::plural;

/// A command refusing to go on: what is wrong, what to do about it, and the exit code (a
/// configuration error, nothing touched, unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    message: String,
    hint: Option<String>,
    code: i32,
}

impl CommandError {
    pub fn new(message: impl fmt::Display) -> CommandError {
        CommandError {
            message: message.to_string(),
            hint: None,
            code: exit_code::CONFIG,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hint = Some(hint.into());
        self
    }

    /// Exit with `code` instead of [`exit_code::CONFIG`].
    pub fn code(mut self, code: i32) -> CommandError {
        self.code = code;
        self
    }
}

/// The operator's files are wrong: every problem, how many, and that nothing was touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Diagnostics);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{}\n\n{n} problem{} found; nothing was touched", self.0, plural(n))
    }
}

/// The exit code of a command's result, with the error (and its hint) printed on stderr.
pub fn exit_code_of(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", render(&e));
            code_of(&e)
        }
    }
}

/// The exit code of an error: its own if it has one, else a configuration error.
pub fn code_of(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<CommandError>().map(|c| c.code))
        .unwrap_or(exit_code::CONFIG)
}

/// The advice of the first error in the chain that has some.
pub fn hint_of(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| {
        if let Some(c) = c.downcast_ref::<CommandError>() {
            c.hint.clone()
        } else if let Some(c) = c.downcast_ref::<crate::journal::RecordError>() {
            c.hint()
        } else if let Some(c) = c.downcast_ref::<crate::journal::ReplayError>() {
            c.hint()
        } else {
            None
        }
    })
}

/// What people read: positioned problems as they are (each says `error:` and carries its own
/// hint); anything else as `error: what: why` and its hint on the next line.
pub fn render(e: &anyhow::Error) -> String {
    if e.downcast_ref::<Invalid>().is_some() || e.downcast_ref::<Diagnostics>().is_some() {
        return e.to_string();
    }
    let mut text = format!("error: {}", chain_text(e));
    if let Some(hint) = hint_of(e) {
        text.push_str(&format!("\n  = hint: {hint}"));
    }
    text
}

/// The messages of the chain joined with `: `, each cause left out when the message before
/// already says it (a `thiserror` message often quotes its source).
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if text.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Diagnostic;
    use std::path::Path;

    #[test]
    fn a_command_error_prints_its_hint_and_exits_with_its_code() {
        let e = anyhow::Error::from(CommandError::new("no unfinished run in .tranche"));
        assert_eq!(render(&e), "error: no unfinished run in .tranche");
        assert_eq!(code_of(&e), exit_code::CONFIG);
        let e = anyhow::Error::from(
            CommandError::new("the journal is full")
                .hint("free the space")
                .code(exit_code::INTERRUPTED),
        );
        assert_eq!(render(&e), "error: the journal is full\n  = hint: free the space");
        assert_eq!(code_of(&e), exit_code::INTERRUPTED);
    }

    #[test]
    fn context_reads_what_then_why_and_a_quoted_cause_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let e = anyhow::Error::from(io).context("cannot write the run record under /x");
        assert_eq!(
            render(&e),
            "error: cannot write the run record under /x: permission denied"
        );
        assert_eq!(code_of(&e), exit_code::CONFIG);

        #[derive(Debug, thiserror::Error)]
        #[error("cannot open it: {source}")]
        struct Quoting {
            source: std::io::Error,
        }
        let e = anyhow::Error::from(Quoting {
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(render(&e), "error: cannot open it: disk full");
    }

    #[test]
    fn a_hint_below_a_context_is_found() {
        let e = anyhow::Error::from(CommandError::new("inner").hint("do this")).context("outer");
        assert_eq!(render(&e), "error: outer: inner\n  = hint: do this");
    }

    #[test]
    fn problems_in_files_print_as_they_are_with_their_count() {
        let d = Diagnostics(vec![
            Diagnostic::new(Path::new("p.yml"), None, "one"),
            Diagnostic::new(Path::new("p.yml"), None, "two").hint("fix it"),
        ]);
        let e = anyhow::Error::from(Invalid(d.clone()));
        assert_eq!(
            render(&e),
            "error: one\n  --> p.yml\n\nerror: two\n  --> p.yml\n  = hint: fix it\n\n2 problems found; nothing was touched"
        );
        assert_eq!(code_of(&e), exit_code::CONFIG);
        // The inventory command shows the problems without the count.
        let e = anyhow::Error::from(Diagnostics(d.0[..1].to_vec()));
        assert_eq!(render(&e), "error: one\n  --> p.yml");
    }

    #[test]
    fn a_layer_error_brings_its_hint() {
        let e = anyhow::Error::from(crate::journal::RecordError::Missing {
            run_id: "r1".into(),
            state_dir: "/s".into(),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
        .context("x")
        .context("y");
        let text = render(&e);
        assert!(text.starts_with("error: y: x: no run r1 in /s: "), "{text}");
        assert!(text.contains("\n  = hint: "), "{text}");
    }
}
