//! The integration tests, as one test binary (one link of the crate and
//! its dependencies instead of one per file): the real `crdb-multiregion`
//! binary against kube-sim's simulated clusters (`e2e`, `check`), the CLI
//! on files only (`cli`), certificates checked with openssl (`certs`), and
//! property tests of the config checker (`properties`).

mod certs;
mod check;
mod cli;
mod e2e;
mod harness;
mod properties;
