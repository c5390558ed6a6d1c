//! Tests of the contract every provider keeps (round trip, idempotence,
//! replacement), of our own input, and of damaged ownership markers.

use super::fixtures::*;
use super::*;

#[test]
fn remove_after_merge_restores_every_fixture_byte_for_byte() {
    for (provider, name, x) in all_fixtures() {
        for opts in option_sets() {
            let merged = merge(provider, &x, &ours(), &opts).unwrap();
            assert_ne!(merged, x, "{provider} / {name}: merge changed nothing");
            assert!(has_ours(provider, &merged), "{provider} / {name}");
            assert!(!has_ours(provider, &x), "{provider} / {name}");
            let restored = remove(provider, &merged).unwrap();
            assert_eq!(restored, x, "{provider} / {name}: remove(merge(x)) != x");
            assert!(!has_ours(provider, &restored), "{provider} / {name}");
        }
    }
}

#[test]
fn merge_is_idempotent() {
    for (provider, name, x) in all_fixtures() {
        for opts in option_sets() {
            let once = merge(provider, &x, &ours(), &opts).unwrap();
            let twice = merge(provider, &once, &ours(), &opts).unwrap();
            assert_eq!(twice, once, "{provider} / {name}");
        }
    }
}

#[test]
fn merge_with_new_addresses_replaces_ours() {
    for (provider, name, x) in all_fixtures() {
        let opts = ForwardOptions::default();
        let old = merge(provider, &x, &ours(), &opts).unwrap();
        let moved = merge(provider, &old, &ours_moved(), &opts).unwrap();
        assert_eq!(
            moved,
            merge(provider, &x, &ours_moved(), &opts).unwrap(),
            "{provider} / {name}"
        );
        let forwards = parse_forwards(provider, &moved).unwrap();
        assert!(forwards.contains(&fwd("us-west1-a.svc.cluster.local", &["10.0.0.9"])));
        assert!(
            !forwards
                .iter()
                .any(|f| f.servers.contains(&"10.0.0.1".parse().unwrap()))
        );
        assert_eq!(remove(provider, &moved).unwrap(), x, "{provider} / {name}");
    }
}

#[test]
fn merge_with_no_forwards_is_remove() {
    for (provider, name, x) in all_fixtures() {
        let opts = ForwardOptions::default();
        assert_eq!(
            merge(provider, &x, &[], &opts).unwrap(),
            x,
            "{provider} / {name}"
        );
        let merged = merge(provider, &x, &ours(), &opts).unwrap();
        assert_eq!(
            merge(provider, &merged, &[], &opts).unwrap(),
            x,
            "{provider} / {name}"
        );
    }
}

#[test]
fn parse_forwards_lists_the_users_and_ours() {
    for (provider, name, x) in all_fixtures() {
        let before = parse_forwards(provider, &x).unwrap();
        let merged = merge(provider, &x, &ours(), &ForwardOptions::default()).unwrap();
        let after = parse_forwards(provider, &merged).unwrap();
        for f in before.iter().chain(&ours()) {
            assert!(
                after.contains(f),
                "{provider} / {name}: {f:?} missing from {after:?}"
            );
        }
        assert_eq!(
            after.len(),
            before.len() + 2,
            "{provider} / {name}: {after:?}"
        );
    }
}

#[test]
fn parse_forwards_reads_realistic_user_configs() {
    assert_eq!(
        parse_forwards(DnsProvider::KubeDns, &gke_kube_dns()).unwrap(),
        vec![
            fwd("acme.internal", &["10.99.0.10"]),
            fwd(".", &["8.8.8.8", "8.8.4.4"]),
        ]
    );
    // Ports are dropped; host names cannot be represented and are skipped.
    assert_eq!(
        parse_forwards(
            DnsProvider::KubeDns,
            &data(&[(STUB_DOMAINS_KEY, PRETTY_STUB_DOMAINS)])
        )
        .unwrap(),
        vec![
            fwd("acme.internal", &["10.99.0.10", "10.99.0.11"]),
            fwd("corp.example.com", &["172.16.0.53"]),
        ]
    );
    // `forward . /etc/resolv.conf` names no address.
    let eks = corefile(&format!("{EKS_COREFILE}{USER_BLOCK}"));
    assert_eq!(
        parse_forwards(DnsProvider::CoreDns, &eks).unwrap(),
        vec![fwd("consul.local", &["10.150.0.1", "10.150.0.2"])]
    );
    let aks = &custom_fixtures()[1].1;
    assert_eq!(
        parse_forwards(DnsProvider::CoreDnsCustom, aks).unwrap(),
        vec![fwd("acme.internal", &["10.99.0.10"])]
    );
    let upstream = &custom_fixtures()[2].1;
    assert_eq!(
        parse_forwards(DnsProvider::CoreDnsCustom, upstream).unwrap(),
        vec![fwd(".", &["1.1.1.1"])]
    );
    let odd = corefile(
        "dns://Example.COM.:53, other.org {\n  forward . dns://10.1.1.1:5353 [fd00::1]:53 tls://9.9.9.9\n}\n\
             tls://secure.org {\n  forward . 10.2.2.2\n}\nhigh.port:5300 {\n  forward . 10.3.3.3\n}\n",
    );
    assert_eq!(
        parse_forwards(DnsProvider::CoreDns, &odd).unwrap(),
        vec![
            fwd("example.com", &["10.1.1.1", "fd00::1"]),
            fwd("other.org", &["10.1.1.1", "fd00::1"]),
        ]
    );
}

#[test]
fn invalid_forwards_are_rejected_before_anything_is_written() {
    let opts = ForwardOptions::default();
    let x = gke_kube_dns();
    for bad in [
        "",
        ".",
        "a..b",
        "-a.example",
        "a b.example",
        "a{.example",
        "\"q\".example",
    ] {
        for provider in DnsProvider::ALL {
            let err = merge(provider, &x, &[fwd(bad, &["10.0.0.1"])], &opts).unwrap_err();
            assert!(
                matches!(err, DnsError::InvalidDomain { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }
    let long_label = format!("{}.example", "a".repeat(64));
    assert!(matches!(
        merge(
            DnsProvider::KubeDns,
            &x,
            &[fwd(&long_label, &["10.0.0.1"])],
            &opts
        ),
        Err(DnsError::InvalidDomain { .. })
    ));
    assert!(matches!(
        merge(DnsProvider::KubeDns, &x, &[fwd("a.example", &[])], &opts),
        Err(DnsError::NoServers { .. })
    ));
    let dup = [
        fwd("A.example.", &["10.0.0.1"]),
        fwd("a.example", &["10.0.0.2"]),
    ];
    assert_eq!(
        merge(DnsProvider::CoreDns, &corefile(EKS_COREFILE), &dup, &opts).unwrap_err(),
        DnsError::DuplicateDomain {
            domain: "a.example".to_string()
        }
    );
}

#[test]
fn our_domains_are_normalised_and_sorted() {
    let shouty = [
        fwd("US-WEST1-A.svc.cluster.local.", &["10.0.0.1"]),
        fwd("us-central1-a.svc.cluster.local", &["10.0.1.1", "fd00::53"]),
    ];
    for (provider, name, x) in all_fixtures() {
        let opts = ForwardOptions::default();
        assert_eq!(
            merge(provider, &x, &shouty, &opts).unwrap(),
            merge(provider, &x, &ours(), &opts).unwrap(),
            "{provider} / {name}"
        );
    }
}

#[test]
fn malformed_inputs_never_panic() {
    // Every prefix of every fixture and of its merged form, in the key
    // each provider reads, through every entry point.
    let mut texts: Vec<String> = Vec::new();
    for (provider, _, x) in all_fixtures() {
        texts.extend(x.values().cloned());
        let merged = merge(provider, &x, &ours(), &ForwardOptions::default()).unwrap();
        texts.extend(merged.values().cloned());
    }
    for text in &texts {
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let t = &text[..end];
            for key in [
                STUB_DOMAINS_KEY,
                KUBE_DNS_OWNERSHIP_KEY,
                COREFILE_KEY,
                "x.server",
                "x.override",
            ] {
                let d = data(&[(key, t)]);
                for provider in DnsProvider::ALL {
                    let _ = merge(provider, &d, &ours(), &ForwardOptions::default());
                    let _ = remove(provider, &d);
                    let _ = parse_forwards(provider, &d);
                    let _ = has_ours(provider, &d);
                }
            }
        }
    }
}

#[test]
fn dnsmasq_servers_translate_like_kube_dns() {
    let forwards = [
        fwd("us-west1-a.svc.cluster.local", &["10.0.0.1", "fd00::53"]),
        fwd(".", &["8.8.8.8"]),
    ];
    assert_eq!(
        dnsmasq_servers(&forwards),
        vec![
            "--server=/us-west1-a.svc.cluster.local/10.0.0.1",
            "--server=/us-west1-a.svc.cluster.local/fd00::53",
            "--server=8.8.8.8",
        ]
    );
    let merged = merge(
        DnsProvider::KubeDns,
        &gke_kube_dns(),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    insta::assert_snapshot!(
        dnsmasq_servers(&parse_forwards(DnsProvider::KubeDns, &merged).unwrap()).join("\n"),
        @r#"
                --server=/acme.internal/10.99.0.10
                --server=/us-central1-a.svc.cluster.local/10.0.1.1
                --server=/us-central1-a.svc.cluster.local/fd00::53
                --server=/us-west1-a.svc.cluster.local/10.0.0.1
                --server=8.8.8.8
                --server=8.8.4.4
                "#
    );
}

#[test]
fn provider_names() {
    for (p, name) in [
        (DnsProvider::KubeDns, "kube-dns"),
        (DnsProvider::CoreDns, "coredns"),
        (DnsProvider::CoreDnsCustom, "coredns-custom"),
    ] {
        assert_eq!(p.configmap_name(), name);
        assert_eq!(p.to_string(), name);
        assert_eq!(name.parse::<DnsProvider>().unwrap(), p);
        assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{name}\""));
    }
    assert!("CoreDNS".parse::<DnsProvider>().is_err());
}

fn our_domains() -> BTreeSet<String> {
    ours().into_iter().map(|f| f.domain).collect()
}

/// The user deletes our BEGIN line and adds a block of their own after
/// our section.
fn corefile_without_begin_marker() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let original = corefile(&format!("{EKS_COREFILE}{USER_BLOCK}"));
    let merged = merge(
        DnsProvider::CoreDns,
        &original,
        &ours(),
        &Default::default(),
    )
    .unwrap();
    let text = merged[COREFILE_KEY].replace(&format!("{BEGIN_MARKER}\n"), "");
    (
        original,
        corefile(&format!(
            "{text}acme.internal:53 {{\n    forward . 10.99.0.10\n}}\n"
        )),
    )
}

#[test]
fn damaged_markers_never_make_a_users_domain_ours() {
    let (_, damaged) = corefile_without_begin_marker();
    assert!(!has_ours(DnsProvider::CoreDns, &damaged));
    assert_eq!(
        our_forwards(DnsProvider::CoreDns, &damaged),
        Vec::<Forward>::new()
    );
    // An END marker without BEGIN: nothing is ours either, never
    // `consul.local` or the user's `acme.internal`.
    let original = corefile(&format!("{EKS_COREFILE}{USER_BLOCK}"));
    let merged = merge(
        DnsProvider::CoreDns,
        &original,
        &ours(),
        &Default::default(),
    )
    .unwrap();
    let no_end = corefile(&merged[COREFILE_KEY].replace(END_MARKER, "# end"));
    assert!(remove(DnsProvider::CoreDns, &no_end).is_err());
    assert_eq!(
        our_forwards(DnsProvider::CoreDns, &no_end),
        Vec::<Forward>::new()
    );
    // Intact markers: exactly our two domains.
    let mut found: Vec<String> = our_forwards(DnsProvider::CoreDns, &merged)
        .into_iter()
        .map(|f| f.domain)
        .collect();
    found.sort();
    assert_eq!(found, our_domains().into_iter().collect::<Vec<_>>());
}

#[test]
fn our_forwarding_is_found_after_the_markers_were_removed_by_hand() {
    let (original, damaged) = corefile_without_begin_marker();
    assert_eq!(
        leftover_domains(
            DnsProvider::CoreDns,
            &damaged,
            &our_domains(),
            Some(&original)
        )
        .unwrap(),
        our_domains().into_iter().collect::<Vec<_>>()
    );
    // kube-dns: the ownership record deleted, our stub domains still there.
    let original = gke_kube_dns();
    let mut merged = merge(
        DnsProvider::KubeDns,
        &original,
        &ours(),
        &Default::default(),
    )
    .unwrap();
    merged.remove(KUBE_DNS_OWNERSHIP_KEY);
    assert!(!has_ours(DnsProvider::KubeDns, &merged));
    assert_eq!(
        leftover_domains(
            DnsProvider::KubeDns,
            &merged,
            &our_domains(),
            Some(&original)
        )
        .unwrap(),
        our_domains().into_iter().collect::<Vec<_>>()
    );
    // A domain the user forwarded before apply is never counted as ours,
    // and a clean config has nothing left over.
    let theirs: BTreeSet<String> = ["acme.internal".to_string()].into();
    assert_eq!(
        leftover_domains(DnsProvider::KubeDns, &merged, &theirs, Some(&original)).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        leftover_domains(
            DnsProvider::KubeDns,
            &original,
            &our_domains(),
            Some(&original)
        )
        .unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn forwarding_digest_is_stable_and_follows_every_change() {
    let opts = ForwardOptions::default();
    let mut reversed = ours();
    reversed.reverse();
    assert_eq!(
        forwarding_digest(&ours(), &opts),
        forwarding_digest(&reversed, &opts)
    );
    assert_eq!(
        forwarding_digest(&ours(), &opts).as_deref(),
        Some("f88bc4f8ede7ddbf"),
        "FNV-1a of the canonical text, computed independently; recorded in clusters, so it must not change between builds"
    );
    assert_ne!(
        forwarding_digest(&ours(), &opts),
        forwarding_digest(&ours_moved(), &opts)
    );
    let tcp = ForwardOptions {
        force_tcp: true,
        ..opts
    };
    assert_ne!(
        forwarding_digest(&ours(), &opts),
        forwarding_digest(&ours(), &tcp)
    );
    assert_eq!(forwarding_digest(&[], &opts), None);
}

/// dnsmasq arguments (what kube-dns runs) for `forwards`, as kube-dns's dnsmasq-nanny translates
/// `stubDomains` (`--server=/<domain>/<ip>`) and `upstreamNameservers`
/// (domain `.`: `--server=<ip>`).
fn dnsmasq_servers(forwards: &[Forward]) -> Vec<String> {
    forwards
        .iter()
        .flat_map(|f| {
            f.servers.iter().map(move |ip| {
                if f.domain == "." {
                    format!("--server={ip}")
                } else {
                    format!("--server=/{}/{ip}", f.domain)
                }
            })
        })
        .collect()
}
