//! Why a simulated cabinet could not build, sign or send something.

use custody_domain::identifiers::IdentifierError;
use custody_protocol::ceiling::CeilingError;
use custody_protocol::{EnvelopeError, KeyError, RecordError, RequestError};
use thiserror::Error;

/// Everything the simulator can fail on.
#[derive(Debug, Error)]
pub enum SimulateError {
    /// The platform certificate served by the platform (or given by a test) does not parse.
    #[error("the platform encryption certificate is unusable: {0}")]
    PlatformCertificate(#[source] KeyError),
    /// The cabinet's own key could not be encoded as PEM.
    #[error("cannot encode the cabinet's public key: {0}")]
    CabinetKey(#[source] KeyError),
    /// A document record does not fit the 137-byte layout.
    #[error("document record: {0}")]
    Record(#[from] RecordError),
    /// Sealing a record in a GM/T 0010 envelope failed.
    #[error("cannot seal the document record: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The crypto ceiling could not be measured.
    #[error("crypto ceiling: {0}")]
    Ceiling(#[from] CeilingError),
    /// Building or signing the request failed.
    #[error("cannot sign the request: {0}")]
    Request(#[from] RequestError),
    /// A generated or given identifier is not valid per SPEC §2.
    #[error("identifier: {0}")]
    Identifier(#[from] IdentifierError),
    /// A request time (epoch ms) chrono cannot represent.
    #[error("time {0} ms since the epoch is out of range")]
    TimeOutOfRange(i64),
    /// Business data could not be serialised (never expected for the simulator's own types).
    #[error("cannot serialise JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The HTTP exchange itself failed (connection refused, timeout, body cut short, ...).
    #[error("{call}: {}", with_causes(.source))]
    Http {
        /// What was being called, e.g. `POST http://127.0.0.1:8080/api/v1/ops/devices`.
        call: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered, but not with success.
    #[error("{call} answered HTTP {status}: {body}")]
    Refused {
        /// What was being called.
        call: String,
        /// HTTP status.
        status: u16,
        /// The body as text (truncated).
        body: String,
    },
    /// The service answered success with a body the simulator cannot use.
    #[error("{call} answered with an unexpected body: {reason}")]
    UnexpectedReply {
        /// What was being called.
        call: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A command-line option or configuration value is unusable.
    #[error("{0}")]
    Options(String),
}

/// An error and its causes on one line: reqwest's own message ("error sending request") hides
/// the useful part ("Connection refused") in its source chain.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    text
}
