//! crdb-multiregion: deploy CockroachDB across several Kubernetes clusters.
//!
//! ```text
//!  config.toml ──► config (parse + validate, pure)
//!                     │
//!                     ▼
//!  certs (rcgen, the only randomness) ──► plan (pure: typed objects per zone,
//!                                            │         rendered from templates/)
//!                                            ▼
//!                          output (YAML, files)    apply / teardown / check
//!                                                  (kube-rs I/O; they learn facts
//!                                                   such as DNS LB addresses and
//!                                                   feed them back into plan)
//! ```
//!
//! The binary (`main.rs`) only calls [`main`]; `cli.rs` declares the command
//! line; `commands/` holds the glue of each subcommand.

use std::process::ExitCode;

use clap::Parser;

pub mod apply;
pub mod certs;
pub(crate) mod check;
pub(crate) mod cli;
pub(crate) mod commands;
pub mod config;
pub(crate) mod diff;
pub mod dns;
pub(crate) mod exit;
pub(crate) mod fsutil;
pub mod k8s;
pub mod names;
pub(crate) mod output;
pub mod plan;
pub(crate) mod progress;
pub mod render;
pub(crate) mod resolve;
pub(crate) mod rollout;
pub(crate) mod status;
pub(crate) mod suggest;
pub mod teardown;
pub mod zone_error;

pub use exit::Exit;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    for var in ["NO_PROXY", "no_proxy"] {
        if let Ok(value) = std::env::var(var) {
            let normalized = k8s::connect::normalized_no_proxy(&value);
            if normalized != value {
                // SAFETY: the program is single-threaded here: nothing has
                // started a thread yet (the async runtime starts later).
                unsafe { std::env::set_var(var, normalized) };
            }
        }
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0, usage errors
            // to stderr; usage errors are "could not run".
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::CouldNotRun as u8
            } else {
                0
            });
        }
    };
    init_tracing(cli.verbose);
    let result = match &cli.command {
        cli::Command::Plan(args) => commands::plan::run(args),
        cli::Command::Apply(args) => commands::apply::run(args, false),
        cli::Command::Diff(args) => commands::apply::run(args, true),
        cli::Command::Teardown(args) => commands::teardown::run(args),
        cli::Command::Check(args) => commands::check::run(args),
        cli::Command::Status(args) => commands::status::run(args),
        cli::Command::Completions(args) => commands::docs::completions(args.shell),
        cli::Command::Man => commands::docs::man(),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        // The reader of our data went away (`plan -o yaml | head`): it has
        // what it wanted; end quietly, as other command-line tools do.
        Err(e)
            if e.downcast_ref::<output::StdoutError>()
                .is_some_and(output::StdoutError::is_closed) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::from(Exit::CouldNotRun as u8)
        }
    }
}

/// `error: ...` then the causes under `Caused by:`, each said once, then
/// what to do (`hint:`) when the error knows; on stderr, never failing.
pub fn print_error(e: &anyhow::Error) {
    let chain = output::error_chain(e.as_ref());
    let mut lines = chain.iter();
    if let Some(first) = lines.next() {
        ewriteln!("error: {first}");
    }
    let causes: Vec<&String> = lines.collect();
    if !causes.is_empty() {
        ewriteln!("\nCaused by:");
        for cause in causes {
            ewriteln!("    {cause}");
        }
    }
    if let Some(hint) = hint(e) {
        ewriteln!("\nhint: {hint}");
    }
}

/// The hint of the first error in the chain that has one.
fn hint(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| {
        if let Some(k) = c.downcast_ref::<k8s::connect::KubeconfigError>() {
            Some(k.hint())
        } else if let Some(apply::ApplyError::Preflight(p)) = c.downcast_ref::<apply::ApplyError>()
        {
            p.hint().map(str::to_string)
        } else {
            None
        }
    })
}

/// Log lines on stderr. kube's own (one `ERROR kube_client::...` line per
/// failed attempt, without the zone) are left out by default: what they
/// say reaches the user once, in the zone's error; `-v` shows them.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,kube=off,kube_client=off,kube_runtime=off",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .without_time()
        // An unwritable stderr must not turn into a panic.
        .log_internal_errors(false)
        .try_init();
}
