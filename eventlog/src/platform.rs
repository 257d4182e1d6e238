//! The platform's own tables beside the event log (`migrations/*/0002_platform.sql`): the org
//! tree, signed senders, API tokens, the anti-replay memory, the rejected-reports log, the
//! devices' latest heartbeat, and the query audit log (`0003_views.sql`).
//!
//! The SQL is written once, over sqlx's `Any` driver, with `$n` placeholders in order of
//! appearance (which SQLite reads as numbered parameters too). Times are epoch milliseconds.

use std::collections::{BTreeSet, HashMap};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::batcher::{self, BatchHold, BatchStats, BatchWrite, Batcher};
use crate::EventLogError;

#[derive(Clone, Debug)]
pub struct PlatformStore {
    pub(crate) pool: AnyPool,
    /// The replay window's inserts, batched across concurrent requests.
    requests: Batcher<RequestWindow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub code: String,
    pub name: String,
    pub parent: Option<String>,
}

/// A signed sender other than a cabinet: a forwarding gateway, the exit-entry adapter, or a
/// unit client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRecord {
    pub ei: String,
    pub kind: String,
    pub public_key_pem: String,
    pub unit: Option<String>,
}

/// An API token as stored: never its secret, only the SM3 of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub role: String,
    pub org: Option<String>,
    pub scopes: Vec<String>,
    pub created_ms: i64,
    /// After this it is refused like a revoked one.
    pub expires_ms: Option<i64>,
    /// When it last authenticated a call, to the minute (`TOKEN_USE_RESOLUTION_MS`).
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

impl TokenRecord {
    /// Whether it may authenticate a call at `now_ms`.
    pub fn usable_at(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|expires| now_ms < expires)
    }
}

/// How stale a token's `last_used_ms` may get before a use writes it again: a use does not
/// cost a write every time.
pub const TOKEN_USE_RESOLUTION_MS: i64 = 60_000;

const TOKEN_COLUMNS: &str =
    "id, role, org, scopes, created_ms, expires_ms, last_used_ms, revoked_ms";

fn token(row: &AnyRow) -> Result<TokenRecord, EventLogError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        role: row.try_get("role")?,
        org: row.try_get("org")?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

/// One read of unmasked personal data (SPEC §7, §2.6.5.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAuditEntry<'a> {
    pub at_ms: i64,
    pub token_id: &'a str,
    pub org: Option<&'a str>,
    pub path: &'a str,
    /// The ids (ZJBS, RYBS) whose personal data the answer carried.
    pub subjects: &'a [String],
}

impl PlatformStore {
    pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Self, EventLogError> {
        sqlx::any::install_default_drivers();
        let mut options =
            crate::log::ping_when_idle(AnyPoolOptions::new()).max_connections(max_connections);
        if url.starts_with("sqlite:") {
            // Every SQLite connection waits for the writer instead of failing at once.
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *connection, "PRAGMA busy_timeout = 10000")
                        .await?;
                    Ok(())
                })
            });
        }
        if url.starts_with("postgres") {
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *connection, crate::log::BOUND_IDLE_TRANSACTIONS)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        // SQLite has one writer; on PostgreSQL a few batches at once.
        let writers = if url.starts_with("sqlite:") { 1 } else { 4 };
        let requests = Batcher::start(RequestWindow { pool: pool.clone() }, writers);
        Ok(PlatformStore { pool, requests })
    }

    /// The pool over the platform's tables; the read side keeps its views here too.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // --- org tree -------------------------------------------------------------------------

    /// Adds a node; false if its code exists already.
    pub async fn insert_org(&self, org: &Org, now_ms: i64) -> Result<bool, EventLogError> {
        let result = sqlx::query(
            "INSERT INTO orgs (code, name, parent, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (code) DO NOTHING",
        )
        .bind(&org.code)
        .bind(&org.name)
        .bind(&org.parent)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn org(&self, code: &str) -> Result<Option<Org>, EventLogError> {
        sqlx::query("SELECT code, name, parent FROM orgs WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| org(&row))
            .transpose()
    }

    pub async fn orgs(&self) -> Result<Vec<Org>, EventLogError> {
        sqlx::query("SELECT code, name, parent FROM orgs ORDER BY code")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(org)
            .collect()
    }

    /// Every node's code and parent, read on `connection`: a caller inside a transaction that
    /// holds SQLite's write lock must not wait for a second connection of the pool (the pool's
    /// others may all be waiting for that lock).
    pub async fn org_parents_on(
        connection: &mut sqlx::AnyConnection,
    ) -> Result<Vec<(String, Option<String>)>, EventLogError> {
        let rows = sqlx::query("SELECT code, parent FROM orgs")
            .fetch_all(&mut *connection)
            .await?;
        let mut parents = Vec::with_capacity(rows.len());
        for row in rows {
            parents.push((row.try_get("code")?, row.try_get("parent")?));
        }
        Ok(parents)
    }

    /// The codes of the nodes without a parent (the tops of the org tree), in order.
    pub async fn org_roots(&self) -> Result<Vec<String>, EventLogError> {
        let rows = sqlx::query("SELECT code FROM orgs WHERE parent IS NULL ORDER BY code")
            .fetch_all(&self.pool)
            .await?;
        let mut codes = Vec::with_capacity(rows.len());
        for row in rows {
            codes.push(row.try_get("code")?);
        }
        Ok(codes)
    }

    /// The codes of the org node `root` and of every node below it (a reader's org subtree).
    /// Just `root` when it has no children, or is not a node at all.
    pub async fn org_subtree(&self, root: &str) -> Result<BTreeSet<String>, EventLogError> {
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for org in self.orgs().await? {
            if let Some(parent) = org.parent {
                children.entry(parent).or_default().push(org.code);
            }
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(code) = stack.pop() {
            if let Some(below) = children.get(&code).filter(|_| !seen.contains(&code)) {
                stack.extend(below.iter().cloned());
            }
            seen.insert(code);
        }
        Ok(seen)
    }

    // --- query audit log ------------------------------------------------------------------

    /// Writes one row of the query audit log.
    pub async fn record_query(&self, entry: &QueryAuditEntry<'_>) -> Result<(), EventLogError> {
        sqlx::query(
            "INSERT INTO query_audit (at_ms, token_id, org, path, subjects) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(entry.at_ms)
        .bind(entry.token_id)
        .bind(entry.org)
        .bind(entry.path)
        .bind(entry.subjects.join(","))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- signed senders -------------------------------------------------------------------

    /// Adds a sender; false if its `ei` exists already.
    pub async fn insert_sender(
        &self,
        sender: &SenderRecord,
        now_ms: i64,
    ) -> Result<bool, EventLogError> {
        let result = sqlx::query(
            "INSERT INTO senders (ei, kind, public_key_pem, unit, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ei) DO NOTHING",
        )
        .bind(&sender.ei)
        .bind(&sender.kind)
        .bind(&sender.public_key_pem)
        .bind(&sender.unit)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn senders(&self) -> Result<Vec<SenderRecord>, EventLogError> {
        sqlx::query("SELECT ei, kind, public_key_pem, unit FROM senders ORDER BY ei")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(SenderRecord {
                    ei: row.try_get("ei")?,
                    kind: row.try_get("kind")?,
                    public_key_pem: row.try_get("public_key_pem")?,
                    unit: row.try_get("unit")?,
                })
            })
            .collect()
    }

    // --- API tokens -----------------------------------------------------------------------

    /// Stores a token by the SM3 of its secret; the secret itself is never stored.
    pub async fn insert_token(
        &self,
        token: &TokenRecord,
        secret_sm3: &str,
    ) -> Result<(), EventLogError> {
        sqlx::query(
            "INSERT INTO tokens (id, token_sm3, role, org, scopes, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.id)
        .bind(secret_sm3)
        .bind(&token.role)
        .bind(&token.org)
        .bind(token.scopes.join(","))
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn token_by_secret_sm3(
        &self,
        secret_sm3: &str,
    ) -> Result<Option<TokenRecord>, EventLogError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_sm3 = $1");
        sqlx::query(&sql)
            .bind(secret_sm3)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token)
            .transpose()
    }

    /// Every token, oldest first (never a secret).
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, EventLogError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_ms, id");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token)
            .collect()
    }

    /// Notes a use of `token` at `now_ms` when its last use is older than
    /// [`TOKEN_USE_RESOLUTION_MS`].
    pub async fn note_token_use(
        &self,
        token: &TokenRecord,
        now_ms: i64,
    ) -> Result<(), EventLogError> {
        if token
            .last_used_ms
            .is_some_and(|last| now_ms - last < TOKEN_USE_RESOLUTION_MS)
        {
            return Ok(());
        }
        sqlx::query("UPDATE tokens SET last_used_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(&token.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether any operator token exists (the first one comes from the environment or is
    /// generated at first start).
    pub async fn has_operator_token(&self) -> Result<bool, EventLogError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tokens WHERE role = 'operator'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Revokes a token; false if there is no such (unrevoked) token.
    pub async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, EventLogError> {
        let result =
            sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    // --- anti-replay ----------------------------------------------------------------------

    /// Remembers a request id; false if it was seen before (a replay). Concurrent requests'
    /// ids are inserted together (`crate::batcher`), each answered on its own.
    pub async fn remember_request(
        &self,
        reqid: &str,
        ei: &str,
        now_ms: i64,
    ) -> Result<bool, EventLogError> {
        let seen = SeenRequest {
            reqid: reqid.to_string(),
            ei: ei.to_string(),
            seen_ms: now_ms,
        };
        self.requests
            .write(seen)
            .await
            // Its task ends only with a panic: answered like a closed pool.
            .map_err(|_| EventLogError::Database(sqlx::Error::PoolClosed))?
    }

    /// What the replay window's batched inserts have done.
    pub fn replay_window_stats(&self) -> BatchStats {
        self.requests.stats()
    }

    /// Holds the replay window's inserts back until the hold is dropped (a test forms one
    /// batch with it).
    pub async fn hold_replay_window(&self) -> BatchHold {
        self.requests.hold().await
    }

    /// Forgets request ids seen before `before_ms`; returns how many.
    pub async fn forget_requests_before(&self, before_ms: i64) -> Result<u64, EventLogError> {
        let result = sqlx::query("DELETE FROM seen_requests WHERE seen_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    // --- device heartbeats ----------------------------------------------------------------

    /// Keeps a device's latest heartbeat (JSON text); heartbeats are status, not events.
    pub async fn record_heartbeat(
        &self,
        sbxlh: &str,
        status_json: &str,
        now_ms: i64,
    ) -> Result<(), EventLogError> {
        sqlx::query(
            "INSERT INTO device_status (sbxlh, received_ms, status) VALUES ($1, $2, $3) \
             ON CONFLICT (sbxlh) DO UPDATE SET received_ms = excluded.received_ms, \
             status = excluded.status",
        )
        .bind(sbxlh)
        .bind(now_ms)
        .bind(status_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When each device's latest heartbeat arrived (epoch ms), by device serial.
    pub async fn heartbeat_times(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, EventLogError> {
        sqlx::query("SELECT sbxlh, received_ms FROM device_status")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("sbxlh")?, row.try_get("received_ms")?)))
            .collect()
    }

    /// A device's latest heartbeat: when it arrived and what it said.
    pub async fn heartbeat(&self, sbxlh: &str) -> Result<Option<(i64, String)>, EventLogError> {
        sqlx::query("SELECT received_ms, status FROM device_status WHERE sbxlh = $1")
            .bind(sbxlh)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| Ok((row.try_get("received_ms")?, row.try_get("status")?)))
            .transpose()
    }
}

fn org(row: &AnyRow) -> Result<Org, EventLogError> {
    Ok(Org {
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        parent: row.try_get("parent")?,
    })
}

/// One request id for the replay window.
struct SeenRequest {
    reqid: String,
    ei: String,
    seen_ms: i64,
}

/// The writer of `seen_requests`: `INSERT … ON CONFLICT DO NOTHING RETURNING reqid`, so each
/// id of a batch learns whether it was fresh.
struct RequestWindow {
    pool: AnyPool,
}

impl BatchWrite for RequestWindow {
    type Item = SeenRequest;
    type Answer = Result<bool, EventLogError>;
    type Key = String;
    const MAX: usize = 256;

    fn key(seen: &SeenRequest) -> String {
        seen.reqid.clone()
    }

    async fn write(&self, batch: &[SeenRequest]) -> Result<Vec<Self::Answer>, sqlx::Error> {
        // A padding row repeats a request of the batch: its conflict changes nothing.
        let sql = format!(
            "INSERT INTO seen_requests (reqid, ei, seen_ms) VALUES {} \
             ON CONFLICT (reqid) DO NOTHING RETURNING reqid",
            batcher::values_rows(3, batcher::padded(batch.len()))
        );
        let mut query = sqlx::query(&sql);
        for seen in batcher::padded_items(batch) {
            query = query.bind(&seen.reqid).bind(&seen.ei).bind(seen.seen_ms);
        }
        let fresh = batcher::returned_keys(&query.fetch_all(&self.pool).await?)?;
        Ok(batch
            .iter()
            .map(|seen| Ok(fresh.contains(&seen.reqid)))
            .collect())
    }

    async fn write_one(&self, seen: &SeenRequest) -> Self::Answer {
        let result = sqlx::query(
            "INSERT INTO seen_requests (reqid, ei, seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (reqid) DO NOTHING",
        )
        .bind(&seen.reqid)
        .bind(&seen.ei)
        .bind(seen.seen_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    fn wrote(answer: &Self::Answer) -> bool {
        matches!(answer, Ok(true))
    }
}
