//! End-to-end tests of `check`: the real binary against kube-sim's
//! simulated clusters over real HTTPS, through a real kubeconfig.
//!
//! In kube-sim's default mode pods are marked Running but never run. These
//! tests prove the orchestration around the probes: probe objects in every
//! zone at once, refusal to make up results when the probers print nothing,
//! image pull failures, the time limit and Ctrl-C, and cleanup in every one
//! of those cases. Where a test needs probe output, a [`Runtime`] thread
//! plays the container runtime: it reads the prober's arguments, writes the
//! log a prober would print, and marks the pod finished, as a kubelet would.
//! The product's parsing, matrices and reports then run for real.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube_sim::Flavor;

use crate::harness::{self, assert_exit, stderr, stdout, wait_bounded, wait_until};
use serde_json::{Value, json};

const ZONES: [&str; 3] = ["us-east1-b", "us-west1-a", "us-central1-a"];
const PROBE_LABEL: &str = "crdb-multiregion/probe";
const SCHEMA: &str = include_str!("../../docs/check-report.schema.json");

/// The shared harness with the config of the federation's zones.
struct Env {
    sim: harness::Env,
    config: PathBuf,
}

impl std::ops::Deref for Env {
    type Target = harness::Env;
    fn deref(&self) -> &harness::Env {
        &self.sim
    }
}

impl Env {
    fn start(
        configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
    ) -> Env {
        Env::start_zones(&ZONES, configure)
    }

    /// Clusters and a config for `zones` (named `<region>-<x>`).
    fn start_zones(
        zones: &[&str],
        configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
    ) -> Env {
        let sim = harness::Env::start(Flavor::Gke, zones, |b| {
            configure(b.lb_delay(Duration::from_millis(100)).seed_user_dns(false))
        });
        let config = sim.config(
            "config.toml",
            zones,
            "[dns]\ncloud = \"gke\"\nprotocols = [\"UDP\", \"TCP\"]",
        );
        Env { sim, config }
    }

    fn command(&self, args: &[&str]) -> Command {
        self.sim.command(self.dir.path(), args, &[])
    }

    fn check(&self, extra: &[&str]) -> Output {
        let mut args = vec!["check", self.config.to_str().unwrap()];
        if !extra.contains(&"--wait-timeout") {
            args.extend(["--wait-timeout", "20s"]);
        }
        args.extend(extra);
        self.run(&args)
    }

    fn apply(&self) {
        let out = self.run(&[
            "apply",
            self.config.to_str().unwrap(),
            "--wait-timeout",
            "20s",
        ]);
        assert_exit(&out, 0);
    }

    /// Probe objects and namespaces labelled as probe objects, everywhere.
    fn probe_leftovers(&self) -> Vec<String> {
        self.labelled(
            PROBE_LABEL,
            &[("v1", "Pod"), ("v1", "Service"), ("v1", "Namespace")],
        )
    }

    /// A check started in the background (its probers give up after 1 s),
    /// once it has created `zone`'s namespace, labelled as a probe object.
    fn check_until_it_creates_namespace(&self, zone: &str) -> std::process::Child {
        let child = self
            .command(&[
                "check",
                self.config.to_str().unwrap(),
                "--wait-timeout",
                "20s",
                "--probe-timeout",
                "1s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let cluster = self.fed.cluster(zone);
        wait_until(&format!("the check creates namespace {zone}"), || {
            cluster
                .get("v1", "Namespace", None, zone)
                .is_some_and(|n| n["metadata"]["labels"].get(PROBE_LABEL).is_some())
        });
        child
    }

    fn namespace_exists(&self, zone: &str) -> bool {
        self.fed
            .cluster(zone)
            .get("v1", "Namespace", None, zone)
            .is_some()
    }
}

/// Plays the container runtime for the probe pods of the given clusters
/// until dropped: `on_pod(cluster, pod)` may return a new status (and set a
/// log), which is written through the status subresource, as a kubelet does.
struct Runtime {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Runtime {
    fn start(
        env: &Env,
        clusters: Vec<kube_sim::Cluster>,
        on_pod: impl Fn(&kube_sim::Cluster, &Value) -> Option<Value> + Send + 'static,
    ) -> Runtime {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let kubeconfig = env.fed.kubeconfig_path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
                let mut clients = BTreeMap::new();
                for c in &clusters {
                    let options = kube::config::KubeConfigOptions {
                        context: Some(c.context().to_string()),
                        ..Default::default()
                    };
                    let config = kube::Config::from_custom_kubeconfig(kc.clone(), &options)
                        .await
                        .unwrap();
                    clients.insert(
                        c.zone().to_string(),
                        kube::Client::try_from(config).unwrap(),
                    );
                }
                let mut handled = std::collections::BTreeSet::new();
                while !flag.load(Ordering::Relaxed) {
                    for c in &clusters {
                        for pod in c.list("v1", "Pod", None) {
                            let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
                            let labels = &pod["metadata"]["labels"];
                            if labels.get(PROBE_LABEL).is_none()
                                || labels.get("leftover").is_some()
                                || handled.contains(&uid)
                            {
                                continue;
                            }
                            let Some(status) = on_pod(c, &pod) else {
                                continue;
                            };
                            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                                kube::Api::namespaced(
                                    clients[c.zone()].clone(),
                                    pod["metadata"]["namespace"].as_str().unwrap(),
                                );
                            let patch = kube::api::Patch::Merge(json!({"status": status}));
                            if pods
                                .patch_status(
                                    pod_name(&pod),
                                    &kube::api::PatchParams::default(),
                                    &patch,
                                )
                                .await
                                .is_ok()
                            {
                                handled.insert(uid);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        Runtime {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pod_name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or("")
}

#[test]
fn probers_that_print_nothing_are_not_made_into_results_and_everything_is_removed() {
    let env = Env::start(|b| b);
    // us-west1-a's namespace exists already (with something of the user's
    // in it): the check must keep it.
    let west = env.fed.cluster("us-west1-a");
    west.put(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "us-west1-a", "labels": {"team": "db"}}}),
        "test",
    )
    .unwrap();
    west.put(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep-me", "namespace": "us-west1-a"}, "data": {"a": "b"}}),
        "test",
    )
    .unwrap();

    let out = env.check(&["--probe-timeout", "1s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("the probe pods produced no output we recognise"),
        "{err}"
    );
    for z in ZONES {
        assert!(
            err.contains(&format!("{z}: pod crdb-check-prober printed no results")),
            "{err}"
        );
    }
    assert!(err.contains("(probe objects were removed)"), "{err}");
    assert!(stdout(&out).is_empty());

    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
    assert!(!env.namespace_exists("us-east1-b"));
    assert!(!env.namespace_exists("us-central1-a"));
    assert!(env.namespace_exists("us-west1-a"));
    assert!(
        west.get("v1", "ConfigMap", Some("us-west1-a"), "keep-me")
            .is_some()
    );
    // Every cluster got its listener before any prober (one round).
    for c in env.fed.clusters() {
        let creates: Vec<String> = c
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
            .map(|r| r.path)
            .collect();
        assert_eq!(creates.len(), 2, "{}: {creates:?}", c.zone());
    }
}

#[test]
fn check_keeps_a_namespace_it_created_once_a_concurrent_apply_filled_it() {
    let env = Env::start(|b| b);
    // As soon as the check has created us-east1-b's namespace, an apply
    // writes its first Secret there (labelled as apply labels it).
    let child = env.check_until_it_creates_namespace("us-east1-b");
    let east = env.fed.cluster("us-east1-b");
    east.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cockroachdb.node", "namespace": "us-east1-b",
            "labels": {"app.kubernetes.io/managed-by": "crdb-multiregion", "crdb-multiregion/federation": "cockroachdb", "crdb-multiregion/zone": "us-east1-b"}},
            "data": {"node.key": "a2V5"}}),
        "crdb-multiregion",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_exit(&out, 2);
    assert!(env.namespace_exists("us-east1-b"));
    assert!(
        east.get("v1", "Secret", Some("us-east1-b"), "cockroachdb.node")
            .is_some(),
        "apply's Secret survives the check's cleanup"
    );
    assert!(
        stderr(&out).contains("us-east1-b: namespace us-east1-b now holds objects that are not the check's (Secret cockroachdb.node); keeping it"),
        "{}",
        stderr(&out)
    );
    // Only the probe objects went; the check's own namespaces elsewhere too.
    let pods_and_services: Vec<String> = env
        .probe_leftovers()
        .into_iter()
        .filter(|l| !l.contains(": Namespace "))
        .collect();
    assert_eq!(pods_and_services, Vec::<String>::new());
    assert!(!env.namespace_exists("us-west1-a"));
    assert!(!env.namespace_exists("us-central1-a"));
}

#[test]
fn check_keeps_a_namespace_it_created_once_a_concurrent_apply_took_it_on() {
    let env = Env::start(|b| b);
    // apply's first write in a zone is its namespace: it marks the one the
    // check created as created by us, before writing anything into it.
    let child = env.check_until_it_creates_namespace("us-west1-a");
    let west = env.fed.cluster("us-west1-a");
    let mut ns = west.get("v1", "Namespace", None, "us-west1-a").unwrap();
    ns["metadata"]["annotations"] = json!({"crdb-multiregion/created-namespace": "true"});
    ns["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    west.put(ns, "crdb-multiregion").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_exit(&out, 2);
    assert!(env.namespace_exists("us-west1-a"));
    assert!(
        stderr(&out).contains("namespace us-west1-a was taken on by apply"),
        "{}",
        stderr(&out)
    );
    assert!(!env.namespace_exists("us-east1-b"));
    assert!(!env.namespace_exists("us-central1-a"));
}

#[test]
fn image_pull_failures_stop_the_check_with_a_hint() {
    // Pods stay Pending; the runtime reports the pull failure a kubelet would.
    let env = Env::start(|b| b.pod_ready_delay(Duration::from_secs(600)));
    let _runtime = Runtime::start(&env, env.fed.clusters(), |_, pod| {
        let image = pod["spec"]["containers"][0]["image"].as_str()?;
        image.contains("does-not-exist").then(|| {
            json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{
                    "name": "probe", "image": image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": format!("failed to pull image \"{image}\": not found")}}
                }]
            })
        })
    });
    let out = env.check(&["--image", "registry.example/busybox:does-not-exist"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    for z in ZONES {
        assert!(
            err.contains(&format!(
                "{z}: pod crdb-check-listener cannot pull image registry.example/busybox:does-not-exist (ErrImagePull"
            )),
            "{err}"
        );
    }
    assert!(err.contains("use --image to point at a mirror"), "{err}");
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
    for z in ZONES {
        assert!(!env.namespace_exists(z));
    }
}

#[test]
fn unschedulable_probe_pods_stop_the_check() {
    let env = Env::start(|b| b.pod_ready_delay(Duration::from_secs(600)));
    let _runtime = Runtime::start(&env, vec![env.fed.cluster("us-central1-a")], |_, _| {
        Some(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}."}]
        }))
    });
    let out = env.check(&["--wait-timeout", "3s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(
            "us-central1-a: pod crdb-check-listener cannot be scheduled (Unschedulable: 0/1 nodes"
        ),
        "{err}"
    );
    // The other zones' listeners never ran: a timeout that says what it saw.
    assert!(err.contains("us-east1-b: waiting for listener"), "{err}");
    assert!(err.contains("without an IP"), "{err}");
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

/// What the runtime prints for a prober: every probe passes except TCP
/// between `cut` zones (both ways), with `ips` the listeners' pod IPs.
fn prober_log(zone: &str, args: &[String], cut: (&str, &str)) -> String {
    let mut out = String::from("BEGIN crdb-check 1\n");
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "tcp" => {
                let (to, ip, port) = (&args[i + 1], &args[i + 2], &args[i + 3]);
                if (zone, to.as_str()) == cut || (to.as_str(), zone) == cut {
                    out.push_str(&format!("TCP {to} {ip} {port} fail 3000 nc: timed out\n"));
                } else {
                    out.push_str(&format!("TCP {to} {ip} {port} ok 20\n"));
                }
                i += 4;
            }
            "dns" => {
                out.push_str(&format!(
                    "DNS {} {} ok LISTENER-{}\n",
                    args[i + 1],
                    args[i + 2],
                    args[i + 1]
                ));
                i += 3;
            }
            other => panic!("unexpected prober argument {other}"),
        }
    }
    out.push_str("DONE\n");
    out
}

/// A runtime whose probers "run" `prober_log` and succeed; DNS answers are
/// the listeners' real pod IPs.
fn scripted_runtime(env: &Env, cut: (&'static str, &'static str)) -> Runtime {
    let clusters = env.fed.clusters();
    let all = clusters.clone();
    Runtime::start(env, clusters, move |c, pod| {
        if pod_name(pod) != "crdb-check-prober" {
            return None;
        }
        let ns = pod["metadata"]["namespace"].as_str()?;
        let command: Vec<String> =
            serde_json::from_value(pod["spec"]["containers"][0]["command"].clone()).ok()?;
        let mut log = prober_log(c.zone(), &command[4..], cut);
        for other in &all {
            let listener = other.get("v1", "Pod", Some(other.zone()), "crdb-check-listener")?;
            let ip = listener.pointer("/status/podIP")?.as_str()?;
            log = log.replace(&format!("LISTENER-{}\n", other.zone()), &format!("{ip}\n"));
        }
        c.set_pod_log(ns, "crdb-check-prober", log);
        Some(json!({
            "phase": "Succeeded",
            "podIP": "10.99.0.1",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "probe", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
        }))
    })
}

/// `report` is valid against docs/check-report.schema.json.
fn validate(report: &Value) {
    harness::validate(SCHEMA, report);
}

fn statuses(report: &Value, check: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in report["results"].as_array().unwrap() {
        if r["check"] == check {
            out.entry((
                r["from"].as_str().unwrap().to_string(),
                r["to"].as_str().unwrap().to_string(),
            ))
            .or_default()
            .push(r["status"].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn before_apply_dns_is_skipped_and_pod_to_pod_is_reported() {
    let env = Env::start(|b| b);
    let _runtime = scripted_runtime(&env, ("", ""));
    let report_path = env.dir.path().join("report.json");
    let out = env.check(&[
        "-o",
        "json",
        "--report",
        report_path.to_str().unwrap(),
        "--http",
    ]);
    assert_exit(&out, 0);
    assert!(stdout(&out).is_empty(), "--report writes the file instead");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    validate(&report);
    assert_eq!(report["ok"], true);
    assert_eq!(report["ports"], json!([8080, 26257]));
    let tcp = statuses(&report, "tcp");
    assert_eq!(tcp.len(), 9);
    assert!(tcp.values().all(|s| s == &["pass", "pass"]));
    let dns = statuses(&report, "dns");
    assert_eq!(dns.len(), 6);
    for r in report["results"].as_array().unwrap() {
        if r["check"] == "dns" {
            assert_eq!(r["status"], "skip");
            assert_eq!(r["detail"], "DNS forwarding not configured yet (run apply)");
        }
        if r["check"] == "dns-lb" {
            assert_eq!(r["status"], "skip");
            assert_eq!(r["detail"], "no DNS load balancer (run apply)");
        }
    }
    // cidr runs in the default set too: kube-sim's pod ranges are distinct.
    let cidr = statuses(&report, "cidr");
    assert_eq!(cidr.len(), 6);
    assert!(cidr.values().all(|s| s == &["pass"]));
    let err = stderr(&out);
    assert!(err.contains("TCP 26257, pod to pod"), "{err}");
    assert!(err.contains("Pod CIDRs, overlap between clusters"), "{err}");
    assert!(err.contains("check passed: 24 passed, 0 failed"), "{err}");
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

#[test]
fn quiet_text_report_to_a_file_prints_nothing_on_stderr() {
    let env = Env::start(|b| b);
    let _runtime = scripted_runtime(&env, ("", ""));
    let report_path = env.dir.path().join("report.txt");
    let out = env.check(&[
        "-q",
        "-o",
        "text",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    let report = std::fs::read_to_string(&report_path).unwrap();
    assert!(report.contains("TCP 26257, pod to pod"), "{report}");
    assert!(stdout(&out).is_empty());
    assert_eq!(stderr(&out), "", "-q with --report: the file only");

    // Without --report, quiet text goes to stderr: there is nowhere else.
    let out = env.check(&["-q", "-o", "text"]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("TCP 26257, pod to pod"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

#[test]
fn after_an_eks_add_on_update_dns_from_that_zone_fails_naming_the_add_on() {
    // Without the seeded user DNS, the eks CoreDNS ConfigMap is the add-on's
    // (field manager `eks`, operation Apply), as on EKS.
    let env = Env::start(|b| b.flavor(Flavor::Eks).seed_user_dns(false));
    env.apply();
    // An add-on update with OVERWRITE puts the default Corefile back.
    env.fed.cluster("us-west1-a").addon_update().unwrap();
    let _runtime = scripted_runtime(&env, ("", ""));
    let out = env.check(&["-o", "json", "--only", "dns"]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    validate(&report);
    let dns: Vec<&Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == "dns")
        .collect();
    assert!(!dns.is_empty());
    for r in &dns {
        if r["from"] == "us-west1-a" {
            assert_eq!(r["status"], "fail", "{r}");
            assert!(
                r["hint"].as_str().unwrap().contains("EKS CoreDNS add-on"),
                "{r}"
            );
        } else {
            assert_ne!(r["status"], "fail", "{r}");
        }
    }
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

#[test]
fn after_apply_a_cut_pair_fails_in_both_directions_and_junit_says_so() {
    let env = Env::start(|b| b);
    env.apply();
    let _runtime = scripted_runtime(&env, ("us-east1-b", "us-central1-a"));
    let out = env.check(&["-o", "junit", "--only", "tcp,dns"]);
    assert_exit(&out, 1);
    let xml = stdout(&out);
    let suites = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
        .unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let mut failed = Vec::new();
    let mut passed = 0;
    for s in &suites.suites {
        for c in &s.cases {
            if c.status.is_failure() {
                failed.push(format!("{} {}", s.name, c.original_name));
            } else {
                assert!(c.status.is_success(), "{}: {:?}", c.original_name, c.status);
                passed += 1;
            }
        }
    }
    failed.sort();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(failed[0].starts_with("crdb-multiregion.check.tcp us-central1-a -> us-east1-b "));
    assert!(failed[1].starts_with("crdb-multiregion.check.tcp us-east1-b -> us-central1-a "));
    // 9 TCP pairs (7 pass) and 6 DNS pairs x 2 names, forwarded by apply.
    assert_eq!(passed, 7 + 12);
    let err = stderr(&out);
    assert!(
        err.contains("pod IPs of us-east1-b cannot reach us-central1-a:26257"),
        "{err}"
    );
    // The application's own namespaces are kept; the probe objects are gone.
    for z in ZONES {
        assert!(env.namespace_exists(z));
    }
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

#[test]
fn check_zone_probes_and_reports_only_the_pairs_of_that_zone() {
    let env = Env::start(|b| b);
    env.apply();
    // A cut between the two other zones: the full check fails on it.
    let _runtime = scripted_runtime(&env, ("us-east1-b", "us-central1-a"));
    let out = env.check(&["-o", "json", "--only", "tcp,dns"]);
    assert_exit(&out, 1);

    let out = env.check(&["-o", "json", "--only", "tcp,dns", "--zone", "us-west1-a"]);
    assert_exit(&out, 0);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    validate(&report);
    let tcp = statuses(&report, "tcp");
    let dns = statuses(&report, "dns");
    for (from, to) in tcp.keys().chain(dns.keys()) {
        assert!(
            from == "us-west1-a" || to == "us-west1-a",
            "{from} -> {to} does not involve us-west1-a"
        );
    }
    // Both ways: us-west1-a to each zone (itself included) and each other
    // zone to it; DNS for the pairs of different zones.
    assert_eq!(tcp.len(), 5, "{tcp:?}");
    assert_eq!(dns.len(), 4, "{dns:?}");
    assert!(tcp.values().flatten().all(|s| s == "pass"), "{tcp:?}");
    assert_eq!(report["summary"]["failed"], 0);
    // The text matrix shows the other pairs as not checked.
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("us-east1-b") && l.trim_end().ends_with('-')),
        "{err}"
    );
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

/// Ctrl-C, and SIGTERM as a CI runner sends when a job is cancelled.
#[test]
fn ctrl_c_or_sigterm_while_probing_removes_the_probe_objects() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let env = Env::start(|b| b);
        let mut child = env
            .command(&[
                "check",
                env.config.to_str().unwrap(),
                "--probe-timeout",
                "10m",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("probers in every cluster", || {
            env.fed.clusters().iter().all(|c| {
                c.get("v1", "Pod", Some(c.zone()), "crdb-check-prober")
                    .is_some()
            })
        });
        // SAFETY: signals only the child this test started.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        // A hang guard, not a measure: check must stop on the signal, far
        // sooner than its 10-minute probe timeout.
        let status = wait_bounded(
            &mut child,
            Duration::from_secs(60),
            &format!("check after signal {signal}"),
        );
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "signal {signal}: {err}");
        assert!(err.contains("error: interrupted"), "{err}");
        assert!(err.contains("(probe objects were removed)"), "{err}");
        assert_eq!(env.probe_leftovers(), Vec::<String>::new());
        for z in ZONES {
            assert!(!env.namespace_exists(z));
        }
    }
}

#[test]
fn an_unreachable_cluster_stops_check_before_anything_is_created_and_says_so() {
    let env = Env::start(|b| b);
    env.fed.cluster("us-west1-a").set_faults(kube_sim::Faults {
        down: true,
        ..Default::default()
    });
    let out = env.check(&[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("could not connect to 1 zone(s)"), "{err}");
    assert!(
        err.contains("(nothing was created in any cluster)"),
        "{err}"
    );
    assert!(!err.contains("probe objects were removed"), "{err}");
    // kube's own per-attempt log lines never reach the user by default.
    assert!(
        !err.contains("kube_client") && !err.contains("ERROR "),
        "{err}"
    );
    for z in ["us-east1-b", "us-central1-a"] {
        assert!(!env.namespace_exists(z), "{z}");
    }
}

#[test]
fn the_overall_timeout_still_cleans_up() {
    let env = Env::start(|b| b);
    let out = env.check(&["--probe-timeout", "10m", "--timeout", "2s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("error: gave up after --timeout 2s"), "{err}");
    assert!(err.contains("(probe objects were removed)"), "{err}");
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

#[test]
fn leftovers_of_an_interrupted_check_are_replaced() {
    let env = Env::start(|b| b);
    let east = env.fed.cluster("us-east1-b");
    east.put(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "us-east1-b",
            "labels": {PROBE_LABEL: "true", "app.kubernetes.io/managed-by": "crdb-multiregion"}}}),
        "test",
    )
    .unwrap();
    east.put(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crdb-check-prober", "namespace": "us-east1-b",
            "labels": {PROBE_LABEL: "true", "leftover": "true"}},
            "spec": {"containers": [{"name": "probe", "image": "busybox:1.36"}]}}),
        "test",
    )
    .unwrap();
    let _runtime = scripted_runtime(&env, ("", ""));
    let out = env.check(&["--only", "tcp"]);
    assert_exit(&out, 0);
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
    // It was a probe namespace: removed with the rest.
    assert!(!env.namespace_exists("us-east1-b"));
}

#[test]
fn nothing_to_check_is_a_usage_error() {
    let env = Env::start(|b| b);
    let out = env.check(&["--only", "tcp", "--skip", "tcp"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("nothing to check"));
    assert!(env.fed.cluster("us-east1-b").requests().is_empty());
}

// ---------------------------------------------------------------------------
// Pod CIDRs: read from the Nodes kube-sim seeds (one per cluster, with
// `spec.podCIDR(s)` = 10.(100+k).0.0/16), and from Nodes a test adds.

/// Runs `check --only cidr -o json` and returns the exit code, the JSON
/// report (validated) and stderr, after asserting that the check only read:
/// no object was created, changed or deleted in any cluster (so no probe pod
/// or namespace existed even for a moment), and every cluster's Nodes were
/// listed.
fn cidr_check(env: &Env) -> (i32, Value, String) {
    for c in env.fed.clusters() {
        c.clear_requests();
    }
    let out = env.check(&["--only", "cidr", "-o", "json"]);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "stderr:\n{}", stderr(&out));
    for c in env.fed.clusters() {
        let requests = c.requests();
        let writes: Vec<String> = requests
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(writes, Vec::<String>::new(), "{}: not only reads", c.zone());
        assert!(
            requests.iter().any(|r| r.path == "/api/v1/nodes"),
            "{}: Nodes not listed: {requests:#?}",
            c.zone()
        );
    }
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&report);
    (code, report, stderr(&out))
}

fn node(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
    })
}

#[test]
fn cidr_only_passes_on_distinct_pod_ranges_and_creates_nothing() {
    let env = Env::start(|b| b);
    let (code, report, err) = cidr_check(&env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["ports"], json!([]));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 6, "{report:#}");
    assert!(results.iter().all(|r| r["check"] == "cidr"));
    let cidr = statuses(&report, "cidr");
    assert_eq!(cidr.len(), 6);
    assert!(
        cidr.iter()
            .all(|((from, to), s)| from != to && s == &["pass"])
    );
    let east_west = results
        .iter()
        .find(|r| r["from"] == "us-east1-b" && r["to"] == "us-west1-a")
        .unwrap();
    assert_eq!(
        east_west["detail"],
        "no overlap: us-east1-b uses 10.100.0.0/16, us-west1-a uses 10.101.0.0/16"
    );
    assert!(err.contains("us-east1-b: pod CIDRs 10.100.0.0/16"), "{err}");
    assert!(err.contains("Pod CIDRs, overlap between clusters"), "{err}");
    assert!(
        err.contains("check passed: 6 passed, 0 failed, 0 skipped"),
        "{err}"
    );
    assert!(!err.contains("listener"), "{err}");
    for z in ZONES {
        assert!(!env.namespace_exists(z));
    }
}

#[test]
fn overlapping_pod_ranges_fail_exactly_the_pairs_of_those_two_clusters() {
    let env = Env::start(|b| b);
    // A second Node in us-west1-a whose range lies inside us-east1-b's
    // 10.100.0.0/16 (given both ways, as a dual-stack-aware API server does).
    env.fed
        .cluster("us-west1-a")
        .put(
            node(
                "gke-us-west1-a-extra",
                json!({"podCIDR": "10.100.128.0/24", "podCIDRs": ["10.100.128.0/24"]}),
            ),
            "test",
        )
        .unwrap();
    let (code, report, err) = cidr_check(&env);
    assert_eq!(code, 1, "{err}");
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["summary"],
        json!({"passed": 4, "failed": 2, "skipped": 0})
    );
    assert_eq!(
        failed_pairs(&report, "cidr"),
        [
            pair("us-east1-b", "us-west1-a"),
            pair("us-west1-a", "us-east1-b")
        ]
    );
    let failed = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["from"] == "us-west1-a" && r["to"] == "us-east1-b")
        .unwrap();
    assert_eq!(
        failed["detail"],
        "us-west1-a's pod range 10.100.128.0/24 overlaps us-east1-b's 10.100.0.0/16"
    );
    // The hint names both clusters and both ranges, and what to do.
    let hint = failed["hint"].as_str().unwrap();
    for part in [
        "us-west1-a",
        "us-east1-b",
        "10.100.128.0/24",
        "10.100.0.0/16",
        "distinct pod CIDR",
    ] {
        assert!(hint.contains(part), "{part}: {hint}");
    }
    assert!(
        err.contains("us-west1-a: pod CIDRs 10.100.128.0/24, 10.101.0.0/16"),
        "{err}"
    );
    assert!(
        err.contains("cidr us-east1-b -> us-west1-a pod CIDRs: us-east1-b's pod range 10.100.0.0/16 overlaps us-west1-a's 10.100.128.0/24"),
        "{err}"
    );
    assert!(err.contains("check FAILED: 4 passed, 2 failed"), "{err}");
}

#[test]
fn a_cluster_whose_nodes_have_no_pod_cidr_is_skipped_with_the_reason() {
    let env = Env::start(|b| b);
    // As on EKS with the AWS VPC CNI: Nodes without spec.podCIDR.
    let central = env.fed.cluster("us-central1-a");
    for n in central.list("v1", "Node", None) {
        central
            .delete("v1", "Node", None, n["metadata"]["name"].as_str().unwrap())
            .unwrap();
    }
    central
        .put(node("ip-10-0-1-23.ec2.internal", json!({})), "test")
        .unwrap();
    assert!(
        central
            .list("v1", "Node", None)
            .iter()
            .all(|n| n.pointer("/spec/podCIDR").is_none())
    );
    let (code, report, err) = cidr_check(&env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        report["summary"],
        json!({"passed": 2, "failed": 0, "skipped": 4})
    );
    for r in report["results"].as_array().unwrap() {
        let involved = r["from"] == "us-central1-a" || r["to"] == "us-central1-a";
        assert_eq!(r["status"], if involved { "skip" } else { "pass" }, "{r:#}");
        if involved {
            let detail = r["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("no Node of us-central1-a has a podCIDR")
                    && detail.contains("AWS VPC CNI"),
                "{detail}"
            );
        }
    }
    assert!(
        err.contains("us-central1-a: no pod CIDR on its Nodes"),
        "{err}"
    );
    assert!(
        err.contains("4 skipped:\n  cidr (4 probe(s): us-east1-b -> us-central1-a, us-west1-a -> us-central1-a, us-central1-a -> us-east1-b, us-central1-a -> us-west1-a): no Node of us-central1-a has a podCIDR"),
        "{err}"
    );
}

/// A stand-in for the zones' DNS load balancers, reachable from the test:
/// a tiny DNS server per zone on 127.77.0.<n>:53 (UDP, and TCP unless
/// `udp_only`), answering A queries for the probe names of the zones it
/// "forwards" with the listener's pod IP read from the simulator, NXDOMAIN
/// for anything else.
struct FakeLb {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FakeLb {
    fn start(addr: std::net::Ipv4Addr, answers: Vec<kube_sim::Cluster>, udp_only: bool) -> FakeLb {
        let stop = Arc::new(AtomicBool::new(false));
        let lookup = Arc::new(move |name: &str| -> Option<std::net::Ipv4Addr> {
            answers.iter().find_map(|c| {
                if name != format!("crdb-check.{}.svc.cluster.local", c.zone()) {
                    return None;
                }
                c.get("v1", "Pod", Some(c.zone()), "crdb-check-listener")?
                    .pointer("/status/podIP")?
                    .as_str()?
                    .parse()
                    .ok()
            })
        });
        let mut threads = Vec::new();
        let udp = std::net::UdpSocket::bind((addr, 53)).expect("bind 127.77.0.x:53 (root)");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (flag, l) = (stop.clone(), lookup.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf)
                    && let Some(reply) = dns_reply(&buf[..n], &*l)
                {
                    let _ = udp.send_to(&reply, from);
                }
            }
        }));
        if !udp_only {
            let tcp = std::net::TcpListener::bind((addr, 53)).unwrap();
            tcp.set_nonblocking(true).unwrap();
            let (flag, l) = (stop.clone(), lookup.clone());
            threads.push(std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    use std::io::{Read, Write};
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    while s.read_exact(&mut len).is_ok() {
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).is_err() {
                            break;
                        }
                        let Some(reply) = dns_reply(&q, &*l) else {
                            break;
                        };
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend(reply);
                        if s.write_all(&framed).is_err() {
                            break;
                        }
                    }
                }
            }));
        }
        FakeLb { stop, threads }
    }
}

impl Drop for FakeLb {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The answer to one query: A record from `lookup`, else NXDOMAIN.
fn dns_reply(q: &[u8], lookup: &dyn Fn(&str) -> Option<std::net::Ipv4Addr>) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
    let q = Message::from_vec(q).ok()?;
    let asked = q.queries.first()?.clone();
    let name = asked.name().to_lowercase().to_ascii();
    let answer = if asked.query_type() == RecordType::A {
        lookup(name.trim_end_matches('.'))
    } else {
        None
    };
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.authoritative = true;
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.response_code = match answer {
        Some(_) => ResponseCode::NoError,
        None => ResponseCode::NXDomain,
    };
    if let Some(ip) = answer {
        r.add_answer(Record::from_rdata(
            asked.name().clone(),
            30,
            RData::A(A(ip)),
        ));
    }
    r.add_query(asked);
    r.to_vec().ok()
}

#[test]
fn dns_load_balancers_are_asked_over_udp_and_tcp_separately() {
    // The stand-ins listen on port 53, as load balancers do: root only.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the DNS load balancer test needs root in CI"
        );
        eprintln!("skipped: binding port 53 needs root");
        return;
    }
    let env = Env::start(|b| b);
    env.apply();
    // Point each zone's kube-dns-lb at a stand-in the test can reach:
    // us-east1-b forwards every zone, us-west1-a only its own names (its
    // forwarding to us-east1-b is broken), us-central1-a serves UDP only.
    let clusters = env.fed.clusters();
    let lbs = [
        FakeLb::start([127, 77, 0, 1].into(), clusters.clone(), false),
        FakeLb::start(
            [127, 77, 0, 2].into(),
            vec![
                env.fed.cluster("us-west1-a"),
                env.fed.cluster("us-central1-a"),
            ],
            false,
        ),
        FakeLb::start([127, 77, 0, 3].into(), clusters.clone(), true),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(env.fed.kubeconfig_path()).unwrap();
        for (i, c) in clusters.iter().enumerate() {
            let options = kube::config::KubeConfigOptions {
                context: Some(c.context().to_string()),
                ..Default::default()
            };
            let config = kube::Config::from_custom_kubeconfig(kc.clone(), &options)
                .await
                .unwrap();
            let services: kube::Api<k8s_openapi::api::core::v1::Service> =
                kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "kube-system");
            let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": format!("127.77.0.{}", i + 1)}]}}});
            services
                .patch_status(
                    "kube-dns-lb",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(patch),
                )
                .await
                .unwrap();
        }
    });
    let _runtime = scripted_runtime(&env, ("", ""));
    let out = env.check(&["-o", "json", "--only", "dns-lb"]);
    drop(lbs);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&report);
    let mut failed = Vec::new();
    for r in report["results"].as_array().unwrap() {
        assert_eq!(r["check"], "dns-lb");
        match r["status"].as_str().unwrap() {
            "pass" => assert!(r["latency_ms"].is_u64()),
            "fail" => failed.push(format!(
                "{} -> {} {}: {}",
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap(),
                r["protocol"].as_str().unwrap(),
                r["detail"].as_str().unwrap()
            )),
            other => panic!("unexpected {other}: {r}"),
        }
    }
    assert_eq!(report["summary"]["passed"], 13, "{failed:#?}");
    failed.sort();
    assert_eq!(failed.len(), 5, "{failed:#?}");
    for f in &failed[..3] {
        assert!(
            f.contains("us-central1-a -> ") && f.contains(" tcp: 127.77.0.3:"),
            "{f}"
        );
    }
    assert!(
        failed[3].starts_with("us-west1-a -> us-east1-b tcp: 127.77.0.2: no such name (NXDOMAIN)"),
        "{failed:#?}"
    );
    assert!(
        failed[4].starts_with("us-west1-a -> us-east1-b udp: 127.77.0.2: no such name (NXDOMAIN)"),
        "{failed:#?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("the DNS load balancer of us-west1-a answers but does not resolve us-east1-b's names over UDP"),
        "{err}"
    );
    // The refusal, then the hint under it: which zone's load balancer, and
    // that it is about TCP.
    let (_, after) = err
        .split_once("127.77.0.3: connection refused on TCP port 53\n")
        .unwrap_or_else(|| panic!("no refusal on TCP port 53: {err}"));
    let hint = after.lines().next().unwrap_or_default().trim_start();
    assert!(
        hint.starts_with("hint: ") && hint.contains("us-central1-a") && hint.contains("TCP"),
        "{err}"
    );
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Real probes: kube-sim's real network mode runs the busybox pods as
// processes in per-cluster network namespaces, with a dnsmasq per cluster
// configured from its DNS ConfigMap. The DNS load balancers are only
// reachable inside that network, so these tests skip `dns-lb` (covered above
// against stand-ins the test can reach).

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

fn real_env(
    configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
) -> Option<Env> {
    real_env_zones(&ZONES, configure)
}

fn real_env_zones(
    zones: &[&str],
    configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
) -> Option<Env> {
    if !real_network_available() {
        return None;
    }
    Some(Env::start_zones(zones, |b| {
        configure(
            b.network(kube_sim::Network::Real)
                .pod_ready_delay(Duration::from_millis(20)),
        )
    }))
}

impl Env {
    /// Runs a real check, asserts the exit code, and returns the JSON report
    /// (validated against the schema) and stderr.
    fn real_check(&self, extra: &[&str], code: i32) -> (Value, String) {
        let mut args = vec!["-o", "json", "--skip", "dns-lb"];
        args.extend(extra);
        let out = self.check(&args);
        assert_exit(&out, code);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        validate(&report);
        (report, stderr(&out))
    }

    /// busybox processes left in the clusters' network namespaces.
    fn probe_processes(&self) -> Vec<String> {
        let mut found = Vec::new();
        for c in self.fed.clusters() {
            let z = c.zone();
            let Some(netns) = self.fed.netns(z) else {
                continue;
            };
            let out = Command::new("ip")
                .args(["netns", "pids", netns])
                .output()
                .unwrap();
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains("crdb-check") {
                    found.push(format!("{z}: {pid} {cmdline}"));
                }
            }
        }
        found
    }

    /// No probe object, no namespace created for the check, no process.
    fn assert_clean(&self) {
        assert_eq!(self.probe_leftovers(), Vec::<String>::new());
        wait_until("probe processes to end", || {
            self.probe_processes().is_empty()
        });
    }
}

/// The ordered pairs with a failed result of `check`.
fn failed_pairs(report: &Value, check: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = statuses(report, check)
        .into_iter()
        .filter(|(_, s)| s.iter().any(|s| s == "fail"))
        .map(|(k, _)| k)
        .collect();
    pairs.sort();
    pairs
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn real_before_apply_pod_to_pod_is_reported_and_dns_skipped() {
    let Some(env) = real_env(|b| b) else { return };
    let (report, err) = env.real_check(&["--http"], 0);
    let tcp = statuses(&report, "tcp");
    assert_eq!(tcp.len(), 9);
    assert!(tcp.values().all(|s| s == &["pass", "pass"]), "{tcp:?}");
    for r in report["results"].as_array().unwrap() {
        if r["check"] == "tcp" {
            assert!(r["latency_ms"].is_u64());
        } else if r["check"] == "cidr" {
            assert_eq!(r["status"], "pass");
        } else {
            assert_eq!(r["check"], "dns");
            assert_eq!(r["status"], "skip");
            assert_eq!(r["detail"], "DNS forwarding not configured yet (run apply)");
        }
    }
    assert_eq!(
        report["summary"],
        json!({"passed": 18 + 6, "failed": 0, "skipped": 12})
    );
    assert!(
        err.contains("check passed: 24 passed, 0 failed, 12 skipped"),
        "{err}"
    );
    env.assert_clean();
    for z in ZONES {
        assert!(!env.namespace_exists(z));
    }
}

#[test]
fn real_healthy_federation_after_apply_passes() {
    let Some(env) = real_env(|b| b) else { return };
    env.apply();
    let out = env.check(&["-o", "junit", "--skip", "dns-lb"]);
    assert_exit(&out, 0);
    let xml = stdout(&out);
    let suites = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
        .unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let cases: Vec<&junit_parser::TestCase> = suites.suites.iter().flat_map(|s| &s.cases).collect();
    // 9 TCP pairs, 6 DNS pairs x 2 names (the not-ready pod's own name
    // too), 6 pod CIDR pairs.
    assert_eq!(cases.len(), 9 + 12 + 6);
    assert!(cases.iter().all(|c| c.status.is_success()), "{xml}");
    assert!(cases.iter().any(|c| c.original_name
        == "us-east1-b -> us-central1-a crdb-check-0.crdb-check.us-central1-a.svc.cluster.local"));
    env.assert_clean();
    for z in ZONES {
        assert!(env.namespace_exists(z), "apply's namespace is kept");
    }
}

#[test]
fn real_cut_pair_fails_exactly_those_ordered_pairs() {
    let Some(env) = real_env(|b| b.cut("us-east1-b", "us-central1-a")) else {
        return;
    };
    env.apply();
    let (report, err) = env.real_check(&[], 1);
    let cut = vec![
        pair("us-central1-a", "us-east1-b"),
        pair("us-east1-b", "us-central1-a"),
    ];
    assert_eq!(failed_pairs(&report, "tcp"), cut);
    // DNS forwarding between the two crosses the cut as well.
    assert_eq!(failed_pairs(&report, "dns"), cut);
    assert_eq!(report["summary"]["failed"], 2 + 4);
    assert!(
        err.contains("pod IPs of us-central1-a cannot reach us-east1-b:26257"),
        "{err}"
    );
    assert!(
        err.contains("us-east1-b's DNS forwards us-central1-a's names but gets no answer"),
        "{err}"
    );
    env.assert_clean();
}

#[test]
fn real_one_way_cut_fails_one_direction() {
    let Some(env) = real_env(|b| b.cut_oneway("us-west1-a", "us-east1-b")) else {
        return;
    };
    env.apply();
    let (report, _) = env.real_check(&[], 1);
    let one = vec![pair("us-west1-a", "us-east1-b")];
    assert_eq!(failed_pairs(&report, "tcp"), one);
    assert_eq!(failed_pairs(&report, "dns"), one);
    env.assert_clean();
}

#[test]
fn real_missing_forwarding_fails_dns_only_from_that_cluster() {
    let Some(env) = real_env(|b| b) else { return };
    env.apply();
    // us-west1-a loses its forwarding to us-central1-a.
    let west = env.fed.cluster("us-west1-a");
    let mut cm = west
        .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
        .unwrap();
    let mut stub: serde_json::Map<String, Value> =
        serde_json::from_str(cm["data"]["stubDomains"].as_str().unwrap()).unwrap();
    assert!(stub.remove("us-central1-a.svc.cluster.local").is_some());
    cm["data"]["stubDomains"] = json!(serde_json::to_string(&stub).unwrap());
    west.put(cm, "test").unwrap();
    // kube-dns (dnsmasq-nanny) follows ConfigMap changes within moments.
    std::thread::sleep(Duration::from_secs(1));

    let (report, err) = env.real_check(&[], 1);
    assert_eq!(failed_pairs(&report, "tcp"), vec![]);
    assert_eq!(
        failed_pairs(&report, "dns"),
        vec![pair("us-west1-a", "us-central1-a")]
    );
    assert_eq!(report["summary"]["failed"], 2);
    assert!(
        err.contains(
            "us-west1-a's DNS configuration has no forwarding entry for us-central1-a's domain"
        ),
        "{err}"
    );
    assert!(
        err.contains("hint: us-west1-a's DNS does not forward us-central1-a's names"),
        "{err}"
    );
    env.assert_clean();
}

#[test]
fn real_blocked_port_fails_tcp_on_that_port_only() {
    let Some(env) = real_env(|b| b.block_port("us-west1-a", 26257)) else {
        return;
    };
    env.apply();
    let (report, err) = env.real_check(&["--http"], 1);
    let mut failed: Vec<(String, String, u64)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "fail")
        .map(|r| {
            assert_eq!(r["check"], "tcp");
            (
                r["from"].as_str().unwrap().to_string(),
                r["to"].as_str().unwrap().to_string(),
                r["port"].as_u64().unwrap(),
            )
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        ZONES
            .iter()
            .map(|from| (from.to_string(), "us-west1-a".to_string(), 26257))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert!(err.contains("firewall rules for TCP 26257"), "{err}");
    env.assert_clean();
}

/// Ten clusters, one of them cut off from all the others: its prober has
/// nine connections that time out (3 s each). Probes run side by side, so
/// the round takes about one timeout, not nine (nor a hundred).
#[test]
fn real_ten_clusters_take_one_probe_round() {
    let zones: Vec<String> = (0..10).map(|i| format!("region{i}-a")).collect();
    let zones: Vec<&str> = zones.iter().map(String::as_str).collect();
    let isolated = zones[0];
    let others = zones[1..].to_vec();
    let Some(env) = real_env_zones(&zones, |mut b| {
        for o in &others {
            b = b.cut(isolated, *o);
        }
        b
    }) else {
        return;
    };
    let started = Instant::now();
    let (report, _) = env.real_check(&["--only", "tcp"], 1);
    let elapsed = started.elapsed();
    let mut expected: Vec<(String, String)> = others
        .iter()
        .flat_map(|o| [pair(isolated, o), pair(o, isolated)])
        .collect();
    expected.sort();
    assert_eq!(failed_pairs(&report, "tcp"), expected);
    assert_eq!(report["summary"]["passed"], 100 - 18);
    // Sequential probing would need 9 x 3 s in the isolated cluster alone.
    assert!(
        elapsed < Duration::from_secs(20),
        "a check of ten clusters took {elapsed:?}"
    );
    env.assert_clean();
}

#[test]
fn a_listener_that_stops_during_the_round_is_not_reported_as_a_network_failure() {
    let env = Env::start(|b| b);
    let _probers = scripted_runtime(&env, ("", ""));
    let _dies = Runtime::start(&env, vec![env.fed.cluster("us-west1-a")], |c, pod| {
        let prober_exists = c
            .get("v1", "Pod", Some(c.zone()), "crdb-check-prober")
            .is_some();
        (pod_name(pod) == "crdb-check-listener" && prober_exists).then(|| {
            json!({"phase": "Failed", "containerStatuses": [{"name": "probe", "image": "busybox:1.36",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 127, "reason": "Error"}}}]})
        })
    });
    let out = env.check(&["--only", "tcp"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("us-west1-a: listener crdb-check-listener stopped during the check (Failed)"),
        "{err}"
    );
    assert_eq!(env.probe_leftovers(), Vec::<String>::new());
}
