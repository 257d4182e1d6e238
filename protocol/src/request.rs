//! The JSON request envelope of SPEC.md §5 and its signatures.
//!
//! ```json
//! {"version": "1", "mstype": "sjsb-zjcq",
//!  "c": {"coding": "b64", "reqid": "…", "time": "1763865600000", "sid": "", "ai": "SM2",
//!        "ki": "", "ei": "sender key id"},
//!  "s": {"env": "", "sig": "base64 DER", "rsig": "base64 DER or empty"},
//!  "bdata": "base64 of the UTF-8 JSON business data"}
//! ```
//!
//! `sig` signs `version \n mstype \n reqid \n time \n ei \n bdata` (bdata as sent, i.e. the
//! base64 text); `rsig`, the forwarding gateway's signature, signs the same bytes followed by
//! `\n` and `sig`. Anti-replay and the time window are the server's business; this module only
//! exposes `reqid` and [`SignedRequest::time_millis`].

use base64::Engine;
use rand::Rng;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sm2sig::{SignatureError, Sm2Signer, Sm2Verifier};
use crate::verify_tables::VerifyTables;

/// The protocol version this crate writes.
pub const PROTOCOL_VERSION: &str = "1";
/// `c.coding`: business data as base64.
pub const CODING_BASE64: &str = "b64";
/// `c.ai`: the signature algorithm.
pub const ALGORITHM_SM2: &str = "SM2";

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a request could not be read, checked or signed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The body is not JSON of the request shape (missing field, field not a string, …).
    #[error("request body is not a well-formed request: {0}")]
    MalformedJson(String),
    /// A base64 field does not decode.
    #[error("{field} is not valid base64")]
    BadBase64 {
        /// `s.sig`, `s.rsig` or `bdata`.
        field: &'static str,
    },
    /// A signature field decodes but is not a DER SM2 signature.
    #[error("{field} is not a DER SM2 signature")]
    BadSignatureDer {
        /// `s.sig` or `s.rsig`.
        field: &'static str,
    },
    /// A signature is well-formed but does not verify against the key.
    #[error("{field} does not verify")]
    SignatureMismatch {
        /// `s.sig` or `s.rsig`.
        field: &'static str,
    },
    /// `s.rsig` is empty where a gateway signature was asked for.
    #[error("s.rsig is empty")]
    MissingGatewaySignature,
    /// `c.time` is not a decimal count of milliseconds.
    #[error("c.time {0:?} is not epoch milliseconds")]
    BadTime(String),
    /// The business data is not UTF-8 JSON (of the expected shape).
    #[error("business data is not the expected JSON: {0}")]
    BadBusinessData(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(SignatureError),
}

/// `c`: control fields. All strings on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestControl {
    /// Coding of `bdata`, `b64`.
    pub coding: String,
    /// Request id, 32 hex characters, unique per sender (anti-replay).
    pub reqid: String,
    /// Sending time, Unix epoch milliseconds as a decimal string.
    pub time: String,
    /// Session id; empty. Defaults to empty when absent.
    #[serde(default)]
    pub sid: String,
    /// Signature algorithm, `SM2`.
    pub ai: String,
    /// Key id; empty. Defaults to empty when absent.
    #[serde(default)]
    pub ki: String,
    /// Id of the sender's registered key (cabinet security module, UKey, adapter).
    pub ei: String,
}

/// `s`: signature fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSignatures {
    /// Reserved; empty. Defaults to empty when absent.
    #[serde(default)]
    pub env: String,
    /// Sender signature, base64 of DER.
    pub sig: String,
    /// Gateway signature, base64 of DER, or empty. Defaults to empty when absent.
    #[serde(default)]
    pub rsig: String,
}

/// A request as it travels (wire field names kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// Protocol version, `1`.
    pub version: String,
    /// Message type; must equal the URL path segment.
    pub mstype: String,
    /// Control fields.
    pub c: RequestControl,
    /// Signatures.
    pub s: RequestSignatures,
    /// Base64 of the UTF-8 JSON business data, exactly as signed.
    pub bdata: String,
}

/// What a sender supplies to make a signed request.
#[derive(Debug, Clone, Copy)]
pub struct NewRequest<'a> {
    /// Message type, e.g. `sjsb-zjcq`.
    pub mstype: &'a str,
    /// The business data as JSON text; sent base64-encoded byte for byte.
    pub business_data_json: &'a str,
    /// Id of the sender's key.
    pub ei: &'a str,
    /// Request id (see [`new_reqid`]).
    pub reqid: &'a str,
    /// Sending time, Unix epoch milliseconds.
    pub time_millis: i64,
}

impl SignedRequest {
    /// Parses a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestError> {
        serde_json::from_slice(body).map_err(|err| RequestError::MalformedJson(err.to_string()))
    }

    /// Serialises the request as JSON.
    pub fn to_json(&self) -> Result<String, RequestError> {
        serde_json::to_string(self).map_err(|err| RequestError::MalformedJson(err.to_string()))
    }

    /// The bytes `sig` signs: `version \n mstype \n reqid \n time \n ei \n bdata`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let parts = [
            self.version.as_str(),
            self.mstype.as_str(),
            self.c.reqid.as_str(),
            self.c.time.as_str(),
            self.c.ei.as_str(),
            self.bdata.as_str(),
        ];
        parts.join("\n").into_bytes()
    }

    /// The bytes `rsig` signs: the signed bytes, `\n`, then `sig` (its base64 text).
    pub fn gateway_signed_bytes(&self) -> Vec<u8> {
        let mut bytes = self.signed_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(self.s.sig.as_bytes());
        bytes
    }

    /// Checks `sig` against the sender's key.
    pub fn verify_sender(&self, sender: &Sm2Verifier) -> Result<(), RequestError> {
        let check = |message: &[u8], der: &[u8]| sender.verify(message, der);
        verify_field(check, &self.signed_bytes(), &self.s.sig, "s.sig")
    }

    /// [`Self::verify_sender`] through the key's table in `tables` (same answer, faster once
    /// the key is tabled).
    pub fn verify_sender_tabled(
        &self,
        sender: &Sm2Verifier,
        tables: &VerifyTables,
    ) -> Result<(), RequestError> {
        let check = |message: &[u8], der: &[u8]| tables.verify(sender, message, der);
        verify_field(check, &self.signed_bytes(), &self.s.sig, "s.sig")
    }

    /// Whether the request carries a gateway signature.
    pub fn has_gateway_signature(&self) -> bool {
        !self.s.rsig.is_empty()
    }

    /// Checks `rsig` against a gateway key; an empty `rsig` is
    /// [`RequestError::MissingGatewaySignature`].
    pub fn verify_gateway(&self, gateway: &Sm2Verifier) -> Result<(), RequestError> {
        let check = |message: &[u8], der: &[u8]| gateway.verify(message, der);
        self.verify_gateway_with(check)
    }

    /// [`Self::verify_gateway`] through the key's table in `tables`.
    pub fn verify_gateway_tabled(
        &self,
        gateway: &Sm2Verifier,
        tables: &VerifyTables,
    ) -> Result<(), RequestError> {
        let check = |message: &[u8], der: &[u8]| tables.verify(gateway, message, der);
        self.verify_gateway_with(check)
    }

    fn verify_gateway_with(
        &self,
        check: impl Fn(&[u8], &[u8]) -> Result<(), SignatureError>,
    ) -> Result<(), RequestError> {
        if !self.has_gateway_signature() {
            return Err(RequestError::MissingGatewaySignature);
        }
        verify_field(check, &self.gateway_signed_bytes(), &self.s.rsig, "s.rsig")
    }

    /// `c.time` as epoch milliseconds.
    pub fn time_millis(&self) -> Result<i64, RequestError> {
        let time = &self.c.time;
        // Digits only: `str::parse` would also take a sign.
        if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RequestError::BadTime(time.clone()));
        }
        time.parse::<i64>()
            .map_err(|_| RequestError::BadTime(time.clone()))
    }

    /// The decoded business data bytes (UTF-8 JSON by the protocol, not checked here).
    pub fn business_data_bytes(&self) -> Result<Vec<u8>, RequestError> {
        BASE64
            .decode(&self.bdata)
            .map_err(|_| RequestError::BadBase64 { field: "bdata" })
    }

    /// The business data deserialised as `T`.
    pub fn business_data<T: DeserializeOwned>(&self) -> Result<T, RequestError> {
        let bytes = self.business_data_bytes()?;
        serde_json::from_slice(&bytes).map_err(|err| RequestError::BadBusinessData(err.to_string()))
    }

    /// Builds and signs a complete request (`rsig` empty).
    pub fn sign(new: &NewRequest<'_>, sender: &Sm2Signer) -> Result<Self, RequestError> {
        // Refuse what the receiver would refuse, so a simulator cannot send garbage by mistake.
        serde_json::from_str::<IgnoredAny>(new.business_data_json)
            .map_err(|err| RequestError::BadBusinessData(err.to_string()))?;
        let mut request = SignedRequest {
            version: PROTOCOL_VERSION.to_owned(),
            mstype: new.mstype.to_owned(),
            c: RequestControl {
                coding: CODING_BASE64.to_owned(),
                reqid: new.reqid.to_owned(),
                time: new.time_millis.to_string(),
                sid: String::new(),
                ai: ALGORITHM_SM2.to_owned(),
                ki: String::new(),
                ei: new.ei.to_owned(),
            },
            s: RequestSignatures {
                env: String::new(),
                sig: String::new(),
                rsig: String::new(),
            },
            bdata: BASE64.encode(new.business_data_json.as_bytes()),
        };
        let signature = sender
            .sign(&request.signed_bytes())
            .map_err(RequestError::Signing)?;
        request.s.sig = BASE64.encode(signature);
        Ok(request)
    }

    /// Adds (or replaces) the gateway signature `rsig` over the current `sig`.
    pub fn add_gateway_signature(&mut self, gateway: &Sm2Signer) -> Result<(), RequestError> {
        let signature = gateway
            .sign(&self.gateway_signed_bytes())
            .map_err(RequestError::Signing)?;
        self.s.rsig = BASE64.encode(signature);
        Ok(())
    }
}

fn verify_field(
    check: impl Fn(&[u8], &[u8]) -> Result<(), SignatureError>,
    message: &[u8],
    base64_signature: &str,
    field: &'static str,
) -> Result<(), RequestError> {
    let der = BASE64
        .decode(base64_signature)
        .map_err(|_| RequestError::BadBase64 { field })?;
    check(message, &der).map_err(|err| match err {
        SignatureError::BadDer => RequestError::BadSignatureDer { field },
        _ => RequestError::SignatureMismatch { field },
    })
}

/// A fresh request id: 32 lowercase hex characters from 16 random bytes.
pub fn new_reqid<R: Rng + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
