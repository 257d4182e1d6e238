//! Keyed blind indexes of personal values (docs/personal-data.md, "Blind indexes"): a look-up by
//! a citizen ID number or a document number compares HMAC-SM3 values under an index key of its
//! own (wrapped by the master key in `index_keys`), never a plain hash of a guessable value.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use custody_vault::DataKey;

use super::{PersonalData, KEY_CACHE_TTL};
use crate::EventLogError;

/// The personal values that have a blind index, by the field name their index is keyed with.
pub const INDEXED_FIELDS: &[&str] = &["gmsfhm", "zjhm"];

/// The index keys in force: the current one (indexes are written under it) and, during a
/// rotation, the previous ones (still looked up).
pub struct IndexKeys {
    current: (String, DataKey),
    previous: Vec<(String, DataKey)>,
}

/// A value as it is indexed: citizen ID numbers end in an upper-case X, document numbers are
/// upper case; surrounding blanks are not part of either.
fn normalise(value: &str) -> String {
    value.trim().to_ascii_uppercase()
}

fn cell(id: &str, key: &DataKey, field: &str, value: &str) -> String {
    format!(
        "{id}:{}",
        hex::encode(custody_vault::blind_index(key, field, &normalise(value)))
    )
}

impl IndexKeys {
    /// The index cell of `value` under the current key.
    pub fn index(&self, field: &str, value: &str) -> String {
        cell(&self.current.0, &self.current.1, field, value)
    }

    /// Every cell `value` may be stored as now (current and previous keys).
    pub fn candidates(&self, field: &str, value: &str) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|(id, key)| cell(id, key, field, value))
            .collect()
    }

    /// The current key's id: a cell not starting with it is still to re-index.
    pub fn current_id(&self) -> &str {
        &self.current.0
    }
}

impl PersonalData {
    /// The index keys, from memory for up to [`KEY_CACHE_TTL`] (so that a rotation made by
    /// another instance is seen within it); the first key is made on first use.
    pub async fn index_keys(&self) -> Result<Arc<IndexKeys>, EventLogError> {
        self.index_keys_on(None).await
    }

    /// As [`PersonalData::index_keys`], reading on `connection` when given (a projector's
    /// transaction: the pool's other connections may all be waiting for its write lock).
    pub async fn index_keys_on(
        &self,
        mut connection: Option<&mut sqlx::AnyConnection>,
    ) -> Result<Arc<IndexKeys>, EventLogError> {
        if let Some((keys, at)) = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(keys.clone());
            }
        }
        let mut rows = self.index_rows(connection.as_deref_mut()).await?;
        // Made in the caller's transaction when given (a projector holding SQLite's write lock
        // cannot wait for another connection's insert), and then not kept in memory: the
        // transaction may yet roll back.
        let mut keep = true;
        if !rows.iter().any(|(_, _, state)| state == "current") {
            let id = self.next_index_id(connection.as_deref_mut()).await?;
            keep = connection.is_none();
            self.insert_index_key(&id, connection.as_deref_mut())
                .await?;
            rows = self.index_rows(connection).await?;
        }
        let mut current = None;
        let mut previous = Vec::new();
        for (id, wrapped, state) in rows {
            let key = self.unwrap_stored(&format!("index key {id}"), &wrapped)?;
            if state == "current" {
                current = Some((id, key));
            } else {
                previous.push((id, key));
            }
        }
        let current =
            current.ok_or_else(|| EventLogError::PersonalData("no current index key".into()))?;
        let keys = Arc::new(IndexKeys { current, previous });
        if keep {
            *self.index.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((keys.clone(), Instant::now()));
        }
        Ok(keys)
    }

    async fn index_rows(
        &self,
        connection: Option<&mut sqlx::AnyConnection>,
    ) -> Result<Vec<(String, String, String)>, EventLogError> {
        let query = sqlx::query_as(
            "SELECT id, wrapped, state FROM index_keys \
             WHERE state IN ('current', 'previous') ORDER BY created_ms, id",
        );
        Ok(match connection {
            Some(connection) => query.fetch_all(connection).await?,
            None => query.fetch_all(&self.pool).await?,
        })
    }

    async fn insert_index_key(
        &self,
        id: &str,
        connection: Option<&mut sqlx::AnyConnection>,
    ) -> Result<(), EventLogError> {
        let wrapped = base64::engine::general_purpose::STANDARD
            .encode(self.master.wrap(&DataKey::generate()));
        // Two instances starting at once both try `k1`: one wins, the other reads it.
        let query = sqlx::query(
            "INSERT INTO index_keys (id, wrapped, master_key_id, state, created_ms) \
             VALUES ($1, $2, $3, 'current', $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(wrapped)
        .bind(self.master.key_id())
        .bind(chrono::Utc::now().timestamp_millis());
        match connection {
            Some(connection) => query.execute(connection).await?,
            None => query.execute(&self.pool).await?,
        };
        Ok(())
    }

    /// Starts a rotation of the index key: the current key becomes previous (still looked up)
    /// and a new one is current. The new key's id.
    pub async fn rotate_index_key(&self) -> Result<String, EventLogError> {
        let id = self.next_index_id(None).await?;
        sqlx::query("UPDATE index_keys SET state = 'previous' WHERE state = 'current'")
            .execute(&self.pool)
            .await?;
        self.insert_index_key(&id, None).await?;
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(id)
    }

    /// `k1`, `k2`, …: the next id never used (two instances making the first key at once agree
    /// on it).
    async fn next_index_id(
        &self,
        connection: Option<&mut sqlx::AnyConnection>,
    ) -> Result<String, EventLogError> {
        let query = sqlx::query_scalar("SELECT id FROM index_keys");
        let ids: Vec<String> = match connection {
            Some(connection) => query.fetch_all(connection).await?,
            None => query.fetch_all(&self.pool).await?,
        };
        let next = ids
            .iter()
            .filter_map(|id| id.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0)
            + 1;
        Ok(format!("k{next}"))
    }

    /// Ends a rotation: the previous index keys are destroyed (every cell is under the current
    /// one by then).
    pub async fn retire_previous_index_keys(&self) -> Result<u64, EventLogError> {
        let done = sqlx::query("DELETE FROM index_keys WHERE state = 'previous'")
            .execute(&self.pool)
            .await?
            .rows_affected();
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(done)
    }
}
