//! The host's history of changes, `<root>/.tranche-history`: one tab-separated line per change
//! (time, run id, operator, controller, from, to, outcome), appended after a host's switch
//! succeeds, is reverted or is rolled back, and read back by `tranche status --history`.

use serde::Serialize;

use super::RemoteCommand;

const HISTORY: &str = include_str!("history.sh");

/// How a change of a host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOutcome {
    /// The host passed and runs the new release.
    Ok,
    /// The host failed and its own revert put it back.
    Reverted,
    /// The rollback pass (or `tranche rollback`) put it back.
    RolledBack,
    /// The host failed and was not put back.
    Failed,
}

impl HostOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            HostOutcome::Ok => "ok",
            HostOutcome::Reverted => "reverted",
            HostOutcome::RolledBack => "rolled_back",
            HostOutcome::Failed => "failed",
        }
    }
}

/// One change, as written to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryLine {
    /// UTC, RFC 3339.
    pub time: String,
    pub run: String,
    pub operator: String,
    pub controller: String,
    /// `-` when the host had no release.
    pub from: String,
    pub to: String,
    pub outcome: String,
}

/// A value as one field of a line: tabs and line breaks written as `\t`, `\n`, `\r` (a
/// backslash as `\\`), an empty value as `-`, so that a line always has its seven fields.
pub fn field(v: &str) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Append `line` to `root/.tranche-history` (each value escaped by [`field`]).
pub fn append(root: &str, line: &HistoryLine) -> RemoteCommand {
    let values = [
        &line.time,
        &line.run,
        &line.operator,
        &line.controller,
        &line.from,
        &line.to,
        &line.outcome,
    ];
    let mut args = vec![root.to_string(), "append".to_string()];
    args.extend(values.iter().map(|v| field(v)));
    RemoteCommand::new(HISTORY, args)
}

/// The last `n` lines of `root/.tranche-history`, each printed as `history=LINE`.
pub fn tail(root: &str, n: usize) -> RemoteCommand {
    RemoteCommand::new(HISTORY, [root.to_string(), "tail".to_string(), n.to_string()])
}

/// The lines `tail` printed, oldest first; a line without its seven fields (written by hand,
/// or cut short) is kept whole in `outcome`'s place, so that nothing the host holds is hidden.
pub fn parse_tail(stdout: &str) -> Vec<HistoryLine> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("history="))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f[..] {
                [time, run, operator, controller, from, to, outcome] => HistoryLine {
                    time: time.into(),
                    run: run.into(),
                    operator: operator.into(),
                    controller: controller.into(),
                    from: from.into(),
                    to: to.into(),
                    outcome: outcome.into(),
                },
                _ => HistoryLine {
                    time: String::new(),
                    run: String::new(),
                    operator: String::new(),
                    controller: String::new(),
                    from: String::new(),
                    to: String::new(),
                    outcome: l.to_string(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(operator: &str) -> HistoryLine {
        HistoryLine {
            time: "2026-12-02T02:00:00Z".into(),
            run: "r1".into(),
            operator: operator.into(),
            controller: "ctl".into(),
            from: String::new(),
            to: "2.0.0".into(),
            outcome: HostOutcome::Ok.as_str().into(),
        }
    }

    #[test]
    fn values_are_escaped_arguments_of_the_constant_script() {
        let cmd = append("/srv/app", &line("a\tb\nc\\d"));
        assert_eq!(cmd.script, HISTORY);
        assert_eq!(
            cmd.args,
            [
                "/srv/app",
                "append",
                "2026-12-02T02:00:00Z",
                "r1",
                "a\\tb\\nc\\\\d",
                "ctl",
                "-",
                "2.0.0",
                "ok"
            ]
        );
        assert_eq!(tail("/srv/app", 5).args, ["/srv/app", "tail", "5"]);
    }

    #[test]
    fn tail_output_is_parsed_and_a_short_line_is_kept_whole() {
        let out = "history=t\tr\to\tc\t1.0.0\t2.0.0\treverted\nhistory=by hand\nnoise\n";
        let got = parse_tail(out);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].operator.as_str(), got[0].from.as_str(), got[0].outcome.as_str()),
            ("o", "1.0.0", "reverted")
        );
        assert_eq!((got[1].outcome.as_str(), got[1].run.as_str()), ("by hand", ""));
        assert_eq!(parse_tail(""), vec![]);
    }
}
