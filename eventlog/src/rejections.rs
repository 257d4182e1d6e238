//! The rejected-reports log (`migrations/*/0002_platform.sql`, bounded by
//! `0009_bounded_rejections.sql`; docs/security.md, "Rejected reports").
//!
//! An authenticated sender's refused report is kept whole (SPEC §3.1): it is evidence of what a
//! known party sent. An unauthenticated one is kept as its SM3, its size, its source address and
//! its first [`UNAUTHENTICATED_PREFIX_BYTES`]; the caller caps how many a source may leave a
//! minute and counts the rest in `rejections_not_kept`. Lists never load bodies.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{EventLogError, PlatformStore};

/// Bytes of an unauthenticated refused body that are kept.
pub const UNAUTHENTICATED_PREFIX_BYTES: usize = 4096;

/// Serials bound in one `IN (…)` list.
const SERIALS_PER_QUERY: usize = 500;

/// A refused report as listed: everything but its body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectionSummary {
    pub id: i64,
    pub received_ms: i64,
    pub mstype: String,
    pub ei: String,
    pub reqid: String,
    pub ywlsh: String,
    pub http_status: i64,
    pub error_code: String,
    pub error_message: String,
    /// Whether the sender's signature had been verified when the report was refused.
    pub authenticated: bool,
    /// SM3 of the whole body as received, also when only its first bytes are kept.
    pub body_sm3: String,
    /// Bytes of the whole body as received.
    pub body_size: i64,
    /// Whether the kept body is the whole body (always, when authenticated).
    pub body_whole: bool,
    /// The peer address it came from, when known.
    pub source: Option<String>,
    /// The unit whose document or person the report tried to act on without custody
    /// (`E_NOT_CUSTODIAN`): its readers see the refusal as an alert.
    pub touched_unit: Option<String>,
}

/// A refused report with its kept body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub summary: RejectionSummary,
    /// The whole body, or its first bytes (`summary.body_whole`), as text.
    pub body: String,
}

impl Rejection {
    /// A rejection of `body`: kept whole when `summary.authenticated`, else its first
    /// [`UNAUTHENTICATED_PREFIX_BYTES`]. Sets `body_size` and `body_whole`; `body_sm3` is the
    /// caller's, of the whole body.
    pub fn of_body(mut summary: RejectionSummary, body: &[u8]) -> Rejection {
        let kept = if summary.authenticated {
            body
        } else {
            &body[..body.len().min(UNAUTHENTICATED_PREFIX_BYTES)]
        };
        summary.body_size = i64::try_from(body.len()).unwrap_or(i64::MAX);
        summary.body_whole = kept.len() == body.len();
        Rejection {
            summary,
            body: String::from_utf8_lossy(kept).into_owned(),
        }
    }
}

/// Refusals of one source in one minute that were counted, not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotKept {
    pub minute_ms: i64,
    pub source: String,
    pub error_code: String,
    pub count: i64,
}

const SUMMARY_COLUMNS: &str = "id, received_ms, mstype, ei, reqid, ywlsh, http_status, \
     error_code, error_message, authenticated, body_sm3, body_size, body_whole, source, \
     touched_unit";

fn summary(row: &AnyRow) -> Result<RejectionSummary, EventLogError> {
    Ok(RejectionSummary {
        id: row.try_get("id")?,
        received_ms: row.try_get("received_ms")?,
        mstype: row.try_get("mstype")?,
        ei: row.try_get("ei")?,
        reqid: row.try_get("reqid")?,
        ywlsh: row.try_get("ywlsh")?,
        http_status: row.try_get("http_status")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        authenticated: row.try_get::<i64, _>("authenticated")? != 0,
        body_sm3: row.try_get("body_sm3")?,
        body_size: row.try_get("body_size")?,
        body_whole: row.try_get::<i64, _>("body_whole")? != 0,
        source: row.try_get("source")?,
        touched_unit: row.try_get("touched_unit")?,
    })
}

impl PlatformStore {
    pub async fn insert_rejection(&self, r: &Rejection) -> Result<(), EventLogError> {
        let s = &r.summary;
        sqlx::query(
            "INSERT INTO rejected_reports (received_ms, mstype, ei, reqid, ywlsh, http_status, \
             error_code, error_message, authenticated, body, body_sm3, body_size, body_whole, \
             source, touched_unit) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(s.received_ms)
        .bind(&s.mstype)
        .bind(&s.ei)
        .bind(&s.reqid)
        .bind(&s.ywlsh)
        .bind(s.http_status)
        .bind(&s.error_code)
        .bind(&s.error_message)
        .bind(i64::from(s.authenticated))
        .bind(&r.body)
        .bind(&s.body_sm3)
        .bind(s.body_size)
        .bind(i64::from(s.body_whole))
        .bind(s.source.as_deref())
        .bind(s.touched_unit.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts one refusal of `source` that was over its cap, in the minute it came.
    pub async fn count_not_kept(
        &self,
        minute_ms: i64,
        source: &str,
        error_code: &str,
    ) -> Result<(), EventLogError> {
        sqlx::query(
            "INSERT INTO rejections_not_kept (minute_ms, source, error_code, count) \
             VALUES ($1, $2, $3, 1) ON CONFLICT (minute_ms, source, error_code) \
             DO UPDATE SET count = rejections_not_kept.count + 1",
        )
        .bind(minute_ms)
        .bind(source)
        .bind(error_code)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Refusals counted and not kept since `since_ms`, newest minute first, at most `limit`.
    pub async fn not_kept_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<NotKept>, EventLogError> {
        sqlx::query(
            "SELECT minute_ms, source, error_code, count FROM rejections_not_kept \
             WHERE minute_ms >= $1 ORDER BY minute_ms DESC, source, error_code LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(NotKept {
                minute_ms: row.try_get("minute_ms")?,
                source: row.try_get("source")?,
                error_code: row.try_get("error_code")?,
                count: row.try_get("count")?,
            })
        })
        .collect()
    }

    /// Rejected reports, newest first, without their bodies: at most `limit`, with ids below
    /// `before_id` if given.
    pub async fn rejections(
        &self,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<RejectionSummary>, EventLogError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM rejected_reports WHERE id < $1 ORDER BY id DESC \
             LIMIT $2"
        );
        sqlx::query(&sql)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(summary)
            .collect()
    }

    /// One rejected report with its kept body.
    pub async fn rejection(&self, id: i64) -> Result<Option<Rejection>, EventLogError> {
        let sql = format!("SELECT {SUMMARY_COLUMNS}, body FROM rejected_reports WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Rejection {
            summary: summary(&row)?,
            body: row.try_get("body")?,
        }))
    }

    /// Forgets rejected reports and not-kept counts from before `before_ms` (the retention);
    /// returns how many reports went.
    pub async fn prune_rejections_before(&self, before_ms: i64) -> Result<u64, EventLogError> {
        let reports = sqlx::query("DELETE FROM rejected_reports WHERE received_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM rejections_not_kept WHERE minute_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(reports.rows_affected())
    }

    /// The error code of the latest refusal of each of `serials` (`ywlsh`) that was refused.
    pub async fn latest_refusals(
        &self,
        serials: &[&str],
    ) -> Result<HashMap<String, String>, EventLogError> {
        let mut refused = HashMap::new();
        for chunk in serials.chunks(SERIALS_PER_QUERY) {
            let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT ywlsh, error_code FROM rejected_reports WHERE ywlsh IN ({}) ORDER BY id",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for serial in chunk {
                query = query.bind(*serial);
            }
            for row in query.fetch_all(&self.pool).await? {
                // In id order, so the latest refusal of a serial is the one kept.
                refused.insert(row.try_get("ywlsh")?, row.try_get("error_code")?);
            }
        }
        Ok(refused)
    }

    pub async fn count_rejections(&self) -> Result<i64, EventLogError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM rejected_reports")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
