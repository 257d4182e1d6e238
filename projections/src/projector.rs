//! A projector applies the feed to one projection's view.
//!
//! Each batch is one database transaction that loads the last sequence the view has applied for
//! each aggregate of the batch (and, for aggregate views, the aggregate), then per event skips
//! what is already applied and fills any gap from the event store in order (a [`Fold`], in
//! memory), writes the changed rows and sequences with multi-row statements, records the feed
//! cursor and commits, and only then acks the batch. So a feed that loses, repeats or reorders
//! events, or a crash between commit and ack, can neither double nor drop anything.
//!
//! A rebuild folds the whole log into a fresh generation in memory, writing rows in bulk, then
//! catches up batch by batch like the live projector and swaps readers over (see
//! [`Projector::rebuild`]).

use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use custody_eventlog::{Backend, EventLog, EventLogError, Lease, StoredEvent};
use sqlx::{Any, AnyPool, Row as _, Transaction};
use tokio::sync::Mutex;

use crate::bulk::{self, Row, Table};
use crate::feed::{Cursor, EventFeed, FeedItem};
use crate::lag::{LagHistogram, LagSummary};
use crate::scan::{self, ScannedEvent};
use crate::stats::OrgTree;
use crate::views::{EventRef, Fold, Projection};
use crate::ProjectionError;

/// Events per page a rebuild reads from the store while it folds in memory.
const REBUILD_PAGE: usize = 5_000;
/// The page cache of a rebuild's writing connection on SQLite (negative: KiB), 64 MiB.
const SQLITE_WRITER_CACHE: &str = "PRAGMA cache_size = -65536";
/// Rows per transaction when a rebuild writes what it folded.
const ROWS_PER_TRANSACTION: usize = 10_000;

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub active_generation: i64,
    pub cursor: Cursor,
    pub applied: i64,
    pub updated_ms: i64,
}

/// Progress of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebuildProgress {
    pub events: u64,
    pub total: u64,
    pub elapsed: Duration,
}

impl RebuildProgress {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone)]
pub struct Projector {
    projection: Projection,
    log: EventLog,
    pool: AnyPool,
    /// Held while a batch is applied; a rebuild holds it for its final catch-up and swap.
    gate: Arc<Mutex<()>>,
    /// Lag of every event applied live: commit time − `recorded_at`.
    lag: Arc<SyncMutex<LagHistogram>>,
}

impl Projector {
    /// The projector of `projection`, registering it (generation 1, at the start) if new.
    pub async fn new(log: EventLog, projection: Projection) -> Result<Projector, ProjectionError> {
        let pool = log.platform().pool().clone();
        sqlx::query(
            "INSERT INTO projections (name, active_generation, cursor_tx, cursor_position, \
             applied, updated_ms) VALUES ($1, 1, 0, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(projection.name())
        .execute(&pool)
        .await?;
        Ok(Projector {
            projection,
            log,
            pool,
            gate: Arc::new(Mutex::new(())),
            lag: Arc::new(SyncMutex::new(LagHistogram::default())),
        })
    }

    pub fn projection(&self) -> Projection {
        self.projection
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub async fn status(&self) -> Result<ProjectionStatus, ProjectionError> {
        status(&self.pool, self.projection).await
    }

    /// Projection lag (commit time − the event's `recorded_at`) of the events applied live since
    /// this projector started.
    pub fn lag(&self) -> LagSummary {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).summary()
    }

    /// Applies a batch from a feed and acks it after the commit.
    pub async fn apply(&self, items: Vec<FeedItem>) -> Result<usize, ProjectionError> {
        let applied = self.commit(&items).await?;
        for item in items {
            item.ack().await?;
        }
        Ok(applied)
    }

    /// Writes a batch to the view in one transaction; acking is the caller's (a crash between
    /// the two is what the projector must survive).
    pub async fn commit(&self, items: &[FeedItem]) -> Result<usize, ProjectionError> {
        self.commit_fenced(items, None).await
    }

    /// As [`Projector::commit`], the transaction also checking that the worker lease `fence`
    /// (name, token) was not taken by another instance since (docs/scaling.md).
    pub async fn commit_fenced(
        &self,
        items: &[FeedItem],
        fence: Option<(&str, i64)>,
    ) -> Result<usize, ProjectionError> {
        if items.is_empty() {
            return Ok(0);
        }
        let _gate = self.gate.lock().await;
        let mut opened: Vec<StoredEvent> = items.iter().map(|item| item.event.clone()).collect();
        self.log.open_personal_data(&mut opened).await?;
        let events: Vec<(Cursor, EventRef)> = items
            .iter()
            .zip(&opened)
            .map(|(item, event)| (item.cursor, EventRef::from(event)))
            .collect();
        let (applied, recorded) = self
            .apply_in_transaction(None, &events, Some(fence))
            .await?;
        self.record_lag(recorded);
        Ok(applied)
    }

    /// The gate a batch holds while it is applied (a group holds every projector's).
    pub(crate) fn gate(&self) -> &Mutex<()> {
        &self.gate
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies opened events live, in a transaction of its own fenced by `fence`; the caller
    /// holds the gate. The `recorded_at` of the events applied.
    pub(crate) async fn apply_live(
        &self,
        events: &[(Cursor, EventRef<'_>)],
        fence: Option<(&str, i64)>,
    ) -> Result<Vec<i64>, ProjectionError> {
        Ok(self
            .apply_in_transaction(None, events, Some(fence))
            .await?
            .1)
    }

    /// As [`Projector::apply_live`], in the caller's transaction, which the caller fences.
    pub(crate) async fn apply_live_on(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[(Cursor, EventRef<'_>)],
    ) -> Result<(usize, Vec<i64>), ProjectionError> {
        self.apply_on(tx, None, events, Some(None)).await
    }

    /// Records the lag of events applied live and committed now (their `recorded_at`, epoch ms).
    pub(crate) fn record_lag(&self, recorded: Vec<i64>) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut lag = self.lag.lock().unwrap_or_else(|p| p.into_inner());
        for recorded in recorded {
            lag.record(now - recorded);
        }
    }

    /// Consumes `feed` until `shutdown` says stop. A batch that fails is retried as it is, never
    /// skipped: the store feed's cursor has already moved past it.
    pub async fn run<F: EventFeed>(&self, feed: F, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut unfenced = None;
        self.run_while(feed, shutdown, &mut unfenced).await;
    }

    /// As [`Projector::run`], while this instance holds `lease` with `token`: returns when the
    /// lease is lost (or a batch is fenced off) or at shutdown. Every batch is fenced.
    pub async fn run_leased<F: EventFeed>(
        &self,
        feed: F,
        shutdown: tokio::sync::watch::Receiver<bool>,
        lease: &mut Lease,
        token: i64,
    ) {
        let mut leased = Some((lease, token));
        self.run_while(feed, shutdown, &mut leased).await;
    }

    async fn run_while<F: EventFeed>(
        &self,
        mut feed: F,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        lease: &mut Option<(&mut Lease, i64)>,
    ) {
        let mut backoff = Duration::from_millis(50);
        let fence = lease
            .as_ref()
            .map(|(lease, token)| (lease.name().to_string(), *token));
        let fence = fence.as_ref().map(|(name, token)| (name.as_str(), *token));
        let lost = async {
            match lease {
                Some((lease, token)) => lease.lost(*token).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(lost);
        while !*shutdown.borrow() {
            let items = tokio::select! {
                () = &mut lost => return,
                batch = feed.next(500, Duration::from_millis(500)) => match batch {
                    Ok(items) => items,
                    Err(error) => {
                        tracing::warn!(projection = self.projection.name(), %error, "feed failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            loop {
                match self.commit_fenced(&items, fence).await {
                    Ok(_) => break,
                    Err(ProjectionError::Store(EventLogError::Fenced { lease, token })) => {
                        tracing::warn!(
                            projection = self.projection.name(),
                            lease,
                            token,
                            "another instance took the projectors' lease; stopping"
                        );
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(projection = self.projection.name(), %error, "projector batch failed; retrying it");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {},
                            _ = shutdown.changed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            backoff = Duration::from_millis(50);
            for item in items {
                if let Err(error) = item.ack().await {
                    // Unacked messages come again; the view skips what it has.
                    tracing::warn!(projection = self.projection.name(), %error, "ack failed");
                }
            }
        }
    }

    /// Applies `events` in one transaction: a fold over the rows and positions the generation
    /// has for their aggregates, written back with multi-row statements. The events applied and
    /// the `recorded_at` (epoch ms) of each.
    /// `generation`: a rebuild's own (None: the active one, read under the projection's row
    /// lock). `live`: the live path (Some, with the lease fence if any) records the cursor; a
    /// rebuild's generation (None) does not.
    async fn apply_in_transaction(
        &self,
        generation: Option<i64>,
        events: &[(Cursor, EventRef<'_>)],
        live: Option<Option<(&str, i64)>>,
    ) -> Result<(usize, Vec<i64>), ProjectionError> {
        let mut tx: Transaction<'static, Any> = self.pool.begin().await?;
        let outcome = self.apply_on(&mut tx, generation, events, live).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The work of [`Projector::apply_in_transaction`], in the caller's transaction: the live
    /// path of a [`ProjectorGroup`] runs every projection's in one.
    async fn apply_on(
        &self,
        tx: &mut Transaction<'static, Any>,
        generation: Option<i64>,
        events: &[(Cursor, EventRef<'_>)],
        live: Option<Option<(&str, i64)>>,
    ) -> Result<(usize, Vec<i64>), ProjectionError> {
        // Write first, so the transaction holds the write lock before it reads: on SQLite a
        // reading transaction that later writes fails at once if another writer went between.
        // The row lock also orders this batch with a rebuild's swap (in this instance or
        // another, whose gate does not cover this one): the active generation and the cursor
        // read here stay what they are until the commit.
        let row = sqlx::query(
            "UPDATE projections SET updated_ms = $1 WHERE name = $2 \
             RETURNING active_generation, cursor_tx, cursor_position",
        )
        .bind(chrono::Utc::now().timestamp_millis())
        .bind(self.projection.name())
        .fetch_one(&mut **tx)
        .await?;
        let active: i64 = row.try_get("active_generation")?;
        let stored_cursor = Cursor {
            tx_id: row.try_get::<i64, _>("cursor_tx")? as u64,
            position: row.try_get("cursor_position")?,
        };
        if let Some(Some((lease, token))) = live {
            custody_eventlog::fence(tx, lease, token).await?;
        }
        let generation = generation.unwrap_or(active);
        let mut fold = Fold::new(self.projection, generation).measuring();
        fold.load(tx, &self.log, events.iter().map(|(_, event)| event))
            .await?;
        let mut applied = 0;
        for (_, event) in events {
            applied += fold.apply(event, &self.log).await?;
        }
        fold.write(tx, &self.log).await?;
        if live.is_some() {
            let last = events
                .iter()
                .map(|(cursor, _)| *cursor)
                .max()
                .unwrap_or_default();
            // Never backwards: a rebuild's swap may have set it past this batch.
            let next = stored_cursor.max(last);
            sqlx::query(
                "UPDATE projections SET cursor_tx = $1, cursor_position = $2, \
                 applied = applied + $3 WHERE name = $4",
            )
            .bind(next.tx_id as i64)
            .bind(next.position)
            .bind(applied as i64)
            .bind(self.projection.name())
            .execute(&mut **tx)
            .await?;
        }
        Ok((applied, fold.take_recorded()))
    }

    /// Builds a fresh generation of the view from the whole event store while the current one
    /// keeps serving, then swaps readers to it and drops the old one.
    ///
    /// 1. The new generation is emptied, and the log is folded into it in memory from the start
    ///    (`fold_log`: [`Fold`]s apply aggregates with the aggregate's own `apply` and make
    ///    derived rows with the same functions as the live path), `REBUILD_PAGE` events per
    ///    read; rows are written with multi-row statements, `ROWS_PER_TRANSACTION` rows per
    ///    transaction: derived rows as they accumulate, aggregates and positions when the store
    ///    has no more.
    /// 2. Then what came meanwhile is applied like the live projector does, `batch` events per
    ///    transaction, while the live projector goes on with the old generation.
    /// 3. Last, holding the projector's gate (so no live batch runs), the rest is applied and
    ///    readers are swapped to the new generation in one update; the old one is dropped.
    pub async fn rebuild(
        &self,
        batch: usize,
        mut progress: impl FnMut(RebuildProgress),
    ) -> Result<RebuildProgress, ProjectionError> {
        let started = Instant::now();
        let batch = batch.max(1);
        let old = self.status().await?.active_generation;
        let generation = old + 1;
        self.drop_generation(generation).await?;
        let total = self.log.count().await?.max(0) as u64;
        let report = |events: u64| RebuildProgress {
            events,
            total: total.max(events),
            elapsed: started.elapsed(),
        };
        // 1. Fold from nothing into the empty generation (see `fold_log`).
        let mut phases = Phases::default();
        let clock = Instant::now();
        let (mut cursor, folded) = self
            .fold_log(generation, REBUILD_PAGE.max(batch), &mut phases, |n| {
                progress(report(n))
            })
            .await?;
        phases.fold_and_write = clock.elapsed();
        let mut events = folded;
        // 2. Catch up while the live projector goes on; then once more, alone, and swap.
        let clock = Instant::now();
        loop {
            let page = scan::read_committed(&self.log, cursor, batch).await?;
            if page.is_empty() {
                break;
            }
            cursor = self.apply_page(generation, &page).await?;
            events += page.len() as u64;
            progress(report(events));
        }
        phases.catch_up = clock.elapsed();
        let clock = Instant::now();
        {
            let _gate = self.gate.lock().await;
            loop {
                let page = scan::read_committed(&self.log, cursor, batch).await?;
                if page.is_empty() {
                    break;
                }
                cursor = self.apply_page(generation, &page).await?;
                events += page.len() as u64;
            }
            sqlx::query(
                "UPDATE projections SET active_generation = $1, cursor_tx = $2, \
                 cursor_position = $3, updated_ms = $4 WHERE name = $5",
            )
            .bind(generation)
            .bind(cursor.tx_id as i64)
            .bind(cursor.position)
            .bind(chrono::Utc::now().timestamp_millis())
            .bind(self.projection.name())
            .execute(&self.pool)
            .await?;
        }
        phases.swap = clock.elapsed();
        let clock = Instant::now();
        self.drop_generation(old).await?;
        phases.drop = clock.elapsed();
        tracing::info!(
            projection = self.projection.name(),
            generation,
            folded,
            caught_up = events - folded,
            fold_and_write_ms = phases.fold_and_write.as_millis() as u64,
            waiting_for_store_ms = phases.read_wait.as_millis() as u64,
            waiting_for_folds_ms = phases.fold_wait.as_millis() as u64,
            write_tail_ms = phases.write_tail.as_millis() as u64,
            catch_up_ms = phases.catch_up.as_millis() as u64,
            swap_ms = phases.swap.as_millis() as u64,
            drop_old_ms = phases.drop.as_millis() as u64,
            "rebuilt"
        );
        let done = report(events);
        progress(done);
        Ok(done)
    }

    /// Folds the whole log (as far as the store has it) into `generation`, which must be empty,
    /// and writes what it made; the position folded to and the number of events read.
    ///
    /// One task reads pages ahead ([`PageReader`]); this one deals each page's events by
    /// aggregate id to `fold_shards()` folding tasks ([`FoldShard`], each with a [`Fold`] of
    /// its own: an aggregate's events stay in order, in one fold), which hand the rows they make
    /// to one writing task ([`RowWriter`]). So the store's work, decoding and folding, and the
    /// writes overlap. When the store has no more, each fold writes out its aggregates and
    /// positions.
    async fn fold_log(
        &self,
        generation: i64,
        page: usize,
        phases: &mut Phases,
        mut progress: impl FnMut(u64),
    ) -> Result<(Cursor, u64), ProjectionError> {
        let mut pages = PageReader::start(self.log.clone(), Cursor::START, page);
        // SQLite has one writer at a time; PostgreSQL inserts on two connections side by side.
        let writers = match self.log.backend() {
            Backend::Postgres(_) => 2,
            Backend::Sqlite(_) => 1,
        };
        // The stats projection places units in the org tree: read once, for every fold.
        let orgs = match self.projection {
            Projection::Stats => Some(Arc::new(OrgTree::load(&self.log).await?)),
            _ => None,
        };
        let writer = RowWriter::start(self.pool.clone(), writers);
        // The stats fold counts a document for its holder's unit, a Person aggregate's: it
        // needs both aggregates' events, so it folds in one shard.
        let shards = match self.projection {
            Projection::Stats => 1,
            _ => fold_shards(),
        };
        let mut shards: Vec<FoldShard> = (0..shards)
            .map(|_| {
                let fold = Fold::new(self.projection, generation).placing_in(orgs.clone());
                FoldShard::start(fold, self.log.clone(), writer.sink())
            })
            .collect();
        let mut cursor = Cursor::START;
        let mut events = 0u64;
        let dealt: Result<(), ProjectionError> = async {
            loop {
                let clock = Instant::now();
                let Some(page) = pages.next().await? else {
                    return Ok(());
                };
                phases.read_wait += clock.elapsed();
                if let Some(last) = page.last() {
                    cursor = last.commit;
                }
                events += page.len() as u64;
                let mut parts: Vec<Vec<ScannedEvent>> = shards.iter().map(|_| Vec::new()).collect();
                for event in page {
                    let shard = shard_of(&event.aggregate_id, parts.len());
                    parts[shard].push(event);
                }
                let clock = Instant::now();
                for (shard, part) in shards.iter_mut().zip(parts) {
                    shard.send(part).await?;
                }
                phases.fold_wait += clock.elapsed();
                progress(events);
            }
        }
        .await;
        drop(pages);
        let clock = Instant::now();
        let mut folded = dealt;
        for shard in shards {
            let done = shard.finish().await;
            if folded.is_ok() {
                folded = done;
            }
        }
        // The writer's own error, if it failed, says more than a fold's "writer stopped".
        writer.finish().await?;
        folded?;
        phases.write_tail = clock.elapsed();
        Ok((cursor, events))
    }

    async fn apply_page(
        &self,
        generation: i64,
        page: &[ScannedEvent],
    ) -> Result<Cursor, ProjectionError> {
        let events: Vec<(Cursor, EventRef)> = page
            .iter()
            .map(|scanned| (scanned.commit, scanned.as_event()))
            .collect();
        self.apply_in_transaction(Some(generation), &events, None)
            .await?;
        Ok(events.last().map(|(c, _)| *c).unwrap_or_default())
    }

    async fn drop_generation(&self, generation: i64) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        for table in self.projection.tables() {
            sqlx::query(&format!("DELETE FROM {table} WHERE generation = $1"))
                .bind(generation)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM projection_positions WHERE projection = $1 AND generation = $2")
            .bind(self.projection.name())
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The status of a projection, read from the database.
pub async fn status(
    pool: &AnyPool,
    projection: Projection,
) -> Result<ProjectionStatus, ProjectionError> {
    let row = sqlx::query(
        "SELECT active_generation, cursor_tx, cursor_position, applied, updated_ms \
         FROM projections WHERE name = $1",
    )
    .bind(projection.name())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) => ProjectionStatus {
            name: projection.name(),
            active_generation: row.try_get("active_generation")?,
            cursor: Cursor {
                tx_id: row.try_get::<i64, _>("cursor_tx")? as u64,
                position: row.try_get("cursor_position")?,
            },
            applied: row.try_get("applied")?,
            updated_ms: row.try_get("updated_ms")?,
        },
        None => ProjectionStatus {
            name: projection.name(),
            active_generation: 1,
            cursor: Cursor::START,
            applied: 0,
            updated_ms: 0,
        },
    })
}

/// Where a rebuild's time went.
#[derive(Debug, Default)]
struct Phases {
    /// The fold from nothing: reading, folding and writing, overlapped.
    fold_and_write: Duration,
    /// Of which the reader kept the dealer waiting for the next page.
    read_wait: Duration,
    /// Of which the folds kept the dealer waiting to take a page.
    fold_wait: Duration,
    /// Of which the rows and positions were still being written after the last page was dealt.
    write_tail: Duration,
    catch_up: Duration,
    swap: Duration,
    drop: Duration,
}

/// Reads the log in commit order one page ahead of its consumer, in a task of its own, so that
/// the store's work (and the decoding of rows) overlaps the fold. Stops at the first empty page.
struct PageReader {
    pages: tokio::sync::mpsc::Receiver<Result<Vec<ScannedEvent>, ProjectionError>>,
    task: tokio::task::JoinHandle<()>,
}

impl PageReader {
    fn start(log: EventLog, after: Cursor, page: usize) -> PageReader {
        let (sender, pages) = tokio::sync::mpsc::channel(2);
        let task = tokio::spawn(async move {
            let mut cursor = after;
            loop {
                match scan::read_committed(&log, cursor, page).await {
                    Ok(events) => {
                        let Some(last) = events.last() else { return };
                        cursor = last.commit;
                        if sender.send(Ok(events)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        PageReader { pages, task }
    }

    /// The next page, or None once the store had no more.
    async fn next(&mut self) -> Result<Option<Vec<ScannedEvent>>, ProjectionError> {
        self.pages.recv().await.transpose()
    }
}

impl Drop for PageReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many folds a rebuild runs side by side: one per core, at most four.
fn fold_shards() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
}

/// The fold an aggregate's events go to (FNV-1a of its id).
fn shard_of(aggregate_id: &str, shards: usize) -> usize {
    let hash = aggregate_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % shards.max(1) as u64) as usize
}

/// One of a rebuild's folds, in a task of its own: it applies the events dealt to it, hands
/// derived rows to the writer as they accumulate, and at the end all it holds.
struct FoldShard {
    events: Option<tokio::sync::mpsc::Sender<Vec<ScannedEvent>>>,
    task: tokio::task::JoinHandle<Result<(), ProjectionError>>,
}

impl FoldShard {
    fn start(mut fold: Fold, log: EventLog, rows: RowSink) -> FoldShard {
        let (sender, mut events) = tokio::sync::mpsc::channel::<Vec<ScannedEvent>>(2);
        let task = tokio::spawn(async move {
            while let Some(part) = events.recv().await {
                for event in &part {
                    fold.apply(&event.as_event(), &log).await?;
                }
                if fold.pending_rows() >= ROWS_PER_TRANSACTION {
                    if let Some((table, mut chunk)) = fold.take_rows() {
                        crate::personal::seal_rows(&log, table, &mut chunk, None).await?;
                        rows.write(table, chunk).await?;
                    }
                }
            }
            while let Some((table, mut chunk)) = fold.drain(ROWS_PER_TRANSACTION)? {
                crate::personal::seal_rows(&log, table, &mut chunk, None).await?;
                rows.write(table, chunk).await?;
            }
            Ok(())
        });
        FoldShard {
            events: Some(sender),
            task,
        }
    }

    async fn send(&mut self, part: Vec<ScannedEvent>) -> Result<(), ProjectionError> {
        let sent = match &self.events {
            Some(events) => events.send(part).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The task stopped early: it failed.
        self.events = None;
        joined(&mut self.task).await?;
        Err(ProjectionError::Decode("rebuild fold stopped".into()))
    }

    /// Waits until the fold has applied everything sent and handed over all it made.
    async fn finish(mut self) -> Result<(), ProjectionError> {
        self.events = None;
        joined(&mut self.task).await
    }
}

impl Drop for FoldShard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn joined(
    task: &mut tokio::task::JoinHandle<Result<(), ProjectionError>>,
) -> Result<(), ProjectionError> {
    task.await
        .map_err(|e| ProjectionError::Decode(format!("rebuild task: {e}")))?
}

/// A handle to send rows to a [`RowWriter`].
#[derive(Clone)]
struct RowSink(tokio::sync::mpsc::Sender<(&'static Table, Vec<Row>)>);

impl RowSink {
    async fn write(&self, table: &'static Table, rows: Vec<Row>) -> Result<(), ProjectionError> {
        self.0
            .send((table, rows))
            .await
            .map_err(|_| ProjectionError::Decode("rebuild writer stopped".into()))
    }
}

/// Writes a rebuild's rows, one transaction per chunk, in `writers` tasks of their own (at most
/// two chunks wait for them).
struct RowWriter {
    chunks: Option<tokio::sync::mpsc::Sender<(&'static Table, Vec<Row>)>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), ProjectionError>>>,
}

impl RowWriter {
    fn start(pool: AnyPool, writers: usize) -> RowWriter {
        let (sender, chunks) = tokio::sync::mpsc::channel::<(&'static Table, Vec<Row>)>(2);
        let chunks = Arc::new(Mutex::new(chunks));
        let tasks = (0..writers.max(1))
            .map(|_| {
                let (pool, chunks) = (pool.clone(), chunks.clone());
                tokio::spawn(async move {
                    let mut connection = pool.acquire().await?;
                    let sqlite =
                        bulk::Placeholders::of(&connection) == bulk::Placeholders::Anonymous;
                    if sqlite {
                        // The indexes a rebuild fills outgrow SQLite's default 2 MB page cache.
                        sqlx::query(SQLITE_WRITER_CACHE)
                            .execute(&mut *connection)
                            .await?;
                    }
                    let mut written: Result<(), ProjectionError> = Ok(());
                    while let Some((table, rows)) = chunks.lock().await.recv().await {
                        let mut tx = sqlx::Connection::begin(&mut *connection).await?;
                        if let Err(error) = bulk::insert(&mut tx, table, &rows).await {
                            // Dropping the transaction rolls it back.
                            written = Err(error.into());
                            break;
                        }
                        tx.commit().await?;
                    }
                    if sqlite {
                        // The connection goes back to the pool as it came.
                        sqlx::query("PRAGMA cache_size = -2000")
                            .execute(&mut *connection)
                            .await?;
                    }
                    written
                })
            })
            .collect();
        RowWriter {
            chunks: Some(sender),
            tasks,
        }
    }

    fn sink(&self) -> RowSink {
        match &self.chunks {
            Some(chunks) => RowSink(chunks.clone()),
            None => RowSink(tokio::sync::mpsc::channel(1).0),
        }
    }

    /// Waits until everything sent (by every sink, once all are dropped) is written.
    async fn finish(mut self) -> Result<(), ProjectionError> {
        self.chunks = None;
        let mut result = Ok(());
        for task in &mut self.tasks {
            let done = joined(task).await;
            if result.is_ok() {
                result = done;
            }
        }
        result
    }
}

impl Drop for RowWriter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
