//! Each mstype's business data (`bdata`, SPEC §5.1), read into the use case's report as its
//! handler reads it. Input: the mstype, a newline, then the decoded bdata bytes.
#![no_main]

use std::sync::LazyLock;

use custody_api::wire::fuzzing::parse_bdata;
use custody_api::ErrorCode;
use custody_protocol::EnvelopeOpener;
use libfuzzer_sys::fuzz_target;

static OPENER: LazyLock<EnvelopeOpener> = LazyLock::new(custody_fuzz::platform_opener);

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(mstype) = std::str::from_utf8(&data[..newline]) else {
        return;
    };
    if let Err(error) = parse_bdata(mstype, &data[newline + 1..], &OPENER) {
        // Outside bytes are refused with a field's code, never as a fault of the service.
        assert_ne!(error.code, ErrorCode::Internal, "{error:?}");
    }
});
