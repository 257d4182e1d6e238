//! Signed checkpoints of the log (SPEC §8, docs/audit.md): sealed at an interval when the log
//! grew and on demand, appended to a witness file, served with their proofs, and the whole audit
//! bundle for offline checks.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use custody_audit::bundle::{json_line, BundleLine};
use custody_audit::SignedCheckpoint;
use serde_json::{json, Value};

use crate::audit::require_auditor;
use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit/checkpoints", get(checkpoint).post(seal_now))
        .route("/api/v1/audit/checkpoint-key", get(checkpoint_key))
        .route("/api/v1/audit/proofs/inclusion", get(inclusion))
        .route("/api/v1/audit/proofs/consistency", get(consistency))
        .route("/api/v1/audit/export", get(export))
}

type Params = Query<HashMap<String, String>>;

/// An optional non-negative integer query parameter.
fn number<T: std::str::FromStr>(params: &Params, name: &str) -> Result<Option<T>, WireError> {
    params
        .get(name)
        .map(|text| {
            text.parse().map_err(|_| {
                WireError::new(ErrorCode::InvalidField, format!("{name} is not a number"))
            })
        })
        .transpose()
}

fn required<T: std::str::FromStr>(params: &Params, name: &str) -> Result<T, WireError> {
    number(params, name)?
        .ok_or_else(|| WireError::new(ErrorCode::MissingField, format!("{name} is required")))
}

fn hexes(hashes: &[custody_audit::Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<SignedCheckpoint>, WireError> {
    require_auditor(&caller)?;
    let size = number(&params, "size")?;
    state
        .commands
        .log()
        .checkpoint(size)
        .await?
        .map(Json)
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, "no such checkpoint"))
}

async fn seal_now(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<SignedCheckpoint>), WireError> {
    require_auditor(&caller)?;
    if let Some(new) = state.checkpointer.seal().await? {
        return Ok((StatusCode::CREATED, Json(new)));
    }
    let latest = state.commands.log().checkpoint(None).await?;
    latest
        .map(|latest| (StatusCode::OK, Json(latest)))
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, "the log is empty: nothing to seal"))
}

async fn checkpoint_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, WireError> {
    require_auditor(&caller)?;
    Ok(Json(json!({
        "public_key_pem": state.checkpointer.public_key_pem(),
        "distinguishing_id": custody_protocol::sm2sig::DEFAULT_DISTINGUISHING_ID,
    })))
}

/// The tree size a proof is asked under: `size`, else the latest checkpoint's.
async fn size_or_latest(state: &AppState, size: Option<u64>) -> Result<u64, WireError> {
    match size {
        Some(size) => Ok(size),
        None => state
            .commands
            .log()
            .checkpoint(None)
            .await?
            .map(|c| c.tree_size)
            .ok_or_else(|| WireError::new(ErrorCode::NotSealed, "there is no checkpoint yet")),
    }
}

async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, WireError> {
    require_auditor(&caller)?;
    let position: i64 = required(&params, "position")?;
    let size = size_or_latest(&state, number(&params, "size")?).await?;
    let proof = state.commands.log().inclusion_proof(position, size).await?;
    Ok(Json(json!({
        "global_position": proof.leaf.global_position,
        "aggregate_type": proof.leaf.aggregate_type,
        "aggregate_id": proof.leaf.aggregate_id,
        "sequence": proof.leaf.sequence,
        "tree_index": proof.leaf.tree_index,
        "leaf_hash": proof.leaf.leaf_hash,
        "tree_size": proof.tree_size,
        "root_hash": hex::encode(proof.root_hash),
        "proof": hexes(&proof.proof),
    })))
}

async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, WireError> {
    require_auditor(&caller)?;
    let from: u64 = required(&params, "from")?;
    let to = size_or_latest(&state, number(&params, "to")?).await?;
    let proof = state.commands.log().consistency_proof(from, to).await?;
    Ok(Json(json!({
        "from": proof.from,
        "to": proof.to,
        "from_root": hex::encode(proof.from_root),
        "to_root": hex::encode(proof.to_root),
        "proof": hexes(&proof.proof),
    })))
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::response::Response, WireError> {
    require_auditor(&caller)?;
    if caller.role == Role::Auditor {
        // Event hashes cover the payloads as stored, so a bundle cannot be masked and still
        // verify, nor cut to one subtree and still prove the tree: it is the whole log in
        // clear, for auditors who may read all of it (docs/audit.md, "Export").
        if !caller.scopes.iter().any(|s| s == "pii") {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                "the export carries every event's personal data unmasked: it needs the pii scope",
            ));
        }
        let org = match &caller.org {
            Some(code) => state.commands.log().platform().org(code).await?,
            None => None,
        };
        if org.is_none_or(|org| org.parent.is_some()) {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                "the export is the whole log: it needs an auditor of a root of the org tree",
            ));
        }
    }
    // The bundle carries every event's personal data: the export is logged like any audit
    // read (its path says it covered the whole log).
    crate::scope::record_query(&state, &caller, "/api/v1/audit/export", &[]).await?;
    let log = state.commands.log().clone();
    let (opening, mut end) = log
        .audit_bundle_opening(state.checkpointer.public_key_pem())
        .await?;
    // Streamed a page at a time through a short queue, so an export of any size holds a few
    // pages; a failure midway ends the body without its end line, which the verifier names.
    let (pages, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        if pages.send(Ok(opening)).await.is_err() {
            return;
        }
        let walked = async {
            let mut walk = log.audit_walk().await?;
            while let Some(page) = walk.next_page(&log).await? {
                let chunk = page.into_lines(&mut end);
                if pages.send(Ok(chunk)).await.is_err() {
                    // The client went away.
                    return Ok(false);
                }
            }
            Ok::<_, custody_eventlog::EventLogError>(true)
        }
        .await;
        let last = match walked {
            Ok(true) => Ok(json_line(&BundleLine::End(end))),
            Ok(false) => return,
            Err(error) => {
                tracing::error!(%error, "the audit export stopped midway");
                Err(std::io::Error::other("the export stopped midway"))
            }
        };
        let _ = pages.send(last).await;
    });
    let stream = futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|chunk| (chunk, body))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
