//! What one command run on a host produced, whatever carried it (SSH, or a scripted fake).

/// The output of one remote command.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub status: Option<u32>,
    pub signal: Option<String>,
    pub stdout: String,
    /// The tail of stderr, for reports.
    pub stderr: String,
    /// The command exited but something it left running (a service started with `&` without
    /// redirecting its output) still held this stream open, so tranche stopped waiting for it.
    pub leaked: Option<&'static str>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last `n` lines of stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// "exit 3: <last line of stderr>", for messages.
    pub fn describe(&self) -> String {
        let how = match (&self.status, &self.signal) {
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(s), None) => format!("exit {s}"),
            (None, None) => "no exit status".to_string(),
        };
        let last = self
            .stderr
            .trim()
            .lines()
            .last()
            .or_else(|| self.stdout.trim().lines().last());
        match last {
            Some(l) => format!("{how}: {l}"),
            None => how,
        }
    }
}
