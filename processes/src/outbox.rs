//! The notification outbox and its HTTP webhook adapter.
//!
//! Every reminder `Sent` event becomes one outbox row (written by the reminder process in the
//! same transaction as its cursor, so none is lost or doubled). The adapter POSTs each row's
//! JSON to the configured URL with the header `Idempotency-Key: <id>`; a 2xx answer marks it
//! delivered, anything else (or no answer) schedules another attempt, backing off from
//! `first_retry` doubling up to `max_retry`, without end. Delivery is at least once: a receiver
//! that may see a row twice (a crash after its answer) deduplicates by the key.
//!
//! Without a URL nothing is sent: rows stay queued, listed by `GET /api/v1/ops/notifications`,
//! and go out once the service runs with one.

use std::time::Duration;

use chrono::DateTime;
use custody_domain::values::{china_standard_time, Timestamp};
use serde_json::Value;
use sqlx::{AnyPool, Row};
use tokio::sync::Mutex;

use crate::{ProcessError, WebhookConfig};

/// One queued or delivered notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: String,
    pub reminder: String,
    pub unit: Option<String>,
    /// What is POSTed to the webhook.
    pub payload: Value,
    pub queued_at: Option<Timestamp>,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// The outcome of one delivery pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    pub delivered: usize,
    /// Attempts that failed; each row is tried again later.
    pub failed: usize,
}

/// Notifications, newest first; only the undelivered ones when `pending`.
pub(crate) async fn list(
    pool: &AnyPool,
    pending: bool,
    limit: i64,
) -> Result<Vec<Notification>, ProcessError> {
    let rows = sqlx::query(
        "SELECT id, reminder, unit, payload, queued_ms, attempts, next_attempt_ms, delivered_ms, \
         last_error FROM notification_outbox WHERE ($1 = 0 OR delivered_ms IS NULL) \
         ORDER BY queued_ms DESC, id DESC LIMIT $2",
    )
    .bind(i64::from(pending))
    .bind(limit.clamp(1, 1000))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get("payload")?;
            Ok(Notification {
                id: row.try_get("id")?,
                reminder: row.try_get("reminder")?,
                unit: row.try_get("unit")?,
                payload: serde_json::from_str(&payload)
                    .map_err(|e| ProcessError::Decode(format!("outbox payload: {e}")))?,
                queued_at: time(row.try_get("queued_ms")?),
                attempts: row.try_get("attempts")?,
                next_attempt_at: time(row.try_get("next_attempt_ms")?),
                delivered_at: row
                    .try_get::<Option<i64>, _>("delivered_ms")?
                    .and_then(time),
                last_error: row.try_get("last_error")?,
            })
        })
        .collect()
}

fn time(ms: i64) -> Option<Timestamp> {
    DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&china_standard_time()))
}

/// Delivers queued notifications to the webhook.
pub(crate) struct Deliverer {
    client: reqwest::Client,
    config: WebhookConfig,
    /// One pass at a time, so a row is never posted twice at once by this service.
    gate: Mutex<()>,
}

impl Deliverer {
    pub fn new(config: WebhookConfig) -> Result<Deliverer, ProcessError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ProcessError::Webhook(e.to_string()))?;
        Ok(Deliverer {
            client,
            config,
            gate: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Tries every row that is due at `now_ms` (the platform clock), oldest first. With a
    /// `fence` (the process managers' lease name and token), each row is first claimed in a
    /// transaction that checks the token: a holder that lost its lease (paused past the TTL)
    /// posts nothing more once another instance has taken over.
    pub async fn deliver_due(
        &self,
        pool: &AnyPool,
        now_ms: i64,
        fence: Option<(&str, i64)>,
    ) -> Result<DeliveryPass, ProcessError> {
        let _gate = self.gate.lock().await;
        let rows = sqlx::query(
            "SELECT id, payload, attempts FROM notification_outbox \
             WHERE delivered_ms IS NULL AND next_attempt_ms <= $1 \
             ORDER BY queued_ms, id LIMIT 100",
        )
        .bind(now_ms)
        .fetch_all(pool)
        .await?;
        let mut pass = DeliveryPass::default();
        for row in rows {
            let id: String = row.try_get("id")?;
            let payload: String = row.try_get("payload")?;
            let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
            if let Some((lease, token)) = fence {
                if !self.claim(pool, &id, now_ms, lease, token).await? {
                    continue;
                }
            }
            match self.post(&id, payload).await {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE notification_outbox SET attempts = $1, delivered_ms = $2, \
                         last_error = NULL WHERE id = $3 AND delivered_ms IS NULL",
                    )
                    .bind(attempts)
                    .bind(now_ms)
                    .bind(&id)
                    .execute(pool)
                    .await?;
                    pass.delivered += 1;
                }
                Err(error) => {
                    tracing::warn!(notification = id, attempts, %error, "webhook delivery failed");
                    let next = now_ms.saturating_add(self.backoff(attempts));
                    sqlx::query(
                        "UPDATE notification_outbox SET attempts = $1, next_attempt_ms = $2, \
                         last_error = $3 WHERE id = $4",
                    )
                    .bind(attempts)
                    .bind(next)
                    .bind(error)
                    .bind(&id)
                    .execute(pool)
                    .await?;
                    pass.failed += 1;
                }
            }
        }
        Ok(pass)
    }

    /// Claims an undelivered row under the lease: it is not due again (for another holder)
    /// until a POST could have ended. False when it was delivered meanwhile; the lease's
    /// [`custody_eventlog::EventLogError::Fenced`] when another instance took it over.
    async fn claim(
        &self,
        pool: &AnyPool,
        id: &str,
        now_ms: i64,
        lease: &str,
        token: i64,
    ) -> Result<bool, ProcessError> {
        let mut tx = pool.begin().await?;
        custody_eventlog::fence(&mut tx, lease, token).await?;
        let until = now_ms.saturating_add(
            i64::try_from(self.config.timeout.as_millis())
                .unwrap_or(i64::MAX)
                .saturating_mul(2),
        );
        let claimed = sqlx::query(
            "UPDATE notification_outbox SET next_attempt_ms = $1 \
             WHERE id = $2 AND delivered_ms IS NULL",
        )
        .bind(until)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn post(&self, id: &str, payload: String) -> Result<(), String> {
        let response = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", id)
            .body(payload)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }

    /// Milliseconds to wait after the `attempts`-th failure.
    fn backoff(&self, attempts: i64) -> i64 {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let wait = self
            .config
            .first_retry
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.config.max_retry);
        i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
    }
}

/// How often the background adapter looks for due rows.
pub(crate) fn poll_of(config: &WebhookConfig) -> Duration {
    config.poll.max(Duration::from_millis(10))
}

/// How many notifications wait, and how many of those failed their last attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: i64,
    pub failing: i64,
}

/// The outbox's depth, counted (not listed: a backlog is as large as it is).
pub(crate) async fn depth(pool: &AnyPool) -> Result<OutboxDepth, ProcessError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS pending, \
         COALESCE(SUM(CASE WHEN last_error IS NULL THEN 0 ELSE 1 END), 0) AS failing \
         FROM notification_outbox WHERE delivered_ms IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(OutboxDepth {
        pending: row.try_get("pending")?,
        failing: row.try_get("failing")?,
    })
}
