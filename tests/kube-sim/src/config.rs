//! Plain data shared by the Rust API, the CLI and the control endpoint:
//! cluster flavours, fault settings and request-log records. No behaviour.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which managed Kubernetes a simulated cluster imitates (what `kube-system`
/// holds and how LoadBalancer addresses look).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// kube-dns Deployment and ConfigMap `kube-dns`; LB IPs.
    Gke,
    /// GKE Autopilot: Cloud DNS answers cluster DNS, so there is no kube-dns
    /// Deployment and the `kube-dns` ConfigMap is ignored; LB IPs.
    #[serde(rename = "gke-autopilot")]
    GkeAutopilot,
    /// CoreDNS with ConfigMap `coredns`; LB hostnames.
    Eks,
    /// CoreDNS with ConfigMaps `coredns` and `coredns-custom`; LB IPs.
    Aks,
    /// CoreDNS with ConfigMap `coredns` (rewritten by k3s when it restarts)
    /// importing the optional `coredns-custom`; LB IPs (ServiceLB).
    K3s,
    /// CoreDNS with ConfigMap `coredns`; LB IPs.
    #[default]
    Generic,
}

impl FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gke" => Ok(Flavor::Gke),
            "gke-autopilot" => Ok(Flavor::GkeAutopilot),
            "eks" => Ok(Flavor::Eks),
            "k3s" => Ok(Flavor::K3s),
            "aks" => Ok(Flavor::Aks),
            "generic" => Ok(Flavor::Generic),
            other => Err(format!(
                "unknown flavor {other:?}: expected gke, gke-autopilot, eks, aks, k3s or generic"
            )),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Gke => "gke",
            Flavor::GkeAutopilot => "gke-autopilot",
            Flavor::Eks => "eks",
            Flavor::Aks => "aks",
            Flavor::K3s => "k3s",
            Flavor::Generic => "generic",
        })
    }
}

/// A Pod Security Standards profile (k8s.io/pod-security-admission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Unrestricted: the API server's default when nothing is configured.
    #[default]
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Pod hardening best practices.
    Restricted,
}

impl FromStr for PodSecurityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "privileged" => Ok(PodSecurityLevel::Privileged),
            "baseline" => Ok(PodSecurityLevel::Baseline),
            "restricted" => Ok(PodSecurityLevel::Restricted),
            other => Err(format!(
                "unknown Pod Security level {other:?}: expected privileged, baseline or restricted"
            )),
        }
    }
}

impl fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        })
    }
}

/// What the simulated cloud and cluster refuse, beyond the API server's
/// own rules. Fixed for the life of a federation; every rule is off by
/// default so that a federation behaves as before unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudRules {
    /// The flavour's cloud load-balancer controller refuses what the real
    /// one refuses (gke and eks: mixed-protocol Services; eks in-tree: UDP
    /// without the `nlb` type annotation). Off: every LoadBalancer gets an address.
    pub lb_protocols: bool,
    /// eks: the AWS Load Balancer Controller is installed. Its webhook sets
    /// `spec.loadBalancerClass: service.k8s.aws/nlb` on every new
    /// LoadBalancer Service and it creates one NLB listener per port
    /// (`TCP_UDP` when both protocols share a port).
    pub eks_lb_controller: bool,
    /// The cluster-wide Pod Security `enforce` level (namespaces may
    /// override it with the `pod-security.kubernetes.io/enforce` label).
    pub pod_security: PodSecurityLevel,
}

/// Default delay before a terminating namespace is emptied and removed.
pub const DEFAULT_NAMESPACE_DELETE_DELAY: Duration = Duration::from_millis(200);

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

/// Faults of one simulated cluster. Settable at start (builder, CLI flags)
/// and at run time ([`crate::Cluster::set_faults`], the control endpoint).
/// JSON field names (control endpoint) are given in brackets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added before every API request is answered (`latency_ms`).
    #[serde(rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    /// Probability in 0..=1 that an API request fails with `error_code` (`error_rate`).
    pub error_rate: f64,
    /// 429, 500, 503 or 504 (`error_code`, default 503).
    pub error_code: u16,
    /// `Retry-After` header on injected errors (`retry_after_secs`).
    #[serde(rename = "retry_after_secs", with = "opt_secs")]
    pub retry_after: Option<Duration>,
    /// The listener is closed and open connections dropped: connections are
    /// refused until this is cleared; the server comes back on the same port (`down`).
    pub down: bool,
    /// LoadBalancer Services never get an address (`lb_never_ready`).
    pub lb_never_ready: bool,
    /// How long a terminating namespace stays before its contents and it
    /// are removed (`namespace_delete_delay_ms`, default 200).
    #[serde(rename = "namespace_delete_delay_ms", with = "millis")]
    pub namespace_delete_delay: Duration,
    /// Access reviews (SelfSubjectAccessReview) of these `"<verb> <resource>"`
    /// pairs, e.g. `"patch services"`, answer not allowed (`denied`); every
    /// other review is allowed.
    pub denied: Vec<String>,
    /// The minor version `/version` reports instead of the simulated 1.36
    /// (`server_minor`), to try clients against older servers.
    pub server_minor: Option<u32>,
    /// Permissions come from a webhook authorizer (as EKS, GKE IAM and
    /// Azure RBAC for AKS grant them), which cannot list its rules:
    /// SelfSubjectRulesReviews show only what the default RBAC roles allow
    /// and answer `incomplete` with the apiserver's evaluation error; access
    /// reviews still answer, from the webhook (`webhook_authorizer`).
    pub webhook_authorizer: bool,
    /// New connections are offered `http/1.1` only by ALPN, as by
    /// kube-apiserver with HTTP/2 serving disabled or an HTTP/1.1-only
    /// proxy in front of it (`disable_http2`); open ones keep theirs.
    pub disable_http2: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            error_rate: 0.0,
            error_code: 503,
            retry_after: None,
            down: false,
            lb_never_ready: false,
            namespace_delete_delay: DEFAULT_NAMESPACE_DELETE_DELAY,
            denied: Vec::new(),
            server_minor: None,
            webhook_authorizer: false,
            disable_http2: false,
        }
    }
}

/// How simulated pods behave, the same in every cluster of a federation
/// (fixed at start). See docs/simulator.md ("Pods that fail", "Pod termination").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRules {
    /// Images that never pull: pods stay `Pending`, their container waiting
    /// with `ErrImagePull`, then `ImagePullBackOff`, in turns.
    pub bad_images: Vec<String>,
    /// Images whose container exits at once, again and again: the pod is
    /// `Running` but never Ready, its container waiting in
    /// `CrashLoopBackOff` with a rising `restartCount`.
    pub crash_images: Vec<String>,
    /// Upper bound of a pod's termination (its grace period otherwise:
    /// `terminationGracePeriodSeconds`, or the DELETE's
    /// `gracePeriodSeconds`). None honours the grace period in full.
    #[serde(rename = "max_termination_grace_ms", with = "opt_millis")]
    pub max_termination_grace: Option<Duration>,
    /// How long the simulated CockroachDB still reports under-replicated
    /// ranges after its last unready node is Ready again.
    #[serde(rename = "crdb_recovery_ms", with = "millis")]
    pub crdb_recovery: Duration,
    /// What the cluster's node offers pods (`status.allocatable`): a pod
    /// whose requests exceed it is never scheduled.
    #[serde(default)]
    pub node_allocatable: Allocatable,
}

/// A node's allocatable CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocatable {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// GKE's allocatable on an `n2-standard-8` node (8 vCPU, 32 GB), the size
/// CockroachDB's production checklist suggests for a node (4 vCPU or more,
/// 4 GiB of memory per vCPU): 7910m CPU and 32 GiB less the reserved
/// 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8 and 6% of
/// the next 112, less 100 MiB for eviction (GKE docs, "Standard cluster
/// architecture", node allocatable resources).
impl Default for Allocatable {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        const MIB: u64 = 1 << 20;
        let reserved = GIB + GIB * 4 / 5 + GIB * 8 / 10 + GIB * 16 * 6 / 100 + 100 * MIB;
        Allocatable {
            cpu_millis: 7910,
            memory_bytes: 32 * GIB - reserved,
        }
    }
}

/// Default of [`PodRules::max_termination_grace`] for the Rust API (tests):
/// short, so that rolling updates overlap without making tests slow.
pub const DEFAULT_TEST_TERMINATION_GRACE: Duration = Duration::from_millis(200);
/// Default of [`PodRules::crdb_recovery`].
pub const DEFAULT_CRDB_RECOVERY: Duration = Duration::from_millis(500);

impl Default for PodRules {
    fn default() -> Self {
        PodRules {
            bad_images: Vec::new(),
            crash_images: Vec::new(),
            max_termination_grace: Some(DEFAULT_TEST_TERMINATION_GRACE),
            crdb_recovery: DEFAULT_CRDB_RECOVERY,
            node_allocatable: Allocatable::default(),
        }
    }
}

/// Something the simulated control plane or CockroachDB did (not an API
/// request), in the order it happened across the whole federation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Position in the federation-wide order of activities (from 1).
    pub seq: u64,
    /// Milliseconds since the federation started.
    pub at_ms: u64,
    /// `pod-terminating`, `pod-deleted`, `node-decommissioned`,
    /// `decommission-refused`, `cluster-initialised`.
    pub what: String,
    /// The object or node concerned, e.g. `db/cockroachdb-2` or `node 3 (db/cockroachdb-2)`.
    pub object: String,
}

/// One answered API request of a simulated cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    pub status: u16,
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// When it arrived, in microseconds since the federation started (the
    /// same clock for every cluster): with `duration`, which requests were
    /// in flight together and which waited for others.
    #[serde(default)]
    pub started_us: u64,
    /// True when a write stored a new version (a new resourceVersion);
    /// false for reads, no-op writes (an identical re-apply), dry runs and errors.
    pub changed: bool,
    /// The field manager (or user agent) that made the request.
    pub client: String,
    /// The TCP connection it came on: numbered from 1 in the order this
    /// cluster accepted them (see [`crate::Cluster::connections`]), so
    /// requests with the same number shared one connection.
    #[serde(default)]
    pub connection: u64,
    /// `HTTP/2` or `HTTP/1.1`: what the client and the server agreed by
    /// ALPN on that connection.
    #[serde(default)]
    pub protocol: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_json_round_trip() {
        let f = Faults {
            latency: Duration::from_millis(5),
            retry_after: Some(Duration::from_secs(2)),
            ..Faults::default()
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["latency_ms"], 5);
        assert_eq!(v["retry_after_secs"], 2);
        let back: Faults = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
        let partial: Faults = serde_json::from_str(r#"{"down": true}"#).unwrap();
        assert!(partial.down);
        assert_eq!(partial.error_code, 503);
    }

    #[test]
    fn flavor_parses() {
        assert_eq!("GKE".parse::<Flavor>().unwrap(), Flavor::Gke);
        let autopilot = "gke-autopilot".parse::<Flavor>().unwrap();
        assert_eq!(autopilot, Flavor::GkeAutopilot);
        assert_eq!(autopilot.to_string(), "gke-autopilot");
        assert_eq!(serde_json::to_value(autopilot).unwrap(), "gke-autopilot");
        assert_eq!("k3s".parse::<Flavor>().unwrap(), Flavor::K3s);
        assert!("k8s".parse::<Flavor>().is_err());
    }

    #[test]
    fn pod_security_levels_parse_and_order() {
        assert_eq!(
            "restricted".parse::<PodSecurityLevel>().unwrap(),
            PodSecurityLevel::Restricted
        );
        assert!("Restricted".parse::<PodSecurityLevel>().is_err());
        assert!(PodSecurityLevel::Restricted > PodSecurityLevel::Baseline);
        assert_eq!(PodSecurityLevel::default(), PodSecurityLevel::Privileged);
    }
}
