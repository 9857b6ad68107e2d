//! `--report FILE`: the HTML report rewritten as the run goes, so a teammate can open it while
//! it runs. The run's path only hands each event to a writer thread; that thread renders and
//! replaces the file atomically (a temporary file beside it, then a rename) at most about once
//! a second, within about a second of the last change, and once more at the end.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{render, PageOptions};
use crate::events::Event;
use crate::report::Sink;

/// How often the file is rewritten at most while events arrive.
const EVERY: Duration = Duration::from_secs(1);
/// How long `finish` waits for the last write.
const FINISH_WAIT: Duration = Duration::from_secs(10);

enum Msg {
    Event(Box<Event>),
    Finish,
}

/// The writer thread, and where it hands back its warnings when it is done.
type Writer = (mpsc::Receiver<Vec<String>>, JoinHandle<()>);

/// The live HTML report: a [`Sink`] that keeps FILE up to date.
pub struct LiveReport {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    done: Mutex<Option<Writer>>,
    path: PathBuf,
}

impl LiveReport {
    /// Start the report at `path` with the events a journal already holds (a resumed run
    /// continues its page). The first page is written before this returns, so a path that
    /// cannot be written is an error before the run starts.
    pub fn start(path: &Path, earlier: Vec<Event>, operator: Option<String>) -> std::io::Result<LiveReport> {
        let opts = PageOptions { operator, live: true };
        write_atomically(path, &render(&earlier, &opts))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let (done_tx, done_rx) = mpsc::channel();
        let target = path.to_path_buf();
        let handle = std::thread::Builder::new().name("html-report".into()).spawn(move || {
            let warnings = writer(&target, earlier, opts, &rx);
            let _ = done_tx.send(warnings);
        })?;
        Ok(LiveReport {
            tx: Mutex::new(Some(tx)),
            done: Mutex::new(Some((done_rx, handle))),
            path: path.to_path_buf(),
        })
    }
}

/// The writer thread: collect events, render at most once per [`EVERY`], and a last time
/// (not live) when told to finish or when the run side goes away. Returns the write errors.
fn writer(path: &Path, mut events: Vec<Event>, mut opts: PageOptions, rx: &mpsc::Receiver<Msg>) -> Vec<String> {
    let mut warnings: Vec<String> = Vec::new();
    let mut write = |events: &[Event], opts: &PageOptions| {
        if let Err(e) = write_atomically(path, &render(events, opts)) {
            let w = format!("cannot write the HTML report {}: {e}", path.display());
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    };
    let mut last_write: Option<Instant> = None;
    let mut dirty = false;
    loop {
        let wait = match last_write {
            Some(at) if dirty => EVERY.saturating_sub(at.elapsed()),
            _ => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Event(e)) => {
                events.push(*e);
                dirty = true;
                if last_write.is_none_or(|at| at.elapsed() >= EVERY) {
                    write(&events, &opts);
                    last_write = Some(Instant::now());
                    dirty = false;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    write(&events, &opts);
                    last_write = Some(Instant::now());
                    dirty = false;
                }
            }
            Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => {
                // The run is over: the page stops reloading, whatever the events say.
                opts.live = false;
                write(&events, &opts);
                return warnings;
            }
        }
    }
}

impl Sink for LiveReport {
    fn event(&self, e: &Event) {
        if let Some(tx) = self.tx.lock().expect("report sender").as_ref() {
            let _ = tx.send(Msg::Event(Box::new(e.clone())));
        }
    }

    fn finish(&self) -> Vec<String> {
        if let Some(tx) = self.tx.lock().expect("report sender").take() {
            let _ = tx.send(Msg::Finish);
        }
        let Some((done, handle)) = self.done.lock().expect("report writer").take() else {
            return Vec::new();
        };
        match done.recv_timeout(FINISH_WAIT) {
            Ok(warnings) => {
                let _ = handle.join();
                warnings
            }
            Err(_) => vec![format!(
                "the HTML report {} was not finished writing within {}s",
                self.path.display(),
                FINISH_WAIT.as_secs()
            )],
        }
    }
}

/// Replace `path` with `text` at once: readers see the old page or the new one, never half.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.flush()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn warning(n: usize) -> Event {
        Event::new(
            "r1",
            EventKind::Warning {
                host: None,
                msg: format!("w{n}"),
            },
        )
    }

    /// Events arriving fast are written at most about once a second, the latest within about a
    /// second, and the last page has no reload once the run finished.
    #[test]
    fn rewrites_at_most_once_a_second_and_settles_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        let sink = LiveReport::start(&path, Vec::new(), Some("alice".into())).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.contains("http-equiv=\"refresh\""), "{first}");
        sink.event(&warning(0));
        // The first event is written at once.
        let t = Instant::now();
        while !std::fs::read_to_string(&path).unwrap().contains("w0") {
            assert!(t.elapsed() < Duration::from_secs(5), "the first event was not written");
            std::thread::sleep(Duration::from_millis(10));
        }
        let written_at = Instant::now();
        for n in 1..=20 {
            sink.event(&warning(n));
        }
        // Within the second after the first write, the later events are not on the page yet...
        std::thread::sleep(Duration::from_millis(200));
        if written_at.elapsed() < Duration::from_millis(800) {
            assert!(!std::fs::read_to_string(&path).unwrap().contains("w20"));
        }
        // ...but they are about a second later, without another event to push them out.
        let t = Instant::now();
        while !std::fs::read_to_string(&path).unwrap().contains("w20") {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the trailing events were not written"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(written_at.elapsed() >= Duration::from_millis(900));
        assert!(sink.finish().is_empty());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(!last.contains("http-equiv=\"refresh\""), "{last}");
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["r.html"]);
        // A second finish (the signal handler's, then the command's) is harmless.
        assert!(sink.finish().is_empty());
    }

    /// A write that fails during the run is a warning at the end, said once.
    #[test]
    fn a_write_that_fails_later_is_one_warning_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        std::fs::create_dir(&sub).unwrap();
        let sink = LiveReport::start(&sub.join("r.html"), Vec::new(), None).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        sink.event(&warning(1));
        sink.event(&warning(2));
        let warnings = sink.finish();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("cannot write the HTML report "), "{warnings:?}");
    }

    #[test]
    fn an_unwritable_path_fails_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let err = LiveReport::start(&dir.path().join("no/such/dir/r.html"), Vec::new(), None)
            .err()
            .expect("an error");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
