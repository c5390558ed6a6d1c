//! The checked configuration: what [`super::Config::load`] returns, the
//! choices it may hold, and the errors it reports. Plain data, no checks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::certs::KeyType;

/// A checked configuration. Built only by [`Config::load`] / [`Config::parse`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file this config came from (used in messages).
    pub source: PathBuf,
    /// Name of this federation; goes into every object's labels.
    pub federation: String,
    pub cluster_domain: String,
    pub generated_dir: PathBuf,
    pub certs: CertsConfig,
    pub cockroachdb: CockroachConfig,
    pub dns: DnsConfig,
    /// Zones in file order. The first zone runs the one-time init Job.
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertsConfig {
    pub dir: PathBuf,
    pub ca_key: PathBuf,
    pub key_type: KeyType,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CockroachConfig {
    pub image: String,
    pub storage: String,
    pub storage_class: Option<String>,
    /// Container resources; each defaults to its counterpart (request to
    /// limit and back), then to CockroachDB's own manifests' values.
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub templates_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderChoice {
    Auto,
    KubeDns,
    Coredns,
    CorednsCustom,
}

impl ProviderChoice {
    /// The DNS server this choice names, or `None` (`auto`): detect it.
    pub fn provider(self) -> Option<crate::dns::DnsProvider> {
        use crate::dns::DnsProvider;
        match self {
            ProviderChoice::Auto => None,
            ProviderChoice::KubeDns => Some(DnsProvider::KubeDns),
            ProviderChoice::Coredns => Some(DnsProvider::CoreDns),
            ProviderChoice::CorednsCustom => Some(DnsProvider::CoreDnsCustom),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancer {
    Public,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    Gke,
    Eks,
    Aks,
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Udp,
    Tcp,
}

/// The DNS load balancer's protocols when the config names none: one
/// protocol where the cloud's load balancer refuses two on one Service.
///
/// - gke: UDP. The GCP cloud provider refuses mixed-protocol LoadBalancer
///   Services (kubernetes/cloud-provider-gcp, `TestCheckMixedProtocol`).
/// - eks: TCP (forwarded with `force_tcp`), as CockroachDB's own EKS
///   manifests do. The in-tree AWS provider refuses mixed protocols
///   (kubernetes/kubernetes#105361) and the AWS Load Balancer Controller
///   makes one listener per port.
/// - aks, generic: UDP and TCP (Azure's load balancer accepts both; mixed
///   protocol Services are GA since Kubernetes 1.26).
pub fn default_protocols(cloud: Cloud) -> Vec<Protocol> {
    match cloud {
        Cloud::Gke => vec![Protocol::Udp],
        Cloud::Eks => vec![Protocol::Tcp],
        Cloud::Aks | Cloud::Generic => vec![Protocol::Udp, Protocol::Tcp],
    }
}

/// Why `cloud` cannot serve UDP and TCP on one load balancer Service, if it
/// cannot. GKE documents mixed protocols only for internal passthrough load
/// balancers (with GKE subsetting), so an internal one on gke is allowed.
pub fn mixed_protocol_refused(cloud: Cloud, lb: LoadBalancer) -> Option<&'static str> {
    match (cloud, lb) {
        (Cloud::Eks, _) => Some(
            "AWS load balancers refuse a Service with both UDP and TCP on port 53 (the in-tree provider rejects it; the AWS Load Balancer Controller makes one listener); use [\"TCP\"] (the eks default, forwarded with force_tcp)",
        ),
        (Cloud::Gke, LoadBalancer::Public) => Some(
            "GKE refuses a public load balancer Service with both UDP and TCP; use [\"UDP\"] (the gke default) or load_balancer = \"internal\" (mixed protocols need GKE subsetting there)",
        ),
        _ => None,
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsConfig {
    pub provider: ProviderChoice,
    pub load_balancer: LoadBalancer,
    pub cloud: Cloud,
    /// Protocols the DNS load balancer serves, sorted, deduplicated, non-empty.
    pub protocols: Vec<Protocol>,
    /// Extra annotations for the DNS load balancer Service.
    pub annotations: BTreeMap<String, String>,
    /// DNS server for resolving load balancer host names (`--lb-resolver`
    /// overrides it); the system resolver when unset.
    pub lb_resolver: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    pub name: String,
    pub context: String,
    pub region: Option<String>,
    pub namespace: String,
    pub replicas: u32,
}

impl Zone {
    /// CockroachDB `--locality`: `region=<r>,zone=<z>` or `zone=<z>`.
    pub fn locality(&self) -> String {
        match &self.region {
            Some(region) => format!("region={region},zone={}", self.name),
            None => format!("zone={}", self.name),
        }
    }
}

/// One thing wrong with a config file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Invalid { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct Invalid<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} is not a valid config ({n} problem{}):",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(
                f,
                "\n  {}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// A `--zone` flag that names no zone of the config.
#[derive(Debug, thiserror::Error)]
#[error(
    "--zone {name}: no zone {name:?} in {}{}; its zones are {}",
    .file.display(),
    .suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default(),
    .zones.join(", ")
)]
pub struct UnknownZone {
    pub name: String,
    pub file: PathBuf,
    pub suggestion: Option<String>,
    pub zones: Vec<String>,
}
