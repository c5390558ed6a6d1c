//! The simulated CockroachDB of a federation: one database across every
//! cluster, made of the pods of CockroachDB StatefulSets (a StatefulSet
//! whose pod template's first container image names `cockroach`).
//!
//! It owns: node IDs (one per pod name, kept across restarts as a store
//! on its volume would be), whether `cockroach init` ran, decommissioned
//! nodes, the replication gauges each node exports on `/_status/vars`,
//! its `/health?ready=1` answer, and the availability record (how long
//! nodes were unready in two or more zones at once). It observes the
//! clusters' stores every [`TICK`]; it never writes objects (the pod
//! controllers in [`crate::controllers`] ask it about readiness and Job
//! outcomes) and never answers HTTP itself ([`crate::server`] and
//! [`crate::control`] call it).
//!
//! The model (sources in docs/simulator.md, "Simulated CockroachDB"):
//! - a node is *up* while its pod is Ready and not terminating; a node that
//!   was up once and is not now is *down* (a node that never came up, e.g.
//!   before `cockroach init`, is not counted);
//! - `ranges_underreplicated` is positive while any node is down, and for
//!   [`crate::PodRules::crdb_recovery`] after the last one came back;
//! - `ranges_unavailable` is positive while down nodes are in two or more
//!   zones at once (one replica of each range per region: two regions
//!   down lose quorum);
//! - both are per-store gauges, as CockroachDB exports them: each up node
//!   reports its share (the ranges it holds the lease for), so the
//!   federation's value is the sum over every node;
//! - a pod removed by a scale-down whose node was not decommissioned stays
//!   down (its replicas are lost until CockroachDB re-replicates);
//!   decommissioned nodes are gone;
//! - `cockroach node decommission` refuses to leave fewer than 3 nodes;
//! - `cockroach node status` lists every node except those decommissioned
//!   and gone, with the address the node advertises (its pod's FQDN,
//!   `--advertise-host $(hostname -f)`) and the locality it started with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::ClusterShared;
use crate::resources::idx;
use crate::store::{Store, name_of};

/// How often the clusters are observed.
pub const TICK: Duration = Duration::from_millis(10);
/// CockroachDB's default HTTP port (DB Console, `/_status/vars`, `/health`).
pub const HTTP_PORT: u16 = 8080;
/// Ranges that lose a replica per down node (any positive number would do).
const RANGES_PER_NODE: u64 = 24;
/// CockroachDB's default replication factor: decommission never goes below it.
pub const MIN_NODES: usize = 3;
/// An image naming this is a CockroachDB image.
const COCKROACH_MARKER: &str = "cockroach";

/// Whether a StatefulSet runs CockroachDB (its template's first container image).
pub fn is_crdb_statefulset(sts: &Value) -> bool {
    sts.pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .is_some_and(|i| i.contains(COCKROACH_MARKER))
}

/// Whether a pod is a CockroachDB node: owned by a StatefulSet and its
/// first container's image names `cockroach`.
pub fn is_crdb_pod(pod: &Value) -> bool {
    let owned = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|r| r["kind"] == "StatefulSet"));
    owned
        && pod
            .pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .is_some_and(|i| i.contains(COCKROACH_MARKER))
}

/// The words of a pod's first container's command and args.
fn command_words(pod: &Value) -> Vec<String> {
    let c = pod
        .pointer("/spec/containers/0")
        .cloned()
        .unwrap_or(json!({}));
    ["command", "args"]
        .iter()
        .flat_map(|k| {
            c.get(*k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|w| w.as_str().map(String::from))
        .flat_map(|w| {
            w.split_whitespace()
                .map(String::from)
                .collect::<Vec<String>>()
        })
        .collect()
}

/// What a Job pod running the `cockroach` binary asks of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Init,
    Decommission(Vec<u64>),
    /// `node status` (with `--decommission`: the membership columns too).
    Status {
        decommission: bool,
    },
}

/// The `cockroach` command a Job's pod runs, if it is one we simulate.
pub fn job_command(pod: &Value) -> Option<Command> {
    let image = pod
        .pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !image.contains(COCKROACH_MARKER) {
        return None;
    }
    let words = command_words(pod);
    let bin = words.iter().position(|w| w.ends_with("cockroach"))?;
    let rest = &words[bin + 1..];
    match rest.first().map(String::as_str) {
        Some("init") => Some(Command::Init),
        Some("node") if rest.get(1).map(String::as_str) == Some("decommission") => {
            let ids = rest[2..]
                .iter()
                .take_while(|w| !w.starts_with('-'))
                .filter_map(|w| w.trim_matches(['"', '\'']).parse().ok())
                .collect();
            Some(Command::Decommission(ids))
        }
        Some("node") if rest.get(1).map(String::as_str) == Some("status") => {
            Some(Command::Status {
                decommission: rest.iter().any(|w| w == "--decommission" || w == "--all"),
            })
        }
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Node {
    id: u64,
    zone: String,
    up: bool,
    decommissioned: bool,
    /// What the node advertises: its pod's FQDN and the gRPC port.
    address: String,
    /// `--locality` of its start command, as given.
    locality: String,
}

/// (cluster index, namespace, pod name)
type NodeKey = (usize, String, String);

#[derive(Default)]
struct State {
    nodes: BTreeMap<NodeKey, Node>,
    next_id: u64,
    underreplicated_until: Option<Instant>,
    unavailable_since: Option<Instant>,
    unavailable_total: Duration,
    longest_unavailable: Duration,
    max_zones_unready: usize,
    zones_unready: Vec<String>,
}

/// The federation's CockroachDB (shared by every cluster).
pub struct CrdbSim {
    started: Instant,
    recovery: Duration,
    initialised: AtomicBool,
    seq: AtomicU64,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One CockroachDB StatefulSet as seen in a store.
struct SetSeen {
    ns: String,
    /// ordinal -> the pod
    pods: BTreeMap<usize, PodSeen>,
}

struct PodSeen {
    name: String,
    up: bool,
    address: String,
    locality: String,
}

/// The address a node advertises: `--advertise-host "$(hostname -f)"`
/// gives the pod's FQDN, `<hostname>.<subdomain>.<ns>.svc.<domain>`
/// (Kubernetes, "DNS for Services and Pods": a pod with hostname and
/// subdomain set), with CockroachDB's gRPC port.
fn advertised_address(pod: &Value, ns: &str) -> String {
    let name = name_of(pod);
    let spec = &pod["spec"];
    let host = spec["hostname"].as_str().unwrap_or(name);
    match spec["subdomain"].as_str() {
        Some(sub) => format!(
            "{host}.{sub}.{ns}.svc.{}:26257",
            crate::netdns::CLUSTER_DOMAIN
        ),
        None => format!("{host}:26257"),
    }
}

/// The value of `--locality` in a pod's start command (empty without one).
fn start_locality(pod: &Value) -> String {
    let words = command_words(pod);
    words
        .iter()
        .position(|w| w == "--locality")
        .and_then(|i| words.get(i + 1))
        .map(|w| w.trim_matches(['"', '\'']).to_string())
        .or_else(|| {
            words
                .iter()
                .find_map(|w| w.strip_prefix("--locality="))
                .map(|w| w.trim_matches(['"', '\'']).to_string())
        })
        .unwrap_or_default()
}

fn observe(store: &Store) -> Vec<SetSeen> {
    let mut out = Vec::new();
    for sts in store.list(idx::STATEFULSET, None) {
        if !is_crdb_statefulset(&sts) {
            continue;
        }
        let ns = sts["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(&sts).to_string();
        let uid = crate::store::uid_of(&sts).to_string();
        let mut pods = BTreeMap::new();
        for p in store.list(idx::POD, Some(&ns)) {
            let owned = p
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|r| r["uid"] == uid.as_str()));
            if !owned {
                continue;
            }
            let Some(ordinal) = name_of(&p)
                .strip_prefix(&format!("{name}-"))
                .and_then(|s| s.parse::<usize>().ok())
            else {
                continue;
            };
            pods.insert(
                ordinal,
                PodSeen {
                    name: name_of(&p).to_string(),
                    up: pod_serving_ready(&p),
                    address: advertised_address(&p, &ns),
                    locality: start_locality(&p),
                },
            );
        }
        out.push(SetSeen { ns, pods });
    }
    out
}

/// Ready and not terminating: what `/health?ready=1` answers 200 for.
pub fn pod_serving_ready(pod: &Value) -> bool {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    ready
        && pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
}

/// Whether the pod's CockroachDB process runs (serves HTTP): Running and
/// its first container in state `running`.
pub fn pod_process_runs(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && pod
            .pointer("/status/containerStatuses/0/state/running")
            .is_some()
}

fn share(total: u64, rank: usize, n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let n = n as u64;
    let rank = rank as u64;
    total / n + u64::from(rank < total % n)
}

impl CrdbSim {
    pub fn new(recovery: Duration) -> Self {
        CrdbSim {
            started: Instant::now(),
            recovery,
            initialised: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether `cockroach init` has succeeded (nodes become Ready only then).
    pub fn initialised(&self) -> bool {
        self.initialised.load(Ordering::SeqCst)
    }

    /// The next (seq, at_ms) of an activity record.
    /// Microseconds from the federation's start to `at`.
    pub fn micros_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64
    }

    pub fn stamp(&self) -> (u64, u64) {
        (
            self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            self.started.elapsed().as_millis() as u64,
        )
    }

    /// One observation of every cluster (see the module doc for the model).
    pub fn tick(&self, clusters: &[Arc<ClusterShared>], now: Instant) {
        let mut seen = Vec::new();
        for c in clusters {
            let sets = observe(&c.store());
            seen.push((c.index, c.zone.clone(), sets));
        }
        let any_set = seen.iter().any(|(_, _, s)| !s.is_empty());
        let mut st = lock(&self.state);
        if !any_set {
            // Every CockroachDB StatefulSet is gone: the next one is a new database.
            self.initialised.store(false, Ordering::SeqCst);
            st.nodes.clear();
        }
        let initialised = self.initialised();
        let mut existing: BTreeSet<NodeKey> = BTreeSet::new();
        for (index, zone, sets) in &seen {
            for set in sets {
                for seen in set.pods.values() {
                    let (pod, up) = (&seen.name, &seen.up);
                    let key = (*index, set.ns.clone(), pod.clone());
                    existing.insert(key.clone());
                    if *up && initialised && !st.nodes.contains_key(&key) {
                        st.next_id += 1;
                        let id = st.next_id;
                        st.nodes.insert(
                            key.clone(),
                            Node {
                                id,
                                zone: zone.clone(),
                                up: true,
                                decommissioned: false,
                                address: seen.address.clone(),
                                locality: seen.locality.clone(),
                            },
                        );
                    }
                    if let Some(n) = st.nodes.get_mut(&key) {
                        n.up = *up;
                    }
                }
            }
        }
        let sets_alive: BTreeSet<(usize, String)> = seen
            .iter()
            .flat_map(|(i, _, sets)| sets.iter().map(move |s| (*i, s.ns.clone())))
            .collect();
        for (key, n) in st.nodes.iter_mut() {
            if !existing.contains(key) {
                // Being replaced, or scaled away: down either way.
                n.up = false;
            }
        }
        // The StatefulSet is gone (teardown): so are its nodes. A
        // decommissioned node whose pod stopped is gone from the cluster.
        st.nodes.retain(|(i, ns, _), n| {
            (n.up || !n.decommissioned) && sets_alive.contains(&(*i, ns.clone()))
        });
        let down: Vec<&Node> = st
            .nodes
            .values()
            .filter(|n| !n.up && !n.decommissioned)
            .collect();
        let zones: BTreeSet<String> = down.iter().map(|n| n.zone.clone()).collect();
        let any_down = !down.is_empty();
        if any_down {
            st.underreplicated_until = Some(now + self.recovery);
        }
        st.zones_unready = zones.iter().cloned().collect();
        st.max_zones_unready = st.max_zones_unready.max(zones.len());
        if zones.len() >= 2 {
            st.unavailable_since.get_or_insert(now);
        } else if let Some(since) = st.unavailable_since.take() {
            let stretch = now.duration_since(since);
            st.unavailable_total += stretch;
            st.longest_unavailable = st.longest_unavailable.max(stretch);
        }
    }

    /// `cockroach init` succeeded.
    pub fn init(&self) {
        self.initialised.store(true, Ordering::SeqCst);
    }

    /// `cockroach node decommission IDS`: Ok names the nodes, Err is what
    /// the command prints when it refuses.
    pub fn decommission(&self, ids: &[u64]) -> Result<String, String> {
        if ids.is_empty() {
            return Err("ERROR: no node ID specified".into());
        }
        let mut st = lock(&self.state);
        for id in ids {
            if !st.nodes.values().any(|n| n.id == *id) {
                return Err(format!("ERROR: node {id} does not exist"));
            }
        }
        let remaining = st
            .nodes
            .values()
            .filter(|n| !n.decommissioned && !ids.contains(&n.id))
            .count();
        if remaining < MIN_NODES {
            return Err(format!(
                "ERROR: decommissioning node(s) {} would leave {remaining} node(s), fewer than the replication factor {MIN_NODES}",
                ids.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut names = Vec::new();
        for n in st.nodes.values_mut() {
            if ids.contains(&n.id) {
                n.decommissioned = true;
                names.push(n.id.to_string());
            }
        }
        Ok(format!(
            "\n id | is_live | replicas | is_decommissioning | membership | is_draining\n{}\nNo more data reported on target nodes. Please verify cluster health before removing the nodes.\n",
            names
                .iter()
                .map(|id| format!(
                    "  {id} |  true   |        0 |        true        | decommissioned |    false"
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }

    /// `cockroach node status --format=tsv`: every node but those
    /// decommissioned and gone (CockroachDB docs, `cockroach node`:
    /// "excluding nodes that have been decommissioned and taken
    /// offline"), by ID; with `--decommission` also the membership
    /// columns.
    ///
    /// Fails as the real command does when no node answers.
    pub fn status(&self, decommission: bool) -> Result<String, String> {
        let st = lock(&self.state);
        if !st.nodes.values().any(|n| n.up) {
            return Err("ERROR: cannot dial server.\nIs the server running?\nFailed running \"node status\"\n".into());
        }
        let mut nodes: Vec<&Node> = st.nodes.values().collect();
        nodes.sort_by_key(|n| n.id);
        let mut out = String::from(
            "id\taddress\tsql_address\tbuild\tstarted_at\tupdated_at\tlocality\tis_available\tis_live",
        );
        if decommission {
            out.push_str("\tgossiped_replicas\tis_decommissioning\tmembership\tis_draining");
        }
        out.push('\n');
        for n in nodes {
            let live = n.up;
            out.push_str(&format!(
                "{}\t{}\t{}\tv25.2.0\t\t\t{}\t{live}\t{live}",
                n.id, n.address, n.address, n.locality
            ));
            if decommission {
                let (replicas, membership) = if n.decommissioned {
                    (0, "decommissioned")
                } else {
                    (RANGES_PER_NODE, "active")
                };
                out.push_str(&format!(
                    "\t{replicas}\t{}\t{membership}\tfalse",
                    n.decommissioned
                ));
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// The node ID of a pod (once it was up after init).
    pub fn node_id(&self, index: usize, ns: &str, pod: &str) -> Option<u64> {
        lock(&self.state)
            .nodes
            .get(&(index, ns.to_string(), pod.to_string()))
            .map(|n| n.id)
    }

    /// `/_status/vars` of one node: Prometheus text.
    pub fn vars(&self, index: usize, ns: &str, pod: &str, now: Instant) -> String {
        let st = lock(&self.state);
        let me = st.nodes.get(&(index, ns.to_string(), pod.to_string()));
        let id = me.map(|n| n.id).unwrap_or(0);
        let down = st
            .nodes
            .values()
            .filter(|n| !n.up && !n.decommissioned)
            .count() as u64;
        let recovering = st.underreplicated_until.is_some_and(|u| now < u);
        let under_total = if down > 0 {
            down * RANGES_PER_NODE
        } else if recovering {
            RANGES_PER_NODE
        } else {
            0
        };
        let unavailable_total = if st.zones_unready.len() >= 2 {
            (st.zones_unready.len() as u64 - 1) * RANGES_PER_NODE
        } else {
            0
        };
        let mut up: Vec<u64> = st
            .nodes
            .values()
            .filter(|n| n.up && !n.decommissioned)
            .map(|n| n.id)
            .collect();
        up.sort_unstable();
        let live = up.len();
        let (under, unavailable) = match up.iter().position(|x| *x == id) {
            Some(rank) if me.is_some_and(|n| n.up) => (
                share(under_total, rank, live),
                share(unavailable_total, rank, live),
            ),
            _ => (0, 0),
        };
        let ranges = share(RANGES_PER_NODE * st.nodes.len() as u64, 0, live.max(1));
        format!(
            "# HELP ranges Number of ranges\n# TYPE ranges gauge\nranges{{store=\"{id}\",node_id=\"{id}\"}} {ranges}\n\
             # HELP ranges_unavailable Number of ranges with fewer live replicas than needed for quorum\n# TYPE ranges_unavailable gauge\nranges_unavailable{{store=\"{id}\",node_id=\"{id}\"}} {unavailable}\n\
             # HELP ranges_underreplicated Number of ranges with fewer live replicas than the replication target\n# TYPE ranges_underreplicated gauge\nranges_underreplicated{{store=\"{id}\",node_id=\"{id}\"}} {under}\n\
             # HELP liveness_livenodes Number of live nodes in the cluster (will be 0 if this node is not itself live)\n# TYPE liveness_livenodes gauge\nliveness_livenodes{{node_id=\"{id}\"}} {live}\n"
        )
    }

    /// Since start (or the last reset): the total and longest time during
    /// which nodes were down in two or more zones at once, and the most
    /// zones down at once.
    pub fn availability(&self, now: Instant) -> Value {
        let st = lock(&self.state);
        let ongoing = st
            .unavailable_since
            .map(|s| now.duration_since(s))
            .unwrap_or_default();
        let nodes: Vec<Value> = st
            .nodes
            .iter()
            .map(|((_, ns, pod), n)| {
                json!({"id": n.id, "zone": n.zone, "pod": format!("{ns}/{pod}"), "up": n.up, "decommissioned": n.decommissioned})
            })
            .collect();
        json!({
            "unavailable_ms": (st.unavailable_total + ongoing).as_millis() as u64,
            "longest_unavailable_ms": st.longest_unavailable.max(ongoing).as_millis() as u64,
            "max_zones_unready": st.max_zones_unready,
            "zones_unready": st.zones_unready,
            "initialised": self.initialised(),
            "nodes": nodes,
        })
    }

    /// Start measuring again (nodes and IDs stay).
    pub fn reset_availability(&self) {
        let mut st = lock(&self.state);
        st.unavailable_since = None;
        st.unavailable_total = Duration::ZERO;
        st.longest_unavailable = Duration::ZERO;
        st.max_zones_unready = st.zones_unready.len();
    }
}

/// Observes every cluster every [`TICK`] until the runtime stops.
pub async fn run(crdb: Arc<CrdbSim>, clusters: Vec<Arc<ClusterShared>>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        crdb.tick(&clusters, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_pod(command: Value) -> Value {
        json!({"spec": {"containers": [{"image": "cockroachdb/cockroach:v25.2.0", "command": command}]}})
    }

    #[test]
    fn job_commands_are_recognised() {
        assert_eq!(
            job_command(&job_pod(json!([
                "/cockroach/cockroach",
                "init",
                "--certs-dir=/c",
                "--host=x"
            ]))),
            Some(Command::Init)
        );
        assert_eq!(
            job_command(&job_pod(json!([
                "/bin/bash",
                "-c",
                "/cockroach/cockroach node decommission 4 5 --certs-dir=/c --host=x"
            ]))),
            Some(Command::Decommission(vec![4, 5]))
        );
        assert_eq!(
            job_command(&job_pod(json!([
                "/cockroach/cockroach",
                "node",
                "status",
                "--decommission",
                "--format=tsv"
            ]))),
            Some(Command::Status { decommission: true })
        );
        assert_eq!(
            job_command(&job_pod(json!(["/cockroach/cockroach", "sql"]))),
            None
        );
        let busybox = json!({"spec": {"containers": [{"image": "busybox", "command": ["cockroach", "init"]}]}});
        assert_eq!(job_command(&busybox), None);
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for total in [0, 1, 7, 24, 100] {
            for n in 1..12 {
                let sum: u64 = (0..n).map(|r| share(total, r, n)).sum();
                assert_eq!(sum, total, "total {total} over {n}");
            }
        }
    }
}
