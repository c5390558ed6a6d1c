//! The real network mode: Linux network namespaces, veth pairs, iptables
//! rules, dnsmasq and busybox processes, so that probe pods send real
//! packets and resolve real DNS.
//!
//! ```text
//!              ksim-<pid>-<n>-core   (ip_forward=1; cuts: iptables FORWARD)
//!             c0 169.254.0.1   c1 169.254.1.1   c2 169.254.2.1
//!               │ veth            │ veth            │ veth
//!  ksim-<pid>-<n>-0        ksim-<pid>-<n>-1        ksim-<pid>-<n>-2
//!   eth0 169.254.0.2        eth0 169.254.1.2        ...
//!   lo: node 10.100.0.2, kube-dns 10.200.0.10,
//!       pod IPs 10.100.x.y, LB IPs 10.150.0.z
//!   dnsmasq :53, busybox pods (INPUT: --block-port rules)
//! ```
//!
//! The core routes each cluster's pod range (`10.(100+i).0.0/16`) and
//! load-balancer range (`10.(150+i).0.0/16`) to its veth. Links are created
//! directly between namespaces; nothing is added to the host namespace, and
//! everything created here (namespaces, `/etc/netns/<name>`, the state
//! directory, processes) is removed when the [`RealNet`] is dropped, or by
//! [`cleanup`] after a crash. This module owns the topology and the agent
//! thread; what runs in it is [`crate::pods`] and [`crate::netdns`].

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::ClusterShared;
use crate::netdns::{self, Dnsmasq};
use crate::pods::Kubelet;
use crate::resources::idx;
use crate::store::uid_of;
use crate::{Federation, FederationBuilder};

/// Namespaces, directories and processes of the real network mode are named
/// `ksim-<pid>-<n>...`.
pub const PREFIX: &str = "ksim-";
/// How often the agent syncs addresses, DNS and pod processes.
const AGENT_TICK: Duration = Duration::from_millis(50);
/// Bound on every `ip` / `iptables` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The pod, load-balancer and Service ranges of zone `i` are
/// `10.(100+i)`, `10.(150+i)` and `10.(200+i)`: at most 50 zones.
pub const MAX_REAL_ZONES: usize = 50;

static FEDERATIONS: AtomicUsize = AtomicUsize::new(0);

/// Which network a federation's pods live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Pods never run: the controllers only report them Running and Ready.
    #[default]
    Simulated,
    /// busybox pods run as processes in per-cluster network namespaces,
    /// each cluster's DNS is a dnsmasq (root, `ip`, `busybox`, `dnsmasq`).
    Real,
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "simulated" => Ok(Network::Simulated),
            "real" => Ok(Network::Real),
            other => Err(format!(
                "unknown network {other:?}: expected simulated or real"
            )),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Simulated => "simulated",
            Network::Real => "real",
        })
    }
}

/// A firewall rule of the real network, by zone (or context) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetRule {
    /// No packet passes between the two zones, in either direction.
    Cut(String, String),
    /// Connections from the first zone to the second are dropped (new
    /// connections only: replies to connections the second zone opens pass,
    /// as with a stateful firewall).
    CutOneway(String, String),
    /// TCP to the zone's pod range on this port is dropped, from every
    /// cluster including the zone itself.
    BlockPort(String, u16),
}

impl NetRule {
    /// `A:B` for [`NetRule::Cut`].
    pub fn parse_cut(s: &str) -> Result<(String, String), String> {
        match s.split_once(':') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                Ok((a.trim().to_string(), b.trim().to_string()))
            }
            _ => Err(format!("expected ZONE_A:ZONE_B, got {s:?}")),
        }
    }

    /// `ZONE:PORT` for [`NetRule::BlockPort`].
    pub fn parse_block(s: &str) -> Result<(String, u16), String> {
        let (zone, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("expected ZONE:PORT, got {s:?}"))?;
        let port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("expected ZONE:PORT with a port in 1..=65535, got {s:?}"))?;
        if zone.trim().is_empty() {
            return Err(format!("expected ZONE:PORT, got {s:?}"));
        }
        Ok((zone.trim().to_string(), port))
    }
}

/// The network settings of a [`FederationBuilder`].
#[derive(Debug, Clone, Default)]
pub struct NetSpec {
    pub network: Network,
    pub rules: Vec<NetRule>,
    /// Route the load-balancer ranges from the host into the federation.
    pub host_lb_routes: bool,
}

/// Why the real network could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "the real network needs root (network namespaces, veth links, iptables); run as root or use the simulated network"
    )]
    NotRoot,
    #[error(
        "the real network needs `{tool}`, which is not on PATH (Debian: apt-get install {package})"
    )]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("the real network supports at most {MAX_REAL_ZONES} zones, got {0}")]
    TooManyZones(usize),
    #[error("zone {0:?} in a network rule is not one of the federation's zones")]
    UnknownZone(String),
    #[error("a cut needs two different zones, got {0:?} twice")]
    SameZone(String),
    #[error(
        "the federation runs the simulated network: cuts, port blocks and host LB routes need Network::Real"
    )]
    NotReal,
    #[error(
        "the host already routes addresses in {cidr} ({existing}); host LB routes would take them over: remove that route or run without host LB routes"
    )]
    HostRouteTaken { cidr: String, existing: String },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}` did not finish within {COMMAND_TIMEOUT:?}")]
    Timeout { command: String },
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dnsmasq of zone {zone} did not start ({log})")]
    Dnsmasq { zone: String, log: String },
}

impl FederationBuilder {
    /// [`Network::Simulated`] (default) or [`Network::Real`].
    pub fn network(mut self, network: Network) -> Self {
        self.net.network = network;
        self
    }

    /// Real network: no packet passes between zones `a` and `b`.
    pub fn cut(mut self, a: impl Into<String>, b: impl Into<String>) -> Self {
        self.net.rules.push(NetRule::Cut(a.into(), b.into()));
        self
    }

    /// Real network: connections from zone `from` to zone `to` are dropped.
    pub fn cut_oneway(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.net
            .rules
            .push(NetRule::CutOneway(from.into(), to.into()));
        self
    }

    /// Real network: TCP to the pods of `zone` on `port` is dropped.
    pub fn block_port(mut self, zone: impl Into<String>, port: u16) -> Self {
        self.net.rules.push(NetRule::BlockPort(zone.into(), port));
        self
    }

    /// Real network: the host reaches the load-balancer ranges
    /// `10.(150+k).0.0/16` of this federation (and nothing else) through a
    /// veth link into its core namespace, removed with the federation.
    pub fn host_lb_routes(mut self, on: bool) -> Self {
        self.net.host_lb_routes = on;
        self
    }
}

/// A rule with zones resolved to cluster indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    Cut(usize, usize),
    CutOneway(usize, usize),
    BlockPort(usize, u16),
}

/// The programs the real network runs.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    ip: PathBuf,
    busybox: PathBuf,
    dnsmasq: PathBuf,
    iptables: Option<PathBuf>,
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    fn find() -> Result<Tools, NetworkError> {
        let need = |tool: &'static str, package: &'static str| {
            find_tool(tool).ok_or(NetworkError::MissingTool { tool, package })
        };
        Ok(Tools {
            ip: need("ip", "iproute2")?,
            busybox: need("busybox", "busybox")?,
            dnsmasq: need("dnsmasq", "dnsmasq-base")?,
            iptables: find_tool("iptables"),
        })
    }

    fn iptables(&self) -> Result<&Path, NetworkError> {
        self.iptables.as_deref().ok_or(NetworkError::MissingTool {
            tool: "iptables",
            package: "iptables",
        })
    }
}

/// Whether this machine can run the real network: root, and `ip`,
/// `busybox`, `dnsmasq` and `iptables` installed. Tests use it to skip
/// (outside CI) with the reason.
pub fn real_network_support() -> Result<(), NetworkError> {
    if !is_root() {
        return Err(NetworkError::NotRoot);
    }
    Tools::find()?.iptables()?;
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Send a signal to one process.
pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a positive pid only signals that process.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Send a signal to a process group (the group of a child started with
/// `process_group(0)` has the child's pid).
pub(crate) fn signal_group(pgid: u32, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-(pgid as libc::pid_t), sig);
        }
    }
}

/// Kill a child's process group and reap the child (bounded).
pub(crate) fn kill_group(child: &mut Child) {
    signal_group(child.id(), libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Run a command to completion within [`COMMAND_TIMEOUT`]; its stdout.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, NetworkError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Ok(Ok(out)) => Err(NetworkError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Ok(Err(source)) => Err(NetworkError::Spawn { command, source }),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            Err(NetworkError::Timeout { command })
        }
    }
}

/// `ip -n NS -batch -` with these commands (one per line).
fn ip_batch(tools: &Tools, netns: &str, lines: &[String]) -> Result<(), NetworkError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    run(&tools.ip, &["-n", netns, "-batch", "-"], Some(&text)).map(|_| ())
}

fn pod_cidr(i: usize) -> String {
    format!("10.{}.0.0/16", 100 + i)
}

/// The host end of the host link: `kh<pid>-<n>` for `ksim-<pid>-<n>`
/// (interface names have at most 15 bytes).
fn host_if(prefix: &str) -> String {
    format!("kh{}", prefix.strip_prefix(PREFIX).unwrap_or(prefix))
}

/// The host link: host end `HOST_IP`, core end `CORE_HOST_IP` on `CORE_HOST_IF`
/// (outside every cluster's `169.254.<k>.0/30`, k < [`MAX_REAL_ZONES`]).
const HOST_IP: &str = "169.254.255.1";
const CORE_HOST_IP: &str = "169.254.255.2";
const CORE_HOST_IF: &str = "host";

fn lb_cidr(i: usize) -> String {
    format!("10.{}.0.0/16", 150 + i)
}

fn in_cluster_ranges(i: usize, ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 10 && (o[1] as usize == 100 + i || o[1] as usize == 150 + i)
}

/// Interface of cluster `i` in the core namespace.
fn core_if(i: usize) -> String {
    format!("c{i}")
}

fn etc_netns(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name)
}

/// The pid in a `ksim-<pid>-...` name.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// What the agent reads of a cluster's store in one tick.
struct Snapshot {
    pods: Vec<Arc<Value>>,
    services: Vec<Arc<Value>>,
    kube_system_configmaps: Vec<Arc<Value>>,
}

/// Check, before anything starts, that the spec can be run here: rules only
/// with the real network, which needs root, the tools and at most
/// [`MAX_REAL_ZONES`] zones. The tools, for the real network.
pub(crate) fn preflight(spec: &NetSpec, zones: usize) -> Result<Option<Tools>, NetworkError> {
    if spec.network != Network::Real {
        return if spec.rules.is_empty() && !spec.host_lb_routes {
            Ok(None)
        } else {
            Err(NetworkError::NotReal)
        };
    }
    if !is_root() {
        return Err(NetworkError::NotRoot);
    }
    let tools = Tools::find()?;
    if zones > MAX_REAL_ZONES {
        return Err(NetworkError::TooManyZones(zones));
    }
    if !spec.rules.is_empty() {
        tools.iptables()?;
    }
    Ok(Some(tools))
}

/// One cluster's part of the agent.
struct ClusterAgent {
    shared: Arc<ClusterShared>,
    index: usize,
    netns: String,
    fixed: BTreeSet<Ipv4Addr>,
    addrs: BTreeSet<Ipv4Addr>,
    dns: Dnsmasq,
    kubelet: Kubelet,
    last_error: Option<String>,
}

impl ClusterAgent {
    fn snapshot(&self) -> Snapshot {
        let store = self.shared.store();
        Snapshot {
            pods: store.list(idx::POD, None),
            services: store.list(idx::SERVICE, None),
            kube_system_configmaps: store.list(idx::CONFIGMAP, Some("kube-system")),
        }
    }

    /// The hosts file and servers file of a snapshot.
    fn dns_config(&self, snap: &Snapshot) -> (String, String) {
        (
            netdns::hosts(&snap.services, &snap.pods),
            netdns::servers_file(&netdns::forwards(
                self.shared.flavor,
                &snap.kube_system_configmaps,
            )),
        )
    }

    fn tick(&mut self, tools: &Tools) {
        let snap = self.snapshot();
        let starts = self.kubelet.plan(&self.shared, &snap.pods);
        let mut want: BTreeSet<Ipv4Addr> = starts.iter().map(|s| s.ip).collect();
        for p in &snap.pods {
            if let Some(ip) = p.pointer("/status/podIP").and_then(Value::as_str) {
                want.extend(ip.parse::<Ipv4Addr>().ok());
            }
        }
        for s in &snap.services {
            for ing in s
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ip = match (ing.get("ip"), ing.get("hostname")) {
                    (Some(ip), _) => ip.as_str().and_then(|s| s.parse().ok()),
                    (None, Some(h)) => h.as_str().and_then(crate::dns::resolve_lb_hostname),
                    _ => None,
                };
                want.extend(ip);
            }
        }
        want.retain(|ip| in_cluster_ranges(self.index, *ip) && !self.fixed.contains(ip));
        let mut result = self.sync_addrs(tools, want);
        // The DNS records of the pods about to start go in first, so that a
        // pod reported Running can already be resolved.
        let pods = snap
            .pods
            .iter()
            .map(|p| match starts.iter().find(|s| s.uid() == uid_of(p)) {
                Some(s) => Arc::new(s.running_view()),
                None => p.clone(),
            })
            .collect();
        let (hosts, servers) = self.dns_config(&Snapshot { pods, ..snap });
        result = result.and(self.dns.update(hosts, servers));
        self.kubelet.start(&self.shared, starts);
        self.kubelet.poll(&self.shared);
        let err = result.err().map(|e| e.to_string());
        if err.is_some() && err != self.last_error {
            eprintln!(
                "kube-sim: [{}] real network: {}",
                self.shared.zone,
                err.as_deref().unwrap_or_default()
            );
        }
        self.last_error = err;
    }

    fn sync_addrs(&mut self, tools: &Tools, want: BTreeSet<Ipv4Addr>) -> Result<(), NetworkError> {
        if want == self.addrs {
            return Ok(());
        }
        let mut lines = Vec::new();
        for ip in want.difference(&self.addrs) {
            lines.push(format!("address add {ip}/32 dev lo"));
        }
        for ip in self.addrs.difference(&want) {
            lines.push(format!("address del {ip}/32 dev lo"));
        }
        self.addrs = want;
        let mut text = lines.join("\n");
        text.push('\n');
        run(
            &tools.ip,
            &["-n", &self.netns, "-force", "-batch", "-"],
            Some(&text),
        )
        .map(|_| ())
    }
}

/// The real network of one federation. Dropping it stops every process and
/// removes every namespace, link and file it created.
pub struct RealNet {
    prefix: String,
    dir: PathBuf,
    tools: Tools,
    /// Zone and context of each cluster, by index.
    zones: Vec<(String, String)>,
    namespaces: Vec<String>,
    /// The host end of the host link, when the host routes the LB ranges.
    host_if: Option<String>,
    rules: Mutex<BTreeSet<Rule>>,
    stop: Arc<AtomicBool>,
    agent: Option<JoinHandle<()>>,
}

impl RealNet {
    /// Build the topology for these clusters, apply the spec's rules, start
    /// each cluster's dnsmasq and the agent that runs pods.
    pub(crate) fn start(
        spec: &NetSpec,
        clusters: &[Arc<ClusterShared>],
    ) -> Result<RealNet, NetworkError> {
        let tools = preflight(spec, clusters.len())?.ok_or(NetworkError::NotReal)?;
        let removed = cleanup(false);
        if !removed.is_empty() {
            eprintln!(
                "kube-sim: removed leftovers of earlier runs: {}",
                removed.join(", ")
            );
        }
        let prefix = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            FEDERATIONS.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&prefix);
        let mut net = RealNet {
            prefix: prefix.clone(),
            dir: dir.clone(),
            tools,
            zones: clusters
                .iter()
                .map(|c| (c.zone.clone(), c.context.clone()))
                .collect(),
            namespaces: Vec::new(),
            host_if: None,
            rules: Mutex::new(BTreeSet::new()),
            stop: Arc::new(AtomicBool::new(false)),
            agent: None,
        };
        let io = |what: String| move |source| NetworkError::Io { what, source };
        std::fs::create_dir_all(dir.join("bin"))
            .map_err(io(format!("could not create {}", dir.display())))?;
        net.install_busybox_applets()?;
        net.build_topology(clusters)?;
        if spec.host_lb_routes {
            net.link_host(clusters.len())?;
        }
        for rule in &spec.rules {
            let rule = net.resolve(rule)?;
            net.add_rule(rule)?;
        }
        let mut agents = Vec::new();
        for (i, c) in clusters.iter().enumerate() {
            let netns = net.namespaces[i + 1].clone();
            let cdir = dir.join(i.to_string());
            let work = cdir.join("work");
            std::fs::create_dir_all(&work)
                .map_err(io(format!("could not create {}", work.display())))?;
            let (node_ip, dns_ip) = {
                let store = c.store();
                (store.net.node_ip(), store.net.dns_service_ip())
            };
            let kubelet = Kubelet::new(
                &c.zone,
                &net.tools.ip,
                &net.tools.busybox,
                &dir.join("bin"),
                &work,
                &netns,
            );
            let mut agent = ClusterAgent {
                shared: c.clone(),
                index: i,
                netns: netns.clone(),
                fixed: BTreeSet::from([node_ip, dns_ip]),
                addrs: BTreeSet::new(),
                dns: Dnsmasq::start(
                    &c.zone,
                    &net.tools.ip,
                    &net.tools.dnsmasq,
                    &netns,
                    &cdir,
                    String::new(),
                    String::new(),
                )?,
                kubelet,
                last_error: None,
            };
            let (hosts, servers) = agent.dns_config(&agent.snapshot());
            agent.dns.update(hosts, servers)?;
            c.runs_pods.store(true, Ordering::SeqCst);
            agents.push(agent);
        }
        let stop = net.stop.clone();
        let tools = net.tools.clone();
        net.agent = Some(
            std::thread::Builder::new()
                .name(format!("{prefix}-agent"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        for a in agents.iter_mut() {
                            a.tick(&tools);
                        }
                        std::thread::sleep(AGENT_TICK);
                    }
                })
                .map_err(io("could not start the network agent thread".into()))?,
        );
        Ok(net)
    }

    fn install_busybox_applets(&self) -> Result<(), NetworkError> {
        let list = run(&self.tools.busybox, &["--list"], None)?;
        let bin = self.dir.join("bin");
        for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
            let link = bin.join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink(&self.tools.busybox, &link).map_err(|source| {
                    NetworkError::Io {
                        what: format!("could not create {}", link.display()),
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    fn build_topology(&mut self, clusters: &[Arc<ClusterShared>]) -> Result<(), NetworkError> {
        let ip = self.tools.ip.clone();
        let core = format!("{}-core", self.prefix);
        run(&ip, &["netns", "add", &core], None)?;
        self.namespaces.push(core.clone());
        let mut core_lines = vec!["link set lo up".to_string()];
        for (i, c) in clusters.iter().enumerate() {
            let ns = format!("{}-{i}", self.prefix);
            run(&ip, &["netns", "add", &ns], None)?;
            self.namespaces.push(ns.clone());
            let (node_ip, dns_ip) = {
                let store = c.store();
                (store.net.node_ip(), store.net.dns_service_ip())
            };
            let etc = etc_netns(&ns);
            std::fs::create_dir_all(&etc)
                .and_then(|()| {
                    std::fs::write(
                        etc.join("resolv.conf"),
                        format!(
                            "nameserver {dns_ip}\nsearch svc.{d} {d}\noptions ndots:5\n",
                            d = netdns::CLUSTER_DOMAIN
                        ),
                    )
                })
                .map_err(|source| NetworkError::Io {
                    what: format!("could not write {}/resolv.conf", etc.display()),
                    source,
                })?;
            let cif = core_if(i);
            run(
                &ip,
                &[
                    "link", "add", &cif, "netns", &core, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
                None,
            )?;
            ip_batch(
                &self.tools,
                &ns,
                &[
                    "link set lo up".into(),
                    format!("address add {node_ip}/32 dev lo"),
                    format!("address add {dns_ip}/32 dev lo"),
                    format!("address add 169.254.{i}.2/30 dev eth0"),
                    "link set eth0 up".into(),
                    format!("route add default via 169.254.{i}.1 dev eth0 src {node_ip}"),
                ],
            )?;
            core_lines.extend([
                format!("address add 169.254.{i}.1/30 dev {cif}"),
                format!("link set {cif} up"),
                format!("route add {} via 169.254.{i}.2 dev {cif}", pod_cidr(i)),
                format!("route add {} via 169.254.{i}.2 dev {cif}", lb_cidr(i)),
            ]);
        }
        ip_batch(&self.tools, &core, &core_lines)?;
        run(
            &ip,
            &[
                "netns",
                "exec",
                &core,
                &self.tools.busybox.display().to_string(),
                "sysctl",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
            None,
        )?;
        Ok(())
    }

    /// A veth link from the host into the core namespace, and host routes
    /// for the LB ranges only. The core has no default route and cluster
    /// namespaces do not forward, so what the host sends this way stays in
    /// the federation. Refuses to take over a range the host already routes.
    fn link_host(&mut self, zones: usize) -> Result<(), NetworkError> {
        let ip = self.tools.ip.clone();
        for i in 0..zones {
            let cidr = lb_cidr(i);
            let existing = run(&ip, &["-4", "route", "show", "root", &cidr], None)?;
            if !existing.trim().is_empty() {
                return Err(NetworkError::HostRouteTaken {
                    cidr,
                    existing: existing.trim().replace('\n', "; "),
                });
            }
        }
        let hif = host_if(&self.prefix);
        let core = self.namespaces[0].clone();
        run(
            &ip,
            &[
                "link",
                "add",
                &hif,
                "type",
                "veth",
                "peer",
                "name",
                CORE_HOST_IF,
                "netns",
                &core,
            ],
            None,
        )?;
        self.host_if = Some(hif.clone());
        ip_batch(
            &self.tools,
            &core,
            &[
                format!("address add {CORE_HOST_IP}/30 dev {CORE_HOST_IF}"),
                format!("link set {CORE_HOST_IF} up"),
            ],
        )?;
        let mut lines = vec![
            format!("address add {HOST_IP}/30 dev {hif}"),
            format!("link set {hif} up"),
        ];
        for i in 0..zones {
            lines.push(format!(
                "route add {} via {CORE_HOST_IP} dev {hif}",
                lb_cidr(i)
            ));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        run(&ip, &["-batch", "-"], Some(&text)).map(|_| ())
    }

    fn index_of(&self, zone: &str) -> Result<usize, NetworkError> {
        self.zones
            .iter()
            .position(|(z, c)| z == zone || c == zone)
            .ok_or_else(|| NetworkError::UnknownZone(zone.to_string()))
    }

    fn resolve(&self, rule: &NetRule) -> Result<Rule, NetworkError> {
        let pair = |a: &str, b: &str| -> Result<(usize, usize), NetworkError> {
            let (a, b) = (self.index_of(a)?, self.index_of(b)?);
            if a == b {
                return Err(NetworkError::SameZone(self.zones[a].0.clone()));
            }
            Ok((a, b))
        };
        Ok(match rule {
            NetRule::Cut(a, b) => {
                let (a, b) = pair(a, b)?;
                Rule::Cut(a.min(b), a.max(b))
            }
            NetRule::CutOneway(a, b) => {
                let (a, b) = pair(a, b)?;
                Rule::CutOneway(a, b)
            }
            NetRule::BlockPort(z, port) => Rule::BlockPort(self.index_of(z)?, *port),
        })
    }

    /// The iptables rules (namespace, chain and match) of a rule.
    fn iptables_rules(&self, rule: Rule) -> Vec<(String, Vec<String>)> {
        let core = &self.namespaces[0];
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match rule {
            Rule::Cut(a, b) => [(a, b), (b, a)]
                .into_iter()
                .map(|(f, t)| {
                    let (f, t) = (core_if(f), core_if(t));
                    (
                        core.clone(),
                        s(&["FORWARD", "-i", &f, "-o", &t, "-j", "DROP"]),
                    )
                })
                .collect(),
            Rule::CutOneway(f, t) => {
                let (f, t) = (core_if(f), core_if(t));
                vec![(
                    core.clone(),
                    s(&[
                        "FORWARD",
                        "-i",
                        &f,
                        "-o",
                        &t,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW",
                        "-j",
                        "DROP",
                    ]),
                )]
            }
            Rule::BlockPort(z, port) => vec![(
                self.namespaces[z + 1].clone(),
                s(&[
                    "INPUT",
                    "-p",
                    "tcp",
                    "-d",
                    &pod_cidr(z),
                    "--dport",
                    &port.to_string(),
                    "-j",
                    "DROP",
                ]),
            )],
        }
    }

    fn iptables(&self, netns: &str, op: &str, rule: &[String]) -> Result<(), NetworkError> {
        let iptables = self.tools.iptables()?.display().to_string();
        let mut args = vec!["netns", "exec", netns, &iptables, "-w", "5", op];
        args.extend(rule.iter().map(String::as_str));
        run(&self.tools.ip, &args, None).map(|_| ())
    }

    fn add_rule(&self, rule: Rule) -> Result<(), NetworkError> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules.contains(&rule) {
            return Ok(());
        }
        for (ns, r) in self.iptables_rules(rule) {
            self.iptables(&ns, "-A", &r)?;
        }
        rules.insert(rule);
        Ok(())
    }

    fn remove_rule(&self, rule: Rule) -> Result<(), NetworkError> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if !rules.remove(&rule) {
            return Ok(());
        }
        for (ns, r) in self.iptables_rules(rule) {
            self.iptables(&ns, "-D", &r)?;
        }
        Ok(())
    }

    /// Apply a rule at run time.
    pub fn apply(&self, rule: &NetRule) -> Result<(), NetworkError> {
        self.add_rule(self.resolve(rule)?)
    }

    /// Remove a rule (a no-op when it is not in place). For
    /// [`NetRule::Cut`] and [`NetRule::CutOneway`], every cut between the
    /// two zones goes, whatever its kind and direction.
    pub fn remove(&self, rule: &NetRule) -> Result<(), NetworkError> {
        match self.resolve(rule)? {
            Rule::Cut(a, b) | Rule::CutOneway(a, b) => {
                self.remove_rule(Rule::Cut(a.min(b), a.max(b)))?;
                self.remove_rule(Rule::CutOneway(a, b))?;
                self.remove_rule(Rule::CutOneway(b, a))
            }
            r => self.remove_rule(r),
        }
    }

    /// The prefix of every name this network uses (`ksim-<pid>-<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The network namespace of a zone (or context).
    pub fn netns(&self, zone: &str) -> Option<&str> {
        let i = self.index_of(zone).ok()?;
        self.namespaces.get(i + 1).map(String::as_str)
    }
}

/// Remove one namespace with every process in it, and its `/etc/netns` dir.
fn remove_netns(ip: &Path, name: &str) {
    for _ in 0..3 {
        let pids = run(ip, &["netns", "pids", name], None).unwrap_or_default();
        let pids: Vec<u32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = run(ip, &["netns", "del", name], None) {
        eprintln!("kube-sim: could not remove network namespace {name}: {e}");
    }
    let _ = std::fs::remove_dir_all(etc_netns(name));
}

impl Drop for RealNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(agent) = self.agent.take() {
            let _ = agent.join();
        }
        if let Some(hif) = &self.host_if {
            // Its routes go with it; removing the core namespace would too.
            let _ = run(&self.tools.ip, &["link", "del", hif], None);
        }
        for ns in self.namespaces.iter().rev() {
            remove_netns(&self.tools.ip, ns);
        }
        kill_processes_of(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kill processes whose command line or working directory names `prefix`
/// (dnsmasq and pods of a namespace that is already gone).
fn kill_processes_of(prefix: &str) -> usize {
    let me = std::process::id();
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        let needle = format!("/{prefix}/");
        if cmdline.contains(&needle) || cwd.to_string_lossy().contains(&needle) {
            signal(pid, libc::SIGKILL);
            killed += 1;
        }
    }
    killed
}

/// Remove what real networks of earlier runs left behind (namespaces,
/// `/etc/netns` entries, state directories, processes) when their process
/// no longer runs, or all of them with `all`. Returns what was removed.
pub fn cleanup(all: bool) -> Vec<String> {
    let stale = |name: &str| all || owner_pid(name).is_some_and(|p| !pid_alive(p));
    let mut removed = Vec::new();
    let ip = find_tool("ip");
    if let Some(ip) = &ip {
        let links = run(ip, &["-o", "link", "show"], None).unwrap_or_default();
        for line in links.lines() {
            let Some(name) = line.split_whitespace().nth(1) else {
                continue;
            };
            let name = name.trim_end_matches(':');
            let name = name.split('@').next().unwrap_or(name);
            let Some(rest) = name.strip_prefix("kh") else {
                continue;
            };
            let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if owner.is_some() && (all || owner.is_some_and(|p| !pid_alive(p))) {
                let _ = run(ip, &["link", "del", name], None);
                removed.push(format!("host link {name}"));
            }
        }
        let list = run(ip, &["netns", "list"], None).unwrap_or_default();
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(PREFIX) && stale(name) {
                remove_netns(ip, name);
                removed.push(format!("netns {name}"));
            }
        }
    }
    let dirs = |base: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(base)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(PREFIX) && stale(n))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for d in dirs(Path::new("/etc/netns")) {
        let _ = std::fs::remove_dir_all(&d);
        removed.push(d.display().to_string());
    }
    for d in dirs(&std::env::temp_dir()) {
        let name = d
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if kill_processes_of(&name) > 0 {
            removed.push(format!("processes of {name}"));
        }
        let _ = std::fs::remove_dir_all(&d);
        removed.push(d.display().to_string());
    }
    removed
}

/// Run-time changes of a federation's real network.
impl Federation {
    /// Which network the federation runs.
    pub fn network(&self) -> Network {
        if self.net.is_some() {
            Network::Real
        } else {
            Network::Simulated
        }
    }

    fn real(&self) -> Result<&RealNet, NetworkError> {
        self.net.as_ref().ok_or(NetworkError::NotReal)
    }

    /// Cut zones `a` and `b` apart (both directions).
    pub fn cut(&self, a: &str, b: &str) -> Result<(), NetworkError> {
        self.real()?.apply(&NetRule::Cut(a.into(), b.into()))
    }

    /// Drop connections from zone `from` to zone `to`.
    pub fn cut_oneway(&self, from: &str, to: &str) -> Result<(), NetworkError> {
        self.real()?
            .apply(&NetRule::CutOneway(from.into(), to.into()))
    }

    /// Remove every cut between zones `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) -> Result<(), NetworkError> {
        self.real()?.remove(&NetRule::Cut(a.into(), b.into()))
    }

    /// Drop TCP to the pods of `zone` on `port`.
    pub fn block_port(&self, zone: &str, port: u16) -> Result<(), NetworkError> {
        self.real()?.apply(&NetRule::BlockPort(zone.into(), port))
    }

    /// Undo [`Federation::block_port`].
    pub fn unblock_port(&self, zone: &str, port: u16) -> Result<(), NetworkError> {
        self.real()?.remove(&NetRule::BlockPort(zone.into(), port))
    }

    /// The prefix of the real network's namespaces, directories and
    /// processes (`ksim-<pid>-<n>`), or None in the simulated network.
    pub fn network_prefix(&self) -> Option<&str> {
        self.net.as_ref().map(RealNet::prefix)
    }

    /// The network namespace of a zone's cluster in the real network
    /// (`ip netns exec NAME ...` runs a command inside it).
    pub fn netns(&self, zone: &str) -> Option<&str> {
        self.net.as_ref()?.netns(zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_the_store() {
        for i in [0usize, 1, 7, MAX_REAL_ZONES - 1] {
            let mut net = crate::store::Net::new(i as u8);
            assert_eq!(pod_cidr(i), net.pod_cidr());
            assert!(in_cluster_ranges(i, net.pod_ip("a", "b")));
            assert!(in_cluster_ranges(
                i,
                net.lb_ip("kube-system", "kube-dns-lb")
            ));
            assert!(in_cluster_ranges(i, net.node_ip()));
            assert!(!in_cluster_ranges(i, net.dns_service_ip()));
            assert!(!in_cluster_ranges(i + 1, net.pod_ip("a", "c")));
        }
    }

    #[test]
    fn up_flags() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "kube-sim",
            "up",
            "--zones",
            "a,b",
            "--kubeconfig",
            "k",
            "--network",
            "real",
            "--cut",
            "a:b",
            "--cut",
            "b:c",
            "--cut-oneway",
            "b:a",
            "--block-port",
            "a:26257",
        ])
        .expect("flags parse");
        let crate::cli::Command::Up(up) = cli.command else {
            panic!("up")
        };
        assert_eq!(up.network, Network::Real);
        assert_eq!(up.cut, [("a".into(), "b".into()), ("b".into(), "c".into())]);
        assert_eq!(up.cut_oneway, [("b".into(), "a".into())]);
        assert_eq!(up.block_port, [("a".into(), 26257)]);
        let default = crate::cli::Cli::try_parse_from([
            "kube-sim",
            "up",
            "--zones",
            "a",
            "--kubeconfig",
            "k",
        ])
        .expect("flags parse");
        let crate::cli::Command::Up(up) = default.command else {
            panic!("up")
        };
        assert_eq!(up.network, Network::Simulated);
        for bad in [
            ["--network", "host"],
            ["--cut", "a"],
            ["--block-port", "a:70000"],
        ] {
            let mut args = vec!["kube-sim", "up", "--zones", "a", "--kubeconfig", "k"];
            args.extend(bad);
            assert!(crate::cli::Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn preflight_rejects_rules_without_the_real_network() {
        let spec = NetSpec {
            network: Network::Simulated,
            rules: vec![NetRule::Cut("a".into(), "b".into())],
            host_lb_routes: false,
        };
        assert!(matches!(preflight(&spec, 2), Err(NetworkError::NotReal)));
        let spec = NetSpec {
            network: Network::Simulated,
            rules: Vec::new(),
            host_lb_routes: true,
        };
        assert!(matches!(preflight(&spec, 2), Err(NetworkError::NotReal)));
        assert!(matches!(preflight(&NetSpec::default(), 2), Ok(None)));
    }

    #[test]
    fn host_link_names_fit_an_interface_name() {
        let name = host_if(&format!("{PREFIX}4194304-999"));
        assert_eq!(name, "kh4194304-999");
        assert!(name.len() <= 15);
    }

    #[test]
    fn parses_rules_and_names() {
        assert_eq!(NetRule::parse_cut("a:b").unwrap(), ("a".into(), "b".into()));
        assert!(NetRule::parse_cut("a").is_err());
        assert!(NetRule::parse_cut(":b").is_err());
        assert_eq!(
            NetRule::parse_block("us-east1-b:26257").unwrap(),
            ("us-east1-b".into(), 26257)
        );
        assert!(NetRule::parse_block("a:0").is_err());
        assert!(NetRule::parse_block("a:x").is_err());
        assert_eq!("REAL".parse::<Network>().unwrap(), Network::Real);
        assert!("host".parse::<Network>().is_err());
        assert_eq!(owner_pid("ksim-123-0-core"), Some(123));
        assert_eq!(owner_pid("ksim-x"), None);
        assert_eq!(owner_pid("other-1"), None);
    }
}
