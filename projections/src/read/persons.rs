//! `view_persons`, and the persons the read side knows only as a document's holder.
//!
//! A person is on the read side when they are filed (a Person aggregate, `view_persons`) or
//! when a document names them as its holder: a cabinet can hold the passport of someone never
//! filed. Such a person has no Person aggregate; their state is [`PersonStatus::HolderOnly`],
//! their name and ID number are the document record's, and their unit is the unit holding
//! their document.

use std::collections::{HashMap, HashSet};

use chrono::DateTime;
use custody_domain::person::PersonState;
use custody_domain::transitions::Named;
use sqlx::Row as _;

use super::{state, Reader, Scope};
use crate::personal;
use crate::{Projection, ProjectionError};

/// Where a person stands on the read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonStatus {
    /// Filed: the Person aggregate's state.
    Filed(PersonState),
    /// Never filed, known only as the holder of a document. A read-side state, not one of the
    /// Person aggregate's.
    HolderOnly,
}

impl PersonStatus {
    pub const HOLDER_ONLY: &'static str = "HolderOnly";

    pub fn name(self) -> &'static str {
        match self {
            PersonStatus::Filed(state) => state.name(),
            PersonStatus::HolderOnly => Self::HOLDER_ONLY,
        }
    }
}

/// A person as the read side knows them; personal data unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    /// RYBS.
    pub id: String,
    /// Chinese name (XM).
    pub name: Option<String>,
    /// Citizen ID number (GMSFHM).
    pub citizen_id: Option<String>,
    pub status: PersonStatus,
    pub unit: Option<String>,
    /// The ZJBS of every document naming them as holder, in order.
    pub documents: Vec<String>,
}

/// A document naming the person as its holder.
struct Held {
    id: String,
    name: Option<String>,
    citizen_id: Option<String>,
    unit: Option<String>,
    updated_at: String,
}

impl Reader {
    /// A person, filed or known as a document's holder, if `scope` sees them.
    pub async fn person(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<PersonRecord>, ProjectionError> {
        let persons = self.generation(Projection::Persons).await?;
        let filed = sqlx::query(
            "SELECT rybs, xm, gmsfhm, state, unit FROM view_persons \
             WHERE generation = $1 AND rybs = $2",
        )
        .bind(persons)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let mut held = self.held_by(id).await?;
        let mut filed_cells = match &filed {
            Some(row) => Some((
                row.try_get::<Option<String>, _>("xm")?,
                row.try_get::<Option<String>, _>("gmsfhm")?,
            )),
            None => None,
        };
        let sealed = held.iter().any(|h| {
            personal::is_sealed(h.name.as_deref()) || personal::is_sealed(h.citizen_id.as_deref())
        }) || filed_cells.as_ref().is_some_and(|(name, citizen_id)| {
            personal::is_sealed(name.as_deref()) || personal::is_sealed(citizen_id.as_deref())
        });
        if let Some(ring) =
            personal::ring_for_cells(&self.log, [(Some(id.to_string()), sealed)]).await?
        {
            let ring = Some(&ring);
            for h in &mut held {
                let documents = personal::DOCUMENTS.table;
                personal::open_cell(ring, documents, &h.id, "holder_xm", Some(id), &mut h.name)?;
                personal::open_cell(
                    ring,
                    documents,
                    &h.id,
                    "holder_gmsfhm",
                    Some(id),
                    &mut h.citizen_id,
                )?;
            }
            if let Some((name, citizen_id)) = &mut filed_cells {
                let persons = personal::PERSONS.table;
                personal::open_cell(ring, persons, id, "xm", Some(id), name)?;
                personal::open_cell(ring, persons, id, "gmsfhm", Some(id), citizen_id)?;
            }
        }
        let documents = held.iter().map(|d| d.id.clone()).collect();
        let person = match filed {
            Some(row) => PersonRecord {
                id: row.try_get("rybs")?,
                name: filed_cells.as_ref().and_then(|c| c.0.clone()),
                citizen_id: filed_cells.as_ref().and_then(|c| c.1.clone()),
                status: PersonStatus::Filed(state(&row, "state")?),
                // A person erased before any filing has no unit of their own: the unit that
                // holds their documents sees them.
                unit: match row.try_get::<Option<String>, _>("unit")? {
                    Some(unit) => Some(unit),
                    None => identifying(&held).and_then(|d| d.unit.clone()),
                },
                documents,
            },
            None => match identifying(&held) {
                // Named by no document either: nobody.
                None => return Ok(None),
                Some(document) => PersonRecord {
                    id: id.to_string(),
                    name: document.name.clone(),
                    citizen_id: document.citizen_id.clone(),
                    status: PersonStatus::HolderOnly,
                    unit: document.unit.clone(),
                    documents,
                },
            },
        };
        Ok(Some(person).filter(|p| scope.sees(p.unit.as_deref())))
    }

    /// The RYBS of the persons with this citizen ID number (by its blind index: filed ones and
    /// documents' holders), those `scope` sees, in order.
    pub async fn persons_by_citizen_id(
        &self,
        scope: &Scope,
        citizen_id: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        let persons = self.generation(Projection::Persons).await?;
        let documents = self.generation(Projection::Documents).await?;
        let filed = self
            .blind_index_condition(&[("gmsfhm_index", "gmsfhm", Some(citizen_id))])
            .await?;
        let held = self
            .blind_index_condition(&[("holder_gmsfhm_index", "gmsfhm", Some(citizen_id))])
            .await?;
        let sql = format!(
            "SELECT rybs AS id FROM view_persons WHERE generation = $1{filed} \
             UNION SELECT holder_rybs AS id FROM view_documents \
             WHERE generation = $2 AND holder_rybs IS NOT NULL{held} ORDER BY id"
        );
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(persons)
            .bind(documents)
            .fetch_all(self.pool())
            .await?;
        let mut seen = Vec::new();
        for id in ids {
            if self.person(scope, &id).await?.is_some() {
                seen.push(id);
            }
        }
        Ok(seen)
    }

    /// The names of these persons, opened: a filed person's own, else the one their document's
    /// record gives (an erased person has none).
    pub async fn names_of(
        &self,
        persons: &HashSet<String>,
    ) -> Result<HashMap<String, String>, ProjectionError> {
        let mut names = HashMap::new();
        if persons.is_empty() {
            return Ok(names);
        }
        let persons_generation = self.generation(Projection::Persons).await?;
        let documents_generation = self.generation(Projection::Documents).await?;
        let wanted: Vec<&String> = persons.iter().collect();
        for chunk in wanted.chunks(400) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let marks = marks.join(", ");
            // Filed names first, so that they win over a record's.
            let sqls = [
                (
                    format!(
                        "SELECT rybs AS person, rybs AS place_id, xm AS name FROM view_persons \
                         WHERE generation = $1 AND rybs IN ({marks})"
                    ),
                    persons_generation,
                    personal::PERSONS.table,
                    "xm",
                ),
                (
                    format!(
                        "SELECT holder_rybs AS person, zjbs AS place_id, holder_xm AS name \
                         FROM view_documents WHERE generation = $1 AND holder_rybs IN ({marks})"
                    ),
                    documents_generation,
                    personal::DOCUMENTS.table,
                    "holder_xm",
                ),
            ];
            for (sql, generation, table, column) in sqls {
                let mut query = sqlx::query(&sql).bind(generation);
                for person in chunk {
                    query = query.bind(person.as_str());
                }
                let mut rows: Vec<(String, String, Option<String>)> = Vec::new();
                for row in query.fetch_all(self.pool()).await? {
                    rows.push((
                        row.try_get("person")?,
                        row.try_get("place_id")?,
                        row.try_get("name")?,
                    ));
                }
                let ring = personal::ring_for_cells(
                    &self.log,
                    rows.iter()
                        .map(|(p, _, n)| (Some(p.clone()), personal::is_sealed(n.as_deref()))),
                )
                .await?;
                for (person, place_id, mut name) in rows {
                    if names.contains_key(&person) {
                        continue;
                    }
                    personal::open_cell(
                        ring.as_ref(),
                        table,
                        &place_id,
                        column,
                        Some(&person),
                        &mut name,
                    )?;
                    if let Some(name) = name {
                        names.insert(person, name);
                    }
                }
            }
        }
        Ok(names)
    }

    /// The ZJBS of every document naming `holder`, whatever the scope (an operator's erasure
    /// asks), in order.
    pub async fn documents_held_by(&self, holder: &str) -> Result<Vec<String>, ProjectionError> {
        Ok(self
            .held_by(holder)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect())
    }

    /// The documents naming `holder`, in ZJBS order.
    async fn held_by(&self, holder: &str) -> Result<Vec<Held>, ProjectionError> {
        let documents = self.generation(Projection::Documents).await?;
        sqlx::query(
            "SELECT zjbs, holder_xm, holder_gmsfhm, unit, updated_at FROM view_documents \
             WHERE generation = $1 AND holder_rybs = $2 ORDER BY zjbs",
        )
        .bind(documents)
        .bind(holder)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(Held {
                id: row.try_get("zjbs")?,
                name: row.try_get("holder_xm")?,
                citizen_id: row.try_get("holder_gmsfhm")?,
                unit: row.try_get("unit")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
    }
}

/// The document that speaks for a holder-only person: the one changed last among those a unit
/// holds (where their passport is now), else the one changed last.
fn identifying(held: &[Held]) -> Option<&Held> {
    let changed = |d: &Held| DateTime::parse_from_rfc3339(&d.updated_at).ok();
    held.iter().max_by_key(|d| {
        (
            d.unit.is_some(),
            changed(d),
            std::cmp::Reverse(d.id.as_str()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, unit: Option<&str>, updated_at: &str) -> Held {
        Held {
            id: id.into(),
            name: Some(format!("name of {id}")),
            citizen_id: None,
            unit: unit.map(str::to_string),
            updated_at: updated_at.into(),
        }
    }

    #[test]
    fn the_latest_document_a_unit_holds_speaks_for_the_holder() {
        let documents = [
            held("A", Some("U1"), "2026-11-23T10:00:00+08:00"),
            held("B", Some("U2"), "2026-11-23T11:00:00+08:00"),
            held("C", None, "2026-11-23T12:00:00+08:00"),
        ];
        assert_eq!(identifying(&documents).map(|d| d.id.as_str()), Some("B"));
        // Times are compared as instants: 02:30Z is 10:30 China time, though "02" < "10".
        let documents = [
            held("A", Some("U1"), "2026-11-23T10:00:00+08:00"),
            held("B", Some("U2"), "2026-11-23T02:30:00Z"),
        ];
        assert_eq!(identifying(&documents).map(|d| d.id.as_str()), Some("B"));
        assert_eq!(
            identifying(&[held("C", None, "x")]).map(|d| d.id.as_str()),
            Some("C")
        );
        assert!(identifying(&[]).is_none());
    }
}
