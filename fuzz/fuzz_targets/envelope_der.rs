//! The GM/T 0010 DER envelope (`zjdata`, `rydata`): its structure, and opening it with the
//! platform key as the service does (recipient check, SM2 key transport, SM4-CBC).
#![no_main]

use std::sync::LazyLock;

use custody_protocol::envelope::{self, der_from_pem};
use custody_protocol::EnvelopeOpener;
use libfuzzer_sys::fuzz_target;

static OPENER: LazyLock<EnvelopeOpener> = LazyLock::new(custody_fuzz::platform_opener);

fuzz_target!(|data: &[u8]| {
    let parsed = envelope::parse(data);
    let opened = OPENER.open(data);
    // Both read the same structure: what the structural parse refuses cannot be opened.
    if parsed.is_err() {
        assert!(opened.is_err(), "opened an envelope parse refuses");
    }
    if let Ok(plaintext) = &opened {
        // Opening needs one RecipientInfo for the platform and a whole SM4 ciphertext.
        let parsed = parsed.expect("checked above");
        assert!(!parsed.recipients.is_empty());
        let content = parsed.encrypted_content.expect("opened without content");
        assert!(plaintext.len() < content.len());
    }
    // The text forms the service and the tools accept.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = OPENER.open_base64(text);
        let _ = der_from_pem(text);
    }
});
