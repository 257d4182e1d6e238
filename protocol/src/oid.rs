//! Object identifiers of the Chinese national cryptography standards used by the protocol.

use der::asn1::ObjectIdentifier;

/// SM2 curve (in SubjectPublicKeyInfo / PKCS#8 as the `id-ecPublicKey` parameter).
pub const SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
/// SM2 signature with SM3 (certificate signatures).
pub const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
/// SM2 public-key encryption (sm2encrypt); what this crate writes as keyEncryptionAlgorithm.
pub const SM2_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301.3");
/// SM2 key exchange arc, written by GmSSL's `cmsencrypt` as keyEncryptionAlgorithm; accepted.
pub const SM2_ENCRYPTION_GMSSL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.156.10197.1.301.2");
/// SM4 in CBC mode; parameter is the 16-byte IV as OCTET STRING.
pub const SM4_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.104.2");
/// GM/T 0010 `data` content type.
pub const GMT0010_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.1");
/// GM/T 0010 `envelopedData` content type.
pub const GMT0010_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.3");
