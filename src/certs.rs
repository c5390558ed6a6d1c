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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData,
    SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

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
/// New certificates start this long in the past, to tolerate clock skew.
const BACKDATE: Duration = Duration::hours(1);

const CA_COMMON_NAME: &str = "Cockroach CA";
const ORGANIZATION: &str = "Cockroach";
const NODE_COMMON_NAME: &str = "node";
const ROOT_COMMON_NAME: &str = "root";

const KEY_FILE_MODE: u32 = 0o600;
const CERT_FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

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

const NEW_CA_WARNING: &str = "a new CA invalidates every certificate the old one signed, so \
     clusters already running with it must be redeployed with the new certificates";

/// Everything that can go wrong; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "the CA key {} is inside the certs directory {}, whose files are copied into \
         Kubernetes secrets; configure a CA key path outside the certs directory",
        ca_key_path.display(), certs_dir.display()
    )]
    CaKeyInsideCertsDir {
        ca_key_path: PathBuf,
        certs_dir: PathBuf,
    },

    #[error(
        "found the CA certificate {} but not the CA key {}: restore the key from your \
         backup (or fix the configured CA key path); to create a new CA instead, move {} \
         away ({NEW_CA_WARNING})",
        cert_path.display(), key_path.display(), cert_path.display()
    )]
    CaKeyMissing {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    #[error(
        "found the CA key {} but not the CA certificate {}: restore ca.crt from your \
         backup (or fix the configured certs directory); to create a new CA instead, move \
         {} away ({NEW_CA_WARNING})",
        key_path.display(), cert_path.display(), key_path.display()
    )]
    CaCertMissing {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    #[error(
        "the CA key {} does not belong to the CA certificate {}: put back the matching \
         key or certificate; to create a new CA instead, move both away ({NEW_CA_WARNING})",
        key_path.display(), cert_path.display()
    )]
    CaKeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    #[error(
        "the CA certificate {} is not usable: {reason}; restore it from your backup, or \
         move it and the CA key away to create a new CA ({NEW_CA_WARNING})",
        path.display()
    )]
    InvalidCaCert { path: PathBuf, reason: String },

    #[error(
        "the CA key {} is not usable: {reason}; restore it from your backup (an unencrypted \
         PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\"), or move it and ca.crt away to create \
         a new CA ({NEW_CA_WARNING})",
        path.display()
    )]
    InvalidCaKey { path: PathBuf, reason: String },

    #[error(
        "the CA certificate {} expired on {not_after}; move it and the CA key away to create \
         a new CA ({NEW_CA_WARNING})",
        path.display()
    )]
    CaExpired { path: PathBuf, not_after: String },

    #[error(
        "{} is a symbolic link to {}, which does not exist: restore the file it points to \
         (or fix the link); it is never replaced by a new file",
        path.display(), target.display()
    )]
    DanglingSymlink { path: PathBuf, target: PathBuf },

    #[error(
        "{} appeared while this run was creating a new CA (another program wrote it): \
         nothing was overwritten; re-run to use the CA that is there now",
        path.display()
    )]
    CaAppeared { path: PathBuf },

    #[error(
        "zone {zone:?} cannot be used as a directory name under the certs directory; \
         use a DNS-1123 label (lower-case letters, digits and '-')"
    )]
    InvalidZone { zone: String },

    #[error("zone {zone:?} is listed more than once; give every zone a unique name")]
    DuplicateZone { zone: String },

    #[error(
        "{what} {} does not exist yet; run `crdb-multiregion plan` to create it",
        path.display()
    )]
    NotCreated { what: String, path: PathBuf },

    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not generate the {what}")]
    Generate {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CertError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CertError {
        let path = path.to_path_buf();
        move |source| CertError::Io {
            action,
            path,
            source,
        }
    }

    fn generate<E>(what: &str) -> impl FnOnce(E) -> CertError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let what = what.to_string();
        move |source| CertError::Generate {
            what,
            source: Box::new(source),
        }
    }
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

/// Where new files go: to disk (under the lock, recorded in the manifest),
/// or nowhere (a preview).
enum Sink {
    Write {
        _lock: crate::fsutil::DirLock,
        manifest: crate::fsutil::Manifest,
        manifest_path: PathBuf,
    },
    Preview,
}

impl Sink {
    fn open(settings: &CertSettings, mode: Mode) -> Result<Sink, CertError> {
        if mode == Mode::Preview {
            return Ok(Sink::Preview);
        }
        let dir = &settings.certs_dir;
        ensure_private_dir(dir)?;
        let lock = crate::fsutil::lock_dir(dir, crate::fsutil::LOCK_WAIT, || {
            tracing::warn!(
                "waiting for another crdb-multiregion run to finish with {}",
                dir.display()
            )
        })
        .map_err(CertError::io("lock", dir))?;
        let manifest_path = dir.join(crate::fsutil::MANIFEST_FILE);
        let manifest =
            crate::fsutil::Manifest::load(dir).map_err(CertError::io("read", &manifest_path))?;
        Ok(Sink::Write {
            _lock: lock,
            manifest,
            manifest_path,
        })
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), CertError> {
        match self {
            Sink::Write { .. } => ensure_private_dir(dir),
            Sink::Preview => Ok(()),
        }
    }

    fn tighten_key_mode(&self, path: &Path) -> Result<(), CertError> {
        match self {
            Sink::Write { .. } => tighten_key_mode(path),
            Sink::Preview => Ok(()),
        }
    }

    /// Writes (replacing) or, with `create_new`, creates the files, and
    /// records them in the manifest.
    fn write(&mut self, files: &[(&Path, String, u32)], create_new: bool) -> Result<(), CertError> {
        let Sink::Write {
            manifest,
            manifest_path,
            ..
        } = self
        else {
            return Ok(());
        };
        let result = if create_new {
            create_new_files(files)
        } else {
            write_atomically(files)
        };
        for (path, contents, _) in files {
            if path.is_file() && fs::read(path).is_ok_and(|b| b == contents.as_bytes()) {
                manifest.record(path, contents.as_bytes());
            }
        }
        manifest
            .save()
            .map_err(CertError::io("write", manifest_path))?;
        result
    }
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

use crate::fsutil::{Staged, resolve};
use crate::names;

// ---------------------------------------------------------------------------
// The CA

struct Ca {
    cert_path: PathBuf,
    crt_pem: String,
    /// The CA certificate in DER, to check leaf signatures against.
    der: Vec<u8>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_cert_path(settings: &CertSettings) -> PathBuf {
    settings.certs_dir.join(CA_CERT_FILE)
}

/// The CA on disk: `None` when neither file exists, an error when it cannot
/// be used as it is.
fn read_ca(settings: &CertSettings, now: OffsetDateTime) -> Result<Option<Ca>, CertError> {
    let cert_path = ca_cert_path(settings);
    let key_path = settings.ca_key_path.clone();
    let (crt_pem, key_pem) = match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(CertError::CaKeyMissing {
                cert_path,
                key_path,
            });
        }
        (None, Some(_)) => {
            return Err(CertError::CaCertMissing {
                cert_path,
                key_path,
            });
        }
        (Some(crt), Some(key)) => (crt, key),
    };
    parse_ca(settings, crt_pem, key_pem, now).map(Some)
}

/// The CA from its certificate and key PEMs, checked as [`read_ca`] promises.
fn parse_ca(
    settings: &CertSettings,
    crt_pem: String,
    key_pem: String,
    now: OffsetDateTime,
) -> Result<Ca, CertError> {
    let cert_path = ca_cert_path(settings);
    let key_path = settings.ca_key_path.clone();
    let invalid_cert = |reason: String| CertError::InvalidCaCert {
        path: cert_path.clone(),
        reason,
    };
    let der = pem_to_der(&crt_pem).map_err(invalid_cert)?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| invalid_cert(format!("it is not an X.509 certificate ({e})")))?;
    if !x509.is_ca() {
        return Err(invalid_cert(
            "it is not a CA certificate (basicConstraints CA is not set)".to_string(),
        ));
    }
    let key = parse_key(&key_pem, &key_path).map_err(|reason| CertError::InvalidCaKey {
        path: key_path.clone(),
        reason,
    })?;
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(CertError::CaKeyMismatch {
            cert_path,
            key_path,
        });
    }
    let not_after = x509.validity().not_after.to_datetime();
    if not_after <= now {
        return Err(CertError::CaExpired {
            path: cert_path,
            not_after: date(not_after),
        });
    }
    let issuer = Issuer::from_ca_cert_pem(&crt_pem, key)
        .map_err(|e| invalid_cert(format!("it cannot be used to sign certificates ({e})")))?;
    Ok(Ca {
        cert_path,
        crt_pem,
        der,
        not_after,
        issuer,
    })
}

/// A new CA: (key PEM, certificate PEM).
fn new_ca(settings: &CertSettings, now: OffsetDateTime) -> Result<(String, String), CertError> {
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

// ---------------------------------------------------------------------------
// Leaf certificates (root client, nodes)

struct LeafSpec {
    /// For messages: "root client certificate", "node certificate for zone x".
    what: String,
    common_name: &'static str,
    server_auth: bool,
    sans: Vec<String>,
    crt_path: PathBuf,
    key_path: PathBuf,
}

impl LeafSpec {
    fn client_root(settings: &CertSettings) -> LeafSpec {
        LeafSpec {
            what: "root client certificate".to_string(),
            common_name: ROOT_COMMON_NAME,
            server_auth: false,
            sans: Vec::new(),
            crt_path: settings.certs_dir.join(CLIENT_ROOT_CERT_FILE),
            key_path: settings.certs_dir.join(CLIENT_ROOT_KEY_FILE),
        }
    }

    fn node(settings: &CertSettings, node: &NodeIdentity) -> LeafSpec {
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

/// Reuses the leaf on disk if it is still good, otherwise writes a new one.
/// Each leaf of `specs`, in order: reused from disk when still good,
/// otherwise issued (concurrently, on all cores) and written.
fn ensure_leaves(
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
        sink.write(
            &[
                (&spec.key_path, key.clone(), KEY_FILE_MODE),
                (&spec.crt_path, crt.clone(), CERT_FILE_MODE),
            ],
            false,
        )?;
        let action = match reason {
            None => CertAction::Created,
            Some(reason) => CertAction::Regenerated { reason },
        };
        leaves.push((crt, key, action));
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

/// `issue` applied to every item, on up to as many threads as there are
/// cores, results in the items' order.
fn issue_concurrently<T: Sync, R: Send>(items: &[T], issue: impl Fn(&T) -> R + Sync) -> Vec<R> {
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
fn issue_checked_leaf(
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
fn not_signed_by(cert: &X509Certificate<'_>, ca: &Ca) -> Option<&'static str> {
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
fn cert_sans(cert: &X509Certificate<'_>) -> BTreeSet<String> {
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

/// A private key from PEM: unencrypted PKCS#8 (`PRIVATE KEY`, what we write)
/// or PKCS#1 (`RSA PRIVATE KEY`, what `cockroach cert` writes, so that a CA
/// made by setup.py can be kept).
fn parse_key(pem: &str, path: &Path) -> Result<KeyPair, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("it is not a PEM file ({e})"))?;
    match block.label.as_str() {
        "PRIVATE KEY" => KeyPair::try_from(block.contents.as_slice()).map_err(|e| format!("{e}")),
        "RSA PRIVATE KEY" => KeyPair::from_pem_and_sign_algo(pem, &PKCS_RSA_SHA256)
            .map_err(|e| format!("invalid PKCS#1 RSA key ({e})")),
        "EC PRIVATE KEY" => Err(format!(
            "it is a SEC1 \"EC PRIVATE KEY\", which is not read here; convert it to PKCS#8 \
             with `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.pkcs8` and use that file",
            path.display()
        )),
        other => Err(format!(
            "it holds a PEM {other:?} block, not an unencrypted \"PRIVATE KEY\" or \
             \"RSA PRIVATE KEY\""
        )),
    }
}

/// A new random key (rcgen with the aws-lc backend makes RSA keys too).
fn generate_key(key_type: KeyType, what: &str) -> Result<KeyPair, CertError> {
    KeyPair::generate_for(key_type.algorithm()).map_err(CertError::generate(what))
}

// ---------------------------------------------------------------------------
// Small helpers: PEM, dates, files

/// The DER inside a PEM `CERTIFICATE` block.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("it is not a PEM file ({e})"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!(
            "it holds a PEM {:?} block, not a CERTIFICATE",
            pem.label
        ));
    }
    Ok(pem.contents)
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// The file's text, `None` when there is none. A symbolic link to nothing is
/// an error (writing would replace the link with a plain file), and so is a
/// file that is not a small regular file.
fn read_optional(path: &Path) -> Result<Option<String>, CertError> {
    match crate::fsutil::read_small_text(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Ok(target) = fs::read_link(path) {
                return Err(CertError::DanglingSymlink {
                    path: path.to_path_buf(),
                    target,
                });
            }
            Ok(None)
        }
        Err(e) => Err(CertError::io("read", path)(e)),
    }
}

/// Creates `dir` (and missing parents) with mode 0700. An existing directory
/// is left as it is: it may be shared (a home directory, /tmp), so a loose
/// mode is only reported.
fn ensure_private_dir(dir: &Path) -> Result<(), CertError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{} is accessible to other users (mode {:o}); consider `chmod 700 {}`",
                    dir.display(),
                    meta.permissions().mode() & 0o777,
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => Err(CertError::Io {
            action: "use as a directory",
            path: dir.to_path_buf(),
            source: io::Error::other("it exists and is not a directory"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(CertError::io("create the directory", dir))?;
            // Independent of the umask.
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(CertError::io("set the permissions of", dir))
        }
        Err(e) => Err(CertError::io("inspect", dir)(e)),
    }
}

/// A reused key file is ours: make sure nobody else can read it.
fn tighten_key_mode(path: &Path) -> Result<(), CertError> {
    let meta = fs::metadata(path).map_err(CertError::io("inspect", path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(KEY_FILE_MODE))
            .map_err(CertError::io("set the permissions of", path))?;
    }
    Ok(())
}

/// Stages every file (see [`Staged`]); errors name the destination, the
/// file the user knows.
fn stage_all(files: &[(&Path, String, u32)]) -> Result<Vec<Staged>, CertError> {
    files
        .iter()
        .map(|(dest, contents, mode)| {
            Staged::new(dest, contents.as_bytes(), *mode).map_err(CertError::io("write", dest))
        })
        .collect()
}

/// Like [`write_atomically`], but never replaces an existing file: each
/// file is staged, then hard-linked into place. Used for the CA, so that two
/// runs can never overwrite each other's CA key.
fn create_new_files(files: &[(&Path, String, u32)]) -> Result<(), CertError> {
    let staged = stage_all(files)?;
    for (file, (dest, _, _)) in staged.into_iter().zip(files) {
        match file.link_into_place() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CertError::CaAppeared {
                    path: dest.to_path_buf(),
                });
            }
            Err(e) => return Err(CertError::io("create", dest)(e)),
        }
    }
    Ok(())
}

/// Writes every file to a temporary file first and only then renames them
/// into place, in order, so an interruption never leaves a half-written file.
fn write_atomically(files: &[(&Path, String, u32)]) -> Result<(), CertError> {
    let staged = stage_all(files)?;
    for (file, (dest, _, _)) in staged.into_iter().zip(files) {
        file.rename_into_place()
            .map_err(CertError::io("replace", dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        (v.not_after.to_datetime() - v.not_before.to_datetime()).as_seconds_f64()
            / (365.25 * 86400.0)
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

    // --- the CA rules

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

    // --- when leaf certificates are regenerated

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
        let err = write_atomically(&[(&dest, "k".to_string(), KEY_FILE_MODE)]).unwrap_err();
        assert!(err.to_string().contains("missing-dir/node.key"), "{err}");
        assert!(!err.to_string().contains(".tmp-"), "{err}");
    }

    #[test]
    fn atomic_write_replaces_files_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.key");
        let b = tmp.path().join("b.crt");
        fs::write(&a, "old").unwrap();
        write_atomically(&[
            (&a, "new a".to_string(), KEY_FILE_MODE),
            (&b, "new b".to_string(), CERT_FILE_MODE),
        ])
        .unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "new a");
        assert_eq!(fs::read_to_string(&b).unwrap(), "new b");
        assert_eq!(mode(&a), 0o600);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);

        // A failure while staging leaves the old contents and no temp file.
        let missing_dir = tmp.path().join("nope/c.crt");
        let err = write_atomically(&[
            (&a, "newer a".to_string(), KEY_FILE_MODE),
            (&missing_dir, "c".to_string(), CERT_FILE_MODE),
        ])
        .unwrap_err();
        assert!(matches!(err, CertError::Io { .. }), "{err:?}");
        assert_eq!(fs::read_to_string(&a).unwrap(), "new a");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}
