//! What people see on stderr: on a terminal, indicatif bars (the whole run, and one line per
//! host in flight, at most ~20); elsewhere (CI, `--no-progress`, a pipe), one plain line per
//! host step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, EventKind, Status};

const MAX_HOST_LINES: usize = 20;

pub struct Terminal {
    quiet: bool,
    color: bool,
    bars: Option<Bars>,
    /// A run of `tranche switch` or `tranche retire`: its one event line says what it did.
    by_hand: std::sync::atomic::AtomicBool,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    hosts: Mutex<HashMap<String, ProgressBar>>,
}

impl Terminal {
    /// Bars only when stderr is a terminal, `CI` is not set and `--no-progress` was not given.
    pub fn new(no_progress: bool, quiet: bool) -> Terminal {
        let env = crate::settings::Settings::get();
        let color = env.color();
        let bars = env.progress_bars(no_progress, quiet).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} hosts  {elapsed}  {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(120));
            Bars {
                multi,
                overall,
                hosts: Mutex::new(HashMap::new()),
            }
        });
        Terminal {
            quiet,
            color,
            bars,
            by_hand: Default::default(),
        }
    }

    fn paint(&self, s: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn status(&self, s: Status) -> String {
        match s {
            Status::Ok => self.paint("ok", "32"),
            Status::Failed => self.paint("FAILED", "1;31"),
            Status::Skipped => self.paint("skipped", "2"),
            Status::Reverted => self.paint("reverted", "33"),
        }
    }

    /// A line of the run's progress; `--quiet` leaves it out.
    fn line(&self, s: String) {
        if !self.quiet {
            self.always(s);
        }
    }

    /// A line that needs a person whatever `--quiet` says: a failure, a warning, a pause, the end.
    fn always(&self, s: String) {
        // Not `eprintln!`, which panics when stderr is gone (the terminal closed: SIGHUP), and
        // the run must go on to bring its hosts in flight back.
        let print = || {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{s}\n").as_bytes());
        };
        match &self.bars {
            Some(b) => b.multi.suspend(print),
            None => print(),
        }
    }

    pub fn report(&self, e: &Event) {
        match &e.kind {
            EventKind::RunStarted {
                service,
                version,
                hosts,
                mode,
                plan,
            } => {
                let batches = plan.batches.len();
                if let Some(b) = &self.bars {
                    b.overall.set_length(*hosts as u64);
                    b.overall.set_prefix(format!("{service} {version}"));
                }
                let s = crate::units::plural(*hosts);
                let by_hand = matches!(mode.as_str(), "switch" | "retire");
                self.by_hand.store(by_hand, std::sync::atomic::Ordering::Relaxed);
                self.line(match mode.as_str() {
                    "check" => format!("preflight check of {hosts} host{s} for {service} {version}, changing nothing"),
                    _ if by_hand => format!("{mode} {service} on {hosts} host{s} (run {})", e.run),
                    _ => format!(
                        "{mode} {service} to {version} on {hosts} host{s} in {batches} batches (run {})",
                        e.run
                    ),
                });
            }
            EventKind::BatchStarted { batch, hosts } => {
                if let Some(b) = &self.bars {
                    b.overall.set_message(format!("batch {batch}"));
                }
                self.line(format!("batch {batch}: {}", hosts.join(" ")));
            }
            EventKind::StepStarted { host, step, .. } => {
                if let Some(b) = &self.bars {
                    let mut hosts = b.hosts.lock().expect("bars");
                    if let Some(pb) = hosts.get(host) {
                        pb.set_message(step.as_str());
                    } else if hosts.len() < MAX_HOST_LINES {
                        let pb = b.multi.add(ProgressBar::new_spinner());
                        pb.set_style(ProgressStyle::with_template("  {spinner} {prefix:<16} {msg}").expect("template"));
                        pb.set_prefix(host.clone());
                        pb.set_message(step.as_str());
                        pb.enable_steady_tick(Duration::from_millis(120));
                        hosts.insert(host.clone(), pb);
                    }
                }
            }
            EventKind::StepFinished {
                batch,
                host,
                step,
                status,
                ms,
                msg,
                hint,
                ..
            } => {
                if let Some(b) = &self.bars {
                    if let Some(pb) = b.hosts.lock().expect("bars").get(host) {
                        // Between steps a host waits: for its batch after staging, for the next step otherwise.
                        pb.set_message(match step {
                            crate::events::Step::Preflight => "ready, waiting to stage".to_string(),
                            crate::events::Step::Stage => format!("staged, waiting for batch {batch}"),
                            _ => format!("{} {}", step.as_str(), status.as_str()),
                        });
                    }
                }
                if self.bars.is_none() {
                    let b = if *batch > 0 {
                        format!("[{batch}] ")
                    } else {
                        String::new()
                    };
                    let print = if *status == Status::Failed {
                        Self::always
                    } else {
                        Self::line
                    };
                    print(
                        self,
                        format!(
                            "{b}{host:<12} {:<10} {} {:>6}  {msg}",
                            step.as_str(),
                            self.status(*status),
                            format_ms(*ms)
                        ),
                    );
                } else if *status == Status::Failed {
                    self.always(format!("  {host}: {} {}: {msg}", step.as_str(), self.status(*status)));
                }
                if let Some(hint) = hint {
                    self.always(format!("  hint: {hint}"));
                }
            }
            EventKind::HostFinished {
                batch,
                host,
                status,
                ms,
                msg,
            } => {
                if let Some(b) = &self.bars {
                    if let Some(pb) = b.hosts.lock().expect("bars").remove(host) {
                        pb.finish_and_clear();
                        b.multi.remove(&pb);
                    }
                    b.overall.inc(1);
                }
                let print = if matches!(status, Status::Ok | Status::Skipped) {
                    Self::line
                } else {
                    Self::always
                };
                print(
                    self,
                    format!(
                        "[{batch}] {host:<12} {} {:>6}  {msg}",
                        self.status(*status),
                        format_ms(*ms)
                    ),
                );
            }
            EventKind::BatchFinished {
                batch,
                ok,
                skipped,
                failed,
                ms,
            } => {
                self.line(format!(
                    "batch {batch} done: {ok} ok, {skipped} unchanged, {failed} failed in {}",
                    format_ms(*ms)
                ));
            }
            EventKind::Paused { reason, .. } => self.always(format!("paused: {reason}")),
            EventKind::Resumed { batch } => self.line(format!("resumed at batch {batch}")),
            EventKind::Warning { host, msg } => {
                let who = host.as_deref().map(|h| format!("{h}: ")).unwrap_or_default();
                self.always(format!("{} {who}{msg}", self.paint("warning:", "1;33")));
            }
            EventKind::HostStarted { .. } => {}
            EventKind::Switched { msg, .. } | EventKind::Retired { msg, .. } => self.always(msg.clone()),
            EventKind::GateChecked { batch, status, msg, .. } => {
                let print = if *status == Status::Failed {
                    Self::always
                } else {
                    Self::line
                };
                print(
                    self,
                    format!("gate after batch {batch}: {} {msg}", self.status(*status)),
                );
            }
            EventKind::RunFinished {
                ok,
                failed,
                reverted,
                skipped,
                exit_code,
                ms,
                msg,
            } => {
                if let Some(b) = &self.bars {
                    b.overall.finish_and_clear();
                }
                if self.by_hand.load(std::sync::atomic::Ordering::Relaxed) {
                    // The `switched` or `retired` line said it; a refusal is the error line.
                    return;
                }
                self.always(String::new());
                self.always(format!(
                    "{}: {ok} ok, {skipped} unchanged, {failed} failed, {reverted} reverted in {} (exit {exit_code})",
                    if *exit_code == 0 {
                        self.paint("done", "1;32")
                    } else {
                        self.paint("done", "1;31")
                    },
                    format_ms(*ms)
                ));
                self.always(format!("  {msg}"));
            }
        }
    }

    /// Ask a yes/no question on the terminal, with the bars out of the way.
    pub fn ask(&self, question: &str) -> bool {
        let ask = || {
            use std::io::Write;
            eprint!("{question} [y/N] ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).ok();
            matches!(line.trim(), "y" | "Y" | "yes")
        };
        match &self.bars {
            Some(b) => b.multi.suspend(ask),
            None => ask(),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bars {
            let _ = b.multi.clear();
        }
    }
}

fn format_ms(ms: u64) -> String {
    crate::units::human_duration(Duration::from_millis(ms))
}
