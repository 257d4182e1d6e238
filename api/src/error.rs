//! The wire error table: every refusal the service gives, its stable code and its HTTP status,
//! in one place. docs/protocol.md prints the same table, and a test compares the two.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use custody_application::ApplicationError;
use custody_commands::CommandError;
use custody_domain::DomainError;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal, $meaning:literal)),* $(,)?) => {
        /// A stable error code of the wire protocol and the HTTP APIs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            pub fn status(self) -> StatusCode {
                let status = match self { $(ErrorCode::$variant => $status),* };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// What the code means, as docs/protocol.md says it.
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning),* }
            }
        }
    };
}

error_codes! {
    Malformed => ("E_MALFORMED", 400, "the body, the envelope or bdata is not valid JSON, base64, or the message's fields are missing or of the wrong type"),
    MstypeMismatch => ("E_MSTYPE_MISMATCH", 400, "mstype in the body differs from the path"),
    UnsupportedMstype => ("E_UNSUPPORTED_MSTYPE", 400, "a message type this service does not take"),
    BadEnvelope => ("E_BAD_ENVELOPE", 400, "zjdata or rydata is not a GM/T 0010 envelope the platform can open (DER, algorithm, padding)"),
    EnvelopeRecipient => ("E_ENVELOPE_RECIPIENT", 400, "zjdata or rydata is addressed to another recipient, or its key does not decrypt with the platform key"),
    BadRecord => ("E_BAD_RECORD", 400, "the 137-byte document record inside zjdata, or the JSON inside rydata, is malformed"),
    BadSignature => ("E_BAD_SIGNATURE", 401, "sig is not a valid SM2 signature of the sender over the signed bytes"),
    BadGatewaySignature => ("E_BAD_GATEWAY_SIGNATURE", 401, "rsig does not verify against a registered gateway, or is required and absent"),
    SenderUnknown => ("E_SENDER_UNKNOWN", 401, "c.ei names no registered sender of the kind this message needs"),
    DeviceUnknown => ("E_DEVICE_UNKNOWN", 401, "c.ei names no enrolled cabinet"),
    DeviceDisabled => ("E_DEVICE_DISABLED", 401, "the cabinet was disabled by an operator"),
    Unauthorized => ("E_UNAUTHORIZED", 401, "no bearer token, or an unknown or revoked one"),
    Forbidden => ("E_FORBIDDEN", 403, "the token's role may not make this call"),
    NotCustodian => ("E_NOT_CUSTODIAN", 403, "the sender may not act on this document or person: it lies in another cabinet, or another unit holds or filed it (docs/custody.md)"),
    NotFound => ("E_NOT_FOUND", 404, "no such resource (or none visible to this token or sender)"),
    MethodNotAllowed => ("E_METHOD_NOT_ALLOWED", 405, "the route does not take this HTTP method"),
    NotSealed => ("E_NOT_SEALED", 404, "the event or tree size is not sealed by a checkpoint yet (POST /api/v1/audit/checkpoints seals now)"),
    Stale => ("E_STALE", 409, "c.time is more than 300 s away from the server clock"),
    Replay => ("E_REPLAY", 409, "c.reqid was seen before"),
    IllegalTransition => ("E_ILLEGAL_TRANSITION", 409, "the aggregate's state machine does not allow this event now; the message names the current state"),
    DeviceInactive => ("E_DEVICE_INACTIVE", 409, "the cabinet is enrolled but has not activated itself (sjsb-sbcsh) yet"),
    Conflict => ("E_CONFLICT", 409, "other writers kept changing the aggregate; retry with the same business serial"),
    SerialReused => ("E_SERIAL_REUSED", 409, "the business serial was already used for another document, person or cabinet, or for a report with other business content"),
    OutOfOrder => ("E_OUT_OF_ORDER", 409, "a cabinet operation's optime is before the document's latest recorded operation (docs/protocol.md, Time rules)"),
    PersonErased => ("E_PERSON_ERASED", 409, "the report names a person whose personal data were erased (docs/personal-data.md, Erasure): nothing more can be recorded about them"),
    NotErasable => ("E_NOT_ERASABLE", 409, "the person cannot be erased yet: a document naming them as holder is not cancelled (the filing must also be revoked or refused, else E_ILLEGAL_TRANSITION)"),
    Exists => ("E_EXISTS", 409, "the org, device, sender or token exists already"),
    TooLarge => ("E_TOO_LARGE", 413, "the body is over 1 MiB"),
    UnsupportedMediaType => ("E_UNSUPPORTED_MEDIA_TYPE", 415, "a JSON body was sent without Content-Type: application/json"),
    InvalidField => ("E_INVALID_FIELD", 422, "a field is present but invalid (check character, code list, date, serial)"),
    MissingField => ("E_MISSING_FIELD", 422, "a field the operation needs is empty (e.g. retdate of a lend)"),
    SenderMismatch => ("E_SENDER_MISMATCH", 422, "the message names another device or unit than its signer"),
    BadProofRange => ("E_BAD_PROOF_RANGE", 422, "the sizes do not make a proof: a consistency proof needs 0 < from <= to, an inclusion proof an event below the tree size"),
    NoSuchDrawer => ("E_NO_SUCH_DRAWER", 422, "the cabinet body, row or column is outside the enrolled geometry"),
    TimeAhead => ("E_TIME_AHEAD", 422, "a business time or date is ahead of the server clock by more than 300 s (docs/protocol.md, Time rules)"),
    NotYetDue => ("E_NOT_YET_DUE", 422, "the planned return date has not passed"),
    OutsideWindow => ("E_OUTSIDE_WINDOW", 422, "a sjsb-dzsj batch arrived outside the reconciliation window (20:00 to 06:00 China time unless configured otherwise)"),
    RateLimited => ("E_RATE_LIMITED", 429, "no admission token within 200 ms (per sender or global)"),
    Internal => ("E_INTERNAL", 500, "the service failed; the report may be retried with the same business serial"),
    Unavailable => ("E_UNAVAILABLE", 503, "the event store did not answer within 5 s; retry later (a report with the same business serial)"),
}

/// A refusal: its code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    /// For `E_NOT_CUSTODIAN`: the unit whose document or person the report touched, so that
    /// the kept rejection reaches its readers as an alert.
    pub touched_unit: Option<String>,
    /// For `E_INTERNAL`: what failed, for the service's log; never sent to a client.
    pub cause: Option<String>,
}

/// What a client is told when the service itself failed.
const INTERNAL_MESSAGE: &str = "the service failed; retry with the same business serial";

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            touched_unit: None,
            cause: None,
        }
    }

    /// The service's own failure: the client gets a fixed message, the log gets `cause`.
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        WireError {
            cause: Some(format!("{what}: {cause}")),
            ..WireError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Logs the cause of an internal failure, once, where the answer is written.
    pub fn log_if_internal(&self) {
        if let Some(cause) = &self.cause {
            tracing::error!(code = self.code.as_str(), %cause, "request failed");
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// The one mapping of the command layer's errors to the wire table. It logs nothing and sends
/// no internal text.
impl From<CommandError> for WireError {
    fn from(error: CommandError) -> Self {
        let code = match &error {
            CommandError::Domain(domain) => match domain {
                DomainError::IllegalTransition { .. } => ErrorCode::IllegalTransition,
                DomainError::Identifier(_) | DomainError::InvalidField { .. } => {
                    ErrorCode::InvalidField
                }
                DomainError::MissingField(_) => ErrorCode::MissingField,
                DomainError::NotYetDue { .. } => ErrorCode::NotYetDue,
                DomainError::NoSuchDrawer { .. } => ErrorCode::NoSuchDrawer,
                DomainError::AheadOfClock { .. } => ErrorCode::TimeAhead,
                DomainError::OutOfOrder { .. } => ErrorCode::OutOfOrder,
            },
            CommandError::Conflict { .. } => ErrorCode::Conflict,
            CommandError::PersonErased { .. } => ErrorCode::PersonErased,
            CommandError::SerialReused { .. } | CommandError::ContentDiffers { .. } => {
                ErrorCode::SerialReused
            }
            CommandError::Store(_) | CommandError::Persistence { .. } => {
                return WireError::internal("command", error)
            }
        };
        WireError::new(code, error.to_string())
    }
}

/// The one mapping of the use cases' errors to the wire table.
impl From<ApplicationError> for WireError {
    fn from(error: ApplicationError) -> Self {
        match error {
            ApplicationError::Command(error) => error.into(),
            ApplicationError::SenderMismatch(message) => {
                WireError::new(ErrorCode::SenderMismatch, message)
            }
            ApplicationError::NotCustodian { message, custodian } => WireError {
                touched_unit: custodian.map(|unit| unit.to_string()),
                ..WireError::new(ErrorCode::NotCustodian, message)
            },
            ApplicationError::InvalidField { field, reason } => {
                WireError::new(ErrorCode::InvalidField, format!("{field}: {reason}"))
            }
            ApplicationError::NotFound(message) => WireError::new(ErrorCode::NotFound, message),
            ApplicationError::Lookup(error) => WireError::internal("look-up", error),
            ApplicationError::NotErasable(message) => {
                WireError::new(ErrorCode::NotErasable, message)
            }
            ApplicationError::OutsideWindow(message) => {
                WireError::new(ErrorCode::OutsideWindow, message)
            }
        }
    }
}

impl From<DomainError> for WireError {
    fn from(error: DomainError) -> Self {
        CommandError::Domain(error).into()
    }
}

impl From<custody_projections::ProjectionError> for WireError {
    fn from(error: custody_projections::ProjectionError) -> Self {
        match error {
            custody_projections::ProjectionError::Store(error) => error.into(),
            other => WireError::internal("view read", other),
        }
    }
}

impl From<custody_eventlog::EventLogError> for WireError {
    fn from(error: custody_eventlog::EventLogError) -> Self {
        use custody_audit::ProofError;
        use custody_eventlog::EventLogError;
        let code = match &error {
            EventLogError::NotSealed | EventLogError::Proof(ProofError::TooFewLeaves { .. }) => {
                ErrorCode::NotSealed
            }
            EventLogError::Proof(
                ProofError::IndexOutOfRange { .. } | ProofError::BadSizes { .. },
            ) => ErrorCode::BadProofRange,
            _ => return WireError::internal("database", error),
        };
        WireError::new(code, error.to_string())
    }
}

/// The HTTP APIs (ops, read) answer `{"error_code", "error_msg"}` with the code's status.
impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        self.log_if_internal();
        let body = serde_json::json!({
            "error_code": self.code.as_str(),
            "error_msg": self.message,
        });
        (self.status(), Json(body)).into_response()
    }
}

/// Every error answer is the JSON error body (SPEC §7.1): axum's own refusals (a body that is not
/// JSON, a query or path that does not parse, an unknown route, a method the route does not
/// take) arrive here as plain text or empty and leave as `{"error_code", "error_msg"}`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // The department page's error pages are HTML and stay so (docs/department-page.md).
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status.as_u16() {
        400 | 422 => ErrorCode::Malformed,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::TooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    // axum's rejection texts describe the client's input (which field, which line); they are
    // kept, cut short. Anything of the service's own is not.
    let message = if code == ErrorCode::Internal {
        String::new()
    } else {
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&body).chars().take(300).collect()
    };
    let message = if message.is_empty() {
        code.meaning().to_string()
    } else {
        message
    };
    WireError::new(code, message).into_response()
}

/// The fallback of the router: an unknown route is the JSON 404.
pub async fn no_such_route() -> WireError {
    WireError::new(ErrorCode::NotFound, "no such route")
}
