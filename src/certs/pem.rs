//! Reading what is on disk as PEM: the DER of a certificate, a private key.
//!
//! Owns: which PEM blocks are accepted (`CERTIFICATE`; `PRIVATE KEY` and
//! `RSA PRIVATE KEY` for keys) and the [`PemError`] that says why a file is
//! not one of them. Must not: read files, generate keys, or judge whether a
//! certificate is still good (that is `ca.rs` and `leaf.rs`).

use std::path::Path;

use rcgen::{KeyPair, PKCS_RSA_SHA256};

use super::PemError;

/// A private key from PEM: unencrypted PKCS#8 (`PRIVATE KEY`, what we write)
/// or PKCS#1 (`RSA PRIVATE KEY`, what `cockroach cert` writes, so that a CA
/// made by setup.py can be kept). `path` is only for the conversion hint of
/// a SEC1 key.
pub(super) fn parse_key(pem: &str, path: &Path) -> Result<KeyPair, PemError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(PemError::NotPem)?;
    match block.label.as_str() {
        "PRIVATE KEY" => {
            KeyPair::try_from(block.contents.as_slice()).map_err(PemError::InvalidPkcs8Key)
        }
        "RSA PRIVATE KEY" => KeyPair::from_pem_and_sign_algo(pem, &PKCS_RSA_SHA256)
            .map_err(PemError::InvalidPkcs1Key),
        "EC PRIVATE KEY" => Err(PemError::Sec1Key {
            path: path.to_path_buf(),
        }),
        _ => Err(PemError::NotAKey { label: block.label }),
    }
}

/// The DER inside a PEM `CERTIFICATE` block.
pub(super) fn pem_to_der(pem: &str) -> Result<Vec<u8>, PemError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(PemError::NotPem)?;
    if pem.label != "CERTIFICATE" {
        return Err(PemError::NotACertificate { label: pem.label });
    }
    Ok(pem.contents)
}
