//! SM2 DER ciphertexts (GM/T 0009 `SM2Cipher`, the envelope's encryptedKey), decrypted with the
//! platform key.
#![no_main]

use std::sync::LazyLock;

use custody_protocol::sm2enc::{Sm2CipherError, Sm2Decryptor};
use libfuzzer_sys::fuzz_target;

static DECRYPTOR: LazyLock<Sm2Decryptor> =
    LazyLock::new(|| Sm2Decryptor::new(&custody_fuzz::platform_secret_key()));

fuzz_target!(|data: &[u8]| {
    match DECRYPTOR.decrypt_der(data) {
        // The C3 hash binds plaintext and key: only a real ciphertext (a seed) gets here.
        Ok(_) | Err(Sm2CipherError::Malformed(_)) | Err(Sm2CipherError::DecryptionFailed) => {}
        Err(other) => panic!("decryption gave an encryption error: {other}"),
    }
});
