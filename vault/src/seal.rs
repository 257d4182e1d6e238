//! SM4-CBC + HMAC-SM3, encrypt-then-MAC.
//!
//! Layout of a sealed value: `version (1) || iv (16) || ciphertext (PKCS#7, 16·k) || tag (32)`,
//! where `tag = HMAC-SM3(mac_key, "custody-seal-v1" || len(aad) as u32 BE || aad || iv ||
//! ciphertext)`. The tag is checked (in constant time) before anything is decrypted.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::VaultError;

type Sm4CbcEncryptor = cbc::Encryptor<sm4::Sm4>;
type Sm4CbcDecryptor = cbc::Decryptor<sm4::Sm4>;
type HmacSm3 = Hmac<sm3::Sm3>;

const VERSION: u8 = 1;
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
const DOMAIN: &[u8] = b"custody-seal-v1";
const ENC_KEY_LEN: usize = 16;
const MAC_KEY_LEN: usize = 32;

/// At most this many bytes more than the plaintext: version, IV, a block of padding and the tag.
pub const SEALED_OVERHEAD_MAX: usize = 1 + IV_LEN + 16 + TAG_LEN;

/// A data key: an SM4 key and an HMAC-SM3 key, wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    enc: [u8; ENC_KEY_LEN],
    mac: [u8; MAC_KEY_LEN],
}

impl DataKey {
    pub const LEN: usize = ENC_KEY_LEN + MAC_KEY_LEN;

    pub fn generate() -> DataKey {
        let mut rng = rand::rng();
        let mut key = DataKey {
            enc: [0; ENC_KEY_LEN],
            mac: [0; MAC_KEY_LEN],
        };
        rng.fill_bytes(&mut key.enc);
        rng.fill_bytes(&mut key.mac);
        key
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<DataKey, VaultError> {
        if bytes.len() != Self::LEN {
            return Err(VaultError::Malformed("a data key is 48 bytes"));
        }
        let mut key = DataKey {
            enc: [0; ENC_KEY_LEN],
            mac: [0; MAC_KEY_LEN],
        };
        key.enc.copy_from_slice(&bytes[..ENC_KEY_LEN]);
        key.mac.copy_from_slice(&bytes[ENC_KEY_LEN..]);
        Ok(key)
    }

    /// The key's bytes (SM4 key, then HMAC key), wiped when the returned value is dropped.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(Self::LEN));
        bytes.extend_from_slice(&self.enc);
        bytes.extend_from_slice(&self.mac);
        bytes
    }

    fn tag(&self, aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> HmacSm3 {
        let mut mac = <HmacSm3 as KeyInit>::new_from_slice(&self.mac)
            .expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        mac.update(&u32::try_from(aad.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(aad);
        mac.update(iv);
        mac.update(ciphertext);
        mac
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Seals `plaintext` under `key`, bound to `aad` (where the value is kept: a value moved to
/// another event or field no longer opens).
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut iv = [0u8; IV_LEN];
    rand::rng().fill_bytes(&mut iv);
    let ciphertext = Sm4CbcEncryptor::new_from_slices(&key.enc, &iv)
        .expect("SM4 key and IV have fixed lengths")
        .encrypt_padded_vec::<Pkcs7>(plaintext);
    let tag = key.tag(aad, &iv, &ciphertext).finalize().into_bytes();
    let mut sealed = Vec::with_capacity(1 + IV_LEN + ciphertext.len() + TAG_LEN);
    sealed.push(VERSION);
    sealed.extend_from_slice(&iv);
    sealed.extend_from_slice(&ciphertext);
    sealed.extend_from_slice(&tag);
    sealed
}

/// Opens what [`seal`] made with the same key and associated data.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < 1 + IV_LEN + 16 + TAG_LEN {
        return Err(VaultError::Malformed("too short"));
    }
    if sealed[0] != VERSION {
        return Err(VaultError::Malformed("unknown version"));
    }
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let (iv, ciphertext) = body[1..].split_at(IV_LEN);
    if ciphertext.len() % 16 != 0 {
        return Err(VaultError::Malformed("ciphertext is not whole blocks"));
    }
    key.tag(aad, iv, ciphertext)
        .verify_slice(tag)
        .map_err(|_| VaultError::Unauthentic)?;
    Sm4CbcDecryptor::new_from_slices(&key.enc, iv)
        .expect("SM4 key and IV have fixed lengths")
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        // Authentic but badly padded: sealed by something else under this key.
        .map_err(|_| VaultError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_place() {
        let key = DataKey::generate();
        let sealed = seal(&key, b"Document/abc/Deposited/record", b"E12345678");
        assert_eq!(
            open(&key, b"Document/abc/Deposited/record", &sealed).expect("opens"),
            b"E12345678"
        );
        assert!(matches!(
            open(&key, b"Document/abd/Deposited/record", &sealed),
            Err(VaultError::Unauthentic)
        ));
        assert!(matches!(
            open(
                &DataKey::generate(),
                b"Document/abc/Deposited/record",
                &sealed
            ),
            Err(VaultError::Unauthentic)
        ));
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert!(open(&key, b"Document/abc/Deposited/record", &altered).is_err());
        }
        assert!(!sealed.windows(9).any(|w| w == b"E12345678"));
    }

    #[test]
    fn a_key_survives_its_bytes() {
        let key = DataKey::generate();
        let again = DataKey::from_bytes(&key.to_bytes()).expect("48 bytes");
        let sealed = seal(&key, b"", b"x");
        assert_eq!(open(&again, b"", &sealed).expect("opens"), b"x");
        assert!(DataKey::from_bytes(&[0; 47]).is_err());
    }

    /// An independent implementation opens what we seal: OpenSSL's SM4-CBC and HMAC-SM3.
    #[test]
    fn openssl_recomputes_the_tag_and_decrypts() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("openssl is not installed; the interop check is skipped");
            return;
        }
        let key = DataKey::generate();
        let bytes = key.to_bytes();
        let (enc, mac) = bytes.split_at(ENC_KEY_LEN);
        let aad = b"Person/77/FilingSubmitted/details";
        let plaintext = "{\"name\":\"张三\",\"citizen_id\":\"11010519491231002X\"}".as_bytes();
        let sealed = seal(&key, aad, plaintext);
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let (iv, ciphertext) = body[1..].split_at(IV_LEN);
        let dir = tempfile::tempdir().expect("tempdir");
        let ct_path = dir.path().join("ct");
        std::fs::write(&ct_path, ciphertext).expect("write");
        let decrypted = std::process::Command::new("openssl")
            .args(["enc", "-d", "-sm4-cbc", "-K", &hex::encode(enc), "-iv"])
            .arg(hex::encode(iv))
            .arg("-in")
            .arg(&ct_path)
            .output()
            .expect("openssl enc");
        assert!(decrypted.status.success(), "{decrypted:?}");
        assert_eq!(decrypted.stdout, plaintext);

        let mut mac_input = DOMAIN.to_vec();
        mac_input.extend_from_slice(&(aad.len() as u32).to_be_bytes());
        mac_input.extend_from_slice(aad);
        mac_input.extend_from_slice(iv);
        mac_input.extend_from_slice(ciphertext);
        let mac_path = dir.path().join("mac-input");
        std::fs::write(&mac_path, &mac_input).expect("write");
        let digest = std::process::Command::new("openssl")
            .args(["dgst", "-sm3", "-mac", "HMAC", "-macopt"])
            .arg(format!("hexkey:{}", hex::encode(mac)))
            .arg("-r")
            .arg(&mac_path)
            .output()
            .expect("openssl dgst");
        assert!(digest.status.success(), "{digest:?}");
        let printed = String::from_utf8_lossy(&digest.stdout);
        assert_eq!(
            printed.split_whitespace().next(),
            Some(hex::encode(tag).as_str())
        );
    }

    proptest! {
        #[test]
        fn every_plaintext_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..300),
                                       aad in proptest::collection::vec(any::<u8>(), 0..40)) {
            let key = DataKey::generate();
            let sealed = seal(&key, &aad, &plaintext);
            prop_assert!(sealed.len() <= plaintext.len() + SEALED_OVERHEAD_MAX);
            prop_assert_eq!(open(&key, &aad, &sealed).expect("opens"), plaintext);
        }
    }
}

/// A keyed blind index of a personal value (docs/personal-data.md, "Blind indexes"):
/// `HMAC-SM3(key's MAC half, "custody-index-v1" || len(field) u32 BE || field || value)`. Equal
/// values give equal indexes under one key, so a look-up by value needs no decryption; without
/// the key a guessed value cannot be checked against it, as it could against a plain hash.
pub fn blind_index(key: &DataKey, field: &str, value: &str) -> [u8; 32] {
    let mut mac =
        <HmacSm3 as KeyInit>::new_from_slice(&key.mac).expect("HMAC takes a key of any length");
    mac.update(INDEX_DOMAIN);
    mac.update(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
    mac.update(field.as_bytes());
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

const INDEX_DOMAIN: &[u8] = b"custody-index-v1";

#[cfg(test)]
mod index_tests {
    use super::*;

    #[test]
    fn an_index_depends_on_the_key_the_field_and_the_value() {
        let key = DataKey::generate();
        let other = DataKey::generate();
        let a = blind_index(&key, "gmsfhm", "11010519491231002X");
        assert_eq!(a, blind_index(&key, "gmsfhm", "11010519491231002X"));
        assert_ne!(a, blind_index(&other, "gmsfhm", "11010519491231002X"));
        assert_ne!(a, blind_index(&key, "zjhm", "11010519491231002X"));
        assert_ne!(a, blind_index(&key, "gmsfhm", "110105194912310029"));
    }

    /// `openssl dgst -sm3 -mac HMAC` recomputes an index from the key's MAC half.
    #[test]
    fn openssl_recomputes_an_index() {
        let key = DataKey::generate();
        let bytes = key.to_bytes();
        let mac_key = hex::encode(&bytes[16..]);
        let mut input = INDEX_DOMAIN.to_vec();
        input.extend_from_slice(&6u32.to_be_bytes());
        input.extend_from_slice(b"gmsfhm");
        input.extend_from_slice("11010519491231002X".as_bytes());
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("input");
        std::fs::write(&path, &input).expect("write");
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sm3", "-mac", "HMAC", "-macopt"])
            .arg(format!("hexkey:{mac_key}"))
            .arg(&path)
            .output()
            .expect("openssl");
        let printed = String::from_utf8_lossy(&out.stdout);
        let expected = hex::encode(blind_index(&key, "gmsfhm", "11010519491231002X"));
        assert!(printed.trim_end().ends_with(&expected), "{printed}");
    }
}
