//! A YAML document as a tree of nodes that remember where they stand in the file, so that every
//! configuration error can name `file:line:col`. Built on yaml-rust2's event parser; duplicate
//! keys are reported here (serde-based loaders cannot position them).

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::{Diagnostic, Diagnostics, Pos};

/// One YAML node and its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar's text and whether it was written plain (unquoted), which decides its type.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The YAML 1.2 core-schema type of a scalar, as a word for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar { .. } => match self.to_json() {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                _ => "a string",
            },
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.to_json(), serde_json::Value::Null) && matches!(self.kind, Kind::Scalar { .. })
    }

    /// The scalar's text, whatever its type (keys, names, templates).
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v)
    }

    /// The node as a JSON value, typing plain scalars by the YAML 1.2 core schema.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { text, plain: false } => Value::String(text.clone()),
            Kind::Scalar { text, plain: true } => resolve_plain(text),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn resolve_plain(text: &str) -> serde_json::Value {
    use serde_json::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::from(i);
        }
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            if let Some(n) = serde_json::Number::from_f64(f) {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_string())
}

/// The largest inventory or playbook read (a 100,000-host inventory is a few MiB): a device or
/// a runaway file must not fill the memory.
pub const FILE_MAX: u64 = 64 << 20;

/// Read a configuration file as UTF-8, refusing one larger than [`FILE_MAX`].
pub fn read_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(FILE_MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > FILE_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than {} MiB", FILE_MAX >> 20),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// Parse `text` (read from `file`) into its first document. An empty file gives `None`.
/// Syntax errors and duplicate keys come back as diagnostics.
pub fn parse(file: &Path, text: &str) -> Result<Option<Node>, Diagnostics> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        let info = e.info().to_string();
        let mut d = Diagnostics::from(Diagnostic::new(
            file,
            Some(Pos::new(m.line(), m.col() + 1, 1)),
            format!("invalid YAML: {info}"),
        ));
        if info.contains("tab")
            || text
                .lines()
                .nth(m.line().saturating_sub(1))
                .is_some_and(|l| l.starts_with('\t'))
        {
            d.0[0].hint = Some("YAML indentation must use spaces, not tabs".into());
        }
        d.attach_sources(file, text);
        return Err(d);
    }
    if let Some(pos) = builder.too_large {
        let mut d = Diagnostics::from(
            Diagnostic::new(
                file,
                Some(pos),
                format!("the document expands to more than {NODES_MAX} values"),
            )
            .hint("aliases (`*name`) count as many values as what they repeat"),
        );
        d.attach_sources(file, text);
        return Err(d);
    }
    let mut diags = Diagnostics::default();
    for (key, first, dup) in &builder.duplicates {
        diags.push(
            Diagnostic::new(file, Some(*dup), format!("duplicate key `{key}`")).hint(format!(
                "`{key}` is already set on line {}; YAML keeps only one of them",
                first.line
            )),
        );
    }
    diags.attach_sources(file, text);
    diags.into_result(builder.root)
}

fn pos_of(m: Marker, len: usize) -> Pos {
    Pos::new(m.line(), m.col() + 1, len)
}

/// The most nodes a document may expand to, aliases counted at the size of what they repeat:
/// a few aliases of aliases ("billion laughs") would otherwise fill the memory. A 100,000-host
/// inventory with a few variables per host stays well under it.
pub const NODES_MAX: usize = 1_000_000;

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Anchored nodes and how many nodes each one holds.
    anchors: HashMap<usize, (Node, usize)>,
    done: bool,
    duplicates: Vec<(String, Pos, Pos)>,
    /// Nodes built so far, aliases expanded.
    nodes: usize,
    /// Where the document grew past [`NODES_MAX`].
    too_large: Option<Pos>,
}

/// A collection being built: its items, its position, its anchor and `nodes` when it started.
enum Frame {
    Seq(Vec<Node>, Pos, usize, usize),
    /// Entries, the pending key, position, anchor, start, and the keys a `<<` merge brought in
    /// (which a key written later in the same mapping overrides, as YAML's merge key means).
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize, usize, Vec<String>),
}

impl Builder {
    /// Count `n` more nodes; false (and the document abandoned) past [`NODES_MAX`].
    fn grow(&mut self, n: usize, mark: Marker) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > NODES_MAX {
            self.too_large = Some(pos_of(mark, 1));
            self.done = true;
            return false;
        }
        true
    }

    fn push_node(&mut self, node: Node, anchor: usize, weight: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _, _, merged)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    // `<<: *anchor` merges the anchored mapping's entries that are not set here.
                    if key.scalar() == Some("<<") && matches!(key.kind, Kind::Scalar { plain: true, .. }) {
                        if let Kind::Map(from) = node.kind {
                            for (k, v) in from {
                                if !entries.iter().any(|(e, _)| e.scalar() == k.scalar()) {
                                    merged.push(k.scalar().unwrap_or_default().to_string());
                                    entries.push((k, v));
                                }
                            }
                            return;
                        }
                    }
                    if let Some(name) = key.scalar().filter(|n| merged.iter().any(|m| m == n)) {
                        // A key written after `<<: *anchor` overrides the merged value.
                        let name = name.to_string();
                        merged.retain(|m| *m != name);
                        entries.retain(|(k, _)| k.scalar() != Some(name.as_str()));
                        entries.push((key, node));
                        return;
                    }
                    if let Some((first, _)) = entries
                        .iter()
                        .find(|(k, _)| k.scalar().is_some() && k.scalar() == key.scalar())
                    {
                        self.duplicates
                            .push((key.scalar().unwrap_or_default().to_string(), first.pos, key.pos));
                    }
                    entries.push((key, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.grow(1, mark) {
                    return;
                }
                let plain = style == TScalarStyle::Plain;
                let len = text.chars().count() + if plain { 0 } else { 2 };
                let node = Node {
                    kind: Kind::Scalar { text, plain },
                    pos: pos_of(mark, len.max(1)),
                };
                self.push_node(node, anchor, 1);
            }
            Event::Alias(id) => {
                let weight = self.anchors.get(&id).map_or(1, |(_, w)| *w);
                if !self.grow(weight, mark) {
                    return;
                }
                let node = self.anchors.get(&id).cloned().map(|(mut n, _)| {
                    n.pos = pos_of(mark, 1);
                    n
                });
                let node = node.unwrap_or(Node {
                    kind: Kind::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                    pos: pos_of(mark, 1),
                });
                self.push_node(node, 0, weight);
            }
            // Past the limit the document is abandoned (`done`), so the frame pushed is never used.
            Event::SequenceStart(anchor, _) => {
                self.grow(1, mark);
                let start = self.nodes;
                self.stack.push(Frame::Seq(Vec::new(), pos_of(mark, 1), anchor, start));
            }
            Event::MappingStart(anchor, _) => {
                self.grow(1, mark);
                let start = self.nodes;
                self.stack
                    .push(Frame::Map(Vec::new(), None, pos_of(mark, 1), anchor, start, Vec::new()));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, pos, anchor, start)) = self.stack.pop() {
                    let weight = self.nodes - start + 1;
                    self.push_node(
                        Node {
                            kind: Kind::Seq(items),
                            pos,
                        },
                        anchor,
                        weight,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, pos, anchor, start, _)) = self.stack.pop() {
                    let weight = self.nodes - start + 1;
                    self.push_node(
                        Node {
                            kind: Kind::Map(entries),
                            pos,
                        },
                        anchor,
                        weight,
                    );
                }
            }
            Event::DocumentEnd if self.root.is_some() => self.done = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let n = parse(Path::new("f"), "a: 1\nb:\n  - 'x'\n  - yes\n").unwrap().unwrap();
        let b = n.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[0].pos, Pos::new(3, 5, 3));
        assert_eq!(n.get("a").unwrap().to_json(), serde_json::json!(1));
        assert_eq!(b[0].to_json(), serde_json::json!("x"));
    }

    #[test]
    fn a_key_after_a_merge_overrides_it() {
        let n = parse(Path::new("f"), "base: &b {x: 1, y: 1}\nc:\n  <<: *b\n  x: 2\n")
            .unwrap()
            .unwrap();
        assert_eq!(n.get("c").unwrap().to_json(), serde_json::json!({"y": 1, "x": 2}));
        // Written twice by hand is still a duplicate.
        assert!(parse(Path::new("f"), "c:\n  <<: {x: 1}\n  x: 2\n  x: 3\n").is_err());
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let err = parse(Path::new("f"), "a: 1\na: 2\n").unwrap_err();
        assert!(err.0[0].message.contains("duplicate key `a`"));
        assert_eq!(err.0[0].pos.unwrap().line, 2);
    }

    #[test]
    fn merge_keys_and_aliases() {
        let n = parse(Path::new("f"), "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n")
            .unwrap()
            .unwrap();
        assert_eq!(n.get("c").unwrap().to_json(), serde_json::json!({"y": 2, "x": 1}));
    }

    #[test]
    fn aliases_of_aliases_cannot_fill_the_memory() {
        // Ten levels of ten aliases: 10^10 values once expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse(Path::new("f"), &text).unwrap_err();
        assert!(err.0[0].message.contains("more than 1000000 values"), "{err}");
        assert_eq!(err.0[0].pos.unwrap().line, 6, "{err}");
        // A few aliases are fine.
        assert!(parse(Path::new("f"), "a: &a [1, 2]\nb: [*a, *a]\n").is_ok());
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(parse(Path::new("f"), "").unwrap(), None);
    }
}
