//! The feed from NATS JetStream: a durable pull consumer on the relay's stream.
//!
//! JetStream is only a transport: it may lose, duplicate or redeliver. When the consumer or the
//! whole stream is gone (nats-server restarted with its store deleted), the feed recreates both
//! and continues from the start of the stream; projectors skip what they have already applied.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::time::Instant;

use super::wire::{self, StreamSettings};
use super::{Acker, EventFeed, FeedError, FeedItem};

/// Room for the server's answer after a pull request expires.
const REPLY_MARGIN: Duration = Duration::from_secs(1);

/// A durable pull consumer, explicit ack, decoding messages back into stored events.
pub struct JetStreamFeed {
    js: jetstream::Context,
    settings: StreamSettings,
    durable: String,
    ack_wait: Duration,
    consumer: Option<PullConsumer>,
}

impl JetStreamFeed {
    /// Connects to NATS; the consumer `durable` is created on first use.
    pub async fn connect(
        nats_url: &str,
        settings: StreamSettings,
        durable: impl Into<String>,
    ) -> Result<Self, FeedError> {
        let client = crate::relay::connect_options()
            .connect(crate::relay::servers(nats_url))
            .await
            .map_err(nats)?;
        Ok(Self::new(client, settings, durable))
    }

    /// A feed over an existing client. `durable` names the consumer, one per projector: a
    /// NATS name (no `.`, `*`, `>` or white space).
    pub fn new(
        client: async_nats::Client,
        settings: StreamSettings,
        durable: impl Into<String>,
    ) -> Self {
        JetStreamFeed {
            js: crate::relay::jetstream_context(client),
            settings,
            durable: durable.into(),
            // Also how long the events a dead holder had fetched wait before the next holder
            // gets them (docs/scaling.md); a batch commits in well under it.
            ack_wait: Duration::from_secs(10),
            consumer: None,
        }
    }

    /// How long the server waits for an ack before redelivering (default 10 s).
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// The consumer's name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    fn consumer_config(&self) -> pull::Config {
        // Only options nats-server 2.9 knows (it silently ignores newer ones).
        pull::Config {
            durable_name: Some(self.durable.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            ..pull::Config::default()
        }
    }

    /// The consumer, creating the stream and the consumer if either is missing.
    async fn consumer(&mut self) -> Result<PullConsumer, FeedError> {
        if let Some(consumer) = &self.consumer {
            return Ok(consumer.clone());
        }
        let stream = self
            .js
            .get_or_create_stream(self.settings.stream_config())
            .await
            .map_err(nats)?;
        let consumer = stream
            .get_or_create_consumer(&self.durable, self.consumer_config())
            .await
            .map_err(nats)?;
        self.consumer = Some(consumer.clone());
        Ok(consumer)
    }

    /// Up to `max` messages: those waiting now, or, if none, the first to arrive within `wait`
    /// and whatever came with it.
    async fn pull(
        consumer: &PullConsumer,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<jetstream::Message>, FeedError> {
        let mut messages = fetch(consumer, max, None).await?;
        if messages.is_empty() && wait >= Duration::from_millis(10) {
            messages = fetch(consumer, 1, Some(wait)).await?;
            if !messages.is_empty() && max > 1 {
                messages.extend(fetch(consumer, max - 1, None).await?);
            }
        }
        Ok(messages)
    }
}

impl EventFeed for JetStreamFeed {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<FeedItem>, FeedError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let consumer = self.consumer().await?;
        let messages = match Self::pull(&consumer, max, wait).await {
            Ok(messages) => messages,
            Err(first) => {
                // The consumer or its stream is gone (a server that lost its store answers
                // "no responders"): recreate both and try once more.
                tracing::warn!(consumer = %self.durable, error = %first, "pull failed; recreating the consumer");
                self.consumer = None;
                let consumer = self.consumer().await?;
                Self::pull(&consumer, max, wait).await.inspect_err(|_| {
                    self.consumer = None;
                })?
            }
        };
        let mut items = Vec::with_capacity(messages.len());
        for message in messages {
            match wire::decode(message.headers.as_ref(), &message.payload) {
                Ok((event, cursor)) => items.push(FeedItem {
                    event,
                    cursor,
                    acker: Acker::JetStream(message),
                }),
                Err(error) => {
                    // Not something the relay wrote: redelivering it forever would stall the
                    // projector, and the store still has every event.
                    tracing::error!(consumer = %self.durable, %error, "dropping an undecodable message");
                    if let Err(e) = message.ack_with(AckKind::Term).await {
                        tracing::warn!(error = %e, "cannot terminate an undecodable message");
                    }
                }
            }
        }
        Ok(items)
    }
}

/// One pull request: `no_wait` when `expires` is None.
///
/// A live consumer always answers: with messages, or with a status that ends the request (404
/// "no messages", 408 at expiry). nats-server 2.9 does not answer "no responders" for a consumer
/// that no longer exists (its JetStream API subscription takes the request), so silence past
/// the expiry is the sign that the consumer is gone (or the connection is down) and is an error:
/// the caller recreates the consumer.
async fn fetch(
    consumer: &PullConsumer,
    max: usize,
    expires: Option<Duration>,
) -> Result<Vec<jetstream::Message>, FeedError> {
    let batch = match expires {
        None => consumer.fetch().max_messages(max).messages().await,
        Some(expires) => {
            consumer
                .batch()
                .max_messages(max)
                .expires(expires)
                .messages()
                .await
        }
    }
    .map_err(nats)?;
    let deadline = Instant::now() + expires.unwrap_or_default() + REPLY_MARGIN;
    let mut batch = std::pin::pin!(batch);
    let mut messages = Vec::new();
    while messages.len() < max {
        match tokio::time::timeout_at(deadline, batch.next()).await {
            Err(_) if messages.is_empty() => {
                return Err(FeedError::Nats(
                    "no answer to a pull request: the consumer is gone or NATS is unreachable"
                        .into(),
                ))
            }
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(message))) => messages.push(message),
            // What already came is good; the next call meets the error again.
            Ok(Some(Err(_))) if !messages.is_empty() => break,
            Ok(Some(Err(e))) => return Err(nats(e)),
        }
    }
    Ok(messages)
}

fn nats(error: impl std::fmt::Display) -> FeedError {
    FeedError::Nats(error.to_string())
}
