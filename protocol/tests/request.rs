//! The request envelope: signing helpers, gateway signature, typed refusals.

mod common;

use base64::Engine;
use common::*;
use custody_protocol::request::{self, NewRequest, RequestError};
use custody_protocol::sm2sig::{Sm2Signer, Sm2Verifier};
use custody_protocol::{keys, SignedRequest};

fn heartbeat(signer: &Sm2Signer) -> SignedRequest {
    SignedRequest::sign(
        &NewRequest {
            mstype: "sjsb-xt",
            business_data_json: r#"{"sbxlh":"XJH-Q2555061","sbwd":"21.5","czsj":"20261123103005"}"#,
            ei: "XJH-Q2555061",
            reqid: "00112233445566778899aabbccddeeff",
            time_millis: 1_795_401_005_000,
        },
        signer,
    )
    .unwrap()
}

#[test]
fn signed_request_verifies_and_round_trips_json() {
    let signer = Sm2Signer::new(&cabinet_secret_key());
    let request = heartbeat(&signer);
    assert_eq!(request.version, "1");
    assert_eq!(request.c.coding, "b64");
    assert_eq!(request.c.ai, "SM2");
    assert_eq!(request.c.time, "1795401005000");
    assert!(request.s.rsig.is_empty());
    request
        .verify_sender(&Sm2Verifier::new(&cabinet_public_key()))
        .unwrap();

    let json = request.to_json().unwrap();
    let back = SignedRequest::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, request);
    back.verify_sender(&Sm2Verifier::new(&cabinet_public_key()))
        .unwrap();

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["coding", "reqid", "time", "sid", "ai", "ki", "ei"] {
        assert!(value["c"][key].is_string(), "c.{key}");
    }
    for key in ["env", "sig", "rsig"] {
        assert!(value["s"][key].is_string(), "s.{key}");
    }

    let data: serde_json::Value = request.business_data().unwrap();
    assert_eq!(data["sbxlh"], "XJH-Q2555061");
}

#[test]
fn signed_bytes_layout() {
    let signer = Sm2Signer::new(&cabinet_secret_key());
    let request = heartbeat(&signer);
    let expected = format!(
        "1\nsjsb-xt\n00112233445566778899aabbccddeeff\n1795401005000\nXJH-Q2555061\n{}",
        request.bdata
    );
    assert_eq!(request.signed_bytes(), expected.as_bytes());
    let gateway = format!("{expected}\n{}", request.s.sig);
    assert_eq!(request.gateway_signed_bytes(), gateway.as_bytes());
}

#[test]
fn gateway_signature() {
    let mut rng = rand::rng();
    let gateway_key = keys::generate_secret_key(&mut rng);
    let gateway = Sm2Signer::new(&gateway_key);
    let cabinet = Sm2Signer::new(&cabinet_secret_key());
    let mut request = heartbeat(&cabinet);
    assert_eq!(
        request.verify_gateway(&gateway.verifier()),
        Err(RequestError::MissingGatewaySignature)
    );
    request.add_gateway_signature(&gateway).unwrap();
    assert!(request.has_gateway_signature());
    request.verify_gateway(&gateway.verifier()).unwrap();
    request.verify_sender(&cabinet.verifier()).unwrap();
    // rsig from another key, or over a changed sig, fails.
    assert_eq!(
        request.verify_gateway(&cabinet.verifier()),
        Err(RequestError::SignatureMismatch { field: "s.rsig" })
    );
    let mut resigned = request.clone();
    resigned.c.reqid = "ffeeddccbbaa99887766554433221100".into();
    let fresh = SignedRequest::sign(
        &NewRequest {
            mstype: "sjsb-xt",
            business_data_json: "{}",
            ei: "XJH-Q2555061",
            reqid: "ffeeddccbbaa99887766554433221100",
            time_millis: 1,
        },
        &cabinet,
    )
    .unwrap();
    resigned.s.sig = fresh.s.sig;
    assert_eq!(
        resigned.verify_gateway(&gateway.verifier()),
        Err(RequestError::SignatureMismatch { field: "s.rsig" })
    );
}

#[test]
fn every_signed_field_is_covered() {
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    let original = heartbeat(&Sm2Signer::new(&cabinet_secret_key()));
    let mutations: [fn(&mut SignedRequest); 6] = [
        |r| r.version = "2".into(),
        |r| r.mstype = "sjsb-gj".into(),
        |r| r.c.reqid = "00112233445566778899aabbccddeef0".into(),
        |r| r.c.time = "1795401005001".into(),
        |r| r.c.ei = "XJH-Q2555062".into(),
        |r| r.bdata = base64::engine::general_purpose::STANDARD.encode("{}"),
    ];
    for mutate in mutations {
        let mut request = original.clone();
        mutate(&mut request);
        assert_eq!(
            request.verify_sender(&verifier),
            Err(RequestError::SignatureMismatch { field: "s.sig" })
        );
    }
    // Fields outside the signed bytes (c.sid, c.ki, s.env, c.coding, c.ai) do not matter.
    let mut request = original.clone();
    request.c.sid = "x".into();
    request.c.ki = "y".into();
    request.s.env = "z".into();
    request.verify_sender(&verifier).unwrap();
}

#[test]
fn signature_decoding_errors_are_distinct() {
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    let mut request = heartbeat(&Sm2Signer::new(&cabinet_secret_key()));
    request.s.sig = "***".into();
    assert_eq!(
        request.verify_sender(&verifier),
        Err(RequestError::BadBase64 { field: "s.sig" })
    );
    request.s.sig = base64::engine::general_purpose::STANDARD.encode(b"not der");
    assert_eq!(
        request.verify_sender(&verifier),
        Err(RequestError::BadSignatureDer { field: "s.sig" })
    );
    request.s.sig = String::new();
    assert_eq!(
        request.verify_sender(&verifier),
        Err(RequestError::BadSignatureDer { field: "s.sig" })
    );
    request.s.rsig = "%%".into();
    assert_eq!(
        request.verify_gateway(&verifier),
        Err(RequestError::BadBase64 { field: "s.rsig" })
    );
    request.bdata = "@@".into();
    assert_eq!(
        request.business_data_bytes(),
        Err(RequestError::BadBase64 { field: "bdata" })
    );
}

#[test]
fn malformed_bodies_are_refused() {
    let body = fixture_text("request-1.json");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();

    assert!(matches!(
        SignedRequest::from_json(b"{"),
        Err(RequestError::MalformedJson(_))
    ));
    assert!(matches!(
        SignedRequest::from_json(b"[]"),
        Err(RequestError::MalformedJson(_))
    ));

    let mut missing_reqid = value.clone();
    missing_reqid["c"].as_object_mut().unwrap().remove("reqid");
    assert!(matches!(
        SignedRequest::from_json(missing_reqid.to_string().as_bytes()),
        Err(RequestError::MalformedJson(_))
    ));

    let mut numeric_time = value.clone();
    numeric_time["c"]["time"] = serde_json::json!(1_795_401_005_000u64);
    assert!(matches!(
        SignedRequest::from_json(numeric_time.to_string().as_bytes()),
        Err(RequestError::MalformedJson(_))
    ));

    // Optional-looking fields may be absent and default to empty.
    let mut sparse = value.clone();
    sparse["c"].as_object_mut().unwrap().remove("sid");
    sparse["c"].as_object_mut().unwrap().remove("ki");
    sparse["s"].as_object_mut().unwrap().remove("env");
    sparse["s"].as_object_mut().unwrap().remove("rsig");
    let request = SignedRequest::from_json(sparse.to_string().as_bytes()).unwrap();
    assert!(request.s.rsig.is_empty());
    request
        .verify_sender(&Sm2Verifier::new(&cabinet_public_key()))
        .unwrap();
}

#[test]
fn time_must_be_decimal_milliseconds() {
    let mut request = heartbeat(&Sm2Signer::new(&cabinet_secret_key()));
    for bad in ["", "-1", "+1", "1.5", "abc", "99999999999999999999"] {
        request.c.time = bad.into();
        assert_eq!(
            request.time_millis(),
            Err(RequestError::BadTime(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn signing_refuses_non_json_business_data() {
    let result = SignedRequest::sign(
        &NewRequest {
            mstype: "sjsb-xt",
            business_data_json: "{not json",
            ei: "e",
            reqid: "r",
            time_millis: 0,
        },
        &Sm2Signer::new(&cabinet_secret_key()),
    );
    assert!(matches!(result, Err(RequestError::BadBusinessData(_))));
}

#[test]
fn reqids_are_32_hex_and_fresh() {
    let mut rng = rand::rng();
    let first = request::new_reqid(&mut rng);
    let second = request::new_reqid(&mut rng);
    assert_eq!(first.len(), 32);
    assert!(first
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_ne!(first, second);
}

#[test]
fn resigned_copy_of_request_1_verifies() {
    // What a server test does with request-1: re-sign with a fresh time and reqid.
    let original = SignedRequest::from_json(&fixture_bytes("request-1.json")).unwrap();
    let business_data = String::from_utf8(original.business_data_bytes().unwrap()).unwrap();
    let fresh = SignedRequest::sign(
        &NewRequest {
            mstype: &original.mstype,
            business_data_json: &business_data,
            ei: &original.c.ei,
            reqid: &request::new_reqid(&mut rand::rng()),
            time_millis: 1_900_000_000_000,
        },
        &Sm2Signer::new(&cabinet_secret_key()),
    )
    .unwrap();
    assert_eq!(fresh.bdata, original.bdata);
    fresh
        .verify_sender(&Sm2Verifier::new(&cabinet_public_key()))
        .unwrap();
}
