//! Every wait on the store is bounded: a request that the store does not answer in time is
//! refused with `E_UNAVAILABLE` (503, retryable, with `Retry-After`) instead of hanging, so
//! that cabinets and load balancers see a fast refusal when PostgreSQL hangs (a stopped or
//! partitioned server answers nothing, and no server-side `statement_timeout` can help then).
//!
//! A request cut here while its commit was in flight may still have committed: the retry with
//! the same business serial then answers `duplicate: true` (docs/protocol.md, "Idempotency").

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::RETRY_AFTER;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorCode, WireError};

/// How long one request may take, its store waits included. Ample for any report or read
/// (tens of milliseconds); the audit calls that walk the whole log are not bounded by it.
pub const STORE_BUDGET: Duration = Duration::from_secs(5);

/// Seconds a client is asked to wait before it retries.
const RETRY_AFTER_SECS: &str = "1";

/// The refusal of a request the store did not answer within [`STORE_BUDGET`].
pub fn unavailable() -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        "the event store did not answer in time; retry later",
    )
}

/// Adds `Retry-After` to an `E_UNAVAILABLE` answer.
pub fn with_retry_after(mut response: Response) -> Response {
    if let Ok(value) = RETRY_AFTER_SECS.parse() {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// Middleware: the request within [`STORE_BUDGET`], or `E_UNAVAILABLE`.
pub async fn within_budget(request: Request, next: Next) -> Response {
    match tokio::time::timeout(STORE_BUDGET, next.run(request)).await {
        Ok(response) => response,
        Err(_) => with_retry_after(unavailable().into_response()),
    }
}
