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
pub mod check;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod dns;
pub mod dnsconf;
pub mod fsutil;
pub mod lb;
pub mod names;
pub mod output;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod teardown;

/// Exit codes are a contract (documented in docs/exit-codes in the README):
/// 0 success, 1 a check or verification failed, 2 could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failed = 1,
    CouldNotRun = 2,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
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
        cli::Command::Completions(args) => commands::docs::completions(args.shell),
        cli::Command::Man => commands::docs::man(),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            print_error(&e);
            ExitCode::from(Exit::CouldNotRun as u8)
        }
    }
}

/// `error: ...` then one `Caused by:` line per source, once, on stderr.
pub fn print_error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    let mut chain = e.chain().skip(1).peekable();
    if chain.peek().is_some() {
        eprintln!("\nCaused by:");
        for cause in chain {
            eprintln!("    {cause}");
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .without_time()
        .try_init();
}
