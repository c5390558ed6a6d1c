//! What can go wrong with the certificates, each message saying what to do
//! about it: [`CertError`] for the whole operation, [`PemError`] for why a
//! file is not the PEM certificate or key it should be.
//!
//! Must not: decide anything; the other modules pick the variant.

use std::io;
use std::path::{Path, PathBuf};

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
    InvalidCaKey { path: PathBuf, reason: PemError },

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
    pub(super) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CertError {
        let path = path.to_path_buf();
        move |source| CertError::Io {
            action,
            path,
            source,
        }
    }

    pub(super) fn generate<E>(what: &str) -> impl FnOnce(E) -> CertError
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

/// Why a file is not the PEM certificate or private key it should be. The
/// message continues a sentence about the file ("the CA key ... is not
/// usable: <this>"), so it starts with "it".
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("it is not a PEM file ({0})")]
    NotPem(x509_parser::nom::Err<x509_parser::error::PEMError>),

    #[error("it holds a PEM {label:?} block, not a CERTIFICATE")]
    NotACertificate { label: String },

    #[error(
        "it holds a PEM {label:?} block, not an unencrypted \"PRIVATE KEY\" or \
         \"RSA PRIVATE KEY\""
    )]
    NotAKey { label: String },

    #[error("{0}")]
    InvalidPkcs8Key(rcgen::Error),

    #[error("invalid PKCS#1 RSA key ({0})")]
    InvalidPkcs1Key(rcgen::Error),

    #[error(
        "it is a SEC1 \"EC PRIVATE KEY\", which is not read here; convert it to PKCS#8 \
         with `openssl pkcs8 -topk8 -nocrypt -in {} -out {}.pkcs8` and use that file",
        path.display(), path.display()
    )]
    Sec1Key { path: PathBuf },
}
