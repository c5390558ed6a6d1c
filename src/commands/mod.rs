//! Command glue: each subcommand loads the config, calls the pure core and
//! the I/O layers, and turns the outcome into output and an exit code.
//! Errors here use anyhow with context; `lib.rs` prints them once.

pub mod apply;
pub mod check;
pub mod docs;
pub mod plan;
pub mod teardown;
