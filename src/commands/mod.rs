//! Command glue: each subcommand loads the config, calls the pure core and
//! the I/O layers, and turns the outcome into output and an exit code.
//! Errors here use anyhow with context; `lib.rs` prints them once.
//!
//! This module owns what every command that talks to clusters shares: the
//! async runtime and its shutdown, the overall `--timeout`, Ctrl-C and
//! SIGTERM.

use std::future::Future;

use anyhow::Context;

use crate::cli::ClusterArgs;

pub mod apply;
pub mod check;
pub mod docs;
mod inputs;
pub mod plan;
pub mod status;
pub mod teardown;

/// Runs `work` to completion on a fresh runtime. The runtime is then shut
/// down without waiting for its blocking threads: an exec credential plugin
/// that never returns (kube runs plugins on blocking threads) must not keep
/// the program alive once the command has given up on it.
pub fn block_on<F: Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let output = runtime.block_on(work);
    runtime.shutdown_background();
    Ok(output)
}

/// Runs `work` under the overall timeout, stopping promptly on Ctrl-C or
/// SIGTERM (a cancelled CI job). Local files are only ever replaced
/// atomically, so stopping anywhere leaves none half-written; a re-run
/// converges.
pub async fn with_limits<T>(
    args: &ClusterArgs,
    work: impl Future<Output = T>,
) -> anyhow::Result<T> {
    with_limits_for(args.timeout, work).await
}

/// [`with_limits`] with the overall `timeout` given.
pub async fn with_limits_for<T>(
    timeout: std::time::Duration,
    work: impl Future<Output = T>,
) -> anyhow::Result<T> {
    let stopped = tokio::select! {
        r = tokio::time::timeout(timeout, work) => match r {
            Ok(done) => return Ok(done),
            Err(_) => anyhow::anyhow!(
                "gave up after --timeout {}; nothing is left half-done locally, re-run to continue",
                crate::cli::format_duration(timeout)
            ),
        },
        signal = signal() => match signal {
            Signal::Interrupt => anyhow::anyhow!(
                "interrupted; re-run the same command to continue where it stopped"
            ),
            Signal::Terminate => anyhow::anyhow!(
                "terminated (SIGTERM); re-run the same command to continue where it stopped"
            ),
        },
    };
    end_child_processes();
    Err(stopped)
}

/// A signal that asks the command to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C (SIGINT).
    Interrupt,
    /// SIGTERM, which CI runners send to cancel a job.
    Terminate,
}

/// Waits for the next [`Signal`]. The one place the commands listen for
/// signals: [`with_limits_for`] and `check` (which still cleans up when one
/// arrives). Without a SIGTERM handler (it could not be installed), only
/// Ctrl-C.
pub async fn signal() -> Signal {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}

/// Ends (SIGTERM) our own child processes that still run. The only ones
/// the program starts are kubeconfig `exec` credential plugins, which kube
/// runs and waits for on a thread nobody can interrupt; once the command
/// has stopped waiting, a plugin that never returns would otherwise be left
/// running. Linux: children are found in /proc by their parent's pid.
fn end_child_processes() {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().nth(1));
        if ppid == Some(me.as_str()) {
            // SAFETY: kill(2) on a pid that is our own unreaped child, so it
            // cannot have been reused by another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}
