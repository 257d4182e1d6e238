//! The 137-byte fixed-width document record inside `zjdata`.
#![no_main]

use custody_protocol::DocumentRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = DocumentRecord::parse(data) {
        // Padding is only NUL after the value, so a parsed record lays out as exactly its input.
        let bytes = record.to_bytes().expect("a parsed record lays out");
        assert_eq!(&bytes[..], data);
    }
});
