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
use kube_sim::{Federation, Flavor};
use serde_json::Value;

const ZONES: [&str; 3] = ["us-east1-b", "us-west1-a", "us-central1-a"];
const SELECTOR_KEY: &str = "app.kubernetes.io/managed-by";

struct Env {
    fed: Federation,
    dir: tempfile::TempDir,
}

impl Env {
    fn start(
        flavor: Flavor,
        zones: &[&str],
        configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
    ) -> Env {
        let builder = Federation::builder()
            .zones(zones.iter().copied())
            .flavor(flavor)
            .lb_delay(Duration::from_millis(150))
            .seed_user_dns(true);
        let fed = configure(builder).start().expect("kube-sim starts");
        Env {
            fed,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config for `zones` (context = zone name, as kube-sim names them).
    fn config(&self, name: &str, zones: &[&str], extra: &str) -> PathBuf {
        let mut text = format!("{extra}\n");
        for z in zones {
            let region = z.rsplit_once('-').map(|(r, _)| r).unwrap_or(z);
            text.push_str(&format!(
                "\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\nregion = \"{region}\"\n"
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .arg("--kubeconfig")
            .arg(self.fed.kubeconfig_path())
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1");
        if matches!(args.first(), Some(&"apply") | Some(&"diff")) {
            cmd.arg("--lb-resolver")
                .arg(self.fed.dns_addr().to_string());
        }
        let out = cmd.output().expect("binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        out
    }

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
        let mut found = Vec::new();
        for c in self.fed.clusters() {
            for (av, kind) in [
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
            ] {
                for o in c.list(av, kind, None) {
                    if o.pointer(&format!(
                        "/metadata/labels/{}",
                        SELECTOR_KEY.replace('/', "~1")
                    ))
                    .is_some()
                    {
                        found.push(format!("{}: {kind} {}", c.zone(), o["metadata"]["name"]));
                    }
                }
            }
        }
        found
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr:\n{}\nstdout:\n{}",
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
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
    let env = Env::start(flavor, &ZONES, |b| b);
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
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("no changes"), "{}", stderr(&out));
    for c in env.fed.clusters() {
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
        |host| {
            assert!(
                host.parse::<std::net::IpAddr>().is_err(),
                "EKS LBs report hostnames, got {host}"
            );
            kube_sim::resolve_lb_hostname(host)
                .expect("a kube-sim LB hostname")
                .to_string()
        },
    );
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
