//! `metrics:` in the playbook: where the run's live progress is pushed (a Prometheus
//! Pushgateway), under which `job`, and how often. The pushing itself is `crate::metrics`.

use std::time::Duration;

use super::check;
use super::decoder::Decoder;
use crate::yaml::Node;

/// The `job` when the playbook leaves it out.
pub const DEFAULT_JOB: &str = "tranche";
/// The push interval when the playbook leaves it out.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shorter intervals would push more often than a dashboard refreshes (Prometheus scrapes every
/// 15 s by default); longer ones would show a stale run.
pub const INTERVAL_MIN: Duration = Duration::from_secs(1);
pub const INTERVAL_MAX: Duration = Duration::from_secs(300);

/// `metrics: {pushgateway: URL, job: NAME, interval: 5s}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// The Pushgateway's base URL, without a trailing `/`.
    pub pushgateway: String,
    /// The `job` label of the pushed group.
    pub job: String,
    pub interval: Duration,
}

/// The problem with `job` as a Pushgateway job name, if any. It is a path segment of the push
/// URL, so only characters that need no encoding there are taken.
pub fn job_problem(job: &str) -> Option<String> {
    job.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:".contains(*c)))
        .map(|c| {
            format!(
                "may only contain letters, digits, `-`, `_`, `.` and `:`, not {}",
                check::describe_char(c)
            )
        })
}

impl Decoder<'_> {
    pub(super) fn metrics(&mut self, node: &Node) -> Option<Metrics> {
        let m = self.map(node, "metrics", &["pushgateway", "job", "interval"])?;
        let pushgateway = self.required(&m, "pushgateway", "metrics").and_then(|n| {
            let u = self.string(n, "metrics.pushgateway")?;
            // The group's path is appended to it: a query or a fragment would swallow it.
            let problem = check::url_problem(&u).or_else(|| {
                u.contains(['?', '#'])
                    .then(|| "must not have a query or a fragment: the push path is appended to it".into())
            });
            match problem {
                Some(p) => {
                    self.error_hint(
                        n,
                        format!("`metrics.pushgateway` \"{}\" {p}", u.escape_debug()),
                        "the Pushgateway's base URL, e.g. `http://pushgateway:9091`",
                    );
                    None
                }
                None => Some(u.trim_end_matches('/').to_string()),
            }
        });
        let job = match m.get("job") {
            Some(n) => self.string(n, "metrics.job").and_then(|j| match job_problem(&j) {
                Some(p) => {
                    self.error_hint(
                        n,
                        format!("`metrics.job` \"{}\" {p}", j.escape_debug()),
                        "it is the `job` label and a path segment of the push URL",
                    );
                    None
                }
                None => Some(j),
            }),
            None => Some(DEFAULT_JOB.to_string()),
        };
        let interval = match m.get("interval") {
            Some(n) => self.duration(n, "metrics.interval", check::WAIT_MAX).and_then(|d| {
                if (INTERVAL_MIN..=INTERVAL_MAX).contains(&d) {
                    Some(d)
                } else {
                    self.error(
                        n,
                        format!(
                            "`metrics.interval` must be between 1s and 5m, not {}",
                            n.scalar().unwrap_or_default().trim()
                        ),
                    );
                    None
                }
            }),
            None => Some(DEFAULT_INTERVAL),
        };
        Some(Metrics {
            pushgateway: pushgateway?,
            job: job?,
            interval: interval?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names() {
        for ok in ["tranche", "deploys-prod", "a.b_c:d"] {
            assert_eq!(job_problem(ok), None, "{ok}");
        }
        for bad in ["a/b", "a b", "a?b", "a%2Fb", "é"] {
            assert!(job_problem(bad).is_some(), "{bad:?} passed");
        }
    }
}
