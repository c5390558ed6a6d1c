//! The certificates as other TLS stacks see them: the real `openssl` verifies
//! and inspects them, and rustls completes a mutual-TLS handshake between a
//! node and the `root` client with them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crdb_multiregion::certs::{
    CertAction, CertBundle, CertSettings, KeyType, NodeIdentity, ensure_certs, node_sans,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ZONES: [&str; 3] = ["us-east1-b", "us-west1-a", "us-central1-a"];

struct Certs {
    _tmp: tempfile::TempDir,
    settings: CertSettings,
    bundle: CertBundle,
}

impl Certs {
    fn dir(&self) -> &Path {
        &self.settings.certs_dir
    }

    fn path(&self, name: &str) -> String {
        self.dir().join(name).display().to_string()
    }
}

fn identities(namespace_prefix: &str) -> Vec<NodeIdentity> {
    ZONES
        .iter()
        .map(|zone| NodeIdentity {
            zone: zone.to_string(),
            namespace: format!("{namespace_prefix}{zone}"),
            cluster_domain: "cluster.local".to_string(),
        })
        .collect()
}

fn make_certs(key_type: KeyType) -> Certs {
    let tmp = tempfile::tempdir().unwrap();
    let settings = CertSettings {
        certs_dir: tmp.path().join("certs"),
        ca_key_path: tmp.path().join("my-safe-directory/ca.key"),
        key_type,
    };
    let (bundle, _) = ensure_certs(&settings, &identities("")).unwrap();
    Certs {
        _tmp: tmp,
        settings,
        bundle,
    }
}

// --- openssl

/// Runs the real openssl; (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run `openssl` ({e}); these tests check the certificates with the real \
             openssl: install it (Debian/Ubuntu: apt-get install -y openssl)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn openssl_ok(args: &[&str]) -> String {
    let (ok, text) = openssl(args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

fn verify(ca: &str, purpose: &str, cert: &str) -> (bool, String) {
    openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-CAfile",
        ca,
        cert,
    ])
}

fn assert_verifies(ca: &str, purpose: &str, cert: &str) {
    let (ok, text) = verify(ca, purpose, cert);
    assert!(
        ok && text.trim_end().ends_with(&format!("{cert}: OK")),
        "openssl verify -purpose {purpose} {cert}:\n{text}"
    );
}

/// The SANs `openssl x509 -text` shows, as "DNS:x" / "IP Address:y" without the prefix.
fn openssl_sans(text: &str) -> BTreeSet<String> {
    let mut lines = text.lines();
    lines
        .find(|l| l.contains("X509v3 Subject Alternative Name"))
        .expect("no SAN extension");
    lines
        .next()
        .unwrap()
        .split(", ")
        .map(|san| {
            let san = san.trim();
            san.strip_prefix("DNS:")
                .or_else(|| san.strip_prefix("IP Address:"))
                .unwrap_or_else(|| panic!("unexpected SAN {san}"))
                .to_string()
        })
        .collect()
}

/// The line after `header` in `openssl x509 -text` output.
fn extension_value<'a>(text: &'a str, header: &str) -> &'a str {
    let mut lines = text.lines();
    lines
        .find(|l| l.contains(header))
        .unwrap_or_else(|| panic!("no {header} in\n{text}"));
    lines.next().unwrap().trim()
}

#[test]
fn openssl_verifies_every_node_cert_and_the_root_client_cert() {
    let certs = make_certs(KeyType::EcdsaP256);
    let ca = certs.path("ca.crt");
    for zone in ZONES {
        let node = certs.path(&format!("{zone}/node.crt"));
        assert_verifies(&ca, "sslserver", &node);
        assert_verifies(&ca, "sslclient", &node);
    }
    assert_verifies(&ca, "sslclient", &certs.path("client.root.crt"));
}

#[test]
fn openssl_rejects_certs_of_another_ca() {
    let ours = make_certs(KeyType::EcdsaP256);
    let theirs = make_certs(KeyType::EcdsaP256);
    let (ok, text) = verify(
        &theirs.path("ca.crt"),
        "sslserver",
        &ours.path("us-east1-b/node.crt"),
    );
    assert!(!ok, "a foreign CA must not verify our node cert:\n{text}");
    // The root client cert is not a server cert.
    let (ok, text) = verify(
        &ours.path("ca.crt"),
        "sslserver",
        &ours.path("client.root.crt"),
    );
    assert!(
        !ok,
        "client.root.crt must not pass as a server cert:\n{text}"
    );
}

#[test]
fn openssl_shows_node_cn_eku_and_every_san() {
    let certs = make_certs(KeyType::EcdsaP256);
    for zone in ZONES {
        let text = openssl_ok(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &certs.path(&format!("{zone}/node.crt")),
        ]);
        assert!(text.contains("Subject: O = Cockroach, CN = node"), "{text}");
        assert!(
            text.contains("Issuer: O = Cockroach, CN = Cockroach CA"),
            "{text}"
        );
        assert_eq!(
            extension_value(&text, "X509v3 Extended Key Usage"),
            "TLS Web Server Authentication, TLS Web Client Authentication"
        );
        assert_eq!(
            extension_value(&text, "X509v3 Basic Constraints"),
            "CA:FALSE"
        );
        let expected: BTreeSet<String> = node_sans(zone, "cluster.local").into_iter().collect();
        assert_eq!(openssl_sans(&text), expected);
        // The names setup.py used, literally, and the ones it missed.
        for san in [
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "cockroachdb-public".to_string(),
            "cockroachdb-public.default".to_string(),
            format!("cockroachdb-public.{zone}"),
            format!("cockroachdb-public.{zone}.svc.cluster.local"),
            "*.cockroachdb".to_string(),
            format!("*.cockroachdb.{zone}"),
            format!("*.cockroachdb.{zone}.svc.cluster.local"),
            "cockroachdb-public.default.svc.cluster.local".to_string(),
            format!("*.cockroachdb.{zone}.svc"),
        ] {
            assert!(expected.contains(&san), "{san}");
        }
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    }
}

#[test]
fn openssl_shows_the_ca_and_root_client_as_cockroach_cert_makes_them() {
    let certs = make_certs(KeyType::EcdsaP256);
    let ca = openssl_ok(&["x509", "-noout", "-text", "-in", &certs.path("ca.crt")]);
    assert!(
        ca.contains("Subject: O = Cockroach, CN = Cockroach CA"),
        "{ca}"
    );
    assert_eq!(
        extension_value(&ca, "X509v3 Basic Constraints: critical"),
        "CA:TRUE"
    );
    assert_eq!(
        extension_value(&ca, "X509v3 Key Usage: critical"),
        "Certificate Sign, CRL Sign"
    );

    let client = openssl_ok(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &certs.path("client.root.crt"),
    ]);
    assert!(
        client.contains("Subject: O = Cockroach, CN = root"),
        "{client}"
    );
    assert_eq!(
        extension_value(&client, "X509v3 Extended Key Usage"),
        "TLS Web Client Authentication"
    );
}

#[test]
fn openssl_agrees_that_each_key_matches_its_cert() {
    let certs = make_certs(KeyType::EcdsaP256);
    let mut pairs = vec![("client.root.crt".to_string(), "client.root.key".to_string())];
    for zone in ZONES {
        pairs.push((format!("{zone}/node.crt"), format!("{zone}/node.key")));
    }
    for (crt, key) in pairs {
        let from_cert = openssl_ok(&["x509", "-noout", "-pubkey", "-in", &certs.path(&crt)]);
        let from_key = openssl_ok(&["pkey", "-pubout", "-in", &certs.path(&key)]);
        assert_eq!(from_cert, from_key, "{crt} / {key}");
    }
    let ca_key = certs.settings.ca_key_path.display().to_string();
    let from_cert = openssl_ok(&["x509", "-noout", "-pubkey", "-in", &certs.path("ca.crt")]);
    assert_eq!(from_cert, openssl_ok(&["pkey", "-pubout", "-in", &ca_key]));
}

#[test]
fn openssl_verifies_certs_regenerated_under_the_reused_ca() {
    let certs = make_certs(KeyType::EcdsaP256);
    let (bundle, report) = ensure_certs(&certs.settings, &identities("crdb-")).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(bundle.ca_crt, certs.bundle.ca_crt);
    for zone in ZONES {
        assert!(
            matches!(report.nodes[zone], CertAction::Regenerated { .. }),
            "{zone}: {:?}",
            report.nodes[zone]
        );
        let node = certs.path(&format!("{zone}/node.crt"));
        assert_verifies(&certs.path("ca.crt"), "sslserver", &node);
        let text = openssl_ok(&["x509", "-noout", "-text", "-in", &node]);
        assert!(
            openssl_sans(&text).contains(&format!("*.cockroachdb.crdb-{zone}.svc.cluster.local")),
            "{text}"
        );
    }
}

#[test]
fn openssl_accepts_rsa_2048_certs() {
    let certs = make_certs(KeyType::Rsa2048);
    let ca = certs.path("ca.crt");
    assert_verifies(&ca, "sslserver", &certs.path("us-west1-a/node.crt"));
    assert_verifies(&ca, "sslclient", &certs.path("client.root.crt"));
    let key = openssl_ok(&[
        "pkey",
        "-noout",
        "-text",
        "-in",
        &certs.path("us-west1-a/node.key"),
    ]);
    assert!(key.contains("Private-Key: (2048 bit"), "{key}");
    let text = openssl_ok(&["x509", "-noout", "-text", "-in", &ca]);
    assert!(
        text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{text}"
    );
}

/// A CA as setup.py left it: `cockroach cert create-ca` writes a PKCS#1
/// "RSA PRIVATE KEY" and (Go) PrintableString names. openssl makes the same.
fn setup_py_style_ca(dir: &Path) -> CertSettings {
    let settings = CertSettings {
        certs_dir: dir.join("certs"),
        ca_key_path: dir.join("my-safe-directory/ca.key"),
        key_type: KeyType::EcdsaP256,
    };
    std::fs::create_dir_all(&settings.certs_dir).unwrap();
    std::fs::create_dir_all(settings.ca_key_path.parent().unwrap()).unwrap();
    let config = dir.join("req.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name = dn\nstring_mask = default\nx509_extensions = v3\n[dn]\n\
         [v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    let key = settings.ca_key_path.display().to_string();
    openssl_ok(&["genrsa", "-traditional", "-out", &key, "2048"]);
    openssl_ok(&[
        "req",
        "-config",
        &config.display().to_string(),
        "-x509",
        "-new",
        "-key",
        &key,
        "-subj",
        "/O=Cockroach/CN=Cockroach CA",
        "-days",
        "3650",
        "-out",
        &settings.certs_dir.join("ca.crt").display().to_string(),
    ]);
    settings
}

#[test]
fn a_ca_made_by_setup_py_is_reused_and_signs_verifiable_certs() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = setup_py_style_ca(tmp.path());
    let ca_path = settings.certs_dir.join("ca.crt");
    let ca_before = std::fs::read(&ca_path).unwrap();
    let key_before = std::fs::read_to_string(&settings.ca_key_path).unwrap();
    assert!(key_before.starts_with("-----BEGIN RSA PRIVATE KEY-----"));

    let (bundle, report) = ensure_certs(&settings, &identities("")).unwrap();
    assert_eq!(report.ca, CertAction::Reused);
    assert_eq!(std::fs::read(&ca_path).unwrap(), ca_before);
    assert_eq!(
        std::fs::read_to_string(&settings.ca_key_path).unwrap(),
        key_before
    );
    assert_eq!(bundle.ca_crt.as_bytes(), ca_before.as_slice());
    let ca = ca_path.display().to_string();
    for zone in ZONES {
        let node = settings.certs_dir.join(zone).join("node.crt");
        assert_verifies(&ca, "sslserver", &node.display().to_string());
    }
    // Issuer names are byte-identical to the CA's subject (PrintableString),
    // which Go's chain building needs.
    let subject = openssl_ok(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "dump_all,dump_der",
        "-in",
        &ca,
    ]);
    let issuer = openssl_ok(&[
        "x509",
        "-noout",
        "-issuer",
        "-nameopt",
        "dump_all,dump_der",
        "-in",
        &settings
            .certs_dir
            .join("client.root.crt")
            .display()
            .to_string(),
    ]);
    assert!(subject.contains("#1309436F636B726F616368"), "{subject}");
    assert_eq!(
        subject.trim_start_matches("subject="),
        issuer.trim_start_matches("issuer=")
    );

    let (_, report) = ensure_certs(&settings, &identities("")).unwrap();
    assert_eq!(report.client_root, CertAction::Reused);
    assert!(report.nodes.values().all(|a| *a == CertAction::Reused));
}

// --- rustls

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(bundle: &CertBundle) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.ca_crt.as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn cert(pem: &str) -> Vec<CertificateDer<'static>> {
    vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()]
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A node of `zone` serving with its node cert and requiring a client cert
/// signed by `server_ca`'s CA.
fn server_config(
    server_ca: &CertBundle,
    zone: &str,
    versions: &[&'static SupportedProtocolVersion],
) -> ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(server_ca), provider())
        .build()
        .unwrap();
    let node = &server_ca.nodes[zone];
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert(&node.crt), key(&node.key))
        .unwrap()
}

/// The root client of `client`, trusting `client`'s CA.
fn client_config(
    client: &CertBundle,
    versions: &[&'static SupportedProtocolVersion],
) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(client))
        .with_client_auth_cert(cert(&client.client_root_crt), key(&client.client_root_key))
        .unwrap()
}

/// Handshake over an in-memory pipe, then "ping" -> "pong". Returns the
/// common name of the client certificate the server saw, or the errors of
/// the sides that failed ("client: ...; server: ...").
async fn handshake(
    server: ServerConfig,
    client: ClientConfig,
    server_name: &str,
) -> Result<String, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor
            .accept(server_io)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong")
            .await
            .map_err(|e| format!("server write: {e}"))?;
        tls.shutdown().await.ok();
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (_, parsed) = x509_parser::parse_x509_certificate(&peer).unwrap();
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        Ok::<String, String>(cn)
    });

    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let client_result = async {
        let mut tls = connector
            .connect(name, client_io)
            .await
            .map_err(|e| format!("client: {e}"))?;
        tls.write_all(b"ping")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        assert_eq!(&buf, b"pong");
        Ok::<(), String>(())
    }
    .await;
    let server_result = server_task.await.unwrap();
    match (client_result, server_result) {
        (Ok(()), Ok(cn)) => Ok(cn),
        (client, server) => Err([client.err(), server.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[tokio::test]
async fn mutual_tls_between_a_node_and_the_root_client() {
    let certs = make_certs(KeyType::EcdsaP256);
    let b = &certs.bundle;
    for versions in [TLS13, TLS12] {
        let cn = handshake(
            server_config(b, "us-east1-b", versions),
            client_config(b, versions),
            "cockroachdb-public.default.svc.cluster.local",
        )
        .await
        .unwrap();
        assert_eq!(cn, "root", "the server sees the root client");
    }
}

#[tokio::test]
async fn mutual_tls_with_rsa_2048_certs() {
    let certs = make_certs(KeyType::Rsa2048);
    let b = &certs.bundle;
    for versions in [TLS13, TLS12] {
        let cn = handshake(
            server_config(b, "us-central1-a", versions),
            client_config(b, versions),
            "cockroachdb-public.default.svc.cluster.local",
        )
        .await
        .unwrap();
        assert_eq!(cn, "root");
    }
}

#[tokio::test]
async fn a_pod_address_matches_the_wildcard_san() {
    let certs = make_certs(KeyType::EcdsaP256);
    let b = &certs.bundle;
    for name in [
        "cockroachdb-2.cockroachdb.us-west1-a.svc.cluster.local",
        "cockroachdb-0.cockroachdb.us-west1-a",
        "cockroachdb-public.us-west1-a.svc",
        "localhost",
        "127.0.0.1",
    ] {
        handshake(
            server_config(b, "us-west1-a", TLS13),
            client_config(b, TLS13),
            name,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn the_client_rejects_a_name_the_node_cert_does_not_cover() {
    let certs = make_certs(KeyType::EcdsaP256);
    let b = &certs.bundle;
    // Another zone's namespace is not in this node's SANs.
    for name in [
        "cockroachdb-0.cockroachdb.us-east1-b.svc.cluster.local",
        "cockroachdb-public.example.com",
    ] {
        let err = handshake(
            server_config(b, "us-west1-a", TLS13),
            client_config(b, TLS13),
            name,
        )
        .await
        .unwrap_err();
        assert!(
            err.starts_with("client: invalid peer certificate: certificate not valid for name"),
            "{name}: {err}"
        );
    }
}

#[tokio::test]
async fn the_node_rejects_a_client_cert_of_another_ca() {
    let ours = make_certs(KeyType::EcdsaP256);
    let theirs = make_certs(KeyType::EcdsaP256);
    // A client of the other deployment that nonetheless trusts our CA.
    let mut client = theirs.bundle.clone();
    client.ca_crt = ours.bundle.ca_crt.clone();
    let err = handshake(
        server_config(&ours.bundle, "us-east1-b", TLS13),
        client_config(&client, TLS13),
        "cockroachdb-public.default.svc.cluster.local",
    )
    .await
    .unwrap_err();
    // Same issuer name as our CA, so the signature check is what fails.
    assert!(
        err.contains("server: invalid peer certificate: BadSignature"),
        "{err}"
    );
}

#[tokio::test]
async fn the_node_requires_a_client_cert() {
    let certs = make_certs(KeyType::EcdsaP256);
    let b = &certs.bundle;
    let anonymous = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13)
        .unwrap()
        .with_root_certificates(roots(b))
        .with_no_client_auth();
    let err = handshake(
        server_config(b, "us-east1-b", TLS13),
        anonymous,
        "cockroachdb-public.default.svc.cluster.local",
    )
    .await
    .unwrap_err();
    assert!(err.contains("server: peer sent no certificates"), "{err}");
}

#[test]
fn certs_dir_layout_matches_cockroach_cert() {
    let certs = make_certs(KeyType::EcdsaP256);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![certs.dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(certs.dir()).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    let expected: Vec<PathBuf> = [
        // The manifest of the files written (what purge-local may delete);
        // `cockroach` skips files whose names it does not know.
        ".crdb-multiregion-files",
        "ca.crt",
        "client.root.crt",
        "client.root.key",
        "us-central1-a/node.crt",
        "us-central1-a/node.key",
        "us-east1-b/node.crt",
        "us-east1-b/node.key",
        "us-west1-a/node.crt",
        "us-west1-a/node.key",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, expected, "the CA key stays out of the certs dir");
}
