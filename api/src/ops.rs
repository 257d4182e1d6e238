//! The ops API (SPEC §9), for operators: the org tree, cabinets and other signed senders, API
//! tokens, the platform key; the rejected-reports log is `rejection_ops`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use custody_domain::cabinet::{CabinetBody, CabinetCommand, Disabled, Enrolled};
use custody_domain::identifiers::CreditCode;
use custody_domain::values::DeviceSerial;
use custody_domain::{DomainError, EventMetadata};
use custody_eventlog::{Org, SenderRecord, TokenRecord};
use rand::RngExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{secret_digest, Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::readside::RebuildState;
use crate::registry::{verifier, Sender, SenderKind};
use crate::state::AppState;
use custody_projections::Projection;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ops/orgs", post(create_org))
        .route("/api/v1/ops/devices", post(enroll_device))
        .route("/api/v1/ops/devices/{sbxlh}/disable", post(disable_device))
        .route("/api/v1/ops/senders", post(register_sender))
        .route("/api/v1/ops/tokens", post(issue_token).get(list_tokens))
        .route("/api/v1/ops/tokens/{id}", delete(revoke_token))
        .route("/api/v1/ops/platform-key", get(platform_key))
        .route("/api/v1/ops/projections", get(projections))
        .route("/api/v1/ops/workers", get(workers))
        .route(
            "/api/v1/ops/projections/{name}/rebuild",
            post(rebuild_projection),
        )
        .merge(crate::process_ops::routes())
        .merge(crate::rejection_ops::routes())
        .merge(crate::erasure::routes())
}

type Answer = Result<(StatusCode, Json<Value>), WireError>;

fn invalid(field: &str, reason: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::InvalidField, format!("{field}: {reason}"))
}

fn now_ms(state: &AppState) -> i64 {
    state.commands.clock().now().timestamp_millis()
}

fn operator_metadata(caller: &Caller) -> EventMetadata {
    EventMetadata {
        sender: caller.sender(),
        ..EventMetadata::default()
    }
}

#[derive(Deserialize)]
struct NewOrg {
    code: String,
    name: String,
    parent: Option<String>,
}

async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    Json(org): Json<NewOrg>,
) -> Answer {
    caller.require(Role::Operator)?;
    let code: CreditCode = org.code.parse().map_err(|e| invalid("code", e))?;
    if org.name.trim().is_empty() {
        return Err(WireError::new(ErrorCode::MissingField, "name is empty"));
    }
    let platform = state.commands.log().platform();
    if let Some(parent) = &org.parent {
        if platform.org(parent).await?.is_none() {
            return Err(invalid("parent", format!("no org {parent}")));
        }
    }
    let record = Org {
        code: code.to_string(),
        name: org.name,
        parent: org.parent,
    };
    if !platform.insert_org(&record, now_ms(&state)).await? {
        return Err(WireError::new(
            ErrorCode::Exists,
            format!("org {code} exists"),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"code": record.code, "name": record.name, "parent": record.parent})),
    ))
}

#[derive(Deserialize)]
struct NewDevice {
    sbxlh: String,
    tyshxydm: String,
    model: String,
    cabinets: Vec<NewCabinetBody>,
    public_key_pem: String,
}

#[derive(Deserialize)]
struct NewCabinetBody {
    zjgxlh: String,
    rows: u16,
    cols: u16,
}

async fn enroll_device(
    State(state): State<AppState>,
    caller: Caller,
    Json(device): Json<NewDevice>,
) -> Answer {
    caller.require(Role::Operator)?;
    let serial: DeviceSerial = device
        .sbxlh
        .parse()
        .map_err(|e: DomainError| invalid("sbxlh", e))?;
    let unit: CreditCode = device
        .tyshxydm
        .parse()
        .map_err(|e| invalid("tyshxydm", e))?;
    if state
        .commands
        .log()
        .platform()
        .org(unit.as_str())
        .await?
        .is_none()
    {
        return Err(invalid(
            "tyshxydm",
            format!("no org {unit}; create it first"),
        ));
    }
    verifier(&device.public_key_pem).map_err(|e| invalid("public_key_pem", e))?;
    if state.registry.get(serial.as_str()).is_some() {
        return Err(WireError::new(
            ErrorCode::Exists,
            format!("{serial} is registered"),
        ));
    }
    let command = CabinetCommand::Enroll(Enrolled {
        unit,
        model: device.model,
        bodies: device
            .cabinets
            .into_iter()
            .map(|b| CabinetBody {
                serial: b.zjgxlh,
                rows: b.rows,
                columns: b.cols,
            })
            .collect(),
        public_key_pem: device.public_key_pem,
    });
    match state
        .commands
        .cabinet(serial.as_str(), command, operator_metadata(&caller))
        .await
    {
        Err(custody_commands::CommandError::Domain(DomainError::IllegalTransition { .. })) => {
            return Err(WireError::new(
                ErrorCode::Exists,
                format!("{serial} is enrolled"),
            ));
        }
        other => other?,
    };
    state
        .registry
        .refresh_cabinet(&state.commands, serial.as_str())
        .await
        .map_err(|e| WireError::internal("refreshing the sender registry", e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"sbxlh": serial.as_str(), "state": "Enrolled"})),
    ))
}

async fn disable_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(sbxlh): Path<String>,
) -> Answer {
    caller.require(Role::Operator)?;
    match state.registry.get(&sbxlh) {
        Some(sender) if sender.kind == SenderKind::Cabinet => {}
        _ => {
            return Err(WireError::new(
                ErrorCode::NotFound,
                format!("no cabinet {sbxlh}"),
            ))
        }
    }
    state
        .commands
        .cabinet(
            &sbxlh,
            CabinetCommand::Disable(Disabled { reason: None }),
            operator_metadata(&caller),
        )
        .await?;
    state
        .registry
        .refresh_cabinet(&state.commands, &sbxlh)
        .await
        .map_err(|e| WireError::internal("refreshing the sender registry", e))?;
    Ok((
        StatusCode::OK,
        Json(json!({"sbxlh": sbxlh, "state": "Disabled"})),
    ))
}

#[derive(Deserialize)]
struct NewSender {
    ei: String,
    kind: String,
    public_key_pem: String,
    tyshxydm: Option<String>,
}

async fn register_sender(
    State(state): State<AppState>,
    caller: Caller,
    Json(sender): Json<NewSender>,
) -> Answer {
    caller.require(Role::Operator)?;
    let kind = SenderKind::parse(&sender.kind)
        .ok_or_else(|| invalid("kind", "one of gateway, exit_entry, unit"))?;
    if sender.ei.is_empty() || sender.ei.len() > 64 {
        return Err(invalid("ei", "1 to 64 characters"));
    }
    let verifier = verifier(&sender.public_key_pem).map_err(|e| invalid("public_key_pem", e))?;
    let unit = match &sender.tyshxydm {
        Some(code) if !code.is_empty() => Some(
            code.parse::<CreditCode>()
                .map_err(|e| invalid("tyshxydm", e))?
                .to_string(),
        ),
        _ => None,
    };
    if kind == SenderKind::Unit && unit.is_none() {
        return Err(WireError::new(
            ErrorCode::MissingField,
            "a unit sender needs tyshxydm",
        ));
    }
    if state.registry.get(&sender.ei).is_some() {
        return Err(WireError::new(
            ErrorCode::Exists,
            format!("{} is registered", sender.ei),
        ));
    }
    let record = SenderRecord {
        ei: sender.ei.clone(),
        kind: sender.kind.clone(),
        public_key_pem: sender.public_key_pem,
        unit: unit.clone(),
    };
    if !state
        .commands
        .log()
        .platform()
        .insert_sender(&record, now_ms(&state))
        .await?
    {
        return Err(WireError::new(
            ErrorCode::Exists,
            format!("{} is registered", sender.ei),
        ));
    }
    state.registry.insert(Sender {
        ei: sender.ei.clone(),
        kind,
        verifier: std::sync::Arc::new(verifier),
        unit,
        cabinet: None,
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({"ei": sender.ei, "kind": sender.kind})),
    ))
}

#[derive(Deserialize)]
struct NewToken {
    role: String,
    org: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// RFC 3339; after it the token is refused like a revoked one.
    expires_at: Option<String>,
}

/// What a new token may do, and until when.
pub struct Grant {
    pub role: Role,
    pub org: Option<String>,
    pub scopes: Vec<String>,
    pub expires_ms: Option<i64>,
}

impl Grant {
    /// An operator token for the whole tree, without expiry (the first one).
    pub fn first_operator() -> Grant {
        Grant {
            role: Role::Operator,
            org: None,
            scopes: vec![],
            expires_ms: None,
        }
    }
}

async fn issue_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(token): Json<NewToken>,
) -> Answer {
    caller.require(Role::Operator)?;
    let role =
        Role::parse(&token.role).ok_or_else(|| invalid("role", "reader, auditor or operator"))?;
    if let Some(scope) = token.scopes.iter().find(|s| s.as_str() != "pii") {
        return Err(invalid("scopes", format!("unknown scope {scope:?}")));
    }
    match (&token.org, role) {
        (None, Role::Reader | Role::Auditor) => {
            return Err(WireError::new(
                ErrorCode::MissingField,
                "readers and auditors need an org",
            ));
        }
        (Some(org), _) if state.commands.log().platform().org(org).await?.is_none() => {
            return Err(invalid("org", format!("no org {org}")));
        }
        _ => {}
    }
    let expires_ms = match &token.expires_at {
        None => None,
        Some(text) => {
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| invalid("expires_at", format!("not an RFC 3339 time: {e}")))?;
            if at.timestamp_millis() <= now_ms(&state) {
                return Err(invalid("expires_at", "is not in the future"));
            }
            Some(at.timestamp_millis())
        }
    };
    let grant = Grant {
        role,
        org: token.org.clone(),
        scopes: token.scopes.clone(),
        expires_ms,
    };
    let (id, secret) = issue(&state, grant).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "token": secret, "role": role.as_str(), "org": token.org,
                    "scopes": token.scopes, "expires_at": token.expires_at}),
        ),
    ))
}

/// `GET /api/v1/ops/tokens`: every token, never its secret.
async fn list_tokens(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    let time = |ms: Option<i64>| ms.and_then(crate::read::china_time);
    let tokens: Vec<Value> = state
        .commands
        .log()
        .platform()
        .tokens()
        .await?
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "role": t.role,
                "org": t.org,
                "scopes": t.scopes,
                "created_at": time(Some(t.created_ms)),
                "expires_at": time(t.expires_ms),
                "last_used_at": time(t.last_used_ms),
                "revoked_at": time(t.revoked_ms),
            })
        })
        .collect();
    Ok((StatusCode::OK, Json(json!({"tokens": tokens}))))
}

/// Stores a new token and returns its id and secret (shown once, never stored).
pub async fn issue(state: &AppState, grant: Grant) -> Result<(String, String), WireError> {
    let secret = new_secret();
    let id = uuid::Uuid::new_v4().simple().to_string();
    store_token(state, &id, &secret, grant).await?;
    Ok((id, secret))
}

pub async fn store_token(
    state: &AppState,
    id: &str,
    secret: &str,
    grant: Grant,
) -> Result<(), WireError> {
    let record = TokenRecord {
        id: id.to_string(),
        role: grant.role.as_str().to_string(),
        org: grant.org,
        scopes: grant.scopes,
        created_ms: now_ms(state),
        expires_ms: grant.expires_ms,
        last_used_ms: None,
        revoked_ms: None,
    };
    state
        .commands
        .log()
        .platform()
        .insert_token(&record, &secret_digest(secret))
        .await?;
    Ok(())
}

/// 32 random bytes, URL-safe base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, WireError> {
    caller.require(Role::Operator)?;
    if state
        .commands
        .log()
        .platform()
        .revoke_token(&id, now_ms(&state))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(WireError::new(
            ErrorCode::NotFound,
            format!("no live token {id}"),
        ))
    }
}

async fn platform_key(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "public_key_pem": state.platform_key.public_key_pem,
            "certificate_pem": state.platform_key.certificate_pem,
        })),
    ))
}

/// Which instance runs each background worker group: read from the lease table, so every
/// instance gives the same answer (docs/scaling.md). A lease past its expiry is shown with no
/// instance: nobody runs that group until an instance takes it.
async fn workers(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    let rows = state.commands.log().leases().list().await?;
    let mut workers = Vec::new();
    let mut instances = Vec::new();
    for row in rows {
        let since = chrono::DateTime::from_timestamp_millis(row.since_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        if let Some(id) = row
            .name
            .strip_prefix(custody_eventlog::leases::INSTANCE_PREFIX)
        {
            if row.live {
                instances.push(json!({"instance": id, "since": since}));
            }
            continue;
        }
        workers.push(json!({
            "name": row.name,
            "instance": row.live.then_some(row.holder),
            "since": row.live.then_some(since),
            "token": row.token,
        }));
    }
    Ok((
        StatusCode::OK,
        Json(
            json!({"workers": workers, "instances": instances, "this_instance": &*state.instance}),
        ),
    ))
}

/// The instance that holds the projectors' lease now, if any.
async fn projectors_instance(state: &AppState) -> Result<Option<String>, WireError> {
    let rows = state.commands.log().leases().list().await?;
    Ok(rows
        .into_iter()
        .find(|row| row.name == crate::WorkerLeases::PROJECTORS && row.live)
        .map(|row| row.holder))
}

async fn projections(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    let log = state.commands.log();
    let head = log.committed_head().await?;
    let instance = projectors_instance(&state).await?;
    let mut items = Vec::new();
    for projection in Projection::ALL {
        // The rebuild's state first: "finished" is recorded only after the swap committed, so a
        // status read after it shows the new generation (read the other way round, a rebuild
        // ending in between would report "finished" beside the old generation).
        let rebuild = state.read_side.rebuild_state(projection);
        let status = custody_projections::status(log.platform().pool(), projection)
            .await
            .map_err(|e| WireError::internal("projection status", e))?;
        let lag = log.count_committed_after(status.cursor.into()).await?;
        let rebuild = rebuild.map(|r| match r {
            RebuildState::Running(p) => json!({"state": "running", "events": p.events,
                "total": p.total, "events_per_second": p.events_per_second(),
                "elapsed_ms": p.elapsed.as_millis() as u64}),
            RebuildState::Finished(p) => json!({"state": "finished", "events": p.events,
                "total": p.total, "events_per_second": p.events_per_second(),
                "elapsed_ms": p.elapsed.as_millis() as u64}),
            RebuildState::Failed(error) => json!({"state": "failed", "error": error}),
        });
        // Lag of the events this process applied live (commit − recorded_at), over a sample of
        // `sampled_events`; each key names what it holds.
        let live_lag = state.read_side.projector(projection).map(|p| {
            let lag = p.lag();
            json!({"sampled_events": lag.count, "p50_ms": lag.p50_ms, "p99_ms": lag.p99_ms,
                "max_ms": lag.max_ms})
        });
        items.push(json!({
            "name": projection.name(),
            "generation": status.active_generation,
            "position": {"tx_id": status.cursor.tx_id, "global_position": status.cursor.position},
            "applied": status.applied,
            "lag_events": lag,
            "live_lag": live_lag,
            "rebuild": rebuild,
            "instance": instance,
        }));
    }
    let head = head.map(|h| json!({"tx_id": h.tx_id, "global_position": h.position}));
    Ok((
        StatusCode::OK,
        Json(json!({"head": head, "projections": items})),
    ))
}

async fn rebuild_projection(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Answer {
    caller.require(Role::Operator)?;
    let projection = Projection::parse(&name)
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, format!("no projection {name}")))?;
    if state.read_side.start_rebuild(projection) {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"name": name, "rebuild": "started"})),
        ))
    } else {
        Err(WireError::new(
            ErrorCode::Conflict,
            format!("a rebuild of {name} is running"),
        ))
    }
}
