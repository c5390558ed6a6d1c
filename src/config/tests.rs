use std::path::PathBuf;

use super::values::parse_quantity;
use super::*;
use crate::certs::KeyType;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

fn errors(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = r#"
[[zones]]
name = "us-east1-b"
context = "ctx-a"
"#;

#[test]
fn defaults_fill_every_optional_key() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.federation, "cockroachdb");
    assert_eq!(c.cluster_domain, "cluster.local");
    assert_eq!(c.certs.dir, PathBuf::from("certs"));
    assert_eq!(c.certs.ca_key, PathBuf::from("my-safe-directory/ca.key"));
    assert_eq!(c.certs.key_type, KeyType::EcdsaP256);
    assert_eq!(c.generated_dir, PathBuf::from("generated"));
    assert_eq!(c.dns.provider, ProviderChoice::Auto);
    assert_eq!(c.dns.load_balancer, LoadBalancer::Internal);
    assert_eq!(c.dns.protocols, vec![Protocol::Udp]);
    assert_eq!(c.dns.lb_resolver, None);
    let z = &c.zones[0];
    assert_eq!(z.namespace, "us-east1-b");
    assert_eq!(z.replicas, 3);
    assert_eq!(z.locality(), "zone=us-east1-b");
}

#[test]
fn example_config_is_valid_and_keeps_zone_order() {
    let text = include_str!("../../config/example.toml");
    let c = parse(text).unwrap();
    let names: Vec<_> = c.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["us-east1-b", "us-west1-a", "us-central1-a"]);
    assert_eq!(c.zones[1].locality(), "region=us-west1,zone=us-west1-a");
}

#[test]
fn no_zones() {
    insta::assert_snapshot!(errors("federation = \"x\"\n"));
    insta::assert_snapshot!("empty_zones", errors("zones = []\n"));
}

#[test]
fn zone_and_namespace_must_be_dns_labels() {
    insta::assert_snapshot!(errors(
        r#"
[[zones]]
name = "US_East"
context = "a"

[[zones]]
name = "ok"
context = "b"
namespace = "-bad-"

[[zones]]
name = "this-zone-name-is-far-too-long-to-be-a-kubernetes-namespace-label-x"
context = "c"
"#
    ));
}

#[test]
fn duplicates_are_reported_with_the_first_occurrence() {
    insta::assert_snapshot!(errors(
        r#"
[[zones]]
name = "a"
context = "same"

[[zones]]
name = "b"
context = "same"
namespace = "a"

[[zones]]
name = "a"
context = "other"
namespace = "c"
"#
    ));
}

#[test]
fn empty_or_missing_context() {
    insta::assert_snapshot!(errors(
        r#"
[[zones]]
name = "a"
context = ""

[[zones]]
name = "b"
"#
    ));
}

#[test]
fn replicas_must_be_at_least_one() {
    insta::assert_snapshot!(errors(
        r#"
[[zones]]
name = "a"
context = "a"
replicas = 0

[[zones]]
name = "b"
context = "b"
replicas = "three"
"#
    ));
}

#[test]
fn unknown_keys_suggest_the_closest_valid_key() {
    insta::assert_snapshot!(errors(
        r#"
federaton = "x"

[cockroachdb]
imag = "cockroachdb/cockroach:v25.4.1"

[dns]
provder = "coredns"
zzz = 1

[[zones]]
name = "a"
context = "a"
replica = 3
"#
    ));
}

#[test]
fn malformed_values() {
    insta::assert_snapshot!(errors(
        r#"
cluster_domain = "Cluster_Local"

[certs]
key_type = "rsa-4096"

[cockroachdb]
storage = "lots"
memory_limit = "8GB"

[dns]
provider = "coredns-customs"
load_balancer = "private"
cloud = 3
protocols = ["UDP", "SCTP"]

[[zones]]
name = "a"
context = "a"
region = "us east"
"#
    ));
}

#[test]
fn syntax_errors_have_a_position() {
    let e = parse("[[zones]]\nname = \"a\ncontext = \"b\"\n").unwrap_err();
    let p = &e.problems()[0];
    assert_eq!(p.line, 2, "{e}");
    assert!(p.message.starts_with("TOML syntax error"), "{e}");
}

#[test]
fn ca_key_inside_certs_dir_is_rejected() {
    insta::assert_snapshot!(errors(
        r#"
[certs]
dir = "certs"
ca_key = "./certs/ca.key"

[[zones]]
name = "a"
context = "a"
"#
    ));
}

#[test]
fn generic_cloud_with_internal_lb_needs_annotations() {
    let text = "[dns]\ncloud = \"generic\"\n\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n";
    assert!(errors(text).contains("needs cloud-specific annotations"));
    let ok = "[dns]\ncloud = \"generic\"\n[dns.annotations]\n\"example.com/internal\" = \"true\"\n\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n";
    let c = parse(ok).unwrap();
    assert_eq!(c.dns.annotations["example.com/internal"], "true");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(line_col("é = 1\nab", 7), (2, 1));
    assert_eq!(line_col("éx", 2), (1, 2));
}

#[test]
fn quantities() {
    assert_eq!(quantity_bytes("8Gi"), Some(8 << 30));
    assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
    assert_eq!(quantity_bytes("512M"), Some(512_000_000));
    assert_eq!(quantity_bytes("1e3"), Some(1000));
    assert_eq!(
        quantity_bytes("0.5"),
        Some(1),
        "rounded up, as Quantity.Value()"
    );
    assert!(parse_quantity("500m").is_ok());
    assert!(parse_quantity("8GB").is_err());
    assert!(parse_quantity("").is_err());
    assert!(parse_quantity("1..2").is_err());
}

#[test]
fn never_panics_on_arbitrary_input() {
    // Every prefix of a realistic file plus some hostile shapes.
    let text = include_str!("../../config/example.toml");
    for end in (0..text.len()).filter(|i| text.is_char_boundary(*i)) {
        let _ = parse(&text[..end]);
    }
    for hostile in [
        "zones = 1",
        "zones = [1, \"x\"]",
        "[[zones]]\nname = 1\ncontext = []\nnamespace = {}\nreplicas = 99999999999999999999",
        "[[zones]]\nreplicas = -1",
        "certs = 3\ncockroachdb = []\ndns = \"x\"",
        "[dns]\nprotocols = \"UDP\"\nannotations = 2",
        "\u{0}\u{feff}",
    ] {
        assert!(parse(hostile).is_err(), "{hostile}");
    }
}

fn with_dns(dns: &str) -> String {
    format!("[dns]\n{dns}\n{MINIMAL}")
}

#[test]
fn dns_protocols_default_to_what_each_cloud_accepts() {
    for (cloud, want) in [
        ("gke", vec![Protocol::Udp]),
        ("eks", vec![Protocol::Tcp]),
        ("aks", vec![Protocol::Udp, Protocol::Tcp]),
        ("generic", vec![Protocol::Udp, Protocol::Tcp]),
    ] {
        let text = with_dns(&format!("cloud = \"{cloud}\"\nload_balancer = \"public\""));
        assert_eq!(parse(&text).unwrap().dns.protocols, want, "{cloud}");
    }
}

/// Issue: values a real API server (or the kubelet, or a shell) rejects
/// passed validation: storage "0", an empty annotation key, zero-width
/// characters in the image, shell metacharacters in the region. Each is now
/// refused at its own line.
#[test]
fn values_that_reach_a_shell_or_an_object_are_checked_with_their_line() {
    let text = "[cockroachdb]\n\
                image = \"cockroachdb/cockroach:v25.4.1\u{200b}\"\n\
                storage = \"0\"\n\
                cpu_request = \"4\"\n\
                cpu_limit = \"2\"\n\
                memory_limit = \"1e3\"\n\
                [dns.annotations]\n\
                \"\" = \"x\"\n\
                \"bad key/x\" = \"y\"\n\
                [[zones]]\n\
                name = \"a\"\n\
                context = \"line1\\nline2\"\n\
                region = \"$(reboot)\"\n";
    let e = errors(text);
    for expected in [
        "test.toml:2:9: cockroachdb.image: \"cockroachdb/cockroach:v25.4.1\\u{200b}\" contains '\\u{200b}' (U+200B)",
        "test.toml:3:11: cockroachdb.storage: \"0\" must be greater than zero",
        "test.toml:4:15: cockroachdb.cpu_request: \"4\" is more than cpu_limit \"2\"",
        "test.toml:6:16: cockroachdb.memory_limit: \"1e3\" must be a memory size of at least 1Mi",
        "test.toml:8:1: dns.annotations: key \"\" is not a valid annotation key",
        "test.toml:9:1: dns.annotations: key \"bad key/x\" is not a valid annotation key",
        "test.toml:12:11: zones[0].context: \"line1\\nline2\" contains a control character",
        "test.toml:13:10: zones[0].region: \"$(reboot)\" must be a valid label value",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in\n{e}");
    }
}

#[test]
fn mixed_protocol_dns_lb_is_refused_where_the_cloud_refuses_it() {
    let eks = errors(&with_dns("cloud = \"eks\"\nprotocols = [\"UDP\", \"TCP\"]"));
    assert!(
        eks.contains("test.toml:3:") && eks.contains("dns.protocols: AWS load balancers refuse"),
        "{eks}"
    );
    let gke_public = errors(&with_dns(
        "cloud = \"gke\"\nload_balancer = \"public\"\nprotocols = [\"TCP\", \"UDP\"]",
    ));
    assert!(
        gke_public.contains("dns.protocols: GKE refuses"),
        "{gke_public}"
    );
    // Accepted: GKE's internal load balancer (with subsetting), AKS, one
    // protocol anywhere.
    for ok in [
        "cloud = \"gke\"\nprotocols = [\"UDP\", \"TCP\"]",
        "cloud = \"aks\"\nprotocols = [\"UDP\", \"TCP\"]",
        "cloud = \"eks\"\nprotocols = [\"UDP\"]",
    ] {
        parse(&with_dns(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn lb_resolver_is_an_ip_and_port() {
    let c = parse(&with_dns("lb_resolver = \"10.0.0.2:53\"")).unwrap();
    assert_eq!(c.dns.lb_resolver, Some("10.0.0.2:53".parse().unwrap()));
    let c = parse(&with_dns("lb_resolver = \"[fd00::2]:5353\"")).unwrap();
    assert_eq!(c.dns.lb_resolver, Some("[fd00::2]:5353".parse().unwrap()));
    for bad in ["\"10.0.0.2\"", "\"dns.example:53\"", "53"] {
        let e = errors(&with_dns(&format!("lb_resolver = {bad}")));
        assert!(
            e.contains("test.toml:2:") && e.contains("dns.lb_resolver"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn resources_default_to_cockroachdbs_manifests_and_to_each_other() {
    let c = parse(MINIMAL).unwrap().cockroachdb;
    assert_eq!(
        [c.cpu_request, c.cpu_limit, c.memory_request, c.memory_limit],
        ["2", "2", "8Gi", "8Gi"]
    );
    let c = parse(&format!(
        "[cockroachdb]\ncpu_limit = \"4\"\nmemory_request = \"16Gi\"\n{MINIMAL}"
    ))
    .unwrap()
    .cockroachdb;
    assert_eq!(
        [c.cpu_request, c.cpu_limit, c.memory_request, c.memory_limit],
        ["4", "4", "16Gi", "16Gi"]
    );
}

#[test]
fn load_resolves_relative_paths_against_the_config_files_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("crdb.toml");
    let text = format!(
        "generated_dir = \"out\"\n[certs]\nca_key = \"/abs/ca.key\"\n[cockroachdb]\ntemplates_dir = \"tpl\"\n{MINIMAL}"
    );
    std::fs::write(&file, text).unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(c.generated_dir, dir.join("out"));
    assert_eq!(c.certs.dir, dir.join("certs"));
    assert_eq!(c.certs.ca_key, PathBuf::from("/abs/ca.key"));
    assert_eq!(c.cockroachdb.templates_dir, Some(dir.join("tpl")));
    // parse() stays pure: paths as written.
    assert_eq!(parse(MINIMAL).unwrap().certs.dir, PathBuf::from("certs"));
}

#[test]
fn generated_dir_and_certs_dir_must_not_overlap() {
    for extra in [
        "generated_dir = \"certs\"\n",
        "generated_dir = \"certs/gen\"\n",
        "generated_dir = \"out\"\n[certs]\ndir = \"out/certs\"\n",
    ] {
        let err = errors(&format!("{extra}{MINIMAL}"));
        assert!(
            err.contains("must be separate directories"),
            "{extra}: {err}"
        );
    }
}
