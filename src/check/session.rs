//! The probe session of `check`: the listener and prober pods and the probe
//! Service in each zone (namespace created when missing, leftovers of an
//! earlier check removed first), the waits for them, and the [`Session`]
//! record of everything cleanup must undo, written before each create is
//! sent. Cleanup itself is in [`super::cleanup`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};

use super::CheckResult;
use super::cleanup::{CleanupError, cleanup_zone, remove_probe_objects};
use super::probe::{self, ProbeLog, ProberTargets};
use super::run::{CheckOptions, Connected, ZoneProblem};
use super::targets::plan_targets;
use crate::config::Config;
use crate::k8s::{self, Cluster, Seen, WaitError, error_text};
use crate::progress::Progress;

/// Whether the zone's namespace was there before the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NsState {
    /// Not looked at yet.
    Unknown,
    Existed,
    /// The create request was sent; it may or may not have happened.
    Creating,
    Created,
}

pub(super) struct ZoneState {
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

    pub(super) fn register(&self, cluster: &Cluster) {
        self.lock().insert(
            cluster.zone.clone(),
            ZoneState {
                cluster: cluster.clone(),
                namespace: NsState::Unknown,
                touched: false,
            },
        );
    }

    pub(super) fn set_namespace(&self, zone: &str, state: NsState) {
        if let Some(z) = self.lock().get_mut(zone) {
            z.namespace = state;
        }
    }

    pub(super) fn touch(&self, zone: &str) {
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
                .unwrap_or(Err(CleanupError::TimedOut(timeout)));
            r.err().map(|problem| ZoneProblem {
                hint: format!(
                    "remove them with `kubectl --context {} -n {} delete pod,service -l {}` (and the namespace, if the check created it), or run check again",
                    cluster.context,
                    cluster.namespace,
                    probe::probe_selector()
                ),
                zone,
                problem: problem.to_string(),
            })
        });
        futures::future::join_all(work)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

pub(super) fn zone_problem(zone: &str, problem: String, hint: &str) -> ZoneProblem {
    ZoneProblem {
        zone: zone.to_string(),
        problem,
        hint: hint.to_string(),
    }
}

pub(super) fn has_probe_label(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(probe::PROBE_KEY))
        .is_some_and(|v| v == "true")
}

/// Namespace (created if missing), leftovers removed, Service and listener
/// created; returns the listener's pod IP once it runs.
pub(super) async fn start_listener(
    config: &Config,
    c: &Connected,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<IpAddr, ZoneProblem> {
    let zone = &c.zone.name;
    ensure_namespace(config, c, opts, session, progress).await?;
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
    let created = create_listener(config, c, opts).await?;
    progress.step(zone, "listener starting");
    await_listener(c, opts, created, progress).await
}

/// A Kubernetes API error while setting up the probes, with the rights hint.
fn api_problem(zone: &str, what: &str, e: &kube::Error) -> ZoneProblem {
    zone_problem(
        zone,
        format!("{what}: {}", error_text(e)),
        "the context needs rights to create namespaces, Services and Pods (and Pod Security admission must allow a non-root busybox pod)",
    )
}

/// The zone's namespace exists and is usable: waits out one being deleted,
/// creates a missing one (labelled as the check's, so cleanup removes it)
/// and records in `session` whether it was there before.
async fn ensure_namespace(
    config: &Config,
    c: &Connected,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<(), ZoneProblem> {
    let zone = &c.zone.name;
    let ns = &c.zone.namespace;
    let existing = c
        .cluster
        .read_cluster_scoped::<Namespace>(ns)
        .await
        .map_err(|e| api_problem(zone, &format!("reading namespace {ns}"), &e))?;
    let existing = match existing {
        Some(n) if n.metadata.deletion_timestamp.is_some() => {
            progress.say(zone, format!("namespace {ns} is being deleted; waiting"));
            c.cluster
                .wait_namespace_gone(ns, opts.wait_timeout)
                .await
                .map_err(|e| {
                    zone_problem(
                        zone,
                        format!("namespace {ns} is still being deleted: {e}"),
                        "wait until it is gone (a teardown may be running) and check again",
                    )
                })?;
            None
        }
        other => other,
    };
    match existing {
        // Left by an earlier check that could not finish: ours to remove.
        Some(n) if has_probe_label(&n.metadata) => session.set_namespace(zone, NsState::Created),
        Some(_) => session.set_namespace(zone, NsState::Existed),
        None => create_namespace(config, c, opts, session, progress).await?,
    }
    Ok(())
}

async fn create_namespace(
    config: &Config,
    c: &Connected,
    opts: &CheckOptions,
    session: &Session,
    progress: Progress,
) -> Result<(), ZoneProblem> {
    let zone = &c.zone.name;
    let ns = &c.zone.namespace;
    session.set_namespace(zone, NsState::Creating);
    match c
        .cluster
        .create_cluster_scoped(&probe::namespace(config, &c.zone))
        .await
    {
        Ok(_) => {
            session.set_namespace(zone, NsState::Created);
            progress.say(zone, format!("created namespace {ns} for the check"));
            wait_default_service_account(c, opts).await
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            session.set_namespace(zone, NsState::Existed);
            Ok(())
        }
        Err(e) => Err(api_problem(zone, &format!("creating namespace {ns}"), &e)),
    }
}

/// Pods are refused until the namespace's default ServiceAccount exists
/// (the ServiceAccount admission).
async fn wait_default_service_account(
    c: &Connected,
    opts: &CheckOptions,
) -> Result<(), ZoneProblem> {
    let ns = &c.zone.namespace;
    k8s::poll(opts.wait_timeout, || async {
        Ok(
            match c.cluster.read::<ServiceAccount>(ns, "default").await? {
                Some(_) => Seen::Done(()),
                None => Seen::Waiting(format!("no ServiceAccount {ns}/default yet")),
            },
        )
    })
    .await
    .map_err(|e| {
        zone_problem(
            &c.zone.name,
            format!("waiting for namespace {ns} to be usable: {e}"),
            "the cluster's controller manager creates each namespace's default ServiceAccount; check that it runs",
        )
    })
}

/// Creates the probe Service and the listener pod at once; returns the pod
/// as created.
async fn create_listener(
    config: &Config,
    c: &Connected,
    opts: &CheckOptions,
) -> Result<Pod, ZoneProblem> {
    let zone = &c.zone.name;
    let ns = &c.zone.namespace;
    let listener = probe::listener_pod(config, &c.zone, &opts.image, &opts.ports);
    let service = probe::service(config, &c.zone, &opts.ports);
    let (service, created) = futures::future::join(
        c.cluster.create_in(ns, &service),
        c.cluster.create_in(ns, &listener),
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
                zone,
                &format!("creating Service {ns}/{}", probe::SERVICE),
                &e,
            ));
        }
    }
    created.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => zone_problem(
            zone,
            format!(
                "a pod {ns}/{} that check did not create already exists",
                probe::LISTENER_POD
            ),
            "check needs that name for its listener; rename or remove that pod",
        ),
        e => api_problem(
            zone,
            &format!("creating pod {ns}/{}", probe::LISTENER_POD),
            &e,
        ),
    })
}

/// Waits until the listener runs; its pod IP.
async fn await_listener(
    c: &Connected,
    opts: &CheckOptions,
    created: Pod,
    progress: Progress,
) -> Result<IpAddr, ZoneProblem> {
    let zone = &c.zone.name;
    let ns = &c.zone.namespace;
    match wait_pod(c, created, &opts.image, opts, false).await {
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
pub(super) async fn listener_still_running(c: &Connected) -> Option<ZoneProblem> {
    let ns = &c.zone.namespace;
    let pod = match c.cluster.get::<Pod>(ns, probe::LISTENER_POD).await {
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
    let log = c
        .cluster
        .pod_log(ns, probe::LISTENER_POD, None)
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
pub(super) enum PodOutcome {
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
pub(super) async fn wait_pod(
    c: &Connected,
    created: Pod,
    image: &str,
    opts: &CheckOptions,
    finish: bool,
) -> Result<PodOutcome, WaitError> {
    let name = created.metadata.name.clone().unwrap_or_default();
    let ns = &c.zone.namespace;
    let rv = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    /// What the first wait ends on.
    enum Found {
        Outcome(PodOutcome),
        /// A prober that runs: wait for it to finish next.
        ProberRunning(Box<Pod>),
    }
    let state = |pod: Option<&Pod>| -> Seen<Found> {
        let Some(pod) = pod else {
            return Seen::Done(Found::Outcome(PodOutcome::Problem(PodProblem {
                problem: format!("pod {name} was deleted while check waited for it"),
                hint: "something else deletes pods in this namespace (another check, or a teardown); run check again".to_string(),
            })));
        };
        if let Some(p) = pod_problem(pod, image) {
            return Seen::Done(Found::Outcome(PodOutcome::Problem(p)));
        }
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
        let ip = status.pod_ip.as_deref().and_then(|i| i.parse().ok());
        match (phase.as_str(), ip) {
            ("Succeeded" | "Failed", _) => {
                Seen::Done(Found::Outcome(PodOutcome::Finished { phase }))
            }
            ("Running", Some(ip)) if !finish => Seen::Done(Found::Outcome(PodOutcome::Running(ip))),
            ("Running", _) if finish => Seen::Done(Found::ProberRunning(Box::new(pod.clone()))),
            _ => Seen::Waiting(format!(
                "pod {name} is {phase}{}",
                if ip.is_none() { " without an IP" } else { "" }
            )),
        }
    };
    let running = match c
        .cluster
        .watch_until(ns, &name, Some(created), rv, opts.wait_timeout, state)
        .await?
    {
        Found::Outcome(outcome) => return Ok(outcome),
        Found::ProberRunning(pod) => *pod,
    };
    // A prober runs for at most the probe timeout; one still running then
    // is read as it is (its log has what it found so far).
    let rv = running
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let finished = |pod: Option<&Pod>| -> Seen<PodOutcome> {
        let phase = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match phase.as_str() {
            "Succeeded" | "Failed" => Seen::Done(PodOutcome::Finished { phase }),
            _ if pod.is_none() => Seen::Done(PodOutcome::Finished {
                phase: "Deleted".to_string(),
            }),
            _ => Seen::Waiting(format!("pod {name} is {phase}")),
        }
    };
    match c
        .cluster
        .watch_until(ns, &name, Some(running), rv, opts.probe_timeout, finished)
        .await
    {
        Err(WaitError::Timeout { .. }) => Ok(PodOutcome::Finished {
            phase: "Running".to_string(),
        }),
        other => other,
    }
}

/// What one prober found.
pub(super) struct ProberRun {
    pub(super) zone: String,
    pub(super) targets: ProberTargets,
    pub(super) skipped: Vec<CheckResult>,
    pub(super) log: ProbeLog,
}

pub(super) async fn run_prober(
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
    let mut targets = targets;
    targets.tcp.retain(|t| opts.pair_selected(zone, &t.zone));
    targets.dns.retain(|t| opts.pair_selected(zone, &t.zone));
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
    let pod = probe::prober_pod(config, &c.zone, &opts.image, &run.targets);
    let created = c.cluster.create_in(ns, &pod).await.map_err(|e| {
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
    progress.step(zone, "probing");
    let phase = match wait_pod(c, created, &opts.image, opts, true).await {
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
    let text = c
        .cluster
        .pod_log(ns, probe::PROBER_POD, Some(probe::CONTAINER))
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
