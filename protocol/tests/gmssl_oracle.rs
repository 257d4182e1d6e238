//! Optional oracle: the pure-Python `gmssl` package (PyPI) as an independent SM2/SM4
//! implementation. Skipped (note on stderr) when `python3` or the module is missing.
//!
//! gmssl quirks handled here: public keys as 128 hex chars X‖Y without `04`; `mode=1` for
//! C1C3C2 (and no `04` before C1); no DER for ciphertexts (the script converts with
//! pycryptodomex's DER classes); its `decrypt` never checks C3.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use custody_protocol::envelope;
use custody_protocol::sm2enc;
use custody_protocol::sm2sig::{Sm2Signer, Sm2Verifier};
use custody_protocol::VerifyTables;
use custody_protocol::{PublicKey, SecretKey};
use sm2::elliptic_curve::sec1::ToSec1Point;

const ORACLE: &str = r#"
import sys, json
from gmssl import sm2, sm4
from Cryptodome.Util.asn1 import DerSequence, DerInteger, DerOctetString

req = json.load(sys.stdin)
op = req["op"]
def crypt(mode=1, asn1=True):
    return sm2.CryptSM2(private_key=req.get("private", ""), public_key=req["public"], mode=mode, asn1=asn1)
if op == "sign":
    out = crypt().sign_with_sm3(bytes.fromhex(req["message"]))
elif op == "verify":
    out = bool(crypt().verify_with_sm3(req["signature"], bytes.fromhex(req["message"])))
elif op == "encrypt":
    raw = crypt().encrypt(bytes.fromhex(req["message"]))  # x||y||C3||C2
    x, y, c3, c2 = raw[0:32], raw[32:64], raw[64:96], raw[96:]
    out = DerSequence([DerInteger(int.from_bytes(x, "big")), DerInteger(int.from_bytes(y, "big")),
                       DerOctetString(c3), DerOctetString(c2)]).encode().hex()
elif op == "decrypt":
    seq = DerSequence().decode(bytes.fromhex(req["ciphertext"]))
    x, y = seq[0], seq[1]
    c3 = DerOctetString().decode(seq[2]).payload
    c2 = DerOctetString().decode(seq[3]).payload
    raw = x.to_bytes(32, "big") + y.to_bytes(32, "big") + c3 + c2
    out = crypt().decrypt(raw).hex()
elif op == "sm4_cbc_decrypt":
    c = sm4.CryptSM4()
    c.set_key(bytes.fromhex(req["key"]), sm4.SM4_DECRYPT)
    out = c.crypt_cbc(bytes.fromhex(req["iv"]), bytes.fromhex(req["ciphertext"])).hex()
json.dump({"out": out}, sys.stdout)
"#;

fn oracle_available() -> bool {
    Command::new("python3")
        .args(["-c", "import gmssl, Cryptodome"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

macro_rules! require_oracle {
    () => {
        if !oracle_available() {
            eprintln!("skipping: python3 with gmssl and pycryptodomex not available");
            return;
        }
    };
}

fn oracle(request: serde_json::Value) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    reply["out"].clone()
}

/// X‖Y as 128 hex characters, as gmssl wants it.
fn gmssl_public(public_key: &PublicKey) -> String {
    let point = public_key.to_sec1_point(false);
    let hex_point = hex(point.as_bytes());
    let xy = hex_point[2..].to_string();
    // gmssl's `lstrip("04")` would corrupt a key whose X starts with hex `04`.
    assert!(
        !xy.starts_with("04"),
        "pick a key whose X does not start with 04"
    );
    xy
}

fn gmssl_private(secret_key: &SecretKey) -> String {
    hex(&secret_key.to_bytes())
}

#[test]
fn gmssl_signature_verifies_in_rust_and_back() {
    require_oracle!();
    let secret = cabinet_secret_key();
    let public = secret.public_key();
    let message = b"1\nsjsb-xt\nabc\n1795401005000\nXJH-Q2555061\ne30=";
    let signature = oracle(serde_json::json!({
        "op": "sign", "private": gmssl_private(&secret), "public": gmssl_public(&public),
        "message": hex(message),
    }));
    let signature = unhex(signature.as_str().unwrap());
    Sm2Verifier::new(&public)
        .verify(message, &signature)
        .unwrap();
    let tables = VerifyTables::default();
    for _ in 0..3 {
        tables
            .verify(&Sm2Verifier::new(&public), message, &signature)
            .unwrap();
    }
    assert_eq!(
        tables.len(),
        1,
        "GmSSL's signature verified through the key's table"
    );

    let ours = Sm2Signer::new(&secret).sign(message).unwrap();
    let verdict = oracle(serde_json::json!({
        "op": "verify", "public": gmssl_public(&public), "message": hex(message),
        "signature": hex(&ours),
    }));
    assert_eq!(verdict, serde_json::json!(true));
    let verdict = oracle(serde_json::json!({
        "op": "verify", "public": gmssl_public(&public), "message": hex(b"other"),
        "signature": hex(&ours),
    }));
    assert_eq!(verdict, serde_json::json!(false));
}

#[test]
fn gmssl_ciphertexts_decrypt_in_rust_and_back() {
    require_oracle!();
    let secret = platform_secret_key();
    let public = secret.public_key();
    let mut rng = rand::rng();
    for round in 0..3u8 {
        let content_key: Vec<u8> = (0..16u8).map(|b| b ^ (round * 37)).collect();
        let theirs = oracle(serde_json::json!({
            "op": "encrypt", "public": gmssl_public(&public), "message": hex(&content_key),
        }));
        let theirs = unhex(theirs.as_str().unwrap());
        assert_eq!(sm2enc::decrypt_der(&secret, &theirs).unwrap(), content_key);

        let ours = sm2enc::encrypt_der(&public, &content_key, &mut rng).unwrap();
        let plain = oracle(serde_json::json!({
            "op": "decrypt", "private": gmssl_private(&secret), "public": gmssl_public(&public),
            "ciphertext": hex(&ours),
        }));
        assert_eq!(unhex(plain.as_str().unwrap()), content_key);
    }
}

#[test]
fn gmssl_decrypts_content_of_both_envelope_kinds() {
    require_oracle!();
    let secret = platform_secret_key();
    let mut rng = rand::rng();
    let record = fixture_bytes("record-2.bin");
    for der in [
        fixture_bytes("envelope-1.der"),
        envelope::seal(&record, &platform_certificate(), &mut rng).unwrap(),
    ] {
        let parsed = envelope::parse(&der).unwrap();
        let key = sm2enc::decrypt_der(&secret, &parsed.recipients[0].encrypted_key).unwrap();
        let iv_der = parsed.content_encryption_parameters_der.unwrap();
        let plain = oracle(serde_json::json!({
            "op": "sm4_cbc_decrypt", "key": hex(&key), "iv": hex(&iv_der[2..]),
            "ciphertext": hex(&parsed.encrypted_content.unwrap()),
        }));
        assert_eq!(
            unhex(plain.as_str().unwrap()),
            envelope::open(&der, &secret).unwrap()
        );
    }
}
