//! Personal data in the event log (docs/personal-data.md): which fields of which events are
//! personal, whose they are, and their sealing under that person's data key.
//!
//! A personal field is stored as `{"sealed_for": RYBS, "sealed": base64}` in place of its value,
//! so the event's hash and the Merkle checkpoints cover the ciphertext and verify without any
//! key. The log's read calls return events as stored; a reader that needs the values opens them
//! ([`crate::EventLog::open_personal_data`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use custody_domain::identifiers::{CitizenId, PersonId};
use custody_vault::{DataKey, KeyWrap};
use hashlink::LruCache;
use serde_json::{json, Value};
use sqlx::Row;

use sqlx::AnyPool;

use crate::batcher::{self, BatchHold, BatchStats, BatchWrite, Batcher};
use crate::EventLogError;

mod blind_index;
pub use blind_index::{IndexKeys, INDEXED_FIELDS};

/// Whose data key seals a personal field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The aggregate is the person (RYBS).
    Aggregate,
    /// The person named by another field of the event (a RYBS).
    Field(&'static str),
    /// The holder of a document record: RYBS of its `citizen_id` and `chinese_name`.
    RecordHolder,
}

/// One personal field of one event type. The table below is the whole list; docs/personal-data.md
/// repeats it and a test checks the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub field: &'static str,
    pub owner: Owner,
}

pub const PERSONAL_FIELDS: &[PersonalField] = &[
    PersonalField {
        aggregate_type: "Document",
        event_type: "Deposited",
        field: "record",
        owner: Owner::RecordHolder,
    },
    PersonalField {
        aggregate_type: "Document",
        event_type: "IssuanceConfirmed",
        field: "number",
        owner: Owner::Field("holder"),
    },
    PersonalField {
        aggregate_type: "Person",
        event_type: "FilingSubmitted",
        field: "details",
        owner: Owner::Aggregate,
    },
    PersonalField {
        aggregate_type: "Person",
        event_type: "ChangeSubmitted",
        field: "details",
        owner: Owner::Aggregate,
    },
];

const SEALED_FOR: &str = "sealed_for";
/// What an erased person's field opens to (`custody_domain::values::ErasedValue`).
const ERASED_FOR: &str = "erased_for";
const SEALED: &str = "sealed";

/// Data keys unwrapped and kept in memory: enough for a national rebuild's working set, bounded
/// because the persons are (authenticated) outside input.
const CACHED_KEYS: usize = 65_536;

/// How long an unwrapped key is used from memory before the table is asked again: how long
/// another instance may still open (or seal for) a person erased elsewhere.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The data keys of the persons in the log, wrapped by the master key.
pub struct PersonalData {
    /// The store's tables through the Any driver: one statement serves both backends.
    pool: AnyPool,
    master: Arc<dyn KeyWrap>,
    keys: Mutex<LruCache<String, (Arc<DataKey>, std::time::Instant)>>,
    /// The blind-index keys and when they were read.
    index: Mutex<Option<(Arc<IndexKeys>, std::time::Instant)>>,
    /// New persons' keys, stored together across concurrent commands; started on first use
    /// (on the runtime).
    new_keys: std::sync::OnceLock<Batcher<NewKeys>>,
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalData")
            .field("master_key_id", &self.master.key_id())
            .finish_non_exhaustive()
    }
}

/// The prefix of a sealed text column (a view's): a value that is never a document number, a
/// citizen ID number or a name, so a sealed cell is told from a clear one a store written before
/// the sealing holds.
pub const SEALED_TEXT: &str = "sealed:";

/// The data keys of a batch's persons, fetched in one look-up, for sealing and opening without
/// further round trips.
pub struct KeyRing {
    keys: HashMap<String, Arc<DataKey>>,
    /// Persons whose data key was destroyed: what was sealed for them opens to nothing.
    erased: HashSet<String>,
}

impl KeyRing {
    /// Seals the personal fields of a payload stored in clear (a store written before the
    /// sealing, docs/personal-data.md "Migrating a plaintext store") with the ring's keys;
    /// whether any was. A field of a person erased meanwhile is sealed under a fresh key that is
    /// never kept: it opens to nothing, as if it had been sealed before the erasure.
    pub fn reseal(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<bool, EventLogError> {
        let fields = plain_fields(aggregate_type, aggregate_id, event_type, payload)?;
        for (field, person) in &fields {
            let throwaway;
            let key = match self.key(person) {
                Err(EventLogError::PersonErased(_)) => {
                    throwaway = DataKey::generate();
                    &throwaway
                }
                key => key?,
            };
            let at = Place::new(aggregate_type, aggregate_id, event_type);
            seal_field_of(key, at, field, person, payload)?;
        }
        Ok(!fields.is_empty())
    }

    fn key(&self, person: &str) -> Result<&DataKey, EventLogError> {
        match self.keys.get(person) {
            Some(key) => Ok(key.as_ref()),
            None if self.erased.contains(person) => {
                Err(EventLogError::PersonErased(person.to_string()))
            }
            None => Err(EventLogError::PersonalData(format!(
                "{person}: no data key"
            ))),
        }
    }

    /// Whether this person's data were erased.
    pub fn is_erased(&self, person: &str) -> bool {
        self.erased.contains(person)
    }

    /// `text` sealed for `person` at `place`, as a text column holds it.
    pub fn seal_text(
        &self,
        person: &str,
        place: &str,
        text: &str,
    ) -> Result<String, EventLogError> {
        let sealed = custody_vault::seal(self.key(person)?, place.as_bytes(), text.as_bytes());
        Ok(format!(
            "{SEALED_TEXT}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        ))
    }

    /// Opens a text column; a value without the prefix is returned as it is (written before
    /// the sealing); an erased person's is None.
    pub fn open_text(
        &self,
        person: &str,
        place: &str,
        cell: &str,
    ) -> Result<Option<String>, EventLogError> {
        let Some(encoded) = cell.strip_prefix(SEALED_TEXT) else {
            return Ok(Some(cell.to_string()));
        };
        if self.is_erased(person) {
            return Ok(None);
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| EventLogError::PersonalData(format!("{place}: not base64")))?;
        let plaintext = custody_vault::open(self.key(person)?, place.as_bytes(), &sealed)
            .map_err(|e| EventLogError::PersonalData(format!("{place}: {e}")))?;
        String::from_utf8(plaintext)
            .map(Some)
            .map_err(|_| EventLogError::PersonalData(format!("{place}: not UTF-8")))
    }

    /// Replaces `object[field]` (unless null or sealed) by its sealed form for `person`.
    pub fn seal_field(
        &self,
        person: &str,
        place: &str,
        object: &mut Value,
        field: &str,
    ) -> Result<(), EventLogError> {
        let value = &object[field];
        if value.is_null() || sealed_for(value).is_some() {
            return Ok(());
        }
        let plaintext = serde_json::to_vec(value)?;
        let sealed = custody_vault::seal(self.key(person)?, place.as_bytes(), &plaintext);
        object[field] = json!({
            SEALED_FOR: person,
            SEALED: base64::engine::general_purpose::STANDARD.encode(sealed),
        });
        Ok(())
    }

    /// Opens `object[field]` in place if it is sealed; an erased person's becomes null (a view's
    /// aggregate holds such a field as an option).
    pub fn open_field(
        &self,
        place: &str,
        object: &mut Value,
        field: &str,
    ) -> Result<(), EventLogError> {
        let value = &mut object[field];
        let Some(person) = sealed_for(value) else {
            return Ok(());
        };
        if self.is_erased(person) {
            *value = Value::Null;
            return Ok(());
        }
        let key = self.key(person)?;
        let sealed = value[SEALED]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| EventLogError::PersonalData(format!("{place}: not base64")))?;
        let plaintext = custody_vault::open(key, place.as_bytes(), &sealed)
            .map_err(|e| EventLogError::PersonalData(format!("{place}: {e}")))?;
        *value = serde_json::from_slice(&plaintext)?;
        Ok(())
    }
}

/// Where a payload is kept: the associated data of its fields but the field's name.
#[derive(Clone, Copy)]
struct Place<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
}

impl<'a> Place<'a> {
    fn new(aggregate_type: &'a str, aggregate_id: &'a str, event_type: &'a str) -> Self {
        Place {
            aggregate_type,
            aggregate_id,
            event_type,
        }
    }
}

/// The personal fields of a payload still in clear (not null, not sealed), and whose they are.
fn plain_fields(
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<Vec<(&'static str, String)>, EventLogError> {
    let event = &payload[event_type];
    fields_of(aggregate_type, event_type)
        .filter(|f| {
            let value = &event[f.field];
            !value.is_null() && sealed_for(value).is_none()
        })
        .map(|f| Ok((f.field, owner_of(f, aggregate_id, event)?)))
        .collect()
}

/// The persons whose data key a payload in clear needs to be sealed.
pub fn plain_owners(
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<Vec<String>, EventLogError> {
    Ok(
        plain_fields(aggregate_type, aggregate_id, event_type, payload)?
            .into_iter()
            .map(|(_, person)| person)
            .collect(),
    )
}

/// Replaces `field` of the payload's event by its sealed form under `key`.
fn seal_field_of(
    key: &DataKey,
    at: Place<'_>,
    field: &str,
    person: &str,
    payload: &mut Value,
) -> Result<(), EventLogError> {
    let plaintext = serde_json::to_vec(&payload[at.event_type][field])?;
    let aad = place(at.aggregate_type, at.aggregate_id, at.event_type, field);
    let sealed = custody_vault::seal(key, aad.as_bytes(), &plaintext);
    payload[at.event_type][field] = json!({
        SEALED_FOR: person,
        SEALED: base64::engine::general_purpose::STANDARD.encode(sealed),
    });
    Ok(())
}

/// The persons whose keys open the sealed fields of `object`.
pub fn sealed_persons<'a>(
    object: &'a Value,
    fields: &'a [&'a str],
) -> impl Iterator<Item = &'a str> + 'a {
    fields.iter().filter_map(|f| sealed_for(&object[*f]))
}

/// A payload to open: where it is kept (the associated data of its fields) and the payload.
pub struct Sealed<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a mut Value,
}

impl<'a> Sealed<'a> {
    /// The payload of one event, if any of its personal fields is sealed.
    pub fn of(
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        event_type: &'a str,
        payload: &'a mut Value,
    ) -> Option<Sealed<'a>> {
        is_sealed(aggregate_type, event_type, payload).then_some(Sealed {
            aggregate_type,
            aggregate_id,
            event_type,
            payload,
        })
    }
}

/// Opens `items` with `personal`'s keys; a sealed field with no master key given is an error.
pub async fn open_all(
    personal: Option<&PersonalData>,
    mut items: Vec<Sealed<'_>>,
) -> Result<(), EventLogError> {
    if items.is_empty() {
        return Ok(());
    }
    match personal {
        Some(personal) => personal.open(&mut items).await,
        None => Err(EventLogError::NoMasterKey),
    }
}

fn fields_of<'a>(
    aggregate_type: &'a str,
    event_type: &'a str,
) -> impl Iterator<Item = &'static PersonalField> + 'a {
    PERSONAL_FIELDS
        .iter()
        .filter(move |f| f.aggregate_type == aggregate_type && f.event_type == event_type)
}

fn place(aggregate_type: &str, aggregate_id: &str, event_type: &str, field: &str) -> String {
    format!("{aggregate_type}/{aggregate_id}/{event_type}/{field}")
}

/// The sealed person of a field, if the field is sealed.
fn sealed_for(value: &Value) -> Option<&str> {
    value.get(SEALED_FOR).and_then(Value::as_str)
}

/// The (aggregate type, event type) pairs that have personal fields.
pub fn personal_event_types() -> impl Iterator<Item = (&'static str, &'static str)> {
    PERSONAL_FIELDS
        .iter()
        .map(|f| (f.aggregate_type, f.event_type))
}

/// Whether any personal field of this payload is sealed (a payload with none needs no key).
pub fn is_sealed(aggregate_type: &str, event_type: &str, payload: &Value) -> bool {
    fields_of(aggregate_type, event_type)
        .any(|f| sealed_for(&payload[event_type][f.field]).is_some())
}

fn owner_of(
    field: &PersonalField,
    aggregate_id: &str,
    event: &Value,
) -> Result<String, EventLogError> {
    let unknown = || {
        EventLogError::PersonalData(format!(
            "{} {}: no owner for {}",
            field.aggregate_type, field.event_type, field.field
        ))
    };
    match field.owner {
        Owner::Aggregate => Ok(aggregate_id.to_string()),
        Owner::Field(name) => event[name].as_str().map(str::to_string).ok_or_else(unknown),
        Owner::RecordHolder => {
            let record = &event[field.field];
            let citizen_id: CitizenId = record["citizen_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(unknown)?;
            let name = record["chinese_name"].as_str().ok_or_else(unknown)?;
            Ok(PersonId::of(&citizen_id, name).as_str().to_string())
        }
    }
}

impl PersonalData {
    pub fn new(pool: AnyPool, master: Arc<dyn KeyWrap>) -> PersonalData {
        PersonalData {
            pool,
            master,
            keys: Mutex::new(LruCache::new(CACHED_KEYS)),
            index: Mutex::new(None),
            new_keys: std::sync::OnceLock::new(),
        }
    }

    /// Seals the personal fields of one payload as serde writes an event (`{"Variant": {…}}`).
    pub async fn seal(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), EventLogError> {
        for (field, person) in plain_fields(aggregate_type, aggregate_id, event_type, payload)? {
            let key = self.key_for_sealing(&person).await?;
            let at = Place::new(aggregate_type, aggregate_id, event_type);
            seal_field_of(&key, at, field, &person, payload)?;
        }
        Ok(())
    }

    /// Opens every sealed personal field of these payloads (one look-up for the keys not in
    /// memory).
    pub async fn open(&self, items: &mut [Sealed<'_>]) -> Result<(), EventLogError> {
        let mut persons = HashSet::new();
        for item in items.iter() {
            for field in fields_of(item.aggregate_type, item.event_type) {
                if let Some(person) = sealed_for(&item.payload[item.event_type][field.field]) {
                    persons.insert(person.to_string());
                }
            }
        }
        if persons.is_empty() {
            return Ok(());
        }
        let ring = self.keys_for(persons).await?;
        for item in items.iter_mut() {
            for field in fields_of(item.aggregate_type, item.event_type) {
                let value = &mut item.payload[item.event_type][field.field];
                let Some(person) = sealed_for(value) else {
                    continue;
                };
                if ring.is_erased(person) {
                    // The domain's `Personal::Erased`: whose it was, and nothing else.
                    *value = json!({ ERASED_FOR: person });
                    continue;
                }
                let key = ring.key(person)?;
                let sealed = value[SEALED]
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .ok_or_else(|| {
                        EventLogError::PersonalData("sealed field is not base64".into())
                    })?;
                let aad = place(
                    item.aggregate_type,
                    item.aggregate_id,
                    item.event_type,
                    field.field,
                );
                let plaintext = custody_vault::open(key, aad.as_bytes(), &sealed)
                    .map_err(|e| EventLogError::PersonalData(format!("{aad}: {e}")))?;
                *value = serde_json::from_slice(&plaintext)?;
            }
        }
        Ok(())
    }

    /// The keys of `persons` in one look-up; with `create`, a person without a key gets one (a
    /// view row of a store written before the sealing).
    pub async fn key_ring(
        &self,
        persons: HashSet<String>,
        create: bool,
    ) -> Result<KeyRing, EventLogError> {
        let mut ring = self.keys_for(persons.clone()).await?;
        if create {
            for person in persons {
                if ring.erased.contains(&person) {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(entry) = ring.keys.entry(person) {
                    let key = self.key_for_sealing(entry.key()).await?;
                    entry.insert(key);
                }
            }
        }
        Ok(ring)
    }

    /// The keys of `persons` for opening, read on `connection` (a projector's transaction).
    pub async fn opening_ring_on(
        &self,
        persons: HashSet<String>,
        connection: &mut sqlx::AnyConnection,
    ) -> Result<KeyRing, EventLogError> {
        self.keys_for_on(persons, Some(connection)).await
    }

    /// As [`PersonalData::key_ring`] with `create`, the missing keys made in the caller's
    /// transaction: a projector holding SQLite's write lock cannot wait for another connection's
    /// insert. Keys made here are not kept in memory, since the transaction may yet roll back
    /// (and with it every row they sealed).
    pub async fn key_ring_within(
        &self,
        persons: HashSet<String>,
        connection: &mut sqlx::AnyConnection,
    ) -> Result<KeyRing, EventLogError> {
        // Read on the caller's connection too: the pool's others may all be waiting for the
        // write lock this transaction holds.
        let mut ring = self
            .keys_for_on(persons.clone(), Some(&mut *connection))
            .await?;
        let now = chrono::Utc::now().timestamp_millis();
        for person in persons {
            if ring.keys.contains_key(&person) || ring.erased.contains(&person) {
                continue;
            }
            let wrapped = base64::engine::general_purpose::STANDARD
                .encode(self.master.wrap(&DataKey::generate()));
            sqlx::query(
                "INSERT INTO person_keys (person, wrapped, master_key_id, created_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (person) DO NOTHING",
            )
            .bind(&person)
            .bind(&wrapped)
            .bind(self.master.key_id().to_string())
            .bind(now)
            .execute(&mut *connection)
            .await?;
            let stored: Option<String> =
                sqlx::query_scalar("SELECT wrapped FROM person_keys WHERE person = $1")
                    .bind(&person)
                    .fetch_one(&mut *connection)
                    .await?;
            let Some(stored) = stored else {
                ring.erased.insert(person);
                continue;
            };
            let key = self.unwrap_stored(&person, &stored)?;
            ring.keys.insert(person, Arc::new(key));
        }
        Ok(ring)
    }

    /// Refuses a master key that did not wrap the store's data keys: an instance started with
    /// another key would make keys the others cannot open, and open none of theirs.
    pub async fn check_master_keys(&self) -> Result<(), EventLogError> {
        let sql = "SELECT DISTINCT master_key_id FROM person_keys WHERE wrapped IS NOT NULL";
        let stored: Vec<String> = sqlx::query_scalar(sql).fetch_all(&self.pool).await?;
        let known = self.master.key_ids();
        let foreign: Vec<String> = stored
            .into_iter()
            .filter(|id| !known.contains(&id.as_str()))
            .collect();
        if foreign.is_empty() {
            Ok(())
        } else {
            Err(EventLogError::ForeignMasterKey {
                stored: foreign.join(", "),
                given: known.join(", "),
            })
        }
    }

    /// How many stored data keys are wrapped under another master key than the current one.
    pub async fn keys_to_rewrap(&self) -> Result<i64, EventLogError> {
        let sql =
            "SELECT COUNT(*) FROM person_keys WHERE wrapped IS NOT NULL AND master_key_id <> $1";
        Ok(sqlx::query_scalar(sql)
            .bind(self.master.key_id())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Re-wraps up to `batch` data keys wrapped under a previous master key with the current
    /// one; how many it did (0 once none is left). Online: a row changed meanwhile (erased) is
    /// left as it is, and the data keys themselves do not change, so nothing sealed is touched.
    pub async fn rewrap_batch(&self, batch: i64) -> Result<u64, EventLogError> {
        let select = "SELECT person, wrapped FROM person_keys \
                      WHERE wrapped IS NOT NULL AND master_key_id <> $1 ORDER BY person LIMIT $2";
        let rows: Vec<(String, String)> = sqlx::query_as(select)
            .bind(self.master.key_id())
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
        let update = "UPDATE person_keys SET wrapped = $1, master_key_id = $2 \
                      WHERE person = $3 AND wrapped = $4";
        let mut done = 0;
        for (person, wrapped) in rows {
            let key = self.unwrap_stored(&person, &wrapped)?;
            let rewrapped =
                base64::engine::general_purpose::STANDARD.encode(self.master.wrap(&key));
            let changed = sqlx::query(update)
                .bind(&rewrapped)
                .bind(self.master.key_id())
                .bind(&person)
                .bind(&wrapped)
                .execute(&self.pool)
                .await?
                .rows_affected();
            done += changed;
        }
        Ok(done)
    }

    /// The person's data key, made (and stored wrapped) on first use.
    async fn key_for_sealing(&self, person: &str) -> Result<Arc<DataKey>, EventLogError> {
        if let Some(key) = self.cached(person) {
            return Ok(key);
        }
        // Whether the key exists or not, the batch answers with the stored wrapped key: ours if
        // we made it, else the one another writer (or an earlier event) made.
        let fresh = DataKey::generate();
        let wrapped = base64::engine::general_purpose::STANDARD.encode(self.master.wrap(&fresh));
        let new_key = NewKey {
            person: person.to_string(),
            wrapped: wrapped.clone(),
            master_key_id: self.master.key_id().to_string(),
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        let stored = self
            .new_keys()
            .write(new_key)
            .await
            // Its task ends only with a panic: answered like a closed pool.
            .map_err(|_| EventLogError::Database(sqlx::Error::PoolClosed))??;
        // NULL: the person was erased.
        let stored = stored.ok_or_else(|| EventLogError::PersonErased(person.to_string()))?;
        let key = if stored == wrapped {
            fresh
        } else {
            self.unwrap_stored(person, &stored)?
        };
        let key = Arc::new(key);
        self.remember(person, key.clone());
        Ok(key)
    }

    fn new_keys(&self) -> &Batcher<NewKeys> {
        self.new_keys.get_or_init(|| {
            // SQLite has one writer; on PostgreSQL a few batches at once.
            let writers = if self.pool.connect_options().database_url.scheme() == "sqlite" {
                1
            } else {
                4
            };
            let writer = NewKeys {
                pool: self.pool.clone(),
            };
            Batcher::start(writer, writers)
        })
    }

    /// What the batched inserts of new persons' keys have done.
    pub fn new_key_stats(&self) -> BatchStats {
        self.new_keys.get().map(Batcher::stats).unwrap_or_default()
    }

    /// Holds the inserts of new persons' keys back until the hold is dropped (a test forms
    /// one batch with it).
    pub async fn hold_new_keys(&self) -> BatchHold {
        self.new_keys().hold().await
    }

    /// A key as `person_keys` (or `index_keys`) stores it: base64 of its wrapping under one of
    /// the master keys given.
    fn unwrap_stored(&self, owner: &str, wrapped: &str) -> Result<DataKey, EventLogError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .map_err(|_| {
                EventLogError::PersonalData(format!("{owner}: wrapped key is not base64"))
            })?;
        self.master.unwrap(&bytes).map_err(|e| {
            EventLogError::PersonalData(format!(
                "{owner}: the key opens under none of the master keys given ({}): {e}",
                self.master.key_ids().join(", ")
            ))
        })
    }

    fn cached(&self, person: &str) -> Option<Arc<DataKey>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.get(person) {
            Some((key, at)) if at.elapsed() < KEY_CACHE_TTL => Some(key.clone()),
            Some(_) => {
                keys.remove(person);
                None
            }
            None => None,
        }
    }

    fn remember(&self, person: &str, key: Arc<DataKey>) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(person.to_string(), (key, std::time::Instant::now()));
    }

    /// Erasure by person (crypto-shredding): destroys the person's data key, so that everything
    /// ever sealed for them, in events, views and backups, is unreadable for good, while the
    /// events, their hashes and the checkpoints stay as they are. A person without a key yet gets
    /// a row that says erased, so that none is made later. Whether a key was destroyed now.
    pub async fn destroy_key(&self, person: &str) -> Result<bool, EventLogError> {
        let now = chrono::Utc::now().timestamp_millis();
        let destroyed = sqlx::query(
            "UPDATE person_keys SET wrapped = NULL, erased_ms = $2 \
             WHERE person = $1 AND wrapped IS NOT NULL",
        )
        .bind(person)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO person_keys (person, wrapped, master_key_id, created_ms, erased_ms) \
             VALUES ($1, NULL, $2, $3, $3) ON CONFLICT (person) DO NOTHING",
        )
        .bind(person)
        .bind(self.master.key_id())
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(person);
        Ok(destroyed > 0)
    }

    /// Whether this person's data key was destroyed.
    pub async fn is_erased(&self, person: &str) -> Result<bool, EventLogError> {
        let erased: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM person_keys WHERE person = $1 AND wrapped IS NULL",
        )
        .bind(person)
        .fetch_optional(&self.pool)
        .await?;
        Ok(erased.unwrap_or(0) > 0)
    }

    /// The keys of these persons, from memory or the table, and which of them were erased; an
    /// unknown person is left out.
    async fn keys_for(&self, persons: HashSet<String>) -> Result<KeyRing, EventLogError> {
        self.keys_for_on(persons, None).await
    }

    /// As [`PersonalData::keys_for`], reading on `connection` when given.
    async fn keys_for_on(
        &self,
        persons: HashSet<String>,
        connection: Option<&mut sqlx::AnyConnection>,
    ) -> Result<KeyRing, EventLogError> {
        let mut found = HashMap::new();
        let mut missing = HashSet::new();
        for person in persons {
            match self.cached(&person) {
                Some(key) => {
                    found.insert(person, key);
                }
                None => {
                    missing.insert(person);
                }
            }
        }
        let mut erased = HashSet::new();
        if !missing.is_empty() {
            let (keys, gone) = self.load(missing, connection).await?;
            found.extend(keys);
            erased = gone;
        }
        Ok(KeyRing {
            keys: found,
            erased,
        })
    }

    /// Reads and unwraps the keys of these persons that are not erased, and keeps them in memory;
    /// and which of them are erased.
    async fn load(
        &self,
        persons: HashSet<String>,
        mut connection: Option<&mut sqlx::AnyConnection>,
    ) -> Result<(HashMap<String, Arc<DataKey>>, HashSet<String>), EventLogError> {
        let persons: Vec<String> = persons.into_iter().collect();
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut erased = HashSet::new();
        for chunk in persons.chunks(500) {
            // `$1, $2, …`: both stores take numbered parameters through the Any driver.
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT person, wrapped FROM person_keys WHERE person IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for person in chunk {
                query = query.bind(person);
            }
            let found = match connection.as_deref_mut() {
                Some(connection) => query.fetch_all(connection).await?,
                None => query.fetch_all(&self.pool).await?,
            };
            for row in found {
                let person: String = row.try_get("person")?;
                match row.try_get::<Option<String>, _>("wrapped")? {
                    Some(wrapped) => rows.push((person, wrapped)),
                    None => {
                        erased.insert(person);
                    }
                }
            }
        }
        let mut keys = HashMap::new();
        for (person, wrapped) in rows {
            let key = Arc::new(self.unwrap_stored(&person, &wrapped)?);
            self.remember(&person, key.clone());
            keys.insert(person, key);
        }
        Ok((keys, erased))
    }
}

/// A data key made for a person, to store unless the person has one.
struct NewKey {
    person: String,
    wrapped: String,
    master_key_id: String,
    created_ms: i64,
}

/// The writer of new rows of `person_keys`. A batch inserts what is missing
/// (`ON CONFLICT DO NOTHING RETURNING person`) and reads back the rows that were there; each
/// person learns the wrapped key stored for them (NULL: erased).
struct NewKeys {
    pool: AnyPool,
}

impl BatchWrite for NewKeys {
    type Item = NewKey;
    type Answer = Result<Option<String>, EventLogError>;
    type Key = String;
    const MAX: usize = 256;

    fn key(key: &NewKey) -> String {
        key.person.clone()
    }

    async fn write(&self, batch: &[NewKey]) -> Result<Vec<Self::Answer>, sqlx::Error> {
        // A padding row repeats a person of the batch: its conflict changes nothing.
        let rows = batcher::padded(batch.len());
        let sql = format!(
            "INSERT INTO person_keys (person, wrapped, master_key_id, created_ms) VALUES {} \
             ON CONFLICT (person) DO NOTHING RETURNING person",
            batcher::values_rows(4, rows)
        );
        let mut query = sqlx::query(&sql);
        for key in batcher::padded_items(batch) {
            query = query
                .bind(&key.person)
                .bind(&key.wrapped)
                .bind(&key.master_key_id)
                .bind(key.created_ms);
        }
        let inserted = batcher::returned_keys(&query.fetch_all(&self.pool).await?)?;
        let present: Vec<&NewKey> = batch
            .iter()
            .filter(|key| !inserted.contains(&key.person))
            .collect();
        let mut stored: HashMap<String, Option<String>> = HashMap::new();
        if !present.is_empty() {
            let sql = format!(
                "SELECT person, wrapped FROM person_keys WHERE person IN ({})",
                (1..=batcher::padded(present.len()))
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut query = sqlx::query(&sql);
            for key in batcher::padded_items(&present) {
                query = query.bind(&key.person);
            }
            for row in query.fetch_all(&self.pool).await? {
                stored.insert(row.try_get("person")?, row.try_get("wrapped")?);
            }
        }
        Ok(batch
            .iter()
            .map(|key| {
                if inserted.contains(&key.person) {
                    return Ok(Some(key.wrapped.clone()));
                }
                stored.remove(&key.person).ok_or_else(|| {
                    EventLogError::PersonalData(format!(
                        "{}: the data key was neither stored nor found",
                        key.person
                    ))
                })
            })
            .collect())
    }

    async fn write_one(&self, key: &NewKey) -> Self::Answer {
        // One round trip: the upsert returns the stored wrapped key, ours or the one there.
        let sql = "INSERT INTO person_keys (person, wrapped, master_key_id, created_ms) \
                   VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (person) DO UPDATE SET person = excluded.person RETURNING wrapped";
        Ok(sqlx::query_scalar(sql)
            .bind(&key.person)
            .bind(&key.wrapped)
            .bind(&key.master_key_id)
            .bind(key.created_ms)
            .fetch_one(&self.pool)
            .await?)
    }

    fn wrote(answer: &Self::Answer) -> bool {
        answer.is_ok()
    }
}
