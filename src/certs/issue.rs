//! New keys and certificates: the only randomness in the program (key
//! generation and ECDSA signatures).
//!
//! Owns what a new certificate holds, as `cockroach cert` makes them: the
//! CA (CN "Cockroach CA", 10 years), the root client certificate and node
//! certificates (CN "root"/"node", the usages and SANs their [`LeafSpec`]
//! asks for, at most as long as the CA), all backdated by [`BACKDATE`]; and
//! signing several of them at once on every core. Must not: read or write
//! files, or decide whether a certificate on disk is kept.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::ca::Ca;
use super::leaf::{LeafSpec, not_signed_by};
use super::pem::pem_to_der;
use super::{CA_VALIDITY_DAYS, CertError, CertSettings, KeyType};

/// New certificates start this long in the past, to tolerate clock skew.
pub(super) const BACKDATE: Duration = Duration::hours(1);

const CA_COMMON_NAME: &str = "Cockroach CA";
const ORGANIZATION: &str = "Cockroach";

/// A new CA: (key PEM, certificate PEM).
pub(super) fn new_ca(
    settings: &CertSettings,
    now: OffsetDateTime,
) -> Result<(String, String), CertError> {
    const WHAT: &str = "CA certificate";
    let key = generate_key(settings.key_type, "CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(CertError::generate(WHAT))?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// `issue` applied to every item, on up to as many threads as there are
/// cores, results in the items' order.
pub(super) fn issue_concurrently<T: Sync, R: Send>(
    items: &[T],
    issue: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(&issue).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, issue(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A new leaf, refused when it does not chain to the CA.
pub(super) fn issue_checked_leaf(
    ca: &Ca,
    spec: &LeafSpec,
    key_type: KeyType,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), CertError> {
    let (crt, key) = issue_leaf(ca, spec, key_type, not_before, not_after)?;
    // A CA whose name rcgen cannot reproduce byte for byte would make certs that
    // Go (CockroachDB) does not chain, and a new one on every run: refuse.
    let chains = pem_to_der(&crt).ok().and_then(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        not_signed_by(&cert, ca).is_none().then_some(())
    });
    if chains.is_none() {
        return Err(CertError::InvalidCaCert {
            path: ca.cert_path.clone(),
            reason: "certificates signed with it do not chain to it".to_string(),
        });
    }
    Ok((crt, key))
}

/// A new key and certificate for `spec`, signed by the CA: (crt PEM, key PEM).
fn issue_leaf(
    ca: &Ca,
    spec: &LeafSpec,
    key_type: KeyType,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), CertError> {
    let key = generate_key(key_type, &format!("key for the {}", spec.what))?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|san| match san.parse::<IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => san.clone().try_into().map(rcgen::SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(CertError::generate(&spec.what))?;
    params.distinguished_name = distinguished_name(spec.common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key_type == KeyType::Rsa2048 {
        // TLS 1.2 RSA key exchange encrypts with the certificate's key.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = if spec.server_auth {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(CertError::generate(&spec.what))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new random key (rcgen with the aws-lc backend makes RSA keys too).
fn generate_key(key_type: KeyType, what: &str) -> Result<KeyPair, CertError> {
    KeyPair::generate_for(key_type.algorithm()).map_err(CertError::generate(what))
}
