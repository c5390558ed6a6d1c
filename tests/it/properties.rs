//! Bounded property tests, part of the normal `cargo test` run:
//!
//! - the config loader never panics on any input, and every problem it
//!   reports carries a line and column inside the file;
//! - DNS forwarding on generated Corefiles, kube-dns `stubDomains` JSON and
//!   AKS `coredns-custom` data: `remove(merge(x)) == x` byte for byte, data
//!   without our entries is left alone by `remove`, and neither function
//!   panics on arbitrary text.
//!
//! Case counts are fixed (no environment override) so the run stays bounded.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crdb_multiregion::config::Config;
use crdb_multiregion::dns::{self, DnsProvider, Forward, ForwardOptions};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

const EXAMPLE: &str = include_str!("../../config/example.toml");

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Config loader

/// Pieces that make mutated configs interesting: TOML syntax, keys we know,
/// values near the edges, and characters that reach shells and objects.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "\"\"\"",
    ",",
    ".",
    "#",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\\",
    "\\u0000",
    "0",
    "-1",
    "1e3",
    "99999999999999999999",
    "1.5",
    "true",
    "inf",
    "nan",
    "zones",
    "name",
    "context",
    "region",
    "namespace",
    "replicas",
    "cockroachdb",
    "storage",
    "memory_limit",
    "cpu_request",
    "image",
    "dns",
    "annotations",
    "protocols",
    "certs",
    "dir",
    "ca_key",
    "federation",
    "cluster_domain",
    "$(id)",
    ";",
    "`",
    "\u{200b}",
    "é",
    "\u{feff}",
    "Gi",
    "Ei",
    "m",
    "k8s.io/x",
];

/// A config text: the example with random edits, or random tokens.
fn config_text() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0usize..8,
        prop::sample::select(TOKENS),
    );
    let mutated = prop::collection::vec(edit, 0..12).prop_map(|edits| {
        let mut text = EXAMPLE.to_string();
        for (at, delete, insert) in edits {
            let boundaries: Vec<usize> = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .collect();
            let start = boundaries[at.index(boundaries.len())];
            let end = boundaries
                .iter()
                .copied()
                .filter(|b| *b >= start)
                .nth(delete)
                .unwrap_or(text.len());
            text.replace_range(start..end, insert);
        }
        text
    });
    let tokens =
        prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.concat());
    prop_oneof![4 => mutated, 1 => tokens, 1 => any::<String>()]
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn config_loader_never_panics_and_every_problem_has_a_place(text in config_text()) {
        let lines = text.split('\n').count();
        match Config::parse(Path::new("fuzz.toml"), &text) {
            Ok(config) => prop_assert!(!config.zones.is_empty()),
            Err(e) => {
                let problems = e.problems();
                prop_assert!(!problems.is_empty(), "an error without problems: {e}");
                for p in problems {
                    prop_assert!(p.line >= 1 && p.line <= lines, "line {} of {lines}: {e}", p.line);
                    prop_assert!(p.column >= 1, "{e}");
                    prop_assert!(!p.message.is_empty());
                }
                let text = e.to_string();
                let first = &problems[0];
                let place = format!("fuzz.toml:{}:{}: ", first.line, first.column);
                prop_assert!(text.contains(&place), "{text}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// DNS merge / remove

/// Our forwards: distinct domains of the shape the planner makes.
fn our_forwards() -> impl Strategy<Value = Vec<Forward>> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ];
    let ns = prop::sample::subsequence(
        vec!["us-east1-b", "us-west1-a", "eu-west-1", "crdb-ap", "z0"],
        1..=5,
    );
    (
        ns,
        prop::collection::vec(prop::collection::vec(ip, 1..4), 5),
    )
        .prop_map(|(ns, servers)| {
            ns.into_iter()
                .zip(servers)
                .map(|(ns, servers)| Forward {
                    domain: format!("{ns}.svc.cluster.local"),
                    servers,
                })
                .collect()
        })
}

fn options() -> impl Strategy<Value = ForwardOptions> {
    (
        any::<bool>(),
        prop_oneof![Just(0u32), Just(30u32), 1u32..3600],
    )
        .prop_map(|(force_tcp, cache_seconds)| ForwardOptions {
            force_tcp,
            cache_seconds,
        })
}

/// Domains a user may have, none of them ours.
const USER_ZONES: &[&str] = &[
    "example.com",
    "corp.example",
    "consul",
    "in-addr.arpa",
    "10.in-addr.arpa",
    "svc.other.local",
    "ip6.arpa",
];

/// Whitespace a human may type between tokens.
fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", "  ", "\n", "\n  ", "\n    ", "\t"])
}

/// A Corefile as users and distributions write them.
fn corefile() -> impl Strategy<Value = String> {
    let plugin = prop::sample::select(vec![
        "errors",
        "health {\n       lameduck 5s\n    }",
        "ready",
        "kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }",
        "prometheus :9153",
        "forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }",
        "forward . 8.8.8.8 1.1.1.1",
        "cache 30",
        "loop",
        "reload",
        "loadbalance",
        "log",
        "import custom/*.override",
        "# a comment",
        "hosts {\n       10.0.0.1 db.example.com\n       fallthrough\n    }",
    ]);
    let zone = prop_oneof![
        Just(".".to_string()),
        prop::sample::select(USER_ZONES).prop_map(str::to_string)
    ];
    let block = (
        prop::collection::vec(zone, 1..3),
        prop::option::of(prop::sample::select(vec![":53", ":5353"])),
        prop::collection::vec(plugin, 0..8),
        prop::sample::select(vec!["    ", "  ", "\t"]),
    )
        .prop_map(|(mut zones, port, plugins, indent)| {
            zones.dedup();
            let zones: Vec<String> = zones
                .into_iter()
                .map(|z| format!("{z}{}", port.unwrap_or("")))
                .collect();
            let mut b = format!("{} {{\n", zones.join(" "));
            for p in plugins {
                b.push_str(indent);
                b.push_str(p);
                b.push('\n');
            }
            b.push('}');
            b
        });
    (
        prop::collection::vec(
            (
                block,
                prop::sample::select(vec!["\n", "\n\n", "\n# between\n"]),
            ),
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(blocks, final_newline)| {
            let mut text = String::new();
            for (i, (block, sep)) in blocks.iter().enumerate() {
                if i > 0 {
                    text.push_str(sep);
                }
                text.push_str(block);
            }
            if final_newline {
                text.push('\n');
            }
            text
        })
}

/// kube-dns ConfigMap data: optional stubDomains JSON (user domains only,
/// human formatting), optional upstreamNameservers, other keys.
fn kube_dns_data() -> impl Strategy<Value = BTreeMap<String, String>> {
    let member = (
        prop::sample::select(USER_ZONES),
        prop::collection::vec(any::<[u8; 4]>(), 1..3),
        ws(),
        ws(),
    );
    let stub =
        prop::option::of((prop::collection::vec(member, 0..4), ws(), ws())).prop_map(|stub| {
            stub.map(|(members, open, close)| {
                let mut seen = std::collections::BTreeSet::new();
                let parts: Vec<String> = members
                    .into_iter()
                    .filter(|(d, ..)| seen.insert(*d))
                    .map(|(d, ips, a, b)| {
                        let ips: Vec<String> = ips
                            .iter()
                            .map(|o| format!("\"{}\"", IpAddr::from(*o)))
                            .collect();
                        format!("{a}\"{d}\":{b}[{}]", ips.join(", "))
                    })
                    .collect();
                format!("{{{open}{}{close}}}", parts.join(","))
            })
        });
    (
        stub,
        prop::option::of(Just("[\"8.8.8.8\", \"8.8.4.4\"]".to_string())),
        prop::option::of(Just("other".to_string())),
    )
        .prop_map(|(stub, upstream, other)| {
            let mut data = BTreeMap::new();
            if let Some(s) = stub {
                data.insert(dns::STUB_DOMAINS_KEY.to_string(), s);
            }
            if let Some(u) = upstream {
                data.insert(dns::UPSTREAM_NAMESERVERS_KEY.to_string(), u);
            }
            if let Some(o) = other {
                data.insert("user-key".to_string(), o);
            }
            data
        })
}

fn custom_data() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["a.server", "b.override", "log.override", "x"])
            .prop_map(str::to_string),
        corefile(),
        0..3,
    )
}

fn assert_round_trip(
    provider: DnsProvider,
    data: &BTreeMap<String, String>,
    ours: &[Forward],
    opts: &ForwardOptions,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        &dns::remove(provider, data).expect("remove on user data"),
        data
    );
    let merged = dns::merge(provider, data, ours, opts);
    let merged = match merged {
        Ok(m) => m,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "merge refused generated {provider} data: {e}\n{data:#?}"
            )));
        }
    };
    prop_assert!(dns::has_ours(provider, &merged));
    let again = dns::merge(provider, &merged, ours, opts).expect("re-merge");
    prop_assert_eq!(&again, &merged, "merge is idempotent");
    let back = dns::remove(provider, &merged).expect("remove what merge wrote");
    prop_assert_eq!(&back, data);
    Ok(())
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn corefile_remove_undoes_merge(text in corefile(), ours in our_forwards(), opts in options()) {
        let data = BTreeMap::from([(dns::COREFILE_KEY.to_string(), text)]);
        assert_round_trip(DnsProvider::CoreDns, &data, &ours, &opts)?;
    }

    #[test]
    fn stub_domains_remove_undoes_merge(data in kube_dns_data(), ours in our_forwards()) {
        assert_round_trip(DnsProvider::KubeDns, &data, &ours, &ForwardOptions::default())?;
    }

    #[test]
    fn coredns_custom_remove_undoes_merge(data in custom_data(), ours in our_forwards(), opts in options()) {
        assert_round_trip(DnsProvider::CoreDnsCustom, &data, &ours, &opts)?;
    }

    #[test]
    fn merge_and_remove_never_panic_on_arbitrary_text(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(prop::sample::select(vec![
                "{", "}", "[", "]", "\"", ":", ",", ".", " ", "\n", "#", "\\", "forward", "example.com",
                dns::BEGIN_MARKER, dns::END_MARKER, "10.0.0.1", "svc.cluster.local", "us-east1-b",
                "{\"domains\":[\"us-east1-b.svc.cluster.local\"],\"createdStubDomains\":true}",
            ]), 0..40).prop_map(|t| t.concat()),
        ],
        key in prop::sample::select(vec![
            dns::COREFILE_KEY, dns::STUB_DOMAINS_KEY, dns::KUBE_DNS_OWNERSHIP_KEY,
            dns::UPSTREAM_NAMESERVERS_KEY, dns::CUSTOM_SERVER_KEY,
        ]),
        ours in our_forwards(),
        opts in options(),
    ) {
        let data = BTreeMap::from([(key.to_string(), text)]);
        for provider in DnsProvider::ALL {
            let _ = dns::remove(provider, &data);
            if let Ok(merged) = dns::merge(provider, &data, &ours, &opts) {
                let back = dns::remove(provider, &merged);
                prop_assert!(back.is_ok(), "{provider}: remove failed on what merge wrote: {back:?}");
            }
            let _ = dns::parse_forwards(provider, &data);
        }
    }
}
