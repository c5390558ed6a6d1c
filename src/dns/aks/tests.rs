use crate::dns::fixtures::*;
use crate::dns::*;

#[test]
fn aks_custom_merged_output() {
    let x = &custom_fixtures()[1].1;
    let merged = merge(
        DnsProvider::CoreDnsCustom,
        x,
        &ours(),
        &ForwardOptions {
            force_tcp: true,
            cache_seconds: 30,
        },
    )
    .unwrap();
    assert_eq!(merged["acme.server"], AKS_USER_SERVER);
    assert_eq!(merged["logging.override"], "log\n");
    insta::assert_snapshot!(merged[CUSTOM_SERVER_KEY], @r#"
            # Managed by crdb-multiregion; do not edit. Removed by teardown.
            us-central1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.1.1 fd00::53 {
                    force_tcp
                }
            }
            us-west1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.0.1 {
                    force_tcp
                }
            }
            "#);
}

#[test]
fn aks_custom_conflict_with_user_server_key() {
    let x = data(&[(
        "zones.server",
        "us-central1-a.svc.cluster.local:53 {\n    forward . 10.9.9.9\n}\n",
    )]);
    let err = merge(
        DnsProvider::CoreDnsCustom,
        &x,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"ConfigMap `coredns-custom`: key `zones.server`, line 1, already has a server block for `us-central1-a.svc.cluster.local:53`; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)");
}

#[test]
fn aks_custom_unparsable_user_server_key_names_the_key() {
    let x = data(&[(
        "broken.server",
        "acme.internal:53 {\n    forward . 10.1.1.1\n",
    )]);
    let err = merge(
        DnsProvider::CoreDnsCustom,
        &x,
        &ours(),
        &ForwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::Corefile { configmap: "coredns-custom", key, line: 1, .. } if key == "broken.server"),
        "{err:?}"
    );
}
