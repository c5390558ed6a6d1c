//! Gathering: what `status` reads from each zone, through the Kubernetes
//! layer, with GET requests only (and the local certificate files). Bounded
//! per zone by `--timeout`; whatever was not read in time says so.

use std::net::SocketAddr;
use std::path::Path;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};

use super::{
    ApiUnread, CertSources, CertUnreadable, Gathered, LbUnread, NODE_TIMEOUT, NodesGathered,
    ProxyAnswer, StatusOptions, Unread,
};
use crate::config::{Config, Zone};
use crate::dns::DnsProvider;
use crate::k8s::lb::{self, LbAddresses, LbError};
use crate::k8s::{self, Cluster, dns_configmap, error_text};
use crate::{certs, names};

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
            let limit = opts.zone_timeout;
            if tokio::time::timeout(limit, read).await.is_err() {
                if g.api.is_none() {
                    g.api = Some(Err(ApiUnread::TimedOut(limit)));
                } else {
                    g.lb.get_or_insert_with(|| Err(LbUnread::TimedOut(limit)));
                    if everything {
                        g.dns.get_or_insert_with(|| Err(Unread::TimedOut(limit)));
                        g.statefulset
                            .get_or_insert_with(|| Err(Unread::TimedOut(limit)));
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
            g.api = Some(Err(ApiUnread::Connect(k8s::connect_problem(
                &e,
                &zone.context,
            ))));
            return;
        }
    };
    match k8s::reach(&cluster, opts.zone_timeout).await {
        Ok(v) => g.api = Some(Ok(v.git_version)),
        Err(p) => {
            g.api = Some(Err(ApiUnread::Unreachable(p)));
            return;
        }
    }
    let client = &cluster.client;
    let lb = read_lb(&cluster, opts.resolver);
    if !everything {
        g.lb = Some(lb.await);
        return;
    }
    let dns = async {
        let server = k8s::detect_dns(client, override_)
            .await
            .map_err(Unread::DnsServer)?;
        let data = dns_configmap::read(client, server.provider)
            .await
            .map_err(Unread::DnsConfig)?;
        Ok::<_, Unread>((
            server.provider,
            dns_configmap::our_forwards(server.provider, &data),
        ))
    };
    let sts = async {
        cluster
            .read::<StatefulSet>(&zone.namespace, names::STATEFULSET)
            .await
            .map_err(|error| Unread::StatefulSet {
                namespace: zone.namespace.clone(),
                error,
            })
    };
    let (lb, dns, sts, nodes, secrets) = tokio::join!(
        lb,
        dns,
        sts,
        read_nodes(&cluster, &zone.namespace),
        read_secrets(&cluster, &zone.namespace)
    );
    g.lb = Some(lb);
    g.dns = Some(dns);
    g.statefulset = Some(sts);
    g.nodes = Some(nodes);
    g.secrets = secrets;
}

async fn read_lb(cluster: &Cluster, resolver: Option<SocketAddr>) -> Result<LbAddresses, LbUnread> {
    match lb::read_dns_lb(cluster, resolver).await {
        Ok(None) => Err(LbUnread::Missing),
        Ok(Some(lb)) if lb.ips.is_empty() && lb.hosts.is_empty() => Err(LbUnread::NoAddress),
        Ok(Some(lb)) => Ok(lb),
        Err(LbError::Read(e)) => Err(LbUnread::Read(e)),
        Err(LbError::Resolve(e)) => Err(LbUnread::Resolve(e)),
    }
}

/// Every CockroachDB pod of the namespace, and for each running one what
/// `/health?ready=1` and `/_status/vars` answer through the pod proxy
/// (CockroachDB serves both without authentication on its HTTP port).
async fn read_nodes(cluster: &Cluster, namespace: &str) -> NodesGathered {
    let selector = format!("{}={}", names::APP_KEY, names::APP);
    let pods = match cluster.list_in::<Pod>(namespace, Some(&selector)).await {
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
    let asks = pods.iter().map(|p| async move {
        let name = p.metadata.name.clone().unwrap_or_default();
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into());
        if phase != "Running" {
            return (name, phase, None, None);
        }
        let health = proxy_get(cluster, namespace, &name, "health?ready=1").await;
        let vars = match &health {
            ProxyAnswer::Ok(_) => Some(proxy_get(cluster, namespace, &name, "_status/vars").await),
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
/// pod proxy, bounded by [`NODE_TIMEOUT`].
async fn proxy_get(cluster: &Cluster, namespace: &str, pod: &str, path: &str) -> ProxyAnswer {
    let asked = cluster.pod_proxy_get(namespace, pod, names::HTTP_PORT, path);
    match tokio::time::timeout(NODE_TIMEOUT, asked).await {
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
async fn read_secrets(cluster: &Cluster, namespace: &str) -> CertSources {
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
        let got = cluster.read::<Secret>(ns, name).await;
        keys.iter()
            .map(|key| {
                let source = format!("Secret {ns}/{name} {key}");
                let pem = match &got {
                    Err(e) => Err(CertUnreadable::Api(error_text(e))),
                    Ok(None) => Err(CertUnreadable::NoSecret),
                    Ok(Some(s)) => s
                        .data
                        .as_ref()
                        .and_then(|d| d.get(*key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                        .ok_or_else(|| CertUnreadable::NoKey(key.to_string())),
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
pub fn read_local_certs(certs_dir: &Path, zone: &str) -> CertSources {
    let files = [
        certs_dir.join(certs::CA_CERT_FILE),
        certs_dir.join(certs::CLIENT_ROOT_CERT_FILE),
        certs_dir.join(zone).join(certs::NODE_CERT_FILE),
    ];
    files
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => CertUnreadable::NoFile,
                _ => CertUnreadable::Io(e.to_string()),
            });
            (format!("local {}", path.display()), pem)
        })
        .collect()
}
