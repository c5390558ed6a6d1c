//! The I/O of `check`: connect to every zone (and list its Nodes for their
//! pod CIDRs), run one probe round in all clusters at once, query the DNS
//! load balancers, and always clean up. When only checks without probe pods
//! are selected (`--only cidr`), no probe object is created at all.
//!
//! Cancellation: [`check`] races the probe round against a stop signal (the
//! overall `--timeout`, Ctrl-C, SIGTERM). Whatever ends it, the round's
//! future is dropped first, then cleanup runs with its own bound. Everything cleanup
//! needs (connected clients, the namespaces we created or may have created)
//! is recorded in a [`Session`] that outlives the round, before the API call
//! that creates the object is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::config::Kubeconfig;

use crate::watch;
use serde::Serialize;

use super::cidr::{self, PodCidrs};
use super::lb::{self, Answer, Transport};
use super::probe::{self, DnsTarget, ProbeLog, ProberTargets, TcpTarget};
use super::{Check, CheckReport, CheckResult, NOT_FORWARDED, Status};
use crate::apply::Progress;
use crate::cluster::{self, Cluster, WaitError, error_text, wait_for};
use crate::config::{Config, Protocol, ProviderChoice, Zone};
use crate::dns::{self, DnsProvider};
use crate::{dnsconf, names, resolve};

/// Bound of one DNS load balancer query.
pub const LB_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Default bound of cleanup (after success, failure, timeout or Ctrl-C).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Default time a running prober may take before its log is read as it is.
/// The script itself is bounded by a few seconds (`nc -w`, `timeout`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why DNS load balancer rows are skipped when there is no load balancer.
pub const NO_DNS_LB: &str = "no DNS load balancer (run apply)";

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub checks: BTreeSet<Check>,
    /// TCP ports probed, sorted and deduplicated.
    pub ports: Vec<u16>,
    pub image: String,
    /// Bound of each wait: listeners running, probers finished.
    pub wait_timeout: Duration,
    /// How long a running prober may take.
    pub probe_timeout: Duration,
    pub cleanup_timeout: Duration,
    /// Bound of one DNS load balancer query.
    pub lb_timeout: Duration,
    /// DNS server for resolving load balancer hostnames.
    pub resolver: Option<std::net::SocketAddr>,
}

/// What stopped a probe round early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout(Duration),
    Interrupted,
}

/// A problem in one zone, with a hint for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneProblem {
    pub zone: String,
    pub problem: String,
    pub hint: String,
}

impl std::fmt::Display for ZoneProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (hint: {})", self.zone, self.problem, self.hint)
    }
}

fn list(problems: &[ZoneProblem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// Why `check` could not produce a report (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("could not connect to {} zone(s):{}", .0.len(), list(.0))]
    Connect(Vec<ZoneProblem>),
    #[error("the probe pods could not run in {} zone(s):{}", .0.len(), list(.0))]
    Probe(Vec<ZoneProblem>),
    #[error("the probe pods produced no output we recognise:{}", list(.0))]
    NoResults(Vec<ZoneProblem>),
    #[error("gave up after --timeout {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("interrupted")]
    Interrupted,
}

/// The outcome of [`check`]: the report (or why there is none) and what
/// cleanup could not remove.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<CheckReport, CheckError>,
    pub cleanup: Vec<ZoneProblem>,
}

/// Whether the zone's namespace was there before the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NsState {
    /// Not looked at yet.
    Unknown,
    Existed,
    /// The create request was sent; it may or may not have happened.
    Creating,
    Created,
}

struct ZoneState {
    cluster: Cluster,
    namespace: NsState,
    /// Probe objects may exist (a create was sent).
    touched: bool,
}

/// What cleanup must know, recorded before each create is sent.
#[derive(Default)]
pub struct Session {
    zones: Mutex<BTreeMap<String, ZoneState>>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ZoneState>> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, cluster: &Cluster) {
        self.lock().insert(
            cluster.zone.clone(),
            ZoneState {
                cluster: cluster.clone(),
                namespace: NsState::Unknown,
                touched: false,
            },
        );
    }

    fn set_namespace(&self, zone: &str, state: NsState) {
        if let Some(z) = self.lock().get_mut(zone) {
            z.namespace = state;
        }
    }

    fn touch(&self, zone: &str) {
        if let Some(z) = self.lock().get_mut(zone) {
            z.touched = true;
        }
    }

    /// Removes every probe object and the namespaces the check created, in
    /// all zones at once, each bounded by `timeout`.
    pub async fn cleanup(&self, timeout: Duration, progress: Progress) -> Vec<ZoneProblem> {
        let zones: Vec<(Cluster, NsState, bool)> = self
            .lock()
            .values()
            .map(|z| (z.cluster.clone(), z.namespace, z.touched))
            .collect();
        let work = zones.into_iter().map(|(cluster, ns, touched)| async move {
            let zone = cluster.zone.clone();
            let r = tokio::time::timeout(timeout, cleanup_zone(&cluster, ns, touched, progress))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "cleanup did not finish within {}s",
                        timeout.as_secs()
                    ))
                });
            r.err().map(|problem| ZoneProblem {
                hint: format!(
                    "remove them with `kubectl --context {} -n {} delete pod,service -l {}` (and the namespace, if the check created it), or run check again",
                    cluster.context,
                    cluster.namespace,
                    probe::probe_selector()
                ),
                zone,
                problem,
            })
        });
        futures::future::join_all(work)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Runs the checks, stopping early when `stop` completes, then cleans up
/// (bounded by `opts.cleanup_timeout`, or until `stop_cleanup` completes).
pub async fn check(
    config: &Config,
    kubeconfig: &Kubeconfig,
    opts: &CheckOptions,
    stop: impl std::future::Future<Output = Stop>,
    stop_cleanup: impl std::future::Future<Output = ()>,
    progress: Progress,
) -> Outcome {
    let session = Session::default();
    let result = tokio::select! {
        r = probe_round(config, kubeconfig, opts, &session, progress) => r,
        s = stop => Err(match s {
            Stop::Timeout(d) => CheckError::Timeout(d),
            Stop::Interrupted => CheckError::Interrupted,
        }),
    };
    // The round is dropped (cancelled) here, whatever ended it.
    let cleanup = tokio::select! {
        c = session.cleanup(opts.cleanup_timeout, progress) => c,
        () = stop_cleanup => vec![ZoneProblem {
            zone: "all zones".to_string(),
            problem: "cleanup was interrupted; probe objects may be left".to_string(),
            hint: format!(
                "run check again (it removes leftovers first) or delete pods and Services labelled {}",
                probe::probe_selector()
            ),
        }],
    };
    Outcome { result, cleanup }
}

/// A connected zone and what the checks need to know about it.
struct Connected {
    zone: Zone,
    cluster: Cluster,
    /// Domains the cluster's DNS forwards (when the DNS check runs).
    forwarded: Option<BTreeSet<String>>,
    /// When apply had configured forwarding here: the hint for the case
    /// that none of it is left.
    lost_forwarding: Option<String>,
    lb: LbAddress,
    /// The Nodes' pod ranges (when the cidr check runs).
    pod_cidrs: Option<PodCidrs>,
}

enum LbAddress {
    NotChecked,
    Missing,
    Unresolved(String),
    Addresses(Vec<IpAddr>),
}

async fn probe_round(
    config: &Config,
    kubeconfig: &Kubeconfig,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<CheckReport, CheckError> {
    let connected = connect_all(config, kubeconfig, opts, session, progress).await?;
    let zones: Vec<String> = config.zones.iter().map(|z| z.name.clone()).collect();
    let ports = if opts.checks.contains(&Check::Tcp) {
        opts.ports.clone()
    } else {
        Vec::new()
    };
    let cidr_zones: Vec<(String, PodCidrs)> = connected
        .iter()
        .filter_map(|c| Some((c.zone.name.clone(), c.pod_cidrs.clone()?)))
        .collect();
    let cidr_results = cidr::results(&cidr_zones);
    if !opts.checks.iter().any(|c| c.needs_probes()) {
        return Ok(CheckReport::new(zones, ports, cidr_results));
    }

    let started = futures::future::join_all(connected.iter().map(|c| async move {
        start_listener(config, c, opts, session, progress)
            .await
            .map(|ip| (c.zone.name.clone(), ip))
    }))
    .await;
    let mut listeners = BTreeMap::new();
    let mut problems = Vec::new();
    for r in started {
        match r {
            Ok((zone, ip)) => {
                listeners.insert(zone, ip);
            }
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(CheckError::Probe(problems));
    }

    let probers = futures::future::join_all(connected.iter().map(|c| {
        let listeners = &listeners;
        async move { run_prober(config, c, listeners, opts, session, progress).await }
    }));
    let lb_checks = dns_lb_checks(config, &connected, &listeners, opts);
    let (probers, lb_results) = futures::future::join(probers, lb_checks).await;

    let mut results = lb_results;
    results.extend(cidr_results);
    let mut problems = Vec::new();
    let mut silent = Vec::new();
    let mut any_results = false;
    let mut probed = false;
    for r in probers {
        match r {
            Ok(p) => {
                results.extend(p.skipped);
                if p.targets.is_empty() {
                    continue;
                }
                if !p.log.errors.is_empty() {
                    problems.push(ZoneProblem {
                        zone: p.zone.clone(),
                        problem: format!(
                            "pod {} could not probe: {}",
                            probe::PROBER_POD,
                            p.log.errors.join("; ")
                        ),
                        hint: "use an image with busybox's sh, nc, nslookup, timeout, sed, grep, tr, cut, head, tail and sleep (--image)".to_string(),
                    });
                    continue;
                }
                probed = true;
                any_results |= p.log.has_results();
                if !p.log.has_results() {
                    silent.push(ZoneProblem {
                        zone: p.zone.clone(),
                        problem: format!(
                            "pod {} printed no results{}",
                            probe::PROBER_POD,
                            match p.log.other.first() {
                                Some(line) => format!("; its log says: {line:?}"),
                                None => " (its log is empty)".to_string(),
                            }
                        ),
                        hint: "the probe image needs busybox's sh, nc, nslookup and timeout (--image); a runtime that does not run pods cannot be checked".to_string(),
                    });
                }
                results.extend(super::prober_results(&p.zone, &p.targets, &p.log));
            }
            Err(p) => problems.push(p),
        }
    }
    // A listener that died during the round would turn into refused
    // connections: that is a probe problem, not a network result.
    problems.extend(
        futures::future::join_all(connected.iter().map(listener_still_running))
            .await
            .into_iter()
            .flatten(),
    );
    if !problems.is_empty() {
        return Err(CheckError::Probe(problems));
    }
    if probed && !any_results {
        return Err(CheckError::NoResults(silent));
    }
    Ok(CheckReport::new(zones, ports, results))
}

fn provider_override(config: &Config) -> Option<DnsProvider> {
    match config.dns.provider {
        ProviderChoice::Auto => None,
        ProviderChoice::KubeDns => Some(DnsProvider::KubeDns),
        ProviderChoice::Coredns => Some(DnsProvider::CoreDns),
        ProviderChoice::CorednsCustom => Some(DnsProvider::CoreDnsCustom),
    }
}

async fn connect_all(
    config: &Config,
    kubeconfig: &Kubeconfig,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<Vec<Connected>, CheckError> {
    let results = futures::future::join_all(
        config
            .zones
            .iter()
            .map(|zone| connect_zone(config, kubeconfig, zone, opts, session, progress)),
    )
    .await;
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(c) => ok.push(c),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(ok)
    } else {
        Err(CheckError::Connect(problems))
    }
}

async fn connect_zone(
    config: &Config,
    kubeconfig: &Kubeconfig,
    zone: &Zone,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<Connected, ZoneProblem> {
    let problem = |problem: String, hint: &str| ZoneProblem {
        zone: zone.name.clone(),
        problem,
        hint: hint.to_string(),
    };
    let reached = |p: cluster::PreflightProblem| {
        let hint = p.hint.clone();
        problem(
            p.to_string().replace(&format!(" (hint: {hint})"), ""),
            &hint,
        )
    };
    let cluster = cluster::connect(kubeconfig, zone)
        .await
        .map_err(|e| reached(cluster::connect_problem(&e, &zone.context)))?;
    let version = cluster::reach(&cluster, cluster::PREFLIGHT_TIMEOUT)
        .await
        .map_err(reached)?;
    session.register(&cluster);

    // The DNS facts, the LB address and the pod ranges are independent:
    // one round of requests for all of them.
    let dns_facts = async {
        if !opts.checks.contains(&Check::Dns) {
            return Ok(None);
        }
        // Our backup record says apply configured forwarding here; if none
        // of it is left, someone took it away (an add-on update): a failure
        // to name, not a check before apply.
        let (server, applied) = futures::future::join(
            cluster::detect_dns(&cluster.client, provider_override(config)),
            dnsconf::owner(&cluster.client),
        )
        .await;
        let server = server.map_err(|p| problem(p.problem, &p.hint))?;
        let applied = applied.ok().flatten().is_some();
        let (data, addon) =
            futures::future::join(dnsconf::read(&cluster.client, server.provider), async {
                if applied {
                    dnsconf::addon_manager_of(&cluster.client, server.provider).await
                } else {
                    None
                }
            })
            .await;
        let data = data.map_err(|e| {
            problem(
                format!("could not read the DNS configuration: {e}"),
                "the context needs read access to ConfigMaps in kube-system",
            )
        })?;
        let forwards = dns::parse_forwards(server.provider, &data).map_err(|e| {
            problem(
                format!("could not parse the DNS configuration: {e}"),
                "fix the DNS ConfigMap in kube-system; apply and teardown need it readable too",
            )
        })?;
        let domains: BTreeSet<String> = forwards.into_iter().map(|f| f.domain).collect();
        let lost = applied.then(|| {
            super::lost_forwarding_hint(
                &zone.name,
                server.provider.configmap_name(),
                addon.as_deref(),
            )
        });
        Ok(Some((domains, lost)))
    };
    let lb = async {
        if opts.checks.contains(&Check::DnsLb) {
            dns_lb_address(&cluster, opts).await
        } else {
            LbAddress::NotChecked
        }
    };
    let pod_cidrs = async {
        if opts.checks.contains(&Check::Cidr) {
            Some(pod_cidrs(&cluster).await)
        } else {
            None
        }
    };
    let (forwarded, lb, pod_cidrs) = futures::future::join3(dns_facts, lb, pod_cidrs).await;
    let (forwarded, lost_forwarding) = match forwarded? {
        Some((domains, lost)) => (Some(domains), lost),
        None => (None, None),
    };
    progress.say(
        &zone.name,
        format!("connected (Kubernetes {})", version.git_version),
    );
    match &pod_cidrs {
        Some(PodCidrs::Ranges(r)) => {
            progress.say(&zone.name, format!("pod CIDRs {}", cidr::list(r)));
        }
        Some(PodCidrs::Missing) => progress.say(&zone.name, "no pod CIDR on its Nodes"),
        _ => {}
    }
    Ok(Connected {
        zone: zone.clone(),
        cluster,
        forwarded,
        lost_forwarding,
        lb,
        pod_cidrs,
    })
}

/// The pod ranges of the cluster's Nodes. A Node list that cannot be read
/// is not a reason to stop the other checks: its pairs are skipped.
async fn pod_cidrs(cluster: &Cluster) -> PodCidrs {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => cidr::from_nodes(&list.items),
        Err(kube::Error::Api(s)) if s.code == 403 => PodCidrs::Unlisted(format!(
            "{} (the context needs the right to list Nodes, cluster-wide)",
            s.message
        )),
        Err(e) => PodCidrs::Unlisted(error_text(&e)),
    }
}

async fn dns_lb_address(cluster: &Cluster, opts: &CheckOptions) -> LbAddress {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let svc = match services.get_opt(names::DNS_LB_SERVICE).await {
        Ok(Some(s)) => s,
        Ok(None) => return LbAddress::Missing,
        Err(e) => {
            return LbAddress::Unresolved(format!(
                "could not read Service kube-system/{}: {}",
                names::DNS_LB_SERVICE,
                error_text(&e)
            ));
        }
    };
    let (mut ips, hosts) = crate::lb::ingress(&svc);
    for host in &hosts {
        match resolve::resolve_host(host, opts.resolver).await {
            Ok(found) => ips.extend(found),
            Err(e) => return LbAddress::Unresolved(e.to_string()),
        }
    }
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        LbAddress::Missing
    } else {
        LbAddress::Addresses(ips)
    }
}

fn zone_problem(zone: &str, problem: String, hint: &str) -> ZoneProblem {
    ZoneProblem {
        zone: zone.to_string(),
        problem,
        hint: hint.to_string(),
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(names::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

fn has_probe_label(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(probe::PROBE_KEY))
        .is_some_and(|v| v == "true")
}

/// Namespace (created if missing), leftovers removed, Service and listener
/// created; returns the listener's pod IP once it runs.
async fn start_listener(
    config: &Config,
    c: &Connected,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<IpAddr, ZoneProblem> {
    let zone = &c.zone.name;
    let ns = &c.zone.namespace;
    let api_problem = |what: &str, e: &kube::Error| {
        zone_problem(
            zone,
            format!("{what}: {}", error_text(e)),
            "the context needs rights to create namespaces, Services and Pods (and Pod Security admission must allow a non-root busybox pod)",
        )
    };
    let namespaces: Api<Namespace> = Api::all(c.cluster.client.clone());
    let mut existing = namespaces
        .get_opt(ns)
        .await
        .map_err(|e| api_problem(&format!("reading namespace {ns}"), &e))?;
    if existing
        .as_ref()
        .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    {
        progress.say(zone, format!("namespace {ns} is being deleted; waiting"));
        wait_gone(&namespaces, ns, opts.wait_timeout)
            .await
            .map_err(|e| {
                zone_problem(
                    zone,
                    format!("namespace {ns} is still being deleted: {e}"),
                    "wait until it is gone (a teardown may be running) and check again",
                )
            })?;
        existing = None;
    }
    match existing {
        // Left by an earlier check that could not finish: ours to remove.
        Some(n) if has_probe_label(&n.metadata) => session.set_namespace(zone, NsState::Created),
        Some(_) => session.set_namespace(zone, NsState::Existed),
        None => {
            session.set_namespace(zone, NsState::Creating);
            match namespaces
                .create(&post_params(), &probe::namespace(config, &c.zone))
                .await
            {
                Ok(_) => {
                    session.set_namespace(zone, NsState::Created);
                    progress.say(zone, format!("created namespace {ns} for the check"));
                    // Pods are refused until the namespace's default
                    // ServiceAccount exists (the ServiceAccount admission).
                    let accounts: Api<ServiceAccount> =
                        Api::namespaced(c.cluster.client.clone(), ns);
                    wait_for(opts.wait_timeout, || async {
                        match accounts.get_opt("default").await {
                            Ok(Some(_)) => Ok(Ok(())),
                            Ok(None) => Ok(Err(format!(
                                "no ServiceAccount {ns}/default yet"
                            ))),
                            Err(e) => Err(error_text(&e)),
                        }
                    })
                    .await
                    .map_err(|e| {
                        zone_problem(
                            zone,
                            format!("waiting for namespace {ns} to be usable: {e}"),
                            "the cluster's controller manager creates each namespace's default ServiceAccount; check that it runs",
                        )
                    })?;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    session.set_namespace(zone, NsState::Existed);
                }
                Err(e) => return Err(api_problem(&format!("creating namespace {ns}"), &e)),
            }
        }
    }

    remove_probe_objects(&c.cluster, opts.wait_timeout)
        .await
        .map_err(|e| {
            zone_problem(
                zone,
                format!("removing probe objects left by an earlier check: {e}"),
                "delete them by hand and check again",
            )
        })?;

    // The Service and the listener together: the Service only publishes the
    // listener's name, nothing waits for one before the other.
    session.touch(zone);
    let services: Api<Service> = Api::namespaced(c.cluster.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(c.cluster.client.clone(), ns);
    let listener = probe::listener_pod(config, &c.zone, &opts.image, &opts.ports);
    let service = probe::service(config, &c.zone, &opts.ports);
    let (service, created) = futures::future::join(
        services.create(&post_params(), &service),
        pods.create(&post_params(), &listener),
    )
    .await;
    match service {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(zone_problem(
                zone,
                format!(
                    "a Service {ns}/{} that check did not create already exists",
                    probe::SERVICE
                ),
                "check needs that name for its probe Service; rename or remove that Service",
            ));
        }
        Err(e) => {
            return Err(api_problem(
                &format!("creating Service {ns}/{}", probe::SERVICE),
                &e,
            ));
        }
    }
    let created = created.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => zone_problem(
            zone,
            format!(
                "a pod {ns}/{} that check did not create already exists",
                probe::LISTENER_POD
            ),
            "check needs that name for its listener; rename or remove that pod",
        ),
        e => api_problem(&format!("creating pod {ns}/{}", probe::LISTENER_POD), &e),
    })?;
    match wait_pod(&pods, created, &opts.image, opts, false).await {
        Ok(PodOutcome::Running(ip)) => {
            progress.say(
                zone,
                format!(
                    "listener {} running at {ip} (not ready, as intended)",
                    probe::LISTENER_POD
                ),
            );
            Ok(ip)
        }
        Ok(PodOutcome::Finished { .. }) => Err(zone_problem(
            zone,
            format!("listener {ns}/{} exited", probe::LISTENER_POD),
            "the probe image needs busybox's nc with -l and -e (--image)",
        )),
        Ok(PodOutcome::Problem(p)) => Err(zone_problem(zone, p.problem, &p.hint)),
        Err(e) => Err(zone_problem(
            zone,
            format!("waiting for listener {ns}/{}: {e}", probe::LISTENER_POD),
            "raise --wait-timeout if the cluster is slow to pull images or to schedule pods",
        )),
    }
}

/// A problem when the zone's listener is no longer running.
async fn listener_still_running(c: &Connected) -> Option<ZoneProblem> {
    let pods: Api<Pod> = Api::namespaced(c.cluster.client.clone(), &c.zone.namespace);
    let pod = match pods.get(probe::LISTENER_POD).await {
        Ok(p) => p,
        Err(e) => {
            return Some(zone_problem(
                &c.zone.name,
                format!("reading pod {}: {}", probe::LISTENER_POD, error_text(&e)),
                "the context needs rights to get Pods in the zone's namespace",
            ));
        }
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Running" {
        return None;
    }
    let log = pods
        .logs(probe::LISTENER_POD, &LogParams::default())
        .await
        .unwrap_or_default();
    Some(zone_problem(
        &c.zone.name,
        format!(
            "listener {} stopped during the check ({phase}){}",
            probe::LISTENER_POD,
            log.lines()
                .next()
                .map(|l| format!("; its log says: {l:?}"))
                .unwrap_or_default()
        ),
        "the probe image needs busybox's nc with -l and -e (--image)",
    ))
}

/// What became of a probe pod.
enum PodOutcome {
    Running(IpAddr),
    Finished { phase: String },
    Problem(PodProblem),
}

/// A pod that cannot run, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub problem: String,
    pub hint: String,
}

/// Image pull failures, unschedulable pods, containers that cannot start.
pub fn pod_problem(pod: &Pod, image: &str) -> Option<PodProblem> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.clone().unwrap_or_default();
        let message = waiting
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        match reason.as_str() {
            "ErrImagePull"
            | "ImagePullBackOff"
            | "InvalidImageName"
            | "ErrImageNeverPull"
            | "RegistryUnavailable" => {
                return Some(PodProblem {
                    problem: format!("pod {name} cannot pull image {image} ({reason}{message})"),
                    hint: "use --image to point at a mirror of busybox in a registry the cluster can pull from".to_string(),
                });
            }
            "CreateContainerConfigError"
            | "CreateContainerError"
            | "RunContainerError"
            | "CrashLoopBackOff" => {
                return Some(PodProblem {
                    problem: format!("pod {name} cannot start its container ({reason}{message})"),
                    hint: "see `kubectl describe pod` in the zone's namespace; the image must provide busybox's sh (--image)".to_string(),
                });
            }
            _ => {}
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" {
            return Some(PodProblem {
                problem: format!(
                    "pod {name} cannot be scheduled ({}{})",
                    c.reason.as_deref().unwrap_or("not scheduled"),
                    c.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                hint: "the probe pods request 10m CPU and 16Mi memory on a Linux node and tolerate no taints; check node capacity, taints and ResourceQuotas".to_string(),
            });
        }
    }
    None
}

/// Waits until the pod runs with an IP (`finish` false) or has finished
/// (`finish` true; a running pod counts as finished `opts.probe_timeout`
/// after it was first seen running).
/// Waits, by watching it from the state its create returned, until the
/// pod runs with an IP (`finish == false`), or until it has finished or has
/// been running for the probe timeout (`finish == true`).
async fn wait_pod(
    pods: &Api<Pod>,
    created: Pod,
    image: &str,
    opts: &CheckOptions,
    finish: bool,
) -> Result<PodOutcome, WaitError> {
    let name = created.metadata.name.clone().unwrap_or_default();
    let rv = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    /// What the first wait ends on.
    enum Seen {
        Outcome(PodOutcome),
        /// A prober that runs: wait for it to finish next.
        ProberRunning(Box<Pod>),
    }
    let state = |pod: Option<&Pod>| -> Result<Seen, String> {
        let Some(pod) = pod else {
            return Ok(Seen::Outcome(PodOutcome::Problem(PodProblem {
                problem: format!("pod {name} was deleted while check waited for it"),
                hint: "something else deletes pods in this namespace (another check, or a teardown); run check again".to_string(),
            })));
        };
        if let Some(p) = pod_problem(pod, image) {
            return Ok(Seen::Outcome(PodOutcome::Problem(p)));
        }
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
        let ip = status.pod_ip.as_deref().and_then(|i| i.parse().ok());
        match (phase.as_str(), ip) {
            ("Succeeded" | "Failed", _) => Ok(Seen::Outcome(PodOutcome::Finished { phase })),
            ("Running", Some(ip)) if !finish => Ok(Seen::Outcome(PodOutcome::Running(ip))),
            ("Running", _) if finish => Ok(Seen::ProberRunning(Box::new(pod.clone()))),
            _ => Err(format!(
                "pod {name} is {phase}{}",
                if ip.is_none() { " without an IP" } else { "" }
            )),
        }
    };
    let running =
        match watch::until(pods, &name, Some(created), rv, opts.wait_timeout, state).await? {
            Seen::Outcome(outcome) => return Ok(outcome),
            Seen::ProberRunning(pod) => *pod,
        };
    // A prober runs for at most the probe timeout; one still running then
    // is read as it is (its log has what it found so far).
    let rv = running
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let finished = |pod: Option<&Pod>| -> Result<PodOutcome, String> {
        let phase = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match phase.as_str() {
            "Succeeded" | "Failed" => Ok(PodOutcome::Finished { phase }),
            _ if pod.is_none() => Ok(PodOutcome::Finished {
                phase: "Deleted".to_string(),
            }),
            _ => Err(format!("pod {name} is {phase}")),
        }
    };
    match watch::until(pods, &name, Some(running), rv, opts.probe_timeout, finished).await {
        Err(WaitError::Timeout { .. }) => Ok(PodOutcome::Finished {
            phase: "Running".to_string(),
        }),
        other => other,
    }
}

/// What one prober found.
struct ProberRun {
    zone: String,
    targets: ProberTargets,
    skipped: Vec<CheckResult>,
    log: ProbeLog,
}

/// The prober's targets, and the DNS rows skipped because the cluster
/// forwards none of the other zones' domains yet (a check before apply). A
/// cluster that forwards some zones but not all is probed for all of them:
/// the missing entry is a failure, not a skip.
pub fn plan_targets(
    config: &Config,
    from: &Zone,
    listeners: &BTreeMap<String, IpAddr>,
    forwarded: Option<&BTreeSet<String>>,
    lost_forwarding: Option<&str>,
    checks: &BTreeSet<Check>,
    ports: &[u16],
) -> (ProberTargets, Vec<CheckResult>) {
    let mut targets = ProberTargets::default();
    let mut skipped = Vec::new();
    let others: Vec<&Zone> = config
        .zones
        .iter()
        .filter(|z| z.name != from.name)
        .collect();
    let domain = |z: &Zone| names::zone_domain(&z.namespace, &config.cluster_domain);
    let configured =
        forwarded.is_some_and(|f| others.iter().any(|z| probe::forwards_zone(f, &domain(z))));
    for to in &config.zones {
        let Some(ip) = listeners.get(&to.name) else {
            continue;
        };
        if checks.contains(&Check::Tcp) {
            for port in ports {
                targets.tcp.push(TcpTarget {
                    zone: to.name.clone(),
                    ip: *ip,
                    port: *port,
                });
            }
        }
        let Some(forwarded) = forwarded else {
            continue;
        };
        if to.name == from.name || !checks.contains(&Check::Dns) {
            continue;
        }
        for name in probe::probe_names(&to.namespace, &config.cluster_domain) {
            if configured {
                targets.dns.push(DnsTarget {
                    zone: to.name.clone(),
                    name,
                    expect: *ip,
                    forwarded: probe::forwards_zone(forwarded, &domain(to)),
                });
            } else if let Some(hint) = lost_forwarding {
                skipped.push(CheckResult {
                    status: Status::Fail,
                    detail: format!(
                        "{}'s DNS configuration has no forwarding entry for {}'s domain any more (apply had configured it)",
                        from.name, to.name
                    ),
                    hint: Some(hint.to_string()),
                    ..super::skipped(Check::Dns, &from.name, &to.name, &name, "")
                });
            } else {
                skipped.push(super::skipped(
                    Check::Dns,
                    &from.name,
                    &to.name,
                    &name,
                    NOT_FORWARDED,
                ));
            }
        }
    }
    (targets, skipped)
}

async fn run_prober(
    config: &Config,
    c: &Connected,
    listeners: &BTreeMap<String, IpAddr>,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<ProberRun, ZoneProblem> {
    let zone = &c.zone.name;
    let ns = &c.zone.namespace;
    let (targets, skipped) = plan_targets(
        config,
        &c.zone,
        listeners,
        c.forwarded.as_ref(),
        c.lost_forwarding.as_deref(),
        &opts.checks,
        &opts.ports,
    );
    let mut run = ProberRun {
        zone: zone.clone(),
        targets,
        skipped,
        log: ProbeLog::default(),
    };
    if run.targets.is_empty() {
        return Ok(run);
    }
    session.touch(zone);
    let pods: Api<Pod> = Api::namespaced(c.cluster.client.clone(), ns);
    let pod = probe::prober_pod(config, &c.zone, &opts.image, &run.targets);
    let created = pods.create(&post_params(), &pod).await.map_err(|e| {
        zone_problem(
            zone,
            format!(
                "creating pod {ns}/{}: {}",
                probe::PROBER_POD,
                error_text(&e)
            ),
            "the context needs rights to create Pods in the zone's namespace",
        )
    })?;
    let phase = match wait_pod(&pods, created, &opts.image, opts, true).await {
        Ok(PodOutcome::Finished { phase }) => phase,
        Ok(PodOutcome::Running(_)) => "Running".to_string(),
        Ok(PodOutcome::Problem(p)) => return Err(zone_problem(zone, p.problem, &p.hint)),
        Err(e) => {
            return Err(zone_problem(
                zone,
                format!("waiting for prober {ns}/{}: {e}", probe::PROBER_POD),
                "raise --wait-timeout if the cluster is slow to pull images or to schedule pods",
            ));
        }
    };
    let text = pods
        .logs(
            probe::PROBER_POD,
            &LogParams {
                container: Some(probe::CONTAINER.to_string()),
                ..LogParams::default()
            },
        )
        .await
        .map_err(|e| {
            zone_problem(
                zone,
                format!(
                    "reading the log of pod {ns}/{}: {}",
                    probe::PROBER_POD,
                    error_text(&e)
                ),
                "the context needs rights to get pods/log in the zone's namespace",
            )
        })?;
    run.log = probe::parse_log(&text);
    progress.say(
        zone,
        format!(
            "prober {} ({phase}): {} of {} probes reported",
            probe::PROBER_POD,
            run.log.tcp.len() + run.log.dns.len(),
            run.targets.tcp.len() + run.targets.dns.len()
        ),
    );
    Ok(run)
}

/// DNS load balancer rows: each zone's load balancer asked for every zone's
/// probe Service name, over each protocol it serves.
async fn dns_lb_checks(
    config: &Config,
    connected: &[Connected],
    listeners: &BTreeMap<String, IpAddr>,
    opts: &CheckOptions,
) -> Vec<CheckResult> {
    if !opts.checks.contains(&Check::DnsLb) {
        return Vec::new();
    }
    let mut queries = Vec::new();
    let mut results = Vec::new();
    for from in connected {
        for to in &config.zones {
            let [name, _] = probe::probe_names(&to.namespace, &config.cluster_domain);
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                let transport = match protocol {
                    Protocol::Udp => Transport::Udp,
                    Protocol::Tcp => Transport::Tcp,
                };
                let mut skip = |reason: String| {
                    let mut r =
                        super::skipped(Check::DnsLb, &from.zone.name, &to.name, &name, &reason);
                    r.protocol = Some(transport.as_str().to_string());
                    results.push(r);
                };
                if !config.dns.protocols.contains(&protocol) {
                    skip(format!(
                        "the DNS load balancer does not serve {} (dns.protocols)",
                        protocol.as_str()
                    ));
                    continue;
                }
                match (&from.lb, listeners.get(&to.name)) {
                    (LbAddress::NotChecked, _) => {}
                    (LbAddress::Missing, _) => skip(NO_DNS_LB.to_string()),
                    (LbAddress::Unresolved(e), _) => skip(format!(
                        "DNS load balancer address not usable from here: {e}"
                    )),
                    (LbAddress::Addresses(ips), Some(expect)) => {
                        queries.push((
                            from.zone.name.clone(),
                            to.name.clone(),
                            name.clone(),
                            ips[0],
                            transport,
                            *expect,
                        ));
                    }
                    (LbAddress::Addresses(_), None) => {}
                }
            }
        }
    }
    let answers = futures::future::join_all(queries.into_iter().map(
        |(from, to, name, server, transport, expect)| async move {
            let answer = lb::query(server, transport, &name, opts.lb_timeout).await;
            lb_result(&from, &to, &name, server, transport, expect, answer)
        },
    ))
    .await;
    results.extend(answers);
    results
}

fn lb_result(
    from: &str,
    to: &str,
    name: &str,
    server: IpAddr,
    transport: Transport,
    expect: IpAddr,
    answer: Answer,
) -> CheckResult {
    let protocol = transport.as_str();
    let answered = !matches!(answer, Answer::Error(_));
    let (status, latency_ms, detail) = match answer {
        Answer::Addresses { ips, ms } if ips.contains(&expect) => (
            Status::Pass,
            Some(ms),
            format!("{server} answers {expect} in {ms} ms"),
        ),
        Answer::Addresses { ips, .. } if ips.is_empty() => (
            Status::Fail,
            None,
            format!("{server} answers with no A record"),
        ),
        Answer::Addresses { ips, .. } => (
            Status::Fail,
            None,
            format!(
                "{server} answers {}, not {to}'s listener {expect}",
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Answer::Negative(e) | Answer::Error(e) => (Status::Fail, None, format!("{server}: {e}")),
        Answer::Unreachable(e) => (
            Status::Skip,
            None,
            format!("DNS load balancer {server} is not reachable from here ({e})"),
        ),
    };
    CheckResult {
        check: Check::DnsLb,
        from: from.to_string(),
        to: to.to_string(),
        target: name.to_string(),
        port: None,
        protocol: Some(protocol.to_string()),
        hint: (status == Status::Fail).then(|| super::dns_lb_hint(from, to, protocol, answered)),
        status,
        latency_ms,
        detail,
    }
}

async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<(), WaitError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
{
    wait_for(timeout, || async move {
        match api.get_opt(name).await {
            Ok(None) => Ok(Ok(())),
            Ok(Some(_)) => Ok(Err(format!("{name} still exists"))),
            Err(e) => Err(error_text(&e)),
        }
    })
    .await
}

/// Deletes the probe pods and Service of the zone's namespace (the objects
/// carrying the probe label, found with one list of each kind) and waits
/// until the pods are gone. Each delete names the uid that was listed, so an
/// object recreated meanwhile by someone else is not deleted.
async fn remove_probe_objects(cluster: &Cluster, timeout: Duration) -> Result<bool, String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let ours = ListParams::default().labels(&probe::probe_selector());
    let (pod_list, service_list) =
        futures::future::join(pods.list(&ours), services.list(&ours)).await;
    let pod_list = pod_list.map_err(|e| format!("listing probe pods: {}", error_text(&e)))?;
    let service_list =
        service_list.map_err(|e| format!("listing probe Services: {}", error_text(&e)))?;
    let delete = |meta: &kube::api::ObjectMeta, grace: Option<u32>| DeleteParams {
        grace_period_seconds: grace,
        preconditions: Some(kube::api::Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let pod_deletes = pod_list.items.iter().map(|p| {
        let name = p.metadata.name.clone().unwrap_or_default();
        let params = delete(&p.metadata, Some(0));
        let pods = &pods;
        async move {
            match pods.delete(&name, &params).await {
                Ok(_) => Ok(()),
                // Gone already, or a new object of that name: not ours.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(format!("deleting pod {name}: {}", error_text(&e))),
            }
        }
    });
    let service_deletes = service_list.items.iter().map(|svc| {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let params = delete(&svc.metadata, None);
        let services = &services;
        async move {
            match services.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(format!("deleting Service {name}: {}", error_text(&e))),
            }
        }
    });
    let (pod_results, service_results) = futures::future::join(
        futures::future::join_all(pod_deletes),
        futures::future::join_all(service_deletes),
    )
    .await;
    for r in pod_results.into_iter().chain(service_results) {
        r?;
    }
    let removed = !pod_list.items.is_empty() || !service_list.items.is_empty();
    if !pod_list.items.is_empty() {
        let uids: BTreeSet<String> = pod_list
            .items
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let uids = &uids;
        let pods = &pods;
        let ours = &ours;
        wait_for(timeout, || async move {
            let left: Vec<String> = pods
                .list(ours)
                .await
                .map_err(|e| error_text(&e))?
                .items
                .into_iter()
                .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| uids.contains(u)))
                .filter_map(|p| p.metadata.name)
                .collect();
            if left.is_empty() {
                Ok(Ok(()))
            } else {
                Ok(Err(format!("pods {} still exist", left.join(", "))))
            }
        })
        .await
        .map_err(|e| format!("waiting for the probe pods to go: {e}"))?;
    }
    Ok(removed)
}

/// Whether apply has taken on a namespace the check created.
fn adopted_by_apply(meta: &kube::api::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(names::NAMESPACE_CREATED_ANNOTATION))
}

/// Objects in `ns` that are not the check's probes and not what the cluster
/// puts in every namespace (ServiceAccount `default`, ConfigMap
/// `kube-root-ca.crt`): for example what a concurrent apply wrote.
async fn foreign_contents(cluster: &Cluster, ns: &str) -> Result<Vec<String>, String> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    async fn names_of<K>(client: &kube::Client, ns: &str) -> Result<Vec<String>, String>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&()).to_string();
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing {kind} in {ns}: {}", error_text(&e)))?;
        Ok(list
            .items
            .iter()
            .filter(|o| !has_probe_label(o.meta()))
            .map(|o| format!("{kind} {}", o.meta().name.clone().unwrap_or_default()))
            .filter(|d| d != "ServiceAccount default" && d != "ConfigMap kube-root-ca.crt")
            .collect())
    }
    let c = &cluster.client;
    let parts = futures::future::join_all([
        Box::pin(names_of::<Pod>(c, ns))
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
        Box::pin(names_of::<Service>(c, ns)),
        Box::pin(names_of::<Secret>(c, ns)),
        Box::pin(names_of::<ConfigMap>(c, ns)),
        Box::pin(names_of::<ServiceAccount>(c, ns)),
        Box::pin(names_of::<StatefulSet>(c, ns)),
        Box::pin(names_of::<Job>(c, ns)),
        Box::pin(names_of::<PersistentVolumeClaim>(c, ns)),
        Box::pin(names_of::<Role>(c, ns)),
        Box::pin(names_of::<RoleBinding>(c, ns)),
        Box::pin(names_of::<PodDisruptionBudget>(c, ns)),
    ])
    .await;
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

async fn cleanup_zone(
    cluster: &Cluster,
    ns_state: NsState,
    touched: bool,
    progress: Progress,
) -> Result<(), String> {
    let zone = &cluster.zone;
    let ns = &cluster.namespace;
    // Bounded by the caller; waits inside use a generous bound of their own.
    let inner = Duration::from_secs(3600);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    if matches!(ns_state, NsState::Created | NsState::Creating) {
        let current = namespaces
            .get_opt(ns)
            .await
            .map_err(|e| format!("reading namespace {ns}: {}", error_text(&e)))?;
        match current {
            None => return Ok(()),
            Some(n) if has_probe_label(&n.metadata) => {
                // Never delete a namespace that meanwhile holds anything not
                // the check's own, or that apply has taken on (an apply that
                // ran alongside the check).
                let others = if adopted_by_apply(&n.metadata) {
                    vec![format!("namespace {ns} was taken on by apply")]
                } else {
                    foreign_contents(cluster, ns).await?
                };
                if others.is_empty() {
                    if n.metadata.deletion_timestamp.is_none() {
                        // Only the version we looked at: if apply labels the
                        // namespace after our look (it writes the namespace
                        // before anything inside), the delete is refused.
                        let params = DeleteParams {
                            preconditions: Some(kube::api::Preconditions {
                                resource_version: n.metadata.resource_version.clone(),
                                uid: n.metadata.uid.clone(),
                            }),
                            ..DeleteParams::background()
                        };
                        match namespaces.delete(ns, &params).await {
                            Ok(_) => {}
                            Err(kube::Error::Api(s)) if s.code == 404 => {}
                            Err(kube::Error::Api(s)) if s.code == 409 => {
                                progress.say(
                                    zone,
                                    format!("namespace {ns} changed meanwhile; keeping it"),
                                );
                                return remove_probe_objects(cluster, inner).await.map(|_| ());
                            }
                            Err(e) => {
                                return Err(format!("deleting namespace {ns}: {}", error_text(&e)));
                            }
                        }
                    }
                    wait_gone(&namespaces, ns, inner)
                        .await
                        .map_err(|e| format!("waiting for namespace {ns} to go: {e}"))?;
                    progress.say(
                        zone,
                        format!("removed namespace {ns} (created for the check)"),
                    );
                    return Ok(());
                }
                progress.say(
                    zone,
                    format!(
                        "namespace {ns} now holds objects that are not the check's ({}); keeping it",
                        others.join(", ")
                    ),
                );
            }
            Some(_) => {}
        }
    } else if !touched {
        return Ok(());
    }
    if remove_probe_objects(cluster, inner).await? {
        progress.say(zone, "removed the probe pods and Service");
    }
    Ok(())
}
