//! Command-line types (clap). Doc comments are the help text; no behaviour
//! here beyond handing the parsed command to [`crate::commands`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Flavor, PodSecurityLevel};
use crate::network::Network;

/// A simulated federation of Kubernetes API servers on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the clusters, print `ready <kubeconfig>` on stdout, run until SIGINT/SIGTERM.
    Up(Box<UpArgs>),
    /// Change the faults of a running cluster through its control endpoint.
    Faults(FaultArgs),
    /// Print (or clear) a running cluster's request log as JSON.
    Requests(RequestArgs),
    /// eks: update the CoreDNS add-on as `aws eks update-addon
    /// --resolve-conflicts OVERWRITE` does (the default Corefile comes back).
    AddonUpdate(AddonUpdateArgs),
    /// Restart a zone's control plane as its distribution would (k3s
    /// writes its bundled `coredns` ConfigMap again).
    RestartZone(AddonUpdateArgs),
    /// Print the simulated CockroachDB's availability record as JSON:
    /// `unavailable_ms` (total time with unready nodes in two or more zones
    /// at once), `longest_unavailable_ms`, `max_zones_unready`, ...
    Availability(AvailabilityArgs),
    /// Print what the simulated control planes and CockroachDB did (pods
    /// terminating and deleted, nodes decommissioned), in order, as JSON.
    Activity(ActivityArgs),
    /// Remove network namespaces, processes and files that `--network real`
    /// runs left behind when they were killed (those of kube-sim processes
    /// that no longer run).
    Cleanup(CleanupArgs),
}

#[derive(Debug, Args)]
pub struct AddonUpdateArgs {
    /// Control endpoint URL, as printed by `kube-sim up`.
    #[arg(long, env = "KUBE_SIM_CONTROL")]
    pub control: String,
    /// Zone (or context) of the cluster.
    #[arg(long)]
    pub zone: String,
}

#[derive(Debug, Args)]
pub struct AvailabilityArgs {
    /// Control endpoint URL, as printed by `kube-sim up`.
    #[arg(long, env = "KUBE_SIM_CONTROL")]
    pub control: String,
    /// Start the record again after printing it.
    #[arg(long)]
    pub reset: bool,
}

#[derive(Debug, Args)]
pub struct ActivityArgs {
    /// Control endpoint URL, as printed by `kube-sim up`.
    #[arg(long, env = "KUBE_SIM_CONTROL")]
    pub control: String,
    /// Only this zone's (or context's) activity.
    #[arg(long)]
    pub zone: Option<String>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Also remove those of kube-sim processes that still run.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Zones, comma-separated; each `zone` or `zone=context`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub zones: Vec<String>,
    /// gke, gke-autopilot, eks, aks, k3s or generic.
    #[arg(long, default_value = "generic")]
    pub flavor: Flavor,
    /// Where to write the kubeconfig.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay before a LoadBalancer Service gets its address, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub lb_delay_ms: u64,
    /// Probability (0..=1) that an API request fails with --error-code.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Status code of injected errors: 429, 500, 503 or 504.
    #[arg(long, default_value_t = 503)]
    pub error_code: u16,
    /// Retry-After (seconds) sent with injected errors.
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// LoadBalancer Services never get an address.
    #[arg(long)]
    pub lb_never_ready: bool,
    /// Offer only http/1.1 by ALPN (no HTTP/2), as kube-apiserver with
    /// HTTP/2 serving disabled.
    #[arg(long)]
    pub disable_http2: bool,
    /// How long a terminating namespace lingers, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub namespace_delete_delay_ms: u64,
    /// Delay before a new pod is Running and Ready, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub pod_ready_delay_ms: u64,
    /// How long a Job's pod runs, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub job_duration_ms: u64,
    /// Load balancers follow the flavour's cloud: gke and eks refuse
    /// Services that mix protocols, eks (in-tree) refuses UDP without the
    /// `nlb` type annotation; refused Services get no address and a
    /// Warning Event `SyncLoadBalancerFailed`.
    #[arg(long)]
    pub cloud_lb_rules: bool,
    /// eks only: the AWS Load Balancer Controller is installed (sets
    /// `spec.loadBalancerClass: service.k8s.aws/nlb` on new LoadBalancer
    /// Services, one NLB listener per port).
    #[arg(long)]
    pub eks_lb_controller: bool,
    /// LB host names answer NXDOMAIN for this long after the address is
    /// published, in milliseconds (as new AWS load balancer names do).
    #[arg(long, default_value_t = 0)]
    pub lb_dns_delay_ms: u64,
    /// Pod Security level enforced in every namespace without a
    /// `pod-security.kubernetes.io/enforce` label: privileged, baseline or restricted.
    #[arg(long, default_value = "privileged")]
    pub pod_security: PodSecurityLevel,
    /// Pods with this image never pull: Pending, ErrImagePull then
    /// ImagePullBackOff (repeatable).
    #[arg(long, value_name = "IMAGE")]
    pub bad_image: Vec<String>,
    /// Pods with this image run but crash again and again: never Ready,
    /// CrashLoopBackOff with a rising restart count (repeatable).
    #[arg(long, value_name = "IMAGE")]
    pub crash_image: Vec<String>,
    /// CPU each cluster's node offers pods, in millicores (default: GKE's
    /// allocatable on an n2-standard-8, 7910); a pod requesting more stays
    /// Pending, Unschedulable.
    #[arg(long, value_name = "MILLICORES")]
    pub node_cpu_millis: Option<u64>,
    /// Memory each cluster's node offers pods, in MiB (default: GKE's
    /// allocatable on an n2-standard-8).
    #[arg(long, value_name = "MIB")]
    pub node_memory_mib: Option<u64>,
    /// Shorten pod termination to at most this many milliseconds (default:
    /// the pod's full terminationGracePeriodSeconds, as on a real cluster).
    #[arg(long)]
    pub max_termination_grace_ms: Option<u64>,
    /// How long the simulated CockroachDB still reports under-replicated
    /// ranges after its last unready node is Ready again, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub crdb_recovery_ms: u64,
    /// Seed user DNS customisations (stub domain acme.internal -> 10.99.0.10).
    #[arg(long)]
    pub seed_user_dns: bool,
    /// Address of the control endpoint.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control_addr: SocketAddr,
    /// Address of the UDP DNS responder for EKS LB hostnames.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub dns_addr: SocketAddr,
    /// Also write a JSON description of the running federation here.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// `simulated` (pods never run) or `real`: busybox pods run as processes
    /// in per-cluster network namespaces with a real dnsmasq per cluster
    /// (needs root, ip, busybox, dnsmasq; see docs/simulator.md).
    #[arg(long, default_value = "simulated")]
    pub network: Network,
    /// Real network: no packet passes between zones A and B (repeatable).
    #[arg(long, value_name = "A:B", value_parser = crate::network::NetRule::parse_cut)]
    pub cut: Vec<(String, String)>,
    /// Real network: connections from zone A to zone B are dropped (repeatable).
    #[arg(long, value_name = "A:B", value_parser = crate::network::NetRule::parse_cut)]
    pub cut_oneway: Vec<(String, String)>,
    /// Real network: route the load-balancer ranges (10.150+k.0.0/16) from
    /// this machine into the simulated network through a link of its own,
    /// removed on exit; refused when the host already routes them.
    #[arg(long)]
    pub host_lb_routes: bool,
    /// Real network: TCP to the pods of ZONE on PORT is dropped (repeatable).
    #[arg(long, value_name = "ZONE:PORT", value_parser = crate::network::NetRule::parse_block)]
    pub block_port: Vec<(String, u16)>,
}

#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Control endpoint URL, as printed by `kube-sim up` (http://127.0.0.1:PORT).
    #[arg(long, env = "KUBE_SIM_CONTROL")]
    pub control: String,
    /// Zone (or context) of the cluster.
    #[arg(long)]
    pub zone: String,
    #[arg(long)]
    pub latency_ms: Option<u64>,
    #[arg(long)]
    pub error_rate: Option<f64>,
    #[arg(long)]
    pub error_code: Option<u16>,
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// Close (true) or reopen (false) the cluster's listener.
    #[arg(long)]
    pub down: Option<bool>,
    #[arg(long)]
    pub lb_never_ready: Option<bool>,
    #[arg(long)]
    pub namespace_delete_delay_ms: Option<u64>,
    /// Offer only http/1.1 (true) or h2 and http/1.1 (false) to new connections.
    #[arg(long)]
    pub disable_http2: Option<bool>,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Control endpoint URL, as printed by `kube-sim up`.
    #[arg(long, env = "KUBE_SIM_CONTROL")]
    pub control: String,
    /// Zone (or context) of the cluster.
    #[arg(long)]
    pub zone: String,
    /// Clear the log instead of printing it.
    #[arg(long)]
    pub clear: bool,
}
