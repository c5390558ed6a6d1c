//! `status`: is the federation healthy right now? Per zone, read-only and
//! concurrent across zones: the API server answers, the DNS load balancer
//! has an address, the DNS forwarding holds every other zone pointing at
//! that zone's load balancer (and nothing else of ours), the StatefulSet's
//! pods are ready on its current revision, the CockroachDB nodes say they
//! are ready (through the API server's pod proxy) with no under-replicated
//! or unavailable ranges, and no certificate (local or in the clusters'
//! Secrets) has expired or is about to.
//!
//! Two halves: [`gather`] makes only GET requests (through the connect and
//! DNS plumbing of [`crate::k8s`], [`crate::k8s::dns_configmap`], [`crate::k8s::lb`])
//! and never writes; [`evaluate`] turns what was gathered into the report
//! and is pure (the clock is passed in).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams};
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Config, Zone};
use crate::dns::{DnsProvider, Forward};
use crate::k8s::{self, dns_configmap, error_text, lb};
use crate::{certs, names, resolve};

/// Version of the `status -o json` format (docs/status.schema.json).
pub const REPORT_VERSION: u32 = 1;

/// Bound of each request to a CockroachDB node through the pod proxy. kube's
/// retry layer retries a 503 (what a node that is not ready answers); a node
/// that answers nothing else within this long is reported not ready.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// A certificate that expires within this many days is a warning (the same
/// window in which `plan`/`apply` renew leaf certificates).
pub const EXPIRY_WARNING_DAYS: i64 = certs::RENEW_WITHIN_DAYS;

/// The verdict of one item. Only `fail` makes a zone unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Unknown,
    Warn,
    Fail,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Health::Ok => "ok",
            Health::Unknown => "unknown",
            Health::Warn => "warn",
            Health::Fail => "FAIL",
        })
    }
}

/// One item of a zone: its verdict and what was seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub status: Health,
    pub detail: String,
}

impl Item {
    fn new(status: Health, detail: impl Into<String>) -> Self {
        Item {
            status,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LbItem {
    #[serde(flatten)]
    pub item: Item,
    /// The load balancer's addresses, host names resolved.
    pub addresses: Vec<IpAddr>,
    pub hostnames: Vec<String>,
}

/// One other zone's entry in this zone's DNS forwarding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardItem {
    pub zone: String,
    pub domain: String,
    pub status: Health,
    /// Where the cluster forwards the domain to (empty: not forwarded).
    pub servers: Vec<IpAddr>,
    /// That zone's DNS load balancer addresses (empty: not known).
    pub expected: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardingItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub forwards: Vec<ForwardItem>,
    /// Domains we forward that belong to no zone of the config.
    pub unexpected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatefulSetItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
}

/// What one CockroachDB node said through the pod proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeItem {
    pub pod: String,
    pub status: Health,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodesItem {
    #[serde(flatten)]
    pub item: Item,
    pub pods: Vec<NodeItem>,
    /// Sums over the zone's nodes of CockroachDB's `ranges_underreplicated`
    /// and `ranges_unavailable` (each node counts the ranges it leads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges_underreplicated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges_unavailable: Option<u64>,
}

/// One certificate's expiry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertItem {
    /// `local certs/ca.crt` or `Secret ns/name ca.crt`.
    pub source: String,
    pub status: Health,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertsItem {
    #[serde(flatten)]
    pub item: Item,
    pub certificates: Vec<CertItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub context: String,
    /// No item failed.
    pub ok: bool,
    pub api: ApiItem,
    pub dns_lb: LbItem,
    pub dns_forwarding: ForwardingItem,
    pub statefulset: StatefulSetItem,
    pub nodes: NodesItem,
    pub certificates: CertsItem,
    /// The zone's kubeconfig context could not be used at all (the
    /// command could not run there: exit 2).
    #[serde(skip)]
    pub could_not_connect: bool,
}

impl ZoneStatus {
    /// The failed items, as `item: detail`.
    pub fn failures(&self) -> Vec<String> {
        self.items()
            .into_iter()
            .filter(|(_, i)| i.status == Health::Fail)
            .map(|(name, i)| format!("{name}: {}", i.detail))
            .collect()
    }

    /// Every item with its name, in report order.
    pub fn items(&self) -> Vec<(&'static str, &Item)> {
        vec![
            ("api", &self.api.item),
            ("dns-lb", &self.dns_lb.item),
            ("dns-forwarding", &self.dns_forwarding.item),
            ("statefulset", &self.statefulset.item),
            ("nodes", &self.nodes.item),
            ("certificates", &self.certificates.item),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub version: u32,
    /// Every zone in the report is ok.
    pub ok: bool,
    pub zones: Vec<ZoneStatus>,
}

// ---------------------------------------------------------------------------
// Gathering (GET requests only)

/// A load balancer's IP addresses (host names resolved) and host names.
pub type LbAddresses = (Vec<IpAddr>, Vec<String>);

/// Certificates as `(source, PEM or why it could not be read)`.
pub type CertSources = Vec<(String, Result<String, String>)>;

/// What was read from one zone's cluster, before any judgement.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    pub zone: String,
    /// The API server's version, or why the zone could not be asked
    /// (`connect` true: the context itself is unusable).
    pub api: Option<Result<String, (String, bool)>>,
    /// Load balancer IPs and host names, host names resolved into IPs
    /// (a host name that does not resolve is in the error).
    pub lb: Option<Result<LbAddresses, String>>,
    /// The DNS server and the forwarding of ours found in its ConfigMap.
    pub dns: Option<Result<(DnsProvider, Vec<Forward>), String>>,
    pub statefulset: Option<Result<Option<StatefulSet>, String>>,
    pub nodes: Option<NodesGathered>,
    /// In-cluster certificates: (source, PEM or why it is unreadable).
    pub secrets: CertSources,
}

/// What the pod proxy said for each CockroachDB pod.
#[derive(Debug, Clone, Default)]
pub struct NodesGathered {
    /// Listing the pods failed.
    pub list_error: Option<String>,
    /// (pod, phase, answer of /health?ready=1, answer of /_status/vars).
    pub pods: Vec<(String, String, Option<ProxyAnswer>, Option<ProxyAnswer>)>,
}

/// One pod-proxy request's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyAnswer {
    /// 2xx and its body.
    Ok(String),
    /// The node answered it is not ready (503), or kept answering 503 and
    /// others kube retries until [`NODE_TIMEOUT`].
    NotReady(String),
    /// The pod proxy itself failed (no such route, forbidden, ...).
    ProxyError(String),
}

/// Options of [`gather`].
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Bound of each zone's reads.
    pub zone_timeout: Duration,
    /// DNS server for load balancer host names.
    pub resolver: Option<SocketAddr>,
}

/// Reads every zone concurrently; `full` zones get every read, the others
/// only what the full ones need of them (their DNS load balancer address).
pub async fn gather(
    config: &Config,
    kubeconfig: &kube::config::Kubeconfig,
    full: &[String],
    opts: &StatusOptions,
) -> Vec<Gathered> {
    let override_ = config.dns.provider.provider();
    let reads = config.zones.iter().map(|zone| {
        let everything = full.contains(&zone.name);
        async move {
            let mut g = Gathered {
                zone: zone.name.clone(),
                ..Gathered::default()
            };
            let read = gather_zone(kubeconfig, zone, everything, override_, opts, &mut g);
            if tokio::time::timeout(opts.zone_timeout, read).await.is_err() {
                let why = format!(
                    "no complete answer within {} (--timeout)",
                    crate::cli::format_duration(opts.zone_timeout)
                );
                if g.api.is_none() {
                    g.api = Some(Err((why, false)));
                } else {
                    g.lb.get_or_insert_with(|| Err(why.clone()));
                    if everything {
                        g.dns.get_or_insert_with(|| Err(why.clone()));
                        g.statefulset.get_or_insert_with(|| Err(why.clone()));
                    }
                }
            }
            g
        }
    });
    futures::future::join_all(reads).await
}

async fn gather_zone(
    kubeconfig: &kube::config::Kubeconfig,
    zone: &Zone,
    everything: bool,
    override_: Option<DnsProvider>,
    opts: &StatusOptions,
    g: &mut Gathered,
) {
    let cluster = match k8s::connect(kubeconfig, zone).await {
        Ok(c) => c,
        Err(e) => {
            let p = k8s::connect_problem(&e, &zone.context);
            g.api = Some(Err((format!("{} (hint: {})", p.text(), p.hint), true)));
            return;
        }
    };
    match k8s::reach(&cluster, opts.zone_timeout).await {
        Ok(v) => g.api = Some(Ok(v.git_version)),
        Err(p) => {
            g.api = Some(Err((format!("{} (hint: {})", p.text(), p.hint), false)));
            return;
        }
    }
    let client = &cluster.client;
    let lb = read_lb(client, opts.resolver);
    if !everything {
        g.lb = Some(lb.await);
        return;
    }
    let dns = async {
        let server = k8s::detect_dns(client, override_)
            .await
            .map_err(|p| p.text())?;
        let data = dns_configmap::read(client, server.provider)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((
            server.provider,
            dns_configmap::our_forwards(server.provider, &data),
        ))
    };
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &zone.namespace);
    let sts = async {
        sets.get_opt(names::STATEFULSET).await.map_err(|e| {
            format!(
                "StatefulSet {}/{}: {}",
                zone.namespace,
                names::STATEFULSET,
                error_text(&e)
            )
        })
    };
    let (lb, dns, sts, nodes, secrets) = tokio::join!(
        lb,
        dns,
        sts,
        read_nodes(client, &zone.namespace),
        read_secrets(client, &zone.namespace)
    );
    g.lb = Some(lb);
    g.dns = Some(dns);
    g.statefulset = Some(sts);
    g.nodes = Some(nodes);
    g.secrets = secrets;
}

async fn read_lb(
    client: &kube::Client,
    resolver: Option<SocketAddr>,
) -> Result<LbAddresses, String> {
    let services: Api<Service> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let what = format!("Service {}/{}", names::KUBE_SYSTEM, names::DNS_LB_SERVICE);
    let svc = services
        .get_opt(names::DNS_LB_SERVICE)
        .await
        .map_err(|e| format!("{what}: {}", error_text(&e)))?
        .ok_or_else(|| format!("{what} does not exist (run apply)"))?;
    let (mut ips, hosts) = lb::ingress(&svc);
    if ips.is_empty() && hosts.is_empty() {
        return Err(format!("{what} has no load balancer address"));
    }
    for host in &hosts {
        let resolved = resolve::resolve_host(host, resolver)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        ips.extend(resolved);
    }
    ips.sort();
    ips.dedup();
    Ok((ips, hosts))
}

/// Every CockroachDB pod of the namespace, and for each running one what
/// `/health?ready=1` and `/_status/vars` answer through the pod proxy
/// (CockroachDB serves both without authentication on its HTTP port).
async fn read_nodes(client: &kube::Client, namespace: &str) -> NodesGathered {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", names::APP_KEY, names::APP);
    let list = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l,
        Err(e) => {
            return NodesGathered {
                list_error: Some(format!(
                    "listing pods {selector} in namespace {namespace}: {}",
                    error_text(&e)
                )),
                pods: Vec::new(),
            };
        }
    };
    let asks = list.items.iter().map(|p| async move {
        let name = p.metadata.name.clone().unwrap_or_default();
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into());
        if phase != "Running" {
            return (name, phase, None, None);
        }
        let health = proxy_get(client, namespace, &name, "health?ready=1").await;
        let vars = match &health {
            ProxyAnswer::Ok(_) => Some(proxy_get(client, namespace, &name, "_status/vars").await),
            _ => None,
        };
        (name, phase, Some(health), vars)
    });
    let mut pods: Vec<_> = futures::future::join_all(asks).await;
    pods.sort_by(|a, b| a.0.cmp(&b.0));
    NodesGathered {
        list_error: None,
        pods,
    }
}

/// GET `path` of CockroachDB's HTTP port in `pod`, through the API server's
/// pod proxy (`/api/v1/namespaces/NS/pods/https:POD:8080/proxy/PATH`).
async fn proxy_get(client: &kube::Client, namespace: &str, pod: &str, path: &str) -> ProxyAnswer {
    let uri = format!(
        "/api/v1/namespaces/{namespace}/pods/https:{pod}:{}/proxy/{path}",
        names::HTTP_PORT
    );
    let request = match http::Request::get(&uri).body(Vec::new()) {
        Ok(r) => r,
        Err(e) => return ProxyAnswer::ProxyError(e.to_string()),
    };
    match tokio::time::timeout(NODE_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(body)) => ProxyAnswer::Ok(body),
        Ok(Err(kube::Error::Api(s))) if s.code == 503 => {
            ProxyAnswer::NotReady(format!("503 Service Unavailable: {}", one_line(&s.message)))
        }
        Ok(Err(e)) => ProxyAnswer::ProxyError(error_text(&e)),
        Err(_) => ProxyAnswer::NotReady(format!(
            "no answer but 429/503/504 within {}",
            crate::cli::format_duration(NODE_TIMEOUT)
        )),
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 {
        s.chars().take(200).collect::<String>() + "..."
    } else {
        s
    }
}

/// The certificates in the zone's Secrets, as `(source, PEM)`.
async fn read_secrets(client: &kube::Client, namespace: &str) -> CertSources {
    let wanted = [
        (namespace, names::NODE_SECRET, ["ca.crt", "node.crt"]),
        (
            namespace,
            names::CLIENT_SECRET,
            ["ca.crt", "client.root.crt"],
        ),
        (
            names::DEFAULT_NAMESPACE,
            names::CLIENT_SECRET,
            ["ca.crt", "client.root.crt"],
        ),
    ];
    let reads = wanted.iter().map(|(ns, name, keys)| async move {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let got = api.get_opt(name).await;
        keys.iter()
            .map(|key| {
                let source = format!("Secret {ns}/{name} {key}");
                let pem = match &got {
                    Err(e) => Err(error_text(e)),
                    Ok(None) => Err("the Secret does not exist (run apply)".to_string()),
                    Ok(Some(s)) => s
                        .data
                        .as_ref()
                        .and_then(|d| d.get(*key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                        .ok_or_else(|| format!("the Secret has no {key}")),
                };
                (source, pem)
            })
            .collect::<Vec<_>>()
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The local certificates of `zone`: (source, PEM or why it is unreadable).
/// The CA and the root client certificate belong to every zone.
pub fn read_local_certs(certs_dir: &Path, zone: &str) -> Vec<(String, Result<String, String>)> {
    let files = [
        certs_dir.join(certs::CA_CERT_FILE),
        certs_dir.join(certs::CLIENT_ROOT_CERT_FILE),
        certs_dir.join(zone).join(certs::NODE_CERT_FILE),
    ];
    files
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist (run plan or apply)".to_string(),
                _ => e.to_string(),
            });
            (format!("local {}", path.display()), pem)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Judging (pure)

/// The report: `gathered` (every zone of the config, in config order) judged
/// against `config` at `now`; only the zones in `shown` are in it.
/// `local` holds each shown zone's local certificates ([`read_local_certs`]).
pub fn evaluate(
    config: &Config,
    gathered: &[Gathered],
    shown: &[String],
    local: &BTreeMap<String, CertSources>,
    now: OffsetDateTime,
) -> StatusReport {
    let addresses: BTreeMap<&str, Option<&Vec<IpAddr>>> = gathered
        .iter()
        .map(|g| {
            let ips = match &g.lb {
                Some(Ok((ips, _))) => Some(ips),
                _ => None,
            };
            (g.zone.as_str(), ips)
        })
        .collect();
    let zones: Vec<ZoneStatus> = config
        .zones
        .iter()
        .filter(|z| shown.contains(&z.name))
        .filter_map(|z| {
            let g = gathered.iter().find(|g| g.zone == z.name)?;
            let no_local = Vec::new();
            let local = local.get(&z.name).unwrap_or(&no_local);
            Some(judge_zone(config, z, g, &addresses, local, now))
        })
        .collect();
    StatusReport {
        version: REPORT_VERSION,
        ok: zones.iter().all(|z| z.ok),
        zones,
    }
}

fn judge_zone(
    config: &Config,
    zone: &Zone,
    g: &Gathered,
    addresses: &BTreeMap<&str, Option<&Vec<IpAddr>>>,
    local: &[(String, Result<String, String>)],
    now: OffsetDateTime,
) -> ZoneStatus {
    let unasked = || Item::new(Health::Unknown, "not asked: the API server did not answer");
    let (api, could_not_connect) = match &g.api {
        Some(Ok(v)) => (
            ApiItem {
                item: Item::new(Health::Ok, format!("Kubernetes {v}")),
                version: Some(v.clone()),
            },
            false,
        ),
        Some(Err((why, connect))) => (
            ApiItem {
                item: Item::new(Health::Fail, why.clone()),
                version: None,
            },
            *connect,
        ),
        None => (
            ApiItem {
                item: Item::new(Health::Fail, "not asked"),
                version: None,
            },
            false,
        ),
    };
    let reachable = matches!(&g.api, Some(Ok(_)));
    let dns_lb = match &g.lb {
        Some(Ok((ips, hosts))) => LbItem {
            item: Item::new(
                Health::Ok,
                if hosts.is_empty() {
                    join(ips)
                } else {
                    format!("{} ({})", hosts.join(", "), join(ips))
                },
            ),
            addresses: ips.clone(),
            hostnames: hosts.clone(),
        },
        Some(Err(e)) => LbItem {
            item: Item::new(Health::Fail, e.clone()),
            addresses: Vec::new(),
            hostnames: Vec::new(),
        },
        None => LbItem {
            item: unasked(),
            addresses: Vec::new(),
            hostnames: Vec::new(),
        },
    };
    let dns_forwarding = if reachable {
        judge_forwarding(config, zone, g.dns.as_ref(), addresses)
    } else {
        ForwardingItem {
            item: unasked(),
            provider: None,
            forwards: Vec::new(),
            unexpected: Vec::new(),
        }
    };
    let statefulset = match (&g.statefulset, reachable) {
        (Some(r), true) => judge_statefulset(zone, r),
        _ => StatefulSetItem {
            item: unasked(),
            desired: None,
            ready: None,
            updated: None,
            current_revision: None,
            update_revision: None,
        },
    };
    let nodes = match (&g.nodes, reachable) {
        (Some(n), true) => judge_nodes(n),
        _ => NodesItem {
            item: unasked(),
            pods: Vec::new(),
            ranges_underreplicated: None,
            ranges_unavailable: None,
        },
    };
    let mut sources: Vec<(String, Result<String, String>)> = local.to_vec();
    if reachable {
        sources.extend(g.secrets.iter().cloned());
    }
    let certificates = judge_certs(&sources, reachable, now);
    let mut status = ZoneStatus {
        zone: zone.name.clone(),
        context: zone.context.clone(),
        ok: true,
        api,
        dns_lb,
        dns_forwarding,
        statefulset,
        nodes,
        certificates,
        could_not_connect,
    };
    status.ok = status.failures().is_empty();
    status
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn judge_forwarding(
    config: &Config,
    zone: &Zone,
    dns: Option<&Result<(DnsProvider, Vec<Forward>), String>>,
    addresses: &BTreeMap<&str, Option<&Vec<IpAddr>>>,
) -> ForwardingItem {
    let (provider, found) = match dns {
        Some(Ok((p, f))) => (*p, f),
        Some(Err(e)) => {
            return ForwardingItem {
                item: Item::new(Health::Fail, e.clone()),
                provider: None,
                forwards: Vec::new(),
                unexpected: Vec::new(),
            };
        }
        None => {
            return ForwardingItem {
                item: Item::new(Health::Unknown, "not read"),
                provider: None,
                forwards: Vec::new(),
                unexpected: Vec::new(),
            };
        }
    };
    let mut forwards = Vec::new();
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    for other in config.zones.iter().filter(|o| o.name != zone.name) {
        let domain = names::zone_domain(&other.namespace, &config.cluster_domain);
        let servers: Vec<IpAddr> = found
            .iter()
            .find(|f| f.domain == domain)
            .map(|f| f.servers.clone())
            .unwrap_or_default();
        let expected: Option<Vec<IpAddr>> = addresses
            .get(other.name.as_str())
            .copied()
            .flatten()
            .cloned();
        let status = match (&expected, servers.is_empty()) {
            (_, true) => {
                problems.push(format!("no forwarding for zone {} ({domain})", other.name));
                Health::Fail
            }
            (None, false) => {
                unknown.push(format!(
                    "{} forwarded to {}, but that zone's DNS load balancer address is not known",
                    other.name,
                    join(&servers)
                ));
                Health::Unknown
            }
            (Some(want), false) => {
                let mut have = servers.clone();
                have.sort();
                let mut want_sorted = want.clone();
                want_sorted.sort();
                if have == want_sorted {
                    Health::Ok
                } else {
                    problems.push(format!(
                        "zone {} is forwarded to {} but its DNS load balancer is {} (run apply)",
                        other.name,
                        join(&servers),
                        join(want)
                    ));
                    Health::Fail
                }
            }
        };
        forwards.push(ForwardItem {
            zone: other.name.clone(),
            domain,
            status,
            servers,
            expected: expected.unwrap_or_default(),
        });
    }
    let unexpected: Vec<String> = found
        .iter()
        .map(|f| f.domain.clone())
        .filter(|d| !forwards.iter().any(|f| &f.domain == d))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "forwards {} of zone(s) no longer in the config (apply --prune removes them)",
            unexpected.join(", ")
        ));
    }
    let cm = format!("ConfigMap kube-system/{}", provider.configmap_name());
    let item = if !problems.is_empty() {
        Item::new(Health::Fail, format!("{cm}: {}", problems.join("; ")))
    } else if !unknown.is_empty() {
        Item::new(Health::Unknown, format!("{cm}: {}", unknown.join("; ")))
    } else if forwards.is_empty() {
        Item::new(Health::Ok, "nothing to forward: this is the only zone")
    } else {
        Item::new(
            Health::Ok,
            format!(
                "{cm}: {}",
                forwards
                    .iter()
                    .map(|f| format!("{} -> {}", f.zone, join(&f.servers)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    ForwardingItem {
        item,
        provider: Some(provider.to_string()),
        forwards,
        unexpected,
    }
}

fn judge_statefulset(zone: &Zone, read: &Result<Option<StatefulSet>, String>) -> StatefulSetItem {
    let empty = |item| StatefulSetItem {
        item,
        desired: None,
        ready: None,
        updated: None,
        current_revision: None,
        update_revision: None,
    };
    let set = match read {
        Err(e) => return empty(Item::new(Health::Fail, e.clone())),
        Ok(None) => {
            return empty(Item::new(
                Health::Fail,
                format!(
                    "StatefulSet {}/{} does not exist (run apply)",
                    zone.namespace,
                    names::STATEFULSET
                ),
            ));
        }
        Ok(Some(s)) => s,
    };
    let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = set.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let current = status.current_revision.clone();
    let update = status.update_revision.clone();
    let revision = current.clone().unwrap_or_else(|| "unknown".into());
    let rolling = update.is_some() && current != update;
    let mut detail = format!("{ready}/{desired} ready, revision {revision}");
    let health = if ready < desired {
        Health::Fail
    } else if rolling {
        detail.push_str(&format!(
            "; rolling update to {} in progress ({updated}/{desired} updated)",
            update.clone().unwrap_or_default()
        ));
        Health::Warn
    } else if desired != zone.replicas as i32 {
        detail.push_str(&format!(
            "; the config says {} replicas (run apply)",
            zone.replicas
        ));
        Health::Warn
    } else {
        Health::Ok
    };
    StatefulSetItem {
        item: Item::new(health, detail),
        desired: Some(desired),
        ready: Some(ready),
        updated: Some(updated),
        current_revision: current,
        update_revision: update,
    }
}

/// The sum of a metric's samples in Prometheus text (`name{labels} value`
/// or `name value`); `None` when it has none.
pub fn metric_sum(text: &str, metric: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            labels.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None // another metric with this one as prefix
        };
        let Some(v) = value.and_then(|v| v.split_whitespace().next()) else {
            continue;
        };
        if let Ok(v) = v.parse::<f64>() {
            *sum.get_or_insert(0) += v.max(0.0) as u64;
        }
    }
    sum
}

fn judge_nodes(n: &NodesGathered) -> NodesItem {
    if let Some(e) = &n.list_error {
        return NodesItem {
            item: Item::new(Health::Fail, e.clone()),
            pods: Vec::new(),
            ranges_underreplicated: None,
            ranges_unavailable: None,
        };
    }
    let mut pods = Vec::new();
    let mut proxy_errors = Vec::new();
    let mut under = Some(0u64);
    let mut unavailable = Some(0u64);
    for (pod, phase, health, vars) in &n.pods {
        let (status, detail) = match health {
            None => (Health::Fail, format!("pod {phase}")),
            Some(ProxyAnswer::Ok(_)) => (Health::Ok, "ready".to_string()),
            Some(ProxyAnswer::NotReady(why)) => (Health::Fail, format!("not ready: {why}")),
            Some(ProxyAnswer::ProxyError(why)) => {
                proxy_errors.push(why.clone());
                (
                    Health::Unknown,
                    format!("health unknown (pod proxy: {why})"),
                )
            }
        };
        match vars {
            Some(ProxyAnswer::Ok(text)) => {
                under = under
                    .zip(metric_sum(text, "ranges_underreplicated"))
                    .map(|(a, b)| a + b);
                unavailable = unavailable
                    .zip(metric_sum(text, "ranges_unavailable"))
                    .map(|(a, b)| a + b);
            }
            _ => {
                under = None;
                unavailable = None;
            }
        }
        pods.push(NodeItem {
            pod: pod.clone(),
            status,
            detail,
        });
    }
    let not_ready: Vec<String> = pods
        .iter()
        .filter(|p| p.status == Health::Fail)
        .map(|p| format!("{} {}", p.pod, p.detail))
        .collect();
    let ready = pods.iter().filter(|p| p.status == Health::Ok).count();
    let ranges = match (under, unavailable) {
        (Some(u), Some(a)) => format!("; ranges: {u} under-replicated, {a} unavailable"),
        _ => String::new(),
    };
    let item = if pods.is_empty() {
        Item::new(Health::Fail, "no CockroachDB pods")
    } else if !not_ready.is_empty() {
        Item::new(
            Health::Fail,
            format!("{ready}/{} ready; {}", pods.len(), not_ready.join("; ")),
        )
    } else if !proxy_errors.is_empty() {
        Item::new(
            Health::Unknown,
            format!("node health unknown (pod proxy: {})", proxy_errors[0]),
        )
    } else if under.unwrap_or(0) > 0 || unavailable.unwrap_or(0) > 0 {
        Item::new(
            Health::Fail,
            format!("{ready}/{} ready{ranges}", pods.len()),
        )
    } else if under.is_none() {
        Item::new(
            Health::Unknown,
            format!(
                "{ready}/{} ready; ranges unknown (_status/vars not readable)",
                pods.len()
            ),
        )
    } else {
        Item::new(Health::Ok, format!("{ready}/{} ready{ranges}", pods.len()))
    };
    let (under, unavailable) = if proxy_errors.is_empty() {
        (under, unavailable)
    } else {
        (None, None)
    };
    NodesItem {
        item,
        pods,
        ranges_underreplicated: under,
        ranges_unavailable: unavailable,
    }
}

fn judge_certs(
    sources: &[(String, Result<String, String>)],
    reachable: bool,
    now: OffsetDateTime,
) -> CertsItem {
    let mut list = Vec::new();
    for (source, pem) in sources {
        let item = match pem {
            Err(e) => CertItem {
                source: source.clone(),
                status: Health::Warn,
                not_after: None,
                days_left: None,
                detail: e.clone(),
            },
            Ok(pem) => match certs::not_after(pem) {
                None => CertItem {
                    source: source.clone(),
                    status: Health::Fail,
                    not_after: None,
                    days_left: None,
                    detail: "not a PEM certificate".into(),
                },
                Some(end) => {
                    let days = (end - now).whole_days();
                    let date = end.date().to_string();
                    let (status, detail) = if end <= now {
                        (Health::Fail, format!("expired on {date}"))
                    } else if days < EXPIRY_WARNING_DAYS {
                        (
                            Health::Warn,
                            format!("expires on {date}, in {days} day(s): run apply to renew"),
                        )
                    } else {
                        (Health::Ok, format!("expires on {date}"))
                    };
                    CertItem {
                        source: source.clone(),
                        status,
                        not_after: Some(
                            end.format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or(date),
                        ),
                        days_left: Some(days),
                        detail,
                    }
                }
            },
        };
        list.push(item);
    }
    let worst = list.iter().map(|c| c.status).max().unwrap_or(Health::Ok);
    let bad: Vec<String> = list
        .iter()
        .filter(|c| c.status != Health::Ok)
        .map(|c| format!("{}: {}", c.source, c.detail))
        .collect();
    let earliest = list
        .iter()
        .filter(|c| c.days_left.is_some())
        .min_by_key(|c| c.days_left);
    let mut detail = if bad.is_empty() {
        match earliest {
            Some(c) => format!(
                "{} checked; the first to expire: {} ({})",
                list.len(),
                c.source,
                c.detail
            ),
            None => "none found".into(),
        }
    } else {
        bad.join("; ")
    };
    if !reachable {
        detail.push_str(" (in-cluster certificates not read: the API server did not answer)");
    }
    CertsItem {
        item: Item::new(worst, detail),
        certificates: list,
    }
}

/// The report as text: per zone one line per item, then a verdict.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    for z in &report.zones {
        out.push_str(&format!(
            "{} (context {}): {}\n",
            z.zone,
            z.context,
            if z.ok { "healthy" } else { "UNHEALTHY" }
        ));
        for (name, item) in z.items() {
            out.push_str(&format!(
                "  {name:<15} {:<8} {}\n",
                item.status, item.detail
            ));
        }
    }
    let unhealthy: Vec<String> = report
        .zones
        .iter()
        .filter(|z| !z.ok)
        .map(|z| format!("{} ({})", z.zone, z.failures().join("; ")))
        .collect();
    if unhealthy.is_empty() {
        out.push_str(&format!(
            "status: healthy ({} zone(s))\n",
            report.zones.len()
        ));
    } else {
        out.push_str(&format!(
            "status: {} of {} zone(s) unhealthy: {}\n",
            unhealthy.len(),
            report.zones.len(),
            unhealthy.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests;
