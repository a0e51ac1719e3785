//! Build progress, as `--progress` asks: `tty` (a live view in the manner of BuildKit's: a line
//! per step with its state and time, running steps' last output lines under them, finished
//! steps collapsed to one line, stages that run at once side by side), `plain` (for CI logs:
//! step numbers, and each output line with the seconds since its step started), `rawjson` (one
//! JSON object a line: the library's events with a `time`), or `quiet`.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use builder_core::solve::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render;

/// How many output lines a running step shows in the TTY view.
const TAIL: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Tty,
    Plain,
    RawJson,
    Quiet,
}

impl Mode {
    /// `--progress` (`auto` is `tty` on a terminal, else `plain`); `-q` is quiet.
    pub(crate) fn from_args(progress: &str, quiet: bool) -> Self {
        if quiet {
            return Self::Quiet;
        }
        match progress {
            "tty" => Self::Tty,
            "plain" => Self::Plain,
            "rawjson" => Self::RawJson,
            "quiet" => Self::Quiet,
            _ if std::io::stderr().is_terminal()
                && std::env::var("TERM").is_ok_and(|t| t != "dumb") =>
            {
                Self::Tty
            }
            _ => Self::Plain,
        }
    }
}

struct StepView {
    started: Instant,
    bar: ProgressBar,
    tail: Vec<ProgressBar>,
    lines: VecDeque<String>,
    /// Why the step missed the cache, shown when it is done.
    miss: Option<String>,
}

/// Draws a build's events.
pub(crate) struct Progress {
    mode: Mode,
    start: Instant,
    multi: Option<MultiProgress>,
    steps: HashMap<usize, StepView>,
    started: HashMap<usize, Instant>,
}

fn step_style(spinner: bool) -> ProgressStyle {
    let template = if spinner {
        "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>5}"
    } else {
        "{prefix:.bold} {wide_msg}"
    };
    ProgressStyle::with_template(template)
        // invariant: the templates above are valid
        .expect("valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

impl Progress {
    pub(crate) fn new(mode: Mode) -> Self {
        let multi = (mode == Mode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Self {
            mode,
            start: Instant::now(),
            multi,
            steps: HashMap::new(),
            started: HashMap::new(),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn event(&mut self, e: &Event) {
        match self.mode {
            Mode::Quiet => {}
            Mode::RawJson => self.json(e),
            Mode::Plain => self.plain(e),
            Mode::Tty => self.tty(e),
        }
    }

    fn json(&self, e: &Event) {
        if let Ok(serde_json::Value::Object(mut obj)) = serde_json::to_value(e) {
            obj.insert(
                "time".into(),
                serde_json::json!((self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            );
            render::stderr(&format!("{}\n", serde_json::Value::Object(obj)));
        }
    }

    /// A result or summary for `rawjson`: one more JSON object.
    pub(crate) fn json_value(&self, value: &serde_json::Value) {
        if self.mode == Mode::RawJson {
            render::stderr(&format!("{value}\n"));
        }
    }

    fn plain(&mut self, e: &Event) {
        let line = match e {
            Event::Step {
                number,
                total,
                stage,
                instruction,
                line,
            } => {
                self.started.insert(*number, Instant::now());
                format!("#{number} [{stage} {number}/{total}] {instruction} (line {line})")
            }
            Event::Log { number, line } => {
                let secs = self
                    .started
                    .get(number)
                    .map_or(0.0, |s| s.elapsed().as_secs_f64());
                format!("#{number} {secs:.3} {line}")
            }
            Event::StepDone {
                number,
                millis,
                cached,
            } => {
                if *cached {
                    format!("#{number} CACHED")
                } else {
                    #[allow(clippy::cast_precision_loss)]
                    let secs = *millis as f64 / 1000.0;
                    format!("#{number} DONE {secs:.1}s")
                }
            }
            other => describe(other),
        };
        render::stderr(&format!("{line}\n"));
    }

    fn tty(&mut self, e: &Event) {
        let Some(multi) = self.multi.clone() else {
            return;
        };
        match e {
            Event::Step {
                number,
                total,
                stage,
                instruction,
                ..
            } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(step_style(true));
                bar.set_prefix(format!("[{stage} {number}/{total}]"));
                bar.set_message(instruction.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.steps.insert(
                    *number,
                    StepView {
                        started: Instant::now(),
                        bar,
                        tail: Vec::new(),
                        lines: VecDeque::new(),
                        miss: None,
                    },
                );
            }
            Event::Log { number, line } => {
                if let Some(view) = self.steps.get_mut(number) {
                    view.lines.push_back(line.clone());
                    if view.lines.len() > TAIL {
                        view.lines.pop_front();
                    }
                    while view.tail.len() < view.lines.len() {
                        let after = view.tail.last().unwrap_or(&view.bar).clone();
                        let t = multi.insert_after(&after, ProgressBar::new_spinner());
                        t.set_style(step_style(false));
                        t.set_prefix("    │");
                        view.tail.push(t);
                    }
                    for (bar, text) in view.tail.iter().zip(&view.lines) {
                        bar.set_message(text.clone());
                    }
                }
            }
            Event::StepDone { number, cached, .. } => {
                if let Some(view) = self.steps.remove(number) {
                    for t in view.tail {
                        t.finish_and_clear();
                        multi.remove(&t);
                    }
                    view.bar.set_style(step_style(false));
                    let state = match (*cached, &view.miss) {
                        (true, _) => "CACHED".to_owned(),
                        (false, Some(why)) => format!(
                            "DONE {:.1}s (miss: {why})",
                            view.started.elapsed().as_secs_f64()
                        ),
                        (false, None) => {
                            format!("DONE {:.1}s", view.started.elapsed().as_secs_f64())
                        }
                    };
                    let prefix = view.bar.prefix();
                    view.bar.set_prefix(format!("✔ {prefix}"));
                    let msg = view.bar.message();
                    view.bar.finish_with_message(format!("{msg}  {state}"));
                }
            }
            Event::Miss {
                number,
                reason,
                first,
                ..
            } => {
                // A first build's "no earlier build" says nothing worth a line.
                if let (Some(view), false) = (self.steps.get_mut(number), *first) {
                    view.miss = Some(reason.clone());
                }
            }
            other => {
                let _ = multi.println(describe(other));
            }
        }
    }

    /// Stops the live view, leaving what it drew (a failed step keeps its last lines).
    pub(crate) fn finish(&mut self) {
        for (_, view) in self.steps.drain() {
            view.bar.abandon();
            for t in view.tail {
                t.abandon();
            }
        }
    }
}

/// The text of events that are not step states.
fn describe(e: &Event) -> String {
    match e {
        Event::Warning { message, line } => format!("warning: {message} (Dockerfile:{line})"),
        Event::StageSkipped { stage, name } => format!(
            "skipping stage {} (not needed for the target)",
            name.clone().unwrap_or_else(|| stage.to_string())
        ),
        Event::Miss {
            number,
            instruction,
            line,
            reason,
            ..
        } => format!("#{number} cache miss: {instruction} (Dockerfile:{line}): {reason}"),
        Event::CacheImported { source, records } => {
            format!("importing cache from {source}: {records} steps")
        }
        Event::CacheExported { target, records } => {
            format!("exported cache to {target}: {records} steps")
        }
        Event::Pulled {
            reference,
            digest,
            layers_fetched,
        } => format!("pulled {reference} ({digest}, {layers_fetched} layers downloaded)"),
        Event::Step { instruction, .. } => instruction.clone(),
        Event::Log { line, .. } => line.clone(),
        Event::StepDone { number, .. } => format!("#{number} done"),
    }
}
