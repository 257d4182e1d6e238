//! Signed checkpoints of the log (SPEC §8, docs/audit.md): sealed at an interval when the log
//! grew and on demand, appended to a witness file, served with their proofs, and the whole audit
//! bundle for offline checks.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::SecondsFormat;
use custody_audit::SignedCheckpoint;
use custody_commands::Commands;
use custody_eventlog::EventLogError;
use serde_json::{json, Value};

use crate::audit::require_auditor;
use crate::auth::Caller;
use crate::error::{ErrorCode, WireError};
use crate::platform_key::CheckpointKey;
use crate::server::AppState;

/// Makes checkpoints; one at a time in this instance.
pub struct Checkpointer {
    commands: Arc<Commands>,
    key: CheckpointKey,
    /// Where each new checkpoint is appended as a JSON line, outside the database.
    witness: Option<PathBuf>,
    /// The JetStream witness, when NATS is configured.
    nats: Option<NatsWitness>,
    sealing: tokio::sync::Mutex<()>,
}

/// Checkpoints published to JetStream: subject `<subject_prefix>_checkpoints` in the stream
/// `<stream>_CHECKPOINTS` (beside the events' `<subject_prefix>.>`), message id the tree size.
pub struct NatsWitness {
    js: async_nats::jetstream::Context,
    pub stream: String,
    pub subject: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("NATS connect: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("JetStream stream: {0}")]
    Stream(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error("JetStream publish: {0}")]
    Publish(#[from] async_nats::jetstream::context::PublishError),
    #[error("encoding the checkpoint: {0}")]
    Encode(#[from] serde_json::Error),
}

impl NatsWitness {
    pub async fn connect(
        url: &str,
        settings: &custody_projections::feed::StreamSettings,
    ) -> Result<NatsWitness, WitnessError> {
        use custody_projections::relay::{connect_options, jetstream_context};
        let js = jetstream_context(connect_options().connect(url).await?);
        let witness = NatsWitness {
            js,
            stream: format!("{}_CHECKPOINTS", settings.stream),
            subject: format!("{}_checkpoints", settings.subject_prefix),
        };
        witness
            .js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: witness.stream.clone(),
                subjects: vec![witness.subject.clone()],
                ..Default::default()
            })
            .await?;
        Ok(witness)
    }

    /// Publishes one checkpoint and waits for the stream's ack.
    pub async fn publish(&self, checkpoint: &SignedCheckpoint) -> Result<(), WitnessError> {
        let message = async_nats::jetstream::message::PublishMessage::build()
            .message_id(checkpoint.tree_size.to_string())
            .payload(serde_json::to_vec(checkpoint)?.into());
        self.js
            .send_publish(self.subject.clone(), message)
            .await?
            .await?;
        Ok(())
    }
}

impl Checkpointer {
    pub fn new(
        commands: Arc<Commands>,
        key: CheckpointKey,
        witness: Option<PathBuf>,
        nats: Option<NatsWitness>,
    ) -> Checkpointer {
        Checkpointer {
            commands,
            key,
            witness,
            nats,
            sealing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn public_key_pem(&self) -> &str {
        &self.key.public_key_pem
    }

    /// A verifier of this platform's checkpoints.
    pub fn verifier(&self) -> custody_protocol::Sm2Verifier {
        self.key.signer.verifier()
    }

    /// Seals what was committed since the latest checkpoint; None when nothing was.
    pub async fn seal(&self) -> Result<Option<SignedCheckpoint>, EventLogError> {
        // Two sealers at once would both extend the same frontier.
        let _one_at_a_time = self.sealing.lock().await;
        let now = self.commands.clock().now();
        let sealed = self
            .commands
            .log()
            .seal(
                &self.key.signer,
                &now.to_rfc3339_opts(SecondsFormat::Millis, true),
                now.timestamp_millis(),
            )
            .await?;
        // The checkpoint is kept either way; a witness that missed one is caught up by hand
        // from GET /api/v1/audit/checkpoints?size=.
        if let (Some(checkpoint), Some(path)) = (&sealed, &self.witness) {
            if let Err(error) = append_witness(path, checkpoint) {
                tracing::warn!(path = %path.display(), %error, "could not write the witness");
            }
        }
        if let (Some(checkpoint), Some(nats)) = (&sealed, &self.nats) {
            if let Err(error) = nats.publish(checkpoint).await {
                tracing::warn!(%error, "could not publish the checkpoint to JetStream");
            }
        }
        Ok(sealed)
    }

    /// Seals every `interval`, when the log grew.
    pub fn spawn(self: &Arc<Self>, interval: Duration) {
        let checkpointer = self.clone();
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticks.tick().await;
                match checkpointer.seal().await {
                    Ok(Some(checkpoint)) => {
                        tracing::info!(tree_size = checkpoint.tree_size, "sealed a checkpoint")
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "could not seal a checkpoint"),
                }
            }
        });
    }
}

/// Appends one checkpoint as a JSON line (docs/audit.md, "Witnesses").
fn append_witness(path: &Path, checkpoint: &SignedCheckpoint) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(checkpoint)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write per line, so concurrent appenders do not interleave within a line.
    file.write_all(&line)?;
    file.sync_data()
}

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
) -> Result<Json<custody_audit::bundle::Bundle>, WireError> {
    require_auditor(&caller)?;
    // The bundle carries every event's personal data: the export is logged like any audit
    // read (its path says it covered the whole log).
    crate::read::record_query(&state, &caller, "/api/v1/audit/export", &[]).await?;
    Ok(Json(
        state
            .commands
            .log()
            .audit_bundle(state.checkpointer.public_key_pem())
            .await?,
    ))
}
