//! Jinja templates in the playbook (minijinja), compiled when the playbook loads so that a syntax
//! error is reported with its position before anything runs. Templates that become shell commands
//! shell-quote every value unless it is marked `| safe`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::{Diagnostic, Pos};

/// One template of the playbook: where it was written and the name it has in the environment.
#[derive(Debug, Clone)]
pub struct Template {
    pub source: String,
    pub file: PathBuf,
    pub pos: Pos,
    name: String,
}

impl Template {
    /// True when the template has no `{{`/`{%` and renders to its own text.
    pub fn is_literal(&self) -> bool {
        !self.source.contains("{{") && !self.source.contains("{%")
    }
}

/// Every template of a playbook, compiled once.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// The instructions one render may execute: thousands of times what a real template needs.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Builds the environment while the playbook loads.
pub struct TemplateBuilder {
    env: Environment<'static>,
    count: usize,
}

impl Default for TemplateBuilder {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Every render is checked for every host when the release is planned: a runaway loop
        // must end as an error there, not hold the controller.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".sh") {
                AutoEscape::Custom("shell")
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Custom("shell") && !value.is_safe() {
                let text = value.to_string();
                out.write_str(&shell_quote(&text))?;
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        // `b64encode`: for APIs that take base64 (etcd's JSON gateway).
        env.add_filter("b64encode", |s: String| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        });
        TemplateBuilder { env, count: 0 }
    }
}

impl TemplateBuilder {
    /// Compile `source`; `shell` templates quote what they interpolate.
    pub fn add(&mut self, file: &Path, pos: Pos, source: &str, shell: bool) -> Result<Template, Diagnostic> {
        self.count += 1;
        let name = format!("t{}{}", self.count, if shell { ".sh" } else { ".txt" });
        match self.env.add_template_owned(name.clone(), source.to_string()) {
            Ok(()) => Ok(Template {
                source: source.to_string(),
                file: file.to_path_buf(),
                pos,
                name,
            }),
            Err(e) => {
                let (line, col) = error_position(&e, source, pos);
                let detail = e.detail().unwrap_or("syntax error").to_string();
                Err(Diagnostic::new(
                    file,
                    Some(Pos::new(line, col, 2)),
                    format!("template syntax error: {detail}"),
                )
                .hint("templates use Jinja syntax: `{{ host.name }}`, `{% if ... %}...{% endif %}`"))
            }
        }
    }

    pub fn build(self) -> Templates {
        Templates {
            env: Arc::new(self.env),
        }
    }
}

/// Where in the file a template error lies: the template's own line and column, shifted by where
/// the template starts (a quoted scalar starts one column after its quote).
fn error_position(e: &minijinja::Error, source: &str, pos: Pos) -> (usize, usize) {
    let Some(tline) = e.line() else {
        return (pos.line, pos.col);
    };
    if let Some(range) = e.range() {
        let before = &source[..range.start.min(source.len())];
        let col_in_line = before.rsplit('\n').next().map(|s| s.chars().count()).unwrap_or(0);
        if tline == 1 && pos.len > source.chars().count() {
            return (pos.line, pos.col + 1 + col_in_line);
        }
        if tline == 1 {
            return (pos.line, pos.col + col_in_line);
        }
        return (pos.line + tline - 1, col_in_line + 1);
    }
    (pos.line + tline - 1, pos.col)
}

impl Templates {
    /// Render `t` with `ctx`. The error reads as a sentence with the template's position.
    pub fn render<S: Serialize>(&self, t: &Template, ctx: &S) -> Result<String, String> {
        let tmpl = self.env.get_template(&t.name).map_err(|e| e.to_string())?;
        tmpl.render(ctx).map_err(|e| {
            let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
            format!(
                "{}:{}:{}: cannot render `{}`: {detail}",
                t.file.display(),
                t.pos.line,
                t.pos.col,
                t.source
            )
        })
    }
}

/// Quote `s` for a POSIX shell: the one quoting function, `crate::quote::quote` (also
/// `crate::remote::quote`).
pub use crate::quote::quote as shell_quote;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shell_templates_quote_values_unless_safe() {
        let mut b = TemplateBuilder::default();
        let p = Path::new("p.yml");
        let t = b
            .add(p, Pos::new(1, 1, 1), "echo {{ x }} {{ y | safe }}", true)
            .unwrap();
        let u = b.add(p, Pos::new(1, 1, 1), "http://{{ x }}/", false).unwrap();
        let ts = b.build();
        let ctx = json!({"x": "a b; rm -rf /", "y": "$HOME"});
        assert_eq!(ts.render(&t, &ctx).unwrap(), "echo 'a b; rm -rf /' $HOME");
        assert_eq!(ts.render(&u, &ctx).unwrap(), "http://a b; rm -rf //");
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let mut b = TemplateBuilder::default();
        let e = b
            .add(Path::new("p.yml"), Pos::new(4, 10, 12), "x {{ host.name ", true)
            .unwrap_err();
        assert_eq!(e.pos.unwrap().line, 4);
        assert!(e.message.starts_with("template syntax error"), "{}", e.message);
    }

    #[test]
    fn runaway_templates_stop() {
        let mut b = TemplateBuilder::default();
        let t = b
            .add(
                Path::new("p.yml"),
                Pos::new(1, 1, 1),
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                false,
            )
            .unwrap();
        let e = b.build().render(&t, &json!({})).unwrap_err();
        assert!(e.contains("fuel"), "{e}");
    }

    #[test]
    fn undefined_variables_fail() {
        let mut b = TemplateBuilder::default();
        let t = b
            .add(Path::new("p.yml"), Pos::new(1, 1, 1), "{{ host.nope }}", false)
            .unwrap();
        assert!(b.build().render(&t, &json!({"host": {}})).is_err());
    }
}
