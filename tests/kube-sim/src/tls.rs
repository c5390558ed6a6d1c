//! Certificates and credentials: one CA per simulated cluster, a server
//! certificate for 127.0.0.1 signed by it, a bearer token, and the
//! kubeconfig that ties them together. This module and [`random_token`] are
//! the only sources of randomness in the crate.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::StartError;

pub struct ClusterTls {
    pub ca_pem: String,
    /// ALPN `h2`, `http/1.1`.
    pub server_config: Arc<ServerConfig>,
    /// ALPN `http/1.1` only (the `disable_http2` fault).
    pub server_config_http1: Arc<ServerConfig>,
}

pub fn cluster_tls(zone: &str) -> Result<ClusterTls, StartError> {
    let cert_err = |source| StartError::Certificate {
        zone: zone.to_string(),
        source,
    };
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("kube-sim CA {zone}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(cert_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("kube-apiserver {zone}"));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    params.subject_alt_names.push(SanType::DnsName(
        "kubernetes.default.svc".try_into().map_err(cert_err)?,
    ));
    let server_cert = params.signed_by(&server_key, &issuer).map_err(cert_err)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |source| StartError::Tls {
        zone: zone.to_string(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    // As kube-apiserver: HTTP/2 preferred, HTTP/1.1 for clients without it.
    let mut http1 = config.clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ClusterTls {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
        server_config_http1: Arc::new(http1),
    })
}

/// A bearer token: 32 hex characters from the OS random source (via a fresh key).
pub fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(out.len() as u64);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// What the kubeconfig needs to know about one cluster.
pub struct KubeconfigEntry<'a> {
    pub context: &'a str,
    pub server: String,
    pub ca_pem: &'a str,
    pub token: &'a str,
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

pub fn render_kubeconfig(entries: &[KubeconfigEntry]) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out = String::from(
        "# Written by kube-sim: simulated clusters on 127.0.0.1.\napiVersion: v1\nkind: Config\nclusters:\n",
    );
    for e in entries {
        out.push_str(&format!(
            "- name: {}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n",
            q(e.context),
            q(&e.server),
            b64(e.ca_pem)
        ));
    }
    out.push_str("users:\n");
    for e in entries {
        out.push_str(&format!(
            "- name: {}\n  user:\n    token: {}\n",
            q(e.context),
            q(e.token)
        ));
    }
    out.push_str("contexts:\n");
    for e in entries {
        out.push_str(&format!(
            "- name: {0}\n  context:\n    cluster: {0}\n    user: {0}\n",
            q(e.context)
        ));
    }
    if let Some(first) = entries.first() {
        out.push_str(&format!("current-context: {}\n", q(first.context)));
    }
    out.push_str("preferences: {}\n");
    out
}

pub fn write_kubeconfig(path: &Path, entries: &[KubeconfigEntry]) -> Result<(), StartError> {
    let err = |source| StartError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, render_kubeconfig(entries)).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}
