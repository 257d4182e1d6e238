//! SM2 keys and certificates.
//!
//! Keys travel as PEM in the form OpenSSL 3 and GmSSL read and write: PKCS#8 for secret keys,
//! SubjectPublicKeyInfo for public keys (both `id-ecPublicKey` with curve OID
//! 1.2.156.10197.1.301) and X.509 certificates signed with SM2-with-SM3.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::asn1::BitString;
use der::{Decode, Encode};
use rand::CryptoRng;
use sm2::dsa::SigningKey;
use sm2::elliptic_curve::Generate;
use sm2::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sm2::{PublicKey, SecretKey};
use thiserror::Error;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};

use crate::sm2sig::DEFAULT_DISTINGUISHING_ID;

/// Why a key or certificate could not be read or made.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Not a PKCS#8 PEM SM2 secret key (wrong PEM label, bad DER, other curve or algorithm).
    #[error("not a PKCS#8 PEM SM2 secret key: {0}")]
    SecretKey(#[source] sm2::pkcs8::Error),
    /// Not a SubjectPublicKeyInfo PEM SM2 public key.
    #[error("not a SubjectPublicKeyInfo PEM SM2 public key: {0}")]
    PublicKey(#[source] sm2::pkcs8::spki::Error),
    /// Not a PEM/DER X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Certificate(#[source] der::Error),
    /// A PEM block that is not a certificate.
    #[error("PEM label is {0:?}, expected CERTIFICATE")]
    CertificatePemLabel(String),
    /// The certificate parses but does not carry an SM2 public key.
    #[error("certificate does not carry an SM2 public key: {0}")]
    CertificateKey(#[source] sm2::pkcs8::spki::Error),
    /// The certificate subject is not an RFC 4514 distinguished name.
    #[error("bad certificate subject {subject:?}: {source}")]
    Subject {
        /// The subject as given.
        subject: String,
        /// What the parser said.
        #[source]
        source: der::Error,
    },
    /// Building or signing the certificate failed.
    #[error("could not build the certificate: {0}")]
    CertificateBuild(String),
    /// Encoding a key as PEM failed.
    #[error("could not encode the key: {0}")]
    Encoding(String),
}

/// Reads an SM2 secret key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, unencrypted).
pub fn secret_key_from_pkcs8_pem(pem: &str) -> Result<SecretKey, KeyError> {
    SecretKey::from_pkcs8_pem(pem).map_err(KeyError::SecretKey)
}

/// Reads an SM2 public key from SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn public_key_from_spki_pem(pem: &str) -> Result<PublicKey, KeyError> {
    PublicKey::from_public_key_pem(pem).map_err(KeyError::PublicKey)
}

/// Writes an SM2 secret key as unencrypted PKCS#8 PEM (LF line endings).
pub fn secret_key_to_pkcs8_pem(secret_key: &SecretKey) -> Result<String, KeyError> {
    secret_key
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|err| KeyError::Encoding(err.to_string()))
}

/// Writes an SM2 public key as SubjectPublicKeyInfo PEM (LF line endings).
pub fn public_key_to_spki_pem(public_key: &PublicKey) -> Result<String, KeyError> {
    public_key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|err| KeyError::Encoding(err.to_string()))
}

/// Generates a fresh SM2 secret key.
pub fn generate_secret_key<R: CryptoRng + ?Sized>(rng: &mut R) -> SecretKey {
    // `generate_from_rng` draws uniformly from [0, n) and does not exclude zero (probability
    // 1/n, but an invalid key all the same).
    loop {
        let secret_key = SecretKey::generate_from_rng(rng);
        if !bool::from(secret_key.as_scalar_value().is_zero()) {
            return secret_key;
        }
    }
}

/// An X.509 certificate with an SM2 public key, reduced to what the protocol uses: the DER
/// itself, the public key, and issuer + serial number (the envelope's IssuerAndSerialNumber).
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    issuer_der: Vec<u8>,
    serial_number_der: Vec<u8>,
    public_key: PublicKey,
}

impl Certificate {
    /// Reads a PEM certificate (`-----BEGIN CERTIFICATE-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = der::pem::decode_vec(pem.as_bytes())
            .map_err(|err| KeyError::Certificate(err.into()))?;
        if label != "CERTIFICATE" {
            return Err(KeyError::CertificatePemLabel(label.to_owned()));
        }
        Self::from_der(&der)
    }

    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let certificate = x509_cert::Certificate::from_der(der).map_err(KeyError::Certificate)?;
        let tbs = certificate.tbs_certificate();
        let spki_der = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(KeyError::Certificate)?;
        let public_key =
            PublicKey::from_public_key_der(&spki_der).map_err(KeyError::CertificateKey)?;
        Ok(Self {
            der: der.to_vec(),
            issuer_der: tbs.issuer().to_der().map_err(KeyError::Certificate)?,
            serial_number_der: tbs
                .serial_number()
                .to_der()
                .map_err(KeyError::Certificate)?,
            public_key,
        })
    }

    /// The certificate as DER.
    pub fn as_der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as PEM (LF line endings).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        der::pem::encode_string("CERTIFICATE", LineEnding::LF, &self.der)
            .map_err(|err| KeyError::Encoding(err.to_string()))
    }

    /// The subject's SM2 public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The issuer `Name`, DER-encoded (as it appears in IssuerAndSerialNumber).
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    /// The serial number as a complete DER `INTEGER` (tag, length, value).
    pub fn serial_number_der(&self) -> &[u8] {
        &self.serial_number_der
    }
}

/// A freshly generated platform encryption key with its public key and self-signed certificate,
/// all as PEM, ready to be written to files and served to cabinets.
pub struct GeneratedKeyPair {
    /// The secret key.
    pub secret_key: SecretKey,
    /// The secret key as unencrypted PKCS#8 PEM.
    pub secret_key_pem: String,
    /// The public key as SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// The self-signed certificate.
    pub certificate: Certificate,
    /// The self-signed certificate as PEM.
    pub certificate_pem: String,
}

impl GeneratedKeyPair {
    /// Writes `<stem>.key.pem` (owner-only permissions on Unix), `<stem>.pub.pem` and
    /// `<stem>.cert.pem` into `dir`, the layout of the shared fixtures.
    pub fn write_files(&self, dir: &Path, stem: &str) -> std::io::Result<()> {
        let key_path = dir.join(format!("{stem}.key.pem"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&key_path)?
            .write_all(self.secret_key_pem.as_bytes())?;
        std::fs::write(dir.join(format!("{stem}.pub.pem")), &self.public_key_pem)?;
        std::fs::write(dir.join(format!("{stem}.cert.pem")), &self.certificate_pem)
    }
}

impl std::fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key PEM must not end up in logs.
        f.debug_struct("GeneratedKeyPair")
            .field("public_key_pem", &self.public_key_pem)
            .field("certificate_pem", &self.certificate_pem)
            .finish_non_exhaustive()
    }
}

/// Generates a platform encryption key pair and its self-signed certificate.
///
/// `subject` is an RFC 4514 name such as `CN=platform-enc,O=Custody,C=CN`.
pub fn generate_platform_encryption_key<R: CryptoRng + ?Sized>(
    subject: &str,
    valid_for: Duration,
    rng: &mut R,
) -> Result<GeneratedKeyPair, KeyError> {
    let secret_key = generate_secret_key(rng);
    let certificate = self_signed_certificate(&secret_key, subject, valid_for, rng)?;
    Ok(GeneratedKeyPair {
        secret_key_pem: secret_key_to_pkcs8_pem(&secret_key)?,
        public_key_pem: public_key_to_spki_pem(&secret_key.public_key())?,
        certificate_pem: certificate.to_pem()?,
        certificate,
        secret_key,
    })
}

/// Makes a self-signed X.509 v3 certificate for `secret_key`, signed with SM2-with-SM3
/// (OID 1.2.156.10197.1.501, distinguishing ID `1234567812345678` as OpenSSL uses when it
/// verifies SM2 certificates).
///
/// Valid from one hour ago (tolerates clock skew between platform and cabinets) for `valid_for`.
/// Extensions: basicConstraints CA (critical), keyUsage keyEncipherment, dataEncipherment,
/// keyAgreement and keyCertSign (OpenSSL only treats a certificate as self-signed when it may
/// sign certificates), subject and authority key identifiers.
pub fn self_signed_certificate<R: CryptoRng + ?Sized>(
    secret_key: &SecretKey,
    subject: &str,
    valid_for: Duration,
    rng: &mut R,
) -> Result<Certificate, KeyError> {
    let build_error = |err: &dyn std::fmt::Display| KeyError::CertificateBuild(err.to_string());
    let subject_name = Name::from_str(subject).map_err(|source| KeyError::Subject {
        subject: subject.to_owned(),
        source,
    })?;
    let signing_key =
        SigningKey::new(DEFAULT_DISTINGUISHING_ID, secret_key).map_err(|err| build_error(&err))?;

    let now = SystemTime::now();
    let not_before = now
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let not_after = now
        .checked_add(valid_for)
        .ok_or_else(|| KeyError::CertificateBuild("validity period overflows".into()))?;
    let validity = Validity::new(
        Time::try_from(not_before).map_err(|err| build_error(&err))?,
        Time::try_from(not_after).map_err(|err| build_error(&err))?,
    );

    let public_key_der = secret_key
        .public_key()
        .to_public_key_der()
        .map_err(|err| build_error(&err))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(public_key_der.as_bytes())
        .map_err(|err| build_error(&err))?;

    let mut builder = CertificateBuilder::new(
        SelfSignedEncryptionProfile {
            subject: subject_name,
        },
        SerialNumber::generate(rng),
        validity,
        spki,
    )
    .map_err(|err| build_error(&err))?;

    // `Builder::build` would use the raw 64-byte r‖s encoding sm2 gives its plain `Signature`;
    // X.509 needs DER `SEQUENCE { r, s }`, so sign the TBS ourselves.
    let tbs_der = builder
        .finalize(&signing_key)
        .map_err(|err| build_error(&err))?;
    let signature: sm2::dsa::Signature =
        sm2::dsa::signature::Signer::try_sign(&signing_key, &tbs_der)
            .map_err(|err| build_error(&err))?;
    let signature_bits =
        BitString::from_bytes(signature.to_der().as_bytes()).map_err(|err| build_error(&err))?;
    let certificate = builder
        .assemble(signature_bits, &signing_key)
        .map_err(|err| build_error(&err))?;
    let der = certificate.to_der().map_err(|err| build_error(&err))?;
    Certificate::from_der(&der)
}

/// Extensions for the platform's self-signed encryption certificate (see
/// [`self_signed_certificate`]).
struct SelfSignedEncryptionProfile {
    subject: Name,
}

impl BuilderProfile for SelfSignedEncryptionProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        subject_public_key: SubjectPublicKeyInfoRef<'_>,
        _issuer_public_key: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut extensions: Vec<Extension> = Vec::new();
        let subject_key_id = SubjectKeyIdentifier::try_from(subject_public_key)?;
        extensions.push(
            BasicConstraints {
                ca: true,
                path_len_constraint: None,
            }
            .to_extension(tbs.subject(), &extensions)?,
        );
        extensions.push(
            KeyUsage(
                KeyUsages::KeyEncipherment
                    | KeyUsages::DataEncipherment
                    | KeyUsages::KeyAgreement
                    | KeyUsages::KeyCertSign,
            )
            .to_extension(tbs.subject(), &extensions)?,
        );
        extensions.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(subject_key_id.0.clone()),
                ..Default::default()
            }
            .to_extension(tbs.subject(), &extensions)?,
        );
        extensions.push(subject_key_id.to_extension(tbs.subject(), &extensions)?);
        Ok(extensions)
    }
}
