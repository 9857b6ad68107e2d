//! Blue-green on two host groups, checked against the inventory when a release is loaded.

use super::pattern_error;
use crate::error::{Diagnostic, Diagnostics};
use crate::inventory::{self, Host, Inventory};
use crate::playbook::Playbook;

/// Blue-green on two host groups: each group is a pattern of the inventory, no targeted host is
/// in both (its one instance would be released as the idle side while it serves as the live
/// one), and every targeted host is on a side (a host on neither would be targeted and never
/// released).
pub(super) fn check_groups(
    p: &Playbook,
    inv: &Inventory,
    targets: &[Host],
    groups: [&String; 2],
    diags: &mut Diagnostics,
) {
    let file = &p.file;
    let mut sides: Vec<Vec<usize>> = vec![];
    for (side, pattern) in ["blue", "green"].into_iter().zip(groups) {
        let key = format!("blue_green.{side}");
        match inventory::select(inv, pattern) {
            Ok(s) => sides.push(s),
            Err(e) => {
                diags.push(pattern_error(file, p.pos(&key), format!("`{key}`: {e}"), inv));
                return;
            }
        }
    }
    let name_of = |i: usize| inv.hosts[i].name.as_str();
    let targeted = |i: &usize| targets.iter().any(|h| h.name == name_of(*i));
    let both: Vec<&str> = sides[0]
        .iter()
        .filter(|i| sides[1].contains(i) && targeted(i))
        .map(|&i| name_of(i))
        .collect();
    if !both.is_empty() {
        diags.push(
            Diagnostic::new(
                file,
                p.pos("blue_green.green"),
                format!(
                    "{} in both blue-green groups ({} and {}): {}",
                    if both.len() == 1 {
                        "1 targeted host is"
                    } else {
                        "targeted hosts are"
                    },
                    groups[0],
                    groups[1],
                    both.join(", ")
                ),
            )
            .hint("each host runs one side: take it out of one group, or use `slots` (two instances on every host)"),
        );
    }
    let neither: Vec<&str> = targets
        .iter()
        .map(|h| h.name.as_str())
        .filter(|n| !sides.iter().flatten().any(|&i| name_of(i) == *n))
        .collect();
    if !neither.is_empty() {
        diags.push(
            Diagnostic::new(
                file,
                p.hosts_pos,
                format!(
                    "{} targeted host{} in neither blue-green group ({} or {}): {}",
                    neither.len(),
                    if neither.len() == 1 { " is" } else { "s are" },
                    groups[0],
                    groups[1],
                    neither.join(", ")
                ),
            )
            .hint("narrow `hosts` (or `--limit`) to the two groups, or add the hosts to one of them"),
        );
    }
}
