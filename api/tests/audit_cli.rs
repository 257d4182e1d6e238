//! `custody audit verify --bundle FILE --key FILE` exits 0 only when the bundle verifies.

use std::process::Command;

use custody_audit::bundle::{Bundle, BundleEvent, BundleLeaf, BUNDLE_FORMAT};
use custody_audit::chain::{GENESIS_HASH, PREVIOUS_HASH};
use custody_audit::{merkle, Checkpoint};
use custody_protocol::keys::{generate_secret_key, public_key_to_spki_pem};
use custody_protocol::Sm2Signer;

fn one_event_bundle(signer: &Sm2Signer) -> Bundle {
    let event = BundleEvent {
        aggregate_type: "Document".into(),
        aggregate_id: "d1".into(),
        sequence: 1,
        event_type: "Noted".into(),
        event_version: "1".into(),
        payload: serde_json::json!({"n": 1}),
        metadata: serde_json::json!({ PREVIOUS_HASH: GENESIS_HASH }),
        global_position: 1,
        tx_id: 1,
    };
    let leaf = event.leaf();
    let checkpoint = Checkpoint {
        tree_size: 1,
        root_hash: merkle::root(&[leaf]),
        timestamp: "2026-12-01T00:00:00.000Z".into(),
    };
    Bundle {
        format: BUNDLE_FORMAT.into(),
        public_key_pem: String::new(),
        checkpoints: vec![checkpoint.sign(signer).expect("sign")],
        consistency: vec![],
        resealed: vec![],
        leaves: vec![BundleLeaf {
            tree_index: 0,
            aggregate_type: "Document".into(),
            aggregate_id: "d1".into(),
            sequence: 1,
            global_position: 1,
            leaf_hash: hex::encode(leaf),
        }],
        events: vec![event],
    }
}

fn verify(args: &[&std::path::Path]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custody"));
    command.args(["audit", "verify"]);
    if let [bundle, rest @ ..] = args {
        command.arg("--bundle").arg(bundle);
        if let [key] = rest {
            command.arg("--key").arg(key);
        }
    }
    command
        .env_remove("CUSTODY_OPS_TOKEN")
        .output()
        .expect("run custody")
}

#[test]
fn the_exit_code_says_whether_the_bundle_verifies() {
    let secret = generate_secret_key(&mut rand::rng());
    let signer = Sm2Signer::new(&secret);
    let dir = tempfile::tempdir().expect("temporary directory");
    let (bundle_file, key_file) = (dir.path().join("b.jsonl"), dir.path().join("k.pem"));
    std::fs::write(
        &key_file,
        public_key_to_spki_pem(&secret.public_key()).expect("pem"),
    )
    .expect("write key");
    let mut bundle = one_event_bundle(&signer);
    std::fs::write(&bundle_file, bundle.to_lines()).expect("write");
    let ok = verify(&[&bundle_file, &key_file]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    bundle.events[0].payload = serde_json::json!({"n": 2});
    std::fs::write(&bundle_file, bundle.to_lines()).expect("write");
    let altered = verify(&[&bundle_file, &key_file]);
    assert_eq!(altered.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&altered.stdout).expect("verdict");
    assert_eq!(verdict["first_broken"]["kind"], "altered", "{verdict}");
    assert_eq!(verdict["first_broken"]["aggregate_id"], "d1");

    // --bundle without --key is refused.
    assert!(!verify(&[&bundle_file]).status.success());
}
