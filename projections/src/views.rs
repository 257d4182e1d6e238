//! The views (SPEC §7) and how stored events change each.
//!
//! The three aggregate views (documents, persons, cabinets) keep the domain aggregate itself,
//! serialised, beside the columns readers filter on: an event is applied by the aggregate's own
//! `apply`, so a view can never disagree with the aggregate's state machine. Access records and
//! alerts are rows derived from single events.
//!
//! There is one way events become rows: a [`Fold`]. It applies events in memory, once per
//! aggregate sequence (skipping what was applied, filling a gap from the event store), and then
//! writes the rows it made with multi-row statements ([`crate::bulk`]). The live projector
//! folds each batch on top of the rows and positions it loads for the batch's aggregates; a
//! rebuild folds the whole log into an empty generation from nothing. Both compute rows with the
//! same functions, so they cannot disagree.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::Aggregate;
use custody_domain::cabinet::{Cabinet, CabinetEvent};
use custody_domain::document::{DepositKind, Document};
use custody_domain::document::{DocumentEvent, WithdrawalKind};
use custody_domain::person::Person;
use custody_domain::reconciliation::Reconciliation;
use custody_domain::transitions::Named;
use custody_eventlog::{EventLog, StoredEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Any, Row as _, Transaction};

use crate::bulk::{self, OnConflict, Placeholders, Row, Table};
use crate::personal::{self, PersonalColumns};
use crate::reconciliations::rows::{deviation_rows, DEVIATIONS, RECONCILIATIONS};
use crate::stats::{self, Counters, OrgTree};
use crate::ProjectionError;

/// A projection: one view, built by one projector, rebuildable on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    Documents,
    Persons,
    Cabinets,
    AccessRecords,
    Alerts,
    /// The nightly reconciliation's results (see [`crate::reconciliations`]).
    Reconciliations,
    /// The statistics' counters per unit and day (`projections/src/stats.rs`).
    Stats,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::Documents,
        Projection::Persons,
        Projection::Cabinets,
        Projection::AccessRecords,
        Projection::Alerts,
        Projection::Reconciliations,
        Projection::Stats,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Projection::Documents => "documents",
            Projection::Persons => "persons",
            Projection::Cabinets => "cabinets",
            Projection::AccessRecords => "access_records",
            Projection::Alerts => "alerts",
            Projection::Reconciliations => "reconciliations",
            Projection::Stats => "stats",
        }
    }

    pub fn parse(name: &str) -> Option<Projection> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether events of this aggregate type change the view.
    pub fn takes(self, aggregate_type: &str) -> bool {
        match self {
            Projection::Documents | Projection::AccessRecords => aggregate_type == "Document",
            // A person's unit is what their documents no cabinet has held count for.
            Projection::Stats => matches!(aggregate_type, "Document" | "Person"),
            Projection::Persons => aggregate_type == "Person",
            Projection::Cabinets => aggregate_type == "Cabinet",
            Projection::Alerts => matches!(aggregate_type, "Document" | "Cabinet"),
            Projection::Reconciliations => aggregate_type == Reconciliation::AGGREGATE,
        }
    }

    /// The view tables, for clearing a generation.
    pub(crate) fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::Documents => &["view_documents"],
            Projection::Persons => &["view_persons"],
            Projection::Cabinets => &["view_cabinets"],
            Projection::AccessRecords => &["view_access_records"],
            Projection::Alerts => &["view_alerts"],
            Projection::Reconciliations => &[RECONCILIATIONS.name, DEVIATIONS.name],
            Projection::Stats => &stats::TABLES,
        }
    }
}

const DOCUMENTS: Table = Table {
    name: "view_documents",
    columns: &[
        "generation",
        "zjbs",
        "version",
        "updated_at",
        "aggregate",
        "state",
        "zjlx",
        "zjhm",
        "holder_rybs",
        "holder_xm",
        "holder_gmsfhm",
        "unit",
        "sbxlh",
        "zjgxlh",
        "drawer_row",
        "drawer_col",
        "planned_return",
        "zjhm_index",
        "holder_gmsfhm_index",
    ],
    key: &["generation", "zjbs"],
    on_conflict: OnConflict::Update,
};

const PERSONS: Table = Table {
    name: "view_persons",
    columns: &[
        "generation",
        "rybs",
        "version",
        "updated_at",
        "aggregate",
        "state",
        "xm",
        "gmsfhm",
        "unit",
        "gmsfhm_index",
    ],
    key: &["generation", "rybs"],
    on_conflict: OnConflict::Update,
};

const CABINETS: Table = Table {
    name: "view_cabinets",
    columns: &[
        "generation",
        "sbxlh",
        "version",
        "updated_at",
        "aggregate",
        "state",
        "unit",
    ],
    key: &["generation", "sbxlh"],
    on_conflict: OnConflict::Update,
};

const ACCESS_RECORDS: Table = Table {
    name: "view_access_records",
    columns: &[
        "generation",
        "zjbs",
        "sequence",
        "kind",
        "unit",
        "sbxlh",
        "zjgxlh",
        "drawer_row",
        "drawer_col",
        "ywlsh",
        "operated_at",
        "operated_ms",
        "destination",
        "planned_return",
        "anomaly",
    ],
    key: &["generation", "zjbs", "sequence"],
    on_conflict: OnConflict::Nothing,
};

const ALERTS: Table = Table {
    name: "view_alerts",
    columns: &[
        "generation",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "kind",
        "unit",
        "detail",
        "raised_at",
        "raised_ms",
    ],
    key: &[
        "generation",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "kind",
    ],
    on_conflict: OnConflict::Nothing,
};

/// The last sequence of each aggregate a projection's generation has applied.
const POSITIONS: Table = Table {
    name: "projection_positions",
    columns: &[
        "projection",
        "generation",
        "aggregate_type",
        "aggregate_id",
        "sequence",
    ],
    key: &["projection", "generation", "aggregate_type", "aggregate_id"],
    on_conflict: OnConflict::Update,
};

/// An event as the views read it: borrowed from a feed's [`StoredEvent`], or from an event a
/// rebuild scanned as text ([`crate::scan::ScannedEvent`]), whose payload is decoded straight
/// into the domain event rather than through a `serde_json::Value`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventRef<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub payload: Payload<'a>,
    /// `recorded_at` of the metadata.
    pub recorded_at: Option<&'a str>,
    /// `ywlsh` (the business serial) of the metadata.
    pub ywlsh: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    Value(&'a Value),
    Text(&'a str),
}

impl<'a> From<&'a StoredEvent> for EventRef<'a> {
    fn from(event: &'a StoredEvent) -> Self {
        EventRef {
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            event_type: &event.event_type,
            payload: Payload::Value(&event.payload),
            recorded_at: event.metadata["recorded_at"].as_str(),
            ywlsh: event.metadata["ywlsh"].as_str(),
        }
    }
}

impl EventRef<'_> {
    fn recorded_at(&self) -> String {
        self.recorded_at.unwrap_or_default().to_string()
    }

    /// When the platform recorded the event, in epoch milliseconds.
    fn recorded_ms(&self) -> Option<i64> {
        self.recorded_at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    }

    pub(crate) fn decode<E: DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        match self.payload {
            Payload::Value(value) => E::deserialize(value),
            Payload::Text(text) => serde_json::from_str(text),
        }
        .map_err(|e| {
            ProjectionError::Decode(format!(
                "{} {} #{}: {e}",
                self.aggregate_type, self.aggregate_id, self.sequence
            ))
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ProjectionError> {
    serde_json::to_string(value).map_err(|e| ProjectionError::Decode(e.to_string()))
}

/// An aggregate a view keeps, and the row it makes.
pub(crate) trait ViewAggregate: Aggregate + Serialize {
    const TABLE: &'static Table;
    /// Its personal columns, sealed in the view (docs/personal-data.md).
    const PERSONAL: Option<&'static PersonalColumns> = None;

    /// Its state, as the view's `state` column names it.
    fn state_name(&self) -> &'static str;

    /// The columns that follow `state`, in the table's order: what readers filter on.
    fn columns(&self) -> Row;

    /// The view row of the aggregate after its event `version`: every aggregate view begins
    /// with the generation, the id, the version, when it changed, the aggregate itself (JSON)
    /// and its state; then its own columns.
    fn row(
        &self,
        generation: i64,
        id: &str,
        version: i64,
        updated_at: &str,
    ) -> Result<Row, ProjectionError> {
        let mut row = vec![
            generation.into(),
            id.into(),
            version.into(),
            updated_at.into(),
            to_json(self)?.into(),
            self.state_name().into(),
        ];
        row.extend(self.columns());
        Ok(row)
    }
}

impl ViewAggregate for Document {
    const TABLE: &'static Table = &DOCUMENTS;
    const PERSONAL: Option<&'static PersonalColumns> = Some(&personal::DOCUMENTS);

    fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn columns(&self) -> Row {
        let record = self.record.as_ref();
        let location = self.location.as_ref();
        vec![
            self.document_type.map(|t| t.code().to_string()).into(),
            self.number.as_ref().map(|n| n.to_string()).into(),
            self.holder.as_ref().map(|h| h.to_string()).into(),
            record.map(|r| r.chinese_name.clone()).into(),
            record.map(|r| r.citizen_id.to_string()).into(),
            self.unit.as_ref().map(|u| u.to_string()).into(),
            location.map(|l| l.device.to_string()).into(),
            location.map(|l| l.drawer.body.clone()).into(),
            location.map(|l| i64::from(l.drawer.row)).into(),
            location.map(|l| i64::from(l.drawer.column)).into(),
            self.planned_return.map(|d| d.to_string()).into(),
            // The blind indexes, filled where the cells are sealed (`personal::seal_rows`).
            None::<String>.into(),
            None::<String>.into(),
        ]
    }
}

impl ViewAggregate for Person {
    const TABLE: &'static Table = &PERSONS;
    const PERSONAL: Option<&'static PersonalColumns> = Some(&personal::PERSONS);

    fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn columns(&self) -> Row {
        let details = self.details.as_ref();
        vec![
            details.map(|d| d.name.clone()).into(),
            details.map(|d| d.citizen_id.to_string()).into(),
            self.unit.as_ref().map(|u| u.to_string()).into(),
            None::<String>.into(),
        ]
    }
}

impl ViewAggregate for Cabinet {
    const TABLE: &'static Table = &CABINETS;

    fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn columns(&self) -> Row {
        vec![self.unit.as_ref().map(|u| u.to_string()).into()]
    }
}

/// An access record (存取记录) of a deposit, withdrawal or correction.
pub struct AccessRecord {
    pub kind: &'static str,
    pub location: custody_domain::values::Location,
    pub operated_at: chrono::DateTime<chrono::FixedOffset>,
    pub destination: Option<String>,
    pub planned_return: Option<String>,
    pub anomaly: Option<String>,
}

/// The access record an event makes, if it is a deposit, withdrawal or correction.
pub fn access_record(
    event: &DocumentEvent,
    recorded: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> Option<AccessRecord> {
    let anomaly_name = |a: &Option<custody_domain::document::Anomaly>| {
        a.as_ref()
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().map(str::to_string))
    };
    match event {
        DocumentEvent::Deposited(e) => Some(AccessRecord {
            kind: match e.kind {
                DepositKind::New => "deposit_new",
                DepositKind::Return => "deposit_return",
            },
            location: e.location.clone(),
            operated_at: e.operated_at,
            destination: None,
            planned_return: None,
            anomaly: None,
        }),
        DocumentEvent::Withdrawn(e) => Some(AccessRecord {
            kind: match e.kind {
                WithdrawalKind::Lend => "lend",
                WithdrawalKind::TakeOut => "take_out",
            },
            location: e.location.clone(),
            operated_at: e.operated_at,
            destination: e.destination.clone(),
            planned_return: e.planned_return.map(|d| d.to_string()),
            anomaly: anomaly_name(&e.anomaly),
        }),
        DocumentEvent::AbnormalWithdrawal(e) => Some(AccessRecord {
            kind: "abnormal_withdrawal",
            location: e.location.clone(),
            operated_at: e.operated_at,
            destination: None,
            planned_return: None,
            anomaly: serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
        }),
        DocumentEvent::ReconciliationCorrected(e) => Some(AccessRecord {
            kind: "reconciliation_correction",
            location: e.location.clone(),
            operated_at: recorded?,
            destination: None,
            planned_return: None,
            anomaly: None,
        }),
        _ => None,
    }
}

/// The `view_access_records` row of a document event, if it makes one.
fn access_record_row(generation: i64, event: &EventRef) -> Result<Option<Row>, ProjectionError> {
    // Only these make one (see `access_record`); the others need not be decoded.
    if !matches!(
        event.event_type,
        "Deposited" | "Withdrawn" | "AbnormalWithdrawal" | "ReconciliationCorrected"
    ) {
        return Ok(None);
    }
    let decoded = event.decode::<DocumentEvent>()?;
    let recorded = match decoded {
        DocumentEvent::ReconciliationCorrected(_) => event
            .recorded_at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
        _ => None,
    };
    let Some(record) = access_record(&decoded, recorded) else {
        return Ok(None);
    };
    Ok(Some(vec![
        generation.into(),
        event.aggregate_id.into(),
        event.sequence.into(),
        record.kind.into(),
        record.location.unit.to_string().into(),
        record.location.device.to_string().into(),
        record.location.drawer.body.into(),
        i64::from(record.location.drawer.row).into(),
        i64::from(record.location.drawer.column).into(),
        event.ywlsh.map(str::to_string).into(),
        record.operated_at.to_rfc3339().into(),
        record.operated_at.timestamp_millis().into(),
        record.destination.into(),
        record.planned_return.into(),
        record.anomaly.into(),
    ]))
}

/// An alert an event raises: kind, the unit if the event names it, detail, when.
pub type Alert = (String, Option<String>, Value, String);

/// The alerts an event raises.
pub fn alerts(event: &StoredEvent) -> Result<Vec<Alert>, ProjectionError> {
    alerts_of(&EventRef::from(event))
}

fn alerts_of(event: &EventRef) -> Result<Vec<Alert>, ProjectionError> {
    // Only these raise one; the others need not be decoded.
    if !matches!(
        (event.aggregate_type, event.event_type),
        ("Document", "Withdrawn" | "BorderCrossed") | ("Cabinet", "AlarmRaised")
    ) {
        return Ok(vec![]);
    }
    let when = event.recorded_at();
    let anomaly = |a: &custody_domain::document::Anomaly| {
        serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    Ok(match event.aggregate_type {
        "Document" => match event.decode::<DocumentEvent>()? {
            DocumentEvent::Withdrawn(e) => e
                .anomaly
                .iter()
                .map(|a| {
                    (
                        anomaly(a),
                        Some(e.location.unit.to_string()),
                        json!({"zjbs": event.aggregate_id, "sbxlh": e.location.device,
                               "travel_approval": e.travel_approval, "ywlsh": event.ywlsh}),
                        when.clone(),
                    )
                })
                .collect(),
            DocumentEvent::BorderCrossed(e) => e
                .anomaly
                .iter()
                .map(|a| {
                    (
                        anomaly(a),
                        None,
                        json!({"zjbs": event.aggregate_id, "direction": e.direction,
                               "crossed_at": e.crossed_at, "port": e.port, "country": e.country}),
                        when.clone(),
                    )
                })
                .collect(),
            _ => vec![],
        },
        "Cabinet" => match event.decode::<CabinetEvent>()? {
            CabinetEvent::AlarmRaised(e) => vec![(
                "device_alarm".to_string(),
                None,
                json!({"sbxlh": event.aggregate_id, "alarm": e.kind, "content": e.content,
                       "raised_at": e.raised_at}),
                when,
            )],
            _ => vec![],
        },
        _ => vec![],
    })
}

/// The `view_alerts` rows of an event.
fn alert_rows(generation: i64, event: &EventRef) -> Result<Vec<Row>, ProjectionError> {
    Ok(alerts_of(event)?
        .into_iter()
        .map(|(kind, unit, detail, when)| {
            let raised_ms = chrono::DateTime::parse_from_rfc3339(&when)
                .map(|t| t.timestamp_millis())
                .unwrap_or_default();
            vec![
                generation.into(),
                event.aggregate_type.into(),
                event.aggregate_id.into(),
                event.sequence.into(),
                kind.into(),
                unit.into(),
                detail.to_string().into(),
                when.into(),
                raised_ms.into(),
            ]
        })
        .collect())
}

/// The aggregate types the views follow; positions are kept per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AggregateType {
    Document,
    Person,
    Cabinet,
    Reconciliation,
}

impl AggregateType {
    const ALL: [AggregateType; 4] = [
        AggregateType::Document,
        AggregateType::Person,
        AggregateType::Cabinet,
        AggregateType::Reconciliation,
    ];

    fn parse(name: &str) -> Option<AggregateType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            AggregateType::Document => "Document",
            AggregateType::Person => "Person",
            AggregateType::Cabinet => "Cabinet",
            AggregateType::Reconciliation => Reconciliation::AGGREGATE,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Position {
    sequence: i64,
    changed: bool,
}

/// One aggregate as a fold holds it.
struct Entry<A> {
    aggregate: A,
    version: i64,
    updated_at: String,
    changed: bool,
}

/// The aggregates of one aggregate view that a fold holds, by id.
struct Aggregates<A> {
    entries: HashMap<String, Entry<A>>,
    /// The ids still to write, in order, once [`Aggregates::drain`] started.
    order: Option<std::vec::IntoIter<String>>,
}

impl<A: ViewAggregate> Aggregates<A> {
    fn new() -> Self {
        Aggregates {
            entries: HashMap::new(),
            order: None,
        }
    }

    /// Loads the stored aggregates of `ids` (those the view has) from `generation`, their
    /// personal fields opened.
    async fn load(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        log: &EventLog,
        generation: i64,
        ids: &[&str],
    ) -> Result<(), ProjectionError> {
        let key = A::TABLE.key[1];
        let placeholders = Placeholders::of(tx);
        for chunk in bulk::lookup_chunks(ids) {
            let sql = format!(
                "SELECT {key} AS id, aggregate FROM {} WHERE generation = {} AND {key} IN ({})",
                A::TABLE.name,
                placeholders.list(1, 1),
                placeholders.list(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(generation);
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut **tx).await?;
            let mut loaded: Vec<(String, A)> = Vec::with_capacity(rows.len());
            match A::PERSONAL {
                None => {
                    for row in rows {
                        let text: String = row.try_get("aggregate")?;
                        let aggregate: A = serde_json::from_str(&text)
                            .map_err(|e| ProjectionError::Decode(e.to_string()))?;
                        loaded.push((row.try_get("id")?, aggregate));
                    }
                }
                Some(columns) => {
                    let mut values: Vec<(String, Value)> = Vec::with_capacity(rows.len());
                    for row in rows {
                        let text: String = row.try_get("aggregate")?;
                        let value: Value = serde_json::from_str(&text)
                            .map_err(|e| ProjectionError::Decode(e.to_string()))?;
                        values.push((row.try_get("id")?, value));
                    }
                    let aggregates: Vec<Value> = values.iter().map(|(_, v)| v.clone()).collect();
                    let ring = personal::ring_for_aggregates(log, columns, &aggregates, tx).await?;
                    for (id, mut value) in values {
                        personal::open_aggregate(ring.as_ref(), columns, &id, &mut value)?;
                        let aggregate: A = serde_json::from_value(value)
                            .map_err(|e| ProjectionError::Decode(e.to_string()))?;
                        loaded.push((id, aggregate));
                    }
                }
            }
            for (id, aggregate) in loaded {
                self.entries.insert(
                    id,
                    Entry {
                        aggregate,
                        version: 0,
                        updated_at: String::new(),
                        changed: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// The aggregate as the fold holds it.
    fn get(&self, id: &str) -> Option<&A> {
        self.entries.get(id).map(|entry| &entry.aggregate)
    }

    fn apply(&mut self, event: &EventRef) -> Result<(), ProjectionError> {
        let decoded = event.decode::<A::Event>()?;
        let entry = match self.entries.get_mut(event.aggregate_id) {
            Some(entry) => entry,
            None => self
                .entries
                .entry(event.aggregate_id.to_string())
                .or_insert(Entry {
                    aggregate: A::default(),
                    version: 0,
                    updated_at: String::new(),
                    changed: false,
                }),
        };
        entry.aggregate.apply(decoded);
        entry.version = event.sequence;
        entry.updated_at = event.recorded_at();
        entry.changed = true;
        Ok(())
    }

    /// The rows of the aggregates changed since the last call.
    fn changed_rows(&mut self, generation: i64) -> Result<Vec<Row>, ProjectionError> {
        let mut rows = Vec::new();
        for (id, entry) in self.entries.iter_mut().filter(|(_, e)| e.changed) {
            rows.push(
                entry
                    .aggregate
                    .row(generation, id, entry.version, &entry.updated_at)?,
            );
            entry.changed = false;
        }
        Ok(rows)
    }

    /// The rows of up to `max` changed aggregates, in id order, letting go of them. The first
    /// call sorts the ids (so that rows reach the index in key order).
    fn drain(&mut self, generation: i64, max: usize) -> Result<Vec<Row>, ProjectionError> {
        let entries = &mut self.entries;
        let order = self.order.get_or_insert_with(|| {
            let mut ids: Vec<String> = entries
                .iter()
                .filter(|(_, e)| e.changed)
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort_unstable();
            ids.into_iter()
        });
        let mut rows = Vec::with_capacity(max.min(order.len()));
        for id in order.by_ref().take(max) {
            if let Some(entry) = entries.remove(&id) {
                rows.push(entry.aggregate.row(
                    generation,
                    &id,
                    entry.version,
                    &entry.updated_at,
                )?);
            }
        }
        Ok(rows)
    }
}

/// What a fold builds besides positions.
enum Built {
    Documents(Aggregates<Document>),
    Persons(Aggregates<Person>),
    Cabinets(Aggregates<Cabinet>),
    /// The reconciliations, and the deviation rows of those reconciled, not yet written.
    Reconciliations(Aggregates<Reconciliation>, Vec<Row>),
    /// Rows derived from single events, not yet written.
    Rows(&'static Table, Vec<Row>),
    /// The counters' deltas and the documents' contributions, not yet written.
    Stats(Box<Counters>),
}

/// Events applied to one generation of one projection, in memory, until written.
pub(crate) struct Fold {
    projection: Projection,
    generation: i64,
    /// The last applied sequence per aggregate, by [`AggregateType::index`].
    positions: [HashMap<String, Position>; 4],
    built: Built,
    /// Epoch milliseconds of `recorded_at` of every event applied, when measuring lag.
    recorded: Option<Vec<i64>>,
    /// The positions still to write, in key order, once [`Fold::drain`] reached them.
    position_order: Option<std::vec::IntoIter<(AggregateType, String, i64)>>,
}

impl Fold {
    /// A fold over `generation` of `projection`, starting from nothing: either the generation is
    /// empty, or [`Fold::load`] brings in what it has of the aggregates about to change.
    pub(crate) fn new(projection: Projection, generation: i64) -> Fold {
        let built = match projection {
            Projection::Documents => Built::Documents(Aggregates::new()),
            Projection::Persons => Built::Persons(Aggregates::new()),
            Projection::Cabinets => Built::Cabinets(Aggregates::new()),
            Projection::AccessRecords => Built::Rows(&ACCESS_RECORDS, Vec::new()),
            Projection::Alerts => Built::Rows(&ALERTS, Vec::new()),
            Projection::Reconciliations => Built::Reconciliations(Aggregates::new(), Vec::new()),
            Projection::Stats => Built::Stats(Box::default()),
        };
        Fold {
            projection,
            generation,
            positions: Default::default(),
            built,
            recorded: None,
            position_order: None,
        }
    }

    /// For the stats projection: places the units it counts in `orgs` rather than in the tree
    /// the store has when the fold is written (a rebuild reads the tree once).
    pub(crate) fn placing_in(mut self, orgs: Option<Arc<OrgTree>>) -> Fold {
        if let (Built::Stats(_), Some(orgs)) = (&self.built, orgs) {
            self.built = Built::Stats(Box::new(Counters::placing_in(orgs)));
        }
        self
    }

    /// Also keeps the `recorded_at` of every event applied (see [`Fold::take_recorded`]).
    pub(crate) fn measuring(mut self) -> Fold {
        self.recorded = Some(Vec::new());
        self
    }

    /// Loads the positions, and for aggregate views the aggregates, of the aggregates `events`
    /// touch, as the generation has them.
    pub(crate) async fn load<'e>(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        log: &EventLog,
        events: impl IntoIterator<Item = &'e EventRef<'e>>,
    ) -> Result<(), ProjectionError> {
        let mut keys: Vec<(&str, &str)> = events
            .into_iter()
            .filter(|e| self.projection.takes(e.aggregate_type))
            .map(|e| (e.aggregate_type, e.aggregate_id))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let placeholders = Placeholders::of(tx);
        // By the whole primary key, one aggregate type at a time: without the type only the
        // (projection, generation) prefix of the key is usable and every look-up reads all the
        // projection's positions, a cost that grows with the log (issue 11's profile).
        for (kind, chunk) in keys
            .chunk_by(|a, b| a.0 == b.0)
            .flat_map(bulk::lookup_chunks)
            .map(|chunk| (chunk[0].0, chunk))
        {
            let sql = format!(
                "SELECT aggregate_type, aggregate_id, sequence FROM projection_positions \
                 WHERE projection = {} AND generation = {} AND aggregate_type = {} \
                 AND aggregate_id IN ({})",
                placeholders.list(1, 1),
                placeholders.list(2, 1),
                placeholders.list(3, 1),
                placeholders.list(4, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(self.projection.name())
                .bind(self.generation)
                .bind(kind);
            for (_, id) in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let kind: String = row.try_get("aggregate_type")?;
                if let Some(kind) = AggregateType::parse(&kind) {
                    self.positions[kind.index()].insert(
                        row.try_get("aggregate_id")?,
                        Position {
                            sequence: row.try_get("sequence")?,
                            changed: false,
                        },
                    );
                }
            }
        }
        let mut ids: Vec<&str> = keys.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        match &mut self.built {
            Built::Documents(aggregates) => aggregates.load(tx, log, self.generation, &ids).await,
            Built::Persons(aggregates) => aggregates.load(tx, log, self.generation, &ids).await,
            Built::Cabinets(aggregates) => aggregates.load(tx, log, self.generation, &ids).await,
            Built::Reconciliations(aggregates, _) => {
                aggregates.load(tx, log, self.generation, &ids).await
            }
            Built::Stats(counters) => counters.load(tx, self.generation, &ids).await,
            Built::Rows(..) => Ok(()),
        }
    }

    /// Applies `event` if the projection takes it and has not applied it yet, after any events
    /// of its aggregate it missed (taken from the store). How many events were applied.
    pub(crate) async fn apply(
        &mut self,
        event: &EventRef<'_>,
        log: &EventLog,
    ) -> Result<usize, ProjectionError> {
        if !self.projection.takes(event.aggregate_type) {
            return Ok(0);
        }
        let Some(kind) = AggregateType::parse(event.aggregate_type) else {
            return Ok(0);
        };
        let last = self.positions[kind.index()]
            .get(event.aggregate_id)
            .map_or(0, |p| p.sequence);
        if event.sequence <= last {
            return Ok(0);
        }
        let applied = if event.sequence == last + 1 {
            self.apply_event(event)?;
            1
        } else {
            // The feed skipped some of this aggregate's events: take them from the store.
            let history = log
                .opened_events_of(event.aggregate_type, event.aggregate_id)
                .await?;
            let mut applied = 0;
            for missed in history
                .iter()
                .filter(|e| e.sequence > last && e.sequence <= event.sequence)
            {
                self.apply_event(&EventRef::from(missed))?;
                applied += 1;
            }
            applied
        };
        let position = Position {
            sequence: event.sequence,
            changed: true,
        };
        match self.positions[kind.index()].get_mut(event.aggregate_id) {
            Some(p) => *p = position,
            None => {
                self.positions[kind.index()].insert(event.aggregate_id.to_string(), position);
            }
        }
        Ok(applied)
    }

    fn apply_event(&mut self, event: &EventRef) -> Result<(), ProjectionError> {
        let generation = self.generation;
        match &mut self.built {
            Built::Documents(aggregates) => aggregates.apply(event)?,
            Built::Persons(aggregates) => aggregates.apply(event)?,
            Built::Cabinets(aggregates) => aggregates.apply(event)?,
            Built::Reconciliations(aggregates, rows) => {
                aggregates.apply(event)?;
                // The deviations are final once the repairs are recorded, and only then.
                if event.event_type == "RepairsRecorded" {
                    if let Some(reconciliation) = aggregates.get(event.aggregate_id) {
                        rows.extend(deviation_rows(generation, reconciliation));
                    }
                }
            }
            Built::Stats(counters) => counters.apply(event)?,
            Built::Rows(table, rows) => {
                if table.name == ACCESS_RECORDS.name {
                    rows.extend(access_record_row(generation, event)?);
                } else {
                    rows.extend(alert_rows(generation, event)?);
                }
            }
        }
        if let Some(recorded) = &mut self.recorded {
            recorded.extend(event.recorded_ms());
        }
        Ok(())
    }

    /// The `recorded_at` (epoch ms) of the events applied since the last call, when measuring.
    pub(crate) fn take_recorded(&mut self) -> Vec<i64> {
        self.recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Derived rows waiting to be written.
    pub(crate) fn pending_rows(&self) -> usize {
        match &self.built {
            Built::Rows(_, rows) | Built::Reconciliations(_, rows) => rows.len(),
            _ => 0,
        }
    }

    fn changed_positions(&mut self) -> Vec<Row> {
        let mut rows = Vec::new();
        for kind in AggregateType::ALL {
            for (id, position) in self.positions[kind.index()]
                .iter_mut()
                .filter(|(_, p)| p.changed)
            {
                rows.push(position_row(
                    self.projection,
                    self.generation,
                    kind,
                    id,
                    position.sequence,
                ));
                position.changed = false;
            }
        }
        rows
    }

    /// Writes everything applied since the last write in the caller's transaction.
    pub(crate) async fn write(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        log: &EventLog,
    ) -> Result<(), ProjectionError> {
        let generation = self.generation;
        match &mut self.built {
            Built::Documents(aggregates) => {
                let mut rows = aggregates.changed_rows(generation)?;
                personal::seal_rows(log, &DOCUMENTS, &mut rows, Some(&mut **tx)).await?;
                bulk::insert(&mut *tx, &DOCUMENTS, &rows).await?
            }
            Built::Persons(aggregates) => {
                let mut rows = aggregates.changed_rows(generation)?;
                personal::seal_rows(log, &PERSONS, &mut rows, Some(&mut **tx)).await?;
                bulk::insert(&mut *tx, &PERSONS, &rows).await?
            }
            Built::Cabinets(aggregates) => {
                bulk::insert(&mut *tx, &CABINETS, &aggregates.changed_rows(generation)?).await?
            }
            Built::Reconciliations(aggregates, rows) => {
                let changed = aggregates.changed_rows(generation)?;
                bulk::insert(&mut *tx, &RECONCILIATIONS, &changed).await?;
                bulk::insert(&mut *tx, &DEVIATIONS, rows).await?;
                rows.clear();
            }
            Built::Rows(table, rows) => {
                bulk::insert(&mut *tx, table, rows).await?;
                rows.clear();
            }
            Built::Stats(counters) => counters.write(tx, generation).await?,
        }
        let positions = self.changed_positions();
        bulk::insert(&mut *tx, &POSITIONS, &positions).await?;
        Ok(())
    }

    /// The derived rows waiting, sorted by key, to be written (by a rebuild into an empty
    /// generation, in transactions of its own).
    pub(crate) fn take_rows(&mut self) -> Option<(&'static Table, Vec<Row>)> {
        let (table, rows) = match &mut self.built {
            Built::Rows(table, rows) => (*table, rows),
            Built::Reconciliations(_, rows) => (&DEVIATIONS, rows),
            _ => return None,
        };
        if rows.is_empty() {
            return None;
        }
        let mut rows = std::mem::take(rows);
        bulk::sort_by_key(table, &mut rows);
        Some((table, rows))
    }

    /// Up to `max` rows of what the fold still holds (derived rows, then aggregates, then
    /// positions, each in key order), letting go of them; None once all is out. For a rebuild
    /// into an empty generation, which writes them in transactions of its own.
    pub(crate) fn drain(
        &mut self,
        max: usize,
    ) -> Result<Option<(&'static Table, Vec<Row>)>, ProjectionError> {
        let max = max.max(1);
        let derived = match &mut self.built {
            Built::Rows(table, rows) => Some((*table, rows)),
            Built::Reconciliations(_, rows) => Some((&DEVIATIONS, rows)),
            _ => None,
        };
        if let Some((table, rows)) = derived {
            if !rows.is_empty() {
                let rest = rows.split_off(rows.len().min(max));
                let mut chunk = std::mem::replace(rows, rest);
                bulk::sort_by_key(table, &mut chunk);
                return Ok(Some((table, chunk)));
            }
        }
        let generation = self.generation;
        let aggregates = match &mut self.built {
            Built::Documents(aggregates) => Some((&DOCUMENTS, aggregates.drain(generation, max)?)),
            Built::Persons(aggregates) => Some((&PERSONS, aggregates.drain(generation, max)?)),
            Built::Cabinets(aggregates) => Some((&CABINETS, aggregates.drain(generation, max)?)),
            Built::Reconciliations(aggregates, _) => {
                Some((&RECONCILIATIONS, aggregates.drain(generation, max)?))
            }
            Built::Stats(counters) => counters.drain(generation, max),
            Built::Rows(..) => None,
        };
        if let Some((table, rows)) = aggregates {
            if !rows.is_empty() {
                return Ok(Some((table, rows)));
            }
        }
        let positions = self.position_order.get_or_insert_with(|| {
            let mut all: Vec<(AggregateType, String, i64)> = Vec::new();
            for kind in AggregateType::ALL {
                all.extend(
                    std::mem::take(&mut self.positions[kind.index()])
                        .into_iter()
                        .filter(|(_, p)| p.changed)
                        .map(|(id, p)| (kind, id, p.sequence)),
                );
            }
            all.sort_unstable_by(|a, b| (a.0.name(), &a.1).cmp(&(b.0.name(), &b.1)));
            all.into_iter()
        });
        let rows: Vec<Row> = positions
            .by_ref()
            .take(max)
            .map(|(kind, id, sequence)| {
                position_row(self.projection, generation, kind, &id, sequence)
            })
            .collect();
        Ok((!rows.is_empty()).then_some((&POSITIONS, rows)))
    }
}

fn position_row(
    projection: Projection,
    generation: i64,
    kind: AggregateType,
    id: &str,
    sequence: i64,
) -> Row {
    vec![
        projection.name().into(),
        generation.into(),
        kind.name().into(),
        id.into(),
        sequence.into(),
    ]
}
