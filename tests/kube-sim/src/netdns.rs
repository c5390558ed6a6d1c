//! Cluster DNS of the real network mode: what each cluster's dnsmasq
//! answers and where it forwards, and the dnsmasq process itself.
//!
//! The translation is pure: Services and Pods become a hosts file
//! (`<svc>.<ns>.svc.cluster.local`, `<hostname>.<subdomain>.<ns>.svc.cluster.local`),
//! and the cluster's DNS ConfigMap becomes dnsmasq `server=` lines by the
//! rules the real servers apply (kube-dns `stubDomains`, CoreDNS server
//! blocks with `forward`). It is written independently of the product's own
//! DNS code on purpose, so that the simulator checks the product's output
//! instead of agreeing with it. Must not touch the store or the network
//! topology (see [`crate::network`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::Flavor;
use crate::network::NetworkError;
use crate::selectors::LabelSelector;

/// The cluster domain every simulated cluster uses.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// How long dnsmasq may take to start.
const DNSMASQ_START_TIMEOUT: Duration = Duration::from_secs(5);

/// One forwarding rule: queries for `domain` (and below) go to `server`.
/// An empty domain is the default upstream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Forward {
    pub domain: String,
    /// `ip` or `ip#port` (dnsmasq syntax).
    pub server: String,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The hosts file (`IP name` lines, sorted) for a cluster's Services and Pods,
/// as CoreDNS's `kubernetes` plugin / kube-dns would answer them:
/// a ClusterIP Service resolves to its clusterIP; a headless Service to the
/// IPs of the pods it selects (ready ones, or all with
/// `publishNotReadyAddresses`), and each such pod with `spec.hostname` and
/// `spec.subdomain` equal to the Service name gets
/// `<hostname>.<svc>.<ns>.svc.cluster.local`. ExternalName Services and SRV
/// records are not served.
pub fn hosts(services: &[Arc<Value>], pods: &[Arc<Value>]) -> String {
    let mut lines = BTreeSet::new();
    for svc in services {
        let ns = str_at(svc, "/metadata/namespace");
        let name = str_at(svc, "/metadata/name");
        if str_at(svc, "/spec/type") == "ExternalName" || ns.is_empty() || name.is_empty() {
            continue;
        }
        let fqdn = format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}");
        let cluster_ip = str_at(svc, "/spec/clusterIP");
        if !cluster_ip.is_empty() && cluster_ip != "None" {
            lines.insert(format!("{cluster_ip} {fqdn}"));
            continue;
        }
        let Some(sel) = svc
            .pointer("/spec/selector")
            .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
        else {
            continue;
        };
        let selector = LabelSelector::from_object(&json!({ "matchLabels": sel }));
        let not_ready_too = svc
            .pointer("/spec/publishNotReadyAddresses")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for pod in pods {
            let ip = str_at(pod, "/status/podIP");
            let phase = str_at(pod, "/status/phase");
            if ip.is_empty()
                || str_at(pod, "/metadata/namespace") != ns
                || phase == "Succeeded"
                || phase == "Failed"
                || !selector.matches(pod)
                || !(not_ready_too || is_ready(pod))
            {
                continue;
            }
            lines.insert(format!("{ip} {fqdn}"));
            let hostname = str_at(pod, "/spec/hostname");
            if !hostname.is_empty() && str_at(pod, "/spec/subdomain") == name {
                lines.insert(format!("{ip} {hostname}.{fqdn}"));
            }
        }
    }
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// dnsmasq's `--servers-file` for these forwards.
pub fn servers_file(forwards: &[Forward]) -> String {
    let mut out = String::new();
    for f in forwards {
        if f.domain.is_empty() {
            out.push_str(&format!("server={}\n", f.server));
        } else {
            out.push_str(&format!("server=/{}/{}\n", f.domain, f.server));
        }
    }
    out
}

fn normalize_domain(d: &str) -> String {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() { ".".to_string() } else { d }
}

/// `ip`, `ip:port`, `dns://ip:port` or `[v6]:port` -> dnsmasq's `ip` / `ip#port`.
fn server_of(s: &str) -> Option<String> {
    let s = s.strip_prefix("dns://").unwrap_or(s);
    if s.contains("://") || s.starts_with('/') {
        return None;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let sa = s.parse::<SocketAddr>().ok()?;
    Some(if sa.port() == 53 {
        sa.ip().to_string()
    } else {
        format!("{}#{}", sa.ip(), sa.port())
    })
}

/// kube-dns (GKE): `stubDomains` `{"domain": ["ip[:port]", ...]}` becomes
/// `server=/domain/ip`, `upstreamNameservers` `["ip", ...]` the default
/// upstreams. Malformed JSON is ignored, as kube-dns keeps its previous
/// configuration then.
pub fn kube_dns_forwards(data: &BTreeMap<String, String>) -> Vec<Forward> {
    let mut out = Vec::new();
    if let Some(Ok(Value::Object(stubs))) = data
        .get("stubDomains")
        .map(|s| serde_json::from_str::<Value>(s))
    {
        for (domain, servers) in stubs {
            for s in servers.as_array().into_iter().flatten() {
                if let Some(server) = s.as_str().and_then(server_of) {
                    out.push(Forward {
                        domain: normalize_domain(&domain),
                        server,
                    });
                }
            }
        }
    }
    if let Some(Ok(Value::Array(ups))) = data
        .get("upstreamNameservers")
        .map(|s| serde_json::from_str::<Value>(s))
    {
        for s in ups {
            if let Some(server) = s.as_str().and_then(server_of) {
                out.push(Forward {
                    domain: String::new(),
                    server,
                });
            }
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Newline,
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut word = String::new();
        for c in line.chars() {
            match c {
                '{' | '}' => {
                    if !word.is_empty() {
                        toks.push(Tok::Word(std::mem::take(&mut word)));
                    }
                    toks.push(if c == '{' { Tok::Open } else { Tok::Close });
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        toks.push(Tok::Word(std::mem::take(&mut word)));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            toks.push(Tok::Word(word));
        }
        toks.push(Tok::Newline);
    }
    toks
}

/// A Corefile: its server blocks (keys and top-level directives of each)
/// and the directives outside any block (`import`).
#[derive(Debug, Default, PartialEq)]
pub struct Corefile {
    pub blocks: Vec<ServerBlock>,
    pub top: Vec<Vec<String>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct ServerBlock {
    pub keys: Vec<String>,
    pub directives: Vec<Vec<String>>,
}

/// Parse a Corefile leniently: comments, nested directive blocks (skipped)
/// and keys on the line of `{` are handled; anything unbalanced ends parsing.
pub fn parse_corefile(text: &str) -> Corefile {
    let toks = tokenize(text);
    let mut cf = Corefile::default();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Word(w) => words.push(w.clone()),
            Tok::Newline => {
                let next = toks[i + 1..].iter().find(|t| **t != Tok::Newline);
                if !words.is_empty() && next != Some(&Tok::Open) {
                    cf.top.push(std::mem::take(&mut words));
                }
            }
            Tok::Close => words.clear(),
            Tok::Open => {
                let mut block = ServerBlock {
                    keys: std::mem::take(&mut words),
                    directives: Vec::new(),
                };
                let mut line: Vec<String> = Vec::new();
                i += 1;
                while i < toks.len() {
                    match &toks[i] {
                        Tok::Word(w) => line.push(w.clone()),
                        Tok::Newline => {
                            if !line.is_empty() {
                                block.directives.push(std::mem::take(&mut line));
                            }
                        }
                        Tok::Open => {
                            if !line.is_empty() {
                                block.directives.push(std::mem::take(&mut line));
                            }
                            let mut depth = 1;
                            while depth > 0 {
                                i += 1;
                                match toks.get(i) {
                                    Some(Tok::Open) => depth += 1,
                                    Some(Tok::Close) => depth -= 1,
                                    Some(_) => {}
                                    None => break,
                                }
                            }
                        }
                        Tok::Close => break,
                    }
                    i += 1;
                }
                if !line.is_empty() {
                    block.directives.push(line);
                }
                cf.blocks.push(block);
            }
        }
        i += 1;
    }
    if !words.is_empty() {
        cf.top.push(words);
    }
    cf
}

/// The zone a server block key serves on port 53 (`example.org:53`,
/// `dns://example.org`, `.`), or None for other ports and transports.
fn zone_of_key(key: &str) -> Option<String> {
    let k = key.strip_prefix("dns://").unwrap_or(key);
    if k.contains("://") {
        return None;
    }
    let (host, port) = match k.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => (h, p),
        _ => (k, "53"),
    };
    (port == "53").then(|| normalize_domain(host))
}

/// The forwards of parsed server blocks: in a block for zone Z,
/// `forward . TO...` sends Z to TO, `forward SUB TO...` sends SUB (inside Z).
/// A root block's forwards are default upstreams; file-based targets
/// (`/etc/resolv.conf`) and non-DNS transports are left out.
fn block_forwards(blocks: &[ServerBlock]) -> Vec<Forward> {
    let mut out = Vec::new();
    for b in blocks {
        for key in &b.keys {
            let Some(zone) = zone_of_key(key) else {
                continue;
            };
            for d in &b.directives {
                if d.first().map(String::as_str) != Some("forward") || d.len() < 3 {
                    continue;
                }
                let from = normalize_domain(&d[1]);
                let domain = if from == "." { zone.clone() } else { from };
                for to in &d[2..] {
                    if let Some(server) = server_of(to) {
                        out.push(Forward {
                            domain: if domain == "." {
                                String::new()
                            } else {
                                domain.clone()
                            },
                            server,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Whether an `import` pattern (`custom/*.server`) names the key `key` of
/// the `coredns-custom` ConfigMap (mounted at `custom/`).
fn import_matches(pattern: &str, key: &str) -> bool {
    // AKS imports `custom/*.server`, k3s `/etc/coredns/custom/*.server`:
    // both are where the `coredns-custom` ConfigMap is mounted.
    let Some(p) = pattern
        .strip_prefix("custom/")
        .or_else(|| pattern.strip_prefix("/etc/coredns/custom/"))
    else {
        return false;
    };
    match p.split_once('*') {
        Some((pre, post)) => {
            key.len() >= pre.len() + post.len() && key.starts_with(pre) && key.ends_with(post)
        }
        None => p == key,
    }
}

/// CoreDNS: the server blocks of `Corefile`, plus those of the
/// `coredns-custom` keys that a top-level `import custom/...` pulls in
/// (AKS imports `custom/*.server`).
pub fn coredns_forwards(corefile: &str, custom: &BTreeMap<String, String>) -> Vec<Forward> {
    let cf = parse_corefile(corefile);
    let mut blocks = cf.blocks;
    let imports: Vec<&str> = cf
        .top
        .iter()
        .filter(|d| d.first().map(String::as_str) == Some("import"))
        .flat_map(|d| d[1..].iter().map(String::as_str))
        .collect();
    for (key, text) in custom {
        if imports.iter().any(|p| import_matches(p, key)) {
            blocks.extend(parse_corefile(text).blocks);
        }
    }
    block_forwards(&blocks)
}

fn data_of(cm: Option<&Arc<Value>>) -> BTreeMap<String, String> {
    cm.and_then(|c| c.get("data"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The forwards a cluster's DNS server applies, from the `kube-system`
/// ConfigMaps its flavour's server reads: `kube-dns` on GKE, `coredns`
/// (and `coredns-custom` on AKS) elsewhere.
pub fn forwards(flavor: Flavor, kube_system_configmaps: &[Arc<Value>]) -> Vec<Forward> {
    let find = |name: &str| {
        kube_system_configmaps
            .iter()
            .find(|c| str_at(c, "/metadata/name") == name)
    };
    let mut out = match flavor {
        Flavor::Gke => kube_dns_forwards(&data_of(find("kube-dns"))),
        // Cloud DNS ignores the kube-dns ConfigMap.
        Flavor::GkeAutopilot => Vec::new(),
        Flavor::Aks | Flavor::K3s => coredns_forwards(
            data_of(find("coredns"))
                .get("Corefile")
                .map(String::as_str)
                .unwrap_or(""),
            &data_of(find("coredns-custom")),
        ),
        Flavor::Eks | Flavor::Generic => coredns_forwards(
            data_of(find("coredns"))
                .get("Corefile")
                .map(String::as_str)
                .unwrap_or(""),
            &BTreeMap::new(),
        ),
    };
    out.sort();
    out.dedup();
    out
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One cluster's dnsmasq, running in the cluster's network namespace on
/// port 53 of every address there (the kube-dns Service IP, the DNS
/// load balancer addresses). Killed on drop.
pub struct Dnsmasq {
    zone: String,
    child: Child,
    hosts_path: PathBuf,
    servers_path: PathBuf,
    log_path: PathBuf,
    hosts: String,
    servers: String,
    command: Vec<String>,
}

impl Dnsmasq {
    /// Write the configuration and start dnsmasq; returns once it serves.
    pub fn start(
        zone: &str,
        ip: &Path,
        dnsmasq: &Path,
        netns: &str,
        dir: &Path,
        hosts: String,
        servers: String,
    ) -> Result<Dnsmasq, NetworkError> {
        let hosts_path = dir.join("hosts");
        let servers_path = dir.join("servers");
        let log_path = dir.join("dnsmasq.log");
        let io = |what: String| move |source| NetworkError::Io { what, source };
        write_atomic(&hosts_path, &hosts)
            .map_err(io(format!("could not write {}", hosts_path.display())))?;
        write_atomic(&servers_path, &servers)
            .map_err(io(format!("could not write {}", servers_path.display())))?;
        let _ = std::fs::remove_file(&log_path);
        let command: Vec<String> = vec![
            ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            netns.into(),
            dnsmasq.display().to_string(),
            "--conf-file=/dev/null".into(),
            "--keep-in-foreground".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            "--group=root".into(),
            "--pid-file=".into(),
            "--cache-size=0".into(),
            "--no-negcache".into(),
            format!("--local=/{CLUSTER_DOMAIN}/"),
            format!("--addn-hosts={}", hosts_path.display()),
            format!("--servers-file={}", servers_path.display()),
            format!("--log-facility={}", log_path.display()),
            "--log-queries".into(),
        ];
        let mut d = Dnsmasq {
            zone: zone.to_string(),
            child: spawn_dnsmasq(&command)?,
            hosts_path,
            servers_path,
            log_path,
            hosts,
            servers,
            command,
        };
        d.wait_started()?;
        Ok(d)
    }

    fn wait_started(&mut self) -> Result<(), NetworkError> {
        let deadline = Instant::now() + DNSMASQ_START_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            if log.contains("started, version") {
                return Ok(());
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                let why = if exited { "it exited" } else { "timed out" };
                return Err(NetworkError::Dnsmasq {
                    zone: self.zone.clone(),
                    log: format!("{why}; log: {}", log.trim()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Apply new contents: rewrite what changed and SIGHUP dnsmasq (it
    /// re-reads `--addn-hosts` and `--servers-file`). Restarts a dnsmasq
    /// that died.
    pub fn update(&mut self, hosts: String, servers: String) -> Result<(), NetworkError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!(
                "kube-sim: [{}] dnsmasq exited ({status}); restarting it",
                self.zone
            );
            self.hosts = hosts;
            self.servers = servers;
            self.write_files()?;
            self.child = spawn_dnsmasq(&self.command)?;
            return self.wait_started();
        }
        if hosts == self.hosts && servers == self.servers {
            return Ok(());
        }
        self.hosts = hosts;
        self.servers = servers;
        self.write_files()?;
        crate::network::signal(self.child.id(), libc::SIGHUP);
        Ok(())
    }

    fn write_files(&self) -> Result<(), NetworkError> {
        for (path, text) in [
            (&self.hosts_path, &self.hosts),
            (&self.servers_path, &self.servers),
        ] {
            write_atomic(path, text).map_err(|source| NetworkError::Io {
                what: format!("could not write {}", path.display()),
                source,
            })?;
        }
        Ok(())
    }
}

fn spawn_dnsmasq(command: &[String]) -> Result<Child, NetworkError> {
    use std::os::unix::process::CommandExt;
    Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| NetworkError::Spawn {
            command: command.join(" "),
            source,
        })
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        crate::network::kill_group(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(v: Value) -> Arc<Value> {
        Arc::new(v)
    }

    #[test]
    fn hosts_for_cluster_ip_headless_and_pod_names() {
        let services = vec![
            arc(
                json!({"metadata": {"name": "web", "namespace": "a"}, "spec": {"clusterIP": "10.200.0.100"}}),
            ),
            arc(json!({"metadata": {"name": "db", "namespace": "a"},
                 "spec": {"clusterIP": "None", "selector": {"app": "db"}, "publishNotReadyAddresses": true}})),
            arc(json!({"metadata": {"name": "strict", "namespace": "a"},
                 "spec": {"clusterIP": "None", "selector": {"app": "db"}}})),
            arc(
                json!({"metadata": {"name": "ext", "namespace": "a"}, "spec": {"type": "ExternalName"}}),
            ),
        ];
        let pod = |name: &str, ip: &str, ready: bool, ns: &str| {
            arc(json!({
                "metadata": {"name": name, "namespace": ns, "labels": {"app": "db"}},
                "spec": {"hostname": name, "subdomain": "db"},
                "status": {"phase": "Running", "podIP": ip,
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
        };
        let pods = vec![
            pod("db-0", "10.100.2.10", false, "a"),
            pod("db-1", "10.100.2.11", true, "a"),
            pod("other", "10.100.2.12", true, "b"),
        ];
        let h = hosts(&services, &pods);
        assert_eq!(
            h,
            "10.100.2.10 db-0.db.a.svc.cluster.local\n\
             10.100.2.10 db.a.svc.cluster.local\n\
             10.100.2.11 db-1.db.a.svc.cluster.local\n\
             10.100.2.11 db.a.svc.cluster.local\n\
             10.100.2.11 strict.a.svc.cluster.local\n\
             10.200.0.100 web.a.svc.cluster.local\n"
        );
    }

    #[test]
    fn kube_dns_stub_domains_and_upstreams() {
        let data = BTreeMap::from([
            (
                "stubDomains".to_string(),
                r#"{"us-east1-b.svc.cluster.local": ["10.150.0.10"], "acme.internal.": ["10.99.0.10:5353"]}"#
                    .to_string(),
            ),
            ("upstreamNameservers".to_string(), r#"["8.8.8.8"]"#.to_string()),
        ]);
        let f = kube_dns_forwards(&data);
        assert_eq!(
            servers_file(&f),
            "server=/acme.internal/10.99.0.10#5353\n\
             server=/us-east1-b.svc.cluster.local/10.150.0.10\n\
             server=8.8.8.8\n"
        );
        let broken = BTreeMap::from([("stubDomains".to_string(), "{not json".to_string())]);
        assert!(kube_dns_forwards(&broken).is_empty());
    }

    #[test]
    fn corefile_server_blocks() {
        let corefile = format!(
            "{}# ours\nus-east1-b.svc.cluster.local:53 {{ # zone b\n    errors\n    cache 30\n    \
             forward . 10.150.0.10 10.150.0.11:5353 {{\n        force_tcp\n    }}\n}}\n\
             dns://eu.svc.cluster.local {{\n    forward . dns://10.152.0.10\n}}\n\
             other.example:5353 {{\n    forward . 10.1.1.1\n}}\n\
             corp.example {{\n    forward sub.corp.example 10.2.2.2\n    forward . tls://1.1.1.1\n}}\n",
            crate::flavors::STANDARD_COREFILE
        );
        let f = coredns_forwards(&corefile, &BTreeMap::new());
        assert_eq!(
            servers_file(&f),
            "server=/us-east1-b.svc.cluster.local/10.150.0.10\n\
             server=/us-east1-b.svc.cluster.local/10.150.0.11#5353\n\
             server=/eu.svc.cluster.local/10.152.0.10\n\
             server=/sub.corp.example/10.2.2.2\n"
        );
    }

    #[test]
    fn aks_custom_server_keys_only_when_imported() {
        let custom = BTreeMap::from([
            (
                "crdb.server".to_string(),
                "a.svc.cluster.local:53 {\n    forward . 10.150.0.10\n}\n".to_string(),
            ),
            ("x.override".to_string(), "forward . 10.9.9.9\n".to_string()),
        ]);
        let with = coredns_forwards(crate::flavors::AKS_COREFILE, &custom);
        assert_eq!(
            with,
            vec![Forward {
                domain: "a.svc.cluster.local".into(),
                server: "10.150.0.10".into()
            }]
        );
        let without = coredns_forwards(crate::flavors::STANDARD_COREFILE, &custom);
        assert!(without.is_empty());
    }

    #[test]
    fn forwards_follow_the_flavor() {
        let cms = vec![
            arc(json!({"metadata": {"name": "kube-dns"},
                 "data": {"stubDomains": "{\"a.svc.cluster.local\": [\"10.150.0.10\"]}"}})),
            arc(json!({"metadata": {"name": "coredns"},
                 "data": {"Corefile": "b.svc.cluster.local:53 {\n forward . 10.151.0.10\n}\n"}})),
        ];
        assert_eq!(forwards(Flavor::Gke, &cms)[0].domain, "a.svc.cluster.local");
        assert_eq!(
            forwards(Flavor::Generic, &cms)[0].domain,
            "b.svc.cluster.local"
        );
        assert_eq!(forwards(Flavor::Eks, &cms).len(), 1);
        assert!(
            forwards(Flavor::GkeAutopilot, &cms).is_empty(),
            "Cloud DNS ignores the kube-dns ConfigMap"
        );
        let k3s = vec![
            arc(json!({"metadata": {"name": "coredns"},
                 "data": {"Corefile": crate::flavors::K3S_COREFILE}})),
            arc(json!({"metadata": {"name": "coredns-custom"},
                 "data": {"crdb.server": "c.svc.cluster.local:53 {\n forward . 10.152.0.10\n}\n",
                          "ignored.txt": "d.svc.cluster.local:53 {\n forward . 10.153.0.10\n}\n"}})),
        ];
        let f = forwards(Flavor::K3s, &k3s);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].domain, "c.svc.cluster.local");
    }
}
