//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared fixtures directory (CI clones the repo with `shared/` beside it).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

pub fn fixture_path(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name))
        .unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

pub fn platform_secret_key() -> custody_protocol::SecretKey {
    custody_protocol::keys::secret_key_from_pkcs8_pem(&fixture_text("platform-enc.key.pem"))
        .unwrap()
}

pub fn platform_certificate() -> custody_protocol::Certificate {
    custody_protocol::Certificate::from_pem(&fixture_text("platform-enc.cert.pem")).unwrap()
}

pub fn cabinet_secret_key() -> custody_protocol::SecretKey {
    custody_protocol::keys::secret_key_from_pkcs8_pem(&fixture_text("cabinet-XJH-Q2555061.key.pem"))
        .unwrap()
}

pub fn cabinet_public_key() -> custody_protocol::PublicKey {
    custody_protocol::keys::public_key_from_spki_pem(&fixture_text("cabinet-XJH-Q2555061.pub.pem"))
        .unwrap()
}

/// Whether an OpenSSL 3 `openssl` command is available (SM2 `-rawin` needs 3.x).
pub fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).starts_with("OpenSSL 3"),
        Err(_) => false,
    }
}

/// Runs `openssl` with `args`, panicking with its stderr when it fails.
pub fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `openssl` with `args` and returns whether it succeeded (no panic).
pub fn openssl_status(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The values of record-1.bin and record-2.bin as listed in the fixtures README.
pub fn record_1() -> custody_protocol::DocumentRecord {
    custody_protocol::DocumentRecord {
        document_type: "414".into(),
        document_number: "E12345678".into(),
        citizen_id_number: "11010519491231002X".into(),
        chinese_name: "张三".into(),
        latin_name: "ZHANG SAN".into(),
        birth_date: "19491231".into(),
        sex: "1".into(),
        expiry_date: "20320101".into(),
    }
}

pub fn record_2() -> custody_protocol::DocumentRecord {
    custody_protocol::DocumentRecord {
        document_type: "513".into(),
        document_number: "C98765432".into(),
        citizen_id_number: "33010619900101123X".into(),
        chinese_name: "欧阳娜娜".into(),
        latin_name: "OUYANG NANA".into(),
        birth_date: "19900101".into(),
        sex: "2".into(),
        expiry_date: "20291231".into(),
    }
}
