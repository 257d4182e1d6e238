//! The platform's SM2 encryption key: cabinets seal personal data (`zjdata`) to it.
//! Generated on first start into the data directory, unless `--platform-key FILE` names one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_protocol::keys::{
    generate_platform_encryption_key, public_key_to_spki_pem, secret_key_from_pkcs8_pem,
    self_signed_certificate, Certificate,
};
use custody_protocol::EnvelopeOpener;

pub struct PlatformKey {
    pub opener: EnvelopeOpener,
    pub public_key_pem: String,
    pub certificate_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformKeyError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("platform key: {0}")]
    Key(String),
}

const STEM: &str = "platform-enc";
const SUBJECT: &str = "CN=custody-platform-enc,O=Custody,C=CN";
const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl PlatformKey {
    /// `key_file` if given (its certificate beside it as `*.cert.pem`, or one made for it);
    /// else `<data_dir>/platform-enc.key.pem`, generated with its certificate if absent.
    pub fn load_or_generate(
        data_dir: &Path,
        key_file: Option<&Path>,
    ) -> Result<Self, PlatformKeyError> {
        let key_path = match key_file {
            Some(path) => path.to_path_buf(),
            None => data_dir.join(format!("{STEM}.key.pem")),
        };
        if key_file.is_none() && !key_path.exists() {
            custody_eventlog::files::private_directory(data_dir)
                .map_err(|e| file_error(data_dir, e))?;
            let generated = generate_platform_encryption_key(SUBJECT, TEN_YEARS, &mut rand::rng())
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?;
            generated
                .write_files(data_dir, STEM)
                .map_err(|e| file_error(data_dir, e))?;
            custody_eventlog::files::private_file(&key_path)
                .map_err(|e| file_error(&key_path, e))?;
            tracing::info!(path = %key_path.display(), "generated the platform encryption key");
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| file_error(&key_path, e))?;
        let secret = secret_key_from_pkcs8_pem(&key_pem).map_err(|e| PlatformKeyError::File {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let cert_path = certificate_path(&key_path, data_dir);
        let certificate = if cert_path.exists() {
            let pem = std::fs::read_to_string(&cert_path).map_err(|e| file_error(&cert_path, e))?;
            Certificate::from_pem(&pem).map_err(|e| PlatformKeyError::File {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?
        } else {
            let certificate =
                self_signed_certificate(&secret, SUBJECT, TEN_YEARS, &mut rand::rng())
                    .map_err(|e| PlatformKeyError::Key(e.to_string()))?;
            let pem = certificate
                .to_pem()
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?;
            std::fs::write(&cert_path, pem).map_err(|e| file_error(&cert_path, e))?;
            certificate
        };
        let opener = EnvelopeOpener::with_certificate(&secret, &certificate)
            .map_err(|e| PlatformKeyError::Key(e.to_string()))?;
        Ok(PlatformKey {
            opener,
            public_key_pem: public_key_to_spki_pem(&secret.public_key())
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?,
            certificate_pem: certificate
                .to_pem()
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?,
        })
    }
}

/// `x.key.pem` → `x.cert.pem` beside it; a key file named otherwise gets its certificate in the
/// data directory.
fn certificate_path(key_path: &Path, data_dir: &Path) -> PathBuf {
    let name = key_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name.strip_suffix(".key.pem") {
        Some(stem) => key_path.with_file_name(format!("{stem}.cert.pem")),
        None => data_dir.join(format!("{STEM}.cert.pem")),
    }
}

fn file_error(path: &Path, error: std::io::Error) -> PlatformKeyError {
    PlatformKeyError::File {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}
