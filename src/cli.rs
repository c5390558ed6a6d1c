//! The command line, declared with clap. Doc comments are the help text.
//! Only declarations live here; `lib.rs` dispatches.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Deploy CockroachDB across Kubernetes clusters in several regions, wire
/// their DNS together, verify they can reach each other, and remove it again.
///
/// A TOML config maps zones to kubectl contexts (see config/example.toml and
/// docs/configuration.md). Start with `plan`, which touches no cluster.
///
/// Exit codes: 0 success, 1 a check or verification failed, 2 could not run
/// (bad config, unreachable cluster, timeout).
#[derive(Debug, Parser)]
#[command(name = "crdb-multiregion", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render every certificate and manifest for the configured zones,
    /// without touching any cluster.
    ///
    /// Writes the CA, the root client cert and one node cert per zone
    /// (reusing what exists), and one directory per zone under the
    /// generated dir with one file per object. DNS forwarding needs the other
    /// zones' DNS load balancer addresses, which exist only after `apply`;
    /// pass them with --dns-address or the forwarding is shown as pending.
    ///
    /// Example: crdb-multiregion plan config/example.toml -o yaml
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The config file (TOML).
    pub config: PathBuf,

    /// What to print on stdout: nothing (`files`, only write the generated
    /// dir) or every object as one multi-document YAML stream (`yaml`).
    #[arg(short, long, value_enum, default_value_t = PlanOutput::Files)]
    pub output: PlanOutput,

    /// A zone's DNS load balancer address, as ZONE=IP. Repeat for several
    /// zones (or several addresses of one zone).
    #[arg(long = "dns-address", value_name = "ZONE=IP", value_parser = parse_zone_ip)]
    pub dns_addresses: Vec<(String, IpAddr)>,

    /// Write manifests here instead of the config's generated_dir.
    #[arg(long, value_name = "DIR")]
    pub generated_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    Files,
    Yaml,
}

fn parse_zone_ip(s: &str) -> Result<(String, IpAddr), String> {
    let (zone, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ZONE=IP, got {s:?}"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address (expected ZONE=IP)"))?;
    if zone.is_empty() {
        return Err(format!("missing zone in {s:?} (expected ZONE=IP)"));
    }
    Ok((zone.to_string(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn zone_ip_parsing() {
        assert_eq!(
            parse_zone_ip("us-east1-b=10.0.0.1").unwrap(),
            ("us-east1-b".to_string(), "10.0.0.1".parse().unwrap())
        );
        assert!(parse_zone_ip("us-east1-b").is_err());
        assert!(parse_zone_ip("=10.0.0.1").is_err());
        assert!(parse_zone_ip("a=not-an-ip").is_err());
    }
}
