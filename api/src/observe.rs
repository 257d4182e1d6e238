//! One log line and the metrics of every request, and its request id.
//!
//! The line names the route template (`/api/v1/persons/{rybs}`), never the path or the query
//! itself: paths carry person and document identifiers, and no log line may hold personal data.
//! The sender is the ingress `ei` (a device serial or a registered sender) or the bearer token's
//! id, and only once authenticated.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id the client sent is kept when it is short and plain; otherwise one is made.
fn accepted_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let plain = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    plain.then(|| text.to_string())
}

/// Who sent the request, once authenticated; handlers fill it, the log line reads it.
#[derive(Clone, Default)]
pub struct SenderSlot(Arc<OnceLock<String>>);

impl SenderSlot {
    pub fn set(&self, sender: impl Into<String>) {
        let _ = self.0.set(sender.into());
    }
}

/// What the ingress answered: the mstype of the path and the `error_code` ("0": accepted).
#[derive(Clone)]
pub struct IngressAnswer {
    pub mstype: String,
    pub code: &'static str,
}

/// Marks an ingress answer for the request log and the metrics; `sender` once authenticated.
pub fn ingress_answer(
    mut response: Response,
    mstype: &str,
    code: &'static str,
    sender: Option<String>,
) -> Response {
    // Only a message type the service knows is named: the path is the client's input.
    let mstype = match crate::wire::MessageType::parse(mstype) {
        Some(_) => mstype,
        None => "other",
    };
    response.extensions_mut().insert(IngressAnswer {
        mstype: mstype.to_string(),
        code,
    });
    if let Some(sender) = sender.filter(|s| !s.is_empty()) {
        let slot = SenderSlot::default();
        slot.set(sender);
        response.extensions_mut().insert(slot);
    }
    response
}

/// The `c.ei` of an envelope that was accepted (so its signature verified), read without
/// keeping anything else of the body.
pub fn envelope_sender(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        c: Head,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        ei: String,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.c.ei)
}

/// The middleware: request id in and out, then one line and the metrics once answered.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(accepted_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let slot = SenderSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let answer = response.extensions().get::<IngressAnswer>().cloned();
    let sender = response
        .extensions()
        .get::<SenderSlot>()
        .and_then(|s| s.0.get().cloned())
        .or_else(|| slot.0.get().cloned());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    state
        .metrics
        .request(&route, method.as_str(), status, elapsed);
    if let Some(answer) = &answer {
        state.metrics.ingress(&answer.mstype, answer.code, elapsed);
    }
    tracing::info!(
        target: "custody::request",
        method = %method,
        route = %route,
        status,
        // Whole microseconds: a float's noise digits could pass for an identifier.
        latency_ms = elapsed.as_micros() as f64 / 1000.0,
        request_id = %request_id,
        sender = sender.as_deref().unwrap_or(""),
        mstype = answer.as_ref().map_or("", |a| a.mstype.as_str()),
        code = answer.as_ref().map_or("", |a| a.code),
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::accepted_request_id;
    use axum::http::HeaderValue;

    #[test]
    fn a_plain_request_id_is_kept_and_anything_else_replaced() {
        let kept = |s: &str| accepted_request_id(&HeaderValue::from_str(s).expect("header"));
        assert_eq!(kept("abc-123_x.y:z"), Some("abc-123_x.y:z".to_string()));
        assert_eq!(kept(""), None);
        assert_eq!(kept("has space"), None);
        assert_eq!(kept(&"a".repeat(129)), None);
    }
}
