//! The simulated control plane of one cluster: a loop that every 50 ms
//! reconciles namespaces (termination, default ServiceAccount), garbage
//! collection, StatefulSets, Deployments (counting rollouts), Jobs, pod
//! phases, cloud LoadBalancers and Endpoints. Writes go through
//! [`Store::put_internal`]; this module must not answer HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{ClusterShared, Timing};
use crate::config::{CloudRules, Flavor, PodRules};
use crate::events::Recorder;
use crate::resources::idx;
use crate::selectors::LabelSelector;
use crate::store::{Store, fnv, name_of, name_suffix, now_rfc3339, uid_of};

pub const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct CtlState {
    first_seen: HashMap<String, Instant>,
    events: Recorder,
    deploy_hash: HashMap<(String, String), String>,
    ns_initialized: HashSet<String>,
}

impl CtlState {
    fn seen(&mut self, uid: &str, now: Instant) -> Duration {
        now.duration_since(*self.first_seen.entry(uid.to_string()).or_insert(now))
    }
}

pub async fn run(shared: Arc<ClusterShared>) {
    let mut state = CtlState::default();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        reconcile(&shared, &mut state, Instant::now());
    }
}

pub fn node_name(zone: &str) -> String {
    let z: String = zone
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{}-node-0", z.trim_matches('-'))
}

pub fn reconcile(shared: &ClusterShared, st: &mut CtlState, now: Instant) {
    let faults = shared.faults();
    let timing = shared.timing();
    let node = node_name(&shared.zone);
    let mut store = shared.store();
    namespaces(
        &mut store,
        st,
        now,
        faults.namespace_delete_delay,
        &shared.ca_pem,
    );
    store.collect_garbage();
    statefulsets(&mut store, &mut st.events);
    deployments(&mut store, st, shared, &node);
    jobs(&mut store, &mut st.events);
    let real = shared.runs_pods.load(std::sync::atomic::Ordering::SeqCst);
    pods(shared, &mut store, st, now, timing, &node, real);
    load_balancers(
        &mut store,
        st,
        now,
        timing.lb_delay,
        faults.lb_never_ready,
        shared.flavor,
        shared.rules,
    );
    let published: Vec<std::net::Ipv4Addr> = store
        .list(idx::SERVICE, None)
        .iter()
        .flat_map(|s| {
            s.pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("hostname").and_then(Value::as_str))
                .filter_map(crate::dns::resolve_lb_hostname)
                .collect::<Vec<_>>()
        })
        .collect();
    shared.lb_names.sync(shared.index, &published, now);
    endpoints(&mut store);
    if st.first_seen.len() > 10_000 {
        let live: HashSet<String> = store.all().map(|(_, v)| uid_of(v).to_string()).collect();
        st.first_seen.retain(|uid, _| live.contains(uid));
    }
}

fn namespaces(store: &mut Store, st: &mut CtlState, now: Instant, delay: Duration, ca_pem: &str) {
    for ns in store.list(idx::NAMESPACE, None) {
        let name = name_of(&ns).to_string();
        let uid = uid_of(&ns).to_string();
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            if st.seen(&uid, now) >= delay {
                store.purge_namespace(&name);
            }
        } else if st.ns_initialized.insert(uid) {
            if store.get(idx::SERVICEACCOUNT, &name, "default").is_none() {
                store.put_internal(
                    idx::SERVICEACCOUNT,
                    &name,
                    json!({"metadata": {"name": "default"}}),
                );
            }
            if store
                .get(idx::CONFIGMAP, &name, "kube-root-ca.crt")
                .is_none()
            {
                store.put_internal(
                    idx::CONFIGMAP,
                    &name,
                    json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca_pem}}),
                );
            }
        }
    }
}

fn owner_ref(kind: &str, api_version: &str, obj: &Value) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind, "name": name_of(obj), "uid": uid_of(obj),
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn template_hash(tmpl: &Value) -> String {
    format!("{:010x}", fnv(tmpl.to_string().as_bytes()) & 0xff_ffff_ffff)
}

fn pod_from_template(
    tmpl: &Value,
    ns: &str,
    name: &str,
    labels: &[(&str, String)],
    owner: Value,
) -> Value {
    let mut md = tmpl.get("metadata").cloned().unwrap_or(json!({}));
    if !md.is_object() {
        md = json!({});
    }
    md["name"] = json!(name);
    md["namespace"] = json!(ns);
    if !md.get("labels").is_some_and(Value::is_object) {
        md["labels"] = json!({});
    }
    for (k, v) in labels {
        md["labels"][*k] = json!(v);
    }
    md["ownerReferences"] = json!([owner]);
    if let Some(m) = md.as_object_mut() {
        m.remove("generateName");
        m.remove("creationTimestamp");
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": md,
        "spec": tmpl.get("spec").cloned().unwrap_or(json!({})),
        "status": {"phase": "Pending"},
    })
}

fn owned_pods(store: &Store, ns: &str, uid: &str) -> Vec<Arc<Value>> {
    store
        .list(idx::POD, Some(ns))
        .into_iter()
        .filter(|p| owned_by(p, uid))
        .collect()
}

fn with_status(obj: &Value, status: Value) -> Value {
    let mut o = obj.clone();
    o["status"] = status;
    o
}

fn statefulsets(store: &mut Store, events: &mut Recorder) {
    for sts in store.list(idx::STATEFULSET, None) {
        let ns = sts["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&sts).to_string();
        let uid = uid_of(&sts).to_string();
        let replicas = sts
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let parallel = sts
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            == Some("Parallel");
        let on_delete = sts
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            == Some("OnDelete");
        let tmpl = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let revision = format!("{name}-{}", template_hash(&tmpl));
        let claims: Vec<Value> = sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let selector_labels = sts
            .pointer("/spec/selector/matchLabels")
            .cloned()
            .unwrap_or(json!({}));

        for i in 0..replicas {
            for claim in &claims {
                let claim_name = claim
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("data");
                let pvc_name = format!("{claim_name}-{name}-{i}");
                if store.get(idx::PVC, &ns, &pvc_name).is_none() {
                    let mut labels = claim
                        .pointer("/metadata/labels")
                        .cloned()
                        .unwrap_or(json!({}));
                    if let (Some(l), Some(sel)) =
                        (labels.as_object_mut(), selector_labels.as_object())
                    {
                        for (k, v) in sel {
                            l.insert(k.clone(), v.clone());
                        }
                    }
                    let spec = claim.get("spec").cloned().unwrap_or(json!({}));
                    let storage = spec
                        .pointer("/resources/requests/storage")
                        .cloned()
                        .unwrap_or(json!("1Gi"));
                    let modes = spec
                        .get("accessModes")
                        .cloned()
                        .unwrap_or(json!(["ReadWriteOnce"]));
                    store.put_internal(
                        idx::PVC,
                        &ns,
                        json!({
                            "metadata": {"name": pvc_name, "namespace": ns, "labels": labels},
                            "spec": spec,
                            "status": {"phase": "Bound", "accessModes": modes, "capacity": {"storage": storage}},
                        }),
                    );
                }
            }
        }

        let partition = sts
            .pointer("/spec/updateStrategy/rollingUpdate/partition")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let by_ordinal = |store: &Store| {
            let mut pods: BTreeMap<usize, Arc<Value>> = BTreeMap::new();
            for p in owned_pods(store, &ns, &uid) {
                if let Some(i) = name_of(&p)
                    .strip_prefix(&format!("{name}-"))
                    .and_then(|s| s.parse::<usize>().ok())
                {
                    pods.insert(i, p);
                }
            }
            pods
        };
        // The real controller's order (pkg/controller/statefulset/
        // stateful_set_control.go, updateStatefulSet): replace failed pods
        // and create missing ones, then delete condemned ones (ordinals >=
        // replicas, highest first), then the rolling update; with
        // OrderedReady ("monotonic") any pod that is not Running and Ready,
        // or is terminating, stops the pass.
        let monotonic = !parallel;
        'sync: {
            let pods = by_ordinal(store);
            for i in 0..replicas {
                match pods.get(&i) {
                    Some(p) if phase_of(p) == "Failed" => {
                        store.delete_internal(idx::POD, &ns, name_of(p));
                        if monotonic {
                            break 'sync;
                        }
                    }
                    Some(p) => {
                        if monotonic && (is_terminating(p) || !is_ready(p)) {
                            break 'sync;
                        }
                    }
                    None => {
                        let pod_name = format!("{name}-{i}");
                        let pod = stateful_pod(&sts, &tmpl, &ns, &name, i, &revision, &claims);
                        if let Err(e) = store.admit_pod(&ns, &pod) {
                            // statefulset-controller: FailedCreate, then retries with backoff.
                            let message = format!(
                                "create Pod {pod_name} in StatefulSet {name} failed error: {}",
                                e.message
                            );
                            events.warning(
                                store,
                                &sts,
                                "apps/v1",
                                "StatefulSet",
                                "statefulset-controller",
                                "FailedCreate",
                                &message,
                            );
                            break 'sync;
                        }
                        store.put_internal(idx::POD, &ns, pod);
                        if monotonic {
                            break 'sync;
                        }
                    }
                }
            }
            let condemned: Vec<&Arc<Value>> =
                pods.range(replicas..).map(|(_, p)| p).rev().collect();
            for p in condemned {
                if is_terminating(p) {
                    if monotonic {
                        break 'sync;
                    }
                    continue;
                }
                store.terminate_pod(&ns, name_of(p), None);
                if monotonic {
                    break 'sync;
                }
            }
            if on_delete {
                break 'sync;
            }
            let pods = by_ordinal(store);
            for target in (partition..replicas).rev() {
                let Some(p) = pods.get(&target) else {
                    break;
                };
                if rev_of(p) != revision && !is_terminating(p) {
                    store.terminate_pod(&ns, name_of(p), None);
                    break;
                }
                if !is_ready(p) || is_terminating(p) {
                    break;
                }
            }
        }
        // Status as the real controller computes it: replicas counts every
        // pod, current/updated only those not terminating; the rolling
        // update completes when every pod is updated and ready.
        let pods: Vec<Arc<Value>> = owned_pods(store, &ns, &uid);
        let created = pods.len();
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let live: Vec<&Arc<Value>> = pods.iter().filter(|p| !is_terminating(p)).collect();
        let updated = live.iter().filter(|p| rev_of(p) == revision).count();
        let mut current_revision = sts
            .pointer("/status/currentRevision")
            .and_then(Value::as_str)
            .unwrap_or(&revision)
            .to_string();
        let mut current = live
            .iter()
            .filter(|p| rev_of(p) == current_revision)
            .count();
        if !on_delete && updated == created && ready == created {
            current_revision = revision.clone();
            current = updated;
        }
        let status = json!({
            "observedGeneration": sts.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "replicas": created,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        });
        store.put_internal(idx::STATEFULSET, &ns, with_status(&sts, status));
    }
}

fn rev_of(p: &Value) -> &str {
    p.pointer("/metadata/labels/controller-revision-hash")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn phase_of(p: &Value) -> &str {
    p.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

fn is_terminating(p: &Value) -> bool {
    p.pointer("/metadata/deletionTimestamp").is_some()
}

/// Ordinal `i` of a StatefulSet: its pod at `revision`, with the stable
/// hostname and its claims' volumes.
fn stateful_pod(
    sts: &Value,
    tmpl: &Value,
    ns: &str,
    name: &str,
    i: usize,
    revision: &str,
    claims: &[Value],
) -> Value {
    let pod_name = format!("{name}-{i}");
    let mut pod = pod_from_template(
        tmpl,
        ns,
        &pod_name,
        &[
            ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
            ("controller-revision-hash", revision.to_string()),
            ("apps.kubernetes.io/pod-index", i.to_string()),
        ],
        owner_ref("StatefulSet", "apps/v1", sts),
    );
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(svc) = sts.pointer("/spec/serviceName").and_then(Value::as_str) {
        pod["spec"]["subdomain"] = json!(svc);
    }
    if !claims.is_empty() {
        let mut vols = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for claim in claims {
            let cn = claim
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("data");
            if !vols.iter().any(|v| v["name"] == cn) {
                vols.push(json!({"name": cn, "persistentVolumeClaim": {"claimName": format!("{cn}-{name}-{i}")}}));
            }
        }
        pod["spec"]["volumes"] = json!(vols);
    }
    pod
}

fn deployments(store: &mut Store, st: &mut CtlState, shared: &ClusterShared, _node: &str) {
    for d in store.list(idx::DEPLOYMENT, None) {
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&d).to_string();
        let uid = uid_of(&d).to_string();
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let tmpl = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&tmpl);
        let key = (ns.clone(), name.clone());
        if let Some(prev) = st.deploy_hash.get(&key)
            && *prev != hash
        {
            shared.add_rollout(&ns, &name);
        }
        st.deploy_hash.insert(key, hash.clone());
        let hash_of = |p: &Value| {
            p.pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let pods = owned_pods(store, &ns, &uid);
        let (new, old): (Vec<_>, Vec<_>) = pods.into_iter().partition(|p| hash_of(p) == hash);
        for extra in new.iter().skip(replicas) {
            store.delete_internal(idx::POD, &ns, name_of(extra));
        }
        for _ in new.len()..replicas {
            let seq = store.next_seq();
            let pod_name = format!("{name}-{hash}-{}", name_suffix(seq));
            let pod = pod_from_template(
                &tmpl,
                &ns,
                &pod_name,
                &[("pod-template-hash", hash.clone())],
                owner_ref("Deployment", "apps/v1", &d),
            );
            if let Err(e) = store.admit_pod(&ns, &pod) {
                // Reported by the ReplicaSet controller on the ReplicaSet,
                // which kube-sim folds into its Deployment.
                let message = format!("Error creating: {}", e.message);
                let key = e.message.replacen(name_of(&pod), &name, 1);
                st.events.warning_once(
                    store,
                    &d,
                    "apps/v1",
                    "Deployment",
                    "replicaset-controller",
                    "FailedCreate",
                    &message,
                    &key,
                );
                break;
            }
            store.put_internal(idx::POD, &ns, pod);
        }
        let new_ready = new.iter().take(replicas).filter(|p| is_ready(p)).count();
        if new_ready >= replicas {
            for p in &old {
                store.delete_internal(idx::POD, &ns, name_of(p));
            }
        }
        let pods = owned_pods(store, &ns, &uid);
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let updated = pods.iter().filter(|p| hash_of(p) == hash).count();
        let available = ready >= replicas;
        let complete = updated == replicas && pods.len() == replicas && available;
        let mut status = json!({
            "observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "replicas": pods.len(),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {"type": "Available", "status": if available { "True" } else { "False" },
                 "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
                {"type": "Progressing", "status": "True",
                 "reason": if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }},
            ],
        });
        if pods.len() > ready {
            status["unavailableReplicas"] = json!(pods.len() - ready);
        }
        store.put_internal(idx::DEPLOYMENT, &ns, with_status(&d, status));
    }
}

fn jobs(store: &mut Store, events: &mut Recorder) {
    for job in store.list(idx::JOB, None) {
        let done = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                })
            });
        if done {
            continue;
        }
        let ns = job["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&job).to_string();
        let uid = uid_of(&job).to_string();
        let pods = owned_pods(store, &ns, &uid);
        let start = job
            .pointer("/status/startTime")
            .cloned()
            .unwrap_or_else(|| json!(now_rfc3339()));
        // job-controller: a failed pod is replaced until more than
        // `backoffLimit` (default 6) failed; then the Job fails.
        let failed = pods.iter().filter(|p| phase_of(p) == "Failed").count();
        let backoff_limit = job
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_u64)
            .unwrap_or(6) as usize;
        let succeeded_any = pods.iter().any(|p| phase_of(p) == "Succeeded");
        if failed > backoff_limit && !succeeded_any {
            let now = now_rfc3339();
            let message = "Job has reached the specified backoff limit";
            store.put_internal(
                idx::JOB,
                &ns,
                with_status(
                    &job,
                    json!({
                        "startTime": start, "failed": failed, "ready": 0, "terminating": 0,
                        "conditions": [
                            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                             "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                             "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                        ],
                    }),
                ),
            );
            continue;
        }
        let active = pods
            .iter()
            .filter(|p| !matches!(phase_of(p), "Succeeded" | "Failed"))
            .count();
        if active == 0 && !succeeded_any {
            let tmpl = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let seq = store.next_seq();
            let pod = pod_from_template(
                &tmpl,
                &ns,
                &format!("{name}-{}", name_suffix(seq)),
                &[
                    ("job-name", name.clone()),
                    ("batch.kubernetes.io/job-name", name.clone()),
                    ("controller-uid", uid.clone()),
                    ("batch.kubernetes.io/controller-uid", uid.clone()),
                ],
                owner_ref("Job", "batch/v1", &job),
            );
            if let Err(e) = store.admit_pod(&ns, &pod) {
                // job-controller: FailedCreate "Error creating: ...", then retries.
                let message = format!("Error creating: {}", e.message);
                let key = e.message.replacen(name_of(&pod), &name, 1);
                events.warning_once(
                    store,
                    &job,
                    "batch/v1",
                    "Job",
                    "job-controller",
                    "FailedCreate",
                    &message,
                    &key,
                );
                continue;
            }
            store.put_internal(idx::POD, &ns, pod);
            store.put_internal(
                idx::JOB,
                &ns,
                with_status(
                    &job,
                    json!({"active": 1, "ready": 0, "failed": failed, "startTime": start, "terminating": 0}),
                ),
            );
            continue;
        }
        let succeeded = pods
            .iter()
            .any(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Succeeded"));
        if succeeded {
            let now = now_rfc3339();
            store.put_internal(
                idx::JOB,
                &ns,
                with_status(
                    &job,
                    json!({
                        "startTime": start, "completionTime": now, "succeeded": 1, "ready": 0, "terminating": 0,
                        "conditions": [
                            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                             "lastProbeTime": now, "lastTransitionTime": now},
                            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                             "lastProbeTime": now, "lastTransitionTime": now},
                        ],
                    }),
                ),
            );
        } else {
            let ready = pods.iter().filter(|p| is_ready(p)).count();
            store.put_internal(
                idx::JOB,
                &ns,
                with_status(
                    &job,
                    json!({"active": active, "ready": ready, "failed": failed, "startTime": start, "terminating": 0}),
                ),
            );
        }
    }
}

fn is_job_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|r| r["kind"] == "Job"))
}

fn container_statuses(pod: &Value, running: bool, started_at: &str) -> Value {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let list: Vec<Value> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let state = if running {
                json!({"running": {"startedAt": started_at}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started_at, "finishedAt": now_rfc3339()}})
            };
            json!({
                "name": c["name"], "image": c["image"], "imageID": "",
                "containerID": format!("containerd://{:064x}", fnv(format!("{}{i}", uid_of(pod)).as_bytes())),
                "ready": running, "started": running, "restartCount": 0, "state": state,
            })
        })
        .collect();
    json!(list)
}

fn conditions(ready: bool) -> Value {
    let r = if ready { "True" } else { "False" };
    json!([
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": r},
        {"type": "ContainersReady", "status": r},
        {"type": "PodScheduled", "status": "True"},
    ])
}

/// How often a crashing container restarts, and a failing pull is retried
/// (kubelet backs off from 10 s up to 5 min; kube-sim keeps it short).
pub const CRASH_PERIOD: Duration = Duration::from_millis(400);

fn images(pod: &Value) -> impl Iterator<Item = &str> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or(""))
}

fn crashes(pod: &Value, rules: &PodRules) -> bool {
    images(pod).any(|i| rules.crash_images.iter().any(|c| c == i))
}

fn pull_fails(pod: &Value, rules: &PodRules) -> bool {
    crate::pods::image_pull_fails(pod)
        || images(pod).any(|i| rules.bad_images.iter().any(|b| b == i))
}

fn set_not_ready(status: &mut Value) {
    status["conditions"] = crate::pods::conditions(false);
    for c in status["conditions"].as_array_mut().into_iter().flatten() {
        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
            c["reason"] = json!("ContainersNotReady");
        }
    }
    if let Some(cs) = status
        .get_mut("containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            c["ready"] = json!(false);
        }
    }
}

/// The status of a pod whose container exits at once, over and over:
/// Running, not Ready, waiting in CrashLoopBackOff after `restarts` restarts.
fn crash_status(pod: &Value, node_ip: &str, pod_ip: &str, started: &str, restarts: u64) -> Value {
    let pod_name = name_of(pod);
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let uid = uid_of(pod);
    let statuses: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("");
            json!({
                "name": name, "image": c["image"], "imageID": "",
                "containerID": format!("containerd://{:064x}", fnv(format!("{uid}{name}/{restarts}").as_bytes())),
                "ready": false, "started": false, "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off 10s restarting failed container={name} pod={pod_name}_{ns}({uid})")}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "startedAt": started, "finishedAt": now_rfc3339()}},
            })
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "qosClass": "BestEffort",
        "containerStatuses": statuses,
    });
    set_not_ready(&mut status);
    status
}

fn pods(
    shared: &ClusterShared,
    store: &mut Store,
    st: &mut CtlState,
    now: Instant,
    timing: Timing,
    node: &str,
    real: bool,
) {
    let rules = &shared.pod_rules;
    let initialised = shared.crdb.initialised();
    let node_ip = store.net.node_ip().to_string();
    for pod in store.list(idx::POD, None) {
        let phase = phase_of(&pod).to_string();
        let age = st.seen(uid_of(&pod), now);
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&pod).to_string();
        if is_terminating(&pod) {
            // Graceful termination: SIGTERM at once (a draining CockroachDB
            // node is not ready), the pod object until the grace period ends.
            let key = format!("term/{}", uid_of(&pod));
            let first = !st.first_seen.contains_key(&key);
            let elapsed = st.seen(&key, now);
            if first {
                shared.log_activity("pod-terminating", format!("{ns}/{name}"));
                if is_ready(&pod) {
                    let mut p = (*pod).clone();
                    set_not_ready(&mut p["status"]);
                    store.put_internal(idx::POD, &ns, p);
                }
            }
            let grace = Duration::from_secs(
                pod.pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            );
            let limit = rules.max_termination_grace.map_or(grace, |m| m.min(grace));
            if elapsed >= limit {
                store.delete_internal(idx::POD, &ns, &name);
                shared.log_activity("pod-deleted", format!("{ns}/{name}"));
            }
            continue;
        }
        match phase.as_str() {
            // kube-scheduler: a pod the node cannot hold is never bound.
            "Pending"
                if pod.pointer("/spec/nodeName").is_none()
                    && crate::pods::unschedulable(&pod, &rules.node_allocatable).is_some() =>
            {
                let Some(message) = crate::pods::unschedulable(&pod, &rules.node_allocatable)
                else {
                    continue;
                };
                let seen = pod
                    .pointer("/status/conditions/0/reason")
                    .and_then(Value::as_str);
                if seen == Some("Unschedulable") {
                    continue;
                }
                st.events.warning_once(
                    store,
                    &pod,
                    "v1",
                    "Pod",
                    "default-scheduler",
                    "FailedScheduling",
                    &message,
                    "",
                );
                let mut p = (*pod).clone();
                p["status"] = crate::pods::unschedulable_status(&message);
                store.put_internal(idx::POD, &ns, p);
            }
            "Pending" if pull_fails(&pod, rules) => {
                if age < timing.pod_ready_delay {
                    continue;
                }
                // kubelet: ErrImagePull on each attempt, ImagePullBackOff
                // while it waits for the next one.
                let attempt = (age - timing.pod_ready_delay).as_millis() / CRASH_PERIOD.as_millis();
                let reason = if attempt.is_multiple_of(2) {
                    "ErrImagePull"
                } else {
                    "ImagePullBackOff"
                };
                if crate::pods::waiting_reason(&pod) == Some(reason) {
                    continue;
                }
                let ip = store.net.pod_ip(&ns, &name).to_string();
                let mut p = (*pod).clone();
                if p.pointer("/spec/nodeName").is_none() {
                    p["spec"]["nodeName"] = json!(node);
                }
                p["status"] = crate::pods::err_image_pull_status(
                    &pod,
                    &node_ip,
                    &ip,
                    reason,
                    &rules.bad_images,
                );
                store.put_internal(idx::POD, &ns, p);
            }
            // The real network's kubelet runs these (crate::pods).
            _ if real && crate::pods::runs_for_real(&pod) => {}
            "Pending"
                if age >= timing.pod_ready_delay
                    && crate::pods::missing_config_map_ref(&pod, |cm| {
                        store.get(idx::CONFIGMAP, &ns, cm)
                    })
                    .is_some() =>
            {
                // kubelet: CreateContainerConfigError until the ConfigMap
                // (and key) exists, then it starts the container.
                let Some((container, message)) = crate::pods::missing_config_map_ref(&pod, |cm| {
                    store.get(idx::CONFIGMAP, &ns, cm)
                }) else {
                    continue;
                };
                let current = pod
                    .pointer("/status/containerStatuses/0/state/waiting/message")
                    .and_then(Value::as_str);
                if crate::pods::waiting_reason(&pod) == Some("CreateContainerConfigError")
                    && current == Some(message.as_str())
                {
                    continue;
                }
                let ip = store.net.pod_ip(&ns, &name).to_string();
                let mut p = (*pod).clone();
                if p.pointer("/spec/nodeName").is_none() {
                    p["spec"]["nodeName"] = json!(node);
                }
                p["status"] =
                    crate::pods::config_error_status(&pod, &node_ip, &ip, &container, &message);
                store.put_internal(idx::POD, &ns, p);
            }
            "Pending" if age >= timing.pod_ready_delay => {
                let ip = store.net.pod_ip(&ns, &name).to_string();
                let started = now_rfc3339();
                let mut p = (*pod).clone();
                if p.pointer("/spec/nodeName").is_none() {
                    p["spec"]["nodeName"] = json!(node);
                }
                if crashes(&pod, rules) {
                    p["status"] = crash_status(&pod, &node_ip, &ip, &started, 1);
                    store.put_internal(idx::POD, &ns, p);
                    continue;
                }
                p["status"] = json!({
                    "phase": "Running",
                    "conditions": conditions(true),
                    "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
                    "podIP": ip, "podIPs": [{"ip": ip}],
                    "startTime": started,
                    "qosClass": "BestEffort",
                    "containerStatuses": container_statuses(&pod, true, &started),
                });
                crate::pods::apply_readiness(&pod, &mut p["status"]);
                // CockroachDB answers /health?ready=1 with 503 until the
                // cluster is initialised.
                if crate::crdb::is_crdb_pod(&pod) && !initialised {
                    set_not_ready(&mut p["status"]);
                }
                store.put_internal(idx::POD, &ns, p);
            }
            "Running" if crashes(&pod, rules) => {
                let restarts = 1
                    + (age.saturating_sub(timing.pod_ready_delay).as_millis()
                        / CRASH_PERIOD.as_millis()) as u64;
                let seen = pod
                    .pointer("/status/containerStatuses/0/restartCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if seen == restarts {
                    continue;
                }
                let mut p = (*pod).clone();
                let started = p
                    .pointer("/status/startTime")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ip = p
                    .pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                p["status"] = crash_status(&pod, &node_ip, &ip, &started, restarts);
                store.put_internal(idx::POD, &ns, p);
            }
            "Running"
                if crate::crdb::is_crdb_pod(&pod)
                    && initialised
                    && !is_ready(&pod)
                    && !crate::pods::never_ready(&pod) =>
            {
                let mut p = (*pod).clone();
                p["status"]["conditions"] = conditions(true);
                for c in p["status"]["containerStatuses"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    c["ready"] = json!(true);
                }
                store.put_internal(idx::POD, &ns, p);
            }
            "Running"
                if is_job_pod(&pod) && age >= timing.pod_ready_delay + timing.job_duration =>
            {
                let mut p = (*pod).clone();
                let started = p
                    .pointer("/status/startTime")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                // The `cockroach` commands a Job may run against the simulated database.
                let outcome = match crate::crdb::job_command(&pod) {
                    Some(crate::crdb::Command::Init) => {
                        shared.crdb.init();
                        shared.log_activity("cluster-initialised", format!("{ns}/{name}"));
                        Ok("Cluster successfully initialized\n".to_string())
                    }
                    Some(crate::crdb::Command::Decommission(ids)) => {
                        let r = shared.crdb.decommission(&ids);
                        let what = if r.is_ok() {
                            "node-decommissioned"
                        } else {
                            "decommission-refused"
                        };
                        for id in &ids {
                            shared.log_activity(what, format!("node {id} ({ns}/{name})"));
                        }
                        r
                    }
                    Some(crate::crdb::Command::Status { decommission }) => {
                        shared.crdb.status(decommission)
                    }
                    None => Ok(String::new()),
                };
                p["status"]["conditions"] = conditions(false);
                p["status"]["containerStatuses"] = container_statuses(&pod, false, &started);
                match outcome {
                    Ok(log) => {
                        p["status"]["phase"] = json!("Succeeded");
                        if !log.is_empty() {
                            shared.set_pod_log(&ns, &name, log);
                        }
                    }
                    Err(log) => {
                        p["status"]["phase"] = json!("Failed");
                        for c in p["status"]["containerStatuses"]
                            .as_array_mut()
                            .into_iter()
                            .flatten()
                        {
                            c["state"]["terminated"]["exitCode"] = json!(1);
                            c["state"]["terminated"]["reason"] = json!("Error");
                        }
                        shared.set_pod_log(&ns, &name, log);
                    }
                }
                store.put_internal(idx::POD, &ns, p);
            }
            _ => {}
        }
    }
}

/// The `spec.loadBalancerClass` the AWS Load Balancer Controller's webhook
/// sets and the controller serves.
pub const AWS_LBC_CLASS: &str = "service.k8s.aws/nlb";
const AWS_NLB_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";

/// Why the flavour's cloud refuses to provision this LoadBalancer: the
/// Event reason, its message and the component that reports it.
/// Sources are cited in docs/simulator.md ("Cloud load balancers").
fn lb_refusal(svc: &Value, flavor: Flavor, rules: CloudRules) -> Option<(&'static str, String)> {
    if !rules.lb_protocols {
        return None;
    }
    let ports: Vec<&str> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"))
        .collect();
    let mixed = ports.windows(2).any(|w| w[0] != w[1]);
    let failed =
        |why: &str| format!("Error syncing load balancer: failed to ensure load balancer: {why}");
    match flavor {
        Flavor::Gke | Flavor::GkeAutopilot | Flavor::Eks if mixed => Some((
            "SyncLoadBalancerFailed",
            failed("mixed protocol is not supported for LoadBalancer"),
        )),
        Flavor::Eks => {
            let nlb = svc
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(AWS_NLB_TYPE))
                .and_then(Value::as_str)
                == Some("nlb");
            ports
                .iter()
                .find(|p| !(**p == "TCP" || (nlb && **p == "UDP")))
                .map(|p| {
                    (
                        "SyncLoadBalancerFailed",
                        failed(&format!("Protocol {p} not supported by LoadBalancer")),
                    )
                })
        }
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn load_balancers(
    store: &mut Store,
    st: &mut CtlState,
    now: Instant,
    delay: Duration,
    never: bool,
    flavor: Flavor,
    rules: CloudRules,
) {
    for svc in store.list(idx::SERVICE, None) {
        let ns = svc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&svc).to_string();
        let is_lb = svc.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
        let has_ingress = svc
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !is_lb {
            if has_ingress {
                store.put_internal(
                    idx::SERVICE,
                    &ns,
                    with_status(&svc, json!({"loadBalancer": {}})),
                );
            }
            continue;
        }
        // A class nobody here serves: the service controller leaves the
        // Service alone (no address, no event), as the real one does.
        let class = svc
            .pointer("/spec/loadBalancerClass")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        let by_lbc =
            flavor == Flavor::Eks && rules.eks_lb_controller && class == Some(AWS_LBC_CLASS);
        if class.is_some() && !by_lbc {
            continue;
        }
        if !by_lbc && let Some((reason, message)) = lb_refusal(&svc, flavor, rules) {
            st.events.warning(
                store,
                &svc,
                "v1",
                "Service",
                "service-controller",
                reason,
                &message,
            );
            if matches!(flavor, Flavor::Gke | Flavor::GkeAutopilot)
                && svc.pointer("/status/conditions").is_none()
            {
                let mut status = svc.get("status").cloned().unwrap_or(json!({}));
                status["conditions"] = json!([{
                    "type": "LoadBalancerPortsError", "status": "True",
                    "reason": "LoadBalancerMixedProtocolNotSupported",
                    "message": "LoadBalancers with multiple protocols are not supported.",
                    "lastTransitionTime": now_rfc3339(),
                }]);
                store.put_internal(idx::SERVICE, &ns, with_status(&svc, status));
            }
            continue;
        }
        let age = st.seen(&format!("lb/{}", uid_of(&svc)), now);
        if has_ingress || never || age < delay {
            continue;
        }
        let ip = store.net.lb_ip(&ns, &name);
        let ingress = if flavor == Flavor::Eks {
            json!([{"hostname": crate::dns::lb_hostname(ip)}])
        } else {
            json!([{"ip": ip.to_string(), "ipMode": "VIP"}])
        };
        let mut status = svc.get("status").cloned().unwrap_or(json!({}));
        status["loadBalancer"] = json!({"ingress": ingress});
        if let Some(m) = status.as_object_mut() {
            m.remove("conditions");
        }
        store.put_internal(idx::SERVICE, &ns, with_status(&svc, status));
    }
}

fn endpoints(store: &mut Store) {
    for svc in store.list(idx::SERVICE, None) {
        let Some(sel) = svc
            .pointer("/spec/selector")
            .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
        else {
            continue;
        };
        let ns = svc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&svc).to_string();
        let selector = LabelSelector::from_object(&json!({"matchLabels": sel}));
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for p in store.list(idx::POD, Some(&ns)) {
            let Some(ip) = p.pointer("/status/podIP").and_then(Value::as_str) else {
                continue;
            };
            if !selector.matches(&p) {
                continue;
            }
            let addr = json!({
                "ip": ip,
                "nodeName": p.pointer("/spec/nodeName").cloned().unwrap_or(Value::Null),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": name_of(&p), "uid": uid_of(&p)},
            });
            if is_ready(&p) {
                ready.push(addr)
            } else {
                not_ready.push(addr)
            }
        }
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let port = p.get("targetPort").filter(|t| t.is_u64()).unwrap_or(&p["port"]).clone();
                        let mut e = json!({"port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
                        if let Some(n) = p.get("name") {
                            e["name"] = n.clone();
                        }
                        e
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}});
        if let Some(l) = svc.pointer("/metadata/labels") {
            ep["metadata"]["labels"] = l.clone();
        }
        if !ready.is_empty() || !not_ready.is_empty() {
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            ep["subsets"] = json!([subset]);
        }
        if let Some(old) = store.get(idx::ENDPOINTS, &ns, &name) {
            let mut cand = (*old).clone();
            cand["subsets"] = ep.get("subsets").cloned().unwrap_or(Value::Null);
            if cand.get("subsets") == Some(&Value::Null) {
                cand.as_object_mut().expect("object").remove("subsets");
            }
            if cand == *old {
                continue;
            }
            store.put_internal(idx::ENDPOINTS, &ns, cand);
        } else {
            store.put_internal(idx::ENDPOINTS, &ns, ep);
        }
    }
}
