//! `view_persons`: the persons filed (Person aggregates).

use custody_domain::person::PersonState;
use custody_domain::transitions::Named;
use sqlx::Row as _;

use super::{state, Reader, Scope};
use crate::{Projection, ProjectionError};

/// Where a person stands on the read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonStatus {
    /// Filed: the Person aggregate's state.
    Filed(PersonState),
}

impl PersonStatus {
    pub fn name(self) -> &'static str {
        match self {
            PersonStatus::Filed(state) => state.name(),
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

impl Reader {
    /// A filed person, if `scope` sees them.
    pub async fn person(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<PersonRecord>, ProjectionError> {
        let persons = self.generation(Projection::Persons).await?;
        let Some(row) = sqlx::query(
            "SELECT rybs, xm, gmsfhm, state, unit FROM view_persons \
             WHERE generation = $1 AND rybs = $2",
        )
        .bind(persons)
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let unit: Option<String> = row.try_get("unit")?;
        if !scope.sees(unit.as_deref()) {
            return Ok(None);
        }
        let documents = self.generation(Projection::Documents).await?;
        let documents = sqlx::query(
            "SELECT zjbs FROM view_documents WHERE generation = $1 AND holder_rybs = $2 \
             ORDER BY zjbs",
        )
        .bind(documents)
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.try_get("zjbs"))
        .collect::<Result<_, _>>()?;
        Ok(Some(PersonRecord {
            id: row.try_get("rybs")?,
            name: row.try_get("xm")?,
            citizen_id: row.try_get("gmsfhm")?,
            status: PersonStatus::Filed(state(&row, "state")?),
            unit,
            documents,
        }))
    }
}
