use std::path::Path;

use super::*;
use crate::certs::NodeCert;
use crate::output;

fn config(text: &str) -> Config {
    Config::parse(Path::new("test.toml"), text).unwrap()
}

fn example() -> Config {
    config(include_str!("../../config/example.toml"))
}

/// A certificate bundle with fixed, fake PEM text: the planner only copies
/// it into Secrets, so snapshots stay stable without filtering.
fn bundle(config: &Config) -> CertBundle {
    CertBundle {
        ca_crt: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into(),
        client_root_crt: "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n".into(),
        client_root_key: "-----BEGIN PRIVATE KEY-----\nROOTKEY\n-----END PRIVATE KEY-----\n".into(),
        nodes: config
            .zones
            .iter()
            .map(|z| {
                (
                    z.name.clone(),
                    NodeCert {
                        crt: format!(
                            "-----BEGIN CERTIFICATE-----\nNODE {}\n-----END CERTIFICATE-----\n",
                            z.name
                        ),
                        key: format!(
                            "-----BEGIN PRIVATE KEY-----\nNODEKEY {}\n-----END PRIVATE KEY-----\n",
                            z.name
                        ),
                    },
                )
            })
            .collect(),
    }
}

fn facts_all(config: &Config) -> Facts {
    let mut f = Facts::default();
    for (i, z) in config.zones.iter().enumerate() {
        f.zones.insert(
            z.name.clone(),
            ZoneFacts {
                dns_addresses: vec![format!("10.{}.0.10", 100 + i).parse().unwrap()],
                dns_provider: None,
            },
        );
    }
    f
}

fn plan_of(config: &Config, facts: &Facts) -> Plan {
    plan(config, &bundle(config), facts, &Templates::builtin()).unwrap()
}

/// Kind namespace/name of every object, per zone, plus the DNS plan.
fn outline(plan: &Plan) -> String {
    let mut out = String::new();
    for z in &plan.zones {
        out.push_str(&format!(
            "{} ({}, ns {}):\n",
            z.zone, z.context, z.namespace
        ));
        for p in &z.objects {
            out.push_str(&format!("  {:?}: {}\n", p.stage, p.object.describe()));
        }
        out.push_str(&format!(
            "  dns: {} {:?} {:?}\n",
            z.dns.provider, z.dns.provider_source, z.dns.status
        ));
    }
    out
}

#[test]
fn three_zone_example_yaml() {
    let c = example();
    let plan = plan_of(&c, &facts_all(&c));
    insta::assert_snapshot!(output::yaml_stream(&plan));
}

#[test]
fn one_zone_plan() {
    let c = config(
        r#"
federation = "solo"
[[zones]]
name = "eu-west1-b"
context = "kind-solo"
"#,
    );
    let plan = plan_of(&c, &Facts::default());
    insta::assert_snapshot!(outline(&plan));
    insta::assert_snapshot!(
        "one_zone_statefulset",
        output::object_yaml(plan.zones[0].stage(Stage::Workload).last().unwrap())
    );
}

const FIVE: &str = r#"
federation = "five"
cluster_domain = "corp.example"
[cockroachdb]
memory_limit = "8Gi"
cpu_request = "2"
storage_class = "fast-ssd"
[dns]
cloud = "eks"
provider = "coredns"
protocols = ["TCP"]
[[zones]]
name = "us-east-1a"
context = "eks-east"
region = "us-east-1"
replicas = 5
[[zones]]
name = "us-west-2b"
context = "eks-west"
namespace = "crdb-west"
replicas = 1
[[zones]]
name = "eu-central-1a"
context = "eks-eu"
region = "eu-central-1"
[[zones]]
name = "ap-south-1a"
context = "eks-ap"
replicas = 2
[[zones]]
name = "sa-east-1a"
context = "eks-sa"
region = "sa-east-1"
"#;

#[test]
fn five_zone_mixed_plan() {
    let c = config(FIVE);
    let plan = plan_of(&c, &facts_all(&c));
    insta::assert_snapshot!(outline(&plan));
    let sts = plan.zones[1].stage(Stage::Workload).last().unwrap();
    insta::assert_snapshot!("five_zone_statefulset_west", output::object_yaml(sts));
    insta::assert_snapshot!(
        "five_zone_dns_lb",
        output::object_yaml(plan.zones[0].stage(Stage::DnsLoadBalancer).next().unwrap())
    );
}

#[test]
fn join_list_matches_the_original_formula() {
    // setup.py: cockroachdb-<i>.cockroachdb.<zone> for i in 0..3, every zone.
    let c = example();
    let mut expected = Vec::new();
    for zone in ["us-east1-b", "us-west1-a", "us-central1-a"] {
        for i in 0..3 {
            expected.push(format!("cockroachdb-{i}.cockroachdb.{zone}"));
        }
    }
    assert_eq!(join_list(&c), expected);
    // and it follows namespaces and replica counts where the original could not.
    let c = config(FIVE);
    let join = join_list(&c);
    assert_eq!(join.len(), 5 + 1 + 3 + 2 + 3);
    assert!(join.contains(&"cockroachdb-0.cockroachdb.crdb-west".to_string()));
    assert!(!join.iter().any(|h| h.ends_with(".us-west-2b")));
}

#[test]
fn locality_matches_the_original() {
    let c = config(FIVE);
    assert_eq!(c.zones[0].locality(), "region=us-east-1,zone=us-east-1a");
    assert_eq!(c.zones[1].locality(), "zone=us-west-2b");
    let plan = plan_of(&c, &Facts::default());
    let Object::StatefulSet(sts) = plan.zones[0].stage(Stage::Workload).last().unwrap() else {
        panic!("last workload object is the StatefulSet")
    };
    let cmd = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .command
        .as_ref()
        .unwrap()[2];
    assert!(
        cmd.contains("--locality region=us-east-1,zone=us-east-1a "),
        "{cmd}"
    );
    assert!(
        cmd.contains("--cache 2048MiB --max-sql-memory 2048MiB"),
        "{cmd}"
    );
}

#[test]
fn forwarding_covers_every_other_zone_and_never_its_own() {
    let c = example();
    let plan = plan_of(&c, &facts_all(&c));
    for (i, zone) in plan.zones.iter().enumerate() {
        let DnsStatus::Ready(forwards) = &zone.dns.status else {
            panic!("{}: {:?}", zone.zone, zone.dns.status)
        };
        let domains: Vec<&str> = forwards.iter().map(|f| f.domain.as_str()).collect();
        let expected: Vec<String> = c
            .zones
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, z)| format!("{}.svc.cluster.local", z.name))
            .collect();
        assert_eq!(domains, expected, "{}", zone.zone);
        for f in forwards {
            let j = c
                .zones
                .iter()
                .position(|z| f.domain.starts_with(&format!("{}.", z.namespace)))
                .unwrap();
            assert_eq!(
                f.servers,
                vec![format!("10.{}.0.10", 100 + j).parse::<IpAddr>().unwrap()]
            );
        }
    }
}

#[test]
fn forwarding_is_pending_until_every_other_address_is_known() {
    let c = example();
    let mut facts = Facts::default();
    facts.zones.insert(
        "us-west1-a".into(),
        ZoneFacts {
            dns_addresses: vec!["10.0.0.2".parse().unwrap()],
            dns_provider: None,
        },
    );
    let plan = plan_of(&c, &facts);
    assert_eq!(
        plan.zones[0].dns.status,
        DnsStatus::Pending {
            missing: vec!["us-central1-a".into()]
        }
    );
    assert_eq!(
        plan.zones[1].dns.status,
        DnsStatus::Pending {
            missing: vec!["us-east1-b".into(), "us-central1-a".into()]
        }
    );
}

#[test]
fn provider_comes_from_config_then_cluster_then_cloud() {
    let c = example();
    let mut facts = facts_all(&c);
    facts.zones.get_mut("us-west1-a").unwrap().dns_provider = Some(DnsProvider::CoreDns);
    let plan = plan_of(&c, &facts);
    assert_eq!(
        (
            plan.zones[0].dns.provider,
            plan.zones[0].dns.provider_source
        ),
        (DnsProvider::KubeDns, ProviderSource::Assumed)
    );
    assert_eq!(
        (
            plan.zones[1].dns.provider,
            plan.zones[1].dns.provider_source
        ),
        (DnsProvider::CoreDns, ProviderSource::Detected)
    );
    let c = config(FIVE);
    let plan = plan_of(&c, &facts_all(&c));
    assert_eq!(
        plan.zones[0].dns.provider_source,
        ProviderSource::Configured
    );
    assert!(
        plan.zones[0].dns.options.force_tcp,
        "TCP-only load balancers need force_tcp"
    );
}

#[test]
fn init_job_only_in_the_first_zone() {
    let c = config(FIVE);
    let plan = plan_of(&c, &Facts::default());
    let jobs: Vec<(usize, &str)> = plan
        .zones
        .iter()
        .enumerate()
        .flat_map(|(i, z)| z.stage(Stage::Init).map(move |o| (i, o.name())))
        .collect();
    assert_eq!(jobs, vec![(0, "cluster-init-secure")]);
}

#[test]
fn every_object_carries_our_labels() {
    let c = config(FIVE);
    let plan = plan_of(&c, &Facts::default());
    for z in &plan.zones {
        for p in &z.objects {
            let labels = p.object.metadata().labels.clone().unwrap_or_default();
            assert_eq!(
                labels.get(names::MANAGED_BY_KEY).map(String::as_str),
                Some("crdb-multiregion"),
                "{}",
                p.object.describe()
            );
            assert_eq!(
                labels.get(names::FEDERATION_KEY).map(String::as_str),
                Some("five")
            );
            assert_eq!(labels.get(names::ZONE_KEY), Some(&z.zone));
        }
    }
}

#[test]
fn node_secret_has_no_root_client_key() {
    let c = example();
    let plan = plan_of(&c, &Facts::default());
    for z in &plan.zones {
        let secrets: Vec<&Secret> = z
            .objects
            .iter()
            .filter_map(|p| match &p.object {
                Object::Secret(s) => Some(s),
                _ => None,
            })
            .collect();
        let node = secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(names::NODE_SECRET))
            .unwrap();
        let keys: Vec<&String> = node.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["ca.crt", "node.crt", "node.key"]);
        let client_namespaces: Vec<&str> = secrets
            .iter()
            .filter(|s| s.metadata.name.as_deref() == Some(names::CLIENT_SECRET))
            .map(|s| s.metadata.namespace.as_deref().unwrap())
            .collect();
        assert_eq!(client_namespaces, [z.namespace.as_str(), "default"]);
    }
}

#[test]
fn rbac_binds_the_zone_namespace_account() {
    let c = config(FIVE);
    let plan = plan_of(&c, &Facts::default());
    let z = &plan.zones[1];
    let rb = z
        .objects
        .iter()
        .find_map(|p| match &p.object {
            Object::RoleBinding(rb) => Some(rb),
            _ => None,
        })
        .unwrap();
    let subject = &rb.subjects.as_ref().unwrap()[0];
    assert_eq!(subject.namespace.as_deref(), Some("crdb-west"));
}

#[test]
fn planning_is_deterministic() {
    let c = config(FIVE);
    let a = output::yaml_stream(&plan_of(&c, &facts_all(&c)));
    let b = output::yaml_stream(&plan_of(&c, &facts_all(&c)));
    assert_eq!(a, b);
}

#[test]
fn yaml_stream_parses_back_into_the_same_objects() {
    let c = config(FIVE);
    let plan = plan_of(&c, &facts_all(&c));
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&output::yaml_stream(&plan)).unwrap();
    let docs: Vec<serde_json::Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let objects: Vec<serde_json::Value> = plan
        .zones
        .iter()
        .flat_map(|z| z.objects.iter().map(|p| p.object.to_value()))
        .collect();
    assert_eq!(docs, objects);
}

#[test]
fn user_templates_override_and_cannot_escape_our_labels_or_namespaces() {
    let c = example();
    let dir = tempfile::tempdir().unwrap();
    let sts = crate::render::BUILTIN
        .iter()
        .find(|(n, _)| *n == "statefulset.yaml")
        .unwrap()
        .1;
    let tuned = sts
        .replace(
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSeconds: 300",
        )
        .replace(
            "  labels: {{ app_labels | tojson }}\nspec:",
            "  labels: {app: cockroachdb}\nspec:",
        );
    std::fs::write(dir.path().join("statefulset.yaml"), tuned).unwrap();
    let t = Templates::with_overrides(dir.path()).unwrap();
    let p = plan(&c, &bundle(&c), &Facts::default(), &t).unwrap();
    let Object::StatefulSet(s) = p.zones[0].stage(Stage::Workload).last().unwrap() else {
        panic!()
    };
    assert_eq!(
        s.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .termination_grace_period_seconds,
        Some(300)
    );
    assert_eq!(
        s.metadata.labels.as_ref().unwrap()[names::MANAGED_BY_KEY],
        names::MANAGED_BY
    );

    std::fs::write(dir.path().join("pdb.yaml"), "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: x\n  namespace: kube-system\n").unwrap();
    let t = Templates::with_overrides(dir.path()).unwrap();
    let err = plan(&c, &bundle(&c), &Facts::default(), &t).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zone us-east1-b: template pdb.yaml line 1: PodDisruptionBudget kube-system/x is in namespace \"kube-system\"; objects of zone us-east1-b belong in \"us-east1-b\""
    );

    std::fs::write(
        dir.path().join("pdb.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let t = Templates::with_overrides(dir.path()).unwrap();
    let err = plan(&c, &bundle(&c), &Facts::default(), &t).unwrap_err();
    assert!(format!("{:#}", anyhow::Error::from(err)).contains("unsupported apiVersion/kind"));
}

#[test]
fn dns_lb_annotations_per_cloud() {
    let mk = |cloud: &str, lb: &str| {
        dns_lb_annotations(&config(&format!(
            "[dns]\ncloud = \"{cloud}\"\nload_balancer = \"{lb}\"\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n"
        )))
    };
    assert_eq!(
        mk("gke", "internal")["networking.gke.io/load-balancer-type"],
        "Internal"
    );
    assert_eq!(
        mk("gke", "internal")["networking.gke.io/internal-load-balancer-allow-global-access"],
        "true"
    );
    assert!(mk("gke", "public").is_empty());
    assert_eq!(
        mk("eks", "internal")["service.beta.kubernetes.io/aws-load-balancer-scheme"],
        "internal"
    );
    assert_eq!(
        mk("eks", "internal")["service.beta.kubernetes.io/aws-load-balancer-type"],
        "nlb"
    );
    assert_eq!(
        mk("aks", "internal")["service.beta.kubernetes.io/azure-load-balancer-internal"],
        "true"
    );
    assert!(mk("aks", "public").is_empty());
}

/// The container command of a zone's StatefulSet.
fn statefulset_command(plan: &Plan, zone: usize) -> Vec<String> {
    let Object::StatefulSet(sts) = plan.zones[zone].stage(Stage::Workload).last().unwrap() else {
        panic!("last workload object is the StatefulSet")
    };
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .command
        .clone()
        .unwrap()
}

/// Issue: `region` (and other values pasted into the start command) went
/// unquoted into `bash -ecx`: `;`, `$(...)` and newlines ran as commands.
/// Validation refuses such values now, but the command must be safe on its
/// own: here the checked config is bypassed, hostile values are put straight
/// into the zones, and the rendered StatefulSet command is run by a real
/// bash, exactly as the container would run it, with the cockroach binary
/// swapped for a script that records its arguments.
#[test]
fn start_command_quotes_hostile_values_so_nothing_executes() {
    let hostile = [
        "us-east1;touch pwned-semicolon",
        "$(touch pwned-substitution)",
        "`touch pwned-backtick`",
        "us-east1\ntouch pwned-newline",
        "'; touch pwned-quote; '",
        "\"$(touch pwned-double)\"",
        "a && touch pwned-and || touch pwned-or",
        "a | tee pwned-pipe",
        ">pwned-redirect",
        "* ? [a] ~ {a,b} ! # \\ $HOME ${IFS}",
        "",
    ];
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake-cockroach");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s\\0' \"$@\" > args\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    for value in hostile {
        let mut c = example();
        c.zones[0].region = Some(value.to_string());
        if !value.is_empty() {
            // (an empty namespace is refused by the planner itself)
            c.zones[1].namespace = value.to_string();
        }
        let plan = plan_of(&c, &Facts::default());
        let command = statefulset_command(&plan, 0);
        assert_eq!(command[..2], ["/bin/bash", "-ecx"]);
        let script_line = &command[2];

        let syntax = std::process::Command::new("bash")
            .args(["-n", "-c", script_line])
            .output()
            .unwrap();
        assert!(syntax.status.success(), "{value:?}: bash -n: {syntax:?}");

        let run_line = script_line.replacen(
            "exec /cockroach/cockroach ",
            &format!("exec {} ", script.display()),
            1,
        );
        assert_ne!(
            &run_line, script_line,
            "the command execs the cockroach binary"
        );
        // The container gets the join list from the zone's ConfigMap through
        // the environment, exactly as the StatefulSet's env entry says.
        let (env_name, join_value) = join_env_of(&plan, 0);
        let out = std::process::Command::new(&command[0])
            .args([&command[1], &run_line])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env(&env_name, &join_value)
            .output()
            .unwrap();
        assert!(out.status.success(), "{value:?}: {out:?}");
        let args = std::fs::read(dir.path().join("args")).unwrap();
        let args: Vec<String> = args
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect();
        let at = |flag: &str| {
            let i = args
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{flag} in {args:?}"));
            args[i + 1].clone()
        };
        assert_eq!(args[0], "start");
        assert_eq!(at("--locality"), c.zones[0].locality(), "{value:?}");
        assert_eq!(at("--join"), join_list(&c).join(","), "{value:?}");
        assert_eq!(at("--certs-dir"), names::NODE_CERTS_MOUNT);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["args", "fake-cockroach"], "{value:?} ran something");
        std::fs::remove_file(dir.path().join("args")).unwrap();
    }
}

/// The environment variable the zone's CockroachDB container reads the join
/// list from, and the value the kubelet gives it: the planned ConfigMap's key
/// named by the env entry's `configMapKeyRef`.
fn join_env_of(plan: &Plan, zone: usize) -> (String, String) {
    let Object::StatefulSet(sts) = plan.zones[zone].stage(Stage::Workload).last().unwrap() else {
        panic!("last workload object is the StatefulSet")
    };
    let container = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let (name, r) = container
        .env
        .iter()
        .flatten()
        .find_map(|e| {
            let r = e.value_from.as_ref()?.config_map_key_ref.as_ref()?;
            Some((e.name.clone(), r.clone()))
        })
        .expect("an env entry from a ConfigMap");
    let cm = plan.zones[zone]
        .stage(Stage::Base)
        .find_map(|o| match o {
            Object::ConfigMap(cm) if cm.metadata.name.as_deref() == Some(r.name.as_str()) => {
                Some(cm)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("ConfigMap {} is planned in the zone", r.name));
    let value = cm.data.as_ref().unwrap()[&r.key].clone();
    (name, value)
}

/// The join list lives in a per-zone ConfigMap, not in the pod template:
/// adding a zone or changing one zone's replicas changes every zone's
/// ConfigMap but no other zone's StatefulSet pod template.
#[test]
fn join_list_changes_leave_other_zones_pod_templates_alone() {
    let base = example();
    let template_of = |plan: &Plan, zone: &str| {
        let z = plan.zone(zone).unwrap();
        z.stage(Stage::Workload)
            .find_map(|o| match o {
                Object::StatefulSet(s) => Some(s.spec.as_ref().unwrap().template.clone()),
                _ => None,
            })
            .unwrap()
    };
    let before = plan_of(&base, &Facts::default());

    let mut scaled = base.clone();
    scaled.zones[0].replicas += 2;
    let mut added = base.clone();
    let mut extra = base.zones[1].clone();
    extra.name = "extra".into();
    extra.namespace = "crdb-extra".into();
    extra.context = "extra-ctx".into();
    added.zones.push(extra);

    for (what, changed) in [("scaled zone 0", scaled), ("added a zone", added)] {
        let after = plan_of(&changed, &Facts::default());
        for (i, z) in base.zones.iter().enumerate() {
            if what == "scaled zone 0" && i == 0 {
                continue;
            }
            assert_eq!(
                template_of(&before, &z.name),
                template_of(&after, &z.name),
                "{what}: zone {} pod template changed",
                z.name
            );
            let (_, join) = join_env_of(&after, i);
            assert_eq!(
                join,
                join_list(&changed).join(","),
                "{what}: zone {}",
                z.name
            );
            assert_ne!(join, join_env_of(&before, i).1, "{what}: zone {}", z.name);
        }
    }
}

/// `(kind name, pod template metadata, pod template spec)` of every workload
/// in a plan.
fn pod_templates(plan: &Plan) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for z in &plan.zones {
        for p in &z.objects {
            let template = match &p.object {
                Object::StatefulSet(s) => serde_json::to_value(&s.spec.as_ref().unwrap().template),
                Object::Job(j) => serde_json::to_value(&j.spec.as_ref().unwrap().template),
                _ => continue,
            }
            .unwrap();
            out.push((
                format!("{}: {}", z.zone, p.object.describe()),
                template["metadata"].clone(),
                template["spec"].clone(),
            ));
        }
    }
    out
}

/// Issue: the StatefulSet and init Job ran as root with no securityContext,
/// so a namespace enforcing Pod Security `restricted` refused their pods.
/// Every pod template passes the admission plugin's rules now, and runs as a
/// non-root user whose group owns the data volume.
#[test]
fn pods_pass_pod_security_restricted_and_run_as_non_root() {
    for c in [example(), config(FIVE)] {
        let plan = plan_of(&c, &facts_all(&c));
        let templates = pod_templates(&plan);
        assert_eq!(
            templates.len(),
            c.zones.len() + 1,
            "a StatefulSet per zone and one Job"
        );
        for (what, metadata, spec) in templates {
            let violations = pod_security::restricted(&metadata, &spec);
            assert_eq!(violations, [], "{what}");
            let pod = &spec["securityContext"];
            let user = pod["runAsUser"].as_i64().unwrap();
            assert!(user > 0, "{what}: runs as uid {user}");
            // The kubelet gives the data volume and the Secret files the
            // fsGroup; CockroachDB reads a root-owned key file only when its
            // group is the process's own group.
            assert_eq!(pod["fsGroup"], pod["runAsGroup"], "{what}");
            assert!(pod["runAsGroup"].as_i64().unwrap() > 0, "{what}");
        }
    }
}

#[test]
fn a_template_override_that_breaks_restricted_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = include_str!("../../templates/statefulset.yaml");
    std::fs::write(
        dir.path().join("statefulset.yaml"),
        builtin
            .replace(
                "allowPrivilegeEscalation: false",
                "allowPrivilegeEscalation: true",
            )
            .replace("runAsUser: 1000", "runAsUser: 0"),
    )
    .unwrap();
    let c = example();
    let plan = plan(
        &c,
        &bundle(&c),
        &facts_all(&c),
        &Templates::with_overrides(dir.path()).unwrap(),
    )
    .unwrap();
    let (what, metadata, spec) = &pod_templates(&plan)[0];
    let violations = pod_security::restricted(metadata, spec);
    assert_eq!(
        violations,
        [
            pod_security::Violation {
                reason: "allowPrivilegeEscalation != false",
                detail: "container \"cockroachdb\" must set securityContext.allowPrivilegeEscalation=false".into(),
            },
            pod_security::Violation {
                reason: "runAsUser=0",
                detail: "pod must not set runAsUser=0".into(),
            },
        ],
        "{what}"
    );
}

#[test]
fn resources_are_requests_equal_limits_and_size_the_caches() {
    let c = example();
    let plan = plan_of(&c, &Facts::default());
    let Object::StatefulSet(sts) = plan.zones[0].stage(Stage::Workload).last().unwrap() else {
        panic!()
    };
    let container = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let r = serde_json::to_value(container.resources.as_ref().unwrap()).unwrap();
    assert_eq!(r["requests"], json!({"cpu": "2", "memory": "8Gi"}));
    assert_eq!(r["limits"], r["requests"]);
    assert!(statefulset_command(&plan, 0)[2].contains("--cache 2048MiB --max-sql-memory 2048MiB"));

    let c = config(&format!(
        "[cockroachdb]\nmemory_limit = \"12Gi\"\ncpu_limit = \"500m\"\n{}",
        "[[zones]]\nname = \"a\"\ncontext = \"a\"\n"
    ));
    let plan = plan_of(&c, &Facts::default());
    assert!(statefulset_command(&plan, 0)[2].contains("--cache 3072MiB --max-sql-memory 3072MiB"));
    let Object::StatefulSet(sts) = plan.zones[0].stage(Stage::Workload).last().unwrap() else {
        panic!()
    };
    let container = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let r = serde_json::to_value(container.resources.as_ref().unwrap()).unwrap();
    assert_eq!(r["limits"], json!({"cpu": "500m", "memory": "12Gi"}));
    assert_eq!(r["limits"], r["requests"]);
}

/// Issue 8: a StatefulSet template copied before the join list moved into
/// the ConfigMap reads `$CRDB_JOIN_ADDRESSES` without setting it: every pod
/// would crash at start. The plan refuses it, naming template and line.
#[test]
fn a_statefulset_template_without_the_join_env_entry_is_refused() {
    let c = config("[[zones]]\nname = \"us-east1-b\"\ncontext = \"a\"\n");
    let builtin = include_str!("../../templates/statefulset.yaml");
    let dir = tempfile::tempdir().unwrap();
    // The built-in template passes.
    std::fs::write(dir.path().join("statefulset.yaml"), builtin).unwrap();
    let t = Templates::with_overrides(dir.path()).unwrap();
    plan(&c, &bundle(&c), &Facts::default(), &t).unwrap();
    // Without its env entry for the join list it does not.
    let start = builtin
        .find("            - name: {{ names.join_env")
        .unwrap();
    let end = start + builtin[start..].find("key: ").unwrap();
    let end = end + builtin[end..].find('\n').unwrap() + 1;
    let old = format!("{}{}", &builtin[..start], &builtin[end..]);
    assert!(!old.contains("names.join_env"), "{old}");
    std::fs::write(dir.path().join("statefulset.yaml"), old).unwrap();
    let t = Templates::with_overrides(dir.path()).unwrap();
    let err = plan(&c, &bundle(&c), &Facts::default(), &t).unwrap_err();
    assert!(
        matches!(err, PlanError::Shape { ref template, .. } if template == "statefulset.yaml"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(names::JOIN_ENV), "{text}");
}

/// apply renders the objects once (without addresses) and only sets the
/// DNS forwarding again once the load balancers have addresses: that must
/// give exactly the plan made with the addresses from the start, for every
/// provider (detected or not) and with some zones' addresses missing.
#[test]
fn refreshing_the_dns_of_a_plan_equals_planning_with_the_facts() {
    let config = example();
    let mut partial = facts_all(&config);
    let first = config.zones[0].name.clone();
    partial.zones.get_mut(&first).unwrap().dns_addresses.clear();
    let mut detected = facts_all(&config);
    for f in detected.zones.values_mut() {
        f.dns_provider = Some(DnsProvider::CoreDns);
    }
    for facts in [facts_all(&config), partial, detected] {
        let mut refreshed = plan_of(&config, &Facts::default());
        assert_ne!(
            refreshed,
            plan_of(&config, &facts),
            "the facts change the plan"
        );
        refresh_dns(&mut refreshed, &config, &facts);
        assert_eq!(refreshed, plan_of(&config, &facts));
    }
}
