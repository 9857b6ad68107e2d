//! User-facing configuration errors: a message, the place in a file (`file:line:col`) with the
//! offending line and a caret under it, and an optional hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a source file. `line` and `col` are 1-based; `len` is the width of the caret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Pos {
    pub fn new(line: usize, col: usize, len: usize) -> Self {
        Pos { line, col, len }
    }
}

/// One problem in one of the operator's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub message: String,
    pub hint: Option<String>,
    /// The text of the offending line, filled in by [`Diagnostics::attach_sources`].
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            message: message.into(),
            hint: None,
            source_line: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `file:line:col`, or just the file when there is no position.
    pub fn location(&self) -> String {
        match self.pos {
            Some(p) => format!("{}:{}:{}", self.file.display(), p.line, p.col),
            None => self.file.display().to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        write!(f, "  --> {}", self.location())?;
        if let (Some(pos), Some(line)) = (self.pos, &self.source_line) {
            let num = pos.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs would shift the caret; show them as single spaces.
            let shown: String = line.chars().map(|c| if c == '\t' { ' ' } else { c }).collect();
            let width = shown.chars().count();
            let col = pos.col.max(1).min(width + 1);
            let len = pos.len.max(1).min((width + 1).saturating_sub(col).max(1));
            write!(
                f,
                "\n {pad} |\n {num} | {shown}\n {pad} | {}{}",
                " ".repeat(col - 1),
                "^".repeat(len)
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in the operator's files, reported at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Fill in the offending source line of every diagnostic that points into `file`.
    pub fn attach_sources(&mut self, file: &Path, text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        for d in self.0.iter_mut().filter(|d| d.file == file) {
            if let Some(pos) = d.pos {
                if d.source_line.is_none() && pos.line >= 1 {
                    d.source_line = lines.get(pos.line - 1).map(|s| s.to_string());
                }
            }
        }
    }

    /// Ok when empty, so loaders can end with `diags.into_result(value)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// The closest of `candidates` to `word`, for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_the_column() {
        let mut d = Diagnostics::from(Diagnostic::new(
            Path::new("p.yml"),
            Some(Pos::new(2, 3, 6)),
            "unknown key `batchs` in `rollout`",
        ));
        d.attach_sources(Path::new("p.yml"), "rollout:\n  batchs: 5\n");
        assert_eq!(
            d.to_string(),
            "error: unknown key `batchs` in `rollout`\n  --> p.yml:2:3\n   |\n 2 |   batchs: 5\n   |   ^^^^^^"
        );
    }

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(did_you_mean("batchs", &["batch", "canary"]), Some("batch"));
        assert_eq!(did_you_mean("zzz", &["batch", "canary"]), None);
    }
}
