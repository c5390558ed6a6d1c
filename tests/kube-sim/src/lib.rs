//! kube-sim: a simulated federation of Kubernetes API servers on loopback.
//!
//! Each zone gets its own HTTPS API server on 127.0.0.1 (own CA, own bearer
//! token), its own object store and its own simulated controllers; one
//! kubeconfig names them all. The real product, kube-rs and kubectl talk to
//! it over real HTTP.
//!
//! ```text
//!  Federation::builder() ─ start() ─┐ background thread with its own tokio runtime
//!                                   ├─ per zone: server (HTTPS) ─┐
//!                                   │            controllers ─────┼─ ClusterShared { Store, faults, request log }
//!                                   ├─ control endpoint (HTTP) ───┘
//!                                   └─ DNS responder (UDP) for EKS LB hostnames
//!  Network::Real: network::RealNet ─ netns per cluster + core router, agent thread:
//!                                    pod IPs, dnsmasq per cluster (netdns), busybox pods (pods)
//! ```
//!
//! The binary (`kube-sim up`) wraps the same API; see docs/simulator.md.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod cli;
mod cluster;
mod commands;
mod config;
mod control;
mod controllers;
mod crdb;
mod dns;
mod error;
mod events;
mod fieldcheck;
mod flavors;
mod managed;
mod netdns;
mod network;
mod patch;
mod pods;
mod podsecurity;
mod proto;
mod resources;
mod selectors;
mod server;
mod store;
mod table;
mod tls;

pub use commands::main_with_args;
pub use config::{
    Activity, Allocatable, CloudRules, DEFAULT_CRDB_RECOVERY, DEFAULT_NAMESPACE_DELETE_DELAY,
    DEFAULT_TEST_TERMINATION_GRACE, Faults, Flavor, PodRules, PodSecurityLevel, RequestRecord,
};
pub use crdb::{HTTP_PORT as CRDB_HTTP_PORT, MIN_NODES as CRDB_MIN_NODES};
pub use dns::{LB_DOMAIN, lb_hostname, resolve_lb_hostname};
pub use error::{ApiError, StartError};
pub use flavors::{
    EKS_ADDON_MANAGER, K3S_COREFILE, STANDARD_COREFILE, USER_STUB_DOMAIN, USER_STUB_SERVER,
    user_server_block,
};
pub use network::{
    MAX_REAL_ZONES, NetRule, Network, NetworkError, cleanup as cleanup_real_networks,
    real_network_support,
};

use cluster::{ClusterShared, Timing};

/// Default delay before a LoadBalancer Service gets its address.
pub const DEFAULT_LB_DELAY: Duration = Duration::from_millis(300);
/// Default delay before a new pod is Running and Ready.
pub const DEFAULT_POD_READY_DELAY: Duration = Duration::from_millis(100);
/// Default time a Job's pod runs before the Job completes.
pub const DEFAULT_JOB_DURATION: Duration = Duration::from_millis(300);

/// Configures and starts a [`Federation`].
#[derive(Debug, Clone)]
pub struct FederationBuilder {
    zones: Vec<String>,
    flavor: Flavor,
    faults: Faults,
    lb_delay: Duration,
    pod_ready_delay: Duration,
    job_duration: Duration,
    seed_user_dns: bool,
    rules: CloudRules,
    pod_rules: PodRules,
    lb_dns_delay: Duration,
    net: network::NetSpec,
    kubeconfig: Option<PathBuf>,
    control_addr: SocketAddr,
    dns_addr: SocketAddr,
}

impl Default for FederationBuilder {
    fn default() -> Self {
        FederationBuilder {
            zones: Vec::new(),
            flavor: Flavor::Generic,
            faults: Faults::default(),
            lb_delay: DEFAULT_LB_DELAY,
            pod_ready_delay: DEFAULT_POD_READY_DELAY,
            job_duration: DEFAULT_JOB_DURATION,
            seed_user_dns: false,
            rules: CloudRules::default(),
            pod_rules: PodRules::default(),
            lb_dns_delay: Duration::ZERO,
            net: network::NetSpec::default(),
            kubeconfig: None,
            control_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            dns_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}

impl FederationBuilder {
    /// Zones, each `zone` or `zone=context` (the context defaults to the zone).
    pub fn zones<I, S>(mut self, zones: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Latency added to every API request of every cluster (a fault; see [`Faults::latency`]).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.faults.latency = latency;
        self
    }

    /// Probability of an injected error on every API request (see [`Faults::error_rate`]).
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.faults.error_rate = rate;
        self
    }

    /// Initial faults of every cluster (replaces `latency` and `error_rate` set before).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn namespace_delete_delay(mut self, delay: Duration) -> Self {
        self.faults.namespace_delete_delay = delay;
        self
    }

    pub fn lb_delay(mut self, delay: Duration) -> Self {
        self.lb_delay = delay;
        self
    }

    pub fn pod_ready_delay(mut self, delay: Duration) -> Self {
        self.pod_ready_delay = delay;
        self
    }

    pub fn job_duration(mut self, duration: Duration) -> Self {
        self.job_duration = duration;
        self
    }

    /// Seed user DNS customisations that the product must preserve
    /// (a stub domain `acme.internal` -> 10.99.0.10 in the flavour's own format).
    pub fn seed_user_dns(mut self, seed: bool) -> Self {
        self.seed_user_dns = seed;
        self
    }

    /// What the simulated clouds refuse (replaces the rules set before).
    pub fn rules(mut self, rules: CloudRules) -> Self {
        self.rules = rules;
        self
    }

    /// The flavour's cloud load-balancer controller refuses what the real
    /// one refuses (see [`CloudRules::lb_protocols`]).
    pub fn cloud_lb_rules(mut self, on: bool) -> Self {
        self.rules.lb_protocols = on;
        self
    }

    /// eks: model the AWS Load Balancer Controller (see [`CloudRules::eks_lb_controller`]).
    pub fn eks_lb_controller(mut self, on: bool) -> Self {
        self.rules.eks_lb_controller = on;
        self
    }

    /// The cluster-wide Pod Security `enforce` level (default privileged).
    pub fn pod_security(mut self, level: PodSecurityLevel) -> Self {
        self.rules.pod_security = level;
        self
    }

    /// Pods with this image never pull (`ErrImagePull`, `ImagePullBackOff`); repeatable.
    pub fn bad_image(mut self, image: impl Into<String>) -> Self {
        self.pod_rules.bad_images.push(image.into());
        self
    }

    /// Pods with this image crash again and again (`CrashLoopBackOff`); repeatable.
    pub fn crash_image(mut self, image: impl Into<String>) -> Self {
        self.pod_rules.crash_images.push(image.into());
        self
    }

    /// What each cluster's node offers pods; a pod requesting more is
    /// `Unschedulable`. Default [`Allocatable::default`].
    pub fn node_allocatable(mut self, allocatable: Allocatable) -> Self {
        self.pod_rules.node_allocatable = allocatable;
        self
    }

    /// Pod termination takes at most this long (None: the full grace
    /// period). Default [`DEFAULT_TEST_TERMINATION_GRACE`].
    pub fn max_termination_grace(mut self, max: Option<Duration>) -> Self {
        self.pod_rules.max_termination_grace = max;
        self
    }

    /// How long the simulated CockroachDB reports under-replicated ranges
    /// after its last unready node came back (default [`DEFAULT_CRDB_RECOVERY`]).
    pub fn crdb_recovery(mut self, recovery: Duration) -> Self {
        self.pod_rules.crdb_recovery = recovery;
        self
    }

    /// Every pod rule at once (replaces those set before).
    pub fn pod_rules(mut self, rules: PodRules) -> Self {
        self.pod_rules = rules;
        self
    }

    /// LB host names answer NXDOMAIN for this long after they are published.
    pub fn lb_dns_delay(mut self, delay: Duration) -> Self {
        self.lb_dns_delay = delay;
        self
    }

    /// Write the kubeconfig here instead of a temporary directory (kept on drop).
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Address of the control endpoint (default 127.0.0.1 on an ephemeral port).
    pub fn control_addr(mut self, addr: SocketAddr) -> Self {
        self.control_addr = addr;
        self
    }

    /// Address of the DNS responder for EKS LB hostnames (default 127.0.0.1, ephemeral port).
    pub fn dns_addr(mut self, addr: SocketAddr) -> Self {
        self.dns_addr = addr;
        self
    }

    /// Start every cluster and return once all of them serve.
    pub fn start(self) -> Result<Federation, StartError> {
        Federation::start(self)
    }
}

fn parse_zone(spec: &str) -> Result<(String, String), StartError> {
    let (zone, context) = match spec.split_once('=') {
        Some((z, c)) => (z.trim(), c.trim()),
        None => (spec.trim(), spec.trim()),
    };
    if zone.is_empty() || context.is_empty() {
        return Err(StartError::InvalidZone(spec.to_string()));
    }
    Ok((zone.to_string(), context.to_string()))
}

struct Started {
    clusters: Vec<Arc<ClusterShared>>,
    control_addr: SocketAddr,
    dns_addr: SocketAddr,
}

/// A running federation of simulated clusters. Dropping it stops every
/// server (ports closed) and removes its temporary files.
pub struct Federation {
    clusters: Vec<Arc<ClusterShared>>,
    crdb: Arc<crdb::CrdbSim>,
    kubeconfig: PathBuf,
    control_addr: SocketAddr,
    dns_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tempdir: Option<tempfile::TempDir>,
    /// The real network (dropped after the servers stop).
    net: Option<network::RealNet>,
}

impl Federation {
    pub fn builder() -> FederationBuilder {
        FederationBuilder::default()
    }

    fn start(b: FederationBuilder) -> Result<Federation, StartError> {
        if b.zones.is_empty() {
            return Err(StartError::NoZones);
        }
        let mut specs = Vec::new();
        for z in &b.zones {
            let (zone, context) = parse_zone(z)?;
            if specs
                .iter()
                .any(|(oz, oc): &(String, String)| *oz == zone || *oc == context)
            {
                return Err(StartError::DuplicateZone(zone));
            }
            specs.push((zone, context));
        }
        network::preflight(&b.net, specs.len())?;
        let mut tls = Vec::new();
        for (zone, _) in &specs {
            tls.push(tls::cluster_tls(zone)?);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-sim")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Started, StartError>>();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let timing = Timing {
            lb_delay: b.lb_delay,
            pod_ready_delay: b.pod_ready_delay,
            job_duration: b.job_duration,
        };
        let (flavor, faults, seed_user_dns) = (b.flavor, b.faults.clone(), b.seed_user_dns);
        let rules = b.rules;
        let pod_rules = b.pod_rules.clone();
        let crdb = Arc::new(crdb::CrdbSim::new(pod_rules.crdb_recovery));
        let crdb_handle = crdb.clone();
        let lb_names = Arc::new(dns::LbNames::new(b.lb_dns_delay));
        let (control_addr, dns_addr) = (b.control_addr, b.dns_addr);
        let thread = std::thread::Builder::new()
            .name("kube-sim".into())
            .spawn(move || {
                let bound = runtime.block_on(async {
                    let mut listeners = Vec::new();
                    for (zone, _) in &specs {
                        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                            .await
                            .map_err(|source| StartError::Bind {
                                what: format!("127.0.0.1 for zone {zone}"),
                                source,
                            })?;
                        listeners.push(l);
                    }
                    let control =
                        tokio::net::TcpListener::bind(control_addr)
                            .await
                            .map_err(|source| StartError::Bind {
                                what: format!("{control_addr} (control endpoint)"),
                                source,
                            })?;
                    let dns = tokio::net::UdpSocket::bind(dns_addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            what: format!("{dns_addr} (DNS responder)"),
                            source,
                        })?;
                    Ok::<_, StartError>((listeners, control, dns))
                });
                let (listeners, control, dns) = match bound {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let control_local = control.local_addr().unwrap_or(control_addr);
                let dns_local = dns.local_addr().unwrap_or(dns_addr);
                let mut clusters = Vec::new();
                for (i, (((zone, context), l), t)) in
                    specs.into_iter().zip(listeners).zip(tls).enumerate()
                {
                    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                    let shared = Arc::new(ClusterShared::new(
                        i,
                        zone,
                        context,
                        flavor,
                        tls::random_token(),
                        t.ca_pem,
                        port,
                        faults.clone(),
                        timing,
                        rules,
                        lb_names.clone(),
                        crdb.clone(),
                        pod_rules.clone(),
                    ));
                    {
                        let mut store = shared.store();
                        store.admission.pod_security = rules.pod_security;
                        if flavor == Flavor::Eks && rules.eks_lb_controller {
                            store.admission.lb_class = Some(controllers::AWS_LBC_CLASS);
                        }
                    }
                    flavors::seed(
                        &mut shared.store(),
                        flavor,
                        &shared.zone,
                        &shared.region,
                        seed_user_dns,
                        pod_rules.node_allocatable,
                    );
                    controllers::reconcile(
                        &shared,
                        &mut controllers::CtlState::default(),
                        Instant::now(),
                    );
                    let tls = server::Tls {
                        http2: tokio_rustls::TlsAcceptor::from(t.server_config),
                        http1: tokio_rustls::TlsAcceptor::from(t.server_config_http1),
                    };
                    runtime.spawn(server::run(shared.clone(), tls, l));
                    runtime.spawn(controllers::run(shared.clone()));
                    clusters.push(shared);
                }
                runtime.spawn(crdb::run(crdb.clone(), clusters.clone()));
                runtime.spawn(control::run(clusters.clone(), crdb.clone(), control));
                runtime.spawn(dns::serve(dns, lb_names.clone()));
                let _ = ready_tx.send(Ok(Started {
                    clusters,
                    control_addr: control_local,
                    dns_addr: dns_local,
                }));
                let _ = runtime.block_on(shutdown_rx);
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(StartError::Runtime)?;
        let started = match ready_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StartError::Runtime(std::io::Error::other(
                    "the simulator thread stopped before it was ready",
                )));
            }
        };
        let mut fed = Federation {
            clusters: started.clusters,
            crdb: crdb_handle,
            kubeconfig: PathBuf::new(),
            control_addr: started.control_addr,
            dns_addr: started.dns_addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            _tempdir: None,
            net: None,
        };
        let path = match b.kubeconfig {
            Some(p) => p,
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("kube-sim-")
                    .tempdir()
                    .map_err(|source| StartError::Kubeconfig {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let p = dir.path().join("kubeconfig");
                fed._tempdir = Some(dir);
                p
            }
        };
        let entries: Vec<tls::KubeconfigEntry> = fed
            .clusters
            .iter()
            .map(|c| tls::KubeconfigEntry {
                context: &c.context,
                server: format!("https://127.0.0.1:{}", c.port),
                ca_pem: &c.ca_pem,
                token: &c.token,
            })
            .collect();
        tls::write_kubeconfig(&path, &entries)?;
        fed.kubeconfig = path;
        if b.net.network == Network::Real {
            fed.net = Some(network::RealNet::start(&b.net, &fed.clusters)?);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fed.clusters.iter().all(|c| c.is_listening()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(fed)
    }

    /// The kubeconfig with one cluster, user and context per zone.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster of a zone (or context). Panics if there is none: use
    /// [`Federation::try_cluster`] to check.
    pub fn cluster(&self, zone: &str) -> Cluster {
        self.try_cluster(zone).unwrap_or_else(|| {
            let zones: Vec<&str> = self.clusters.iter().map(|c| c.zone.as_str()).collect();
            panic!("kube-sim has no cluster for zone {zone:?} (zones: {zones:?})")
        })
    }

    pub fn try_cluster(&self, zone: &str) -> Option<Cluster> {
        self.clusters
            .iter()
            .find(|c| c.zone == zone || c.context == zone)
            .map(|c| Cluster { shared: c.clone() })
    }

    /// Every cluster, in the order the zones were given.
    pub fn clusters(&self) -> Vec<Cluster> {
        self.clusters
            .iter()
            .map(|c| Cluster { shared: c.clone() })
            .collect()
    }

    /// Base URL of the control endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Address of the UDP DNS responder that resolves EKS LB hostnames.
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// The simulated CockroachDB's availability record since start (or the
    /// last [`Federation::reset_availability`]): `unavailable_ms` (total
    /// time with unready CockroachDB nodes in two or more zones at once),
    /// `longest_unavailable_ms`, `max_zones_unready`, `zones_unready` (now),
    /// `initialised` and `nodes`. The same as `GET /availability`.
    pub fn availability(&self) -> Value {
        self.crdb.availability(Instant::now())
    }

    /// Start the availability record again (nodes and their IDs stay).
    pub fn reset_availability(&self) {
        self.crdb.reset_availability()
    }

    /// Every cluster's activity (controller and CockroachDB actions) in the
    /// order it happened, with the zone.
    pub fn activity(&self) -> Vec<(String, Activity)> {
        let mut all: Vec<(String, Activity)> = self
            .clusters
            .iter()
            .flat_map(|c| c.activity().into_iter().map(|a| (c.zone.clone(), a)))
            .collect();
        all.sort_by_key(|(_, a)| a.seq);
        all
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A handle on one simulated cluster; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<ClusterShared>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("zone", &self.shared.zone)
            .field("port", &self.shared.port)
            .finish()
    }
}

fn kind_index(api_version: &str, kind: &str) -> Option<usize> {
    resources::by_kind(api_version, kind)
}

impl Cluster {
    pub(crate) fn from_shared(shared: Arc<ClusterShared>) -> Self {
        Cluster { shared }
    }

    pub fn zone(&self) -> &str {
        &self.shared.zone
    }

    pub fn context(&self) -> &str {
        &self.shared.context
    }

    pub fn region(&self) -> &str {
        &self.shared.region
    }

    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// Position of the zone in the federation (decides its address ranges).
    pub fn index(&self) -> usize {
        self.shared.index
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.shared.port)
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// PEM of this cluster's CA.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    /// What the simulated control plane and CockroachDB did in this
    /// cluster (pods terminating and deleted, nodes decommissioned), oldest first.
    pub fn activity(&self) -> Vec<Activity> {
        self.shared.activity()
    }

    /// The CockroachDB node ID of a pod, once it was Ready after init.
    pub fn crdb_node_id(&self, namespace: &str, pod: &str) -> Option<u64> {
        self.shared.crdb.node_id(self.shared.index, namespace, pod)
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.clear_requests()
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replace the faults. Returns once the listener state matches `down`.
    pub fn set_faults(&self, faults: Faults) {
        let down = faults.down;
        self.shared.faults.send_replace(faults);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.is_listening() == down && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn set_lb_delay(&self, delay: Duration) {
        self.shared.set_timing(|t| t.lb_delay = delay);
    }

    pub fn set_pod_ready_delay(&self, delay: Duration) {
        self.shared.set_timing(|t| t.pod_ready_delay = delay);
    }

    /// One object by `apiVersion`, `kind`, namespace (None for cluster-scoped) and name.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let res = kind_index(api_version, kind)?;
        self.shared
            .store()
            .get(res, namespace.unwrap_or(""), name)
            .map(|v| (*v).clone())
    }

    /// Objects of a kind in one namespace, or in all namespaces with None.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(res) = kind_index(api_version, kind) else {
            return Vec::new();
        };
        self.shared
            .store()
            .list(res, namespace)
            .into_iter()
            .map(|v| (*v).clone())
            .collect()
    }

    /// Create or update an object directly (test setup), as field manager `manager`.
    pub fn put(&self, obj: Value, manager: &str) -> Result<Value, ApiError> {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let res = kind_index(av, kind)
            .ok_or_else(|| ApiError::bad_request(format!("kube-sim does not serve {av} {kind}")))?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(if resources::def(res).namespaced {
                "default"
            } else {
                ""
            })
            .to_string();
        self.shared
            .store()
            .put_as(res, &ns, obj, manager)
            .map(|w| w.obj)
    }

    /// Delete an object directly (as a background-propagation API delete would).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let res = kind_index(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("kube-sim does not serve {api_version} {kind}"))
        })?;
        self.shared
            .store()
            .delete(res, namespace.unwrap_or(""), name, None, false)
            .map(|w| w.obj)
    }

    /// How many template changes (rollouts) the Deployment controller has seen.
    pub fn rollouts(&self, namespace: &str, name: &str) -> u32 {
        self.shared.rollouts(namespace, name)
    }

    /// The pod CIDR, `10.(100+index).0.0/16`.
    pub fn pod_cidr(&self) -> String {
        self.shared.store().net.pod_cidr()
    }

    /// The Service CIDR, `10.(200+index).0.0/16`.
    pub fn service_cidr(&self) -> String {
        self.shared.store().net.service_cidr()
    }

    /// The clusterIP of `kube-system/kube-dns`, `10.(200+index).0.10`.
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        self.shared.store().net.dns_service_ip()
    }

    /// The cluster's current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().current_rv()
    }

    /// The pod's log as `GET .../pods/{name}/log` serves it now (in the real
    /// network mode, what its process printed so far), if it has one.
    pub fn pod_log(&self, namespace: &str, name: &str) -> Option<String> {
        self.shared.pod_log(namespace, name)
    }

    /// What `GET .../pods/{name}/log` returns for this pod.
    pub fn set_pod_log(&self, namespace: &str, name: &str, text: impl Into<String>) {
        self.shared.set_pod_log(namespace, name, text.into())
    }

    /// eks: an add-on update of CoreDNS with `resolveConflicts: OVERWRITE`:
    /// field manager `eks` force-applies the default Corefile, undoing any
    /// edit of it. Other flavours have no such add-on.
    pub fn addon_update(&self) -> Result<(), ApiError> {
        if self.shared.flavor != Flavor::Eks {
            return Err(ApiError::bad_request(format!(
                "zone {} is a {} cluster: only eks clusters have the CoreDNS add-on",
                self.shared.zone, self.shared.flavor
            )));
        }
        flavors::eks_addon_apply(&mut self.shared.store()).map(|_| ())
    }

    /// Restart the cluster's control plane as its distribution would. k3s
    /// writes its bundled `coredns` ConfigMap again (edits are lost;
    /// `coredns-custom` stays). Returns the objects rewritten.
    pub fn restart(&self) -> Result<Vec<String>, ApiError> {
        if self.shared.flavor != Flavor::K3s {
            return Ok(Vec::new());
        }
        flavors::k3s_restart(&mut self.shared.store(), &self.shared.zone)?;
        Ok(vec!["kube-system/coredns".to_string()])
    }

    /// Whether the API server accepts connections (false while `down`).
    pub fn is_listening(&self) -> bool {
        self.shared.is_listening()
    }

    /// How many TCP connections the API server has accepted since the
    /// start (whatever became of them: failed TLS handshakes count too).
    /// Each request's [`RequestRecord::connection`] says which one it used.
    pub fn connections(&self) -> u64 {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}
