//! What the fuzz targets share: the published test keys of the fixtures (the CI layout puts
//! `shared/` beside the repository, as the protocol tests expect).

use custody_protocol::keys::{public_key_from_spki_pem, secret_key_from_pkcs8_pem};
use custody_protocol::{Certificate, EnvelopeOpener, SecretKey, Sm2Verifier};

const PLATFORM_KEY_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/platform-enc.key.pem"
));
const PLATFORM_CERT_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/platform-enc.cert.pem"
));
const CABINET_PUB_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/cabinet-XJH-Q2555061.pub.pem"
));

/// The platform's encryption key, which the fixture envelopes are sealed for.
pub fn platform_secret_key() -> SecretKey {
    secret_key_from_pkcs8_pem(PLATFORM_KEY_PEM).expect("fixture platform key")
}

/// An opener as the service builds it: the platform key with its certificate, so that the
/// recipient check runs too.
pub fn platform_opener() -> EnvelopeOpener {
    let certificate = Certificate::from_pem(PLATFORM_CERT_PEM).expect("fixture certificate");
    EnvelopeOpener::with_certificate(&platform_secret_key(), &certificate)
        .expect("fixture key and certificate match")
}

/// The fixture cabinet's verifier (request-1 is signed with its key).
pub fn cabinet_verifier() -> Sm2Verifier {
    Sm2Verifier::new(&public_key_from_spki_pem(CABINET_PUB_PEM).expect("fixture cabinet key"))
}
