//! SM2 DER signatures (`s.sig`, `s.rsig`, GM/T 0009 `SEQUENCE { r, s }`).
#![no_main]

use std::sync::LazyLock;

use custody_protocol::sm2sig::{der_signature_from_raw, raw_signature_from_der, SignatureError};
use custody_protocol::Sm2Verifier;
use libfuzzer_sys::fuzz_target;

static SENDER: LazyLock<Sm2Verifier> = LazyLock::new(custody_fuzz::cabinet_verifier);
/// What the fixture signature signs, so the seed verifies and mutations explore from there.
const MESSAGE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/request-1.signed-bytes.bin"
));

fuzz_target!(|data: &[u8]| {
    let verdict = SENDER.verify(MESSAGE, data);
    match raw_signature_from_der(data) {
        Ok(raw) => {
            // The parse is strict DER, so the encoding is canonical: re-encoding gives the input.
            let der = der_signature_from_raw(&raw).expect("a parsed r, s encodes");
            assert_eq!(der, data, "a second encoding of one signature was accepted");
            assert_ne!(verdict, Err(SignatureError::BadDer));
        }
        Err(err) => {
            assert_eq!(err, SignatureError::BadDer);
            assert_eq!(verdict, Err(SignatureError::BadDer));
        }
    }
    // The raw `r ‖ s` form some devices emit.
    if let Ok(der) = der_signature_from_raw(data) {
        assert_eq!(
            raw_signature_from_der(&der).as_ref().map(|r| &r[..]),
            Ok(data)
        );
    }
});
