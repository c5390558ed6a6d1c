//! The CA on disk: read, and checked before anything is signed with it.
//!
//! Owns the rules an existing CA must pass (both files present, a CA
//! certificate, a readable key that belongs to it, not expired, usable to
//! sign), each broken rule a [`CertError`] that says what to do. Must not:
//! write or replace a CA (a new one is made in `issue.rs` and written by
//! `files.rs`), or judge leaf certificates.

use std::path::PathBuf;

use rcgen::{Issuer, KeyPair, PublicKeyData};
use time::OffsetDateTime;

use super::files::read_optional;
use super::pem::{parse_key, pem_to_der};
use super::{CA_CERT_FILE, CertError, CertSettings, date};

/// A CA that passed [`parse_ca`]: what signing and checking leaves need.
pub(super) struct Ca {
    pub(super) cert_path: PathBuf,
    pub(super) crt_pem: String,
    /// The CA certificate in DER, to check leaf signatures against.
    pub(super) der: Vec<u8>,
    pub(super) not_after: OffsetDateTime,
    pub(super) issuer: Issuer<'static, KeyPair>,
}

pub(super) fn ca_cert_path(settings: &CertSettings) -> PathBuf {
    settings.certs_dir.join(CA_CERT_FILE)
}

/// The CA on disk: `None` when neither file exists, an error when it cannot
/// be used as it is.
pub(super) fn read_ca(
    settings: &CertSettings,
    now: OffsetDateTime,
) -> Result<Option<Ca>, CertError> {
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
pub(super) fn parse_ca(
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
    let der = pem_to_der(&crt_pem).map_err(|e| invalid_cert(e.to_string()))?;
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
