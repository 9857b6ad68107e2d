//! `tranche inventory`: show the inventory as tranche (and Ansible) reads it, in the shapes of
//! `ansible-inventory --list`, `--host H` and `--graph`, on stdout.

use std::path::{Path, PathBuf};

use super::error::CommandError;
use crate::exit_code;
use crate::inventory::{output, Inventory};

/// What to show.
pub enum Show {
    List,
    Host(String),
    Graph(Option<String>),
}

pub fn inventory(inventories: &[PathBuf], playbook_dir: Option<&Path>, show: Show) -> anyhow::Result<i32> {
    let inv = Inventory::load_with(inventories, playbook_dir)?;
    let text = match show {
        Show::List => pretty(&output::list(&inv)),
        Show::Host(h) => match output::host_vars(&inv, &h) {
            Some(v) => pretty(&v),
            None => return Err(CommandError::new(format!("no host `{h}` in the inventory")).into()),
        },
        Show::Graph(g) => {
            let g = g.unwrap_or_else(|| "all".to_string());
            match output::graph(&inv, &g) {
                Some(t) => t,
                None => {
                    return Err(CommandError::new(format!(
                        "no group `{g}` in the inventory (--graph takes a group name)"
                    ))
                    .into())
                }
            }
        }
    };
    super::print_data(format!("{text}\n").as_bytes())?;
    Ok(exit_code::SUCCESS)
}

/// JSON with sorted keys and four-space indentation, as `ansible-inventory` prints it.
fn pretty(v: &serde_json::Value) -> String {
    let sorted = sort(v);
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&sorted, &mut ser).expect("JSON to memory");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

fn sort(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
        other => other.clone(),
    }
}
