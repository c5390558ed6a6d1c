//! The state of one simulated cluster shared by its API server, its
//! controllers, the control endpoint and the Rust API. Owns locking; must
//! not hold a lock across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Activity, CloudRules, Faults, Flavor, PodRules, RequestRecord};
use crate::crdb::CrdbSim;
use crate::dns::LbNames;
use crate::store::Store;

const MAX_REQUESTS: usize = 100_000;

/// Timing of the simulated controllers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lb_delay: Duration,
    pub pod_ready_delay: Duration,
    pub job_duration: Duration,
}

pub struct ClusterShared {
    pub index: usize,
    pub zone: String,
    pub context: String,
    pub region: String,
    pub flavor: Flavor,
    pub token: String,
    pub ca_pem: String,
    pub port: u16,
    pub store: Mutex<Store>,
    pub faults: watch::Sender<Faults>,
    pub timing: Mutex<Timing>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub rollouts: Mutex<BTreeMap<(String, String), u32>>,
    pub pod_logs: Mutex<HashMap<(String, String), String>>,
    pub listening: AtomicBool,
    /// TCP connections accepted on the API port so far (also the number of
    /// the latest one, see [`RequestRecord::connection`]).
    pub connections: AtomicU64,
    /// Real network mode: busybox pods are run by [`crate::pods::Kubelet`],
    /// not by the simulated controllers.
    pub runs_pods: AtomicBool,
    /// What the simulated cloud refuses (fixed at start).
    pub rules: CloudRules,
    /// Published LB host names, shared with the federation's DNS responder.
    pub lb_names: Arc<LbNames>,
    /// The federation's simulated CockroachDB (shared by every cluster).
    pub crdb: Arc<CrdbSim>,
    /// How pods behave (bad and crashing images, termination).
    pub pod_rules: PodRules,
    /// What the controllers and CockroachDB did, oldest first.
    pub activity: Mutex<Vec<Activity>>,
    rng: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The region of a zone: `us-east1-b` -> `us-east1`, `us-east-1a` -> `us-east-1`.
pub fn region_of(zone: &str) -> String {
    if let Some((head, tail)) = zone.rsplit_once('-') {
        if tail.len() == 1 && tail.chars().all(|c| c.is_ascii_alphabetic()) {
            return head.to_string();
        }
        if tail.len() > 1
            && tail.ends_with(|c: char| c.is_ascii_alphabetic())
            && tail[..tail.len() - 1].chars().all(|c| c.is_ascii_digit())
        {
            return zone[..zone.len() - 1].to_string();
        }
    }
    zone.to_string()
}

impl ClusterShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        zone: String,
        context: String,
        flavor: Flavor,
        token: String,
        ca_pem: String,
        port: u16,
        faults: Faults,
        timing: Timing,
        rules: CloudRules,
        lb_names: Arc<LbNames>,
        crdb: Arc<CrdbSim>,
        pod_rules: PodRules,
    ) -> Self {
        let seed = crate::store::fnv(token.as_bytes()) | 1;
        ClusterShared {
            index,
            region: region_of(&zone),
            zone,
            context,
            flavor,
            token,
            ca_pem,
            port,
            store: Mutex::new(Store::new(index as u8)),
            faults: watch::Sender::new(faults),
            timing: Mutex::new(timing),
            requests: Mutex::new(Vec::new()),
            rollouts: Mutex::new(BTreeMap::new()),
            pod_logs: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            runs_pods: AtomicBool::new(false),
            rules,
            lb_names,
            crdb,
            pod_rules,
            activity: Mutex::new(Vec::new()),
            rng: Mutex::new(seed),
        }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    pub fn timing(&self) -> Timing {
        *lock(&self.timing)
    }

    pub fn set_timing(&self, f: impl FnOnce(&mut Timing)) {
        f(&mut lock(&self.timing));
    }

    pub fn record(&self, r: RequestRecord) {
        let mut log = lock(&self.requests);
        if log.len() >= MAX_REQUESTS {
            log.remove(0);
        }
        log.push(r);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    /// Record something the simulated control plane or CockroachDB did.
    pub fn log_activity(&self, what: &str, object: String) {
        let (seq, at_ms) = self.crdb.stamp();
        let mut log = lock(&self.activity);
        if log.len() >= MAX_REQUESTS {
            log.remove(0);
        }
        log.push(Activity {
            seq,
            at_ms,
            what: what.to_string(),
            object,
        });
    }

    pub fn activity(&self) -> Vec<Activity> {
        lock(&self.activity).clone()
    }

    pub fn add_rollout(&self, ns: &str, name: &str) {
        *lock(&self.rollouts)
            .entry((ns.to_string(), name.to_string()))
            .or_insert(0) += 1;
    }

    pub fn rollouts(&self, ns: &str, name: &str) -> u32 {
        lock(&self.rollouts)
            .get(&(ns.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn all_rollouts(&self) -> BTreeMap<String, u32> {
        lock(&self.rollouts)
            .iter()
            .map(|((ns, n), c)| (format!("{ns}/{n}"), *c))
            .collect()
    }

    pub fn pod_log(&self, ns: &str, name: &str) -> Option<String> {
        lock(&self.pod_logs)
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn set_pod_log(&self, ns: &str, name: &str, text: String) {
        lock(&self.pod_logs).insert((ns.to_string(), name.to_string()), text);
    }

    /// A number in [0, 1) from a per-cluster xorshift generator (error injection).
    pub fn roll(&self) -> f64 {
        let mut s = lock(&self.rng);
        let mut x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert_eq!(region_of("us-east1-b"), "us-east1");
        assert_eq!(region_of("us-east-1a"), "us-east-1");
        assert_eq!(region_of("eastus-1"), "eastus-1");
        assert_eq!(region_of("zone"), "zone");
    }
}
