//! The command line, declared with clap. Doc comments are the help text.
//! Only declarations live here; `lib.rs` dispatches.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

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
#[command(
    name = "crdb-multiregion",
    version = env!("CRDB_MULTIREGION_VERSION"),
    max_term_width = 100
)]
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

    /// Deploy or update CockroachDB in every zone's cluster, concurrently.
    ///
    /// Safe to re-run: objects are server-side applied, the DNS config is
    /// merged (never overwritten, backed up first) and DNS is restarted
    /// only when forwarding changed. A re-run with an unchanged config
    /// changes nothing. Pre-flight checks every cluster first and stops,
    /// before changing anything, if one is unreachable or lacks rights.
    ///
    /// Example: crdb-multiregion apply config.toml
    Apply(ApplyArgs),

    /// Show what `apply` would change, using server-side dry runs; nothing
    /// is written.
    ///
    /// Prints a unified diff (old and new values, as YAML; Secrets' data
    /// masked) of every object that would change, and warns about what a
    /// change does: a rolling restart of a zone, a scale-down that removes
    /// CockroachDB nodes, a field Kubernetes does not allow to change.
    /// Exits 0 when everything is in place, 1 when something would change,
    /// 2 when it could not run (or the servers refuse a change).
    ///
    /// Example: crdb-multiregion diff config.toml --zone us-east1-b
    Diff(ApplyArgs),

    /// Remove everything `apply` created and restore each cluster's DNS
    /// config.
    ///
    /// Deletes only objects carrying our labels, waits until they are gone,
    /// removes our DNS forwarding (restoring the original ConfigMap) and
    /// restarts DNS with a rollout. Local certificates and the CA key are
    /// kept unless --purge-local is given.
    ///
    /// Example: crdb-multiregion teardown config.toml --yes
    Teardown(TeardownArgs),

    /// Verify, from inside every cluster, that pods reach each other across
    /// clusters and that each cluster's DNS resolves the other zones' names.
    ///
    /// Starts a short-lived listener and prober pod (busybox) in each zone's
    /// namespace, probes every ordered pair of clusters on the CockroachDB
    /// port over TCP, resolves every other zone's names through each
    /// cluster's DNS, and queries the DNS load balancers from here. Probe
    /// objects (and namespaces created for the check) are always removed.
    /// Exits 0 when everything passed (skips allowed), 1 when a check
    /// failed, 2 when the check could not run. See docs/check.md.
    ///
    /// Example: crdb-multiregion check config.toml -o junit --report check.xml
    Check(CheckArgs),

    /// Show whether the federation is healthy right now, per zone; reads
    /// only, concurrently across zones.
    ///
    /// For every zone: the API server answers; the DNS load balancer has
    /// an address; the cluster's DNS forwards every other zone to that
    /// zone's load balancer; the StatefulSet's pods are ready on its current
    /// revision; each CockroachDB node is ready (`/health?ready=1` through
    /// the API server's pod proxy) and no range is under-replicated or
    /// unavailable; no certificate, local or in the zone's Secrets, has
    /// expired or expires within 30 days. Exits 0 when every zone is
    /// healthy, 1 when something is not, 2 when it could not run. See
    /// docs/status.md.
    ///
    /// Example: crdb-multiregion status config.toml -o json
    Status(StatusArgs),

    /// Print a shell completion script on stdout.
    ///
    /// Example (bash): crdb-multiregion completions bash > ~/.local/share/bash-completion/completions/crdb-multiregion
    ///
    /// Example (zsh): crdb-multiregion completions zsh > ~/.zfunc/_crdb-multiregion
    Completions(CompletionsArgs),

    /// Print the manual page (roff) on stdout.
    ///
    /// Example: crdb-multiregion man | man -l -
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options shared by the commands that talk to clusters.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The config file (TOML).
    pub config: PathBuf,

    /// Kubeconfig to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Give up after this long in total (e.g. 900, 90s, 15m).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Bound of pre-flight in each zone: version, permissions and DNS
    /// server, including retries of 429/503/504 answers (e.g. 30s, 2m).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = PREFLIGHT_TIMEOUT_DEFAULT.as_str(),
        value_parser = parse_duration
    )]
    pub preflight_timeout: Duration,

    /// Bound of each wait: load balancer address, DNS rollout, pods, init
    /// Job, deletions (e.g. 300, 5m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub wait_timeout: Duration,

    /// Work on at most this many clusters at a time (0: all at once;
    /// at most 1000).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Only print the final summary (and errors).
    #[arg(short, long)]
    pub quiet: bool,

    /// Summary format on stdout: `text` (also on stderr progress) or `json`.
    #[arg(short, long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Validate every change on the servers (server-side dry run) and show
    /// it, without writing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Allow removing zones that are no longer in the config from the
    /// remaining clusters' DNS forwarding and join lists.
    #[arg(long)]
    pub prune: bool,

    /// Replace the CA in the clusters' Secrets with the local one. Without
    /// it, apply stops (exit 2, nothing changed) when a cluster's Secrets
    /// hold another CA: replacing the CA of a running federation breaks TLS
    /// between its nodes until every pod has restarted with the new
    /// certificates.
    #[arg(long)]
    pub replace_ca: bool,

    /// Start a rolling change (a StatefulSet that exists and changes) even
    /// when the federation is not healthy now (pods not ready, rollouts not
    /// complete, under-replicated or unavailable ranges). Without it, apply
    /// stops before changing anything.
    #[arg(long)]
    pub allow_unhealthy: bool,

    /// DNS server (IP:PORT) for resolving load balancer hostnames (AWS NLBs
    /// report hostnames), instead of the system resolver. Useful where
    /// those names only resolve inside a VPC or a test setup.
    #[arg(long, value_name = "IP:PORT")]
    pub lb_resolver: Option<SocketAddr>,

    /// Work only on this zone's cluster (repeatable). The other zones'
    /// clusters are only read, for their DNS load balancer addresses (this
    /// zone's DNS forwarding needs them); each must already have one.
    /// Nothing is written to them. See docs/apply.md.
    #[arg(long = "zone", value_name = "ZONE")]
    pub zones: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,

    /// Show what teardown would delete and restore, validated by the
    /// servers (server-side dry runs); nothing is deleted or written, so no
    /// confirmation is asked. Local files are never touched.
    #[arg(long)]
    pub dry_run: bool,

    /// Also delete the local certificates, the CA key and the generated
    /// manifests. Without the CA key, certificates of a cluster that still
    /// runs can never be renewed.
    #[arg(long)]
    pub purge_local: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file (TOML).
    pub config: PathBuf,

    /// Kubeconfig to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Run only these checks (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CHECK")]
    pub only: Vec<crate::check::Check>,

    /// Skip these checks (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CHECK")]
    pub skip: Vec<crate::check::Check>,

    /// TCP port to probe between pods (repeatable; default 26257). The
    /// probe pods run unprivileged, so ports start at 1024.
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1024..))]
    pub ports: Vec<u16>,

    /// Also probe CockroachDB's HTTP port 8080.
    #[arg(long)]
    pub http: bool,

    /// Image of the probe pods; it needs busybox's sh, nc, nslookup and
    /// timeout. Point it at a mirror when clusters cannot pull from Docker Hub.
    #[arg(long, value_name = "IMAGE", default_value = crate::check::probe::DEFAULT_IMAGE)]
    pub image: String,

    /// Give up after this long in total; probe objects are removed anyway.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Bound of each wait: listeners running, probers finished.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    pub wait_timeout: Duration,

    /// How long a running prober may take before its log is read as it is
    /// (its probes are bounded by a few seconds).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = crate::check::run::PROBE_TIMEOUT,
        value_parser = parse_duration
    )]
    pub probe_timeout: Duration,

    /// DNS server (IP:PORT) for resolving load balancer hostnames, instead
    /// of the system resolver.
    #[arg(long, value_name = "IP:PORT")]
    pub lb_resolver: Option<SocketAddr>,

    /// Check only the pairs of clusters this zone is part of, both ways
    /// (repeatable): its pods to every other zone's and back, its DNS
    /// resolving the others' names and theirs resolving its, its pod CIDRs
    /// against theirs. Probe pods still start in every zone (the others'
    /// listeners are its targets). Other cells of the matrices show `-`.
    #[arg(long = "zone", value_name = "ZONE")]
    pub zones: Vec<String>,

    /// Report format: `text` (matrices on stderr), `json`
    /// (docs/check-report.schema.json) or `junit` (XML), on stdout.
    #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
    pub output: CheckFormat,

    /// Write the report to this file instead of stdout (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// No progress lines; only the report (and errors).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The config file (TOML).
    pub config: PathBuf,

    /// Kubeconfig to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Show only this zone (repeatable); the exit code is about these zones
    /// only. The other zones are asked only for their DNS load balancer
    /// address, which this zone's forwarding must point at.
    #[arg(long = "zone", value_name = "ZONE")]
    pub zones: Vec<String>,

    /// Bound of each zone's reads (e.g. 10s, 1m); a zone that has not
    /// answered by then is reported as such.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// DNS server (IP:PORT) for resolving load balancer hostnames, instead
    /// of the system resolver.
    #[arg(long, value_name = "IP:PORT")]
    pub lb_resolver: Option<SocketAddr>,

    /// Report format on stdout: `text` or `json` (docs/status.schema.json).
    #[arg(short, long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Why a flag's value was refused. clap prints the message after
/// "invalid value '...' for '--flag <VALUE>': ", so it names the value and
/// the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("{input:?} is not a duration (e.g. 90, 90s, 15m, 1h)")]
    NotADuration { input: String },
    #[error("{input:?}: unknown unit {unit:?} (use ms, s, m or h)")]
    UnknownUnit { input: String, unit: String },
    #[error("a duration must be greater than zero")]
    ZeroDuration,
    #[error("{input:?} is too long: at most 168h (a week)")]
    TooLong { input: String },
    #[error("{input:?} is not a number from 0 to {MAX_CONCURRENCY} (0: all zones at once)")]
    Concurrency { input: String },
    #[error("expected ZONE=IP, got {input:?}")]
    NotZoneIp { input: String },
    #[error("{ip:?} is not an IP address (expected ZONE=IP)")]
    NotAnIp { ip: String },
    #[error("missing zone in {input:?} (expected ZONE=IP)")]
    MissingZone { input: String },
}

/// `--preflight-timeout`'s default, written as the flag takes it.
static PREFLIGHT_TIMEOUT_DEFAULT: LazyLock<String> =
    LazyLock::new(|| format_duration(crate::k8s::PREFLIGHT_TIMEOUT));

/// The longest duration any flag takes: a week is longer than any wait
/// could sensibly be, and far from where time arithmetic overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `90`, `90s`, `15m`, `1h`, `500ms`; more than zero, at most a week.
pub fn parse_duration(s: &str) -> Result<Duration, FlagError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let too_long = || FlagError::TooLong {
        input: s.to_string(),
    };
    if num.is_empty() {
        return Err(FlagError::NotADuration {
            input: s.to_string(),
        });
    }
    // Digits only, so the only parse failure is a number beyond u64.
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let millis = match unit {
        "" | "s" => n.checked_mul(1000),
        "ms" => Some(n),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(FlagError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    let d = millis.map(Duration::from_millis).ok_or_else(too_long)?;
    if d.is_zero() {
        return Err(FlagError::ZeroDuration);
    }
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// A duration as a flag would take it back: `90s`, `15m`, `1h`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// The most clusters worked on at once; more would only exhaust file
/// descriptors (and tokio's semaphore has a bound of its own).
pub const MAX_CONCURRENCY: usize = 1000;

fn parse_concurrency(s: &str) -> Result<usize, FlagError> {
    match s.trim().parse::<u64>() {
        Ok(n) if n <= MAX_CONCURRENCY as u64 => Ok(n as usize),
        _ => Err(FlagError::Concurrency {
            input: s.to_string(),
        }),
    }
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

    /// With `-o yaml`, print only this zone's objects (repeatable), e.g. to
    /// pipe one zone into `kubectl --context <its context> apply -f -`. Every
    /// document still starts with a `# zone: …, context: …` line. Files are
    /// written for every zone as without it.
    #[arg(long = "zone", value_name = "ZONE")]
    pub zones: Vec<String>,

    /// With `-o yaml`, print every zone's objects on one stream. Without it
    /// (and without --zone), `-o yaml` refuses a config of several zones:
    /// piped to `kubectl apply -f -`, they would all land in one cluster.
    #[arg(long, conflicts_with = "zones")]
    pub all_zones: bool,

    /// Write manifests here instead of the config's generated_dir.
    #[arg(long, value_name = "DIR")]
    pub generated_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    Files,
    Yaml,
}

fn parse_zone_ip(s: &str) -> Result<(String, IpAddr), FlagError> {
    let (zone, ip) = s.split_once('=').ok_or_else(|| FlagError::NotZoneIp {
        input: s.to_string(),
    })?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| FlagError::NotAnIp { ip: ip.to_string() })?;
    if zone.is_empty() {
        return Err(FlagError::MissingZone {
            input: s.to_string(),
        });
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
        let err = |s: &str| parse_zone_ip(s).unwrap_err();
        assert_eq!(
            err("us-east1-b"),
            FlagError::NotZoneIp {
                input: "us-east1-b".into()
            }
        );
        assert_eq!(
            err("=10.0.0.1"),
            FlagError::MissingZone {
                input: "=10.0.0.1".into()
            }
        );
        assert_eq!(
            err("a=not-an-ip"),
            FlagError::NotAnIp {
                ip: "not-an-ip".into()
            }
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0"), Err(FlagError::ZeroDuration));
        assert!(matches!(
            parse_duration("5 minutes"),
            Err(FlagError::UnknownUnit { unit, .. }) if unit == " minutes"
        ));
        assert!(matches!(
            parse_duration(""),
            Err(FlagError::NotADuration { .. })
        ));
        assert_eq!(parse_duration("168h").unwrap(), MAX_DURATION);
        for huge in [
            "169h",
            "18446744073709551615",
            "18446744073709551615h",
            "99999999999999999999999m",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert_eq!(e, FlagError::TooLong { input: huge.into() }, "{huge}");
        }
    }

    #[test]
    fn durations_format_as_flags_take_them() {
        for s in ["90s", "15m", "1h", "250ms", "61s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn preflight_timeout_defaults_to_the_named_constant() {
        let cli = Cli::try_parse_from(["crdb-multiregion", "apply", "c.toml"]).unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("apply parses as apply")
        };
        assert_eq!(
            args.cluster.preflight_timeout,
            crate::k8s::PREFLIGHT_TIMEOUT
        );
    }

    #[test]
    fn concurrency_is_bounded() {
        assert_eq!(parse_concurrency("0").unwrap(), 0);
        assert_eq!(parse_concurrency("1000").unwrap(), 1000);
        for bad in ["1001", "2305843009213693952", "-1"] {
            assert_eq!(
                parse_concurrency(bad),
                Err(FlagError::Concurrency { input: bad.into() })
            );
        }
    }
}
