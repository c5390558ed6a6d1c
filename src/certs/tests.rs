//! Tests of the certificates on disk: node SANs, creation and reuse, zones,
//! `load_certs`, previews and the writing of files; the CA rules in
//! `tests/ca_rules.rs`, leaf renewal (and RSA keys) in `tests/renewal.rs`.
//! Each test works in its own temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::files::{CERT_FILE_MODE, KEY_FILE_MODE, create_new_files, file_name, write_atomically};
use super::issue::issue_concurrently;
use super::leaf::cert_sans;
use super::*;

mod ca_rules;
mod renewal;

// The node SANs setup.py passed to `cockroach cert create-node`, with the
// zone (= namespace there) substituted.
fn setup_py_sans(ns: &str) -> Vec<String> {
    vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "cockroachdb-public".to_string(),
        "cockroachdb-public.default".to_string(),
        format!("cockroachdb-public.{ns}"),
        format!("cockroachdb-public.{ns}.svc.cluster.local"),
        "*.cockroachdb".to_string(),
        format!("*.cockroachdb.{ns}"),
        format!("*.cockroachdb.{ns}.svc.cluster.local"),
    ]
}

#[test]
fn node_sans_is_a_superset_of_setup_py() {
    for ns in ["us-east1-b", "us-west1-a", "default"] {
        let sans = node_sans(ns, "cluster.local");
        for san in setup_py_sans(ns) {
            assert!(sans.contains(&san), "{san} missing from {sans:?}");
        }
    }
}

#[test]
fn node_sans_adds_the_fully_qualified_names_setup_py_missed() {
    let sans = node_sans("us-east1-b", "cluster.local");
    for san in [
        "cockroachdb-public.default.svc",
        "cockroachdb-public.default.svc.cluster.local",
        "cockroachdb-public.us-east1-b.svc",
        "*.cockroachdb.us-east1-b.svc",
        "cockroachdb.us-east1-b.svc.cluster.local",
    ] {
        assert!(sans.iter().any(|s| s == san), "{san} missing from {sans:?}");
    }
}

#[test]
fn node_sans_exact_order_is_stable() {
    let expected = [
        "localhost",
        "127.0.0.1",
        "cockroachdb-public",
        "cockroachdb-public.default",
        "cockroachdb-public.default.svc",
        "cockroachdb-public.default.svc.cluster.local",
        "cockroachdb-public.ns1",
        "cockroachdb-public.ns1.svc",
        "cockroachdb-public.ns1.svc.cluster.local",
        "cockroachdb",
        "cockroachdb.ns1",
        "cockroachdb.ns1.svc",
        "cockroachdb.ns1.svc.cluster.local",
        "*.cockroachdb",
        "*.cockroachdb.ns1",
        "*.cockroachdb.ns1.svc",
        "*.cockroachdb.ns1.svc.cluster.local",
    ];
    assert_eq!(node_sans("ns1", "cluster.local"), expected);
}

#[test]
fn node_sans_uses_a_custom_cluster_domain() {
    let sans = node_sans("eu", "corp.example");
    assert!(sans.contains(&"cockroachdb-public.eu.svc.corp.example".to_string()));
    assert!(sans.contains(&"cockroachdb-public.default.svc.corp.example".to_string()));
    assert!(sans.contains(&"*.cockroachdb.eu.svc.corp.example".to_string()));
    assert!(
        sans.iter().all(|s| !s.contains("cluster.local")),
        "{sans:?}"
    );
    // A trailing dot (absolute name) is not part of a certificate name.
    assert_eq!(node_sans("eu", "corp.example."), sans);
}

#[test]
fn concurrent_issue_keeps_the_order_of_its_items() {
    let items: Vec<u64> = (0..50).collect();
    // Later items finish first, so an order taken from completion fails.
    let out = issue_concurrently(&items, |&i| {
        std::thread::sleep(std::time::Duration::from_micros(50 * (50 - i)));
        i * 10
    });
    assert_eq!(out, items.iter().map(|i| i * 10).collect::<Vec<_>>());
    assert!(issue_concurrently(&[] as &[u64], |&i| i).is_empty());
}

#[test]
fn node_sans_in_the_default_namespace_has_no_duplicates() {
    let sans = node_sans("default", "cluster.local");
    let unique: BTreeSet<_> = sans.iter().collect();
    assert_eq!(unique.len(), sans.len(), "{sans:?}");
    assert_eq!(sans[3], "cockroachdb-public.default");
    assert_eq!(sans[4], "cockroachdb-public.default.svc");
}

#[test]
fn key_type_config_names() {
    assert_eq!(KeyType::default(), KeyType::EcdsaP256);
    let parse = |s: &str| serde_json::from_str::<KeyType>(&format!("\"{s}\""));
    assert_eq!(parse("ecdsa-p256").unwrap(), KeyType::EcdsaP256);
    assert_eq!(parse("rsa-2048").unwrap(), KeyType::Rsa2048);
    assert!(parse("rsa2048").is_err());
    assert_eq!(KeyType::Rsa2048.to_string(), "rsa-2048");
    assert_eq!(
        serde_json::to_string(&KeyType::EcdsaP256).unwrap(),
        "\"ecdsa-p256\""
    );
}

// --- helpers for the file tests

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    settings: CertSettings,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let settings = CertSettings {
        certs_dir: root.join("out/certs"),
        ca_key_path: root.join("safe/dir/ca.key"),
        key_type: KeyType::EcdsaP256,
    };
    Fixture {
        _tmp: tmp,
        root,
        settings,
    }
}

fn zone(name: &str) -> NodeIdentity {
    NodeIdentity {
        zone: name.to_string(),
        namespace: name.to_string(),
        cluster_domain: "cluster.local".to_string(),
    }
}

fn zones() -> Vec<NodeIdentity> {
    vec![zone("us-east1-b"), zone("us-west1-a")]
}

/// Every regular file under `root`, with its contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn regenerated_reason(action: &CertAction) -> &str {
    match action {
        CertAction::Regenerated { reason } => reason,
        other => panic!("expected Regenerated, got {other:?}"),
    }
}

fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = pem_to_der(pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    f(&cert)
}

fn years(cert: &X509Certificate<'_>) -> f64 {
    let v = cert.validity();
    (v.not_after.to_datetime() - v.not_before.to_datetime()).as_seconds_f64() / (365.25 * 86400.0)
}

// --- creation and reuse

#[test]
fn first_run_creates_every_file_and_returns_their_contents() {
    let f = fixture();
    let (bundle, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(report.ca, CertAction::Created);
    assert_eq!(report.client_root, CertAction::Created);
    assert_eq!(report.nodes.len(), 2);
    assert!(report.nodes.values().all(|a| *a == CertAction::Created));

    let certs = &f.settings.certs_dir;
    let read = |p: PathBuf| fs::read_to_string(p).unwrap();
    assert_eq!(bundle.ca_crt, read(certs.join("ca.crt")));
    assert_eq!(bundle.client_root_crt, read(certs.join("client.root.crt")));
    assert_eq!(bundle.client_root_key, read(certs.join("client.root.key")));
    for z in ["us-east1-b", "us-west1-a"] {
        assert_eq!(bundle.nodes[z].crt, read(certs.join(z).join("node.crt")));
        assert_eq!(bundle.nodes[z].key, read(certs.join(z).join("node.key")));
    }
    assert!(f.settings.ca_key_path.is_file());
    assert!(!certs.join("ca.key").exists());
    // The zones' node keys differ (fresh randomness per certificate).
    assert_ne!(
        bundle.nodes["us-east1-b"].key,
        bundle.nodes["us-west1-a"].key
    );
    // No temp files left behind.
    for path in snapshot(&f.root).keys() {
        assert!(!file_name(path).contains(".tmp-"), "{}", path.display());
    }
    // Keys are redacted from Debug output.
    let debug = format!("{bundle:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn second_run_reuses_everything_byte_for_byte() {
    let f = fixture();
    let (first, _) = ensure_certs(&f.settings, &zones()).unwrap();
    let before = snapshot(&f.root);
    let (second, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(snapshot(&f.root), before);
    assert_eq!(second, first);
    assert_eq!(
        report,
        CertReport {
            ca: CertAction::Reused,
            client_root: CertAction::Reused,
            nodes: [
                ("us-east1-b".to_string(), CertAction::Reused),
                ("us-west1-a".to_string(), CertAction::Reused),
            ]
            .into()
        }
    );
}

#[test]
fn a_new_zone_gets_a_node_cert_and_the_others_are_reused() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let mut more = zones();
    more.push(zone("us-central1-a"));
    let (bundle, report) = ensure_certs(&f.settings, &more).unwrap();
    assert_eq!(report.nodes["us-central1-a"], CertAction::Created);
    assert_eq!(report.nodes["us-east1-b"], CertAction::Reused);
    assert_eq!(bundle.nodes.len(), 3);
}

#[test]
fn certificates_have_the_cockroach_names_usages_and_lifetimes() {
    let f = fixture();
    let (bundle, _) = ensure_certs(&f.settings, &zones()).unwrap();
    with_cert(&bundle.ca_crt, |ca| {
        assert_eq!(ca.subject().to_string(), "O=Cockroach, CN=Cockroach CA");
        assert!(ca.is_ca());
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!((years(ca) - 10.0).abs() < 0.05, "{}", years(ca));
    });
    with_cert(&bundle.client_root_crt, |c| {
        assert_eq!(c.subject().to_string(), "O=Cockroach, CN=root");
        assert_eq!(c.issuer().to_string(), "O=Cockroach, CN=Cockroach CA");
        assert!(!c.is_ca());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!((years(c) - 5.0).abs() < 0.05, "{}", years(c));
    });
    with_cert(&bundle.nodes["us-east1-b"].crt, |c| {
        assert_eq!(c.subject().to_string(), "O=Cockroach, CN=node");
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        let expected: BTreeSet<String> = node_sans("us-east1-b", "cluster.local")
            .into_iter()
            .collect();
        assert_eq!(cert_sans(c), expected);
        // 127.0.0.1 is an IP SAN, not a DNS name.
        let san = c.subject_alternative_name().unwrap().unwrap().value;
        assert!(
            san.general_names
                .contains(&GeneralName::IPAddress(&[127, 0, 0, 1]))
        );
        assert!(
            !san.general_names
                .contains(&GeneralName::DNSName("127.0.0.1"))
        );
    });
    let key = KeyPair::from_pem(&bundle.nodes["us-east1-b"].key).unwrap();
    assert_eq!(KeyType::of_key(&key), Some(KeyType::EcdsaP256));
}

#[test]
fn keys_are_0600_and_new_directories_0700() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let certs = &f.settings.certs_dir;
    assert_eq!(mode(&f.settings.ca_key_path), 0o600);
    assert_eq!(mode(&certs.join("client.root.key")), 0o600);
    assert_eq!(mode(&certs.join("us-east1-b/node.key")), 0o600);
    assert_eq!(mode(&certs.join("ca.crt")), 0o644);
    assert_eq!(mode(&certs.join("us-east1-b/node.crt")), 0o644);
    assert_eq!(mode(certs), 0o700);
    assert_eq!(mode(&certs.join("us-east1-b")), 0o700);
    assert_eq!(mode(&f.root.join("safe/dir")), 0o700);
    assert_eq!(mode(&f.root.join("safe")), 0o700);
}

#[test]
fn a_reused_key_with_a_loose_mode_is_tightened() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let key = f.settings.certs_dir.join("us-west1-a/node.key");
    fs::set_permissions(&key, Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&f.settings.ca_key_path, Permissions::from_mode(0o640)).unwrap();
    let (_, report) = ensure_certs(&f.settings, &zones()).unwrap();
    assert_eq!(report.nodes["us-west1-a"], CertAction::Reused);
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&f.settings.ca_key_path), 0o600);
}

// --- zones and load_certs

#[test]
fn duplicate_and_unsafe_zone_names_are_rejected() {
    let f = fixture();
    let err = ensure_certs(&f.settings, &[zone("a"), zone("a")]).unwrap_err();
    assert!(matches!(err, CertError::DuplicateZone { .. }), "{err:?}");
    for bad in ["", ".", "..", "a/b", "/abs", ".hidden"] {
        let err = ensure_certs(&f.settings, &[zone(bad)]).unwrap_err();
        assert!(
            matches!(err, CertError::InvalidZone { .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert!(!f.root.join("out").exists());
}

#[test]
fn load_certs_creates_nothing_and_reads_what_ensure_wrote() {
    let f = fixture();
    assert_eq!(load_certs(&f.settings, &zones()).unwrap(), None);
    assert!(!f.root.join("out").exists());
    assert!(!f.root.join("safe").exists());

    let (bundle, _) = ensure_certs(&f.settings, &zones()).unwrap();
    let before = snapshot(&f.root);
    assert_eq!(load_certs(&f.settings, &zones()).unwrap(), Some(bundle));
    assert_eq!(snapshot(&f.root), before);

    let err = load_certs(&f.settings, &[zone("new-zone")]).unwrap_err();
    assert!(matches!(err, CertError::NotCreated { .. }), "{err:?}");
    assert!(err.to_string().contains("zone new-zone"), "{err}");
    assert!(!f.settings.certs_dir.join("new-zone").exists());
}

#[test]
fn a_dangling_symlink_at_ca_key_is_an_error_and_stays_a_symlink() {
    let f = fixture();
    let dir = f.settings.ca_key_path.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    let target = f.root.join("backup-disk/ca.key");
    std::os::unix::fs::symlink(&target, &f.settings.ca_key_path).unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::DanglingSymlink { .. }), "{err:?}");
    assert!(err.to_string().contains("backup-disk/ca.key"), "{err}");
    let meta = fs::symlink_metadata(&f.settings.ca_key_path).unwrap();
    assert!(meta.file_type().is_symlink());
    assert!(!target.exists());
    assert!(!f.settings.certs_dir.join("ca.crt").exists());
}

#[test]
fn a_sec1_ec_ca_key_gets_the_openssl_conversion_hint() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    fs::write(
        &f.settings.ca_key_path,
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err().to_string();
    let hint = format!(
        "openssl pkcs8 -topk8 -nocrypt -in {}",
        f.settings.ca_key_path.display()
    );
    assert!(err.contains(&hint), "{err}");
}

#[test]
fn ca_creation_never_overwrites_an_existing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("ca.key");
    fs::write(&key, "theirs").unwrap();
    let err = create_new_files(&[(&key, "ours".to_string(), KEY_FILE_MODE)]).unwrap_err();
    assert!(matches!(err, CertError::CaAppeared { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&key).unwrap(), "theirs");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "temp file left"
    );
}

#[test]
fn preview_writes_nothing_and_regenerates_only_what_is_missing() {
    let f = fixture();
    // Nothing yet: a CA in memory, nothing on disk.
    let (_, report) = preview_certs(&f.settings, &zones()).unwrap();
    assert_eq!(report.ca, CertAction::Created);
    assert!(!f.root.join("out").exists() && !f.root.join("safe").exists());

    let (written, _) = ensure_certs(&f.settings, &zones()).unwrap();
    fs::remove_file(f.settings.certs_dir.join("us-west1-a/node.key")).unwrap();
    let before = snapshot(&f.root);
    let (preview, report) = preview_certs(&f.settings, &zones()).unwrap();
    assert_eq!(snapshot(&f.root), before);
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(report.client_root, CertAction::Reused);
    assert_eq!(report.nodes["us-east1-b"], CertAction::Reused);
    assert_eq!(
        regenerated_reason(&report.nodes["us-west1-a"]),
        "node.key is missing"
    );
    assert_eq!(preview.ca_crt, written.ca_crt);
    assert_eq!(preview.client_root_key, written.client_root_key);
    assert_eq!(preview.nodes["us-east1-b"], written.nodes["us-east1-b"]);
    assert_ne!(preview.nodes["us-west1-a"], written.nodes["us-west1-a"]);
}

#[test]
fn every_written_file_is_in_the_manifest() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let m = crate::fsutil::Manifest::load(&f.settings.certs_dir).unwrap();
    for rel in [
        "ca.crt",
        "client.root.crt",
        "client.root.key",
        "us-east1-b/node.crt",
        "us-west1-a/node.key",
    ] {
        assert!(m.is_ours(&f.settings.certs_dir.join(rel)), "{rel}");
    }
    assert!(m.is_ours(&f.settings.ca_key_path));
    let mode = mode(&f.settings.certs_dir.join(crate::fsutil::MANIFEST_FILE));
    assert_eq!(mode, 0o600);
}

#[test]
fn a_write_error_names_the_destination_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("missing-dir/node.key");
    let err = write_atomically(&[(&dest, "k".to_string(), KEY_FILE_MODE)], |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("missing-dir/node.key"), "{err}");
    assert!(!err.to_string().contains(".tmp-"), "{err}");
}

#[test]
fn atomic_write_replaces_files_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.key");
    let b = tmp.path().join("b.crt");
    fs::write(&a, "old").unwrap();
    write_atomically(
        &[
            (&a, "new a".to_string(), KEY_FILE_MODE),
            (&b, "new b".to_string(), CERT_FILE_MODE),
        ],
        |_, _| {},
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&a).unwrap(), "new a");
    assert_eq!(fs::read_to_string(&b).unwrap(), "new b");
    assert_eq!(mode(&a), 0o600);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);

    // A failure while staging leaves the old contents and no temp file.
    let missing_dir = tmp.path().join("nope/c.crt");
    let err = write_atomically(
        &[
            (&a, "newer a".to_string(), KEY_FILE_MODE),
            (&missing_dir, "c".to_string(), CERT_FILE_MODE),
        ],
        |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&a).unwrap(), "new a");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
}
