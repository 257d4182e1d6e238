//! Sealing a plaintext store in place (docs/personal-data.md, "Migrating a plaintext store";
//! `custody_audit::reseal` says how the chain and the checkpoints account for it). The events of
//! a store written before the sealing keep their personal fields in clear; a run rewrites them,
//! a batch a transaction: each event's payload sealed, its metadata marked with the hash of its
//! plain form, and a row of `resealed_events` (migration 0017) with both hashes. Last, the run's
//! record event holds the SM3 of the run's rows.
//!
//! Resumable and idempotent: an event already sealed is skipped, so a second run, or one after
//! a crash, does what is left and nothing twice; the run number is the sequence of the record
//! to come, so the rows of a run cut short are recorded by the run that finishes it.

use custody_audit::reseal::{
    self, ResealEntry, ResealRecord, RECORD_AGGREGATE_ID, RECORD_AGGREGATE_TYPE, RECORD_EVENT_TYPE,
    RESEALED_FROM,
};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::chain::{GENESIS_HASH, PREVIOUS_HASH};
use crate::personal;
use crate::{Backend, EventLog, EventLogError, StoredEvent};

/// What one batch of a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealBatch {
    /// Events with personal fields looked at.
    pub scanned: u64,
    /// Of them, resealed now.
    pub resealed: u64,
    /// The position to continue after; None at the end of the log.
    pub next: Option<i64>,
}

const ENTRY_COLUMNS: &str =
    "run, global_position, aggregate_type, aggregate_id, sequence, plain_hash, sealed_hash";

/// The hash of an event's stored form.
fn stored_hash(e: &StoredEvent) -> String {
    custody_audit::chain::event_hash(custody_audit::chain::EventFields {
        aggregate_type: &e.aggregate_type,
        aggregate_id: &e.aggregate_id,
        sequence: e.sequence,
        event_type: &e.event_type,
        event_version: &e.event_version,
        payload: &e.payload,
        metadata: &e.metadata,
    })
}

impl EventLog {
    /// The events that have personal fields, sealed or not: the length of a run's progress.
    pub async fn personal_events(&self) -> Result<i64, EventLogError> {
        let sql = format!("SELECT COUNT(*) FROM events WHERE {}", personal_types());
        Ok(sqlx::query_scalar(&sql)
            .fetch_one(self.platform().pool())
            .await?)
    }

    /// The number of the run to do now: one more than the last recorded run. Rows already
    /// under it are those of a run cut short, which this one finishes.
    pub async fn reseal_run(&self) -> Result<i64, EventLogError> {
        Ok(self
            .last_record()
            .await?
            .map_or(0, |(sequence, _)| sequence)
            + 1)
    }

    /// Reseals, in one transaction, the events with personal fields in clear among the `limit`
    /// after `after` (a global position) that have any; run `run`.
    pub async fn reseal_batch(
        &self,
        run: i64,
        after: i64,
        limit: i64,
    ) -> Result<ResealBatch, EventLogError> {
        let personal = self
            .personal_data()
            .ok_or(EventLogError::NoMasterKey)?
            .clone();
        let sql = format!(
            "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, CAST(payload AS TEXT) AS payload, CAST(metadata AS TEXT) AS metadata \
             FROM events WHERE global_position > $1 AND {} ORDER BY global_position LIMIT $2",
            personal_types()
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(self.platform().pool())
            .await?;
        let mut batch = ResealBatch {
            scanned: rows.len() as u64,
            next: None,
            ..ResealBatch::default()
        };
        let mut candidates = Vec::new();
        let mut persons = std::collections::HashSet::new();
        for row in &rows {
            let (event, read_metadata) = candidate(row)?;
            batch.next = Some(event.global_position);
            if reseal::resealed_from(&event.metadata).is_some() {
                continue;
            }
            let owners = personal::plain_owners(
                &event.aggregate_type,
                &event.aggregate_id,
                &event.event_type,
                &event.payload,
            )?;
            if !owners.is_empty() {
                persons.extend(owners);
                candidates.push((event, read_metadata));
            }
        }
        if candidates.is_empty() {
            return Ok(batch);
        }
        // The persons' keys are read, and the missing ones made, in the batch's transaction: one
        // commit (one fsync) a batch, not one a new person.
        let mut tx = self.platform().pool().begin().await?;
        // Write first, so the transaction holds SQLite's write lock before it reads: a deferred
        // transaction that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT) if another
        // connection wrote in between, where one that writes first waits its turn. Matches no
        // row on either store.
        sqlx::query("UPDATE resealed_events SET run = run WHERE global_position IS NULL")
            .execute(&mut *tx)
            .await?;
        let ring = personal.key_ring_within(persons, &mut tx).await?;
        let mut rewritten = Vec::new();
        for (mut event, read_metadata) in candidates {
            let plain_hash = stored_hash(&event);
            ring.reseal(
                &event.aggregate_type,
                &event.aggregate_id,
                &event.event_type,
                &mut event.payload,
            )?;
            event.metadata[RESEALED_FROM] = Value::String(plain_hash.clone());
            let entry = ResealEntry {
                run,
                global_position: event.global_position,
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence,
                plain_hash,
                sealed_hash: stored_hash(&event),
            };
            rewritten.push((event, read_metadata, entry));
        }
        let json = self.json_parameter();
        let update = format!(
            "UPDATE events SET payload = {}, metadata = {} \
             WHERE global_position = $3 AND CAST(metadata AS TEXT) = $4",
            json("$1"),
            json("$2")
        );
        let insert = format!(
            "INSERT INTO resealed_events ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        for (event, read_metadata, entry) in &rewritten {
            let changed = sqlx::query(&update)
                .bind(event.payload.to_string())
                .bind(event.metadata.to_string())
                .bind(event.global_position)
                .bind(read_metadata)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed != 1 {
                // Another run got there first: leave this batch to be read again.
                return Err(EventLogError::PersonalData(format!(
                    "event at {} changed while it was resealed",
                    event.global_position
                )));
            }
            sqlx::query(&insert)
                .bind(entry.run)
                .bind(entry.global_position)
                .bind(&entry.aggregate_type)
                .bind(&entry.aggregate_id)
                .bind(entry.sequence)
                .bind(&entry.plain_hash)
                .bind(&entry.sealed_hash)
                .execute(&mut *tx)
                .await?;
            batch.resealed += 1;
        }
        tx.commit().await?;
        // The feed readers' shared tail may hold these events as they were.
        self.tail().clear().await;
        Ok(batch)
    }

    /// Appends run `run`'s record event, if the run has rows and is not recorded yet: the SM3 of
    /// its rows, chained after the previous record, so the next checkpoint covers the list.
    pub async fn record_reseal_run(&self, run: i64) -> Result<Option<ResealRecord>, EventLogError> {
        let last = self.last_record().await?;
        if last.as_ref().is_some_and(|(sequence, _)| *sequence >= run) {
            return Ok(None);
        }
        let entries = self.run_entries(run).await?;
        if entries.is_empty() {
            return Ok(None);
        }
        let record = ResealRecord {
            run,
            events: entries.len() as u64,
            entries_sm3: reseal::digest(&entries),
        };
        let previous = last.map_or(GENESIS_HASH.to_string(), |(_, hash)| hash);
        let metadata = serde_json::json!({
            PREVIOUS_HASH: previous,
            "recorded_ms": chrono::Utc::now().timestamp_millis(),
        });
        let json = self.json_parameter();
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES ($1, $2, $3, $4, '1', {}, {})",
            json("$5"),
            json("$6")
        );
        sqlx::query(&sql)
            .bind(RECORD_AGGREGATE_TYPE)
            .bind(RECORD_AGGREGATE_ID)
            .bind(run)
            .bind(RECORD_EVENT_TYPE)
            .bind(record.payload().to_string())
            .bind(metadata.to_string())
            .execute(self.platform().pool())
            .await?;
        Ok(Some(record))
    }

    /// Up to `limit` reseal rows after `(run, global_position)`, by run and position: what the
    /// audit bundle carries.
    pub async fn resealed_entries(
        &self,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<ResealEntry>, EventLogError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM resealed_events \
             WHERE run > $1 OR (run = $1 AND global_position > $2) \
             ORDER BY run, global_position LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(self.platform().pool())
            .await?
            .iter()
            .map(entry)
            .collect()
    }

    /// The check only a holder of the master key can make: every resealed event, opened and
    /// without its mark, hashes to the plain hash recorded for it. The positions where it does
    /// not (or that do not open).
    pub async fn unmatched_plain_hashes(&self) -> Result<Vec<i64>, EventLogError> {
        let mut unmatched = Vec::new();
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let entries = self.resealed_entries(after, 500).await?;
            let Some(last) = entries.last() else {
                return Ok(unmatched);
            };
            after = (last.run, last.global_position);
            for entry in entries {
                let mut events = self
                    .events_of(&entry.aggregate_type, &entry.aggregate_id)
                    .await?;
                events.retain(|e| e.sequence == entry.sequence);
                let opened = match self.open_personal_data(events.iter_mut()).await {
                    Ok(()) => events.pop(),
                    Err(_) => None,
                };
                let matches = opened.is_some_and(|mut event| {
                    if let Some(map) = event.metadata.as_object_mut() {
                        map.remove(RESEALED_FROM);
                    }
                    stored_hash(&event) == entry.plain_hash
                });
                if !matches {
                    unmatched.push(entry.global_position);
                }
            }
        }
    }

    /// Rewrites the store's files so that the bytes of rows changed or deleted (a payload in
    /// clear before its reseal, a view's old generation) are gone, not merely unreachable: on
    /// SQLite `VACUUM` and a truncating checkpoint of the write-ahead log; on PostgreSQL
    /// `VACUUM FULL` (dead tuples keep the old bytes until then). Offline: both want the store
    /// to themselves. What stays: PostgreSQL's archived WAL and base backups, earlier dumps.
    pub async fn compact(&self) -> Result<(), EventLogError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::raw_sql("VACUUM FULL").execute(pool).await?;
            }
            Backend::Sqlite(pool) => {
                sqlx::raw_sql("VACUUM").execute(pool).await?;
                sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The last record event's sequence and hash.
    async fn last_record(&self) -> Result<Option<(i64, String)>, EventLogError> {
        let mut events = self
            .events_of(RECORD_AGGREGATE_TYPE, RECORD_AGGREGATE_ID)
            .await?;
        Ok(events.pop().map(|e| (e.sequence, stored_hash(&e))))
    }

    async fn run_entries(&self, run: i64) -> Result<Vec<ResealEntry>, EventLogError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM resealed_events WHERE run = $1 ORDER BY global_position"
        );
        sqlx::query(&sql)
            .bind(run)
            .fetch_all(self.platform().pool())
            .await?
            .iter()
            .map(entry)
            .collect()
    }

    /// A JSON parameter as the backend's `events` columns take it through the Any driver.
    fn json_parameter(&self) -> fn(&str) -> String {
        match self.backend() {
            Backend::Postgres(_) => |p| format!("CAST({p} AS json)"),
            Backend::Sqlite(_) => |p| p.to_string(),
        }
    }
}

/// `(aggregate_type, event_type)` of the events with personal fields, as SQL.
fn personal_types() -> String {
    let pairs: Vec<String> = personal::personal_event_types()
        .map(|(a, e)| format!("(aggregate_type = '{a}' AND event_type = '{e}')"))
        .collect();
    format!("({})", pairs.join(" OR "))
}

/// An event with personal fields as the Any driver reads it, and its metadata's stored text.
fn candidate(row: &AnyRow) -> Result<(StoredEvent, String), EventLogError> {
    let metadata: String = row.try_get("metadata")?;
    Ok((crate::log::stored_event(row)?, metadata))
}

fn entry(row: &AnyRow) -> Result<ResealEntry, EventLogError> {
    Ok(ResealEntry {
        run: row.try_get("run")?,
        global_position: row.try_get("global_position")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        plain_hash: row.try_get("plain_hash")?,
        sealed_hash: row.try_get("sealed_hash")?,
    })
}
