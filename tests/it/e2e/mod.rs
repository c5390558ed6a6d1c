//! End-to-end tests of `apply`, `diff` and `teardown`: the real binary
//! against kube-sim's simulated clusters over real HTTPS, through a real
//! kubeconfig. State is checked from kube-sim's side (its store and its
//! request log), never from the binary's own output alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crdb_multiregion::certs::{self, CertSettings, NodeIdentity};
use crdb_multiregion::config::Config;
use crdb_multiregion::dns::{self, DnsProvider};
use crdb_multiregion::plan::{self, Facts};
use crdb_multiregion::render::Templates;
use kube_sim::Flavor;
use serde_json::Value;

mod connecting;
mod rolling;
mod strict;
mod terminal;
mod zones;

const ZONES: [&str; 3] = ["us-east1-b", "us-west1-a", "us-central1-a"];
const SELECTOR_KEY: &str = "app.kubernetes.io/managed-by";

use crate::harness::{Env, assert_exit, faults, stderr, wait_bounded};

/// What the e2e tests ask of the federation beyond the shared harness.
impl Env {
    fn apply(&self, config: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["apply", config.to_str().unwrap(), "--wait-timeout", "20s"];
        args.extend(extra);
        self.run(&args)
    }

    fn teardown(&self, config: &Path) -> Output {
        self.run(&[
            "teardown",
            config.to_str().unwrap(),
            "--yes",
            "--wait-timeout",
            "20s",
        ])
    }

    /// Every object carrying our label, in every cluster.
    fn owned(&self) -> Vec<String> {
        self.labelled(
            SELECTOR_KEY,
            &[
                ("v1", "Namespace"),
                ("v1", "Service"),
                ("v1", "Secret"),
                ("v1", "ServiceAccount"),
                ("v1", "ConfigMap"),
                ("v1", "PersistentVolumeClaim"),
                ("v1", "Pod"),
                ("rbac.authorization.k8s.io/v1", "Role"),
                ("rbac.authorization.k8s.io/v1", "RoleBinding"),
                ("policy/v1", "PodDisruptionBudget"),
                ("apps/v1", "StatefulSet"),
                ("batch/v1", "Job"),
            ],
        )
    }

    fn dns_data(&self, zone: &str, provider: DnsProvider) -> BTreeMap<String, String> {
        self.fed
            .cluster(zone)
            .get(
                "v1",
                "ConfigMap",
                Some("kube-system"),
                provider.configmap_name(),
            )
            .and_then(|cm| serde_json::from_value(cm["data"].clone()).ok())
            .unwrap_or_default()
    }

    fn lb_ip(&self, zone: &str) -> String {
        let svc = self
            .fed
            .cluster(zone)
            .get("v1", "Service", Some("kube-system"), "kube-dns-lb")
            .expect("kube-dns-lb exists");
        let ingress = &svc["status"]["loadBalancer"]["ingress"][0];
        ingress["ip"]
            .as_str()
            .or(ingress["hostname"].as_str())
            .unwrap()
            .to_string()
    }
}

const APPLY_SCHEMA: &str = include_str!("../../../docs/apply-report.schema.json");

/// `report` is valid against docs/apply-report.schema.json.
fn validate_apply_report(report: &Value) {
    crate::harness::validate(APPLY_SCHEMA, report);
}

/// `planned` is contained in `stored`: every planned field is there with the
/// planned value (the server may add defaults and status).
fn contains(stored: &Value, planned: &Value, path: &str) -> Result<(), String> {
    match (stored, planned) {
        (Value::Object(s), Value::Object(p)) => {
            for (k, v) in p {
                let sv = s.get(k).ok_or_else(|| format!("{path}.{k} missing"))?;
                contains(sv, v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(s), Value::Array(p)) if s.len() == p.len() => {
            for (i, (a, b)) in s.iter().zip(p).enumerate() {
                contains(a, b, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (s, p) if s == p => Ok(()),
        (s, p) => Err(format!("{path}: stored {s} != planned {p}")),
    }
}

/// Every planned object is in its cluster with the planned content.
fn assert_planned_objects_present(env: &Env, config_path: &Path) {
    let config = Config::load(config_path).unwrap();
    let settings = CertSettings {
        certs_dir: env.dir.path().join(&config.certs.dir),
        ca_key_path: env.dir.path().join(&config.certs.ca_key),
        key_type: config.certs.key_type,
    };
    let nodes: Vec<NodeIdentity> = config
        .zones
        .iter()
        .map(|z| NodeIdentity {
            zone: z.name.clone(),
            namespace: z.namespace.clone(),
            cluster_domain: config.cluster_domain.clone(),
        })
        .collect();
    let bundle = certs::load_certs(&settings, &nodes)
        .unwrap()
        .expect("apply wrote certificates");
    let plan = plan::plan(&config, &bundle, &Facts::default(), &Templates::builtin()).unwrap();
    for zone in &plan.zones {
        let c = env.fed.cluster(&zone.zone);
        for p in &zone.objects {
            let o = &p.object;
            let stored = c
                .get(o.api_version(), o.kind(), o.namespace(), o.name())
                .unwrap_or_else(|| panic!("{}: {} missing", zone.zone, o.describe()));
            contains(&stored, &o.to_value(), &o.describe())
                .unwrap_or_else(|e| panic!("{}: {e}", zone.zone));
        }
    }
}

/// Our forwarding in `zone` points at every OTHER zone's DNS LB, and only those.
fn assert_forwarding(
    env: &Env,
    zones: &[&str],
    provider: DnsProvider,
    resolve: impl Fn(&str) -> String,
) {
    for zone in zones {
        let data = env.dns_data(zone, provider);
        let forwards = dns::parse_forwards(provider, &data).unwrap();
        for other in zones.iter().filter(|z| *z != zone) {
            let domain = format!("{other}.svc.cluster.local");
            let f = forwards
                .iter()
                .find(|f| f.domain == domain)
                .unwrap_or_else(|| panic!("{zone}: no forwarding for {domain} in {data:?}"));
            let want = resolve(&env.lb_ip(other));
            assert_eq!(
                f.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                vec![want],
                "{zone} -> {other}"
            );
        }
        assert!(
            !forwards
                .iter()
                .any(|f| f.domain == format!("{zone}.svc.cluster.local")),
            "{zone} must not forward its own domain (a loop)"
        );
    }
}

fn init_jobs(env: &Env) -> Vec<String> {
    env.fed
        .clusters()
        .iter()
        .flat_map(|c| {
            c.list("batch/v1", "Job", None)
                .into_iter()
                .map(move |j| format!("{}/{}", c.zone(), j["metadata"]["name"].as_str().unwrap()))
        })
        .collect()
}

fn full_cycle(
    flavor: Flavor,
    provider: DnsProvider,
    extra_config: &str,
    resolve: impl Fn(&str) -> String,
) {
    full_cycle_on(flavor, |b| b, provider, extra_config, resolve)
}

/// [`full_cycle`] on a federation that `configure` makes stricter.
fn full_cycle_on(
    flavor: Flavor,
    configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
    provider: DnsProvider,
    extra_config: &str,
    resolve: impl Fn(&str) -> String,
) {
    let env = Env::start(flavor, &ZONES, configure);
    let seeded: Vec<_> = ZONES
        .iter()
        .map(|z| {
            env.fed.cluster(z).get(
                "v1",
                "ConfigMap",
                Some("kube-system"),
                provider.configmap_name(),
            )
        })
        .collect();
    let config = env.config("config.toml", &ZONES, extra_config);

    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    assert_planned_objects_present(&env, &config);
    assert_forwarding(&env, &ZONES, provider, &resolve);
    assert_eq!(
        init_jobs(&env),
        vec!["us-east1-b/cluster-init-secure".to_string()]
    );
    // The user's own DNS customisations survive the merge.
    for z in ZONES {
        let before = seeded[ZONES.iter().position(|x| *x == z).unwrap()].clone();
        let before: BTreeMap<String, String> = before
            .and_then(|cm| serde_json::from_value(cm["data"].clone()).ok())
            .unwrap_or_default();
        let now = env.dns_data(z, provider);
        assert_eq!(
            dns::remove(provider, &now).unwrap(),
            before,
            "{z}: removing our entries gives the user's config back"
        );
    }

    // A second apply with the same config changes nothing and restarts nothing.
    let rollouts: Vec<u32> = env
        .fed
        .clusters()
        .iter()
        .map(|c| c.rollouts("kube-system", dns_deployment(flavor)))
        .collect();
    for c in env.fed.clusters() {
        c.clear_requests();
    }
    let connections_before: Vec<u64> = env.fed.clusters().iter().map(|c| c.connections()).collect();
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("no changes"), "{}", stderr(&out));
    for (c, before) in env.fed.clusters().iter().zip(connections_before) {
        let writes: Vec<String> = c
            .requests()
            .iter()
            .filter(|r| r.changed)
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            writes.is_empty(),
            "{}: second apply changed {writes:?}",
            c.zone()
        );
        // Converged: only reads, in one round of requests per cluster:
        // /version, a rules review for each of the zone namespace,
        // `default` and `kube-system`, kube-system's DNS Deployments and
        // ConfigMaps, the zone namespace, our Secrets, Services and
        // ConfigMaps by label, and the ServiceAccounts, Roles,
        // RoleBindings, PDBs and StatefulSets of the zone namespace.
        let requests = c.requests();
        let not_reads: Vec<String> = requests
            .iter()
            .filter(|r| r.method != "GET" && !r.path.ends_with("selfsubjectrulesreviews"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            not_reads.is_empty(),
            "{}: second apply made requests other than reads: {not_reads:?}",
            c.zone()
        );
        assert_eq!(
            requests.len(),
            15,
            "{}: requests of the converged apply: {:?}",
            c.zone(),
            requests
                .iter()
                .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
                .collect::<Vec<_>>()
        );
        // All of them on one HTTP/2 connection, the only one opened (not
        // a TLS handshake each).
        let connections: std::collections::BTreeSet<u64> =
            requests.iter().map(|r| r.connection).collect();
        assert!(
            connections.len() == 1 && requests.iter().all(|r| r.protocol == "HTTP/2"),
            "{}: connections {connections:?}, protocols {:?}",
            c.zone(),
            requests.iter().map(|r| &r.protocol).collect::<Vec<_>>()
        );
        assert_eq!(
            c.connections() - before,
            1,
            "{}: connections opened by the converged apply",
            c.zone()
        );
    }
    let after: Vec<u32> = env
        .fed
        .clusters()
        .iter()
        .map(|c| c.rollouts("kube-system", dns_deployment(flavor)))
        .collect();
    assert_eq!(rollouts, after, "no DNS restart on an unchanged re-apply");

    let out = env.teardown(&config);
    assert_exit(&out, 0);
    assert_eq!(env.owned(), Vec::<String>::new());
    for (i, z) in ZONES.iter().enumerate() {
        let now = env.fed.cluster(z).get(
            "v1",
            "ConfigMap",
            Some("kube-system"),
            provider.configmap_name(),
        );
        assert_eq!(
            now.as_ref().map(|c| &c["data"]),
            seeded[i].as_ref().map(|c| &c["data"]),
            "{z}: DNS ConfigMap restored byte for byte"
        );
    }
    // The CA key is kept without --purge-local.
    assert!(env.path("my-safe-directory/ca.key").exists());
}

fn dns_deployment(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Gke => "kube-dns",
        _ => "coredns",
    }
}

#[test]
fn gke_kube_dns_with_ip_load_balancers() {
    full_cycle(Flavor::Gke, DnsProvider::KubeDns, "", |ip| ip.to_string());
}

#[test]
fn eks_coredns_with_hostname_load_balancers() {
    // The LB reports a hostname; apply must resolve it (through kube-sim's
    // DNS responder, --lb-resolver) because CoreDNS forwards to IPs only.
    full_cycle(
        Flavor::Eks,
        DnsProvider::CoreDns,
        "[dns]\ncloud = \"eks\"\nprotocols = [\"TCP\"]",
        resolve_lb_host,
    );
}

/// The address behind an EKS load balancer's hostname (kube-sim's DNS).
fn resolve_lb_host(host: &str) -> String {
    assert!(
        host.parse::<std::net::IpAddr>().is_err(),
        "EKS LBs report hostnames, got {host}"
    );
    kube_sim::resolve_lb_hostname(host)
        .expect("a kube-sim LB hostname")
        .to_string()
}

#[test]
fn aks_coredns_custom() {
    full_cycle(
        Flavor::Aks,
        DnsProvider::CoreDnsCustom,
        "[dns]\ncloud = \"aks\"",
        |ip| ip.to_string(),
    );
}

fn changing_writes(env: &Env) -> Vec<String> {
    env.fed
        .clusters()
        .iter()
        .flat_map(|c| {
            c.requests()
                .into_iter()
                .filter(|r| r.changed)
                .map(move |r| format!("{}: {} {}", c.zone(), r.method, r.path))
        })
        .collect()
}

#[test]
fn unreachable_cluster_stops_apply_before_any_change() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    env.set_faults("us-west1-a", |f| f.down = true);
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("error: pre-flight failed in zone us-west1-a (context us-west1-a), nothing was changed: the API server"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    assert!(
        !env.path("my-safe-directory/ca.key").exists(),
        "nothing written locally either"
    );

    // Back up: a re-run converges.
    env.fed
        .cluster("us-west1-a")
        .set_faults(kube_sim::Faults::default());
    assert_exit(&env.apply(&config, &[]), 0);
    assert_planned_objects_present(&env, &config);
}

#[test]
fn transient_503s_are_retried() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    for c in env.fed.clusters() {
        c.set_faults(faults(|f| {
            f.error_rate = 0.25;
            f.error_code = 503;
        }));
    }
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    // Retried quietly: kube's per-attempt log lines are not for the user.
    assert!(!stderr(&out).contains("kube_client"), "{}", stderr(&out));
    let injected: usize = env
        .fed
        .clusters()
        .iter()
        .map(|c| c.requests().iter().filter(|r| r.status == 503).count())
        .sum();
    assert!(injected > 0, "the storm must actually have hit the client");
    for c in env.fed.clusters() {
        c.set_faults(kube_sim::Faults::default());
    }
    assert_planned_objects_present(&env, &config);
    assert_forwarding(&env, &ZONES, DnsProvider::KubeDns, |ip| ip.to_string());
}

#[test]
fn load_balancer_that_never_gets_an_address_times_out_naming_the_zone_after_the_workload_started() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    env.set_faults("us-central1-a", |f| f.lb_never_ready = true);
    let out = env.run(&["apply", config.to_str().unwrap(), "--wait-timeout", "4s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("us-central1-a    FAILED: waiting for the DNS load balancer address: timed out after 4s; last seen: Service kube-system/kube-dns-lb has no load balancer ingress yet"),
        "{err}"
    );
    // The other zones cannot forward to it, and say so instead of half-configuring DNS.
    assert!(err.contains("us-east1-b       FAILED: DNS forwarding not configured: no DNS load balancer address for us-central1-a"), "{err}");
    // The workload did not wait for the load balancers: every zone's pods
    // were started and the first zone ran `cockroach init`, while no DNS
    // config was touched (only its backup taken).
    for zone in ZONES {
        let c = env.fed.cluster(zone);
        let running = c
            .list("v1", "Pod", Some(zone))
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        assert_eq!(running, 3, "{zone}: CockroachDB pods running");
        assert!(
            !dns::has_ours(
                DnsProvider::KubeDns,
                &env.dns_data(zone, DnsProvider::KubeDns)
            ),
            "{zone}: DNS config changed although a load balancer has no address"
        );
        assert!(
            c.get(
                "v1",
                "ConfigMap",
                Some("kube-system"),
                "crdb-multiregion-dns-backup"
            )
            .is_some(),
            "{zone}: no DNS backup"
        );
    }
    assert_eq!(
        init_jobs(&env),
        vec!["us-east1-b/cluster-init-secure".to_string()]
    );
    assert_eq!(env.fed.availability()["initialised"], true);

    // Once the cloud provides the address, the next apply links the zones
    // and does not run `cockroach init` again.
    env.set_faults("us-central1-a", |f| f.lb_never_ready = false);
    let out = env.run(&["apply", config.to_str().unwrap(), "--wait-timeout", "60s"]);
    assert_exit(&out, 0);
    assert_forwarding(&env, &ZONES, DnsProvider::KubeDns, |ip| ip.to_string());
    assert_eq!(
        init_jobs(&env),
        vec!["us-east1-b/cluster-init-secure".to_string()]
    );
    let out = env.teardown(&config);
    assert_exit(&out, 0);
    for zone in ZONES {
        assert_eq!(
            env.fed.cluster(zone).get(
                "v1",
                "ConfigMap",
                Some("kube-system"),
                "crdb-multiregion-dns-backup"
            ),
            None,
            "{zone}: teardown left the DNS backup"
        );
    }
}

#[test]
fn load_balancer_refused_by_the_cloud_fails_early_with_the_clouds_reason() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    let zone = "us-central1-a";
    env.set_faults(zone, |f| f.lb_never_ready = true);
    let child = spawn_apply_until_lb(&env, &config, zone);
    // What the cloud-controller-manager's service controller records when
    // it gives up on a Service (k8s.io/cloud-provider controllers/service).
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "kube-dns-lb.1", "namespace": "kube-system"},
        "involvedObject": {"kind": "Service", "namespace": "kube-system", "name": "kube-dns-lb", "apiVersion": "v1"},
        "type": "Warning",
        "reason": "SyncLoadBalancerFailed",
        "message": "Error syncing load balancer: failed to ensure load balancer: mixed protocol is not supported for LoadBalancer",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "source": {"component": "service-controller"}
    });
    env.fed
        .cluster(zone)
        .put(event, "cloud-controller-manager")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    // The refusal, not the --wait-timeout (20s) timeout, ended the wait.
    assert!(
        err.contains("us-central1-a    FAILED: waiting for the DNS load balancer address: the cloud refused load balancer Service kube-system/kube-dns-lb: SyncLoadBalancerFailed: Error syncing load balancer: failed to ensure load balancer: mixed protocol is not supported for LoadBalancer"),
        "{err}"
    );
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn cluster_killed_mid_apply_then_reapply_converges() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    let victim = env.fed.cluster("us-west1-a");
    victim.set_lb_delay(Duration::from_secs(3));
    // Kill the cluster while apply waits for the load balancers.
    let child = spawn_apply_until_lb(&env, &config, "us-west1-a");
    victim.set_faults(faults(|f| f.down = true));
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("us-west1-a       FAILED"),
        "{}",
        stderr(&out)
    );

    victim.set_faults(kube_sim::Faults::default());
    victim.set_lb_delay(Duration::from_millis(100));
    assert_exit(&env.apply(&config, &[]), 0);
    assert_planned_objects_present(&env, &config);
    assert_forwarding(&env, &ZONES, DnsProvider::KubeDns, |ip| ip.to_string());
}

#[test]
fn adding_then_removing_a_zone_updates_every_cluster() {
    let four = [
        "us-east1-b",
        "us-west1-a",
        "us-central1-a",
        "europe-west1-b",
    ];
    let env = Env::start(Flavor::Gke, &four, |b| b);
    let three = env.config("three.toml", &four[..3], "");
    let all = env.config("four.toml", &four, "");
    assert_exit(&env.apply(&three, &[]), 0);

    assert_exit(&env.apply(&all, &[]), 0);
    assert_planned_objects_present(&env, &all);
    assert_forwarding(&env, &four, DnsProvider::KubeDns, |ip| ip.to_string());
    for z in four {
        let cm = env
            .fed
            .cluster(z)
            .get("v1", "ConfigMap", Some(z), "cockroachdb-join")
            .unwrap();
        let join = cm["data"]["join"].as_str().unwrap().to_string();
        assert!(
            join.contains("cockroachdb-2.cockroachdb.europe-west1-b"),
            "{z}: join list lacks the new zone: {join}"
        );
    }

    // Removing a zone is refused unless asked for explicitly.
    for c in env.fed.clusters() {
        c.clear_requests();
    }
    let out = env.apply(&three, &[]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("zone(s) europe-west1-b are no longer in the config"),
        "{}",
        stderr(&out)
    );
    assert_eq!(changing_writes(&env), Vec::<String>::new());

    assert_exit(&env.apply(&three, &["--prune"]), 0);
    assert_forwarding(&env, &four[..3], DnsProvider::KubeDns, |ip| ip.to_string());
    for z in &four[..3] {
        let data = env.dns_data(z, DnsProvider::KubeDns);
        assert!(
            !data["stubDomains"].contains("europe-west1-b"),
            "{z}: {data:?}"
        );
    }
}

#[test]
fn ssa_conflict_with_another_manager_stops_instead_of_forcing() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    let theirs = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns-lb", "namespace": "kube-system"},
        "spec": {"type": "NodePort", "selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns-udp", "port": 53, "protocol": "UDP"}]}
    });
    env.fed
        .cluster("us-east1-b")
        .put(theirs, "kubectl")
        .unwrap();
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("us-east1-b       FAILED: Service kube-system/kube-dns-lb is also managed by another tool"), "{err}");
    let svc = env
        .fed
        .cluster("us-east1-b")
        .get("v1", "Service", Some("kube-system"), "kube-dns-lb")
        .unwrap();
    assert_eq!(
        svc["spec"]["type"], "NodePort",
        "the other manager's value is not overwritten"
    );
}

#[test]
fn diff_shows_changes_without_writing() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    let out = env.run(&["diff", config.to_str().unwrap()]);
    assert_exit(&out, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("us-east1-b: create StatefulSet us-east1-b/cockroachdb"),
        "{stdout}"
    );
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    // A dry run says what would happen, not what happened.
    assert!(
        stderr(&out).contains("DNS would be updated"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["diff", config.to_str().unwrap(), "-o", "json"]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_apply_report(&report);
    assert_eq!(report["zones"][0]["objects"][0]["action"], "would-create");
    assert_eq!(report["zones"][0]["dns"], "would-update");

    let out = env.apply(&config, &["-o", "json"]);
    assert_exit(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_apply_report(&report);
    assert_eq!(report["zones"][0]["objects"][0]["action"], "created");
    let tuned = env.config(
        "tuned.toml",
        &ZONES,
        "[cockroachdb]\nmemory_limit = \"4Gi\"",
    );
    let out = env.run(&["diff", tuned.to_str().unwrap(), "-o", "json"]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_apply_report(&report);
    let sts = report["zones"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "StatefulSet" && o["name"] == "cockroachdb")
        .unwrap();
    assert_eq!(sts["action"], "would-configure");
    assert_eq!(sts["namespace"], "us-east1-b");
    let limit = sts["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "spec.template.spec.containers[0].resources.limits.memory")
        .unwrap_or_else(|| panic!("{sts}"));
    assert_eq!(
        (&limit["old"], &limit["new"]),
        (&Value::from("8Gi"), &Value::from("4Gi"))
    );
    let out = env.run(&["diff", config.to_str().unwrap()]);
    assert_exit(&out, 0);
}

/// A config of [`ZONES`] with `extra` in front and `replicas` in every zone.
fn config_with_replicas(env: &Env, name: &str, extra: &str, replicas: u32) -> PathBuf {
    let path = env.config(name, &ZONES, extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "\n[[zones]]\n",
        &format!("\n[[zones]]\nreplicas = {replicas}\n"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn diff_after_an_image_change_shows_old_and_new_image_per_zone_and_a_rolling_restart() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    let bumped = env.config(
        "bumped.toml",
        &ZONES,
        "[cockroachdb]\nimage = \"cockroachdb/cockroach:v99.1.0\"",
    );
    for c in env.fed.clusters() {
        c.clear_requests();
    }
    let out = env.run(&["diff", bumped.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for zone in ZONES {
        let block = zone_block(&stdout, zone);
        assert!(
            block.contains(&format!("{zone}: change StatefulSet {zone}/cockroachdb")),
            "{stdout}"
        );
        let minus: Vec<&str> = block
            .lines()
            .filter(|l| l.starts_with('-') && l.contains("image:"))
            .collect();
        let plus: Vec<&str> = block
            .lines()
            .filter(|l| l.starts_with('+') && l.contains("image:"))
            .collect();
        assert_eq!(minus.len(), 1, "{zone}: {block}");
        assert!(
            minus[0].ends_with(&format!(
                "image: {}",
                crdb_multiregion::names::DEFAULT_IMAGE
            )),
            "{zone}: {block}"
        );
        assert_eq!(plus.len(), 1, "{zone}: {block}");
        assert!(
            plus[0].ends_with("image: cockroachdb/cockroach:v99.1.0"),
            "{zone}: {block}"
        );
        assert!(
            block.contains(&format!("{zone}: warning: rolling restart of zone {zone}")),
            "{zone}: {block}"
        );
    }
    // Only what changes is shown: no other object of a zone changes.
    assert!(!stdout.contains(": change Service"), "{stdout}");
}

/// The lines of `text` that start with `zone: ` and the diff lines after
/// each (up to the next line of another zone).
fn zone_block(text: &str, zone: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some((prefix, _)) = line.split_once(": ")
            && ZONES.contains(&prefix)
            && !line.starts_with("---")
            && !line.starts_with("+++")
        {
            inside = prefix == zone;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn diff_after_a_replicas_decrease_warns_about_decommissioning() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    let config = config_with_replicas(&env, "config.toml", "", 3);
    assert_exit(&env.apply(&config, &[]), 0);
    let smaller = config_with_replicas(&env, "smaller.toml", "", 2);
    let out = env.run(&["diff", smaller.to_str().unwrap(), "--zone", "us-west1-a"]);
    assert_exit(&out, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("-  replicas: 3\n+  replicas: 2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("us-west1-a: warning: scale-down in zone us-west1-a from 3 to 2 replicas: apply first decommissions the CockroachDB nodes of pod(s) cockroachdb-2"),
        "{stdout}"
    );
    assert!(stdout.contains("cockroach node decommission"), "{stdout}");
    // --zone: only that zone is shown.
    assert!(
        !stdout.lines().any(|l| l.starts_with("us-east1-b:")),
        "{stdout}"
    );

    let out = env.run(&[
        "diff",
        smaller.to_str().unwrap(),
        "-o",
        "json",
        "--zone",
        "us-east1-b",
    ]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_apply_report(&report);
    let zones: Vec<&str> = report["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zone"].as_str().unwrap())
        .collect();
    assert_eq!(zones, ["us-east1-b"]);
    let sts = report["zones"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .unwrap();
    assert!(
        sts["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "spec.replicas" && f["old"] == 3 && f["new"] == 2),
        "{sts}"
    );
    assert!(
        sts["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("scale-down in zone us-east1-b from 3 to 2")),
        "{sts}"
    );

    let out = env.run(&["diff", smaller.to_str().unwrap(), "--zone", "us-wset1-a"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("(did you mean \"us-west1-a\"?)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn diff_of_a_storage_change_shows_it_and_says_kubernetes_refuses_it() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    let bigger = env.config("bigger.toml", &ZONES, "[cockroachdb]\nstorage = \"200Gi\"");
    for c in env.fed.clusters() {
        c.clear_requests();
    }
    let out = env.run(&["diff", bigger.to_str().unwrap(), "--zone", "us-east1-b"]);
    assert_exit(&out, 2);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('-') && l.ends_with(" storage: 100Gi")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('+') && l.ends_with(" storage: 200Gi")),
        "{stdout}"
    );
    assert!(
        stdout.contains("us-east1-b: warning: immutable field: Kubernetes does not allow changing spec.volumeClaimTemplates of StatefulSet us-east1-b/cockroachdb"),
        "{stdout}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("us-east1-b       FAILED: StatefulSet us-east1-b/cockroachdb:"),
        "{err}"
    );
    assert!(err.contains("--cascade=orphan"), "{err}");
    assert_eq!(changing_writes(&env), Vec::<String>::new());
}

#[test]
fn ctrl_c_stops_promptly_and_a_rerun_converges() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b.lb_delay(Duration::from_secs(30)));
    let config = env.config("config.toml", &ZONES, "");
    let child = spawn_apply_until_lb(&env, &config, "us-east1-b");
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    // Atomic writes go through hidden temporary files next to their target
    // (`.<name>.tmp-<pid>`).
    let leftovers: Vec<_> = walk(env.dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with('.') && n.contains(".tmp-")
            })
        })
        .collect();
    assert!(leftovers.is_empty(), "half-written files: {leftovers:?}");

    for c in env.fed.clusters() {
        c.set_lb_delay(Duration::from_millis(100));
    }
    assert_exit(&env.apply(&config, &[]), 0);
    assert_planned_objects_present(&env, &config);
}

/// Starts `apply` in the background and returns once it has created the DNS
/// load balancer in `zone` (bounded), i.e. while it waits for addresses.
fn spawn_apply_until_lb(env: &Env, config: &Path, zone: &str) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"))
        .current_dir(env.dir.path())
        .args([
            "apply",
            config.to_str().unwrap(),
            "--wait-timeout",
            "20s",
            "--kubeconfig",
        ])
        .arg(env.fed.kubeconfig_path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cluster = env.fed.cluster(zone);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cluster
        .get("v1", "Service", Some("kube-system"), "kube-dns-lb")
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "apply never reached {zone}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn teardown_needs_confirmation_without_a_terminal() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    let out = env.run(&["teardown", config.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("pass --yes to confirm"),
        "{}",
        stderr(&out)
    );
    assert!(
        !env.owned().is_empty(),
        "nothing deleted without confirmation"
    );
}

#[test]
fn teardown_dry_run_lists_what_would_go_and_changes_nothing() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    let owned_before = env.owned();
    let dns_before: Vec<_> = ZONES
        .iter()
        .map(|z| env.dns_data(z, DnsProvider::KubeDns))
        .collect();
    let writes_before = changing_writes(&env).len();

    // No --yes and no terminal: a dry run asks nothing.
    let out = env.run(&[
        "teardown",
        config.to_str().unwrap(),
        "--dry-run",
        "--purge-local",
    ]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    for z in ZONES {
        assert!(
            err.contains(&format!("{z}: would delete ")) && err.contains(&format!("Namespace {z}")),
            "{z}: {err}"
        );
        assert!(
            err.contains(&format!("{z}: would restart DNS (kube-dns)")),
            "{err}"
        );
    }
    assert!(
        err.contains("DNS: would restore the original, would restart"),
        "{err}"
    );
    assert!(
        err.contains("dry run finished in ") && err.contains("nothing was deleted or written"),
        "{err}"
    );
    assert!(
        err.contains("local certificates and manifests are not touched"),
        "{err}"
    );

    // Nothing changed anywhere: the servers only validated.
    assert_eq!(
        changing_writes(&env).len(),
        writes_before,
        "{:?}",
        changing_writes(&env)
    );
    assert_eq!(env.owned(), owned_before);
    let dns_after: Vec<_> = ZONES
        .iter()
        .map(|z| env.dns_data(z, DnsProvider::KubeDns))
        .collect();
    assert_eq!(dns_after, dns_before);
    assert!(env.path("certs").join("ca.crt").exists());

    // The real teardown still does it all.
    assert_exit(&env.teardown(&config), 0);
    assert!(env.owned().is_empty());

    // Once more, with nothing left: it says so in words.
    let again = env.teardown(&config);
    assert_exit(&again, 0);
    assert!(
        stderr(&again).contains(
            "us-west1-a       nothing of ours to delete; DNS untouched (no forwarding of ours in it) ("
        ),
        "{}",
        stderr(&again)
    );
}

#[test]
fn teardown_names_a_labelled_object_it_does_not_remove_and_how_to_remove_it() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    // Someone copied our labels onto an object of their own.
    env.fed
        .cluster("us-east1-b")
        .put(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "zombie", "namespace": "default", "labels": {
                    "app.kubernetes.io/managed-by": "crdb-multiregion",
                    "crdb-multiregion/federation": "cockroachdb"}},
                "data": {"a": "b"}}),
            "kubectl",
        )
        .unwrap();
    let out = env.teardown(&config);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("us-east1-b       LEFT BEHIND: ConfigMap default/zombie; ")
            && err.contains("(kubectl --context us-east1-b -n default delete configmap zombie)"),
        "{err}"
    );
    assert!(
        err.contains("re-running teardown does not remove them"),
        "{err}"
    );
    assert!(!err.contains("re-run teardown after"), "{err}");
    // Not deleted: teardown deletes only what it creates.
    assert!(
        env.fed
            .cluster("us-east1-b")
            .get("v1", "ConfigMap", Some("default"), "zombie")
            .is_some()
    );
}

#[test]
fn teardown_reports_what_does_not_go_away() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    env.set_faults("us-west1-a", |f| {
        f.namespace_delete_delay = Duration::from_secs(120)
    });
    let out = env.run(&[
        "teardown",
        config.to_str().unwrap(),
        "--yes",
        "--wait-timeout",
        "5s",
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("us-west1-a       FAILED: waiting for deletion: timed out after 5s; last seen: 14 object(s) still present: ConfigMap us-west1-a/cockroachdb-join, Namespace us-west1-a, "),
        "{err}"
    );
    assert!(err.contains("us-east1-b       "), "{err}");
    // Its DNS forwarding was removed all the same.
    assert!(!dns::has_ours(
        DnsProvider::KubeDns,
        &env.dns_data("us-west1-a", DnsProvider::KubeDns)
    ));
    // The other zones were torn down completely.
    for zone in ["us-east1-b", "us-central1-a"] {
        assert!(
            !env.owned().iter().any(|o| o.starts_with(zone)),
            "{zone}: {:?}",
            env.owned()
        );
    }
}

#[test]
fn teardown_with_an_unreachable_cluster_cleans_the_others_and_purge_local_waits() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    env.set_faults("us-central1-a", |f| f.down = true);
    let out = env.run(&[
        "teardown",
        config.to_str().unwrap(),
        "--yes",
        "--purge-local",
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("us-central1-a    FAILED: the API server https://127.0.0.1:")
            && err.contains(
                "is not reachable: client error (Connect): tcp connect error: Connection refused"
            ),
        "{err}"
    );
    // kube's own per-attempt log lines never reach the user by default.
    assert!(
        !err.contains("kube_client") && !err.contains("ERROR "),
        "{err}"
    );
    assert!(
        env.path("my-safe-directory/ca.key").exists(),
        "certs of a cluster that still runs are kept"
    );

    env.fed
        .cluster("us-central1-a")
        .set_faults(kube_sim::Faults::default());
    let out = env.run(&[
        "teardown",
        config.to_str().unwrap(),
        "--yes",
        "--purge-local",
    ]);
    assert_exit(&out, 0);
    assert_eq!(env.owned(), Vec::<String>::new());
    for gone in ["certs", "generated", "my-safe-directory/ca.key"] {
        assert!(!env.path(gone).exists(), "{gone} purged");
    }
}

#[test]
fn teardown_keeps_dns_changes_made_by_others_after_apply() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    // Someone adds a stub domain of their own after apply, keeping ours.
    let c = env.fed.cluster("us-east1-b");
    let mut cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
        .unwrap();
    let stub = cm["data"]["stubDomains"].as_str().unwrap().to_string();
    let edited = stub.replacen('{', "{\"corp.example\": [\"10.98.0.1\"], ", 1);
    cm["data"]["stubDomains"] = Value::String(edited);
    cm["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    c.put(cm, "kubectl-edit").unwrap();

    let out = env.teardown(&config);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("us-east1-b: DNS config: our forwarding removed; changes made by others since apply kept"), "{}", stderr(&out));
    let data = env.dns_data("us-east1-b", DnsProvider::KubeDns);
    let forwards = dns::parse_forwards(DnsProvider::KubeDns, &data).unwrap();
    let domains: Vec<&str> = forwards.iter().map(|f| f.domain.as_str()).collect();
    assert_eq!(domains.len(), 2, "{domains:?}");
    assert!(
        domains.contains(&"corp.example") && domains.contains(&"acme.internal"),
        "{domains:?}"
    );
    assert!(!dns::has_ours(DnsProvider::KubeDns, &data));
    assert_eq!(env.owned(), Vec::<String>::new());
}

#[test]
fn preflight_reports_missing_rights_and_old_servers_in_every_zone() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    env.set_faults("us-east1-b", |f| {
        f.denied = vec!["patch statefulsets".into(), "update configmaps".into()];
    });
    env.set_faults("us-central1-a", |f| f.server_minor = Some(24));
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("pre-flight failed in 2 zone(s)"), "{err}");
    assert!(
        err.contains("us-east1-b (context us-east1-b): not allowed to patch apps/statefulsets in namespace us-east1-b (hint: "),
        "{err}"
    );
    assert!(err.contains("us-east1-b (context us-east1-b): not allowed to update configmaps in namespace kube-system"), "{err}");
    // The version found, and the oldest one supported.
    assert!(
        err.contains(
            "us-central1-a (context us-central1-a): Kubernetes v1.24.0-kube-sim is not supported"
        ) && err.contains("1.26"),
        "{err}"
    );
    assert!(
        !err.contains("us-west1-a (context"),
        "a healthy zone is not reported: {err}"
    );
    assert_eq!(changing_writes(&env), Vec::<String>::new());
}

/// Where a webhook authorizer grants the permissions (EKS access entries,
/// GKE IAM, Azure RBAC), the rules reviews are incomplete: pre-flight asks
/// an access review for every permission they do not show, and those
/// answers decide, both ways.
#[test]
fn preflight_falls_back_to_access_reviews_where_a_webhook_authorizer_cannot_list_its_rules() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    for zone in ZONES {
        env.set_faults(zone, |f| f.webhook_authorizer = true);
    }
    env.set_faults("us-east1-b", |f| {
        f.webhook_authorizer = true;
        f.denied = vec!["delete namespaces".into()];
    });
    let access_reviews = |zone: &str| {
        env.fed
            .cluster(zone)
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("selfsubjectaccessreviews"))
            .count()
    };
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("pre-flight failed in zone us-east1-b (context us-east1-b), nothing was changed: not allowed to delete namespaces"),
        "{err}"
    );
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    // Each permission was asked about, since no rule showed it.
    for zone in ZONES {
        assert!(
            access_reviews(zone) >= 10,
            "{zone}: {} access reviews",
            access_reviews(zone)
        );
    }

    env.set_faults("us-east1-b", |f| {
        f.webhook_authorizer = true;
        f.denied.clear();
    });
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        init_jobs(&env),
        vec!["us-east1-b/cluster-init-secure".to_string()]
    );
}

// ---------------------------------------------------------------------------
// Local files and the CA

/// The changed objects of an `apply -o json` or `diff -o json` report, as
/// "zone: Kind ns/name".
fn changed_objects(out: &Output) -> Vec<String> {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    let mut changed = Vec::new();
    for z in report["zones"].as_array().unwrap() {
        for o in z["objects"].as_array().unwrap() {
            if o["action"] != "unchanged" {
                changed.push(format!(
                    "{}: {} {}/{}",
                    z["zone"].as_str().unwrap(),
                    o["kind"].as_str().unwrap(),
                    o["namespace"].as_str().unwrap(),
                    o["name"].as_str().unwrap()
                ));
            }
        }
    }
    changed
}

fn secret_ca(env: &Env, zone: &str, ns: &str, name: &str) -> Value {
    env.fed
        .cluster(zone)
        .get("v1", "Secret", Some(ns), name)
        .unwrap_or_else(|| panic!("{zone}: Secret {ns}/{name} missing"))["data"]["ca.crt"]
        .clone()
}

#[test]
fn diff_with_one_node_key_missing_shows_exactly_what_apply_does() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    std::fs::remove_file(env.path("certs/us-west1-a/node.key")).unwrap();
    let ca_before = std::fs::read(env.path("certs/ca.crt")).unwrap();

    let out = env.run(&["diff", config.to_str().unwrap(), "-o", "json"]);
    assert_exit(&out, 1);
    let diff = changed_objects(&out);
    assert_eq!(
        diff,
        ["us-west1-a: Secret us-west1-a/cockroachdb.node"],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out)
            .contains("us-west1-a: node certificate: would be regenerated (node.key is missing)"),
        "{}",
        stderr(&out)
    );
    assert!(
        !env.path("certs/us-west1-a/node.key").exists(),
        "diff writes nothing"
    );

    let out = env.apply(&config, &["-o", "json"]);
    assert_exit(&out, 0);
    assert_eq!(changed_objects(&out), diff, "apply did what diff showed");
    assert_eq!(std::fs::read(env.path("certs/ca.crt")).unwrap(), ca_before);
}

#[test]
fn apply_from_another_working_directory_changes_nothing() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    for c in env.fed.clusters() {
        c.clear_requests();
    }
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = env.run_in(
        &elsewhere,
        &["apply", config.to_str().unwrap(), "--wait-timeout", "20s"],
    );
    assert_exit(&out, 0);
    assert_eq!(
        changing_writes(&env),
        Vec::<String>::new(),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        walk(&elsewhere),
        Vec::<PathBuf>::new(),
        "nothing written where it ran"
    );
}

#[test]
fn apply_with_a_foreign_ca_in_the_clusters_exits_2_and_changes_nothing() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    let theirs = secret_ca(&env, "us-east1-b", "us-east1-b", "cockroachdb.node");
    let their_fp = crdb_multiregion::certs::fingerprint(
        &std::fs::read_to_string(env.path("certs/ca.crt")).unwrap(),
    )
    .unwrap();
    // Another CA locally: the clusters' CA is "foreign" to this config.
    let other = env.config(
        "other.toml",
        &ZONES,
        "[certs]\ndir = \"other-certs\"\nca_key = \"other-safe/ca.key\"",
    );
    assert_exit(&env.run(&["plan", other.to_str().unwrap()]), 0);
    let our_fp = crdb_multiregion::certs::fingerprint(
        &std::fs::read_to_string(env.path("other-certs/ca.crt")).unwrap(),
    )
    .unwrap();
    assert_ne!(our_fp, their_fp);
    for c in env.fed.clusters() {
        c.clear_requests();
    }

    for command in ["apply", "diff"] {
        let out = if command == "apply" {
            env.apply(&other, &[])
        } else {
            env.run(&["diff", other.to_str().unwrap()])
        };
        assert_exit(&out, 2);
        let err = stderr(&out);
        for zone in ZONES {
            assert!(
                err.contains(&format!(
                    "{zone}: Secret {zone}/cockroachdb.node has CA SHA-256 {their_fp}"
                )),
                "{command}: {err}"
            );
        }
        assert!(err.contains(&our_fp), "{command}: {err}");
        assert!(err.contains("--replace-ca"), "{command}: {err}");
        assert_eq!(changing_writes(&env), Vec::<String>::new(), "{command}");
    }
    assert_eq!(
        secret_ca(&env, "us-east1-b", "us-east1-b", "cockroachdb.node"),
        theirs
    );

    // A deliberate replacement.
    let out = env.apply(&other, &["--replace-ca"]);
    assert_exit(&out, 0);
    let ours = std::fs::read(env.path("other-certs/ca.crt")).unwrap();
    for zone in ZONES {
        let stored = secret_ca(&env, zone, zone, "cockroachdb.node");
        let stored: k8s_openapi::ByteString = serde_json::from_value(stored).unwrap();
        assert_eq!(stored.0, ours, "{zone}");
    }
}

/// Writes a config for `zones` of federation `federation`, each zone in
/// namespace `<prefix><zone>`.
fn federation_config(env: &Env, name: &str, federation: &str, prefix: &str) -> PathBuf {
    let mut text = format!(
        "federation = \"{federation}\"\n\n[certs]\ndir = \"{federation}-certs\"\nca_key = \"{federation}-ca/ca.key\"\n"
    );
    for z in ZONES {
        let region = z.rsplit_once('-').map(|(r, _)| r).unwrap_or(z);
        text.push_str(&format!(
            "\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\nregion = \"{region}\"\nnamespace = \"{prefix}{z}\"\n"
        ));
    }
    let path = env.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn dns_rollouts(env: &Env, deployment: &str) -> Vec<u32> {
    env.fed
        .clusters()
        .iter()
        .map(|c| c.rollouts("kube-system", deployment))
        .collect()
}

#[test]
fn a_second_federation_on_the_same_clusters_is_refused_naming_the_first_and_its_teardown_touches_nothing()
 {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    let first = federation_config(&env, "first.toml", "first", "");
    let second = federation_config(&env, "second.toml", "second", "b-");
    assert_exit(&env.apply(&first, &[]), 0);
    let dns_before: Vec<_> = ZONES
        .iter()
        .map(|z| env.dns_data(z, DnsProvider::KubeDns))
        .collect();
    let rollouts = dns_rollouts(&env, "kube-dns");
    let owned_before = env.owned();

    for c in env.fed.clusters() {
        c.clear_requests();
    }
    for prune in [&[][..], &["--prune"][..]] {
        let out = env.apply(&second, prune);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("federation \"second\" would share"), "{err}");
        for z in ZONES {
            assert!(
                err.contains(&format!(
                    "{z} (context {z}): Service kube-system/kube-dns-lb belongs to federation \"first\""
                )),
                "{err}"
            );
        }
        assert!(
            err.contains("Service default/cockroachdb-public belongs to federation \"first\""),
            "{err}"
        );
        assert!(
            err.contains("the DNS forwarding belongs to federation \"first\""),
            "{err}"
        );
        assert!(!err.contains("no longer in the config"), "{err}");
        assert_eq!(changing_writes(&env), Vec::<String>::new());
        assert!(
            !env.path("second-ca/ca.key").exists(),
            "refused before anything was written locally"
        );
    }

    // Tearing down the never-applied second federation touches nothing of
    // the first's: no object, no DNS byte, no DNS restart.
    let out = env.teardown(&second);
    assert_exit(&out, 0);
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    assert!(
        stderr(&out).contains("the forwarding belongs to federation \"first\"; left alone"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.owned(), owned_before);
    for (i, z) in ZONES.iter().enumerate() {
        assert_eq!(env.dns_data(z, DnsProvider::KubeDns), dns_before[i], "{z}");
    }
    assert_eq!(dns_rollouts(&env, "kube-dns"), rollouts);
    assert_planned_objects_present(&env, &first);

    // The first tears down completely; then the second may use the clusters.
    assert_exit(&env.teardown(&first), 0);
    assert_eq!(env.owned(), Vec::<String>::new());
    assert_exit(&env.apply(&second, &[]), 0);
    assert_planned_objects_present(&env, &second);
    assert_forwarding_for(&env, "b-");
    assert_exit(&env.teardown(&second), 0);
    assert_eq!(env.owned(), Vec::<String>::new());
}

/// Every zone forwards every other zone's `<prefix><zone>` domain.
fn assert_forwarding_for(env: &Env, prefix: &str) {
    for zone in ZONES {
        let data = env.dns_data(zone, DnsProvider::KubeDns);
        let forwards = dns::parse_forwards(DnsProvider::KubeDns, &data).unwrap();
        for other in ZONES.iter().filter(|z| **z != zone) {
            let domain = format!("{prefix}{other}.svc.cluster.local");
            assert!(
                forwards.iter().any(|f| f.domain == domain),
                "{zone}: no forwarding for {domain}"
            );
        }
    }
}

fn edit_corefile(env: &Env, zone: &str, edit: impl FnOnce(&str) -> String) {
    let c = env.fed.cluster(zone);
    let mut cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "coredns")
        .unwrap();
    let text = cm["data"]["Corefile"].as_str().unwrap().to_string();
    cm["data"]["Corefile"] = Value::String(edit(&text));
    cm["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    c.put(cm, "kubectl-edit").unwrap();
}

fn corefile(env: &Env, zone: &str) -> String {
    env.dns_data(zone, DnsProvider::CoreDns)["Corefile"].clone()
}

fn backup_exists(env: &Env, zone: &str) -> bool {
    env.fed
        .cluster(zone)
        .get(
            "v1",
            "ConfigMap",
            Some("kube-system"),
            "crdb-multiregion-dns-backup",
        )
        .is_some()
}

#[test]
fn dns_markers_damaged_by_hand_stop_teardown_with_the_manual_fix_and_lose_nothing() {
    let env = Env::start(Flavor::Eks, &ZONES, |b| b);
    let config = env.config("config.toml", &ZONES, "[dns]\ncloud = \"eks\"");
    assert_exit(&env.apply(&config, &[]), 0);
    let user_block = "late.example:53 {\n    forward . 10.98.0.1\n}\n";
    // us-east1-b: the BEGIN line deleted; us-west1-a: the END line deleted.
    // Both then add a block of their own after ours.
    edit_corefile(&env, "us-east1-b", |t| {
        format!(
            "{}{user_block}",
            t.replace(&format!("{}\n", dns::BEGIN_MARKER), "")
        )
    });
    edit_corefile(&env, "us-west1-a", |t| {
        format!("{}\n{user_block}", t.replace(dns::END_MARKER, ""))
    });
    let damaged = [corefile(&env, "us-east1-b"), corefile(&env, "us-west1-a")];

    // A re-apply never takes the user's domains for removed zones of ours.
    let out = env.apply(&config, &[]);
    let err = stderr(&out);
    assert!(!err.contains("no longer in the config"), "{err}");
    assert_exit(&out, 2);
    assert!(err.contains("us-west1-a       FAILED"), "{err}");

    let out = env.teardown(&config);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(!err.contains("nothing of ours"), "{err}");
    assert!(
        err.contains("the ownership markers of crdb-multiregion are gone (edited by hand?) but forwarding apply added is still there (us-central1-a.svc.cluster.local, us-west1-a.svc.cluster.local)"),
        "{err}"
    );
    assert!(
        err.contains("To fix by hand: run `kubectl --context us-east1-b -n kube-system edit configmap coredns` and remove the server blocks for `us-central1-a.svc.cluster.local`, `us-west1-a.svc.cluster.local` from the Corefile"),
        "{err}"
    );
    assert!(
        err.contains("us-west1-a       FAILED: ConfigMap kube-system/coredns: ConfigMap `coredns` key `Corefile`: the section crdb-multiregion manages is damaged (a BEGIN marker without an END marker)"),
        "{err}"
    );
    // Nothing written over the user's edits, and the backups are kept.
    assert_eq!(
        [corefile(&env, "us-east1-b"), corefile(&env, "us-west1-a")],
        damaged
    );
    for z in ["us-east1-b", "us-west1-a"] {
        assert!(backup_exists(&env, z), "{z}: the backup is kept");
        assert!(corefile(&env, z).contains(user_block), "{z}");
    }
    // The undamaged zone was restored completely.
    assert!(!backup_exists(&env, "us-central1-a"));
    assert!(!dns::has_ours(
        DnsProvider::CoreDns,
        &env.dns_data("us-central1-a", DnsProvider::CoreDns)
    ));

    // The user follows the fix: our blocks and marker lines go.
    for z in ["us-east1-b", "us-west1-a"] {
        edit_corefile(&env, z, |t| {
            // Our server blocks, nested blocks (`forward . IP { force_tcp }`
            // on eks) included, and the marker lines.
            let mut out = String::new();
            let mut depth = 0usize;
            for line in t.split_inclusive('\n') {
                if depth == 0 && line.contains(".svc.cluster.local:53 {") {
                    depth = 1;
                    continue;
                }
                if depth > 0 {
                    depth += line.matches('{').count();
                    depth -= line.matches('}').count().min(depth);
                    continue;
                }
                let marker = line.trim() == dns::BEGIN_MARKER || line.trim() == dns::END_MARKER;
                if !marker {
                    out.push_str(line);
                }
            }
            out
        });
    }
    let out = env.teardown(&config);
    assert_exit(&out, 0);
    for z in ZONES {
        assert!(!backup_exists(&env, z), "{z}: backup removed once clean");
    }
    for z in ["us-east1-b", "us-west1-a"] {
        assert!(corefile(&env, z).contains(user_block), "{z}");
    }
}

#[test]
fn purge_local_deletes_only_files_the_tool_wrote() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    // A shared directory holding someone else's files, as generated_dir.
    let shared = env.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("team-notes.txt"), "keep me\n").unwrap();
    let project = env.path("project");
    std::fs::create_dir_all(&project).unwrap();
    let config = env.config("config.toml", &ZONES, "generated_dir = \"shared\"");
    let config_in_project = project.join("config.toml");
    std::fs::rename(&config, &config_in_project).unwrap();
    let text = std::fs::read_to_string(&config_in_project)
        .unwrap()
        .replace(
            "generated_dir = \"shared\"",
            "generated_dir = \"../shared\"",
        );
    std::fs::write(&config_in_project, text).unwrap();
    let config = config_in_project;

    assert_exit(&env.run(&["plan", config.to_str().unwrap()]), 0);
    assert_exit(&env.apply(&config, &[]), 0);
    // The user's own files next to ours, and one of ours edited.
    std::fs::write(shared.join("us-east1-b/99-extra.yaml"), "mine\n").unwrap();
    std::fs::write(project.join("certs/README"), "how we rotate\n").unwrap();
    let edited = shared.join("us-west1-a/dns-forwarding.yaml");
    std::fs::write(&edited, "# edited by hand\n").unwrap();

    let out = env.run(&[
        "teardown",
        config.to_str().unwrap(),
        "--yes",
        "--purge-local",
        "--wait-timeout",
        "20s",
    ]);
    assert_exit(&out, 0);
    let mut left: Vec<String> = walk(env.dir.path())
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            p.strip_prefix(env.dir.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "project/certs/README",
            "project/config.toml",
            "shared/team-notes.txt",
            "shared/us-east1-b/99-extra.yaml",
            "shared/us-west1-a/dns-forwarding.yaml",
        ],
        "{}",
        stderr(&out)
    );
    assert!(
        !project.join("my-safe-directory").exists(),
        "the CA key and its empty directory"
    );
    assert!(
        stderr(&out).contains("dns-forwarding.yaml: changed since"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_namespace_that_existed_before_apply_survives_teardown_with_the_users_configmap() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    let c = env.fed.cluster("us-west1-a");
    c.put(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "us-west1-a", "labels": {"team": "db"}}}),
        "kubectl",
    )
    .unwrap();
    c.put(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep-me", "namespace": "us-west1-a"}, "data": {"a": "b"}}),
        "kubectl",
    )
    .unwrap();
    let config = env.config("config.toml", &ZONES, "");
    assert_exit(&env.apply(&config, &[]), 0);
    assert_planned_objects_present(&env, &config);

    let out = env.teardown(&config);
    assert_exit(&out, 0);
    let ns = c
        .get("v1", "Namespace", None, "us-west1-a")
        .expect("the user's namespace survives");
    assert_eq!(ns["metadata"]["labels"]["team"], "db");
    assert!(ns["metadata"].get("deletionTimestamp").is_none());
    let cm = c
        .get("v1", "ConfigMap", Some("us-west1-a"), "keep-me")
        .expect("the user's ConfigMap survives");
    assert_eq!(cm["data"]["a"], "b");
    assert!(
        stderr(&out).contains("namespace(s) us-west1-a kept (they existed before apply)"),
        "{}",
        stderr(&out)
    );
    // Everything of ours is gone, in that namespace too; the namespaces
    // apply created are deleted.
    assert_eq!(env.owned(), Vec::<String>::new());
    for z in ["us-east1-b", "us-central1-a"] {
        assert!(
            env.fed.cluster(z).get("v1", "Namespace", None, z).is_none(),
            "{z}"
        );
    }
}

/// The resourceVersion of `zone`'s kube-dns ConfigMap as stored ("" when
/// there is none).
fn dns_configmap_version(env: &Env, zone: &str) -> String {
    env.fed
        .cluster(zone)
        .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
        .and_then(|cm| cm["metadata"]["resourceVersion"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Waits until `zone`'s kube-dns ConfigMap is stored in another version
/// than `before`. Read from the store, not the request log: kube-sim adds
/// its latency to the answer, so the store has the write a whole latency
/// before the binary can send its next request (the DNS restart), while the
/// request log has it only once answered.
fn wait_for_dns_write(env: &Env, zone: &str, before: &str, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dns_configmap_version(env, zone) == before {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no write to the DNS ConfigMap of {zone}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pod_template_record(env: &Env, zone: &str) -> Option<String> {
    env.fed
        .cluster(zone)
        .get("apps/v1", "Deployment", Some("kube-system"), "kube-dns")
        .and_then(|d| {
            d["spec"]["template"]["metadata"]["annotations"]["crdb-multiregion/dns-forwarding"]
                .as_str()
                .map(String::from)
        })
}

fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"))
        .current_dir(env.dir.path())
        .args(args)
        .arg("--kubeconfig")
        .arg(env.fed.kubeconfig_path())
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every request to `zone` is slowed down, so that the request after the
/// DNS write (the restart) is still waiting when the cluster goes away:
/// kube-sim drops in-flight requests unanswered when it goes down. The
/// test sees the write in the store and takes the cluster down within
/// this time, so it is long enough for a test thread that a loaded CI
/// machine does not schedule at once (250 ms was not, once in a cold CI
/// run).
const SLOW: Duration = Duration::from_millis(750);

#[test]
fn dns_restart_interrupted_after_the_dns_write_is_redone_by_the_next_apply() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    let two = env.config("two.toml", &ZONES[..2], "");
    let three = env.config("three.toml", &ZONES, "");
    assert_exit(&env.apply(&two, &[]), 0);
    let victim = env.fed.cluster("us-east1-b");
    let rollouts = victim.rollouts("kube-system", "kube-dns");
    let record = pod_template_record(&env, "us-east1-b");

    // Adding a zone changes us-east1-b's forwarding; stop the cluster right
    // after that write, before the restart.
    victim.clear_requests();
    let dns_before = dns_configmap_version(&env, "us-east1-b");
    victim.set_faults(faults(|f| f.latency = SLOW));
    let mut child = spawn(
        &env,
        &[
            "apply",
            three.to_str().unwrap(),
            "--wait-timeout",
            "20s",
            "--lb-resolver",
            &env.fed.dns_addr().to_string(),
        ],
    );
    wait_for_dns_write(&env, "us-east1-b", &dns_before, &mut child);
    victim.set_faults(faults(|f| f.down = true));
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    victim.set_faults(kube_sim::Faults::default());
    assert!(
        env.dns_data("us-east1-b", DnsProvider::KubeDns)["stubDomains"]
            .contains("us-central1-a.svc.cluster.local"),
        "the new forwarding was written"
    );
    assert_eq!(
        victim.rollouts("kube-system", "kube-dns"),
        rollouts,
        "and DNS not restarted"
    );
    assert_eq!(pod_template_record(&env, "us-east1-b"), record);

    // diff sees the pending restart; apply does it; then diff is clean.
    let out = env.run(&["diff", three.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("us-east1-b: restart DNS"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = env.apply(&three, &[]);
    assert_exit(&out, 0);
    assert!(
        victim.rollouts("kube-system", "kube-dns") > rollouts,
        "DNS restarted: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("us-east1-b: DNS forwarding already in place (kube-dns) but its pods were not restarted for it; restarting deployment kube-dns"),
        "{}",
        stderr(&out)
    );
    assert_ne!(pod_template_record(&env, "us-east1-b"), record);
    let out = env.run(&["diff", three.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_forwarding(&env, &ZONES, DnsProvider::KubeDns, |ip| ip.to_string());
}

#[test]
fn dns_restart_interrupted_after_the_dns_restore_is_redone_by_the_next_teardown() {
    let env = Env::start(Flavor::Gke, &ZONES[..2], |b| b);
    let config = env.config("config.toml", &ZONES[..2], "");
    assert_exit(&env.apply(&config, &[]), 0);
    let victim = env.fed.cluster("us-east1-b");
    let rollouts = victim.rollouts("kube-system", "kube-dns");

    victim.clear_requests();
    let dns_before = dns_configmap_version(&env, "us-east1-b");
    victim.set_faults(faults(|f| f.latency = SLOW));
    let mut child = spawn(
        &env,
        &[
            "teardown",
            config.to_str().unwrap(),
            "--yes",
            "--wait-timeout",
            "20s",
        ],
    );
    wait_for_dns_write(&env, "us-east1-b", &dns_before, &mut child);
    victim.set_faults(faults(|f| f.down = true));
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    victim.set_faults(kube_sim::Faults::default());
    assert!(!dns::has_ours(
        DnsProvider::KubeDns,
        &env.dns_data("us-east1-b", DnsProvider::KubeDns)
    ));
    assert_eq!(victim.rollouts("kube-system", "kube-dns"), rollouts);

    let out = env.teardown(&config);
    assert_exit(&out, 0);
    assert!(
        victim.rollouts("kube-system", "kube-dns") > rollouts,
        "DNS restarted: {}",
        stderr(&out)
    );
    assert_eq!(pod_template_record(&env, "us-east1-b"), None);
    assert_eq!(env.owned(), Vec::<String>::new());
    // And a further teardown has nothing left to restart.
    let out = env.teardown(&config);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("DNS restarted"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// status

const STATUS_SCHEMA: &str = include_str!("../../../docs/status.schema.json");

/// `report` is valid against docs/status.schema.json.
fn validate_status_report(report: &Value) {
    crate::harness::validate(STATUS_SCHEMA, report);
}

fn status(env: &Env, config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["status", config.to_str().unwrap()];
    args.extend(extra);
    env.run(&args)
}

#[test]
fn status_of_a_healthy_federation_exits_0_and_its_json_follows_the_schema() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    for c in env.fed.clusters() {
        c.clear_requests();
    }

    let out = status(&env, &config, &["-o", "json"]);
    assert_exit(&out, 0);
    assert_eq!(
        changing_writes(&env),
        Vec::<String>::new(),
        "status only reads"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_status_report(&report);
    assert_eq!(report["ok"], true);
    let zones = report["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 3);
    for z in zones {
        let zone = z["zone"].as_str().unwrap();
        assert_eq!(z["ok"], true, "{z:#}");
        assert_eq!(z["dns_lb"]["addresses"][0], env.lb_ip(zone), "{z:#}");
        assert_eq!(z["dns_forwarding"]["status"], "ok", "{z:#}");
        for f in z["dns_forwarding"]["forwards"].as_array().unwrap() {
            let other = f["zone"].as_str().unwrap();
            assert_eq!(f["servers"][0], env.lb_ip(other), "{zone} -> {other}");
        }
        assert_eq!(z["statefulset"]["status"], "ok", "{z:#}");
        assert_eq!(
            (&z["statefulset"]["ready"], &z["statefulset"]["desired"]),
            (&Value::from(3), &Value::from(3))
        );
        // The nodes answer through the API server's pod proxy.
        assert_eq!(z["nodes"]["status"], "ok", "{z:#}");
        assert_eq!(z["nodes"]["pods"].as_array().unwrap().len(), 3, "{z:#}");
        assert_eq!(z["nodes"]["ranges_underreplicated"], 0, "{z:#}");
        assert_eq!(z["nodes"]["ranges_unavailable"], 0, "{z:#}");
        assert_eq!(z["certificates"]["status"], "ok", "{z:#}");
        // Local CA, root client, node certificate, and 6 in the Secrets.
        assert_eq!(
            z["certificates"]["certificates"].as_array().unwrap().len(),
            9,
            "{z:#}"
        );
    }

    let out = status(&env, &config, &[]);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("status: healthy (3 zone(s))\n"), "{text}");
    assert!(
        text.contains("us-west1-a (context us-west1-a): healthy"),
        "{text}"
    );
}

/// Takes our forwarding out of `zone`'s kube-dns ConfigMap, as someone
/// restoring an old copy of it would.
fn remove_forwarding(env: &Env, zone: &str) {
    let c = env.fed.cluster(zone);
    let mut cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
        .unwrap();
    let data = env.dns_data(zone, DnsProvider::KubeDns);
    let clean = dns::remove(DnsProvider::KubeDns, &data).unwrap();
    cm["data"] = serde_json::to_value(clean).unwrap();
    cm["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    c.put(cm, "kubectl-edit").unwrap();
}

#[test]
fn status_after_one_zones_forwarding_is_removed_exits_1_naming_the_zone() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    remove_forwarding(&env, "us-west1-a");

    let out = status(&env, &config, &[]);
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("us-west1-a (context us-west1-a): UNHEALTHY"),
        "{text}"
    );
    assert!(
        text.contains("status: 1 of 3 zone(s) unhealthy: us-west1-a (dns-forwarding: ConfigMap kube-system/kube-dns: no forwarding for zone us-east1-b (us-east1-b.svc.cluster.local); no forwarding for zone us-central1-a"),
        "{text}"
    );
    assert!(
        text.contains("us-east1-b (context us-east1-b): healthy"),
        "{text}"
    );

    let out = status(&env, &config, &["-o", "json"]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_status_report(&report);
    let bad: Vec<&str> = report["zones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|z| z["ok"] == false)
        .map(|z| z["zone"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["us-west1-a"]);

    // --zone: the other zones alone are healthy.
    let out = status(
        &env,
        &config,
        &["--zone", "us-east1-b", "--zone", "us-central1-a"],
    );
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("us-west1-a (context"), "{text}");

    // apply puts it back.
    assert_exit(&env.apply(&config, &[]), 0);
    assert_exit(&status(&env, &config, &[]), 0);
}

#[test]
fn status_with_a_zone_whose_api_server_is_down_exits_1_and_reports_the_others() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    env.set_faults("us-central1-a", |f| f.down = true);

    let out = status(&env, &config, &["--timeout", "5s"]);
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("us-central1-a (context us-central1-a): UNHEALTHY"),
        "{text}"
    );
    assert!(
        text.contains("us-east1-b (context us-east1-b): healthy"),
        "{text}"
    );
    // Its load balancer address is not known, so the others' forwarding to
    // it cannot be compared: unknown, not a failure.
    assert!(text.contains("us-central1-a forwarded to"), "{text}");
}

#[test]
fn status_after_a_scale_down_without_decommissioning_reports_under_replicated_ranges() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    assert_exit(&env.apply(&config, &[]), 0);
    assert_exit(&status(&env, &config, &[]), 0);

    // Someone scales us-west1-a down by hand, without decommissioning.
    let c = env.fed.cluster("us-west1-a");
    let mut sts = c
        .get("apps/v1", "StatefulSet", Some("us-west1-a"), "cockroachdb")
        .unwrap();
    sts["spec"]["replicas"] = Value::from(2);
    sts["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    c.put(sts, "kubectl-scale").unwrap();

    // The node of cockroachdb-2 goes down as its pod terminates; bounded.
    let mut last = None;
    for _ in 0..60 {
        let out = status(&env, &config, &["-o", "json"]);
        if out.status.code() == Some(1) {
            last = Some(out);
            break;
        }
        assert_exit(&out, 0);
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = last.expect("status turns unhealthy within 15s of the scale-down");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate_status_report(&report);
    let east = &report["zones"][0];
    assert_eq!(east["zone"], "us-east1-b");
    assert_eq!(east["ok"], false, "{east:#}");
    assert_eq!(east["nodes"]["status"], "fail", "{east:#}");
    assert!(
        east["nodes"]["ranges_underreplicated"].as_u64().unwrap() > 0,
        "{east:#}"
    );
    assert!(
        east["nodes"]["detail"]
            .as_str()
            .unwrap()
            .contains("under-replicated"),
        "{east:#}"
    );
}
