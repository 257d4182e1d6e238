//! The readers of the views: every query the read API makes of the tables this crate owns
//! (`view_*`, `projections`), typed, beside the views that fill them. A reader answers rows
//! with named fields; the API turns them into its JSON and masks personal data there.
//!
//! Each reader reads the generation of each view it needs that readers see now (the
//! projection's `active_generation`), so a rebuild swapping generations is never half seen.
//!
//! - [`documents`]: one document, a page of documents, a holder's documents;
//! - [`persons`]: a person, filed or known only as a document's holder ([`PersonStatus`]);
//! - [`cabinets`]: a cabinet with its drawers' occupancy and last heartbeat; every cabinet's,
//!   counted;
//! - [`access_records`]: the deposits, withdrawals and corrections (存取记录);
//! - [`alerts`]: anomalies, device alarms and rejected reports;
//! - [`destinations`]: withdrawals' destinations in a period, per holder;
//! - [`stats`]: counts by state, withdrawals per day, destinations, overdue, summed from the
//!   `stats` projection's roll-ups of the scope's roots.

use std::collections::BTreeSet;

use custody_domain::transitions::Named;
use custody_eventlog::EventLog;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row as _};

use crate::{Projection, ProjectionError};

pub mod access_records;
pub mod alerts;
pub mod cabinets;
pub mod destinations;
pub mod documents;
pub mod persons;
pub mod stats;

pub use access_records::{AccessRecordFilter, AccessRecordRow};
pub use alerts::{Alerts, RejectedReport, ViewAlert};
pub use cabinets::{
    BodyOccupancy, CabinetRecord, CabinetSummary, DrawerOccupancy, Heartbeat, HeartbeatAge,
};
pub use destinations::{Destinations, PersonTrips};
pub use documents::{DocumentFilter, DocumentPage, DocumentRow, DrawerLocation, HolderRow};
pub use persons::{PersonRecord, PersonStatus};
pub use stats::Stats;

/// The units a reader may see: an org subtree, or everything (an operator without an org).
/// Anything outside is, to the reader, as if it did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    units: Option<BTreeSet<String>>,
    /// The org nodes whose subtrees `units` are, when known: the stats read their roll-ups.
    roots: Option<BTreeSet<String>>,
}

impl Scope {
    pub fn everything() -> Scope {
        Scope {
            units: None,
            roots: None,
        }
    }

    /// These units only, whatever they are (the statistics add up each unit's counters).
    pub fn units(units: BTreeSet<String>) -> Scope {
        Scope {
            units: Some(units),
            roots: None,
        }
    }

    /// The subtrees of the org nodes `roots`: `units` are those nodes and every node below
    /// them, and no root is below another (the statistics read the roots' roll-ups).
    pub fn subtrees(roots: BTreeSet<String>, units: BTreeSet<String>) -> Scope {
        Scope {
            units: Some(units),
            roots: Some(roots),
        }
    }

    /// Whether a row of `unit` is visible; a row of no unit is visible to everything only.
    pub fn sees(&self, unit: Option<&str>) -> bool {
        match (&self.units, unit) {
            (None, _) => true,
            (Some(units), Some(unit)) => units.contains(unit),
            (Some(_), None) => false,
        }
    }

    /// ` AND <column> IN ($next, …)` and the units to bind, in that order, after the
    /// statement's other parameters; nothing for everything.
    fn filter(&self, column: &str, next: usize) -> (String, Vec<String>) {
        match &self.units {
            None => (String::new(), vec![]),
            Some(units) => {
                let placeholders: Vec<String> =
                    (0..units.len()).map(|i| format!("${}", next + i)).collect();
                (
                    format!(" AND {column} IN ({})", placeholders.join(", ")),
                    units.iter().cloned().collect(),
                )
            }
        }
    }
}

/// A page of a list: `number` from 1, `size` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: i64,
    pub size: i64,
}

impl Page {
    fn offset(self) -> i64 {
        (self.number - 1) * self.size
    }
}

/// Reads the views (and, where a view needs it, the platform tables through `eventlog`).
#[derive(Clone)]
pub struct Reader {
    log: EventLog,
}

impl Reader {
    pub fn new(log: EventLog) -> Reader {
        Reader { log }
    }

    fn pool(&self) -> &AnyPool {
        self.log.platform().pool()
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// SQL narrowing rows to those whose blind-index column holds one of the cells a value may
    /// be stored as (each key of a rotation in progress), for each `(column, field, value)`
    /// given a value. The cells are ours (`k<n>:<hex>`), checked, and inlined.
    async fn blind_index_condition(
        &self,
        lookups: &[(&str, &str, Option<&str>)],
    ) -> Result<String, ProjectionError> {
        let mut sql = String::new();
        for (column, field, value) in lookups {
            let Some(value) = value else { continue };
            let Some(vault) = self.log.personal_data() else {
                return Err(custody_eventlog::EventLogError::NoMasterKey.into());
            };
            let keys = vault.index_keys().await?;
            let cells: Vec<String> = keys
                .candidates(field, value)
                .into_iter()
                .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'))
                .map(|c| format!("'{c}'"))
                .collect();
            sql.push_str(&format!(" AND {column} IN ({})", cells.join(", ")));
        }
        Ok(sql)
    }

    /// The generation of a view that readers see now.
    pub async fn generation(&self, projection: Projection) -> Result<i64, ProjectionError> {
        Ok(crate::status(self.pool(), projection)
            .await?
            .active_generation)
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds text parameters in order.
fn bind_texts<'q>(
    mut query: AnyQuery<'q>,
    values: impl IntoIterator<Item = String>,
) -> AnyQuery<'q> {
    for value in values {
        query = query.bind(value);
    }
    query
}

/// A state a view stores by name, back as the state machine's type.
fn state<S: Named>(row: &AnyRow, column: &str) -> Result<S, ProjectionError> {
    let name: String = row.try_get(column)?;
    S::ALL
        .iter()
        .copied()
        .find(|s| s.name() == name)
        .ok_or_else(|| ProjectionError::Decode(format!("{column} {name:?} is no state")))
}
