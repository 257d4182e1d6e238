//! The platform's SM2 keys, each generated on first start into the data directory unless a file
//! is named: the encryption key cabinets seal personal data (`zjdata`) to (`--platform-key`),
//! and the signing key of the log's checkpoints (`--checkpoint-key`, docs/audit.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_protocol::keys::{
    generate_platform_encryption_key, generate_secret_key, public_key_to_spki_pem,
    secret_key_from_pkcs8_pem, secret_key_to_pkcs8_pem, self_signed_certificate, Certificate,
};
use custody_protocol::{EnvelopeOpener, Sm2Signer};

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
        let (key_path, generate) = key_path(data_dir, key_file, &format!("{STEM}.key.pem"))?;
        if generate {
            let generated = generate_platform_encryption_key(SUBJECT, TEN_YEARS, &mut rand::rng())
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?;
            generated
                .write_files(data_dir, STEM)
                .map_err(|e| file_error(data_dir, e))?;
            custody_eventlog::files::private_file(&key_path)
                .map_err(|e| file_error(&key_path, e))?;
            tracing::info!(path = %key_path.display(), "generated the platform encryption key");
        }
        let secret = read_secret_key(&key_path)?;
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

/// The checkpoint signing key and its public key (SubjectPublicKeyInfo PEM).
pub struct CheckpointKey {
    pub signer: Sm2Signer,
    pub public_key_pem: String,
}

const CHECKPOINT_KEY_FILE: &str = "checkpoint-sign.key.pem";

impl CheckpointKey {
    /// `key_file` if given, else `<data_dir>/checkpoint-sign.key.pem`, generated if absent
    /// (PKCS#8 PEM, owner-only).
    pub fn load_or_generate(
        data_dir: &Path,
        key_file: Option<&Path>,
    ) -> Result<Self, PlatformKeyError> {
        let (key_path, generate) = key_path(data_dir, key_file, CHECKPOINT_KEY_FILE)?;
        if generate {
            let pem = secret_key_to_pkcs8_pem(&generate_secret_key(&mut rand::rng()))
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(
                &mut options
                    .open(&key_path)
                    .map_err(|e| file_error(&key_path, e))?,
                pem.as_bytes(),
            )
            .map_err(|e| file_error(&key_path, e))?;
            tracing::info!(path = %key_path.display(), "generated the checkpoint signing key");
        }
        let secret = read_secret_key(&key_path)?;
        Ok(CheckpointKey {
            signer: Sm2Signer::new(&secret),
            public_key_pem: public_key_to_spki_pem(&secret.public_key())
                .map_err(|e| PlatformKeyError::Key(e.to_string()))?,
        })
    }
}

/// The key file to use, and whether it must be generated first: `key_file` if given, else
/// `name` in the data directory (created if needed), generated when absent.
fn key_path(
    data_dir: &Path,
    key_file: Option<&Path>,
    name: &str,
) -> Result<(PathBuf, bool), PlatformKeyError> {
    if let Some(path) = key_file {
        return Ok((path.to_path_buf(), false));
    }
    let path = data_dir.join(name);
    let generate = !path.exists();
    if generate {
        custody_eventlog::files::private_directory(data_dir)
            .map_err(|e| file_error(data_dir, e))?;
    }
    Ok((path, generate))
}

fn read_secret_key(path: &Path) -> Result<custody_protocol::SecretKey, PlatformKeyError> {
    let pem = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    secret_key_from_pkcs8_pem(&pem).map_err(|e| PlatformKeyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
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
