//! The default configs against kube-sim's cloud rules (issue 9): the
//! clouds' refusals of load balancers (`cloud_lb_rules`, the AWS Load
//! Balancer Controller, LB host names that resolve late) and Pod Security
//! `restricted` admission. Each test runs the full apply, re-apply and
//! teardown cycle through the real binary.

use kube_sim::PodSecurityLevel;

use super::*;

/// Every rule the flavour's cloud enforces, and Pod Security `restricted`
/// for the whole cluster.
fn strict(b: kube_sim::FederationBuilder) -> kube_sim::FederationBuilder {
    b.cloud_lb_rules(true)
        .pod_security(PodSecurityLevel::Restricted)
}

#[test]
fn default_gke_config_applies_where_the_cloud_refuses_mixed_protocol_lbs_and_pods_must_be_restricted()
 {
    full_cycle_on(Flavor::Gke, strict, DnsProvider::KubeDns, "", |ip| {
        ip.to_string()
    });
}

#[test]
fn default_eks_config_applies_with_the_in_tree_lb_provider_and_host_names_that_resolve_late() {
    full_cycle_on(
        Flavor::Eks,
        |b| strict(b).lb_dns_delay(Duration::from_millis(3000)),
        DnsProvider::CoreDns,
        "[dns]\ncloud = \"eks\"",
        resolve_lb_host,
    );
}

#[test]
fn default_eks_config_applies_with_the_aws_lb_controller_and_host_names_that_resolve_late() {
    full_cycle_on(
        Flavor::Eks,
        |b| {
            strict(b)
                .eks_lb_controller(true)
                .lb_dns_delay(Duration::from_millis(3000))
        },
        DnsProvider::CoreDns,
        "[dns]\ncloud = \"eks\"",
        resolve_lb_host,
    );
}

#[test]
fn default_aks_config_applies_under_the_cloud_rules_and_restricted_pods() {
    full_cycle_on(
        Flavor::Aks,
        strict,
        DnsProvider::CoreDnsCustom,
        "[dns]\ncloud = \"aks\"",
        |ip| ip.to_string(),
    );
}

#[test]
fn udp_and_tcp_on_a_gke_public_lb_stops_before_any_change() {
    let env = Env::start(Flavor::Gke, &ZONES, strict);
    let config = env.config(
        "config.toml",
        &ZONES,
        "[dns]\ncloud = \"gke\"\nload_balancer = \"public\"\nprotocols = [\"UDP\", \"TCP\"]",
    );
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("config.toml"), "names the file: {err}");
    assert!(err.contains("protocols"), "names the key: {err}");
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    assert!(
        !env.path("my-safe-directory/ca.key").exists(),
        "nothing written locally either"
    );
}

/// A config whose `templates_dir` holds the built-in `file` with the pod's
/// `runAsNonRoot: true` / `runAsUser: 1000` replaced by `runAsUser: 0`.
fn root_template_config(env: &Env, file: &str) -> PathBuf {
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .join(file),
    )
    .unwrap();
    let root = builtin.replacen(
        "runAsNonRoot: true\n        runAsUser: 1000",
        "runAsUser: 0",
        1,
    );
    assert_ne!(root, builtin, "{file}: the pod's securityContext moved");
    std::fs::create_dir_all(env.path("my-templates")).unwrap();
    std::fs::write(env.path("my-templates").join(file), root).unwrap();
    env.config(
        "config.toml",
        &ZONES,
        "[cockroachdb]\ntemplates_dir = \"my-templates\"",
    )
}

#[test]
fn statefulset_template_running_as_root_under_restricted_fails_naming_the_rule_not_after_the_timeout()
 {
    let env = Env::start(Flavor::Gke, &ZONES, strict);
    let config = root_template_config(&env, "statefulset.yaml");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    for zone in ZONES {
        let line = err
            .lines()
            .find(|l| l.starts_with(zone) && l.contains("FAILED"))
            .unwrap_or_else(|| panic!("{zone} failed: {err}"));
        assert!(
            line.contains("the API server refused the StatefulSet's pods")
                && line.contains("violates PodSecurity \"restricted:latest\"")
                && line.contains("runAsUser=0"),
            "{line}"
        );
    }
    assert!(
        err.contains("describe statefulset cockroachdb"),
        "the hint: {err}"
    );
    // The refusal, not --wait-timeout (20s), ended the wait.
    assert!(!err.contains("timed out"), "{err}");
    assert_eq!(init_jobs(&env), Vec::<String>::new());
}

#[test]
fn init_job_template_running_as_root_under_restricted_fails_naming_the_rule_not_after_the_timeout()
{
    let env = Env::start(Flavor::Gke, &ZONES, strict);
    let config = root_template_config(&env, "init-job.yaml");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("us-east1-b") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("the init zone failed: {err}"));
    assert!(
        line.contains("the API server refused the Job's pods")
            && line.contains("violates PodSecurity \"restricted:latest\"")
            && line.contains("runAsUser=0"),
        "{line}"
    );
    assert!(err.contains("describe job cluster-init-secure"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn gke_autopilot_cloud_dns_stops_apply_before_any_change_with_the_explanation() {
    let env = Env::start(Flavor::GkeAutopilot, &ZONES, strict);
    let config = env.config("config.toml", &ZONES, "");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    for zone in ZONES {
        assert!(
            err.lines().any(|l| l.contains(zone)
                && l.contains("this cluster's DNS is managed outside the cluster, as on GKE Autopilot or GKE with Cloud DNS")),
            "{zone}: {err}"
        );
    }
    assert!(
        err.contains("GKE Standard cluster that runs kube-dns"),
        "the hint: {err}"
    );
    assert_eq!(changing_writes(&env), Vec::<String>::new());
    assert!(
        !env.path("my-safe-directory/ca.key").exists(),
        "nothing written locally either"
    );
}

#[test]
fn k3s_forwarding_goes_to_coredns_custom_and_survives_a_server_restart() {
    // A fresh k3s: no `coredns-custom` until someone creates it.
    let env = Env::start(Flavor::K3s, &ZONES, |b| strict(b).seed_user_dns(false));
    for zone in ZONES {
        assert_eq!(
            env.dns_data(zone, DnsProvider::CoreDnsCustom),
            BTreeMap::new()
        );
    }
    let config = env.config(
        "config.toml",
        &ZONES,
        "[dns]\ncloud = \"generic\"\nload_balancer = \"public\"",
    );
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    assert_forwarding(&env, &ZONES, DnsProvider::CoreDnsCustom, |ip| {
        ip.to_string()
    });
    for zone in ZONES {
        assert_eq!(
            corefile(&env, zone),
            kube_sim::K3S_COREFILE,
            "{zone}: the coredns ConfigMap k3s rewrites is left alone"
        );
        let rewritten = env.fed.cluster(zone).restart().unwrap();
        assert!(!rewritten.is_empty(), "{zone}: k3s rewrote {rewritten:?}");
    }
    assert_forwarding(&env, &ZONES, DnsProvider::CoreDnsCustom, |ip| {
        ip.to_string()
    });
    // Teardown deletes the `coredns-custom` it created.
    let out = env.teardown(&config);
    assert_exit(&out, 0);
    for zone in ZONES {
        assert_eq!(
            env.fed
                .cluster(zone)
                .get("v1", "ConfigMap", Some("kube-system"), "coredns-custom"),
            None,
            "{zone}"
        );
    }
}

#[test]
fn eks_coredns_add_on_ownership_is_warned_about_and_apply_re_merges_after_an_add_on_update() {
    // The add-on's own ConfigMap (kube-sim seeds the user's stub domain
    // into a ConfigMap edited by hand instead).
    let env = Env::start(Flavor::Eks, &ZONES, |b| strict(b).seed_user_dns(false));
    let config = env.config("config.toml", &ZONES, "[dns]\ncloud = \"eks\"");
    let out = env.apply(&config, &["-o", "json"]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("warning: ConfigMap kube-system/coredns is managed by the EKS CoreDNS add-on (field manager eks"),
        "text: {}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for zone in report["zones"].as_array().unwrap() {
        let warnings = zone["warnings"].as_array().expect("JSON warnings");
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("resolve-conflicts PRESERVE")),
            "{zone}"
        );
    }
    assert_forwarding(&env, &ZONES, DnsProvider::CoreDns, resolve_lb_host);

    // The add-on update with OVERWRITE takes the Corefile back in one zone.
    let zone = "us-west1-a";
    env.fed.cluster(zone).addon_update().unwrap();
    assert!(
        !corefile(&env, zone).contains(dns::BEGIN_MARKER),
        "the add-on update removed our forwarding"
    );
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with(zone) && l.contains("DNS forwarding updated")),
        "re-merged in {zone}: {err}"
    );
    assert!(err.contains("EKS CoreDNS add-on"), "warned again: {err}");
    assert_forwarding(&env, &ZONES, DnsProvider::CoreDns, resolve_lb_host);
}

#[test]
fn clusters_without_an_add_on_manager_get_no_warning() {
    let env = Env::start(Flavor::Aks, &ZONES, strict);
    let config = env.config("config.toml", &ZONES, "[dns]\ncloud = \"aks\"");
    let out = env.apply(&config, &["-o", "json"]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for zone in report["zones"].as_array().unwrap() {
        assert_eq!(zone.get("warnings"), None, "{zone}");
    }
}
