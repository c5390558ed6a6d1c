//! crdb-multiregion: deploy CockroachDB across several Kubernetes clusters.
//!
//! ```text
//!  config.toml ──► config (parse + validate, pure)
//!                     │
//!                     ▼
//!  certs (rcgen, the only randomness) ──► plan (pure: typed objects per zone)
//!                                            │            ▲
//!                                            ▼            │ facts (DNS LB addresses,
//!                                 plan -o yaml / files    │  DNS provider) from clusters
//!                                                         │
//!                                   apply / teardown / check (kube-rs, I/O)
//! ```
//!
//! The binary (`main.rs`) only calls [`run`]; `cli.rs` declares the command line.

pub mod certs;
pub mod dns;
