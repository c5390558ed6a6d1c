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
