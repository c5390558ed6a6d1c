//! Leaf certificates (the root client, one node per zone): what each must
//! be, and the renewal decision for the pair of files on disk.
//!
//! Owns the rule "reuse or regenerate": a leaf is kept byte for byte while
//! it parses, its key matches and is of the configured type, it is signed by
//! the current CA, it is valid for more than [`RENEW_WITHIN_DAYS`], and its
//! CN, extended key usages and SANs are what its [`LeafSpec`] asks for;
//! otherwise a new one is issued and the reason reported. Must not: sign
//! (`issue.rs`) or write files other than through the [`Sink`].

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::PublicKeyData;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::ca::Ca;
use super::files::{CERT_FILE_MODE, KEY_FILE_MODE, Sink, file_name, read_optional};
use super::issue::{BACKDATE, issue_checked_leaf, issue_concurrently};
use super::pem::{parse_key, pem_to_der};
use super::{
    CLIENT_ROOT_CERT_FILE, CLIENT_ROOT_KEY_FILE, CertAction, CertError, CertSettings, KeyType,
    LEAF_VALIDITY_DAYS, NODE_CERT_FILE, NODE_KEY_FILE, NodeIdentity, RENEW_WITHIN_DAYS, date,
    node_sans,
};

const NODE_COMMON_NAME: &str = "node";
const ROOT_COMMON_NAME: &str = "root";

/// What one leaf certificate must be, and where its files are.
pub(super) struct LeafSpec {
    /// For messages: "root client certificate", "node certificate for zone x".
    pub(super) what: String,
    pub(super) common_name: &'static str,
    pub(super) server_auth: bool,
    pub(super) sans: Vec<String>,
    pub(super) crt_path: PathBuf,
    pub(super) key_path: PathBuf,
}

impl LeafSpec {
    pub(super) fn client_root(settings: &CertSettings) -> LeafSpec {
        LeafSpec {
            what: "root client certificate".to_string(),
            common_name: ROOT_COMMON_NAME,
            server_auth: false,
            sans: Vec::new(),
            crt_path: settings.certs_dir.join(CLIENT_ROOT_CERT_FILE),
            key_path: settings.certs_dir.join(CLIENT_ROOT_KEY_FILE),
        }
    }

    pub(super) fn node(settings: &CertSettings, node: &NodeIdentity) -> LeafSpec {
        let dir = settings.certs_dir.join(&node.zone);
        LeafSpec {
            what: format!("node certificate for zone {}", node.zone),
            common_name: NODE_COMMON_NAME,
            server_auth: true,
            sans: node_sans(&node.namespace, &node.cluster_domain),
            crt_path: dir.join(NODE_CERT_FILE),
            key_path: dir.join(NODE_KEY_FILE),
        }
    }

    fn crt_name(&self) -> String {
        file_name(&self.crt_path)
    }

    fn key_name(&self) -> String {
        file_name(&self.key_path)
    }
}

/// Each leaf of `specs`, in order: reused from disk when still good,
/// otherwise issued (concurrently, on all cores) and written.
pub(super) fn ensure_leaves(
    ca: &Ca,
    specs: &[LeafSpec],
    key_type: KeyType,
    now: OffsetDateTime,
    sink: &mut Sink,
) -> Result<Vec<(String, String, CertAction)>, CertError> {
    // What is on disk, and why it cannot be kept (None: nothing there).
    let mut on_disk = Vec::with_capacity(specs.len());
    for spec in specs {
        on_disk.push(assess_leaf(ca, spec, key_type, now, sink)?);
    }
    let wanted: Vec<&LeafSpec> = specs
        .iter()
        .zip(&on_disk)
        .filter(|(_, state)| !matches!(state, LeafOnDisk::Good(..)))
        .map(|(spec, _)| spec)
        .collect();
    let not_after = (now + Duration::days(LEAF_VALIDITY_DAYS)).min(ca.not_after);
    let mut issued = issue_concurrently(&wanted, |spec| {
        issue_checked_leaf(ca, spec, key_type, now - BACKDATE, not_after)
    })
    .into_iter();

    let mut leaves = Vec::with_capacity(specs.len());
    let mut files: Vec<(&Path, String, u32)> = Vec::new();
    for (spec, state) in specs.iter().zip(on_disk) {
        let reason = match state {
            LeafOnDisk::Good(crt, key) => {
                leaves.push((crt, key, CertAction::Reused));
                continue;
            }
            LeafOnDisk::Absent => None,
            LeafOnDisk::Bad(reason) => Some(reason),
        };
        let (crt, key) = issued.next().expect("one issued leaf per wanted spec")?;
        files.push((&spec.key_path, key.clone(), KEY_FILE_MODE));
        files.push((&spec.crt_path, crt.clone(), CERT_FILE_MODE));
        let action = match reason {
            None => CertAction::Created,
            Some(reason) => CertAction::Regenerated { reason },
        };
        leaves.push((crt, key, action));
    }
    // All in one batch: the syncs run together (one after another, a
    // hundred zones took seconds), the renames in this order (each key
    // before its certificate), and the manifest is saved once.
    if !files.is_empty() {
        sink.write(&files, false)?;
    }
    Ok(leaves)
}

/// A leaf's files as found on disk.
enum LeafOnDisk {
    Absent,
    /// Reusable: certificate and key PEM.
    Good(String, String),
    /// Present but not reusable, and why.
    Bad(String),
}

/// What is on disk for `spec`, and (when it is kept) its key made private.
fn assess_leaf(
    ca: &Ca,
    spec: &LeafSpec,
    key_type: KeyType,
    now: OffsetDateTime,
    sink: &mut Sink,
) -> Result<LeafOnDisk, CertError> {
    let crt = read_optional(&spec.crt_path)?;
    let key = read_optional(&spec.key_path)?;
    Ok(match (crt, key) {
        (None, None) => LeafOnDisk::Absent,
        (Some(_), None) => LeafOnDisk::Bad(format!("{} is missing", spec.key_name())),
        (None, Some(_)) => LeafOnDisk::Bad(format!("{} is missing", spec.crt_name())),
        (Some(crt), Some(key)) => match leaf_problem(ca, spec, &crt, &key, key_type, now) {
            None => {
                sink.tighten_key_mode(&spec.key_path)?;
                LeafOnDisk::Good(crt, key)
            }
            Some(reason) => LeafOnDisk::Bad(reason),
        },
    })
}

/// Why the leaf on disk cannot be reused, or `None` if it can.
fn leaf_problem(
    ca: &Ca,
    spec: &LeafSpec,
    crt_pem: &str,
    key_pem: &str,
    key_type: KeyType,
    now: OffsetDateTime,
) -> Option<String> {
    let crt_name = spec.crt_name();
    let key_name = spec.key_name();
    let der = match pem_to_der(crt_pem) {
        Ok(der) => der,
        Err(reason) => return Some(format!("{crt_name} is unreadable: {reason}")),
    };
    let cert = match x509_parser::parse_x509_certificate(&der) {
        Ok((_, cert)) => cert,
        Err(e) => return Some(format!("{crt_name} is not an X.509 certificate ({e})")),
    };
    let key = match parse_key(key_pem, &spec.key_path) {
        Ok(key) => key,
        Err(reason) => return Some(format!("{key_name} is unreadable: {reason}")),
    };
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Some(format!("{key_name} does not match {crt_name}"));
    }
    match KeyType::of_key(&key) {
        Some(found) if found == key_type => {}
        found => {
            let found = found.map_or("another type", KeyType::as_str);
            return Some(format!(
                "{key_name} is {found}, the configured key type is {key_type}"
            ));
        }
    }
    if let Some(problem) = not_signed_by(&cert, ca) {
        return Some(format!("{crt_name} {problem}"));
    }
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if not_before > now {
        return Some(format!(
            "{crt_name} is not valid before {}",
            date(not_before)
        ));
    }
    if not_after <= now {
        return Some(format!("{crt_name} expired on {}", date(not_after)));
    }
    if not_after - now < Duration::days(RENEW_WITHIN_DAYS) {
        return Some(format!(
            "{crt_name} expires on {}, within {RENEW_WITHIN_DAYS} days",
            date(not_after)
        ));
    }
    let common_names: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .collect();
    if common_names != [spec.common_name] {
        return Some(format!(
            "{crt_name} has CN {:?}, expected {:?}",
            common_names.join(","),
            spec.common_name
        ));
    }
    let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
    let (server, client) = eku.map_or((false, false), |e| (e.server_auth, e.client_auth));
    if !client || (spec.server_auth && !server) {
        return Some(format!(
            "{crt_name} lacks the extended key usage {}",
            if spec.server_auth {
                "serverAuth + clientAuth"
            } else {
                "clientAuth"
            }
        ));
    }
    let present = cert_sans(&cert);
    let missing: Vec<&str> = spec
        .sans
        .iter()
        .filter(|san| !present.contains(san.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!("{crt_name} lacks the SANs {}", missing.join(", ")));
    }
    None
}

/// Why `cert` was not issued by the current CA, or `None` if it was.
pub(super) fn not_signed_by(cert: &X509Certificate<'_>, ca: &Ca) -> Option<&'static str> {
    let Ok((_, ca_cert)) = x509_parser::parse_x509_certificate(&ca.der) else {
        return Some("cannot be checked against ca.crt");
    };
    if cert.issuer().as_raw() != ca_cert.subject().as_raw()
        || cert.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Some("is not signed by the current CA (ca.crt)");
    }
    None
}

/// The DNS and IP SANs of `cert`, as strings.
pub(super) fn cert_sans(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| Ipv4Addr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
