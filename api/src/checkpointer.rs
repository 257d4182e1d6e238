//! The checkpointer: seals the log into SM2-signed checkpoints at an interval when it grew and
//! on demand, and publishes each to the witnesses (a file, JetStream) outside the database
//! (SPEC §8, docs/audit.md). A leaf: the routes in `checkpoints` use it, it uses no route.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use custody_audit::SignedCheckpoint;
use custody_commands::Commands;
use custody_eventlog::EventLogError;

use crate::platform_key::CheckpointKey;

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
    /// Its copies, as many as the events stream's.
    replicas: usize,
    /// The witness stream, made on the first publish: the service starts while NATS is down.
    created: tokio::sync::OnceCell<()>,
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
    /// Returns at once, connected or not (`connect_options`).
    pub async fn connect(
        url: &str,
        settings: &custody_projections::feed::StreamSettings,
    ) -> Result<NatsWitness, WitnessError> {
        use custody_projections::relay::{connect_options, jetstream_context, servers};
        Ok(NatsWitness {
            js: jetstream_context(connect_options().connect(servers(url)).await?),
            stream: format!("{}_CHECKPOINTS", settings.stream),
            subject: format!("{}_checkpoints", settings.subject_prefix),
            replicas: settings.replicas.max(1),
            created: tokio::sync::OnceCell::new(),
        })
    }

    /// Publishes one checkpoint and waits for the stream's ack.
    pub async fn publish(&self, checkpoint: &SignedCheckpoint) -> Result<(), WitnessError> {
        self.created
            .get_or_try_init(|| async {
                self.js
                    .get_or_create_stream(async_nats::jetstream::stream::Config {
                        name: self.stream.clone(),
                        subjects: vec![self.subject.clone()],
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
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

    /// Seals every `interval`, when the log grew, while this instance holds `lease`.
    pub fn spawn(self: &Arc<Self>, interval: Duration, lease: custody_eventlog::Lease) {
        let checkpointer = self.clone();
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticks.tick().await;
                // Not fenced: the seal itself writes under a guard and starts again when another
                // sealer (an explicit seal, another instance) wrote first; the lease saves work.
                if lease.token().is_none() {
                    continue;
                }
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
