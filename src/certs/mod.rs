//! Certificates: creates, reuses and renews the CockroachDB CA, the `root`
//! client certificate and one node certificate per zone, in the files and with
//! the names `cockroach cert` uses.
//!
//! ```text
//! <certs_dir>/ca.crt                      CA certificate (CN "Cockroach CA")
//! <ca_key_path>                           CA key, kept OUT of certs_dir
//! <certs_dir>/client.root.crt, .key       client certificate for user root
//! <certs_dir>/<zone>/node.crt, node.key   node certificate (CN "node")
//! ```
//!
//! Owns: every file above, and the only randomness in the program (key
//! generation and ECDSA signatures). Rules a user relies on: an existing CA is
//! reused and never replaced (a half-present, mismatched or unreadable CA is an
//! error that says what to do); leaf certificates are reused while valid for
//! more than [`RENEW_WITHIN_DAYS`], signed by the current CA, matching their
//! key, of the configured key type and (for nodes) covering [`node_sans`], and
//! regenerated otherwise, with the reason; files are replaced atomically
//! (temp file + rename); keys are 0600 and directories we create are 0700.
//! Writers hold an exclusive lock on the certs directory, and a new CA is
//! created with create-new semantics, so concurrent runs end with one CA.
//! Every file written is recorded in the certs directory's manifest
//! ([`crate::fsutil::Manifest`]), which is what `teardown --purge-local`
//! deletes. [`preview_certs`] computes the same result without writing.
//!
//! Must not: talk to clusters, render manifests, or touch any file other than
//! the ones listed above and the manifest.
//!
//! # Where each part lives
//!
//! - this file: the types callers see, the entry points and the order of a
//!   run (inputs checked, CA, then every leaf);
//! - `error`: [`CertError`] and [`PemError`], the messages;
//! - `ca`: reading and checking the CA on disk;
//! - `leaf`: what each leaf must be, and whether the one on disk is kept;
//! - `issue`: new keys and certificates (the randomness);
//! - `pem`: PEM certificates and private keys;
//! - `files`: reading and writing the files, lock and manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SignatureAlgorithm};
use time::{Duration, OffsetDateTime};

use crate::fsutil::resolve;
use crate::names;

mod ca;
mod error;
mod files;
mod issue;
mod leaf;
mod pem;
#[cfg(test)]
mod tests;

use ca::{ca_cert_path, parse_ca, read_ca};
pub use error::{CertError, PemError};
use files::{CERT_FILE_MODE, KEY_FILE_MODE, Sink, parent_dir, read_optional};
use issue::new_ca;
use leaf::{LeafSpec, ensure_leaves};
use pem::pem_to_der;

/// File name of the CA certificate inside the certs directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the root client certificate inside the certs directory.
pub const CLIENT_ROOT_CERT_FILE: &str = "client.root.crt";
/// File name of the root client key inside the certs directory.
pub const CLIENT_ROOT_KEY_FILE: &str = "client.root.key";
/// File name of a node certificate inside `<certs_dir>/<zone>/`.
pub const NODE_CERT_FILE: &str = "node.crt";
/// File name of a node key inside `<certs_dir>/<zone>/`.
pub const NODE_KEY_FILE: &str = "node.key";

/// Lifetime of a new CA (as `cockroach cert create-ca`: 10 years).
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Lifetime of a new node or client certificate (as `cockroach cert`: 5 years).
pub const LEAF_VALIDITY_DAYS: i64 = 5 * 365;
/// A leaf certificate with less than this left is regenerated.
pub const RENEW_WITHIN_DAYS: i64 = 30;

/// Algorithm of every key we generate (the CA keeps whatever it was created with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// RSA 2048 bits, PKCS#1 v1.5 signatures with SHA-256.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

impl KeyType {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa-2048",
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyType::Rsa2048 => &PKCS_RSA_SHA256,
        }
    }

    fn of_key(key: &KeyPair) -> Option<KeyType> {
        [KeyType::EcdsaP256, KeyType::Rsa2048]
            .into_iter()
            .find(|t| key.algorithm() == t.algorithm())
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the certificates live and which keys to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSettings {
    /// Directory with `ca.crt`, the root client pair and one directory per zone.
    pub certs_dir: PathBuf,
    /// The CA private key; must not be inside `certs_dir`.
    pub ca_key_path: PathBuf,
    /// Key type for new keys.
    pub key_type: KeyType,
}

/// What a node certificate is for: its zone (directory) and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub zone: String,
    pub namespace: String,
    pub cluster_domain: String,
}

/// PEM contents of every certificate and key the clusters need.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    pub ca_crt: String,
    pub client_root_crt: String,
    pub client_root_key: String,
    /// By zone.
    pub nodes: BTreeMap<String, NodeCert>,
}

/// PEM contents of one node certificate and its key.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCert {
    pub crt: String,
    pub key: String,
}

// Private keys stay out of Debug output (and so out of logs and panics).
impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_crt", &self.ca_crt)
            .field("client_root_crt", &self.client_root_crt)
            .field("client_root_key", &"<redacted>")
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("crt", &self.crt)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What [`ensure_certs`] did with one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertAction {
    /// There was none; a new one was written.
    Created,
    /// The one on disk was kept, byte for byte.
    Reused,
    /// The one on disk could not be kept, for `reason`; a new one was written.
    Regenerated { reason: String },
}

impl fmt::Display for CertAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertAction::Created => f.write_str("created"),
            CertAction::Reused => f.write_str("reused"),
            CertAction::Regenerated { reason } => write!(f, "regenerated ({reason})"),
        }
    }
}

/// What [`ensure_certs`] did, per certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReport {
    pub ca: CertAction,
    pub client_root: CertAction,
    /// By zone.
    pub nodes: BTreeMap<String, CertAction>,
}

/// Every SAN a node certificate for `namespace` needs, in a stable order,
/// without duplicates: all the names setup.py used (with `cluster_domain` in
/// place of `cluster.local`), plus the fully-qualified forms it missed.
pub fn node_sans(namespace: &str, cluster_domain: &str) -> Vec<String> {
    let ns = namespace;
    let domain = cluster_domain.trim_end_matches('.');
    let public = names::PUBLIC_SERVICE;
    let headless = names::HEADLESS_SERVICE;
    let default = names::DEFAULT_NAMESPACE;
    let candidates = [
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        // The public service, through the ExternalName service in `default`...
        public.to_string(),
        format!("{public}.{default}"),
        format!("{public}.{default}.svc"),
        format!("{public}.{default}.svc.{domain}"),
        // ...and in the zone's namespace.
        format!("{public}.{ns}"),
        format!("{public}.{ns}.svc"),
        format!("{public}.{ns}.svc.{domain}"),
        // The headless service itself.
        headless.to_string(),
        format!("{headless}.{ns}"),
        format!("{headless}.{ns}.svc"),
        format!("{headless}.{ns}.svc.{domain}"),
        // Every pod of the StatefulSet (cockroachdb-<i>.cockroachdb...).
        format!("*.{headless}"),
        format!("*.{headless}.{ns}"),
        format!("*.{headless}.{ns}.svc"),
        format!("*.{headless}.{ns}.svc.{domain}"),
    ];
    let mut seen = BTreeSet::new();
    candidates
        .into_iter()
        .filter(|san| seen.insert(san.clone()))
        .collect()
}

/// Creates or reuses the CA, the root client certificate and a node
/// certificate per zone on disk; returns their PEMs and what was done.
pub fn ensure_certs(
    settings: &CertSettings,
    nodes: &[NodeIdentity],
) -> Result<(CertBundle, CertReport), CertError> {
    ensure_certs_at(settings, nodes, OffsetDateTime::now_utc())
}

/// What [`ensure_certs`] would do, without writing anything: the CA on disk
/// (or, when there is none, a new one in memory), and every leaf it would
/// reuse, or a new one in memory for each it would create or regenerate, with
/// the reason. The new keys are thrown away; `apply` makes its own.
pub fn preview_certs(
    settings: &CertSettings,
    nodes: &[NodeIdentity],
) -> Result<(CertBundle, CertReport), CertError> {
    ensure_certs_in(settings, nodes, OffsetDateTime::now_utc(), Mode::Preview)
}

/// SHA-256 fingerprint of the first certificate in `pem`, as
/// `openssl x509 -noout -fingerprint -sha256` prints it (`AB:CD:...`).
pub fn fingerprint(pem: &str) -> Option<String> {
    let der = pem_to_der(pem).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    Some(
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// When the first certificate in `pem` expires (its notAfter), if it parses.
pub fn not_after(pem: &str) -> Option<OffsetDateTime> {
    let der = pem_to_der(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// Reads what is on disk without creating or changing anything: `Ok(None)`
/// when there is no CA yet (neither `ca.crt` nor the CA key). Checks the CA as
/// [`ensure_certs`] would, so a dry run fails where the real run would; does
/// not judge whether leaf certificates would be renewed.
pub fn load_certs(
    settings: &CertSettings,
    nodes: &[NodeIdentity],
) -> Result<Option<CertBundle>, CertError> {
    check_zones(nodes)?;
    check_layout(settings)?;
    let now = OffsetDateTime::now_utc();
    let Some(ca) = read_ca(settings, now)? else {
        return Ok(None);
    };
    let read_leaf = |what: &str, path: &Path| -> Result<String, CertError> {
        read_optional(path)?.ok_or_else(|| CertError::NotCreated {
            what: what.to_string(),
            path: path.to_path_buf(),
        })
    };
    let client = LeafSpec::client_root(settings);
    let client_root_crt = read_leaf("the root client certificate", &client.crt_path)?;
    let client_root_key = read_leaf("the root client key", &client.key_path)?;
    let mut node_certs = BTreeMap::new();
    for node in nodes {
        let spec = LeafSpec::node(settings, node);
        let what = format!("the node certificate for zone {}", node.zone);
        let crt = read_leaf(&what, &spec.crt_path)?;
        let what = format!("the node key for zone {}", node.zone);
        let key = read_leaf(&what, &spec.key_path)?;
        node_certs.insert(node.zone.clone(), NodeCert { crt, key });
    }
    Ok(Some(CertBundle {
        ca_crt: ca.crt_pem,
        client_root_crt,
        client_root_key,
        nodes: node_certs,
    }))
}

/// [`ensure_certs`] with the clock passed in (tests make certificates "in the past").
fn ensure_certs_at(
    settings: &CertSettings,
    nodes: &[NodeIdentity],
    now: OffsetDateTime,
) -> Result<(CertBundle, CertReport), CertError> {
    ensure_certs_in(settings, nodes, now, Mode::Write)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    Preview,
}

fn ensure_certs_in(
    settings: &CertSettings,
    nodes: &[NodeIdentity],
    now: OffsetDateTime,
    mode: Mode,
) -> Result<(CertBundle, CertReport), CertError> {
    check_zones(nodes)?;
    check_layout(settings)?;

    // Read before creating the certs directory, so a CA error changes
    // nothing. Once it exists, only read under its lock: another run may be
    // half-way through creating the CA.
    let unlocked = match mode {
        Mode::Write if settings.certs_dir.is_dir() => None,
        _ => Some(read_ca(settings, now)?),
    };
    let mut sink = Sink::open(settings, mode)?;
    let existing = match unlocked {
        Some(existing) if mode == Mode::Preview => existing,
        _ => read_ca(settings, now)?,
    };
    let (ca, ca_action) = match existing {
        Some(ca) => {
            sink.tighten_key_mode(&settings.ca_key_path)?;
            (ca, CertAction::Reused)
        }
        None => {
            if let Some(dir) = parent_dir(&settings.ca_key_path) {
                sink.ensure_dir(dir)?;
            }
            let (key_pem, crt_pem) = new_ca(settings, now)?;
            let ca = match sink {
                Sink::Preview => parse_ca(settings, crt_pem, key_pem, now)?,
                Sink::Write { .. } => {
                    // Key first: should the second file not be created, the
                    // next run reports the missing certificate instead of
                    // leaving a CA nobody can sign with.
                    sink.write(
                        &[
                            (&settings.ca_key_path, key_pem, KEY_FILE_MODE),
                            (&ca_cert_path(settings), crt_pem, CERT_FILE_MODE),
                        ],
                        true,
                    )?;
                    read_ca(settings, now)?.ok_or_else(|| CertError::InvalidCaCert {
                        path: ca_cert_path(settings),
                        reason: "it disappeared right after it was written".to_string(),
                    })?
                }
            };
            (ca, CertAction::Created)
        }
    };
    if ca.not_after - now < Duration::days(365) {
        tracing::warn!(
            "the CA certificate {} expires on {}; the certificates it signs end then too, so \
             plan a new CA before that date",
            ca_cert_path(settings).display(),
            date(ca.not_after),
        );
    }

    // The root client cert first, then one node cert per zone: whatever
    // must be (re)issued is signed on every core at once (RSA key generation
    // dominates), then written in this order.
    let mut specs = vec![LeafSpec::client_root(settings)];
    specs.extend(nodes.iter().map(|node| LeafSpec::node(settings, node)));
    for node in nodes {
        sink.ensure_dir(&settings.certs_dir.join(&node.zone))?;
    }
    let mut leaves = ensure_leaves(&ca, &specs, settings.key_type, now, &mut sink)?.into_iter();
    let (client_root_crt, client_root_key, client_root) = leaves.next().expect("one leaf per spec");
    let mut node_certs = BTreeMap::new();
    let mut node_actions = BTreeMap::new();
    for (node, (crt, key, action)) in nodes.iter().zip(leaves) {
        node_certs.insert(node.zone.clone(), NodeCert { crt, key });
        node_actions.insert(node.zone.clone(), action);
    }

    let bundle = CertBundle {
        ca_crt: ca.crt_pem,
        client_root_crt,
        client_root_key,
        nodes: node_certs,
    };
    let report = CertReport {
        ca: ca_action,
        client_root,
        nodes: node_actions,
    };
    Ok((bundle, report))
}

// ---------------------------------------------------------------------------
// Checks on the inputs

fn check_zones(nodes: &[NodeIdentity]) -> Result<(), CertError> {
    let mut seen = BTreeSet::new();
    for node in nodes {
        let zone = node.zone.as_str();
        let mut components = Path::new(zone).components();
        let single_normal = matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        );
        if !single_normal || zone.contains(['/', '\\', '\0']) || zone.starts_with('.') {
            return Err(CertError::InvalidZone {
                zone: zone.to_string(),
            });
        }
        if !seen.insert(zone) {
            return Err(CertError::DuplicateZone {
                zone: zone.to_string(),
            });
        }
    }
    Ok(())
}

/// The CA key must not end up in the certs directory (which becomes secrets).
fn check_layout(settings: &CertSettings) -> Result<(), CertError> {
    let certs_dir = resolve(&settings.certs_dir);
    let ca_key = resolve(&settings.ca_key_path);
    if ca_key.starts_with(&certs_dir) {
        return Err(CertError::CaKeyInsideCertsDir {
            ca_key_path: settings.ca_key_path.clone(),
            certs_dir: settings.certs_dir.clone(),
        });
    }
    Ok(())
}

/// A date as messages show it: `2031-05-04`.
fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}
