//! The signed request JSON (SPEC §5), as `POST /yth_g1xt/api/v1/{mstype}` reads it: parse, then
//! everything the ingress derives from it before any state is consulted.
#![no_main]

use std::sync::LazyLock;

use custody_protocol::{SignedRequest, Sm2Verifier};
use libfuzzer_sys::fuzz_target;

static SENDER: LazyLock<Sm2Verifier> = LazyLock::new(custody_fuzz::cabinet_verifier);

fuzz_target!(|data: &[u8]| {
    let Ok(request) = SignedRequest::from_json(data) else {
        return;
    };
    // What this crate writes must read back as the same request.
    let json = request.to_json().expect("a parsed request serialises");
    let again = SignedRequest::from_json(json.as_bytes()).expect("its own JSON parses");
    assert_eq!(again, request);

    let signed = request.signed_bytes();
    assert!(request.gateway_signed_bytes().starts_with(&signed));
    if let Ok(millis) = request.time_millis() {
        assert!(millis >= 0, "digits only, so never negative");
    }
    let _ = request.business_data::<serde_json::Value>();
    // Base64 and DER of `sig` / `rsig` are outside bytes too; any verdict is fine, a panic not.
    let _ = request.verify_sender(&SENDER);
    let _ = request.verify_gateway(&SENDER);
});
