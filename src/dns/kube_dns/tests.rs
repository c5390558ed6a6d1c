use crate::dns::fixtures::*;
use crate::dns::*;

#[test]
fn kube_dns_merged_output() {
    let merged = merge(
        DnsProvider::KubeDns,
        &gke_kube_dns(),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    insta::assert_snapshot!(merged[STUB_DOMAINS_KEY], @r#"
            {"acme.internal": ["10.99.0.10"], "us-central1-a.svc.cluster.local": ["10.0.1.1", "fd00::53"], "us-west1-a.svc.cluster.local": ["10.0.0.1"]}
            "#);
    insta::assert_snapshot!(merged[KUBE_DNS_OWNERSHIP_KEY], @r#"
            {"domains":["us-central1-a.svc.cluster.local","us-west1-a.svc.cluster.local"],"createdStubDomains":false}
            "#);
    assert_eq!(merged[UPSTREAM_NAMESERVERS_KEY], GKE_UPSTREAMS);

    let pretty = merge(
        DnsProvider::KubeDns,
        &data(&[(STUB_DOMAINS_KEY, PRETTY_STUB_DOMAINS)]),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    insta::assert_snapshot!(pretty[STUB_DOMAINS_KEY], @r#"
            {
              "acme.internal": [
                "10.99.0.10",
                "10.99.0.11"
              ],
              "corp.example.com": ["172.16.0.53:5353", "ns1.corp.example.com"],
              "us-central1-a.svc.cluster.local": ["10.0.1.1", "fd00::53"],
              "us-west1-a.svc.cluster.local": ["10.0.0.1"]
            }
            "#);

    let created = merge(
        DnsProvider::KubeDns,
        &data(&[]),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    insta::assert_snapshot!(format!("{created:#?}"), @r#"
            {
                "crdb-multiregion.managed-stub-domains": "{\"domains\":[\"us-central1-a.svc.cluster.local\",\"us-west1-a.svc.cluster.local\"],\"createdStubDomains\":true}",
                "stubDomains": "{\"us-central1-a.svc.cluster.local\": [\"10.0.1.1\", \"fd00::53\"], \"us-west1-a.svc.cluster.local\": [\"10.0.0.1\"]}",
            }
            "#);
}

/// setup.py replaced the whole `kube-dns` ConfigMap, dropping the user's
/// stub domains and upstream nameservers.
#[test]
fn setup_py_overwrote_user_stub_domains() {
    let merged = merge(
        DnsProvider::KubeDns,
        &gke_kube_dns(),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    let stub: serde_json::Value = serde_json::from_str(&merged[STUB_DOMAINS_KEY]).unwrap();
    assert_eq!(stub["acme.internal"], serde_json::json!(["10.99.0.10"]));
    assert_eq!(
        stub["us-west1-a.svc.cluster.local"],
        serde_json::json!(["10.0.0.1"])
    );
    assert_eq!(merged[UPSTREAM_NAMESERVERS_KEY], GKE_UPSTREAMS);
}

/// setup.py's stub domains carry no ownership record: they are the user's
/// now, and we refuse to overwrite them rather than guess.
#[test]
fn setup_py_leftover_stub_domains_are_a_conflict() {
    let leftover = data(&[(
        STUB_DOMAINS_KEY,
        r#"{"us-west1-a.svc.cluster.local": ["10.0.0.1"]}"#,
    )]);
    let err = merge(
        DnsProvider::KubeDns,
        &leftover,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::Conflict { domain, .. } if domain == "us-west1-a.svc.cluster.local")
    );
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns`: key `stubDomains` already forwards `us-west1-a.svc.cluster.local` to 10.0.0.1; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)");
    assert!(!has_ours(DnsProvider::KubeDns, &leftover));
    assert_eq!(remove(DnsProvider::KubeDns, &leftover).unwrap(), leftover);
}

#[test]
fn kube_dns_conflict_ignores_case_and_trailing_dot() {
    let user = data(&[(
        STUB_DOMAINS_KEY,
        r#"{"acme.internal": ["10.99.0.10"], "US-Central1-A.svc.cluster.local.": ["10.9.9.9"]}"#,
    )]);
    let err = merge(
        DnsProvider::KubeDns,
        &user,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    match err {
        DnsError::Conflict { domain, what, .. } => {
            assert_eq!(domain, "us-central1-a.svc.cluster.local");
            assert!(what.contains("10.9.9.9"), "{what}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn kube_dns_remove_after_user_reformatted_still_drops_only_ours() {
    let merged = merge(
        DnsProvider::KubeDns,
        &gke_kube_dns(),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    // The user (or a tool) re-serialises the JSON: our fixed format is gone.
    let value: serde_json::Value = serde_json::from_str(&merged[STUB_DOMAINS_KEY]).unwrap();
    let mut edited = merged.clone();
    edited.insert(
        STUB_DOMAINS_KEY.to_string(),
        serde_json::to_string_pretty(&value).unwrap(),
    );
    let removed = remove(DnsProvider::KubeDns, &edited).unwrap();
    let stub: serde_json::Value = serde_json::from_str(&removed[STUB_DOMAINS_KEY]).unwrap();
    assert_eq!(stub, serde_json::json!({"acme.internal": ["10.99.0.10"]}));
    assert!(!removed.contains_key(KUBE_DNS_OWNERSHIP_KEY));
    assert_eq!(removed[UPSTREAM_NAMESERVERS_KEY], GKE_UPSTREAMS);
}

#[test]
fn kube_dns_entry_added_by_user_after_merge_survives_remove() {
    for (name, x) in [("existing key", gke_kube_dns()), ("created key", data(&[]))] {
        let merged = merge(
            DnsProvider::KubeDns,
            &x,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let text = &merged[STUB_DOMAINS_KEY];
        let close = text.rfind('}').unwrap();
        let edited_text = format!(
            "{}, \"late.internal\": [\"10.5.5.5\"]{}",
            &text[..close],
            &text[close..]
        );
        let mut edited = merged.clone();
        edited.insert(STUB_DOMAINS_KEY.to_string(), edited_text);
        let removed = remove(DnsProvider::KubeDns, &edited).unwrap();
        let forwards = parse_forwards(DnsProvider::KubeDns, &removed).unwrap();
        assert!(
            forwards.contains(&fwd("late.internal", &["10.5.5.5"])),
            "{name}"
        );
        assert!(
            !forwards
                .iter()
                .any(|f| f.domain.ends_with("svc.cluster.local")),
            "{name}: {forwards:?}"
        );
    }
}

#[test]
fn kube_dns_user_deleting_one_of_ours_is_fine() {
    let merged = merge(
        DnsProvider::KubeDns,
        &gke_kube_dns(),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    let mut edited = merged.clone();
    edited.insert(
        STUB_DOMAINS_KEY.to_string(),
        r#"{"acme.internal": ["10.99.0.10"], "us-west1-a.svc.cluster.local": ["10.0.0.1"]}"#
            .to_string(),
    );
    let removed = remove(DnsProvider::KubeDns, &edited).unwrap();
    assert_eq!(
        removed[STUB_DOMAINS_KEY],
        r#"{"acme.internal": ["10.99.0.10"]}"#
    );
}

#[test]
fn kube_dns_ignores_forward_options_and_server_limit() {
    let many: Vec<String> = (1..=20).map(|i| format!("10.0.0.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let forwards = [fwd("big.svc.cluster.local", &many)];
    let a = merge(
        DnsProvider::KubeDns,
        &data(&[]),
        &forwards,
        &ForwardOptions::default(),
    );
    let b = merge(
        DnsProvider::KubeDns,
        &data(&[]),
        &forwards,
        &ForwardOptions {
            force_tcp: true,
            cache_seconds: 5,
        },
    );
    assert_eq!(a.unwrap(), b.unwrap());
    assert!(matches!(
        merge(
            DnsProvider::CoreDns,
            &corefile(EKS_COREFILE),
            &forwards,
            &ForwardOptions::default()
        ),
        Err(DnsError::TooManyServers { count: 20, .. })
    ));
}

#[test]
fn kube_dns_malformed_json_says_where() {
    let trailing_comma = data(&[(
        STUB_DOMAINS_KEY,
        "{\n  \"acme.internal\": [\"10.99.0.10\"],\n}\n",
    )]);
    let err = merge(
        DnsProvider::KubeDns,
        &trailing_comma,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::InvalidJson { key, line: 3, column: 1, .. } if key == STUB_DOMAINS_KEY),
        "{err:?}"
    );
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns` key `stubDomains` is not valid JSON (line 3, column 1): trailing comma");
    assert!(parse_forwards(DnsProvider::KubeDns, &trailing_comma).is_err());

    let array = data(&[(STUB_DOMAINS_KEY, "[\"10.0.0.1\"]")]);
    let err = merge(
        DnsProvider::KubeDns,
        &array,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns` key `stubDomains` must be a JSON object mapping each domain to a list of nameserver strings: found an array");

    let string_value = data(&[(STUB_DOMAINS_KEY, r#"{"acme.internal": "10.99.0.10"}"#)]);
    let err = merge(
        DnsProvider::KubeDns,
        &string_value,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns` key `stubDomains` must be a JSON object mapping each domain to a list of nameserver strings: `acme.internal` maps to a string, not a list of strings");

    let empty = data(&[(STUB_DOMAINS_KEY, "")]);
    assert!(matches!(
        merge(
            DnsProvider::KubeDns,
            &empty,
            &ours(),
            &ForwardOptions::default()
        ),
        Err(DnsError::InvalidJson { .. })
    ));
}

#[test]
fn kube_dns_broken_upstreams_do_not_block_merge() {
    // We never touch upstreamNameservers, so its content is not our business
    // when merging; reading it for `check` reports the problem.
    let x = data(&[
        (STUB_DOMAINS_KEY, GKE_STUB_DOMAINS),
        (UPSTREAM_NAMESERVERS_KEY, "8.8.8.8"),
    ]);
    let merged = merge(
        DnsProvider::KubeDns,
        &x,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    assert_eq!(remove(DnsProvider::KubeDns, &merged).unwrap(), x);
    assert!(matches!(
        parse_forwards(DnsProvider::KubeDns, &x),
        Err(DnsError::InvalidJson { .. })
    ));
    let wrong_shape = data(&[(UPSTREAM_NAMESERVERS_KEY, r#"{"a": 1}"#)]);
    assert!(matches!(
        parse_forwards(DnsProvider::KubeDns, &wrong_shape),
        Err(DnsError::JsonShape { .. })
    ));
}

#[test]
fn kube_dns_unreadable_ownership_record_is_an_error() {
    let mut merged = merge(
        DnsProvider::KubeDns,
        &gke_kube_dns(),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    merged.insert(KUBE_DNS_OWNERSHIP_KEY.to_string(), "us-west1-a".to_string());
    let err = remove(DnsProvider::KubeDns, &merged).unwrap_err();
    assert!(matches!(err, DnsError::OwnershipRecord { .. }), "{err:?}");
    assert!(
        merge(
            DnsProvider::KubeDns,
            &merged,
            &ours(),
            &ForwardOptions::default()
        )
        .is_err()
    );
}
