//! The run of `check`: connect to every zone (and list its Nodes for their
//! pod CIDRs), run one probe round in all clusters at once (the pods are
//! [`super::session`]'s, the targets [`super::targets`]'), query the DNS
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
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::config::Kubeconfig;
use serde::Serialize;

use super::cidr::{self, PodCidrs};
use super::lb;
use super::probe;
use super::session::{ProberRun, Session, listener_still_running, run_prober, start_listener};
use super::targets::{LbAddress, lb_result, plan_lb_queries};
use super::{Check, CheckReport, CheckResult};
use crate::config::{Config, Zone};
use crate::dns;
use crate::k8s::dns_configmap;
use crate::k8s::lb::LbError;
use crate::k8s::{self, Cluster, error_text};
use crate::names;
use crate::progress::Progress;

/// Bound of one DNS load balancer query.
pub const LB_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Default bound of cleanup (after success, failure, timeout or Ctrl-C).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Default time a running prober may take before its log is read as it is
/// (`--probe-timeout`, written as the flag takes it). The script itself is
/// bounded by a few seconds (`nc -w`, `timeout`).
pub const PROBE_TIMEOUT: &str = "60s";

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
    /// `--zone`: only pairs with one of these zones on either side are
    /// probed and reported (all pairs when empty).
    pub zones: Vec<String>,
}

impl CheckOptions {
    /// Whether the pair `from` -> `to` is checked (`--zone`).
    pub(super) fn pair_selected(&self, from: &str, to: &str) -> bool {
        Config::zone_selected(&self.zones, from) || Config::zone_selected(&self.zones, to)
    }
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
pub(super) struct Connected {
    pub(super) zone: Zone,
    pub(super) cluster: Cluster,
    /// Domains the cluster's DNS forwards (when the DNS check runs).
    pub(super) forwarded: Option<BTreeSet<String>>,
    /// When apply had configured forwarding here: the hint for the case
    /// that none of it is left.
    pub(super) lost_forwarding: Option<String>,
    pub(super) lb: LbAddress,
    /// The Nodes' pod ranges (when the cidr check runs).
    pub(super) pod_cidrs: Option<PodCidrs>,
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
    let mut results = cidr::results(&cidr_zones);
    if opts.checks.iter().any(|c| c.needs_probes()) {
        results.extend(probe_pods(config, &connected, opts, session, progress).await?);
    }
    results.retain(|r| opts.pair_selected(&r.from, &r.to));
    Ok(CheckReport::new(zones, ports, results))
}

/// Listeners in every zone, then the probers and the DNS load balancer
/// queries at once: their results.
async fn probe_pods(
    config: &Config,
    connected: &[Connected],
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<Vec<CheckResult>, CheckError> {
    let started = futures::future::join_all(connected.iter().map(|c| async move {
        start_listener(config, c, opts, session, progress)
            .await
            .map(|ip| (c.zone.name.clone(), ip))
    }))
    .await;
    let (listeners, problems): (Vec<_>, Vec<_>) = started.into_iter().partition(Result::is_ok);
    if !problems.is_empty() {
        return Err(CheckError::Probe(
            problems.into_iter().filter_map(Result::err).collect(),
        ));
    }
    let listeners: BTreeMap<String, IpAddr> =
        listeners.into_iter().filter_map(Result::ok).collect();

    let probers = futures::future::join_all(connected.iter().map(|c| {
        let listeners = &listeners;
        async move { run_prober(config, c, listeners, opts, session, progress).await }
    }));
    let lb_checks = dns_lb_checks(config, connected, &listeners, opts);
    let (probers, lb_results) = futures::future::join(probers, lb_checks).await;
    let mut results = lb_results;
    let mut problems = Vec::new();
    let mut silent = Vec::new();
    let mut any_results = false;
    let mut probed = false;
    for r in probers {
        let p = match r {
            Ok(p) => p,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        results.extend(p.skipped.iter().cloned());
        if p.targets.is_empty() {
            continue;
        }
        match prober_problem(&p) {
            Some(ProberProblem::CouldNotProbe(problem)) => {
                problems.push(problem);
                continue;
            }
            Some(ProberProblem::Silent(problem)) => silent.push(problem),
            None => any_results = true,
        }
        probed = true;
        // A silent prober's targets fail with "no result" when others
        // reported: the report says which.
        results.extend(super::prober_results(&p.zone, &p.targets, &p.log));
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
    Ok(results)
}

/// What is wrong with a prober that probed something.
enum ProberProblem {
    /// Its script could not run its tools.
    CouldNotProbe(ZoneProblem),
    /// It printed no result line at all.
    Silent(ZoneProblem),
}

fn prober_problem(p: &ProberRun) -> Option<ProberProblem> {
    if !p.log.errors.is_empty() {
        return Some(ProberProblem::CouldNotProbe(ZoneProblem {
            zone: p.zone.clone(),
            problem: format!(
                "pod {} could not probe: {}",
                probe::PROBER_POD,
                p.log.errors.join("; ")
            ),
            hint: "use an image with busybox's sh, nc, nslookup, timeout, sed, grep, tr, cut, head, tail and sleep (--image)".to_string(),
        }));
    }
    if p.log.has_results() {
        return None;
    }
    Some(ProberProblem::Silent(ZoneProblem {
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
    }))
}

async fn connect_all(
    config: &Config,
    kubeconfig: &Kubeconfig,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<Vec<Connected>, CheckError> {
    k8s::connect_each(kubeconfig, &config.zones, |zone, cluster| {
        connect_zone(config, zone, cluster, opts, session, progress)
    })
    .await
    .map_err(|failed| CheckError::Connect(failed.into_iter().map(|(_, p)| p).collect()))
}

async fn connect_zone(
    config: &Config,
    zone: &Zone,
    cluster: Result<Cluster, k8s::PreflightProblem>,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<Connected, ZoneProblem> {
    let problem = |problem: String, hint: &str| ZoneProblem {
        zone: zone.name.clone(),
        problem,
        hint: hint.to_string(),
    };
    let reached = |p: k8s::PreflightProblem| {
        let hint = p.hint.clone();
        problem(
            p.to_string().replace(&format!(" (hint: {hint})"), ""),
            &hint,
        )
    };
    progress.step(&zone.name, "connecting");
    let cluster = cluster.map_err(reached)?;
    let version = k8s::reach(&cluster, k8s::PREFLIGHT_TIMEOUT)
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
            k8s::detect_dns(&cluster.client, config.dns.provider.provider()),
            dns_configmap::owner(&cluster.client),
        )
        .await;
        let server = server.map_err(|p| problem(p.problem, &p.hint))?;
        let applied = applied.ok().flatten().is_some();
        let (data, addon) = futures::future::join(
            dns_configmap::read(&cluster.client, server.provider),
            async {
                if applied {
                    dns_configmap::addon_manager_of(&cluster.client, server.provider).await
                } else {
                    None
                }
            },
        )
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
    match cluster.list_all::<Node>(None).await {
        Ok(nodes) => cidr::from_nodes(&nodes),
        Err(kube::Error::Api(s)) if s.code == 403 => PodCidrs::Unlisted(format!(
            "{} (the context needs the right to list Nodes, cluster-wide)",
            s.message
        )),
        Err(e) => PodCidrs::Unlisted(error_text(&e)),
    }
}

async fn dns_lb_address(cluster: &Cluster, opts: &CheckOptions) -> LbAddress {
    match k8s::lb::read_dns_lb(cluster, opts.resolver).await {
        Ok(Some(lb)) if !lb.ips.is_empty() => LbAddress::Addresses(lb.ips),
        Ok(_) => LbAddress::Missing,
        Err(LbError::Read(e)) => LbAddress::Unresolved(format!(
            "could not read Service kube-system/{}: {}",
            names::DNS_LB_SERVICE,
            error_text(&e)
        )),
        Err(LbError::Resolve(e)) => LbAddress::Unresolved(e.to_string()),
    }
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
    let lbs: Vec<(&str, &LbAddress)> = connected
        .iter()
        .map(|c| (c.zone.name.as_str(), &c.lb))
        .collect();
    let (queries, mut results) = plan_lb_queries(config, &lbs, listeners);
    let answers = futures::future::join_all(queries.into_iter().map(|q| async move {
        let answer = lb::query(q.server, q.transport, &q.name, opts.lb_timeout).await;
        lb_result(&q, answer)
    }))
    .await;
    results.extend(answers);
    results
}
