use crate::dns::fixtures::*;
use crate::dns::*;

#[test]
fn coredns_merged_output() {
    let merged = merge(
        DnsProvider::CoreDns,
        &corefile(EKS_COREFILE),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    insta::assert_snapshot!(merged[COREFILE_KEY], @r#"
            .:53 {
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

            # BEGIN crdb-multiregion (managed; do not edit)
            us-central1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.1.1 fd00::53
            }
            us-west1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.0.1
            }
            # END crdb-multiregion
            "#);

    let tcp = merge(
        DnsProvider::CoreDns,
        &corefile(EKS_COREFILE.trim_end()),
        &ours(),
        &ForwardOptions {
            force_tcp: true,
            cache_seconds: 10,
        },
    )
    .unwrap();
    let tail = &tcp[COREFILE_KEY][EKS_COREFILE.trim_end().len()..];
    insta::assert_snapshot!(format!("{tail:?}"), @r#"
            "\n\n# BEGIN crdb-multiregion (managed; do not edit)\nus-central1-a.svc.cluster.local:53 {\n    errors\n    cache 10\n    forward . 10.0.1.1 fd00::53 {\n        force_tcp\n    }\n}\nus-west1-a.svc.cluster.local:53 {\n    errors\n    cache 10\n    forward . 10.0.0.1 {\n        force_tcp\n    }\n}\n# END crdb-multiregion"
            "#);
}

#[test]
fn coredns_user_text_after_our_section_survives_remove() {
    let merged = merge(
        DnsProvider::CoreDns,
        &corefile(EKS_COREFILE),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    let edited = corefile(&format!("{}{USER_BLOCK}", merged[COREFILE_KEY]));
    let removed = remove(DnsProvider::CoreDns, &edited).unwrap();
    assert_eq!(removed[COREFILE_KEY], format!("{EKS_COREFILE}{USER_BLOCK}"));
    // And a re-merge moves our section back to the end.
    let remerged = merge(
        DnsProvider::CoreDns,
        &edited,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    assert!(remerged[COREFILE_KEY].trim_end().ends_with(END_MARKER));
    assert!(remerged[COREFILE_KEY].contains(USER_BLOCK));
}

#[test]
fn coredns_conflict_with_user_server_block() {
    for key in [
        "us-west1-a.svc.cluster.local:53",
        "us-west1-a.svc.cluster.local",
        "dns://US-WEST1-A.svc.cluster.local.:53",
        "acme.internal, us-west1-a.svc.cluster.local",
    ] {
        let text = format!("{EKS_COREFILE}{key} {{\n    forward . 10.9.9.9\n}}\n");
        let err = merge(
            DnsProvider::CoreDns,
            &corefile(&text),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        match &err {
            DnsError::Conflict {
                domain, location, ..
            } => {
                assert_eq!(domain, "us-west1-a.svc.cluster.local", "{key}");
                assert!(location.contains("line 18"), "{key}: {location}");
            }
            other => panic!("{key}: expected a conflict, got {other:?}"),
        }
    }
    let text =
        format!("{EKS_COREFILE}us-west1-a.svc.cluster.local:53 {{\n    forward . 10.9.9.9\n}}\n");
    let err = merge(
        DnsProvider::CoreDns,
        &corefile(&text),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `coredns`: key `Corefile`, line 18, already has a server block for `us-west1-a.svc.cluster.local:53`; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)");
}

#[test]
fn coredns_conflict_with_user_forward_of_our_domain() {
    let text = format!(
        "{EKS_COREFILE}svc.cluster.local:53 {{\n    forward us-central1-a.svc.cluster.local 10.9.9.9\n}}\n"
    );
    let err = merge(
        DnsProvider::CoreDns,
        &corefile(&text),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::Conflict { domain, what, .. }
                if domain == "us-central1-a.svc.cluster.local" && what.contains("10.9.9.9")),
        "{err:?}"
    );
}

#[test]
fn coredns_blocks_on_other_ports_or_transports_do_not_conflict() {
    let text = format!(
        "{EKS_COREFILE}us-west1-a.svc.cluster.local:5353 {{\n    forward . 10.9.9.9\n}}\n\
             tls://us-west1-a.svc.cluster.local {{\n    forward . 10.9.9.9\n}}\n"
    );
    let x = corefile(&text);
    let merged = merge(
        DnsProvider::CoreDns,
        &x,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    assert_eq!(remove(DnsProvider::CoreDns, &merged).unwrap(), x);
}

#[test]
fn coredns_unparsable_corefiles_say_where() {
    let cases = [
        ("unclosed block", ".:53 {\n    errors\n    health {\n", 3),
        ("stray close", ".:53 {\n    errors\n}\n}\n", 4),
        ("no braces", ".:53\nerrors\nforward . 8.8.8.8\n", 1),
        ("open without key", "{\n    errors\n}\n", 1),
        ("brace as plugin", ".:53 {\n    {\n}\n", 2),
        ("one-line block", "example.org { errors }\n", 1),
        (
            "keys on a line of their own",
            "a.org\nb.org {\n    errors\n}\n",
            1,
        ),
        (
            "unterminated quote",
            ".:53 {\n    errors\n    rewrite name \"a b\n}\n",
            3,
        ),
    ];
    for (name, text, line) in cases {
        let err = merge(
            DnsProvider::CoreDns,
            &corefile(text),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DnsError::Corefile { line: l, .. } if *l == line),
            "{name}: {err:?}"
        );
        assert!(
            parse_forwards(DnsProvider::CoreDns, &corefile(text)).is_err(),
            "{name}"
        );
    }
    let err = merge(
        DnsProvider::CoreDns,
        &corefile(".:53 {\n    health {\n"),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `coredns` key `Corefile`, line 2: cannot parse the Corefile: `{` opened here is never closed");
}

#[test]
fn coredns_deep_nesting_does_not_overflow_the_stack() {
    let depth = 100_000;
    let open = format!(".:53 {{\n    a {}\n", "{\n".repeat(depth));
    let err = parse_forwards(DnsProvider::CoreDns, &corefile(&open)).unwrap_err();
    assert!(
        matches!(&err, DnsError::Corefile { line: 2, problem, .. } if problem.contains("never closed")),
        "{err:?}"
    );
    let closed = format!("{open}{}}}\n", "}\n".repeat(depth));
    assert_eq!(
        parse_forwards(DnsProvider::CoreDns, &corefile(&closed)).unwrap(),
        vec![]
    );
}

#[test]
fn coredns_parsing_follows_caddyfile_rules() {
    // Keys continue onto the next line after a trailing comma; `#` starts
    // a comment even inside a word; quotes and escapes are tokens.
    let text = "acme.internal,\n  us-west1-a.svc.cluster.local\n{\n    forward . 10.9.9.9#old: 10.8.8.8\n    rewrite name \"a \\\"b\\\" c\" d\n}\n";
    assert_eq!(
        parse_forwards(DnsProvider::CoreDns, &corefile(text)).unwrap(),
        vec![
            fwd("acme.internal", &["10.9.9.9"]),
            fwd("us-west1-a.svc.cluster.local", &["10.9.9.9"]),
        ]
    );
    let err = merge(
        DnsProvider::CoreDns,
        &corefile(text),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::Conflict { domain, .. } if domain == "us-west1-a.svc.cluster.local"),
        "{err:?}"
    );
    // Snippets and top-level imports are not server blocks.
    let text = "(common) {\n    errors\n}\nimport custom/*.server\n.:53 {\n    import common\n    forward . 10.1.1.1\n}\n";
    assert_eq!(
        parse_forwards(DnsProvider::CoreDns, &corefile(text)).unwrap(),
        vec![fwd(".", &["10.1.1.1"])]
    );
}

#[test]
fn coredns_damaged_markers_are_errors() {
    let merged = merge(
        DnsProvider::CoreDns,
        &corefile(EKS_COREFILE),
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap();
    let text = &merged[COREFILE_KEY];
    let no_end = text.replace(END_MARKER, "# the end");
    let no_begin = text.replace(BEGIN_MARKER, "# the beginning");
    let twice = format!("{text}{text}");
    for (name, bad) in [("no END", no_end), ("no BEGIN", no_begin), ("twice", twice)] {
        let err = remove(DnsProvider::CoreDns, &corefile(&bad)).unwrap_err();
        assert!(
            matches!(err, DnsError::DamagedSection { .. }),
            "{name}: {err:?}"
        );
        assert!(
            merge(
                DnsProvider::CoreDns,
                &corefile(&bad),
                &ours(),
                &ForwardOptions::default()
            )
            .is_err()
        );
    }
}

#[test]
fn coredns_without_corefile() {
    let x = data(&[("other", "x")]);
    assert_eq!(
        merge(
            DnsProvider::CoreDns,
            &x,
            &ours(),
            &ForwardOptions::default()
        )
        .unwrap_err(),
        DnsError::MissingCorefile
    );
    assert_eq!(remove(DnsProvider::CoreDns, &x).unwrap(), x);
    assert_eq!(parse_forwards(DnsProvider::CoreDns, &x).unwrap(), vec![]);
    assert!(!has_ours(DnsProvider::CoreDns, &x));
}
