//! The leaf and node hashes against an independent SM3: `openssl dgst -sm3` over the same
//! bytes (docs/audit.md). Skipped, with a note on stderr, when openssl lacks SM3.

use std::io::Write;
use std::process::{Command, Stdio};

use custody_audit::merkle::{leaf_hash, node_hash};

fn openssl_sm3(bytes: &[u8]) -> Option<String> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sm3", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(bytes).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.split_whitespace().next()?.to_string())
}

#[test]
fn leaf_and_node_hashes_match_openssl_sm3() {
    let Some(empty) = openssl_sm3(b"") else {
        eprintln!("skipped: `openssl dgst -sm3` is not available");
        return;
    };
    assert_eq!(empty, hex::encode(custody_audit::merkle::empty_root()));
    let leaf = [0x5au8; 32];
    let mut input = vec![0x00];
    input.extend_from_slice(&leaf);
    let expected_leaf = openssl_sm3(&input).expect("openssl");
    assert_eq!(hex::encode(leaf_hash(&leaf)), expected_leaf);
    let (left, right) = (leaf_hash(&leaf), leaf_hash(b"other"));
    let mut input = vec![0x01];
    input.extend_from_slice(&left);
    input.extend_from_slice(&right);
    assert_eq!(
        hex::encode(node_hash(&left, &right)),
        openssl_sm3(&input).expect("openssl")
    );
}
