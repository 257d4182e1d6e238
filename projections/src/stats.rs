//! The `stats` projection: the counts of SPEC §7's statistics (documents by state, withdrawals
//! per day, destinations, overdue) kept per unit and day (migration 0011) and rolled up per org
//! node (migration 0012), so that a reader adds up the rows of its scope's roots instead of
//! scanning the views ([`crate::read::stats`]).
//!
//! Every document has a row of what it contributes ([`DOCUMENTS`]: its state, the unit whose
//! cabinet last held it, its holder and planned return). When an event changes a document, its
//! old contribution is taken back from the counters and its new one added: a delta per counter
//! key, written as `n = n + excluded.n`. The document's next state is the domain's own
//! `Document::apply` on what the row holds, so the counts can never disagree with the state
//! machine. Withdrawals and destinations are counted once per event, like the access records
//! they mirror ([`crate::views::access_record`]).
//!
//! A document no cabinet held yet has no unit of its own: the scan counted it for its holder's
//! unit (`COALESCE(d.unit, p.unit)`), which belongs to the Person aggregate, so those documents
//! are not in the unit counters; a subtree's readers count them from [`DOCUMENTS`] joined with
//! the persons view (an index holds just them, with the columns counted). For the whole tree,
//! whoever their holders are, they are counted in [`UNDEPOSITED`] by state and planned return.
//!
//! Every counter is kept twice: per unit (its own documents, migration 0011) and per org node
//! for the node's whole subtree ([`NODE_STATES`] and the rest, migration 0012), so that a
//! subtree's statistics read its root's rows. A unit's deltas are added to itself and to each
//! of its ancestors, as the org tree had them when the generation first counted the unit
//! ([`UNITS`]; the tree only grows, so that stays right). A unit not in the tree then (its org
//! registered after its documents were counted) is rolled up into nothing above it; readers add
//! its own rows where a scope holds it (`crate::read::stats`).
//!
//! The fold is the projector's like any other ([`crate::views::Fold`]): exactly once per
//! aggregate sequence, in the batch's transaction, and rebuilt into a fresh generation.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use custody_domain::document::{Document, DocumentEvent, DocumentState};
use custody_domain::identifiers::CreditCode;
use custody_domain::person::{Person, PersonEvent};
use custody_domain::reminder::china_date;
use custody_domain::transitions::Named;
use custody_eventlog::{EventLog, PlatformStore};
use sqlx::{Any, Row as _, Transaction};

use crate::bulk::{self, OnConflict, Placeholders, Row, Table};
use crate::views::{access_record, EventRef};
use crate::ProjectionError;

/// The kinds of access record that take a document out: the withdrawals counted.
pub(crate) const WITHDRAWALS: [&str; 3] = ["lend", "take_out", "abnormal_withdrawal"];

pub(crate) const DOCUMENTS: Table = Table {
    name: "view_stats_documents",
    columns: &[
        "generation",
        "zjbs",
        "state",
        "unit",
        "holder_rybs",
        "planned_return",
    ],
    key: &["generation", "zjbs"],
    on_conflict: OnConflict::Update,
};

pub(crate) const STATES: Table = Table {
    name: "view_stats_states",
    columns: &["generation", "unit", "state", "n"],
    key: &["generation", "unit", "state"],
    on_conflict: OnConflict::Add,
};

pub(crate) const DUE: Table = Table {
    name: "view_stats_due",
    columns: &["generation", "unit", "planned_return", "n"],
    key: &["generation", "unit", "planned_return"],
    on_conflict: OnConflict::Add,
};

pub(crate) const WITHDRAWALS_PER_DAY: Table = Table {
    name: "view_stats_withdrawals",
    columns: &["generation", "unit", "day", "n"],
    key: &["generation", "unit", "day"],
    on_conflict: OnConflict::Add,
};

pub(crate) const DESTINATIONS: Table = Table {
    name: "view_stats_destinations",
    columns: &["generation", "unit", "destination", "n"],
    key: &["generation", "unit", "destination"],
    on_conflict: OnConflict::Add,
};

/// Each person's unit, as the Person aggregate has it: the unit their documents no cabinet
/// has held count for (migration 0019).
pub(crate) const HOLDERS: Table = Table {
    name: "view_stats_holders",
    columns: &["generation", "rybs", "unit"],
    key: &["generation", "rybs"],
    on_conflict: OnConflict::Update,
};

/// The documents no cabinet has held yet, by state and planned return ('' for none): the whole
/// tree's share of them (migration 0019).
pub(crate) const UNDEPOSITED: Table = Table {
    name: "view_stats_undeposited",
    columns: &["generation", "state", "planned_return", "n"],
    key: &["generation", "state", "planned_return"],
    on_conflict: OnConflict::Add,
};

/// Withdrawals with a destination per unit, China-time day, destination and holder: the
/// destinations page's counts for a period ([`crate::read::destinations`]).
pub(crate) const TRIPS: Table = Table {
    name: "view_stats_trips",
    columns: &[
        "generation",
        "unit",
        "day",
        "destination",
        "holder_rybs",
        "n",
    ],
    key: &["generation", "unit", "day", "destination", "holder_rybs"],
    on_conflict: OnConflict::Add,
};

/// Each counted unit's place in the org tree, fixed when the generation first counted it.
pub(crate) const UNITS: Table = Table {
    name: "view_stats_units",
    columns: &["generation", "unit", "placed", "ancestors"],
    key: &["generation", "unit"],
    on_conflict: OnConflict::Nothing,
};

/// [`STATES`] per org node, for its subtree.
pub(crate) const NODE_STATES: Table = Table {
    name: "view_stats_node_states",
    columns: &["generation", "node", "state", "n"],
    key: &["generation", "node", "state"],
    on_conflict: OnConflict::Add,
};

pub(crate) const NODE_DUE: Table = Table {
    name: "view_stats_node_due",
    columns: &["generation", "node", "planned_return", "n"],
    key: &["generation", "node", "planned_return"],
    on_conflict: OnConflict::Add,
};

pub(crate) const NODE_WITHDRAWALS: Table = Table {
    name: "view_stats_node_withdrawals",
    columns: &["generation", "node", "day", "n"],
    key: &["generation", "node", "day"],
    on_conflict: OnConflict::Add,
};

pub(crate) const NODE_DESTINATIONS: Table = Table {
    name: "view_stats_node_destinations",
    columns: &["generation", "node", "destination", "n"],
    key: &["generation", "node", "destination"],
    on_conflict: OnConflict::Add,
};

/// The projection's tables, for clearing a generation.
pub(crate) const TABLES: [&str; 13] = [
    DOCUMENTS.name,
    HOLDERS.name,
    UNDEPOSITED.name,
    TRIPS.name,
    STATES.name,
    DUE.name,
    WITHDRAWALS_PER_DAY.name,
    DESTINATIONS.name,
    UNITS.name,
    NODE_STATES.name,
    NODE_DUE.name,
    NODE_WITHDRAWALS.name,
    NODE_DESTINATIONS.name,
];

/// The org tree as the projection places units in it: each node's parent.
#[derive(Debug, Default)]
pub(crate) struct OrgTree {
    parents: HashMap<String, Option<String>>,
}

impl OrgTree {
    pub(crate) async fn load(log: &EventLog) -> Result<OrgTree, ProjectionError> {
        let parents = log
            .platform()
            .orgs()
            .await?
            .into_iter()
            .map(|org| (org.code, org.parent))
            .collect();
        Ok(OrgTree { parents })
    }

    /// The tree as `tx` sees it, read on its own connection.
    async fn load_on(tx: &mut Transaction<'static, Any>) -> Result<OrgTree, ProjectionError> {
        let parents = PlatformStore::org_parents_on(tx)
            .await?
            .into_iter()
            .collect();
        Ok(OrgTree { parents })
    }

    /// The nodes above `unit`, nearest first; None if `unit` is not in the tree.
    fn ancestors(&self, unit: &str) -> Option<Vec<String>> {
        let mut parent = self.parents.get(unit)?.clone();
        let mut above: Vec<String> = Vec::new();
        while let Some(node) = parent {
            // The API cannot make a cycle (a parent exists before its child); stop on one
            // rather than loop.
            if node == unit || above.contains(&node) {
                break;
            }
            parent = self.parents.get(&node).cloned().flatten();
            above.push(node);
        }
        Some(above)
    }
}

/// Where a unit's deltas go besides itself.
struct Placement {
    /// Whether the unit was in the org tree: its deltas are rolled up into `ancestors`.
    placed: bool,
    ancestors: Vec<String>,
    /// Not yet written to [`UNITS`].
    new: bool,
}

/// A document as the counters know it: only the fields of [`DOCUMENTS`] are kept.
struct Counted {
    /// As the generation counted it before this fold (None: never counted).
    stored: Option<Document>,
    document: Document,
    changed: bool,
}

/// A person as the counters know them: the unit their documents no cabinet has held count for.
#[derive(Default)]
struct Holder {
    /// As the generation had it before this fold (None also when it had no row).
    stored: Option<CreditCode>,
    /// Whether `stored` is what the generation has (loaded, or known to be nothing).
    loaded: bool,
    /// Settled to a unit the generation does not have yet: to write.
    changed: bool,
    /// The Person aggregate as far as this fold applied it (only its unit is kept).
    person: Option<Person>,
}

impl Holder {
    fn unit(&self) -> Option<&CreditCode> {
        match &self.person {
            Some(person) => person.unit.as_ref(),
            None => self.stored.as_ref(),
        }
    }

    fn moved(&self) -> bool {
        self.person.is_some() && self.unit() != self.stored.as_ref()
    }
}

/// The deltas of the counters and the documents' contributions, in memory until written.
#[derive(Default)]
pub(crate) struct Counters {
    documents: HashMap<String, Counted>,
    /// The documents' holders, by RYBS (see the module's header).
    holders: HashMap<String, Holder>,
    states: HashMap<(String, &'static str), i64>,
    due: HashMap<(String, NaiveDate), i64>,
    /// Documents no cabinet has held yet whose holder has no unit, by state and planned return.
    undeposited: HashMap<(&'static str, Option<NaiveDate>), i64>,
    withdrawals: HashMap<(String, NaiveDate), i64>,
    /// All time, not per day: the statistics show destinations' totals, and a unit then keeps
    /// a row per country (tens) instead of one per day and country (hundreds).
    destinations: HashMap<(String, String), i64>,
    /// Per unit, day, destination and holder ('' if none); per unit only, not rolled up: a
    /// period's holders are read from the scope's units.
    trips: HashMap<(String, NaiveDate, String, String), i64>,
    /// The units with deltas, placed in the org tree (see the module's header).
    placements: HashMap<String, Placement>,
    /// The tree to place units in without asking the store (a rebuild reads it once).
    orgs: Option<Arc<OrgTree>>,
    /// What a rebuild still has to write, once [`Counters::drain`] started.
    draining: Option<Vec<(&'static Table, Vec<Row>)>>,
}

impl Counters {
    /// Counters that place new units in `orgs` (a rebuild's, into an empty generation).
    pub(crate) fn placing_in(orgs: Arc<OrgTree>) -> Counters {
        Counters {
            orgs: Some(orgs),
            ..Counters::default()
        }
    }

    /// Places the units with deltas that are not placed yet: as `generation` placed them when it
    /// first counted them, else in the org tree as it is now. Once settled.
    async fn place(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        generation: i64,
    ) -> Result<(), ProjectionError> {
        let unplaced = self.unplaced();
        if unplaced.is_empty() {
            return Ok(());
        }
        let placeholders = Placeholders::of(tx);
        for chunk in bulk::lookup_chunks(&unplaced) {
            let sql = format!(
                "SELECT unit, placed, ancestors FROM {} WHERE generation = {} AND unit IN ({})",
                UNITS.name,
                placeholders.list(1, 1),
                placeholders.list(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(generation);
            for unit in chunk {
                query = query.bind(unit.as_str());
            }
            for row in query.fetch_all(&mut **tx).await? {
                let ancestors: String = row.try_get("ancestors")?;
                self.placements.insert(
                    row.try_get("unit")?,
                    Placement {
                        placed: row.try_get::<i64, _>("placed")? != 0,
                        ancestors: ancestors
                            .split(',')
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect(),
                        new: false,
                    },
                );
            }
        }
        if !self.unplaced().is_empty() {
            let orgs = match &self.orgs {
                Some(orgs) => orgs.clone(),
                // On the transaction's own connection: it holds the write lock on SQLite, and
                // waiting for another connection of the pool while the others wait for that
                // lock stalled every writer (ingress too) until one gave up.
                None => Arc::new(OrgTree::load_on(tx).await?),
            };
            self.place_in(&orgs);
        }
        Ok(())
    }

    /// The units with deltas not placed yet, in order.
    fn unplaced(&self) -> Vec<String> {
        let mut units: Vec<String> = self
            .states
            .keys()
            .map(|k| &k.0)
            .chain(self.due.keys().map(|k| &k.0))
            .chain(self.withdrawals.keys().map(|k| &k.0))
            .chain(self.destinations.keys().map(|k| &k.0))
            .filter(|unit| !self.placements.contains_key(*unit))
            .cloned()
            .collect();
        units.sort_unstable();
        units.dedup();
        units
    }

    /// Places every unit not placed yet in `orgs` (or nowhere, if it is not in the tree).
    fn place_in(&mut self, orgs: &OrgTree) {
        for unit in self.unplaced() {
            let ancestors = orgs.ancestors(&unit);
            self.placements.insert(
                unit,
                Placement {
                    placed: ancestors.is_some(),
                    ancestors: ancestors.unwrap_or_default(),
                    new: true,
                },
            );
        }
    }

    /// Loads the rows of the documents and persons `ids` that `generation` has.
    pub(crate) async fn load(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        generation: i64,
        ids: &[&str],
    ) -> Result<(), ProjectionError> {
        self.load_documents(tx, generation, "zjbs", ids).await?;
        self.load_holders(tx, generation, ids).await
    }

    /// Loads the documents of `generation` whose `key` column is one of `values`, unless held.
    async fn load_documents(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        generation: i64,
        key: &str,
        values: &[&str],
    ) -> Result<(), ProjectionError> {
        // Only a holder's documents no cabinet has held follow the holder (partial index).
        let unitless = if key == "holder_rybs" {
            " AND unit IS NULL"
        } else {
            ""
        };
        let placeholders = Placeholders::of(tx);
        for chunk in bulk::lookup_chunks(values) {
            let sql = format!(
                "SELECT zjbs, state, unit, holder_rybs, planned_return FROM {} \
                 WHERE generation = {} AND {key} IN ({}){unitless}",
                DOCUMENTS.name,
                placeholders.list(1, 1),
                placeholders.list(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(generation);
            for value in chunk {
                query = query.bind(*value);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let id: String = row.try_get("zjbs")?;
                if self.documents.contains_key(&id) {
                    continue;
                }
                let document = stored_document(
                    &row.try_get::<String, _>("state")?,
                    row.try_get("unit")?,
                    row.try_get("holder_rybs")?,
                    row.try_get("planned_return")?,
                )
                .map_err(|e| ProjectionError::Decode(format!("{} {id}: {e}", DOCUMENTS.name)))?;
                self.documents.insert(
                    id,
                    Counted {
                        stored: Some(document.clone()),
                        document,
                        changed: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// Loads the units `generation` has for the persons `ids` not loaded yet.
    async fn load_holders(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        generation: i64,
        ids: &[&str],
    ) -> Result<(), ProjectionError> {
        let ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !self.holders.get(*id).is_some_and(|h| h.loaded))
            .collect();
        let placeholders = Placeholders::of(tx);
        for chunk in bulk::lookup_chunks(&ids) {
            let sql = format!(
                "SELECT rybs, unit FROM {} WHERE generation = {} AND rybs IN ({})",
                HOLDERS.name,
                placeholders.list(1, 1),
                placeholders.list(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(generation);
            for id in &chunk {
                query = query.bind(**id);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let rybs: String = row.try_get("rybs")?;
                let unit: String = row.try_get("unit")?;
                let unit = unit.parse().map_err(|e| {
                    ProjectionError::Decode(format!("{} {rybs}: unit: {e}", HOLDERS.name))
                })?;
                self.holders.entry(rybs).or_default().stored = Some(unit);
            }
            for id in chunk {
                self.holders.entry((**id).to_string()).or_default().loaded = true;
            }
        }
        Ok(())
    }

    /// Brings in what [`Counters::settle`] needs beyond the fold's own aggregates: the units of
    /// the changed documents' holders, and the documents no cabinet has held of every holder
    /// whose unit changed.
    async fn load_for_settling(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        generation: i64,
    ) -> Result<(), ProjectionError> {
        let holders: Vec<String> = self
            .documents
            .values()
            .filter(|c| c.changed)
            .flat_map(|c| [c.stored.as_ref(), Some(&c.document)])
            .flatten()
            .filter_map(|d| d.holder.as_ref().map(|h| h.to_string()))
            .collect();
        let holders: Vec<&str> = holders.iter().map(String::as_str).collect();
        self.load_holders(tx, generation, &holders).await?;
        let moved: Vec<String> = self
            .holders
            .iter()
            .filter(|(_, h)| h.moved())
            .map(|(rybs, _)| rybs.clone())
            .collect();
        let moved: Vec<&str> = moved.iter().map(String::as_str).collect();
        self.load_documents(tx, generation, "holder_rybs", &moved)
            .await
    }

    /// Counts a Person event: the unit their documents no cabinet has held count for.
    fn apply_person(&mut self, event: &EventRef) -> Result<(), ProjectionError> {
        let decoded = event.decode::<PersonEvent>()?;
        let holder = self
            .holders
            .entry(event.aggregate_id.to_string())
            .or_default();
        let person = holder.person.get_or_insert_with(|| Person {
            unit: holder.stored.clone(),
            ..Person::default()
        });
        person.apply(decoded);
        Ok(())
    }

    /// Turns what the fold changed into the counters' deltas: each changed document's old
    /// contribution taken back and its new one added, and so for the documents no cabinet has
    /// held of every holder whose unit changed. Before the counters are written.
    fn settle(&mut self) {
        let holders = &self.holders;
        let before = |d: &Document| {
            let holder = d.holder.as_ref().and_then(|h| holders.get(&h.to_string()));
            contribution(d, holder.and_then(|h| h.stored.as_ref()))
        };
        let after = |d: &Document| {
            let holder = d.holder.as_ref().and_then(|h| holders.get(&h.to_string()));
            contribution(d, holder.and_then(Holder::unit))
        };
        let mut deltas = Vec::new();
        for counted in self.documents.values() {
            let then = counted.stored.as_ref().map(before);
            let now = if counted.changed {
                Some(after(&counted.document))
            } else {
                counted.stored.as_ref().map(after)
            };
            if then != now {
                deltas.extend(then.map(|c| (c, -1)));
                deltas.extend(now.map(|c| (c, 1)));
            }
        }
        for (contribution, n) in deltas {
            self.count(contribution, n);
        }
        // Settled: what the fold holds is now what the generation will have counted.
        for counted in self.documents.values_mut() {
            counted.stored = Some(counted.document.clone());
        }
        for holder in self.holders.values_mut() {
            if let Some(person) = &holder.person {
                if holder.stored != person.unit {
                    holder.stored = person.unit.clone();
                    holder.changed = true;
                }
            }
        }
    }

    /// Counts an event: a Person event's unit ([`Counters::apply_person`]), or a Document
    /// event's withdrawal, if it is one, and the change of its document (counted once settled).
    pub(crate) fn apply(&mut self, event: &EventRef) -> Result<(), ProjectionError> {
        if event.aggregate_type == "Person" {
            return self.apply_person(event);
        }
        let decoded = event.decode::<DocumentEvent>()?;
        let mut trip = None;
        if let Some(record) = access_record(&decoded, None) {
            if WITHDRAWALS.contains(&record.kind) {
                let unit = record.location.unit.to_string();
                let day = china_date(record.operated_at);
                *self.withdrawals.entry((unit.clone(), day)).or_default() += 1;
                if let Some(destination) = record.destination {
                    *self
                        .destinations
                        .entry((unit.clone(), destination.clone()))
                        .or_default() += 1;
                    trip = Some((unit, day, destination));
                }
            }
        }
        let counted = self
            .documents
            .entry(event.aggregate_id.to_string())
            .or_insert_with(|| Counted {
                stored: None,
                document: Document::default(),
                changed: false,
            });
        counted.document.apply(decoded);
        counted.changed = true;
        if let Some((unit, day, destination)) = trip {
            // The holder as the document knows them once the withdrawal is applied: what the
            // documents view shows for it (a document's holder does not change).
            let holder = counted
                .document
                .holder
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_default();
            *self
                .trips
                .entry((unit, day, destination, holder))
                .or_default() += 1;
        }
        Ok(())
    }

    /// Adds `n` to the counters of a document's contribution.
    fn count(&mut self, contribution: Contribution, n: i64) {
        match contribution {
            Contribution::Unit { unit, state, due } => {
                if let Some(date) = due {
                    *self.due.entry((unit.clone(), date)).or_default() += n;
                }
                *self.states.entry((unit, state)).or_default() += n;
            }
            Contribution::Undeposited {
                state,
                planned_return,
            } => *self.undeposited.entry((state, planned_return)).or_default() += n,
        }
    }

    /// Writes the changed documents and the counters' deltas in the caller's transaction.
    pub(crate) async fn write(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        generation: i64,
    ) -> Result<(), ProjectionError> {
        self.load_for_settling(tx, generation).await?;
        self.settle();
        self.place(tx, generation).await?;
        for (table, rows) in self.take_all(generation) {
            bulk::insert(&mut *tx, table, &rows).await?;
        }
        Ok(())
    }

    /// Up to `max` rows of what is held (counters, then documents, each table in key order),
    /// letting go of them; None once all is out. For a rebuild into an empty generation.
    pub(crate) fn drain(
        &mut self,
        generation: i64,
        max: usize,
    ) -> Option<(&'static Table, Vec<Row>)> {
        if self.draining.is_none() {
            // A rebuild's fold holds every document and holder it counts: nothing to load.
            self.settle();
            let mut all = self.take_all(generation);
            all.reverse();
            self.draining = Some(all);
        }
        let pending = self.draining.as_mut()?;
        loop {
            let (table, rows) = pending.last_mut()?;
            if rows.is_empty() {
                pending.pop();
                continue;
            }
            let rest = rows.split_off(rows.len().min(max.max(1)));
            let chunk = std::mem::replace(rows, rest);
            return Some((*table, chunk));
        }
    }

    /// Every row to write, each table's in key order (the same order for every writer, so two
    /// transactions adding to the same counters wait for each other rather than deadlock), the
    /// counters without the deltas that came to nothing.
    fn take_all(&mut self, generation: i64) -> Vec<(&'static Table, Vec<Row>)> {
        // Without a tree to place them in, units not placed yet count for themselves only;
        // readers then add their own rows, which is right, if slower (see the module's header).
        let orgs = self.orgs.clone().unwrap_or_default();
        self.place_in(&orgs);
        let mut node_states = rolled_up(&self.states, &self.placements);
        let mut node_due = rolled_up(&self.due, &self.placements);
        let mut node_withdrawals = rolled_up(&self.withdrawals, &self.placements);
        let mut node_destinations = rolled_up(&self.destinations, &self.placements);
        let units: Vec<Row> = self
            .placements
            .iter_mut()
            .filter(|(_, p)| p.new)
            .map(|(unit, p)| {
                p.new = false;
                vec![
                    generation.into(),
                    unit.as_str().into(),
                    i64::from(p.placed).into(),
                    p.ancestors.join(",").into(),
                ]
            })
            .collect();
        fn rows<K>(
            deltas: &mut HashMap<K, i64>,
            generation: i64,
            key: impl Fn(K) -> Row,
        ) -> Vec<Row> {
            deltas
                .drain()
                .filter(|(_, n)| *n != 0)
                .map(|(k, n)| {
                    let mut row: Row = vec![generation.into()];
                    row.extend(key(k));
                    row.push(n.into());
                    row
                })
                .collect()
        }
        let holders: Vec<Row> = self
            .holders
            .iter_mut()
            .filter(|(_, h)| h.changed)
            .filter_map(|(rybs, h)| {
                h.changed = false;
                let unit = h.stored.as_ref()?;
                Some(vec![
                    generation.into(),
                    rybs.as_str().into(),
                    unit.to_string().into(),
                ])
            })
            .collect();
        let mut all = vec![
            (
                &STATES,
                rows(&mut self.states, generation, |(unit, state)| {
                    vec![unit.into(), state.into()]
                }),
            ),
            (
                &DUE,
                rows(&mut self.due, generation, |(unit, date)| {
                    vec![unit.into(), date.to_string().into()]
                }),
            ),
            (
                &UNDEPOSITED,
                rows(
                    &mut self.undeposited,
                    generation,
                    |(state, planned_return)| {
                        let planned_return = planned_return.map(|d| d.to_string());
                        vec![state.into(), planned_return.unwrap_or_default().into()]
                    },
                ),
            ),
            (
                &WITHDRAWALS_PER_DAY,
                rows(&mut self.withdrawals, generation, |(unit, day)| {
                    vec![unit.into(), day.to_string().into()]
                }),
            ),
            (
                &DESTINATIONS,
                rows(&mut self.destinations, generation, |(unit, destination)| {
                    vec![unit.into(), destination.into()]
                }),
            ),
            (
                &TRIPS,
                rows(
                    &mut self.trips,
                    generation,
                    |(unit, day, destination, holder)| {
                        vec![
                            unit.into(),
                            day.to_string().into(),
                            destination.into(),
                            holder.into(),
                        ]
                    },
                ),
            ),
            (
                &NODE_STATES,
                rows(&mut node_states, generation, |(node, state)| {
                    vec![node.into(), state.into()]
                }),
            ),
            (
                &NODE_DUE,
                rows(&mut node_due, generation, |(node, date)| {
                    vec![node.into(), date.to_string().into()]
                }),
            ),
            (
                &NODE_WITHDRAWALS,
                rows(&mut node_withdrawals, generation, |(node, day)| {
                    vec![node.into(), day.to_string().into()]
                }),
            ),
            (
                &NODE_DESTINATIONS,
                rows(&mut node_destinations, generation, |(node, destination)| {
                    vec![node.into(), destination.into()]
                }),
            ),
            (&UNITS, units),
            (&HOLDERS, holders),
        ];
        let documents: Vec<Row> = self
            .documents
            .iter_mut()
            .filter(|(_, counted)| counted.changed)
            .map(|(id, counted)| {
                counted.changed = false;
                document_row(generation, id, &counted.document)
            })
            .collect();
        all.push((&DOCUMENTS, documents));
        for (table, rows) in &mut all {
            bulk::sort_by_key(table, rows);
        }
        all
    }
}

/// Unit deltas rolled up per org node: each to its unit and to the nodes the unit is placed under.
fn rolled_up<K: Clone + Eq + Hash>(
    deltas: &HashMap<(String, K), i64>,
    placements: &HashMap<String, Placement>,
) -> HashMap<(String, K), i64> {
    let mut nodes: HashMap<(String, K), i64> = HashMap::new();
    for ((unit, key), n) in deltas.iter().filter(|(_, n)| **n != 0) {
        let above = placements
            .get(unit)
            .filter(|p| p.placed)
            .map_or(&[][..], |p| &p.ancestors[..]);
        for node in std::iter::once(unit).chain(above) {
            *nodes.entry((node.clone(), key.clone())).or_default() += n;
        }
    }
    nodes
}

/// What a document adds to the counters.
#[derive(Debug, PartialEq, Eq)]
enum Contribution {
    /// Held by a unit's cabinet (now or last), else counted for its holder's unit: its state,
    /// and its planned return date while it is due back.
    Unit {
        unit: String,
        state: &'static str,
        due: Option<NaiveDate>,
    },
    /// No cabinet has held it yet and its holder has no unit: counted for the whole tree only
    /// (see the module's header), with the planned return as the document has it, as the scan
    /// counted it.
    Undeposited {
        state: &'static str,
        planned_return: Option<NaiveDate>,
    },
}

/// What `document` adds to the counters once an event of it was counted, its holder's unit
/// being `holder_unit`.
fn contribution(document: &Document, holder_unit: Option<&CreditCode>) -> Contribution {
    let state = document.state.name();
    match document.unit.as_ref().or(holder_unit) {
        Some(unit) => Contribution::Unit {
            unit: unit.to_string(),
            state,
            due: document
                .planned_return
                .filter(|_| document.state == DocumentState::AwaitingReturn),
        },
        None => Contribution::Undeposited {
            state,
            planned_return: document.planned_return,
        },
    }
}

fn document_row(generation: i64, id: &str, document: &Document) -> Row {
    vec![
        generation.into(),
        id.into(),
        document.state.name().into(),
        document.unit.as_ref().map(|u| u.to_string()).into(),
        document.holder.as_ref().map(|h| h.to_string()).into(),
        document.planned_return.map(|d| d.to_string()).into(),
    ]
}

/// The document a [`DOCUMENTS`] row holds: the fields the counters read, nothing else.
fn stored_document(
    state: &str,
    unit: Option<String>,
    holder: Option<String>,
    planned_return: Option<String>,
) -> Result<Document, String> {
    let state = DocumentState::ALL
        .iter()
        .copied()
        .find(|s| s.name() == state)
        .ok_or_else(|| format!("{state:?} is no state"))?;
    Ok(Document {
        state,
        unit: unit
            .map(|u| u.parse())
            .transpose()
            .map_err(|e| format!("unit: {e}"))?,
        holder: holder
            .map(|h| h.parse())
            .transpose()
            .map_err(|e| format!("holder: {e}"))?,
        planned_return: planned_return
            .map(|d| d.parse())
            .transpose()
            .map_err(|e| format!("planned return: {e}"))?,
        ..Document::default()
    })
}
