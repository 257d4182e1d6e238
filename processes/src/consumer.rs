//! Running a process manager over the commit-ordered feed, the way a projector runs.
//!
//! A batch is handled in memory: the positions of its aggregates and the [`Handler`]'s rows for
//! them are read first, a few look-ups for the whole batch; the handler reacts to each event
//! (issuing commands through [`Effects`]) and changes its rows; then one transaction writes the
//! rows and the per-aggregate positions (multi-row statements) and the cursor. Reads and writes
//! come in a few statement shapes (`custody_projections::bulk`), as the projectors' do (issue
//! 11: one statement per aggregate and row was most of the process managers' cost). Nothing is recorded before every
//! reaction of the batch has been answered, so a crash (or a failed command) anywhere in a batch
//! replays the whole batch from the same rows: the same reactions, with the same idempotency
//! keys, which the command service answers as duplicates. An event whose aggregate position is
//! already recorded is skipped, so a feed that delivers twice changes nothing either.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use custody_commands::{CommandError, Commands, Outcome};
use custody_domain::{DomainError, EventMetadata};
use custody_eventlog::{Backend, EventLog, EventLogError, Lease, StoredEvent};
use custody_projections::bulk::{self, Cell, OnConflict, Placeholders, Table};
use custody_projections::feed::{Cursor, EventFeed, StoreFeed};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use tokio::sync::{watch, Mutex};

use crate::ProcessError;

/// How long [`Consumer::catch_up`] waits for events that are committed but not yet final in the
/// commit order (an older PostgreSQL transaction still running).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// What a process manager does with events: reacts (commands) and remembers (its own rows).
pub(crate) trait Handler: Send + Sync + 'static {
    /// The rows a batch has read and changed, in memory until the batch is written.
    type Batch: Send;
    /// The process manager's name: its cursor and positions are kept under it.
    const NAME: &'static str;

    /// Whether events of this aggregate type concern it (the others are passed over).
    fn takes(&self, aggregate_type: &str) -> bool;

    fn batch(&self) -> Self::Batch;

    /// Reads the stored rows of the batch's aggregates (`keys`: type and id, distinct, of the
    /// types it takes) into `batch`, before any event is handled.
    fn prefetch(
        &self,
        batch: &mut Self::Batch,
        keys: &[(&str, &str)],
        connection: &mut AnyConnection,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// Reacts to one event and changes the batch's rows. Reactions go through `effects`.
    fn handle(
        &self,
        batch: &mut Self::Batch,
        event: &StoredEvent,
        effects: &Effects<'_>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// Writes the batch's changed rows.
    fn write(
        &self,
        batch: Self::Batch,
        tx: &mut Transaction<'static, Any>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;
}

/// What a command issued by a process manager came to.
#[derive(Debug)]
pub(crate) enum Reaction {
    Appended,
    /// Its idempotency key had already produced the event (a replay).
    Duplicate,
    /// The aggregate refused it (e.g. the document was cancelled meanwhile).
    Refused(DomainError),
}

/// The means a handler reacts with.
pub(crate) struct Effects<'a> {
    pub commands: &'a Commands,
    pub pool: &'a AnyPool,
    /// Test hook: how many more commands may be issued before the run stops as if it crashed.
    budget: Option<&'a AtomicUsize>,
}

impl Effects<'_> {
    /// Runs a command of the platform (sender `platform`), idempotent by `key`.
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        key: String,
        business_serial: Option<String>,
    ) -> Result<Reaction, ProcessError>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        if let Some(budget) = self.budget {
            let left =
                budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if left.is_err() {
                return Err(ProcessError::Interrupted);
            }
        }
        let metadata = platform_metadata(key, business_serial);
        match self.commands.execute::<A>(id, command, metadata).await {
            Ok(Outcome::Appended) => Ok(Reaction::Appended),
            Ok(Outcome::Duplicate(_)) => Ok(Reaction::Duplicate),
            Err(CommandError::Domain(error)) => Ok(Reaction::Refused(error)),
            Err(other) => Err(other.into()),
        }
    }
}

/// The metadata of an event the platform itself decides (SPEC §8: who sent it).
pub(crate) fn platform_metadata(key: String, business_serial: Option<String>) -> EventMetadata {
    EventMetadata {
        business_serial,
        idempotency_key: Some(key),
        sender: "platform".to_string(),
        ..EventMetadata::default()
    }
}

/// Where a process manager stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    pub name: &'static str,
    pub cursor: Cursor,
    /// Events it has handled since it was created.
    pub handled: i64,
    /// Committed events after its cursor.
    pub lag: i64,
    pub updated_ms: i64,
}

pub(crate) struct Consumer<H: Handler> {
    handler: H,
    commands: Arc<Commands>,
    log: EventLog,
    pool: AnyPool,
    /// Held while a batch is handled: the background run and an explicit catch-up take turns.
    gate: Mutex<()>,
    batch_size: usize,
    poll: Duration,
    /// The process managers' lease: a batch runs only while it is held, and its transaction
    /// checks the token.
    lease: Option<Lease>,
}

impl<H: Handler> Consumer<H> {
    /// The consumer, registering its cursor (at the start of the log) if new.
    pub async fn new(
        handler: H,
        commands: Arc<Commands>,
        batch_size: usize,
        poll: Duration,
        lease: Option<Lease>,
    ) -> Result<Self, ProcessError> {
        let log = commands.log().clone();
        let pool = log.platform().pool().clone();
        sqlx::query(
            "INSERT INTO process_cursors (name, cursor_tx, cursor_position, handled, updated_ms) \
             VALUES ($1, 0, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(H::NAME)
        .execute(&pool)
        .await?;
        Ok(Consumer {
            handler,
            commands,
            log,
            pool,
            gate: Mutex::new(()),
            batch_size: batch_size.max(1),
            poll,
            lease,
        })
    }

    pub async fn status(&self) -> Result<ProcessStatus, ProcessError> {
        let row = sqlx::query(
            "SELECT cursor_tx, cursor_position, handled, updated_ms FROM process_cursors \
             WHERE name = $1",
        )
        .bind(H::NAME)
        .fetch_one(&self.pool)
        .await?;
        let cursor = Cursor {
            tx_id: u64::try_from(row.try_get::<i64, _>("cursor_tx")?).unwrap_or(0),
            position: row.try_get("cursor_position")?,
        };
        Ok(ProcessStatus {
            name: H::NAME,
            cursor,
            handled: row.try_get("handled")?,
            lag: events_after(&self.log, cursor).await?,
            updated_ms: row.try_get("updated_ms")?,
        })
    }

    async fn cursor(&self) -> Result<Cursor, ProcessError> {
        let row =
            sqlx::query("SELECT cursor_tx, cursor_position FROM process_cursors WHERE name = $1")
                .bind(H::NAME)
                .fetch_one(&self.pool)
                .await?;
        Ok(Cursor {
            tx_id: u64::try_from(row.try_get::<i64, _>("cursor_tx")?).unwrap_or(0),
            position: row.try_get("cursor_position")?,
        })
    }

    /// Handles every event committed before the call (waiting, if need be, until the commit
    /// order has made them final). With a budget, stops with [`ProcessError::Interrupted`] when a
    /// command would exceed it, recording nothing of the batch in hand: what a crash at that point
    /// leaves behind. Answers how many events it handled.
    pub async fn catch_up(&self, budget: Option<&AtomicUsize>) -> Result<usize, ProcessError> {
        let _gate = self.gate.lock().await;
        let Some(target) = head(&self.log).await? else {
            return Ok(0);
        };
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        let mut handled = 0;
        loop {
            let cursor = self.cursor().await?;
            if cursor >= target {
                return Ok(handled);
            }
            let mut page = self
                .log
                .tail_committed(cursor.into(), self.batch_size)
                .await?;
            self.log
                .open_personal_data(page.iter_mut().map(|c| &mut c.event))
                .await?;
            if page.is_empty() {
                // Committed, but an older PostgreSQL transaction is still running.
                if Instant::now() >= deadline {
                    return Err(ProcessError::Timeout(H::NAME, CATCH_UP_LIMIT));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let events: Vec<(Cursor, &StoredEvent)> = page
                .iter()
                .map(|committed| (committed.commit.into(), &committed.event))
                .collect();
            handled += self.process(&events, budget).await?;
        }
    }

    /// Follows the feed until `shutdown`. A batch that fails is retried as it is, never skipped.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        let mut lease = self.lease.clone();
        while !*shutdown.borrow() {
            if let Some(lease) = lease.as_mut() {
                if lease.token().is_none() {
                    tokio::select! {
                        _ = lease.acquired() => {},
                        _ = shutdown.changed() => return,
                    }
                }
            }
            // From the recorded cursor each time: an explicit catch-up (or another instance,
            // before this one took the lease) may have moved it.
            let cursor = match self.cursor().await {
                Ok(cursor) => cursor,
                Err(error) => {
                    tracing::warn!(process = H::NAME, %error, "cannot read the cursor; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let mut feed = StoreFeed::new(self.log.clone(), cursor).with_poll_interval(self.poll);
            let items = tokio::select! {
                batch = feed.next(self.batch_size, Duration::from_millis(500)) => match batch {
                    Ok(items) => items,
                    Err(error) => {
                        tracing::warn!(process = H::NAME, %error, "feed failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            if items.is_empty() {
                continue;
            }
            let mut items = items;
            if let Err(error) = self
                .log
                .open_personal_data(items.iter_mut().map(|item| &mut item.event))
                .await
            {
                // The cursor has not moved: the next turn reads the batch again.
                tracing::warn!(process = H::NAME, %error, "cannot open the batch's personal data");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let events: Vec<(Cursor, &StoredEvent)> = items
                .iter()
                .map(|item| (item.cursor, &item.event))
                .collect();
            loop {
                let outcome = {
                    let _gate = self.gate.lock().await;
                    self.process(&events, None).await
                };
                match outcome {
                    Ok(_) => break,
                    // The next round waits for the lease again; the batch is another's now.
                    Err(
                        ProcessError::NotHolder(_)
                        | ProcessError::Store(EventLogError::Fenced { .. }),
                    ) => {
                        tracing::warn!(process = H::NAME, "the process managers' lease is gone");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(process = H::NAME, %error, "batch failed; retrying it");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {},
                            _ = shutdown.changed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            backoff = Duration::from_millis(50);
            drop(events);
            for item in items {
                // The store feed has nothing to acknowledge; its position is our cursor.
                if let Err(error) = item.ack().await {
                    tracing::warn!(process = H::NAME, %error, "ack failed");
                }
            }
        }
    }

    /// Handles a batch (the caller holds the gate): reactions first, then one transaction with the
    /// rows, the positions and the cursor.
    async fn process(
        &self,
        events: &[(Cursor, &StoredEvent)],
        budget: Option<&AtomicUsize>,
    ) -> Result<usize, ProcessError> {
        let Some(last) = events.iter().map(|(cursor, _)| *cursor).max() else {
            return Ok(0);
        };
        // Before any reaction: a non-holder issues no command.
        let fence = crate::held(self.lease.as_ref())?;
        let effects = Effects {
            commands: &self.commands,
            pool: &self.pool,
            budget,
        };
        let mut batch = self.handler.batch();
        let mut keys: Vec<(&str, &str)> = events
            .iter()
            .filter(|(_, event)| self.handler.takes(&event.aggregate_type))
            .map(|(_, event)| (event.aggregate_type.as_str(), event.aggregate_id.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // (type, id) → (position recorded, position reached in this batch)
        let mut positions: HashMap<(String, String), (i64, i64)> = {
            let mut connection = self.pool.acquire().await?;
            let recorded = positions(&mut connection, H::NAME, &keys).await?;
            self.handler
                .prefetch(&mut batch, &keys, &mut connection)
                .await?;
            keys.iter()
                .map(|&(kind, id)| {
                    let key = (kind.to_string(), id.to_string());
                    let at = recorded.get(&key).copied().unwrap_or(0);
                    (key, (at, at))
                })
                .collect()
        };
        let mut handled = 0;
        for (_, event) in events {
            if !self.handler.takes(&event.aggregate_type) {
                continue;
            }
            let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
            let reached = positions.get(&key).map_or(0, |(_, reached)| *reached);
            if event.sequence <= reached {
                continue;
            }
            if event.sequence > reached + 1 {
                // A feed that lost events: handle the missing ones first, in order.
                let history = self
                    .log
                    .opened_events_of(&event.aggregate_type, &event.aggregate_id)
                    .await?;
                for missing in history
                    .iter()
                    .filter(|e| e.sequence > reached && e.sequence < event.sequence)
                {
                    self.handler.handle(&mut batch, missing, &effects).await?;
                    handled += 1;
                }
            }
            self.handler.handle(&mut batch, event, &effects).await?;
            handled += 1;
            if let Some(entry) = positions.get_mut(&key) {
                entry.1 = event.sequence;
            }
        }

        let mut tx: Transaction<'static, Any> = self.pool.begin().await?;
        // Write first, so the transaction holds SQLite's write lock before it reads.
        let now_ms = chrono::Utc::now().timestamp_millis();
        sqlx::query(
            "UPDATE process_cursors SET handled = handled + $1, updated_ms = $2 WHERE name = $3",
        )
        .bind(i64::try_from(handled).unwrap_or(i64::MAX))
        .bind(now_ms)
        .bind(H::NAME)
        .execute(&mut *tx)
        .await?;
        if let Some((lease, token)) = fence {
            custody_eventlog::fence(&mut tx, lease, token).await?;
        }
        let row =
            sqlx::query("SELECT cursor_tx, cursor_position FROM process_cursors WHERE name = $1")
                .bind(H::NAME)
                .fetch_one(&mut *tx)
                .await?;
        let current = Cursor {
            tx_id: u64::try_from(row.try_get::<i64, _>("cursor_tx")?).unwrap_or(0),
            position: row.try_get("cursor_position")?,
        };
        // Never backwards: a background batch may end where an explicit catch-up went past.
        let next = current.max(last);
        sqlx::query(
            "UPDATE process_cursors SET cursor_tx = $1, cursor_position = $2 WHERE name = $3",
        )
        .bind(i64::try_from(next.tx_id).unwrap_or(i64::MAX))
        .bind(next.position)
        .bind(H::NAME)
        .execute(&mut *tx)
        .await?;
        let moved: Vec<bulk::Row> = positions
            .into_iter()
            .filter(|(_, (recorded, reached))| reached > recorded)
            .map(|((aggregate_type, aggregate_id), (_, reached))| {
                vec![
                    Cell::from(H::NAME),
                    aggregate_type.into(),
                    aggregate_id.into(),
                    reached.into(),
                ]
            })
            .collect();
        write_rows(&mut tx, &POSITIONS, moved).await?;
        self.handler.write(batch, &mut tx).await?;
        tx.commit().await?;
        Ok(handled)
    }
}

/// The last event committed so far in the commit order, final or not.
async fn head(log: &EventLog) -> Result<Option<Cursor>, ProcessError> {
    Ok(match log.backend() {
        Backend::Postgres(pool) => {
            // Ordered by the column: a bare `tx_id` would be the text output column.
            let row = sqlx::query(
                "SELECT tx_id::text AS commit_tx, global_position FROM events \
                 ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?;
            match row {
                None => None,
                Some(row) => {
                    let tx: String = row.try_get("commit_tx")?;
                    Some(Cursor {
                        tx_id: parse_xid(&tx)?,
                        position: row.try_get("global_position")?,
                    })
                }
            }
        }
        Backend::Sqlite(pool) => {
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(global_position) FROM events")
                .fetch_one(pool)
                .await?;
            // SQLite's position is the commit order and serves as both halves of the cursor.
            max.map(|position| Cursor {
                tx_id: u64::try_from(position).unwrap_or(0),
                position,
            })
        }
    })
}

/// Committed events after `cursor` in the commit order, whether or not they are final yet.
pub(crate) async fn events_after(log: &EventLog, cursor: Cursor) -> Result<i64, ProcessError> {
    Ok(match log.backend() {
        Backend::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2)",
            )
            .bind(cursor.tx_id.to_string())
            .bind(cursor.position)
            .fetch_one(pool)
            .await?
        }
        Backend::Sqlite(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE global_position > ?")
                .bind(cursor.position)
                .fetch_one(pool)
                .await?
        }
    })
}

const POSITIONS: Table = Table {
    name: "process_positions",
    columns: &["process", "aggregate_type", "aggregate_id", "sequence"],
    key: &["process", "aggregate_type", "aggregate_id"],
    on_conflict: OnConflict::Update,
};

/// The last sequence a process manager has handled of each of the aggregates `keys` (type and
/// id, sorted) that has one: one look-up per aggregate type and few hundred ids.
async fn positions(
    connection: &mut AnyConnection,
    process: &str,
    keys: &[(&str, &str)],
) -> Result<HashMap<(String, String), i64>, ProcessError> {
    let mut found = HashMap::new();
    for same in keys.chunk_by(|a, b| a.0 == b.0) {
        let ids: Vec<&str> = same.iter().map(|(_, id)| *id).collect();
        let rows = select_in(
            connection,
            "aggregate_type, aggregate_id, sequence FROM process_positions",
            &[("process", process), ("aggregate_type", same[0].0)],
            "aggregate_id",
            &ids,
        )
        .await?;
        for row in rows {
            found.insert(
                (row.try_get("aggregate_type")?, row.try_get("aggregate_id")?),
                row.try_get("sequence")?,
            );
        }
    }
    Ok(found)
}

/// `SELECT {what} WHERE` the `equal` columns have their values `AND {key} IN (ids)`: a
/// handler's rows for a batch, in a few statements of a few shapes
/// (`custody_projections::bulk::lookup_chunks`). By the whole primary key, so each is an index
/// look-up.
pub(crate) async fn select_in(
    connection: &mut AnyConnection,
    what: &str,
    equal: &[(&str, &str)],
    key: &str,
    ids: &[&str],
) -> Result<Vec<AnyRow>, ProcessError> {
    let placeholders = Placeholders::of(connection);
    let mut rows = Vec::new();
    for chunk in bulk::lookup_chunks(ids) {
        let mut sql = format!("SELECT {what} WHERE ");
        for (n, (column, _)) in equal.iter().enumerate() {
            sql.push_str(column);
            sql.push_str(" = ");
            placeholders.write(&mut sql, n + 1);
            sql.push_str(" AND ");
        }
        sql.push_str(key);
        sql.push_str(" IN (");
        sql.push_str(&placeholders.list(equal.len() + 1, chunk.len()));
        sql.push(')');
        let mut query = sqlx::query(&sql);
        for (_, value) in equal {
            query = query.bind(*value);
        }
        for id in chunk {
            query = query.bind(*id);
        }
        rows.extend(query.fetch_all(&mut *connection).await?);
    }
    Ok(rows)
}

/// Writes a batch's changed rows of `table` (distinct keys) in the batch's transaction.
pub(crate) async fn write_rows(
    tx: &mut Transaction<'static, Any>,
    table: &Table,
    mut rows: Vec<bulk::Row>,
) -> Result<(), ProcessError> {
    bulk::sort_by_key(table, &mut rows);
    bulk::insert(tx, table, &rows).await?;
    Ok(())
}

/// An xid8 read as text (sqlx has no binary mapping for it).
fn parse_xid(text: &str) -> Result<u64, ProcessError> {
    text.parse()
        .map_err(|_| ProcessError::Decode(format!("xid8 {text:?}")))
}
