//! The real network mode: busybox pods as processes in per-cluster network
//! namespaces, cuts and port blocks, each cluster's dnsmasq forwarding as
//! its DNS ConfigMap says, and cleanup. These tests create (and remove)
//! only their own `ksim-<pid>-<n>` namespaces. They need root, `ip`,
//! `busybox`, `dnsmasq` and `iptables`; elsewhere they are skipped, except
//! in CI (`CI=true`), where a missing requirement fails them.
//!
//! Also here: the pod rules both network modes share (`ErrImagePull`,
//! never-ready probes), which need nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams};
use kube_sim::{Cluster, Federation, Flavor, Network, STANDARD_COREFILE};
use serde_json::{Value, json};

use crate::common::{client, fast};

const WAIT: Duration = Duration::from_secs(20);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("PATH=$PATH:/usr/sbin:/sbin command -v {tool}"),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the real network can run here; in CI (`CI=true`) it must.
fn real_network_available() -> bool {
    match kube_sim::real_network_support() {
        Ok(()) => true,
        Err(why) => {
            let why = format!("the real network cannot run here: {why}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn real(zones: &[&str], flavor: Flavor) -> kube_sim::FederationBuilder {
    Federation::builder()
        .zones(zones.iter().copied())
        .flavor(flavor)
        .network(Network::Real)
        .lb_delay(Duration::from_millis(50))
        .pod_ready_delay(Duration::from_millis(20))
}

fn namespace(c: &Cluster, ns: &str) {
    c.put(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        "test",
    )
    .expect("namespace is created");
}

/// A busybox pod running `sh -c script` once.
fn busybox(c: &Cluster, ns: &str, name: &str, script: &str) {
    c.put(
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "docker.io/library/busybox:1.36",
                "command": ["sh", "-c", script],
                "env": [{"name": "GREETING", "value": "hello"}],
            }]},
        }),
        "test",
    )
    .expect("pod is created");
}

fn pod(c: &Cluster, ns: &str, name: &str) -> Value {
    c.get("v1", "Pod", Some(ns), name).unwrap_or(Value::Null)
}

/// Wait for a running pod's IP.
fn running_ip(c: &Cluster, ns: &str, name: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = pod(c, ns, name);
        if p.pointer("/status/phase") == Some(&json!("Running"))
            && let Some(ip) = p.pointer("/status/podIP").and_then(Value::as_str)
        {
            return ip.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "pod {ns}/{name} in {} is not running after {WAIT:?}: {}",
            c.zone(),
            p["status"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a pod to end; its phase and exit code.
fn finished(c: &Cluster, ns: &str, name: &str) -> (String, i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = pod(c, ns, name);
        let phase = p
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            let code = p
                .pointer("/status/containerStatuses/0/state/terminated/exitCode")
                .and_then(Value::as_i64)
                .expect("a terminated container has an exit code");
            return (phase.to_string(), code);
        }
        assert!(
            Instant::now() < deadline,
            "pod {ns}/{name} in {} has not finished after {WAIT:?}: {}",
            c.zone(),
            p["status"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start a connection probe from `from` to `ip:port`; see [`probe_result`].
fn probe(from: &Cluster, name: &str, ip: &str, port: u16) {
    busybox(
        from,
        "probes",
        name,
        &format!("nc -w 2 {ip} {port} </dev/null && echo \"$GREETING from $HOSTNAME\""),
    );
}

fn probe_result(from: &Cluster, name: &str) -> bool {
    finished(from, "probes", name).0 == "Succeeded"
}

/// Listeners on 26257 and 8080 in every cluster, each bound (its pod says
/// so once its network namespace lists both ports as listening); their IPs
/// by zone index.
fn listeners(fed: &Federation) -> Vec<String> {
    for c in fed.clusters() {
        namespace(&c, "probes");
        busybox(
            &c,
            "probes",
            "listener",
            "nc -ll -p 26257 -e true & nc -ll -p 8080 -e true & \
             until netstat -ltn | grep -q ':26257 ' && netstat -ltn | grep -q ':8080 '; \
             do sleep 0.02; done; echo listening; wait",
        );
    }
    fed.clusters()
        .iter()
        .map(|c| {
            let ip = running_ip(c, "probes", "listener");
            wait_for_log(c, "probes", "listener", "listening");
            ip
        })
        .collect()
}

/// Wait (at most [`WAIT`]) until a pod's log holds `text`.
fn wait_for_log(c: &Cluster, ns: &str, name: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = c.pod_log(ns, name).unwrap_or_default();
        if log.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pod {ns}/{name} in {} has not logged {text:?} after {WAIT:?}: {log:?}",
            c.zone()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_pods_connect_across_clusters_until_cut_or_blocked() {
    if !real_network_available() {
        return;
    }
    let fed = real(&["a", "b", "c"], Flavor::Generic)
        .cut("a", "c")
        .block_port("b", 8080)
        .start()
        .expect("the real network starts");
    let (a, b, c) = (fed.cluster("a"), fed.cluster("b"), fed.cluster("c"));
    let ips = listeners(&fed);
    let round = |n: u32, probes: &[(&Cluster, usize, u16, bool)]| {
        for (i, (from, to, port, _)) in probes.iter().enumerate() {
            probe(from, &format!("r{n}-{i}"), &ips[*to], *port);
        }
        for (i, (from, to, port, expect)) in probes.iter().enumerate() {
            let ok = probe_result(from, &format!("r{n}-{i}"));
            assert_eq!(
                ok,
                *expect,
                "round {n}: {} -> {} port {port}",
                from.zone(),
                ["a", "b", "c"][*to]
            );
        }
    };
    // Built with a cut a<->c and b:8080 blocked.
    round(
        1,
        &[
            (&b, 0, 26257, true),
            (&a, 1, 26257, true),
            (&a, 0, 26257, true),
            (&c, 0, 26257, false),
            (&a, 2, 26257, false),
            (&a, 1, 8080, false),
            (&b, 1, 8080, false),
            (&c, 1, 26257, true),
        ],
    );
    // The log of a successful probe, through the API.
    let pods: Api<Pod> = Api::namespaced(client(&fed, "b").await, "probes");
    let log = pods
        .logs("r1-0", &LogParams::default())
        .await
        .expect("the log is served");
    assert_eq!(log, "hello from r1-0\n");

    // At run time: heal a<->c, cut a->b one way, block a:26257.
    fed.heal("a", "c").expect("heal");
    fed.cut_oneway("a", "b").expect("one-way cut");
    fed.unblock_port("b", 8080).expect("unblock");
    fed.block_port("c", 26257).expect("block");
    round(
        2,
        &[
            (&c, 0, 26257, true),
            (&a, 2, 8080, true),
            (&a, 1, 26257, false),
            (&b, 0, 26257, true),
            (&a, 1, 8080, false),
            (&b, 1, 8080, true),
            (&a, 2, 26257, false),
            (&c, 2, 26257, false),
        ],
    );
    let failed = pod(&a, "probes", "r2-2");
    assert_eq!(failed["status"]["phase"], "Failed");
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );
}

/// A never-ready listener in zone `a` behind a headless Service that
/// publishes not-ready addresses, and zone `a`'s DNS load balancer; returns
/// (the pod's IP, the LB's IP).
fn dns_target(a: &Cluster) -> (String, String) {
    namespace(a, "a");
    a.put(
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "probe", "namespace": "a"},
               "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                        "selector": {"app": "probe"}, "ports": [{"port": 26257}]}}),
        "test",
    )
    .expect("service");
    a.put(
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "probe-0", "namespace": "a", "labels": {"app": "probe"}},
               "spec": {"hostname": "probe-0", "subdomain": "probe", "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"],
                                        "readinessProbe": {"exec": {"command": ["false"]}}}]}}),
        "test",
    )
    .expect("pod");
    a.put(
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kube-dns-lb", "namespace": "kube-system"},
               "spec": {"type": "LoadBalancer", "selector": {"k8s-app": "kube-dns"},
                        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        "test",
    )
    .expect("DNS load balancer");
    let ip = running_ip(a, "a", "probe-0");
    let p = pod(a, "a", "probe-0");
    assert_eq!(p["status"]["conditions"][2]["type"], "Ready");
    assert_eq!(p["status"]["conditions"][2]["status"], "False");
    let deadline = Instant::now() + WAIT;
    let lb = loop {
        let svc = a
            .get("v1", "Service", Some("kube-system"), "kube-dns-lb")
            .expect("service exists");
        if let Some(ip) = svc
            .pointer("/status/loadBalancer/ingress/0/ip")
            .and_then(Value::as_str)
        {
            break ip.to_string();
        }
        assert!(Instant::now() < deadline, "no LB address after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    (ip, lb)
}

/// Resolve the not-ready pod's name from zone `b` (a pod running
/// `nslookup`); the address from its log (read through the API), if any.
async fn resolve_from(fed: &Federation, name: &str) -> Option<String> {
    let b = fed.cluster("b");
    busybox(
        &b,
        "probes",
        name,
        "nslookup -type=a probe-0.probe.a.svc.cluster.local. | sed -n '/^Name:/,$s/^Address: *//p'",
    );
    let (phase, _) = finished(&b, "probes", name);
    let pods: Api<Pod> = Api::namespaced(client(fed, "b").await, "probes");
    let log = pods
        .logs(name, &LogParams::default())
        .await
        .expect("the log is served");
    (phase == "Succeeded")
        .then(|| log.trim().to_string())
        .filter(|l| !l.is_empty())
}

async fn dns_forwarding(flavor: Flavor, forward: impl Fn(&str) -> (String, Value)) {
    if !real_network_available() {
        return;
    }
    let fed = real(&["a", "b"], flavor)
        .start()
        .expect("the real network starts");
    namespace(&fed.cluster("b"), "probes");
    let (pod_ip, lb_ip) = dns_target(&fed.cluster("a"));

    let before = resolve_from(&fed, "before").await;
    assert_eq!(before, None, "resolved before forwarding was configured");

    let (cm_name, data) = forward(&lb_ip);
    let cms: Api<ConfigMap> = Api::namespaced(client(&fed, "b").await, "kube-system");
    cms.patch(
        &cm_name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": data })),
    )
    .await
    .expect("the DNS ConfigMap is patched through the API");
    // The agent applies the change within a tick: ask again (a new pod each
    // time) until the name resolves, at most for WAIT.
    let deadline = Instant::now() + WAIT;
    let mut attempt = 0;
    let after = loop {
        attempt += 1;
        let after = resolve_from(&fed, &format!("after-{attempt}")).await;
        if after.is_some() || Instant::now() >= deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        after.as_deref(),
        Some(pod_ip.as_str()),
        "resolved through b's DNS (attempt {attempt})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_forwarding_from_kube_dns_stub_domains() {
    dns_forwarding(Flavor::Gke, |lb| {
        (
            "kube-dns".into(),
            json!({"stubDomains": json!({"a.svc.cluster.local": [lb]}).to_string()}),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_forwarding_from_a_corefile_server_block() {
    dns_forwarding(Flavor::Generic, |lb| {
        let corefile = format!(
            "{STANDARD_COREFILE}a.svc.cluster.local:53 {{\n    errors\n    cache 30\n    forward . {lb}\n}}\n"
        );
        ("coredns".into(), json!({ "Corefile": corefile }))
    })
    .await;
}

fn netns_list() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn real_network_is_removed_on_drop_and_pod_delete_kills_the_process() {
    if !real_network_available() {
        return;
    }
    let fed = real(&["a", "b"], Flavor::Generic)
        .cut_oneway("a", "b")
        .start()
        .expect("the real network starts");
    let prefix = fed.network_prefix().expect("a real network").to_string();
    let a = fed.cluster("a");
    namespace(&a, "probes");
    busybox(&a, "probes", "sleeper", "sleep 600");
    busybox(&a, "probes", "doomed", "sleep 600");
    running_ip(&a, "probes", "sleeper");
    running_ip(&a, "probes", "doomed");
    let ns_a = fed.netns("a").expect("zone a has a namespace").to_string();
    let pids = |ns: &str| -> Vec<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .expect("ip netns pids runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    // A pod is Running once its process is started; on a loaded machine
    // the process may show up in the namespace a moment later.
    let deadline = Instant::now() + WAIT;
    let mut before = pids(&ns_a);
    while before.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        before = pids(&ns_a);
    }
    assert!(
        before.len() >= 3,
        "dnsmasq and two pods run in {ns_a}: {before:?}"
    );

    a.delete("v1", "Pod", Some("probes"), "doomed")
        .expect("pod deleted");
    let deadline = Instant::now() + WAIT;
    while pids(&ns_a).len() >= before.len() {
        assert!(
            Instant::now() < deadline,
            "the deleted pod's process still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // restartPolicy OnFailure: a failing container is restarted, the pod stays Running.
    a.put(
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "crasher", "namespace": "probes"},
               "spec": {"restartPolicy": "OnFailure", "containers": [{
                   "name": "main", "image": "busybox", "command": ["sh", "-c", "echo run; exit 3"]}]}}),
        "test",
    )
    .expect("pod is created");
    let deadline = Instant::now() + WAIT;
    loop {
        let p = pod(&a, "probes", "crasher");
        let cs = &p["status"]["containerStatuses"][0];
        if cs["restartCount"].as_u64() >= Some(1) {
            assert_eq!(p["status"]["phase"], "Running");
            assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {}", p["status"]);
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut all = before;
    all.extend(pids(fed.netns("b").expect("zone b")));
    assert!(netns_list().contains(&prefix));
    drop(fed);

    assert!(
        !netns_list().contains(&prefix),
        "namespaces left: {}",
        netns_list()
    );
    for pid in &all {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived"
        );
    }
    let pgrep = Command::new("pgrep")
        .args(["-f", &format!("/{prefix}/")])
        .output();
    if let Ok(out) = pgrep {
        assert!(
            out.stdout.is_empty(),
            "processes left: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let etc = std::fs::read_dir("/etc/netns")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(etc, 0, "/etc/netns entries left");
    assert!(!std::env::temp_dir().join(&prefix).exists());
}

#[test]
fn image_pull_failures_and_never_ready_probes_in_the_simulated_network() {
    let fed = fast(&["a"], Flavor::Generic);
    let a = fed.cluster("a");
    namespace(&a, "probes");
    let put = |name: &str, image: &str, probe: Value| {
        a.put(
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "probes"},
                   "spec": {"containers": [{"name": "main", "image": image, "readinessProbe": probe}]}}),
            "test",
        )
        .expect("pod is created");
    };
    put("missing", "registry.example/does-not-exist:1", Value::Null);
    put(
        "unready",
        "busybox",
        json!({"exec": {"command": ["false"]}}),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let m = pod(&a, "probes", "missing");
        let u = pod(&a, "probes", "unready");
        let pulled =
            m["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull";
        let running = u["status"]["phase"] == "Running";
        if pulled && running {
            assert_eq!(m["status"]["phase"], "Pending");
            assert_eq!(u["status"]["conditions"][2]["status"], "False");
            assert_eq!(u["status"]["containerStatuses"][0]["ready"], false);
            break;
        }
        assert!(Instant::now() < deadline, "{m}\n{u}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fed.network(), Network::Simulated);
    assert!(matches!(
        fed.cut("a", "b"),
        Err(kube_sim::NetworkError::NotReal)
    ));
    let cut_without_real = Federation::builder()
        .zones(["a", "b"])
        .cut("a", "b")
        .start();
    assert!(matches!(
        cut_without_real,
        Err(kube_sim::StartError::Network(
            kube_sim::NetworkError::NotReal
        ))
    ));
}

/// Tests that route the LB ranges from the host take turns: two
/// federations cannot both route 10.150.0.0/16.
static HOST_ROUTES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `kube-sim up --network real --host-lb-routes` in the background; the
/// child and its namespace prefix.
fn up_real(dir: &Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let state = dir.join("state.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["up", "--zones", "a,b", "--network", "real", "--cut", "a:b"])
        .arg("--host-lb-routes")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--state-file")
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kube-sim starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let line = rx.recv_timeout(WAIT).expect("a ready line");
    assert!(line.starts_with("ready "), "{line}");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let netns = state["clusters"][1]["netns"]
        .as_str()
        .expect("the state file names the namespaces");
    let prefix = netns.rsplit_once('-').expect("ksim-<pid>-<n>-<i>").0;
    assert_eq!(prefix, format!("ksim-{}-0", child.id()));
    (child, prefix.to_string())
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "kube-sim did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn up_real_cleans_up_on_sigterm_and_cleanup_removes_what_sigkill_left() {
    if !real_network_available() {
        return;
    }
    let _turn = HOST_ROUTES.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();

    let (mut child, prefix) = up_real(dir.path());
    assert!(netns_list().contains(&format!("{prefix}-core")));
    let hif = format!("kh{}", prefix.trim_start_matches("ksim-"));
    assert!(
        host_links().contains(&format!(" {hif}@")),
        "{}",
        host_links()
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(wait_exit(&mut child).success());
    assert!(!netns_list().contains(&prefix), "{}", netns_list());
    assert!(!host_links().contains(&hif), "the host link goes on exit");
    assert!(!Path::new("/etc/netns").join(format!("{prefix}-0")).exists());

    let (mut child, prefix) = up_real(dir.path());
    let hif = format!("kh{}", prefix.trim_start_matches("ksim-"));
    child.kill().expect("SIGKILL");
    wait_exit(&mut child);
    assert!(netns_list().contains(&format!("{prefix}-core")));
    assert!(host_links().contains(&hif), "SIGKILL leaves the host link");
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .arg("cleanup")
        .output()
        .expect("kube-sim cleanup runs");
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("removed netns {prefix}-core")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("removed host link {hif}")),
        "{printed}"
    );
    assert!(!host_links().contains(&hif));
    assert!(!netns_list().contains(&prefix), "{}", netns_list());
    assert!(!Path::new("/etc/netns").join(format!("{prefix}-1")).exists());
    assert!(!std::env::temp_dir().join(&prefix).exists());
    let pgrep = Command::new("pgrep")
        .args(["-f", &format!("/{prefix}/")])
        .output()
        .expect("pgrep runs");
    assert!(
        pgrep.stdout.is_empty(),
        "dnsmasq of a killed kube-sim survived cleanup"
    );
}

#[test]
fn up_real_needs_root() {
    if !real_network_available() || !have("setpriv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["up", "--zones", "a", "--network", "real", "--kubeconfig"])
        .arg(dir.path().join("kubeconfig"))
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the real network needs root"), "{err}");
}

/// `ip -4 route get ADDR` on the host.
fn host_route(addr: &str) -> String {
    let out = Command::new("ip")
        .args(["-4", "route", "get", addr])
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// One UDP DNS query from the host; the response code, or None on timeout.
fn host_dns_query(server: &str, name: &str) -> Option<u8> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, (server, 53)).unwrap();
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).ok().map(|_| buf[3] & 0x0f)
}

#[test]
fn host_lb_routes_reach_the_dns_load_balancers_and_go_with_the_federation() {
    if !real_network_available() {
        return;
    }
    let _turn = HOST_ROUTES.lock().unwrap_or_else(|p| p.into_inner());
    let fed = real(&["lb-a", "lb-b"], Flavor::Gke)
        .host_lb_routes(true)
        .start()
        .expect("the real network starts");
    // A second federation cannot take the same ranges over.
    let second = real(&["lb-c"], Flavor::Gke).host_lb_routes(true).start();
    match second {
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            assert!(
                chain.contains("already routes addresses in 10.150.0.0/16"),
                "{chain}"
            );
        }
        Ok(_) => panic!("a second federation took over the host LB routes"),
    }
    let prefix = fed.network_prefix().expect("real network").to_string();
    let hif = format!("kh{}", prefix.trim_start_matches("ksim-"));
    let mut lb_ips = Vec::new();
    for zone in ["lb-a", "lb-b"] {
        let c = fed.cluster(zone);
        c.put(
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns-lb", "namespace": "kube-system"},
                "spec": {"type": "LoadBalancer", "selector": {"k8s-app": "kube-dns"},
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
            }),
            "test",
        )
        .unwrap();
        let deadline = Instant::now() + WAIT;
        let ip = loop {
            if let Some(ip) = c
                .get("v1", "Service", Some("kube-system"), "kube-dns-lb")
                .and_then(|s| s.pointer("/status/loadBalancer/ingress/0/ip").cloned())
                .and_then(|v| v.as_str().map(String::from))
            {
                break ip;
            }
            assert!(Instant::now() < deadline, "no LB address in {zone}");
            std::thread::sleep(Duration::from_millis(20));
        };
        lb_ips.push(ip);
    }
    for ip in &lb_ips {
        // Only ever send where the route leads into this federation.
        let route = host_route(ip);
        assert!(route.contains(&format!("dev {hif}")), "{ip}: {route}");
        let deadline = Instant::now() + WAIT;
        loop {
            if host_dns_query(ip, "kube-dns.kube-system.svc.cluster.local") == Some(0) {
                break;
            }
            assert!(Instant::now() < deadline, "no DNS answer from {ip}");
        }
    }
    // Nothing but the LB ranges: pod addresses are not routed this way.
    let pod_route = host_route(&fed.cluster("lb-a").pod_cidr().replace("0/16", "10"));
    assert!(!pod_route.contains(&hif), "{pod_route}");
    drop(fed);
    for ip in &lb_ips {
        assert!(
            !host_route(ip).contains(&hif),
            "the route went with the federation"
        );
    }
    assert!(!host_links().contains(&hif));
}
