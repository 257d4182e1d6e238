//! What a handler is given about the request as received, and what it answers: shared by the
//! ingress and every message family, and importing none of them.

use custody_eventlog::Rejection;
use serde_json::{Map, Value};

use crate::error::WireError;
use crate::state::AppState;

/// The request as received, for the rejected-reports log and the events' metadata.
pub struct Received<'a> {
    pub mstype: &'a str,
    pub body: &'a [u8],
    pub body_sm3: String,
    pub now: chrono::DateTime<chrono::FixedOffset>,
}

/// What an accepted message answers beyond the common fields.
pub struct Reply {
    pub ywlsh: String,
    pub duplicate: bool,
    pub extra: Map<String, Value>,
}

impl Reply {
    pub fn new(ywlsh: impl Into<String>, duplicate: bool) -> Reply {
        Reply {
            ywlsh: ywlsh.into(),
            duplicate,
            extra: Map::new(),
        }
    }
}

/// Who a refused report names, as far as it could be read.
pub struct Named<'a> {
    pub ei: &'a str,
    pub reqid: &'a str,
    pub ywlsh: &'a str,
}

/// Keeps a refused report, with its whole body as received, in the rejected-reports log
/// (SPEC §3.1, §9). A failure to keep it is logged; the refusal still reaches the sender, which
/// keeps its report and retries.
pub async fn keep_rejection(
    state: &AppState,
    received: &Received<'_>,
    named: Named<'_>,
    error: &WireError,
    message: String,
    authenticated: bool,
) {
    let rejection = Rejection {
        id: 0,
        received_ms: received.now.timestamp_millis(),
        mstype: received.mstype.to_string(),
        ei: named.ei.to_string(),
        reqid: named.reqid.to_string(),
        ywlsh: named.ywlsh.to_string(),
        http_status: i64::from(error.status().as_u16()),
        error_code: error.code.as_str().to_string(),
        error_message: message,
        authenticated,
        body: String::from_utf8_lossy(received.body).into_owned(),
        body_sm3: received.body_sm3.clone(),
        touched_unit: error.touched_unit.clone(),
    };
    if let Err(error) = state
        .commands
        .log()
        .platform()
        .insert_rejection(&rejection)
        .await
    {
        tracing::error!(%error, code = rejection.error_code, "could not keep a rejected report");
    }
}
