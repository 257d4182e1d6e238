use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use custody_application::Intake;
use custody_domain::cabinet::CabinetState;
use custody_domain::identifiers::sm3_hex;
use custody_protocol::{RequestError, SignedRequest};
use serde_json::{json, Map, Value};

use super::admission::Stage;
use super::messages::MessageType;
use super::rejection_log::keep_rejection;
use super::reply::{Named, Received, Reply};
use super::{cabinet, exit_entry, unit};
use crate::error::{ErrorCode, WireError};
use crate::registry::{Registry, Sender, SenderKind};
use crate::state::AppState;

/// Bodies above this are refused with 413 before anything is parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A refusal, and whether the sender had been authenticated when it was refused.
struct Refusal {
    error: WireError,
    authenticated: bool,
}

impl From<WireError> for Refusal {
    fn from(error: WireError) -> Self {
        Refusal {
            error,
            authenticated: false,
        }
    }
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    WireError::new(code, message).into()
}

/// `POST /yth_g1xt/api/v1/{mstype}`
pub async fn receive(
    State(state): State<AppState>,
    Path(mstype): Path<String>,
    request: Request,
) -> Response {
    // The peer address, for the pre-authentication bucket; a router served without connect
    // information (in-process tests) counts every request as one unnamed source.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let source = peer.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return crate::observe::ingress_answer(too_large(), &mstype, TOO_LARGE, None);
    }
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return crate::observe::ingress_answer(too_large(), &mstype, TOO_LARGE, None);
    };
    let received = Received {
        mstype: &mstype,
        body: &body,
        body_sm3: sm3_hex(&body),
        source: peer,
        now: state.commands.clock().now(),
    };
    // Bounded: a hung store gets a fast, retryable refusal (crate::deadline).
    let judged = tokio::time::timeout(
        crate::deadline::STORE_BUDGET,
        judge(&state, &received, source),
    )
    .await
    .unwrap_or_else(|_| Err(crate::deadline::unavailable().into()));
    match judged {
        Ok(reply) => {
            let mut answer = Map::new();
            answer.insert("ywlsh".into(), reply.ywlsh.into());
            answer.insert("status".into(), true.into());
            answer.insert("error_code".into(), "0".into());
            answer.insert("error_msg".into(), "".into());
            answer.insert("duplicate".into(), reply.duplicate.into());
            answer.extend(reply.extra);
            let ei = crate::observe::envelope_sender(&body);
            let response = (StatusCode::OK, Json(Value::Object(answer))).into_response();
            crate::observe::ingress_answer(response, &mstype, "0", ei)
        }
        Err(refusal) => {
            refusal.error.log_if_internal();
            let summary = Summary::of(&received);
            // A refusal for a store that does not answer cannot be kept in it either.
            if !matches!(
                refusal.error.code,
                ErrorCode::RateLimited | ErrorCode::Unavailable
            ) {
                let named = Named {
                    ei: &summary.ei,
                    reqid: &summary.reqid,
                    ywlsh: &summary.ywlsh,
                };
                let message = refusal.error.message.clone();
                // Bounded itself: a store that does not take it in time gets it later, from
                // the spool.
                keep_rejection(
                    &state,
                    &received,
                    named,
                    &refusal.error,
                    message,
                    refusal.authenticated,
                )
                .await;
            }
            let body = json!({
                "ywlsh": summary.ywlsh,
                "status": false,
                "error_code": refusal.error.code.as_str(),
                "error_msg": refusal.error.message,
                "duplicate": false,
            });
            let ei = refusal.authenticated.then(|| summary.ei.clone());
            let mut response = (refusal.error.status(), Json(body)).into_response();
            if refusal.error.code == ErrorCode::Unavailable {
                response = crate::deadline::with_retry_after(response);
            }
            crate::observe::ingress_answer(response, &mstype, refusal.error.code.as_str(), ei)
        }
    }
}

const TOO_LARGE: &str = "E_TOO_LARGE";

fn too_large() -> Response {
    let body = json!({
        "ywlsh": "",
        "status": false,
        "error_code": ErrorCode::TooLarge.as_str(),
        "error_msg": format!("the body is over {MAX_BODY_BYTES} bytes"),
        "duplicate": false,
    });
    (ErrorCode::TooLarge.status(), Json(body)).into_response()
}

async fn judge(
    state: &AppState,
    received: &Received<'_>,
    source: IpAddr,
) -> Result<Reply, Refusal> {
    let request = SignedRequest::from_json(received.body)
        .map_err(|e| refuse(ErrorCode::Malformed, e.to_string()))?;
    if request.mstype != received.mstype {
        return Err(refuse(
            ErrorCode::MstypeMismatch,
            format!(
                "mstype {:?} in the body, {:?} in the path",
                request.mstype, received.mstype
            ),
        ));
    }
    let message = MessageType::parse(received.mstype).ok_or_else(|| {
        refuse(
            ErrorCode::UnsupportedMstype,
            format!("this service does not take {:?}", received.mstype),
        )
    })?;
    // Before anything is verified, only the source's own pre-authentication budget is charged:
    // naming a genuine sender's `ei` spends none of that sender's tokens (docs/security.md).
    let pending = state
        .admission
        .unauthenticated(source)
        .await
        .map_err(|refused| {
            state.metrics.admission_refused(refused);
            refuse(
                ErrorCode::RateLimited,
                "this address failed to authenticate too often; retry later",
            )
        })?;
    state
        .metrics
        .admission_waited(Stage::Source, pending.waited);
    check_freshness(state, &request, received)?;
    if state.registry.get(&request.c.ei).is_none() {
        // Registered through another instance, perhaps; the source's budget bounds the looks.
        if let Err(error) = state
            .registry
            .refresh_unknown(&state.commands, &request.c.ei)
            .await
        {
            tracing::debug!(%error, "cannot look an unknown sender up");
        }
    }
    let sender = registered_sender(state, &request, message)?;
    let registry = Arc::clone(&state.registry);
    let verifier = Arc::clone(&sender.verifier);
    let require_gateway = state.protocol.require_gateway_signature;
    let (request, verified) = state
        .crypto
        .run(move || {
            let verified = request
                .verify_sender_tabled(&verifier, registry.verify_tables())
                .map_err(|e| refuse(ErrorCode::BadSignature, e.to_string()))
                .and_then(|()| check_gateway_signature(&registry, require_gateway, &request));
            (request, verified)
        })
        .await?;
    verified?;
    let waited = state
        .admission
        .authenticated(pending, &sender.ei)
        .await
        .map_err(|refused| {
            state.metrics.admission_refused(refused);
            refuse(
                ErrorCode::RateLimited,
                "no admission within 200 ms; retry later",
            )
        })?;
    state.metrics.admission_waited(Stage::Authenticated, waited);

    // From here on the sender is authenticated.
    let authenticated = |error: WireError| Refusal {
        error,
        authenticated: true,
    };
    if sender.cabinet_state() == Some(CabinetState::Enrolled)
        && !message.allowed_before_activation()
    {
        return Err(authenticated(WireError::new(
            ErrorCode::DeviceInactive,
            format!("cabinet {} has not activated itself yet", sender.ei),
        )));
    }
    let fresh = state
        .commands
        .log()
        .platform()
        .remember_request(
            &request.c.reqid,
            &sender.ei,
            received.now.timestamp_millis(),
        )
        .await
        .map_err(|e| authenticated(e.into()))?;
    if !fresh {
        return Err(authenticated(WireError::new(
            ErrorCode::Replay,
            format!("reqid {} was seen before", request.c.reqid),
        )));
    }
    // A gateway only countersigns (rsig); no message is its own.
    let Some(principal) = sender.principal() else {
        return Err(authenticated(WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("{} is not sent by a gateway", received.mstype),
        )));
    };
    let intake = Intake {
        principal,
        request_id: request.c.reqid.clone(),
        envelope_sm3: received.body_sm3.clone(),
        received_at: received.now,
    };
    let handled = match message.sender_kind() {
        SenderKind::Cabinet => cabinet::handle(state, message, &intake, &request, received).await,
        SenderKind::ExitEntry => {
            exit_entry::handle(state, message, &intake, &request, received).await
        }
        SenderKind::Unit => unit::handle(state, message, &intake, &request, received).await,
        SenderKind::Gateway => Err(WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("{} is not sent by a gateway", received.mstype),
        )),
    };
    handled.map_err(authenticated)
}

fn check_freshness(
    state: &AppState,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<(), Refusal> {
    let reqid = &request.c.reqid;
    if reqid.is_empty() || reqid.len() > 64 || !reqid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(refuse(
            ErrorCode::Malformed,
            "c.reqid must be 1 to 64 letters or digits",
        ));
    }
    let sent = request.time_millis().map_err(|e| match e {
        RequestError::BadTime(_) => refuse(ErrorCode::Malformed, e.to_string()),
        other => refuse(ErrorCode::Malformed, other.to_string()),
    })?;
    let skew = (received.now.timestamp_millis() - sent).unsigned_abs();
    if u128::from(skew) > state.protocol.freshness.as_millis() {
        return Err(refuse(
            ErrorCode::Stale,
            format!(
                "c.time is {} ms away from the server clock (at most {} allowed)",
                skew,
                state.protocol.freshness.as_millis()
            ),
        ));
    }
    Ok(())
}

/// The registered sender named by `c.ei`, of the kind this message needs.
fn registered_sender(
    state: &AppState,
    request: &SignedRequest,
    message: MessageType,
) -> Result<Sender, Refusal> {
    let ei = &request.c.ei;
    let expected = message.sender_kind();
    match state.registry.get(ei) {
        Some(sender) if sender.kind == expected => {
            if sender.cabinet_state() == Some(CabinetState::Disabled) {
                Err(refuse(
                    ErrorCode::DeviceDisabled,
                    format!("cabinet {ei} is disabled"),
                ))
            } else {
                Ok(sender)
            }
        }
        _ if expected == SenderKind::Cabinet => Err(refuse(
            ErrorCode::DeviceUnknown,
            format!("no cabinet {ei:?} is enrolled"),
        )),
        _ => Err(refuse(
            ErrorCode::SenderUnknown,
            format!("no {expected:?} sender {ei:?} is registered"),
        )),
    }
}

fn check_gateway_signature(
    registry: &Registry,
    require_gateway_signature: bool,
    request: &SignedRequest,
) -> Result<(), Refusal> {
    if !request.has_gateway_signature() {
        if require_gateway_signature {
            return Err(refuse(
                ErrorCode::BadGatewaySignature,
                "a gateway signature (s.rsig) is required",
            ));
        }
        return Ok(());
    }
    let verified = registry.gateways().iter().any(|gateway| {
        request
            .verify_gateway_tabled(&gateway.verifier, registry.verify_tables())
            .is_ok()
    });
    if verified {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::BadGatewaySignature,
            "s.rsig verifies against no registered gateway",
        ))
    }
}

/// What can be read from a refused body, however malformed, for the log and the answer.
struct Summary {
    ei: String,
    reqid: String,
    ywlsh: String,
}

impl Summary {
    fn of(received: &Received<'_>) -> Summary {
        let envelope: Value = serde_json::from_slice(received.body).unwrap_or(Value::Null);
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        let ywlsh = envelope["bdata"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|bdata| {
                // The business serial under whichever name the message gives it.
                ["ywlsh", "bbywlsh", "cgspywlsh", "tyhywlsh", "dzywlsh"]
                    .iter()
                    .map(|key| text(&bdata[*key]))
                    .find(|serial| !serial.is_empty())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        Summary {
            ei: text(&envelope["c"]["ei"]),
            reqid: text(&envelope["c"]["reqid"]),
            ywlsh,
        }
    }
}
