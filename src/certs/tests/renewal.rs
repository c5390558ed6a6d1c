//! When a leaf certificate on disk is kept and when it is regenerated (and
//! with which reason); RSA keys when configured.

use super::*;

#[test]
fn node_cert_is_regenerated_when_its_namespace_changes() {
    let f = fixture();
    let (first, _) = ensure_certs(&f.settings, &zones()).unwrap();
    let mut moved = zones();
    moved[0].namespace = "crdb-east".to_string();
    let (second, report) = ensure_certs(&f.settings, &moved).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(report.client_root, CertAction::Reused);
    assert_eq!(report.nodes["us-west1-a"], CertAction::Reused);
    let reason = regenerated_reason(&report.nodes["us-east1-b"]);
    assert!(reason.contains("lacks the SANs"), "{reason}");
    assert!(reason.contains("cockroachdb-public.crdb-east"), "{reason}");
    assert_eq!(second.ca_crt, first.ca_crt);
    with_cert(&second.nodes["us-east1-b"].crt, |c| {
        assert!(cert_sans(c).contains("*.cockroachdb.crdb-east.svc.cluster.local"));
    });
    // And it is stable from then on.
    let (_, report) = ensure_certs(&f.settings, &moved).unwrap();
    assert_eq!(report.nodes["us-east1-b"], CertAction::Reused);
}

#[test]
fn node_cert_is_regenerated_when_the_cluster_domain_changes() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let mut changed = zones();
    changed[1].cluster_domain = "corp.example".to_string();
    let (_, report) = ensure_certs(&f.settings, &changed).unwrap();
    assert_eq!(report.nodes["us-east1-b"], CertAction::Reused);
    let reason = regenerated_reason(&report.nodes["us-west1-a"]);
    assert!(reason.contains("corp.example"), "{reason}");
}

#[test]
fn leaf_certs_near_expiry_are_regenerated() {
    let f = fixture();
    // Issued so that they have 10 days left today.
    let then = OffsetDateTime::now_utc() - Duration::days(LEAF_VALIDITY_DAYS - 10);
    let (old, _) = ensure_certs_at(&f.settings, &zones(), then).unwrap();
    let (new, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(new.ca_crt, old.ca_crt);
    let reason = regenerated_reason(&report.client_root);
    assert!(reason.contains("client.root.crt expires on"), "{reason}");
    assert!(reason.contains("within 30 days"), "{reason}");
    let reason = regenerated_reason(&report.nodes["us-east1-b"]);
    assert!(reason.contains("node.crt expires on"), "{reason}");
    with_cert(&new.nodes["us-east1-b"].crt, |c| {
        assert!((years(c) - 5.0).abs() < 0.05);
    });
}

#[test]
fn leaf_certs_with_more_than_30_days_left_are_reused() {
    let f = fixture();
    let then = OffsetDateTime::now_utc() - Duration::days(LEAF_VALIDITY_DAYS - 40);
    ensure_certs_at(&f.settings, &zones(), then).unwrap();
    let (_, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(report.client_root, CertAction::Reused);
    assert_eq!(report.nodes["us-west1-a"], CertAction::Reused);
}

#[test]
fn expired_leaf_certs_are_regenerated() {
    let f = fixture();
    let then = OffsetDateTime::now_utc() - Duration::days(LEAF_VALIDITY_DAYS + 3);
    ensure_certs_at(&f.settings, &zones(), then).unwrap();
    let (_, report) = ensure_certs(&f.settings, &zones()).unwrap();
    let reason = regenerated_reason(&report.nodes["us-west1-a"]);
    assert!(reason.contains("node.crt expired on"), "{reason}");
}

#[test]
fn client_cert_signed_by_another_ca_is_regenerated() {
    let f = fixture();
    let other = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    ensure_certs(&other.settings, &zones()).unwrap();
    for name in ["client.root.crt", "client.root.key"] {
        fs::copy(
            other.settings.certs_dir.join(name),
            f.settings.certs_dir.join(name),
        )
        .unwrap();
    }
    let (bundle, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    let reason = regenerated_reason(&report.client_root);
    assert!(reason.contains("not signed by the current CA"), "{reason}");
    assert!(report.nodes.values().all(|a| *a == CertAction::Reused));
    with_cert(&bundle.ca_crt, |ca| {
        with_cert(&bundle.client_root_crt, |c| {
            c.verify_signature(Some(ca.public_key())).unwrap();
        })
    });
}

#[test]
fn node_key_that_does_not_match_its_cert_is_regenerated() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let certs = &f.settings.certs_dir;
    fs::copy(
        certs.join("us-west1-a/node.key"),
        certs.join("us-east1-b/node.key"),
    )
    .unwrap();
    let (_, report) = ensure_certs(&f.settings, &zones()).unwrap();
    let reason = regenerated_reason(&report.nodes["us-east1-b"]);
    assert_eq!(reason, "node.key does not match node.crt");
    assert_eq!(report.nodes["us-west1-a"], CertAction::Reused);
}

#[test]
fn a_missing_or_broken_node_file_is_regenerated() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let certs = &f.settings.certs_dir;
    fs::remove_file(certs.join("us-east1-b/node.key")).unwrap();
    fs::write(certs.join("us-west1-a/node.crt"), "junk").unwrap();
    let (_, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(
        regenerated_reason(&report.nodes["us-east1-b"]),
        "node.key is missing"
    );
    let reason = regenerated_reason(&report.nodes["us-west1-a"]);
    assert!(reason.starts_with("node.crt is unreadable"), "{reason}");
}

// --- RSA

#[test]
fn rsa_2048_keys_when_configured_and_the_ca_is_kept() {
    let f = fixture();
    let one_zone = [zone("eu-west1-b")];
    let (ecdsa, _) = ensure_certs(&f.settings, &one_zone).unwrap();
    let rsa_settings = CertSettings {
        key_type: KeyType::Rsa2048,
        ..f.settings.clone()
    };
    let (bundle, report) = ensure_certs(&rsa_settings, &one_zone).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(bundle.ca_crt, ecdsa.ca_crt);
    let reason = regenerated_reason(&report.nodes["eu-west1-b"]);
    assert_eq!(
        reason,
        "node.key is ecdsa-p256, the configured key type is rsa-2048"
    );
    for key in [&bundle.client_root_key, &bundle.nodes["eu-west1-b"].key] {
        let key = KeyPair::from_pem(key).unwrap();
        assert_eq!(KeyType::of_key(&key), Some(KeyType::Rsa2048));
    }
    with_cert(&bundle.nodes["eu-west1-b"].crt, |c| {
        // 2048-bit modulus: the SPKI of an RSA-2048 key is 294 bytes.
        assert_eq!(c.public_key().raw.len(), 294);
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
    });
    // Stable on the next run.
    let (_, report) = ensure_certs(&rsa_settings, &one_zone).unwrap();
    assert_eq!(report.nodes["eu-west1-b"], CertAction::Reused);
    assert_eq!(report.client_root, CertAction::Reused);
}

#[test]
fn an_rsa_ca_signs_leaf_certs() {
    let f = fixture();
    let settings = CertSettings {
        key_type: KeyType::Rsa2048,
        ..f.settings.clone()
    };
    let (_, report) = ensure_certs(&settings, &[]).unwrap();
    assert_eq!(report.ca, CertAction::Created);
    // Back to ECDSA leaves under the RSA CA.
    let (bundle, report) = ensure_certs(&f.settings, &[zone("a")]).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    with_cert(&bundle.ca_crt, |ca| {
        with_cert(&bundle.nodes["a"].crt, |c| {
            c.verify_signature(Some(ca.public_key())).unwrap();
        })
    });
}
