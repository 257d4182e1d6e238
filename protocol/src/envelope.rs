//! The GM/T 0010 digital envelope (SPEC.md §5): SM2 key transport of a fresh SM4 key, content
//! in SM4-CBC with PKCS#7 padding.
//!
//! ```text
//! ContentInfo ::= SEQUENCE {
//!   contentType 1.2.156.10197.6.1.4.2.3 (envelopedData),
//!   content [0] EXPLICIT EnvelopedData }
//! EnvelopedData ::= SEQUENCE {
//!   version INTEGER (1),
//!   recipientInfos SET OF RecipientInfo,
//!   encryptedContentInfo EncryptedContentInfo }
//! RecipientInfo ::= SEQUENCE {
//!   version INTEGER (1),
//!   issuerAndSerialNumber SEQUENCE { issuer Name, serialNumber INTEGER },
//!   keyEncryptionAlgorithm AlgorithmIdentifier (1.2.156.10197.1.301.3, or .301.2 from GmSSL),
//!   encryptedKey OCTET STRING (DER SM2Cipher of the 16-byte SM4 key) }
//! EncryptedContentInfo ::= SEQUENCE {
//!   contentType 1.2.156.10197.6.1.4.2.1 (data),
//!   contentEncryptionAlgorithm AlgorithmIdentifier (1.2.156.10197.1.104.2, IV OCTET STRING),
//!   encryptedContent [0] IMPLICIT OCTET STRING }
//! ```

use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode, Sequence, SliceReader, Tag, Tagged};
use rand::CryptoRng;
use sm2::SecretKey;
use thiserror::Error;
use x509_cert::spki::AlgorithmIdentifierRef;

use crate::keys::Certificate;
use crate::oid;
use crate::sm2enc::{self, Sm2CipherError, Sm2Decryptor};

/// Version of EnvelopedData and RecipientInfo in GM/T 0010 (PKCS#7 style).
const GMT0010_VERSION: u8 = 1;
/// SM4 key and block size.
const SM4_KEY_LEN: usize = 16;
/// SM4-CBC IV size.
const SM4_IV_LEN: usize = 16;

type Sm4CbcEncryptor = cbc::Encryptor<sm4::Sm4>;
type Sm4CbcDecryptor = cbc::Decryptor<sm4::Sm4>;

/// Why an envelope could not be opened or sealed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// The base64 wrapper (as in `zjdata`) is not valid base64.
    #[error("envelope is not valid base64")]
    BadBase64,
    /// Not DER, or not the GM/T 0010 structure.
    #[error("envelope is not DER of the GM/T 0010 structure: {0}")]
    Malformed(String),
    /// The outer content type is not envelopedData, or the inner one is not data.
    #[error("content type {found} is not the expected GM/T 0010 type {expected}")]
    WrongContentType {
        /// The content type found.
        found: ObjectIdentifier,
        /// The content type required at that place.
        expected: ObjectIdentifier,
    },
    /// EnvelopedData or RecipientInfo carries a version other than 1.
    #[error("unsupported {structure} version {found}")]
    UnsupportedVersion {
        /// `EnvelopedData` or `RecipientInfo`.
        structure: &'static str,
        /// The version found.
        found: u8,
    },
    /// A key-encryption or content-encryption algorithm this crate does not implement.
    #[error("unsupported {role} algorithm {found}")]
    UnsupportedAlgorithm {
        /// `key-encryption` or `content-encryption`.
        role: &'static str,
        /// The algorithm OID found.
        found: ObjectIdentifier,
    },
    /// The SM4-CBC parameter is not a 16-byte OCTET STRING.
    #[error("SM4-CBC parameter is not a 16-byte OCTET STRING IV")]
    BadIv,
    /// The envelope has no encryptedContent.
    #[error("envelope has no encrypted content")]
    MissingContent,
    /// No RecipientInfo names the platform certificate (issuer and serial number).
    #[error("envelope is addressed to another recipient")]
    NotForThisRecipient,
    /// encryptedKey is not a DER SM2Cipher (or its C1 is not a curve point).
    #[error("encryptedKey is not a DER SM2Cipher: {0}")]
    MalformedEncryptedKey(String),
    /// The SM2 C3 hash of the content key does not match: sealed for another key, or altered.
    #[error("content key decryption failed (SM2 C3 hash mismatch)")]
    KeyDecryptionFailed,
    /// The decrypted content key is not 16 bytes.
    #[error("content key is {0} bytes, expected 16")]
    BadContentKeyLength(usize),
    /// The content is not a whole number of SM4 blocks, or its PKCS#7 padding is wrong
    /// (typically an altered ciphertext or IV).
    #[error("content decryption failed: bad PKCS#7 padding or length")]
    BadPadding,
    /// The certificate given to the opener does not hold the secret key's public key.
    #[error("certificate does not belong to the secret key")]
    CertificateKeyMismatch,
    /// Sealing failed (encoding or SM2 encryption).
    #[error("could not seal the envelope: {0}")]
    Seal(String),
}

impl From<der::Error> for EnvelopeError {
    fn from(err: der::Error) -> Self {
        EnvelopeError::Malformed(err.to_string())
    }
}

#[derive(Sequence)]
struct ContentInfo<'a> {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: AnyRef<'a>,
}

#[derive(Sequence)]
struct EnvelopedData<'a> {
    version: u8,
    // Kept as the raw SET so that recipients in non-DER order (other encoders) still parse.
    recipient_infos: AnyRef<'a>,
    encrypted_content_info: EncryptedContentInfo<'a>,
}

#[derive(Sequence)]
struct RecipientInfo<'a> {
    version: u8,
    issuer_and_serial_number: IssuerAndSerialNumber<'a>,
    key_encryption_algorithm: AlgorithmIdentifierRef<'a>,
    encrypted_key: &'a OctetStringRef,
}

#[derive(Sequence)]
struct IssuerAndSerialNumber<'a> {
    issuer: AnyRef<'a>,
    serial_number: AnyRef<'a>,
}

#[derive(Sequence)]
struct EncryptedContentInfo<'a> {
    content_type: ObjectIdentifier,
    content_encryption_algorithm: AlgorithmIdentifierRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    encrypted_content: Option<&'a OctetStringRef>,
}

/// A structurally valid envelope, borrowed from its DER.
struct EnvelopeView<'a> {
    recipients: Vec<RecipientInfo<'a>>,
    content: EncryptedContentInfo<'a>,
}

fn decode_view(der: &[u8]) -> Result<EnvelopeView<'_>, EnvelopeError> {
    let content_info = ContentInfo::from_der(der)?;
    if content_info.content_type != oid::GMT0010_ENVELOPED_DATA {
        return Err(EnvelopeError::WrongContentType {
            found: content_info.content_type,
            expected: oid::GMT0010_ENVELOPED_DATA,
        });
    }
    let enveloped: EnvelopedData<'_> = content_info.content.decode_as()?;
    if enveloped.version != GMT0010_VERSION {
        return Err(EnvelopeError::UnsupportedVersion {
            structure: "EnvelopedData",
            found: enveloped.version,
        });
    }
    if enveloped.recipient_infos.tag() != Tag::Set {
        return Err(EnvelopeError::Malformed(
            "recipientInfos is not a SET".into(),
        ));
    }
    let mut reader = SliceReader::new(enveloped.recipient_infos.value())?;
    let mut recipients = Vec::new();
    while !der::Reader::is_finished(&reader) {
        let recipient: RecipientInfo<'_> = der::Reader::decode(&mut reader)?;
        if recipient.version != GMT0010_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                structure: "RecipientInfo",
                found: recipient.version,
            });
        }
        let names = &recipient.issuer_and_serial_number;
        if names.issuer.tag() != Tag::Sequence || names.serial_number.tag() != Tag::Integer {
            return Err(EnvelopeError::Malformed(
                "IssuerAndSerialNumber is not SEQUENCE { Name, INTEGER }".into(),
            ));
        }
        recipients.push(recipient);
    }
    if recipients.is_empty() {
        return Err(EnvelopeError::Malformed("no RecipientInfo".into()));
    }
    let content = enveloped.encrypted_content_info;
    if content.content_type != oid::GMT0010_DATA {
        return Err(EnvelopeError::WrongContentType {
            found: content.content_type,
            expected: oid::GMT0010_DATA,
        });
    }
    Ok(EnvelopeView {
        recipients,
        content,
    })
}

/// Checks the SM4-CBC algorithm and returns its IV.
fn sm4_cbc_iv<'a>(algorithm: &AlgorithmIdentifierRef<'a>) -> Result<&'a [u8], EnvelopeError> {
    if algorithm.oid != oid::SM4_CBC {
        return Err(EnvelopeError::UnsupportedAlgorithm {
            role: "content-encryption",
            found: algorithm.oid,
        });
    }
    let Some(parameters) = algorithm.parameters else {
        return Err(EnvelopeError::BadIv);
    };
    if parameters.tag() != Tag::OctetString || parameters.value().len() != SM4_IV_LEN {
        return Err(EnvelopeError::BadIv);
    }
    Ok(parameters.value())
}

/// How the SM2-encrypted content key is decrypted.
type KeyDecrypt = fn(&Sm2Decryptor, &[u8]) -> Result<Vec<u8>, Sm2CipherError>;

/// Opens envelopes addressed to the platform's SM2 encryption key.
///
/// Holds the prepared SM2 decryption key (deriving it costs a scalar multiplication) and,
/// when a certificate is given, its issuer and serial number to pick the right RecipientInfo.
#[derive(Clone, Debug)]
pub struct EnvelopeOpener {
    decryptor: Sm2Decryptor,
    recipient: Option<(Vec<u8>, Vec<u8>)>,
}

impl EnvelopeOpener {
    /// An opener that tries every RecipientInfo with `secret_key`.
    pub fn new(secret_key: &SecretKey) -> Self {
        Self {
            decryptor: Sm2Decryptor::new(secret_key),
            recipient: None,
        }
    }

    /// An opener that only accepts envelopes whose IssuerAndSerialNumber names `certificate`,
    /// refusing others with [`EnvelopeError::NotForThisRecipient`] before any decryption.
    pub fn with_certificate(
        secret_key: &SecretKey,
        certificate: &Certificate,
    ) -> Result<Self, EnvelopeError> {
        if secret_key.public_key() != *certificate.public_key() {
            return Err(EnvelopeError::CertificateKeyMismatch);
        }
        Ok(Self {
            decryptor: Sm2Decryptor::new(secret_key),
            recipient: Some((
                certificate.issuer_der().to_vec(),
                certificate.serial_number_der().to_vec(),
            )),
        })
    }

    /// Opens a DER envelope and returns the plaintext.
    pub fn open(&self, der: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.open_with(der, Sm2Decryptor::decrypt_der)
    }

    /// [`Self::open`] with the content key decrypted the way this crate did before
    /// ([`Sm2Decryptor::decrypt_der_from_slice`]); only for the equivalence tests and the
    /// benchmark.
    #[doc(hidden)]
    pub fn open_from_slice(&self, der: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.open_with(der, Sm2Decryptor::decrypt_der_from_slice)
    }

    fn open_with(&self, der: &[u8], decrypt: KeyDecrypt) -> Result<Vec<u8>, EnvelopeError> {
        let view = decode_view(der)?;
        // Cheap checks first: no SM2 work for envelopes that cannot be decrypted anyway.
        let iv = sm4_cbc_iv(&view.content.content_encryption_algorithm)?;
        let ciphertext = view
            .content
            .encrypted_content
            .ok_or(EnvelopeError::MissingContent)?
            .as_bytes();
        if ciphertext.is_empty() || ciphertext.len() % SM4_KEY_LEN != 0 {
            return Err(EnvelopeError::BadPadding);
        }

        let content_key = self.decrypt_content_key(&view.recipients, decrypt)?;
        if content_key.len() != SM4_KEY_LEN {
            return Err(EnvelopeError::BadContentKeyLength(content_key.len()));
        }
        Sm4CbcDecryptor::new_from_slices(&content_key, iv)
            .map_err(|_| EnvelopeError::BadIv)?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(|_| EnvelopeError::BadPadding)
    }

    /// Opens a base64 envelope (as carried in `zjdata` / `rydata`).
    pub fn open_base64(&self, base64_der: &str) -> Result<Vec<u8>, EnvelopeError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64_der.trim())
            .map_err(|_| EnvelopeError::BadBase64)?;
        self.open(&der)
    }

    fn decrypt_content_key(
        &self,
        recipients: &[RecipientInfo<'_>],
        decrypt: KeyDecrypt,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut candidates = recipients
            .iter()
            .filter(|recipient| match &self.recipient {
                None => true,
                Some((issuer, serial)) => {
                    let names = &recipient.issuer_and_serial_number;
                    names.issuer.to_der().ok().as_deref() == Some(issuer.as_slice())
                        && names.serial_number.to_der().ok().as_deref() == Some(serial.as_slice())
                }
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(EnvelopeError::NotForThisRecipient);
        }
        // Report the first failure if no candidate opens: with a certificate there is
        // normally exactly one candidate, and its error is the meaningful one.
        let mut first_error = None;
        for recipient in candidates {
            let algorithm = recipient.key_encryption_algorithm.oid;
            let result =
                if algorithm == oid::SM2_ENCRYPTION || algorithm == oid::SM2_ENCRYPTION_GMSSL {
                    decrypt(&self.decryptor, recipient.encrypted_key.as_bytes()).map_err(|err| {
                        match err {
                            Sm2CipherError::DecryptionFailed => EnvelopeError::KeyDecryptionFailed,
                            other => EnvelopeError::MalformedEncryptedKey(other.to_string()),
                        }
                    })
                } else {
                    Err(EnvelopeError::UnsupportedAlgorithm {
                        role: "key-encryption",
                        found: algorithm,
                    })
                };
            match result {
                Ok(key) => return Ok(key),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or(EnvelopeError::NotForThisRecipient))
    }
}

/// Unwraps a PEM envelope (`-----BEGIN CMS-----` as GmSSL writes, or `PKCS7`) into DER.
pub fn der_from_pem(pem: &str) -> Result<Vec<u8>, EnvelopeError> {
    let (label, der) = der::pem::decode_vec(pem.as_bytes())
        .map_err(|err| EnvelopeError::Malformed(format!("not PEM: {err}")))?;
    match label {
        "CMS" | "PKCS7" => Ok(der),
        other => Err(EnvelopeError::Malformed(format!(
            "PEM label {other:?} is not CMS or PKCS7"
        ))),
    }
}

/// Opens a DER envelope with the platform secret key, trying every RecipientInfo.
pub fn open(der: &[u8], platform_secret_key: &SecretKey) -> Result<Vec<u8>, EnvelopeError> {
    EnvelopeOpener::new(platform_secret_key).open(der)
}

/// Seals `plaintext` for the holder of `recipient` (its public key encrypts the content key,
/// its issuer and serial number address the envelope). Returns the DER ContentInfo.
///
/// Writes keyEncryptionAlgorithm 1.2.156.10197.1.301.3 without parameters.
pub fn seal<R: CryptoRng>(
    plaintext: &[u8],
    recipient: &Certificate,
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    let seal_error = |err: &dyn std::fmt::Display| EnvelopeError::Seal(err.to_string());
    let mut content_key = [0u8; SM4_KEY_LEN];
    let mut iv = [0u8; SM4_IV_LEN];
    rng.fill_bytes(&mut content_key);
    rng.fill_bytes(&mut iv);

    let encrypted_key = sm2enc::encrypt_der(recipient.public_key(), &content_key, rng)
        .map_err(|err| seal_error(&err))?;
    let encrypted_content = Sm4CbcEncryptor::new_from_slices(&content_key, &iv)
        .map_err(|err| seal_error(&err))?
        .encrypt_padded_vec::<Pkcs7>(plaintext);

    let recipient_info = RecipientInfo {
        version: GMT0010_VERSION,
        issuer_and_serial_number: IssuerAndSerialNumber {
            issuer: AnyRef::from_der(recipient.issuer_der()).map_err(|err| seal_error(&err))?,
            serial_number: AnyRef::from_der(recipient.serial_number_der())
                .map_err(|err| seal_error(&err))?,
        },
        key_encryption_algorithm: AlgorithmIdentifierRef {
            oid: oid::SM2_ENCRYPTION,
            parameters: None,
        },
        encrypted_key: OctetStringRef::new(&encrypted_key).map_err(|err| seal_error(&err))?,
    }
    .to_der()
    .map_err(|err| seal_error(&err))?;

    let enveloped_data = EnvelopedData {
        version: GMT0010_VERSION,
        recipient_infos: AnyRef::new(Tag::Set, &recipient_info).map_err(|err| seal_error(&err))?,
        encrypted_content_info: EncryptedContentInfo {
            content_type: oid::GMT0010_DATA,
            content_encryption_algorithm: AlgorithmIdentifierRef {
                oid: oid::SM4_CBC,
                parameters: Some(
                    AnyRef::new(Tag::OctetString, &iv).map_err(|err| seal_error(&err))?,
                ),
            },
            encrypted_content: Some(
                OctetStringRef::new(&encrypted_content).map_err(|err| seal_error(&err))?,
            ),
        },
    }
    .to_der()
    .map_err(|err| seal_error(&err))?;

    ContentInfo {
        content_type: oid::GMT0010_ENVELOPED_DATA,
        content: AnyRef::from_der(&enveloped_data).map_err(|err| seal_error(&err))?,
    }
    .to_der()
    .map_err(|err| seal_error(&err))
}

/// One RecipientInfo of a parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecipient {
    /// The issuer `Name` as DER.
    pub issuer_der: Vec<u8>,
    /// The serial number as a complete DER INTEGER.
    pub serial_number_der: Vec<u8>,
    /// keyEncryptionAlgorithm.
    pub key_encryption_algorithm: ObjectIdentifier,
    /// encryptedKey: the DER SM2Cipher of the content key.
    pub encrypted_key: Vec<u8>,
}

/// The parts of an envelope, without decrypting anything (diagnostics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEnvelope {
    /// The RecipientInfos in encoded order.
    pub recipients: Vec<ParsedRecipient>,
    /// contentEncryptionAlgorithm.
    pub content_encryption_algorithm: ObjectIdentifier,
    /// The algorithm parameter as DER (for SM4-CBC an OCTET STRING holding the IV), if any.
    pub content_encryption_parameters_der: Option<Vec<u8>>,
    /// encryptedContent, if present.
    pub encrypted_content: Option<Vec<u8>>,
}

/// Parses an envelope's structure (content types and versions checked, nothing decrypted).
pub fn parse(der: &[u8]) -> Result<ParsedEnvelope, EnvelopeError> {
    let view = decode_view(der)?;
    let recipients = view
        .recipients
        .iter()
        .map(|recipient| {
            Ok(ParsedRecipient {
                issuer_der: recipient.issuer_and_serial_number.issuer.to_der()?,
                serial_number_der: recipient.issuer_and_serial_number.serial_number.to_der()?,
                key_encryption_algorithm: recipient.key_encryption_algorithm.oid,
                encrypted_key: recipient.encrypted_key.as_bytes().to_vec(),
            })
        })
        .collect::<Result<Vec<_>, der::Error>>()?;
    let algorithm = &view.content.content_encryption_algorithm;
    Ok(ParsedEnvelope {
        recipients,
        content_encryption_algorithm: algorithm.oid,
        content_encryption_parameters_der: algorithm
            .parameters
            .map(|parameters| parameters.to_der())
            .transpose()?,
        encrypted_content: view
            .content
            .encrypted_content
            .map(|content| content.as_bytes().to_vec()),
    })
}
