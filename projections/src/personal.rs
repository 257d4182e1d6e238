//! The personal columns of the documents and persons views, sealed under the person's data key
//! as the events are (docs/personal-data.md): the text columns readers show, and the personal
//! fields of the aggregate JSON the projector reloads.

use std::collections::HashSet;

use custody_eventlog::personal::{self, KeyRing};
use custody_eventlog::EventLog;
use serde_json::Value;

use crate::bulk::{Cell, Row, Table};
use crate::ProjectionError;

/// A view's personal columns: whose they are (a column naming the person's RYBS) and which.
pub(crate) struct PersonalColumns {
    pub table: &'static str,
    pub owner: &'static str,
    pub texts: &'static [&'static str],
    /// The personal fields of the `aggregate` column's JSON.
    pub fields: &'static [&'static str],
    /// Blind indexes (docs/personal-data.md): (index column, the text column it indexes, the
    /// field name its HMAC is keyed with).
    pub indexes: &'static [(&'static str, &'static str, &'static str)],
}

pub(crate) const DOCUMENTS: PersonalColumns = PersonalColumns {
    table: "view_documents",
    owner: "holder_rybs",
    texts: &["zjhm", "holder_xm", "holder_gmsfhm"],
    fields: &["number", "record"],
    indexes: &[
        ("zjhm_index", "zjhm", "zjhm"),
        ("holder_gmsfhm_index", "holder_gmsfhm", "gmsfhm"),
    ],
};

pub(crate) const PERSONS: PersonalColumns = PersonalColumns {
    table: "view_persons",
    owner: "rybs",
    texts: &["xm", "gmsfhm"],
    fields: &["details", "pending_details"],
    indexes: &[("gmsfhm_index", "gmsfhm", "gmsfhm")],
};

pub(crate) fn of(table: &Table) -> Option<&'static PersonalColumns> {
    [&DOCUMENTS, &PERSONS]
        .into_iter()
        .find(|p| p.table == table.name)
}

/// Where a cell is kept: the associated data of its sealing.
pub(crate) fn place(table: &str, id: &str, column: &str) -> String {
    format!("{table}/{id}/{column}")
}

fn index(table: &Table, column: &str) -> Result<usize, ProjectionError> {
    table
        .columns
        .iter()
        .position(|c| *c == column)
        .ok_or_else(|| ProjectionError::Decode(format!("{} has no column {column}", table.name)))
}

fn text(cell: &Cell) -> Option<&str> {
    match cell {
        Cell::Text(Some(text)) => Some(text),
        _ => None,
    }
}

/// Seals the personal cells of rows about to be written to `table` (nothing for a table without
/// personal columns, or a log without a master key); a missing key is made in `within`, the
/// transaction the rows go into, if given.
pub(crate) async fn seal_rows(
    log: &EventLog,
    table: &Table,
    rows: &mut [Row],
    within: Option<&mut sqlx::AnyConnection>,
) -> Result<(), ProjectionError> {
    let (Some(columns), Some(vault)) = (of(table), log.personal_data()) else {
        return Ok(());
    };
    let owner = index(table, columns.owner)?;
    let id = index(table, table.key[1])?;
    let aggregate = index(table, "aggregate")?;
    let texts: Vec<usize> = columns
        .texts
        .iter()
        .map(|c| index(table, c))
        .collect::<Result<_, _>>()?;
    let persons: HashSet<String> = rows
        .iter()
        .filter_map(|row| text(&row[owner]).map(str::to_string))
        .collect();
    // The index key is made at start (`serve`), so this only reads, on the caller's connection.
    let (ring, index_keys) = match within {
        Some(connection) => (
            vault.key_ring_within(persons, &mut *connection).await?,
            vault.index_keys_on(Some(connection)).await?,
        ),
        None => (
            vault.key_ring(persons, true).await?,
            vault.index_keys().await?,
        ),
    };
    let indexes: Vec<(usize, usize, &str)> = columns
        .indexes
        .iter()
        .map(|(index_column, text_column, field)| {
            Ok((
                index(table, index_column)?,
                index(table, text_column)?,
                *field,
            ))
        })
        .collect::<Result<_, ProjectionError>>()?;
    for row in rows.iter_mut() {
        let id_value = text(&row[id]).unwrap_or_default().to_string();
        let Some(person) = text(&row[owner]).map(str::to_string) else {
            if texts.iter().any(|&i| text(&row[i]).is_some()) {
                return Err(ProjectionError::Decode(format!(
                    "{} {id_value}: personal data without a person",
                    table.name
                )));
            }
            continue;
        };
        for &(index_column, text_column, field) in &indexes {
            if let Some(clear) = text(&row[text_column]).filter(|c| !is_sealed(Some(c))) {
                row[index_column] = Cell::Text(Some(index_keys.index(field, clear)));
            }
        }
        for (&i, column) in texts.iter().zip(columns.texts) {
            if let Some(clear) = text(&row[i]) {
                let sealed =
                    ring.seal_text(&person, &place(table.name, &id_value, column), clear)?;
                row[i] = Cell::Text(Some(sealed));
            }
        }
        if let Some(json) = text(&row[aggregate]) {
            let mut value: Value = serde_json::from_str(json)
                .map_err(|e| ProjectionError::Decode(format!("aggregate: {e}")))?;
            for field in columns.fields {
                ring.seal_field(
                    &person,
                    &place(table.name, &id_value, field),
                    &mut value,
                    field,
                )?;
            }
            row[aggregate] = Cell::Text(Some(value.to_string()));
        }
    }
    Ok(())
}

/// The keys that open the aggregate JSON of these rows, read on `connection` (the projector's
/// transaction: the pool's other connections may all be waiting for its write lock).
pub(crate) async fn ring_for_aggregates(
    log: &EventLog,
    columns: &PersonalColumns,
    aggregates: &[Value],
    connection: &mut sqlx::AnyConnection,
) -> Result<Option<KeyRing>, ProjectionError> {
    let persons: HashSet<String> = aggregates
        .iter()
        .flat_map(|a| personal::sealed_persons(a, columns.fields))
        .map(str::to_string)
        .collect();
    if persons.is_empty() {
        return Ok(None);
    }
    let Some(vault) = log.personal_data() else {
        return Err(custody_eventlog::EventLogError::NoMasterKey.into());
    };
    Ok(Some(vault.opening_ring_on(persons, connection).await?))
}

/// The keys of `persons` for opening (None when there are none to open).
async fn ring_of(
    log: &EventLog,
    persons: HashSet<String>,
) -> Result<Option<KeyRing>, ProjectionError> {
    if persons.is_empty() {
        return Ok(None);
    }
    let Some(vault) = log.personal_data() else {
        return Err(custody_eventlog::EventLogError::NoMasterKey.into());
    };
    Ok(Some(vault.key_ring(persons, false).await?))
}

/// Opens the personal fields of one view row's aggregate JSON.
pub(crate) fn open_aggregate(
    ring: Option<&KeyRing>,
    columns: &PersonalColumns,
    id: &str,
    aggregate: &mut Value,
) -> Result<(), ProjectionError> {
    let Some(ring) = ring else {
        return Ok(());
    };
    for field in columns.fields {
        ring.open_field(&place(columns.table, id, field), aggregate, field)?;
    }
    Ok(())
}

/// The keys for reading these persons' sealed cells (None when none is sealed).
pub(crate) async fn ring_for_cells(
    log: &EventLog,
    cells: impl IntoIterator<Item = (Option<String>, bool)>,
) -> Result<Option<KeyRing>, ProjectionError> {
    let persons: HashSet<String> = cells
        .into_iter()
        .filter(|(_, sealed)| *sealed)
        .filter_map(|(person, _)| person)
        .collect();
    ring_of(log, persons).await
}

/// Whether a cell read from a view is sealed.
pub(crate) fn is_sealed(cell: Option<&str>) -> bool {
    cell.is_some_and(|c| c.starts_with(personal::SEALED_TEXT))
}

/// Opens one read cell in place (None once its person is erased).
pub(crate) fn open_cell(
    ring: Option<&KeyRing>,
    table: &str,
    id: &str,
    column: &str,
    person: Option<&str>,
    cell: &mut Option<String>,
) -> Result<(), ProjectionError> {
    let (Some(ring), Some(person), Some(value)) = (ring, person, cell.as_deref()) else {
        return Ok(());
    };
    if !is_sealed(Some(value)) {
        return Ok(());
    }
    *cell = ring.open_text(person, &place(table, id, column), value)?;
    Ok(())
}

/// The SQL that finds a view's rows whose blind indexes are not all under the index key
/// `current` (a rotation's work left).
fn stale_index_condition(columns: &PersonalColumns, current: &str) -> String {
    columns
        .indexes
        .iter()
        .map(|(index_column, _, _)| {
            format!("({index_column} IS NOT NULL AND {index_column} NOT LIKE '{current}:%')")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// How many view rows still carry a blind index under an index key other than the current one.
pub async fn indexes_to_rebuild(log: &EventLog) -> Result<i64, ProjectionError> {
    let Some(vault) = log.personal_data() else {
        return Err(custody_eventlog::EventLogError::NoMasterKey.into());
    };
    let current = vault.index_keys().await?.current_id().to_string();
    let mut total = 0;
    for columns in [&DOCUMENTS, &PERSONS] {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {}",
            columns.table,
            stale_index_condition(columns, &current)
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .fetch_one(log.platform().pool())
            .await?;
        total += n;
    }
    Ok(total)
}

/// Re-indexes up to `batch` rows of each personal view under the current index key (a rotation
/// of the index key, docs/personal-data.md); how many it did. Online: a row the projector
/// rewrote meanwhile (its version moved) is left to the projector, which writes under the
/// current key; an erased person's indexes are cleared.
pub async fn rebuild_index_batch(log: &EventLog, batch: i64) -> Result<u64, ProjectionError> {
    let Some(vault) = log.personal_data() else {
        return Err(custody_eventlog::EventLogError::NoMasterKey.into());
    };
    let keys = vault.index_keys().await?;
    let current = keys.current_id().to_string();
    let pool = log.platform().pool();
    let mut done = 0;
    for columns in [&DOCUMENTS, &PERSONS] {
        let id_column = if columns.table == DOCUMENTS.table {
            "zjbs"
        } else {
            "rybs"
        };
        let texts: Vec<&str> = columns.indexes.iter().map(|(_, t, _)| *t).collect();
        let sql = format!(
            "SELECT generation, {id_column} AS id, version, {owner} AS owner, {texts} FROM {table} \
             WHERE {stale} LIMIT {batch}",
            owner = columns.owner,
            texts = texts.join(", "),
            table = columns.table,
            stale = stale_index_condition(columns, &current),
        );
        let rows = sqlx::query(&sql).fetch_all(pool).await?;
        let mut read = Vec::with_capacity(rows.len());
        for row in &rows {
            use sqlx::Row as _;
            let cells: Vec<Option<String>> = texts
                .iter()
                .map(|t| row.try_get::<Option<String>, _>(*t))
                .collect::<Result<_, _>>()?;
            read.push((
                row.try_get::<i64, _>("generation")?,
                row.try_get::<String, _>("id")?,
                row.try_get::<i64, _>("version")?,
                row.try_get::<Option<String>, _>("owner")?,
                cells,
            ));
        }
        let ring = ring_for_cells(
            log,
            read.iter().map(|(_, _, _, owner, cells)| {
                (owner.clone(), cells.iter().any(|c| is_sealed(c.as_deref())))
            }),
        )
        .await?;
        for (generation, id, version, owner, mut cells) in read {
            for (cell, column) in cells.iter_mut().zip(&texts) {
                open_cell(
                    ring.as_ref(),
                    columns.table,
                    &id,
                    column,
                    owner.as_deref(),
                    cell,
                )?;
            }
            let assignments: Vec<String> = columns
                .indexes
                .iter()
                .enumerate()
                .map(|(i, (index_column, _, _))| format!("{index_column} = ${}", i + 1))
                .collect();
            let n = columns.indexes.len();
            let update = format!(
                "UPDATE {} SET {} WHERE generation = ${} AND {id_column} = ${} AND version = ${}",
                columns.table,
                assignments.join(", "),
                n + 1,
                n + 2,
                n + 3
            );
            let mut query = sqlx::query(&update);
            for ((_, _, field), cell) in columns.indexes.iter().zip(&cells) {
                query = query.bind(cell.as_deref().map(|clear| keys.index(field, clear)));
            }
            done += query
                .bind(generation)
                .bind(&id)
                .bind(version)
                .execute(pool)
                .await?
                .rows_affected();
        }
    }
    Ok(done)
}

/// Clears every blind index of an erased person's rows: with the index key, a guessed citizen
/// ID number could otherwise still be confirmed against them.
pub async fn forget_indexes(log: &EventLog, person: &str) -> Result<u64, ProjectionError> {
    let pool = log.platform().pool();
    let mut done = 0;
    for columns in [&DOCUMENTS, &PERSONS] {
        let assignments: Vec<String> = columns
            .indexes
            .iter()
            .map(|(index_column, _, _)| format!("{index_column} = NULL"))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = $1",
            columns.table,
            assignments.join(", "),
            columns.owner
        );
        done += sqlx::query(&sql)
            .bind(person)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(done)
}
