//! Progress of the commands that work on clusters (`apply`, `diff`,
//! `teardown`, `check`) on stderr, and the colours of their summaries.
//!
//! Two looks, chosen once per run by [`Progress::new`]:
//! - **plain**: one `zone: message` line per event, as a log. Used when
//!   stderr is not a terminal, `NO_COLOR` is set (to anything but the empty
//!   string, see no-color.org) or `TERM=dumb`. Steps and counts add no line
//!   of their own, so a plain run reads the same as before live progress
//!   existed.
//! - **live**: on a terminal, one line per zone redrawn in place: a spinner,
//!   the zone, the time spent on it, and its current step with its own
//!   elapsed time and counts (`LB pending 12s`, `pods 2/3 8s`); `✔`/`✘`
//!   and the zone's duration when it is done. Warnings, failures and lines
//!   of no zone (`certs`, `local`) are printed above the zone lines and
//!   stay. The zone lines are cleared at the end: the summary that follows
//!   says it all, with the same marks and colours.
//!
//! Any other stderr output while the lines are drawn ([`crate::ewrite!`],
//! `-v` log lines) goes through [`suspend`], so it never tears them.
//!
//! This module decides nothing and talks to no cluster; it never writes to
//! stdout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often live lines are redrawn (the elapsed times move in seconds).
const TICK: Duration = Duration::from_millis(200);
/// Width of the zone column (the summaries use the same).
const ZONE_WIDTH: usize = 16;

/// Whether stderr gets colour and live lines: a terminal, no `NO_COLOR`
/// (set and not empty), and not `TERM=dumb`.
pub fn styled_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb && std::io::stderr().is_terminal()
}

/// Progress of one command run. `Copy`, so every zone's task holds one.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
    live: bool,
    /// Which of a zone's concurrent lines of work this handle reports for
    /// (see [`Progress::lane`]).
    lane: u8,
}

impl Progress {
    /// Live lines when stderr is styled ([`styled_stderr`]) and not
    /// `quiet`; plain lines otherwise; nothing but summaries when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            live: !quiet && styled_stderr(),
            lane: 0,
        }
    }

    /// The same progress for a second line of work that runs in a zone at
    /// the same time as the first (apply waits for the load balancer while
    /// the pods start): its steps are shown beside the other's
    /// (`LB pending 3s · pods 2/3 1s`), and its messages end only its own.
    pub fn lane(self, lane: u8) -> Self {
        Progress { lane, ..self }
    }

    /// Starts the live lines, one per zone in this order. Plain: nothing.
    pub fn begin<'a>(&self, zones: impl IntoIterator<Item = &'a str>) {
        if self.live {
            live().begin(zones);
        }
    }

    /// Something happened in `zone`. Plain: the line `zone: msg`. Live: the
    /// zone's line shows it (its step timer stops); warnings, failures and
    /// messages of a name without a line are printed above.
    pub fn say(&self, zone: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let msg = msg.to_string();
        if self.live {
            live().say(zone, self.lane, msg);
        } else {
            crate::ewriteln!("{zone}: {msg}");
        }
    }

    /// `zone` started waiting for `what` (`LB pending`, `DNS restarting`):
    /// live lines show it with its elapsed time. Plain: nothing (the wait
    /// was already said with [`Progress::say`]).
    pub fn step(&self, zone: &str, what: &str) {
        if self.live {
            live().step(zone, self.lane, what, None);
        }
    }

    /// Like [`Progress::step`], with a count: `pods 2/3`. The step's timer
    /// keeps running while only the count changes.
    pub fn count(&self, zone: &str, what: &str, done: usize, of: usize) {
        if self.live {
            live().step(zone, self.lane, what, Some((done, of)));
        }
    }

    /// `zone` is done (`ok` or failed): live lines show `✔`/`✘`, the
    /// zone's duration and its last message. Plain: nothing.
    pub fn finish_zone(&self, zone: &str, ok: bool) {
        if self.live {
            live().finish_zone(zone, ok);
        }
    }

    /// Clears the live lines (before the summary). Plain: nothing.
    pub fn end(&self) {
        if self.live {
            live().end();
        }
    }

    /// Writes a command's summary to stderr: as it is, or on a styled
    /// stderr with `✔`/`✘` before each zone's line and colours
    /// ([`paint_summary`]). `zones` are (zone, ok) in any order.
    pub fn summary(&self, text: &str, zones: &[(&str, bool)]) {
        if styled_stderr() {
            crate::ewrite!("{}", paint_summary(text, zones));
        } else {
            crate::ewrite!("{text}");
        }
    }
}

/// Runs `f` (which writes to stderr) with the live lines taken away and
/// redrawn after, so that its output is not torn. Without live lines it
/// just runs `f`.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match LIVE.get() {
        Some(l) if l.active() => l.multi.suspend(f),
        _ => f(),
    }
}

/// stderr for log lines (`-v`): written around the live lines, as
/// [`suspend`] does for everything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

static LIVE: OnceLock<Live> = OnceLock::new();

fn live() -> &'static Live {
    LIVE.get_or_init(Live::new)
}

/// A wait in progress: what, since when, and a count (`2/3`).
#[derive(Debug)]
struct Step {
    what: String,
    since: Instant,
    count: Option<(usize, usize)>,
}

/// A zone's line and what it shows.
type Line = (ProgressBar, Arc<Mutex<ZoneState>>);

/// What one zone's live line shows.
#[derive(Debug)]
struct ZoneState {
    zone: String,
    started: Instant,
    text: String,
    /// The waits in progress, by lane ([`Progress::lane`]).
    steps: BTreeMap<u8, Step>,
    /// Done: ok, and how long the zone took.
    done: Option<(bool, Duration)>,
}

impl ZoneState {
    fn line(&self) -> String {
        let zone = format!("{:<ZONE_WIDTH$}", self.zone);
        match self.done {
            Some((ok, took)) => format!(
                "{} {} {:>6} {}",
                mark(ok, true),
                paint(&zone, if ok { Paint::Ok } else { Paint::Fail }),
                format!("{:.1}s", took.as_secs_f64()),
                self.text
            ),
            None => {
                // Waits in progress replace the last message.
                let text = if self.steps.is_empty() {
                    self.text.clone()
                } else {
                    let steps: Vec<String> = self
                        .steps
                        .values()
                        .map(|step| {
                            format!(
                                "{}{} {}s",
                                step.what,
                                step.count
                                    .map(|(done, of)| format!(" {done}/{of}"))
                                    .unwrap_or_default(),
                                step.since.elapsed().as_secs()
                            )
                        })
                        .collect();
                    steps.join(" · ")
                };
                format!(
                    "{zone} {:>6} {text}",
                    format!("{}s", self.started.elapsed().as_secs())
                )
            }
        }
    }
}

struct Live {
    multi: MultiProgress,
    zones: Mutex<BTreeMap<String, Line>>,
}

impl Live {
    fn new() -> Live {
        Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            zones: Mutex::new(BTreeMap::new()),
        }
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Line>> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> bool {
        !self.lines().is_empty()
    }

    fn begin<'a>(&self, zones: impl IntoIterator<Item = &'a str>) {
        let mut lines = self.lines();
        for zone in zones {
            if lines.contains_key(zone) {
                continue;
            }
            let state = Arc::new(Mutex::new(ZoneState {
                zone: zone.to_string(),
                started: Instant::now(),
                text: String::new(),
                steps: BTreeMap::new(),
                done: None,
            }));
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(style(state.clone(), false));
            bar.enable_steady_tick(TICK);
            lines.insert(zone.to_string(), (bar, state));
        }
    }

    fn with_zone(&self, zone: &str, f: impl FnOnce(&mut ZoneState)) -> bool {
        let lines = self.lines();
        let Some((bar, state)) = lines.get(zone) else {
            return false;
        };
        f(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
        bar.tick();
        true
    }

    fn say(&self, zone: &str, lane: u8, msg: String) {
        let lasting = msg.starts_with("warning:") || msg.starts_with("failed");
        let shown = self.with_zone(zone, |s| {
            s.text = first_line(&msg).to_string();
            s.steps.remove(&lane);
        });
        if lasting || !shown {
            let text = if msg.starts_with("warning:") {
                format!("{zone}: {}", paint(&msg, Paint::Warn))
            } else if lasting {
                format!("{zone}: {}", paint(&msg, Paint::Fail))
            } else {
                format!("{zone}: {msg}")
            };
            let _ = self.multi.println(text);
        }
    }

    fn step(&self, zone: &str, lane: u8, what: &str, count: Option<(usize, usize)>) {
        self.with_zone(zone, |s| {
            let since = match s.steps.get(&lane) {
                Some(step) if step.what == what => step.since,
                _ => Instant::now(),
            };
            s.steps.insert(
                lane,
                Step {
                    what: what.to_string(),
                    since,
                    count,
                },
            );
        });
    }

    fn finish_zone(&self, zone: &str, ok: bool) {
        let lines = self.lines();
        if let Some((bar, state)) = lines.get(zone) {
            {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if s.done.is_none() {
                    s.done = Some((ok, s.started.elapsed()));
                    s.steps.clear();
                }
            }
            bar.set_style(style(state.clone(), true));
            bar.finish();
        }
    }

    fn end(&self) {
        let mut lines = self.lines();
        for (bar, _) in lines.values() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
        lines.clear();
    }
}

/// The style of a zone's line: the spinner (while running) and the line
/// made from the zone's state at each draw, cut to the terminal's width.
fn style(state: Arc<Mutex<ZoneState>>, done: bool) -> ProgressStyle {
    let template = if done {
        "{line}"
    } else {
        "{spinner:.cyan} {line}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "line",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let line = state.lock().unwrap_or_else(|e| e.into_inner()).line();
                let width = console::Term::stderr()
                    .size_checked()
                    .map(|(_, cols)| cols as usize)
                    .unwrap_or(80)
                    .saturating_sub(3);
                let _ = w.write_str(&console::truncate_str(&line, width, "…"));
            },
        )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Ok,
    Fail,
    Warn,
}

/// `s` in the colour of `p` (ANSI SGR), always: callers decide whether
/// colour is wanted ([`styled_stderr`]).
pub fn paint(s: &str, p: Paint) -> String {
    let style = console::Style::new().force_styling(true);
    let style = match p {
        Paint::Ok => style.green(),
        Paint::Fail => style.red().bold(),
        Paint::Warn => style.yellow(),
    };
    style.apply_to(s).to_string()
}

/// `✔` or `✘`, coloured when `colour`.
pub fn mark(ok: bool, colour: bool) -> String {
    let (m, p) = if ok {
        ("✔", Paint::Ok)
    } else {
        ("✘", Paint::Fail)
    };
    if colour { paint(m, p) } else { m.to_string() }
}

/// A command's summary for a terminal: each line that starts with a zone
/// of `zones` gets `✔`/`✘` and its zone in green/red, `FAILED`/`LEFT
/// BEHIND` in red, `warning:` lines in yellow, the other lines two spaces
/// in (under the marks) and the closing line in green or red. Pure.
pub fn paint_summary(text: &str, zones: &[(&str, bool)]) -> String {
    let all_ok = zones.iter().all(|(_, ok)| *ok);
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let zone = zones.iter().find(|(z, _)| {
            line.strip_prefix(z)
                .is_some_and(|rest| rest.starts_with(' '))
        });
        let painted = if let Some((z, ok)) = zone {
            let rest = &line[z.len()..];
            let rest = paint_words(rest);
            format!(
                "{} {}{rest}",
                mark(*ok, true),
                paint(z, if *ok { Paint::Ok } else { Paint::Fail })
            )
        } else if line.trim_start().starts_with("warning:") {
            format!("  {}", paint(line, Paint::Warn))
        } else if i + 1 == lines.len() {
            paint(line, if all_ok { Paint::Ok } else { Paint::Fail })
        } else {
            format!("  {}", paint_words(line))
        };
        out.push_str(&painted);
        out.push('\n');
    }
    out
}

fn paint_words(s: &str) -> String {
    let mut out = s.to_string();
    for word in ["FAILED", "LEFT BEHIND"] {
        out = out.replace(word, &paint(word, Paint::Fail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_painted_summary_marks_each_zone_and_keeps_the_text() {
        let text = "us-east1-b       no changes (0.3s)\nus-west1-a       FAILED: boom (2.0s)\n                 warning: careful\napply finished in 2.1s: 1 of 2 zone(s) failed (us-west1-a)\n";
        let painted = paint_summary(text, &[("us-east1-b", true), ("us-west1-a", false)]);
        let plain = console::strip_ansi_codes(&painted);
        assert_eq!(
            plain,
            "✔ us-east1-b       no changes (0.3s)\n✘ us-west1-a       FAILED: boom (2.0s)\n                   warning: careful\napply finished in 2.1s: 1 of 2 zone(s) failed (us-west1-a)\n"
        );
        assert!(painted.contains(&paint("FAILED", Paint::Fail)));
        assert!(painted.contains(&paint("us-west1-a", Paint::Fail)));
        assert!(painted.ends_with(&format!(
            "{}\n",
            paint(
                "apply finished in 2.1s: 1 of 2 zone(s) failed (us-west1-a)",
                Paint::Fail
            )
        )));
    }

    #[test]
    fn a_zone_line_shows_the_step_its_count_and_elapsed_seconds() {
        let mut s = ZoneState {
            zone: "us-east1-b".into(),
            started: Instant::now(),
            text: "13 objects: 13 created".into(),
            steps: BTreeMap::from([(
                1,
                Step {
                    what: "pods".into(),
                    since: Instant::now(),
                    count: Some((2, 3)),
                },
            )]),
            done: None,
        };
        let line = console::strip_ansi_codes(&s.line()).to_string();
        assert!(
            line.starts_with("us-east1-b           0s pods 2/3 0s"),
            "{line}"
        );
        // A wait of another lane is shown before it, in lane order.
        s.steps.insert(
            0,
            Step {
                what: "LB pending".into(),
                since: Instant::now(),
                count: None,
            },
        );
        let line = console::strip_ansi_codes(&s.line()).to_string();
        assert!(
            line.starts_with("us-east1-b           0s LB pending 0s · pods 2/3 0s"),
            "{line}"
        );
        s.done = Some((false, Duration::from_millis(2500)));
        let line = console::strip_ansi_codes(&s.line()).to_string();
        assert_eq!(line, "✘ us-east1-b         2.5s 13 objects: 13 created");
    }
}
