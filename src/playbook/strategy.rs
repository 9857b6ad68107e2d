//! `strategy` and `blue_green`: how a release replaces the running version. `rolling` (the
//! default) replaces hosts batch by batch; `blue-green` brings the new version up on the idle
//! side while the live side serves, then moves all traffic at once and keeps the old side warm.
//!
//! The two shapes of blue-green: two slots on every host (each its own release folder under
//! `layout.root/<slot>` and its own port), or two host groups.

use std::time::Duration;

use super::check;
use super::decoder::Decoder;
use crate::error::did_you_mean;
use crate::yaml::Node;

/// The playbook's `strategy`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Strategy {
    #[default]
    Rolling,
    BlueGreen(BlueGreen),
}

impl Strategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen(_) => "blue-green",
        }
    }

    pub fn blue_green(&self) -> Option<&BlueGreen> {
        match self {
            Strategy::BlueGreen(b) => Some(b),
            Strategy::Rolling => None,
        }
    }
}

/// The two sides of blue-green, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Blue,
    Green,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Blue, Side::Green];

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Blue => "blue",
            Side::Green => "green",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Blue => Side::Green,
            Side::Green => Side::Blue,
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "blue" => Some(Side::Blue),
            "green" => Some(Side::Green),
            _ => None,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `blue_green`: where the two sides are, and how traffic moves between them.
#[derive(Debug, Clone, PartialEq)]
pub struct BlueGreen {
    pub shape: Shape,
    /// Percent of the traffic the new side gets while the gate watches it, before the switch;
    /// 0: the gate (if any) watches the new side without traffic.
    pub canary_weight: u8,
    /// After a switch that held, stop the old side this long later (`tranche retire` does it
    /// by hand).
    pub retire_after: Option<Duration>,
}

/// Where the two sides run.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Two instances on every host: `slots: {blue: {port: 8081}, green: {port: 8082}}`. Each
    /// slot has its own release folder (`layout.root/<slot>`) and port; templates see
    /// `slot.name` and `slot.port`.
    Slots { blue: u16, green: u16 },
    /// Two host groups (host patterns): `blue: web_blue`, `green: web_green`.
    Groups { blue: String, green: String },
}

impl Shape {
    /// The port of a side's slot (slots only).
    pub fn port(&self, side: Side) -> Option<u16> {
        match (self, side) {
            (Shape::Slots { blue, .. }, Side::Blue) => Some(*blue),
            (Shape::Slots { green, .. }, Side::Green) => Some(*green),
            (Shape::Groups { .. }, _) => None,
        }
    }

    /// The host pattern of a side's group (groups only).
    pub fn group(&self, side: Side) -> Option<&str> {
        match (self, side) {
            (Shape::Groups { blue, .. }, Side::Blue) => Some(blue),
            (Shape::Groups { green, .. }, Side::Green) => Some(green),
            (Shape::Slots { .. }, _) => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Shape::Slots { .. } => "slots",
            Shape::Groups { .. } => "groups",
        }
    }
}

const STRATEGIES: [&str; 2] = ["rolling", "blue-green"];

/// The playbook's top-level keys this file decodes.
pub(super) const KEYS: &[&str] = &["strategy", "blue_green"];

impl Decoder<'_> {
    /// `strategy` and `blue_green` together: each needs the other.
    pub(super) fn strategy(&mut self, strategy: Option<&Node>, block: Option<&Node>) -> Option<Strategy> {
        let name = match strategy {
            None => "rolling".to_string(),
            Some(n) => self.string(n, "strategy")?,
        };
        match (name.as_str(), block) {
            ("rolling", None) => Some(Strategy::Rolling),
            ("rolling", Some(b)) => {
                let key = if strategy.is_some() {
                    "`strategy` is rolling"
                } else {
                    "`strategy` defaults to rolling"
                };
                self.error_hint(
                    b,
                    format!("`blue_green` is set but {key}"),
                    "add `strategy: blue-green`, or remove the `blue_green` block",
                );
                None
            }
            ("blue-green", Some(b)) => self.blue_green(b).map(Strategy::BlueGreen),
            ("blue-green", None) => {
                self.error_hint(
                    strategy?,
                    "`strategy: blue-green` needs a `blue_green` block",
                    "e.g. `blue_green: {slots: {blue: {port: 8081}, green: {port: 8082}}}` or `blue_green: {blue: web_blue, green: web_green}`",
                );
                None
            }
            (other, _) => {
                let hint = match did_you_mean(other, &STRATEGIES) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "`rolling` (batches, the default) or `blue-green`".to_string(),
                };
                self.error_hint(
                    strategy?,
                    format!(
                        "`strategy` must be rolling or blue-green, not \"{}\"",
                        other.escape_debug()
                    ),
                    hint,
                );
                None
            }
        }
    }

    /// What `blue_green` asks of the rest of the playbook: a canary period is the gate
    /// watching the new side while it takes a little traffic, so `canary_weight` needs
    /// `rollout.gate` (without one the weight would be set and nothing would watch it).
    pub(super) fn blue_green_needs(&mut self, strategy: &Strategy, has_gate: bool) {
        let Some(bg) = strategy.blue_green() else {
            return;
        };
        if bg.canary_weight > 0 && !has_gate {
            let pos = self.positions.get("blue_green.canary_weight").copied();
            self.diags.push(
                crate::error::Diagnostic::new(
                    self.file,
                    pos,
                    format!(
                        "`blue_green.canary_weight` is {} but `rollout.gate` is not set: nothing would watch the new side during its canary period",
                        bg.canary_weight
                    ),
                )
                .hint("add `rollout.gate` (the metric watched before and after the switch), or remove `canary_weight`"),
            );
        }
    }

    fn blue_green(&mut self, node: &Node) -> Option<BlueGreen> {
        let m = self.map(
            node,
            "blue_green",
            &["slots", "blue", "green", "canary_weight", "retire_after"],
        )?;
        let shape = match (m.get("slots"), m.get("blue"), m.get("green")) {
            (Some(s), None, None) => self.slots(s),
            (None, Some(b), Some(g)) => {
                let blue = self.string(b, "blue_green.blue");
                let green = self.string(g, "blue_green.green");
                match (blue, green) {
                    (Some(blue), Some(green)) if blue == green => {
                        self.error_hint(
                            g,
                            format!("`blue_green.green` is the same group as `blue_green.blue` (\"{green}\")"),
                            "the two sides must be two different groups of hosts",
                        );
                        None
                    }
                    (Some(blue), Some(green)) => Some(Shape::Groups { blue, green }),
                    _ => None,
                }
            }
            (Some(s), _, _) => {
                self.error_hint(
                    s,
                    "`blue_green` takes either `slots` (two instances on every host) or `blue` and `green` (two host groups), not both",
                    "remove `slots`, or remove `blue` and `green`",
                );
                None
            }
            (None, Some(one), None) | (None, None, Some(one)) => {
                let (has, lacks) = if m.get("blue").is_some() {
                    ("blue", "green")
                } else {
                    ("green", "blue")
                };
                self.error_hint(
                    one,
                    format!("`blue_green.{has}` is set but `blue_green.{lacks}` is not"),
                    "the two host groups are `blue: GROUP` and `green: GROUP`",
                );
                None
            }
            (None, None, None) => {
                self.error_hint(
                    node,
                    "`blue_green` needs `slots` (two instances on every host) or `blue` and `green` (two host groups)",
                    "e.g. `slots: {blue: {port: 8081}, green: {port: 8082}}`",
                );
                None
            }
        };
        let canary_weight = match m.get("canary_weight") {
            Some(n) => self.int(n, "blue_green.canary_weight", 0, 99).map(|w| w as u8),
            None => Some(0),
        };
        let retire_after = match m.get("retire_after") {
            Some(n) => self.duration(n, "blue_green.retire_after", check::WAIT_MAX).map(Some),
            None => Some(None),
        };
        Some(BlueGreen {
            shape: shape?,
            canary_weight: canary_weight?,
            retire_after: retire_after?,
        })
    }

    fn slots(&mut self, node: &Node) -> Option<Shape> {
        let m = self.map(node, "blue_green.slots", &["blue", "green"])?;
        let blue = self.required(&m, "blue", "blue_green.slots");
        let green = self.required(&m, "green", "blue_green.slots");
        let (blue, green) = (blue?, green?);
        let port = |d: &mut Self, n: &Node, what: &str| -> Option<u16> {
            let m = d.map(n, what, &["port"])?;
            let p = d.required(&m, "port", what)?;
            d.int(p, &format!("{what}.port"), 1, 65535).map(|p| p as u16)
        };
        let bp = port(self, blue, "blue_green.slots.blue");
        let gp = port(self, green, "blue_green.slots.green");
        let (bp, gp) = (bp?, gp?);
        if bp == gp {
            let at = green.get("port").unwrap_or(green);
            self.error_hint(
                at,
                format!("`blue_green.slots.green.port` is {gp}, the same as the blue slot's"),
                "each slot runs its own instance beside the other: give them two different ports",
            );
            return None;
        }
        Some(Shape::Slots { blue: bp, green: gp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_flip_and_parse() {
        for s in Side::BOTH {
            assert_eq!(Side::parse(s.as_str()), Some(s));
            assert_eq!(s.other().other(), s);
            assert_ne!(s.other(), s);
        }
        assert_eq!(Side::parse("red"), None);
    }

    #[test]
    fn shapes_answer_per_side() {
        let slots = Shape::Slots { blue: 1, green: 2 };
        assert_eq!(slots.port(Side::Green), Some(2));
        assert_eq!(slots.group(Side::Blue), None);
        let groups = Shape::Groups {
            blue: "a".into(),
            green: "b".into(),
        };
        assert_eq!(groups.group(Side::Green), Some("b"));
        assert_eq!(groups.port(Side::Blue), None);
    }
}
