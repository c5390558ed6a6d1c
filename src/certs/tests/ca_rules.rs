//! The CA rules: an existing CA is reused and never replaced; a misplaced,
//! half-present, mismatched, unreadable or expired CA is an error that
//! says what to do, and changes nothing.

use super::*;

#[test]
fn ca_key_inside_certs_dir_is_rejected_before_anything_is_written() {
    let f = fixture();
    for ca_key_path in [
        f.settings.certs_dir.join("ca.key"),
        f.settings.certs_dir.join("sub/ca.key"),
        // The same place, spelled with `..`.
        f.root.join("out/elsewhere/../certs/ca.key"),
    ] {
        let settings = CertSettings {
            ca_key_path: ca_key_path.clone(),
            ..f.settings.clone()
        };
        let err = ensure_certs(&settings, &zones()).unwrap_err();
        assert!(
            matches!(err, CertError::CaKeyInsideCertsDir { .. }),
            "{ca_key_path:?}: {err:?}"
        );
        assert!(
            err.to_string().contains("outside the certs directory"),
            "{err}"
        );
        assert!(!f.root.join("out").exists());
        let err = load_certs(&settings, &zones()).unwrap_err();
        assert!(matches!(err, CertError::CaKeyInsideCertsDir { .. }));
    }
}

#[test]
fn ca_key_inside_certs_dir_through_a_symlink_is_rejected() {
    let f = fixture();
    fs::create_dir_all(&f.settings.certs_dir).unwrap();
    let link = f.root.join("link");
    std::os::unix::fs::symlink(&f.settings.certs_dir, &link).unwrap();
    let settings = CertSettings {
        ca_key_path: link.join("ca.key"),
        ..f.settings.clone()
    };
    let err = ensure_certs(&settings, &zones()).unwrap_err();
    assert!(
        matches!(err, CertError::CaKeyInsideCertsDir { .. }),
        "{err:?}"
    );
}

#[test]
fn ca_key_next_to_the_certs_dir_is_fine() {
    let f = fixture();
    let settings = CertSettings {
        ca_key_path: f.root.join("out/ca.key"),
        ..f.settings.clone()
    };
    ensure_certs(&settings, &zones()).unwrap();
}

#[test]
fn ca_cert_without_its_key_is_an_error_that_says_what_to_do() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    fs::remove_file(&f.settings.ca_key_path).unwrap();
    let before = snapshot(&f.root);
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::CaKeyMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("restore the key"), "{msg}");
    assert!(msg.contains("invalidates"), "{msg}");
    assert!(
        msg.contains(&f.settings.ca_key_path.display().to_string()),
        "{msg}"
    );
    assert_eq!(snapshot(&f.root), before, "nothing may change");
    let err = load_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::CaKeyMissing { .. }), "{err:?}");
}

#[test]
fn ca_key_without_its_cert_is_an_error_that_says_what_to_do() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    fs::remove_file(f.settings.certs_dir.join("ca.crt")).unwrap();
    let before = snapshot(&f.root);
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::CaCertMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("restore ca.crt"), "{msg}");
    assert!(msg.contains("invalidates"), "{msg}");
    assert_eq!(snapshot(&f.root), before, "nothing may change");

    // Also when the whole certs directory is gone: it is not recreated.
    fs::remove_dir_all(&f.settings.certs_dir).unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::CaCertMissing { .. }), "{err:?}");
    assert!(!f.settings.certs_dir.exists());
}

#[test]
fn ca_key_of_another_ca_is_an_error() {
    let f = fixture();
    let other = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    ensure_certs(&other.settings, &zones()).unwrap();
    fs::copy(&other.settings.ca_key_path, &f.settings.ca_key_path).unwrap();
    let before = snapshot(&f.root);
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::CaKeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("move both away"), "{err}");
    assert_eq!(snapshot(&f.root), before, "nothing may change");
}

#[test]
fn unreadable_ca_files_are_errors() {
    let f = fixture();
    ensure_certs(&f.settings, &zones()).unwrap();
    let ca_crt = f.settings.certs_dir.join("ca.crt");
    let good = fs::read_to_string(&ca_crt).unwrap();

    fs::write(&ca_crt, "not a certificate").unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::InvalidCaCert { .. }), "{err:?}");

    // A leaf certificate is not a CA.
    let client = fs::read_to_string(f.settings.certs_dir.join("client.root.crt")).unwrap();
    fs::write(&ca_crt, client).unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");

    fs::write(&ca_crt, good).unwrap();
    fs::write(&f.settings.ca_key_path, "garbage").unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::InvalidCaKey { .. }), "{err:?}");
}

#[test]
fn an_expired_ca_is_an_error() {
    let f = fixture();
    let long_ago = OffsetDateTime::now_utc() - Duration::days(CA_VALIDITY_DAYS + 1);
    ensure_certs_at(&f.settings, &zones(), long_ago).unwrap();
    let err = ensure_certs(&f.settings, &zones()).unwrap_err();
    assert!(matches!(err, CertError::CaExpired { .. }), "{err:?}");
}
