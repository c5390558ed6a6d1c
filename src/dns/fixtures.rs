//! Realistic DNS ConfigMaps of every provider and our forwards, shared by
//! the tests of [`super`] and its format modules.

use super::*;

pub(super) fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn fwd(domain: &str, servers: &[&str]) -> Forward {
    Forward {
        domain: domain.to_string(),
        servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

/// What us-east1-b forwards: the two OTHER zones, deliberately unsorted.
pub(super) fn ours() -> Vec<Forward> {
    vec![
        fwd("us-west1-a.svc.cluster.local", &["10.0.0.1"]),
        fwd("us-central1-a.svc.cluster.local", &["10.0.1.1", "fd00::53"]),
    ]
}

/// The same zones after their load balancers got new addresses.
pub(super) fn ours_moved() -> Vec<Forward> {
    vec![
        fwd("us-west1-a.svc.cluster.local", &["10.0.0.9"]),
        fwd("us-central1-a.svc.cluster.local", &["10.0.1.9"]),
    ]
}

pub(super) const GKE_STUB_DOMAINS: &str = "{\"acme.internal\": [\"10.99.0.10\"]}\n";
pub(super) const GKE_UPSTREAMS: &str = "[\"8.8.8.8\", \"8.8.4.4\"]\n";
pub(super) const PRETTY_STUB_DOMAINS: &str = r#"{
  "acme.internal": [
    "10.99.0.10",
    "10.99.0.11"
  ],
  "corp.example.com": ["172.16.0.53:5353", "ns1.corp.example.com"]
}
"#;

pub(super) fn gke_kube_dns() -> BTreeMap<String, String> {
    data(&[
        (STUB_DOMAINS_KEY, GKE_STUB_DOMAINS),
        (UPSTREAM_NAMESERVERS_KEY, GKE_UPSTREAMS),
    ])
}

pub(super) fn kube_dns_fixtures() -> Vec<(&'static str, BTreeMap<String, String>)> {
    vec![
        ("empty ConfigMap", data(&[])),
        (
            "no stubDomains key",
            data(&[(UPSTREAM_NAMESERVERS_KEY, GKE_UPSTREAMS)]),
        ),
        ("empty object", data(&[(STUB_DOMAINS_KEY, "{}")])),
        (
            "empty object with spaces",
            data(&[(STUB_DOMAINS_KEY, "  {\n}\n")]),
        ),
        ("GKE with user stub domain", gke_kube_dns()),
        (
            "pretty multi-line",
            data(&[(STUB_DOMAINS_KEY, PRETTY_STUB_DOMAINS)]),
        ),
        (
            "closing brace on its own line",
            data(&[(
                STUB_DOMAINS_KEY,
                "{\"acme.internal\": [\"10.99.0.10\"]\n}\n",
            )]),
        ),
        (
            "tab indented",
            data(&[(
                STUB_DOMAINS_KEY,
                "{\n\t\"acme.internal\": [\"10.99.0.10\"]\r\n}",
            )]),
        ),
        (
            "escaped key, no whitespace",
            data(&[(
                STUB_DOMAINS_KEY,
                r#"{"caf\u00e9.internal":["10.1.1.1"],"b.internal":[]}"#,
            )]),
        ),
    ]
}

pub(super) const EKS_COREFILE: &str = r#".:53 {
    errors
    health {
        lameduck 5s
      }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"#;

pub(super) const USER_BLOCK: &str = r#"consul.local:53 {
    errors
    cache 30
    forward . 10.150.0.1 10.150.0.2
}
"#;

pub(super) const AKS_MAIN_COREFILE: &str = r#".:53 {
    errors
    ready
    health {
      lameduck 5s
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
      ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import custom/*.override
}
import custom/*.server
"#;

pub(super) fn corefile(text: &str) -> BTreeMap<String, String> {
    data(&[(COREFILE_KEY, text)])
}

pub(super) fn coredns_fixtures() -> Vec<(&'static str, BTreeMap<String, String>)> {
    let no_newline = EKS_COREFILE.trim_end();
    let with_user = format!("{EKS_COREFILE}{USER_BLOCK}");
    let with_user_no_newline = format!("{EKS_COREFILE}{}", USER_BLOCK.trim_end());
    let blank_lines = format!("{EKS_COREFILE}\n\n");
    let crlf = EKS_COREFILE.replace('\n', "\r\n");
    vec![
        ("EKS default", corefile(EKS_COREFILE)),
        ("EKS default without trailing newline", corefile(no_newline)),
        ("EKS plus user server block", corefile(&with_user)),
        (
            "user block without trailing newline",
            corefile(&with_user_no_newline),
        ),
        ("trailing blank lines", corefile(&blank_lines)),
        ("CRLF line endings", corefile(&crlf)),
        (
            "AKS main Corefile with imports",
            corefile(AKS_MAIN_COREFILE),
        ),
        ("empty Corefile", corefile("")),
        ("only a newline", corefile("\n")),
    ]
}

pub(super) const AKS_USER_SERVER: &str = r#"acme.internal:53 {
    errors
    cache 30
    forward . 10.99.0.10
}
"#;

pub(super) fn custom_fixtures() -> Vec<(&'static str, BTreeMap<String, String>)> {
    vec![
        ("no coredns-custom entries", data(&[])),
        (
            "user .server and .override",
            data(&[
                ("acme.server", AKS_USER_SERVER),
                ("logging.override", "log\n"),
            ]),
        ),
        (
            "only an .override",
            data(&[("upstream.override", "forward . 1.1.1.1\n")]),
        ),
    ]
}

pub(super) fn all_fixtures() -> Vec<(DnsProvider, &'static str, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for (name, d) in kube_dns_fixtures() {
        out.push((DnsProvider::KubeDns, name, d));
    }
    for (name, d) in coredns_fixtures() {
        out.push((DnsProvider::CoreDns, name, d));
    }
    for (name, d) in custom_fixtures() {
        out.push((DnsProvider::CoreDnsCustom, name, d));
    }
    out
}

pub(super) fn option_sets() -> [ForwardOptions; 2] {
    [
        ForwardOptions::default(),
        ForwardOptions {
            force_tcp: true,
            cache_seconds: 0,
        },
    ]
}
