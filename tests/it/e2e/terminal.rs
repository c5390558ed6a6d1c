//! What `apply` shows a person (issue 12): on a terminal, one live line per
//! zone with the current wait and its elapsed time (`LB pending 2s`) and
//! counts (`pods 1/3`), ✔ marks and colour; without a terminal, or with
//! `NO_COLOR`, the plain `zone: message` lines (snapshotted).
//!
//! The terminal is a pseudo-terminal made with openpty(3) through libc,
//! already a dev-dependency: the binary's stderr is its slave side, the test
//! reads everything drawn from the master side. No terminal multiplexer or
//! pty crate is needed, so CI needs nothing installed for it.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};

use super::*;

/// How long kube-sim's load balancers take to get an address here: long
/// enough that the `LB pending` step lives through several seconds.
const LB_DELAY: Duration = Duration::from_millis(3500);
/// Bound of one run of the binary in these tests.
const RUN_BOUND: Duration = Duration::from_secs(120);
/// Width of the pseudo-terminal.
const COLUMNS: u16 = 160;

/// Runs `cmd` with its stderr on a new pseudo-terminal of [`COLUMNS`]x40; returns
/// its exit status and every byte it wrote there.
fn run_on_terminal(mut cmd: Command) -> (ExitStatus, Vec<u8>) {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let size = libc::winsize {
        ws_row: 40,
        ws_col: COLUMNS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds into the out-parameters; name and
    // termios may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened for us and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("binary starts");
    // The slave side must be closed here too, or the master never sees EOF.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux answers EIO once no process holds the slave side any more.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let status = wait_bounded(&mut child, RUN_BOUND, "the binary in a terminal");
    (status, reader.join().expect("pty reader"))
}

/// The binary with the env's kubeconfig and resolver, as a person runs it
/// in a terminal: colour allowed, a real TERM.
fn terminal_command(env: &Env, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"));
    cmd.current_dir(env.dir.path())
        .args(args)
        .arg("--kubeconfig")
        .arg(env.fed.kubeconfig_path())
        .arg("--lb-resolver")
        .arg(env.fed.dns_addr().to_string())
        .env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color");
    cmd
}

/// Every state of every line the terminal was shown: the stream without
/// escape sequences, cut at carriage returns and newlines, and at the
/// terminal's width (live lines are padded with spaces to the width, so
/// that the terminal itself moves to the next line; every character drawn
/// here takes one column).
fn drawn_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let plain = console::strip_ansi_codes(&text);
    let mut lines = Vec::new();
    for segment in plain.split(['\r', '\n']) {
        let chars: Vec<char> = segment.chars().collect();
        for row in chars.chunks(usize::from(COLUMNS)) {
            let row: String = row.iter().collect();
            let row = row.trim_end();
            if !row.is_empty() {
                lines.push(row.to_string());
            }
        }
    }
    lines
}

/// The seconds shown after `step` on `zone`'s live lines (`LB pending 2s`).
fn step_seconds(lines: &[String], zone: &str, step: &str) -> BTreeSet<u64> {
    lines
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some(zone))
        .filter_map(|l| {
            let rest = &l[l.find(step)? + step.len()..];
            rest.split_whitespace()
                .next()?
                .strip_suffix('s')?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn apply_on_a_terminal_shows_live_zone_lines_with_elapsed_time_during_the_lb_wait() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| {
        b.lb_delay(LB_DELAY)
            .pod_ready_delay(Duration::from_millis(1500))
    });
    let config = env.config("fed.toml", &ZONES, "");
    let (status, raw) = run_on_terminal(terminal_command(
        &env,
        &["apply", config.to_str().unwrap(), "--wait-timeout", "60s"],
    ));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let lines = drawn_lines(&raw);
    let shown = lines.join("\n");
    assert!(status.success(), "{status}: {shown}");
    assert!(!text.contains("panicked"), "{shown}");

    // Redrawn in place (cursor movement, line erase) and in colour.
    assert!(text.contains("\x1b[2K"), "no line was redrawn:\n{shown}");
    assert!(text.contains("\x1b[32m"), "no green:\n{shown}");
    for zone in ZONES {
        // The wait's own clock moved while the load balancer was pending:
        // the same line was shown with at least two different times.
        let seconds = step_seconds(&lines, zone, "LB pending");
        assert!(
            seconds.len() >= 2,
            "{zone}: `LB pending` shown with the times {seconds:?}, expected it to count up:\n{shown}"
        );
        // Counts while the pods come up, and the final mark.
        assert!(
            lines
                .iter()
                .any(|l| l.contains(zone) && l.contains("pods ") && l.contains("/3 ")),
            "{zone}: no `pods n/3` count:\n{shown}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("✔ {zone} "))),
            "{zone}: no ✔ line:\n{shown}"
        );
    }
    // The plain per-event lines are not printed on a terminal.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("us-east1-b: 11 objects")),
        "{shown}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("apply finished in ") && l.ends_with("3 zone(s) ok")),
        "{shown}"
    );

    // NO_COLOR on the same terminal: plain lines, no escape sequence.
    let mut cmd = terminal_command(
        &env,
        &["apply", config.to_str().unwrap(), "--wait-timeout", "60s"],
    );
    cmd.env("NO_COLOR", "1");
    let (status, raw) = run_on_terminal(cmd);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(status.success(), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape sequences with NO_COLOR:\n{text}"
    );
    assert!(!text.contains('✔'), "{text}");
    assert!(
        text.contains("us-east1-b: connected (Kubernetes"),
        "no plain lines:\n{text}"
    );
}

/// The plain lines, stable across runs: the progress lines grouped by zone
/// (zones work concurrently, so only each zone's own order is fixed), and
/// inside a zone the workload's lines (the StatefulSet, its pods, `cockroach
/// init`: apply runs them at the same time as the load balancer wait and
/// the DNS forwarding) after the others, each in its own order; then the
/// summary as printed; durations filtered.
fn stable_plain_output(stderr: &str) -> String {
    let (progress, summary): (Vec<&str>, Vec<&str>) = stderr
        .lines()
        .partition(|l| l.split_once(": ").is_some_and(|(z, _)| !z.contains(' ')));
    let mut grouped: Vec<&str> = progress;
    let workload = |m: &str| {
        m.starts_with("StatefulSet ") || m.contains("CockroachDB pods") || m.contains("initialised")
    };
    let key = |l: &&str| {
        l.split_once(": ")
            .map(|(z, m)| (z.to_string(), workload(m)))
    };
    grouped.sort_by_key(key);
    grouped
        .into_iter()
        .chain(summary)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_without_a_terminal_prints_plain_lines() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    let config = env.config("fed.toml", &ZONES, "");
    // Colour would be allowed (no NO_COLOR), but stderr is a pipe.
    let mut cmd = terminal_command(
        &env,
        &["apply", config.to_str().unwrap(), "--wait-timeout", "20s"],
    );
    let out = cmd.output().expect("binary runs");
    let err = stderr(&out);
    assert_exit(&out, 0);
    assert!(!err.contains('\x1b'), "escape sequences on a pipe:\n{err}");
    assert!(!err.contains('✔'), "{err}");
    insta::with_settings!({filters => vec![
        (r"\(\d+\.\d+s\)", "([duration])"),
        (r"finished in \d+\.\d+s", "finished in [duration]"),
        (r"keep \S+/my-safe-directory", "keep [config dir]/my-safe-directory"),
    ]}, {
        insta::assert_snapshot!(stable_plain_output(&err));
    });
}

/// Regression (issue 12): a zone whose wait failed showed `(0.0s)` in the
/// summary, because only finished steps were counted. The wait cannot end
/// before --wait-timeout, so the zone's time is at least that (a lower
/// bound that holds by construction, not a measure of speed).
#[test]
fn apply_summary_counts_the_time_of_a_wait_that_failed() {
    let env = Env::start(Flavor::Gke, &ZONES[..1], |b| {
        b.lb_delay(Duration::from_secs(3600))
    });
    let config = env.config("fed.toml", &ZONES[..1], "");
    let out = env.run(&[
        "apply",
        config.to_str().unwrap(),
        "--wait-timeout",
        "2s",
        "-o",
        "json",
    ]);
    assert_exit(&out, 2);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let zone = &report["zones"][0];
    assert!(
        zone["error"]
            .as_str()
            .is_some_and(|e| e.contains("waiting for the DNS load balancer address")),
        "{zone}"
    );
    let seconds = zone["seconds"].as_f64().expect("zones[].seconds");
    assert!(seconds >= 2.0, "the zone waited 2s, reported {seconds}s");

    let out = env.run(&["apply", config.to_str().unwrap(), "--wait-timeout", "2s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("us-east1-b ") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("no FAILED summary line:\n{err}"));
    let shown: f64 = line
        .rsplit_once('(')
        .and_then(|(_, d)| d.strip_suffix("s)"))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration at the end of {line:?}"));
    assert!(shown >= 2.0, "{line}");
}
