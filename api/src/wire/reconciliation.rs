//! `sjsb-dzsj`: a cabinet's nightly reconciliation batch (SPEC §6; docs/reconciliation.md).
//!
//! The batch is checked, then diffed against the platform's state at the end of its business
//! date, replayed from the event store, and the diff is recorded (Reconciliation
//! `BatchDiffed`). Then the one automatic repair of SPEC §6.1 runs on each document the diff
//! names (Document `ReconciliationCorrected`), and the outcomes close the reconciliation
//! (`RepairsRecorded`). The same batch sent again finishes from the stored diff, never from a
//! recomputed one, so its result and its events are those of the first time.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Days, FixedOffset};
use custody_application::{keys, ApplicationError, Intake, Principal};
use custody_commands::{CommandError, Outcome};
use custody_domain::custody::{self, Act, Actor, Decision};
use custody_domain::document::{
    DepositKind, Document, DocumentCommand, DocumentEvent, ReconciliationCorrected, WithdrawalKind,
};
use custody_domain::identifiers::{BusinessSerial, CreditCode, DocumentId, PersonId, SerialKind};
use custody_domain::person::Person;
use custody_domain::reconciliation::{
    compare, log_deviations, replay_until, BatchDiffed, CabinetClaim, CabinetView, DeviationReason,
    LoggedOperation, PlatformOperation, Reconciliation, ReconciliationCommand,
    ReconciliationEventKind, ReconciliationState, RepairOutcome, RepairsRecorded, ReportedDocument,
    StateDeviation,
};
use custody_domain::transitions::Named;
use custody_domain::values::{china_standard_time, DeviceSerial, Drawer, Timestamp};
use custody_domain::DomainError;
use custody_eventlog::Backend;
use custody_protocol::SignedRequest;
use serde_json::{json, Value};
use sqlx::Row;

use super::fields::{business_data, business_date, business_time, invalid, required, serial_of};
use super::messages::{self, NumberOrText};
use super::reply::{Received, Reply};
use crate::error::{ErrorCode, WireError};
use crate::read::database;
use crate::state::AppState;

/// Ids bound in one `IN (...)` list.
const CHUNK: usize = 500;

pub async fn handle(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let principal = &intake.principal;
    let now = received.now.with_timezone(&china_standard_time());
    let window = state.reconciliation_window;
    if !window.contains(now.time()) {
        return Err(WireError::new(
            ErrorCode::OutsideWindow,
            format!(
                "sjsb-dzsj is taken from {} to {} China time; the server clock says {}",
                window.opens.format("%H:%M"),
                window.closes.format("%H:%M"),
                now.format("%H:%M:%S")
            ),
        ));
    }
    let batch: messages::ReconciliationBatch = business_data(request)?;
    principal.check_device("sbxlh", &batch.sbxlh)?;
    principal.check_unit("tyshxydm", &batch.tyshxydm)?;
    let serial = serial_of("dzywlsh", SerialKind::Reconciliation, &batch.dzywlsh)?;
    let date = business_date("dzrq", &batch.dzrq)?;
    if date > now.date_naive() {
        return Err(invalid("dzrq", format!("{date} has not begun yet")));
    }
    let device: DeviceSerial = principal.device()?;
    let unit: CreditCode = principal.own_unit()?.clone();
    let reported = reported_documents(principal, &batch.zjzt)?;
    let logged = logged_operations(&batch.czls)?;

    let id = Reconciliation::id(&device, date);
    let mut reconciliation: Reconciliation = state.commands.load(&id).await?;
    let duplicate = match &reconciliation.diff {
        Some(diff) if diff.serial == serial => true,
        Some(_) => {
            return Err(DomainError::IllegalTransition {
                aggregate: Reconciliation::AGGREGATE,
                current: reconciliation.state.name(),
                event: ReconciliationEventKind::BatchDiffed.name(),
            }
            .into())
        }
        None => {
            let batch = Batch {
                serial: &serial,
                device: &device,
                unit: &unit,
                date,
                received_at: received.now,
                reported: &reported,
                logged: &logged,
            };
            let diff = diff(state, &batch).await?;
            let outcome = state
                .commands
                .execute::<Reconciliation>(
                    &id,
                    ReconciliationCommand::RecordDiff(diff),
                    intake.metadata(Some(serial.as_str()), Some(serial.to_string()), None),
                )
                .await?;
            // Whoever won, the stored diff is the one that counts from here on.
            reconciliation = state.commands.load(&id).await?;
            matches!(outcome, Outcome::Duplicate(_))
        }
    };
    if reconciliation.state == ReconciliationState::Diffed {
        let outcomes = repair(state, intake, &serial, &reconciliation).await?;
        state
            .commands
            .execute::<Reconciliation>(
                &id,
                ReconciliationCommand::RecordRepairs(RepairsRecorded { outcomes }),
                intake.metadata(
                    Some(serial.as_str()),
                    Some(keys::repairs(serial.as_str())),
                    None,
                ),
            )
            .await?;
        reconciliation = state.commands.load(&id).await?;
    }
    crate::reconciliations::store(state.commands.log().platform().pool(), &reconciliation).await?;
    Ok(answer(&serial, duplicate, &reconciliation))
}

/// A code given as a number or a string of digits.
fn code(value: &NumberOrText) -> Result<Option<u64>, ()> {
    match value {
        NumberOrText::Absent => Ok(None),
        NumberOrText::Number(n) => Ok(Some(*n)),
        NumberOrText::Text(t) if t.is_empty() => Ok(None),
        NumberOrText::Text(t) if t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse().map(Some).map_err(|_| ())
        }
        NumberOrText::Text(_) => Err(()),
    }
}

/// A drawer row or column: a number from 1.
fn drawer_index(field: &str, value: &NumberOrText) -> Result<u16, WireError> {
    match code(value) {
        Ok(Some(n)) => u16::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(field, format!("{n} is not a drawer index from 1"))),
        Ok(None) => Err(WireError::new(
            ErrorCode::MissingField,
            format!("{field} is empty"),
        )),
        Err(()) => Err(invalid(field, "not a number")),
    }
}

/// The batch's document states (`zjzt`), each checked: a document listed once, a drawer of
/// the enrolled geometry for one in the cabinet.
fn reported_documents(
    principal: &Principal,
    items: &[messages::DocumentStateItem],
) -> Result<Vec<ReportedDocument>, WireError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("zjzt[{i}].{field}");
        let document: DocumentId = required(&at("zjbs"), &item.zjbs)?
            .parse()
            .map_err(|e| invalid(&at("zjbs"), e))?;
        if !seen.insert(document.clone()) {
            return Err(invalid(&at("zjbs"), format!("{document} is listed twice")));
        }
        let holder: PersonId = required(&at("rybs"), &item.rybs)?
            .parse()
            .map_err(|e| invalid(&at("rybs"), e))?;
        let claim = match code(&item.zt) {
            Ok(Some(1)) => {
                let drawer = Drawer {
                    body: required(&at("zjgxlh"), &item.zjgxlh)?.to_string(),
                    row: drawer_index(&at("cth"), &item.cth)?,
                    column: drawer_index(&at("ctl"), &item.ctl)?,
                };
                if let Some(cabinet) = &principal.cabinet {
                    cabinet.check_drawer(&principal.sender, &drawer)?;
                }
                CabinetClaim::InCabinet(drawer)
            }
            Ok(Some(2)) => CabinetClaim::Out,
            Ok(None) => {
                return Err(WireError::new(
                    ErrorCode::MissingField,
                    format!("{} is empty", at("zt")),
                ))
            }
            _ => return Err(invalid(&at("zt"), "1 (in the cabinet) or 2 (out)")),
        };
        out.push(ReportedDocument {
            document,
            holder,
            claim,
        });
    }
    Ok(out)
}

/// The batch's operation log (`czls`).
fn logged_operations(
    items: &[messages::OperationLogItem],
) -> Result<Vec<LoggedOperation>, WireError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("czls[{i}].{field}");
            let serial: BusinessSerial = required(&at("ywlsh"), &item.ywlsh)?
                .parse()
                .map_err(|e| invalid(&at("ywlsh"), e))?;
            let operation = required(&at("czlx"), &item.czlx)?;
            if operation.len() > 32
                || !operation
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(invalid(&at("czlx"), "1 to 32 letters, digits or '_'"));
            }
            Ok(LoggedOperation {
                serial: serial.to_string(),
                operation: operation.to_string(),
                operated_at: business_time(&at("czsj"), &item.czsj)?,
            })
        })
        .collect()
}

/// A checked batch.
struct Batch<'a> {
    serial: &'a BusinessSerial,
    device: &'a DeviceSerial,
    unit: &'a CreditCode,
    date: chrono::NaiveDate,
    received_at: Timestamp,
    reported: &'a [ReportedDocument],
    logged: &'a [LoggedOperation],
}

/// The JSON expressions of the event metadata the diff filters on, per backend: the same text
/// as the indexes (`events_sender`, `events_idempotency_key`), so that they are used.
struct Expressions {
    sender: &'static str,
    recorded_at: &'static str,
    key: &'static str,
}

fn expressions(backend: &Backend) -> Expressions {
    match backend {
        Backend::Postgres(_) => Expressions {
            sender: "(metadata ->> 'ei')",
            // Byte order, whatever the database's collation: RFC 3339 texts of one offset
            // then compare as times.
            recorded_at: "(metadata ->> 'recorded_at') COLLATE \"C\"",
            key: "(metadata ->> 'idempotency_key')",
        },
        Backend::Sqlite(_) => Expressions {
            sender: "json_extract(metadata, '$.ei')",
            recorded_at: "json_extract(metadata, '$.recorded_at')",
            key: "json_extract(metadata, '$.idempotency_key')",
        },
    }
}

/// `$from, $from+1, ...` for `count` values.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn internal(what: &str, error: impl std::fmt::Display) -> WireError {
    WireError::internal(what, error)
}

/// A stored document event, decoded, with its recorded time and business serial.
struct Decoded {
    document: String,
    event: DocumentEvent,
    recorded_at: Timestamp,
    serial: Option<String>,
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Decoded, WireError> {
    let payload: String = row.try_get("payload").map_err(database)?;
    let metadata: String = row.try_get("metadata").map_err(database)?;
    let event: DocumentEvent =
        serde_json::from_str(&payload).map_err(|e| internal("stored document event", e))?;
    let metadata: Value =
        serde_json::from_str(&metadata).map_err(|e| internal("stored event metadata", e))?;
    let recorded_at = metadata["recorded_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| internal("stored event metadata", "no recorded_at"))?;
    Ok(Decoded {
        document: row.try_get("aggregate_id").map_err(database)?,
        event,
        recorded_at,
        serial: metadata["ywlsh"].as_str().map(str::to_string),
    })
}

/// The operation a cabinet's document event records, and when, by the cabinet's clock.
fn operation(decoded: &Decoded) -> Option<(&'static str, Timestamp)> {
    match &decoded.event {
        DocumentEvent::Deposited(e) => Some((
            match e.kind {
                DepositKind::New => "deposit_new",
                DepositKind::Return => "deposit_return",
            },
            e.operated_at,
        )),
        DocumentEvent::Withdrawn(e) => Some((
            match e.kind {
                WithdrawalKind::Lend => "lend",
                WithdrawalKind::TakeOut => "take_out",
            },
            e.operated_at,
        )),
        DocumentEvent::AbnormalWithdrawal(e) => Some(("abnormal_withdrawal", e.operated_at)),
        // A cancellation keeps no operation time of its own.
        DocumentEvent::Cancelled(_) => Some(("cancellation", decoded.recorded_at)),
        _ => None,
    }
}

/// Diffs a batch against the platform's state at the end of its business date.
async fn diff(state: &AppState, batch: &Batch<'_>) -> Result<BatchDiffed, WireError> {
    let log = state.commands.log();
    let pool = log.platform().pool();
    let sql = expressions(log.backend());
    let as_of = crate::reconciliations::end_of(batch.date)?;
    let on_the_day = |t: &DateTime<FixedOffset>| {
        t.with_timezone(&china_standard_time()).date_naive() == batch.date
    };

    // What the platform recorded from this cabinet on the day. A report reaches the platform
    // after the operation; starting a day early covers clocks that disagree.
    let since = batch
        .date
        .checked_sub_days(Days::new(1))
        .and_then(|d| crate::reconciliations::end_of(d).ok())
        .and_then(|t| t.checked_sub_days(Days::new(1)))
        .unwrap_or(as_of);
    let query = format!(
        "SELECT aggregate_id, CAST(payload AS TEXT) AS payload, CAST(metadata AS TEXT) AS metadata \
         FROM events WHERE {} = $1 AND aggregate_type = 'Document' AND {} >= $2 \
         ORDER BY global_position",
        sql.sender, sql.recorded_at
    );
    let mut platform_ops = Vec::new();
    for row in sqlx::query(&query)
        .bind(batch.device.as_str())
        .bind(since.to_rfc3339())
        .fetch_all(pool)
        .await
        .map_err(database)?
    {
        let decoded = decode(&row)?;
        let (Some((operation, operated_at)), Some(serial)) =
            (operation(&decoded), decoded.serial.clone())
        else {
            continue;
        };
        if on_the_day(&operated_at) {
            platform_ops.push(PlatformOperation {
                serial,
                operation: operation.to_string(),
                operated_at,
                document: decoded
                    .document
                    .parse()
                    .map_err(|e| internal("stored document id", e))?,
            });
        }
    }

    // The platform's state of every document the batch or the day's operations name.
    let mut candidates: Vec<&str> = batch.reported.iter().map(|r| r.document.as_str()).collect();
    candidates.extend(platform_ops.iter().map(|op| op.document.as_str()));
    candidates.sort_unstable();
    candidates.dedup();
    let mut histories: HashMap<String, Vec<(DocumentEvent, Timestamp)>> = HashMap::new();
    for chunk in candidates.chunks(CHUNK) {
        let query = format!(
            "SELECT aggregate_id, sequence, CAST(payload AS TEXT) AS payload, \
             CAST(metadata AS TEXT) AS metadata FROM events \
             WHERE aggregate_type = 'Document' AND aggregate_id IN ({}) \
             ORDER BY aggregate_id, sequence",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&query);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(pool).await.map_err(database)? {
            let decoded = decode(&row)?;
            histories
                .entry(decoded.document)
                .or_default()
                .push((decoded.event, decoded.recorded_at));
        }
    }
    let documents: HashMap<String, Document> = histories
        .into_iter()
        .map(|(id, events)| (id, replay_until(events, as_of)))
        .collect();
    let platform = |id: &DocumentId| documents.get(id.as_str()).cloned().unwrap_or_default();

    let mut deviations = Vec::new();
    for reported in batch.reported {
        let document = platform(&reported.document);
        let Some((mut reason, mut repair)) = compare(reported, &document, batch.device, batch.unit)
        else {
            continue;
        };
        // Another unit's document is a deviation for operators, never a repair (docs/custody.md).
        let whereabouts =
            custody::document_whereabouts(&document, None, batch.unit, Some(batch.device));
        let custodian = custody::judge(Actor::Cabinet, Act::ReconciliationRepair, whereabouts);
        if repair.is_some() && custodian == Decision::NotCustodian {
            reason = DeviationReason::OtherUnitsDocument;
            repair = None;
        }
        let (cabinet_state, cabinet_drawer) = match &reported.claim {
            CabinetClaim::InCabinet(drawer) => (CabinetView::InCabinet, Some(drawer.clone())),
            CabinetClaim::Out => (CabinetView::Out, None),
        };
        deviations.push(StateDeviation {
            document: reported.document.clone(),
            holder: Some(reported.holder.clone()),
            holder_name: None,
            unit: document.unit.clone().or_else(|| Some(batch.unit.clone())),
            cabinet_state,
            cabinet_drawer,
            platform_state: document.state,
            platform_location: document.location.clone(),
            reason,
            repair,
        });
    }
    // Documents the cabinet operated on that day (by the platform's record) but did not list.
    let listed: HashSet<&DocumentId> = batch.reported.iter().map(|r| &r.document).collect();
    let mut unlisted: Vec<(&Timestamp, &DocumentId)> = platform_ops
        .iter()
        .filter(|op| !listed.contains(&op.document))
        .map(|op| (&op.operated_at, &op.document))
        .collect();
    unlisted.sort();
    let mut done = HashSet::new();
    for (_, id) in unlisted {
        if !done.insert(id) {
            continue;
        }
        let document = platform(id);
        deviations.push(StateDeviation {
            document: id.clone(),
            holder: document.holder.clone(),
            holder_name: None,
            unit: document.unit.clone().or_else(|| Some(batch.unit.clone())),
            cabinet_state: CabinetView::NotReported,
            cabinet_drawer: None,
            platform_state: document.state,
            platform_location: document.location.clone(),
            reason: DeviationReason::NotReported,
            repair: None,
        });
    }
    name_holders(state, &documents, &mut deviations).await?;

    // The operation log: which of the cabinet's serials the platform holds, and which reports
    // of the others it refused.
    let serials: Vec<&str> = batch.logged.iter().map(|l| l.serial.as_str()).collect();
    let mut held = HashSet::new();
    for chunk in serials.chunks(CHUNK) {
        let query = format!(
            "SELECT {key} AS k FROM events WHERE {key} IN ({})",
            placeholders(1, chunk.len()),
            key = sql.key
        );
        let mut q = sqlx::query(&query);
        for serial in chunk {
            q = q.bind(*serial);
        }
        for row in q.fetch_all(pool).await.map_err(database)? {
            held.insert(row.try_get::<String, _>("k").map_err(database)?);
        }
    }
    let unheld: Vec<&str> = serials
        .iter()
        .copied()
        .filter(|s| !held.contains(*s))
        .collect();
    let mut refused = HashMap::new();
    for chunk in unheld.chunks(CHUNK) {
        let query = format!(
            "SELECT ywlsh, error_code FROM rejected_reports WHERE ywlsh IN ({}) ORDER BY id",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&query);
        for serial in chunk {
            q = q.bind(*serial);
        }
        for row in q.fetch_all(pool).await.map_err(database)? {
            // The latest refusal of a serial is the one to explain.
            refused.insert(
                row.try_get::<String, _>("ywlsh").map_err(database)?,
                row.try_get::<String, _>("error_code").map_err(database)?,
            );
        }
    }
    let log_deviations = log_deviations(batch.logged, &platform_ops, &held, &refused);

    Ok(BatchDiffed {
        serial: batch.serial.clone(),
        device: batch.device.clone(),
        unit: batch.unit.clone(),
        business_date: batch.date,
        received_at: batch.received_at,
        as_of,
        documents_reported: u32::try_from(batch.reported.len()).unwrap_or(u32::MAX),
        operations_reported: u32::try_from(batch.logged.len()).unwrap_or(u32::MAX),
        state_deviations: deviations,
        log_deviations,
    })
}

/// The holder's name of each deviation: from the document's own record, else from the filed
/// person.
async fn name_holders(
    state: &AppState,
    documents: &HashMap<String, Document>,
    deviations: &mut [StateDeviation],
) -> Result<(), WireError> {
    let mut persons: HashMap<PersonId, Option<String>> = HashMap::new();
    for deviation in deviations.iter_mut() {
        let recorded = documents
            .get(deviation.document.as_str())
            .and_then(|d| d.record.as_ref())
            .filter(|r| Some(r.holder_id()) == deviation.holder)
            .map(|r| r.chinese_name.clone());
        deviation.holder_name = match (recorded, &deviation.holder) {
            (Some(name), _) => Some(name),
            (None, Some(holder)) => {
                if !persons.contains_key(holder) {
                    let person: Person = state.commands.load(holder.as_str()).await?;
                    persons.insert(holder.clone(), person.details.map(|d| d.name));
                }
                persons.get(holder).cloned().flatten()
            }
            (None, None) => None,
        };
    }
    Ok(())
}

/// Runs each planned repair; a document that moved since the end of the business date keeps
/// its newer state, and the repair is recorded as not made, with the reason.
async fn repair(
    state: &AppState,
    intake: &Intake,
    serial: &BusinessSerial,
    reconciliation: &Reconciliation,
) -> Result<Vec<RepairOutcome>, WireError> {
    let mut outcomes = Vec::new();
    for (document, location) in reconciliation.planned_repairs() {
        let command = DocumentCommand::CorrectByReconciliation(ReconciliationCorrected {
            reconciliation_serial: serial.to_string(),
            location: location.clone(),
        });
        let key = keys::repair(serial.as_str(), document.as_str());
        let outcome = state
            .application
            .repair_by_reconciliation(
                intake,
                document,
                command,
                intake.metadata(Some(serial.as_str()), Some(key), None),
            )
            .await;
        outcomes.push(match outcome {
            Ok(_) => RepairOutcome {
                document: document.clone(),
                repaired: true,
                note: None,
            },
            Err(ApplicationError::Command(CommandError::Domain(
                refusal @ DomainError::IllegalTransition { .. },
            ))) => RepairOutcome {
                document: document.clone(),
                repaired: false,
                note: Some(refusal.to_string()),
            },
            // The document passed to another unit's custody since the diff: not repaired.
            Err(refusal @ ApplicationError::NotCustodian { .. }) => RepairOutcome {
                document: document.clone(),
                repaired: false,
                note: Some(refusal.to_string()),
            },
            Err(other) => return Err(other.into()),
        });
    }
    Ok(outcomes)
}

/// The answer to the cabinet: the two deviation lists (the design's 对账响应清单), with the
/// source's column names.
fn answer(serial: &BusinessSerial, duplicate: bool, reconciliation: &Reconciliation) -> Reply {
    let mut reply = Reply::new(serial.as_str(), duplicate);
    let Some(diff) = &reconciliation.diff else {
        return reply;
    };
    let snake = |value: Value| value.as_str().map(str::to_string).unwrap_or_default();
    let states: Vec<Value> = diff
        .state_deviations
        .iter()
        .map(|d| {
            json!({
                "zjbs": d.document,
                "rybs": d.holder,
                "ryxm": d.holder_name,
                "tyshxydm": d.unit,
                "bggzt": match d.cabinet_state {
                    CabinetView::InCabinet => "1",
                    CabinetView::Out => "2",
                    CabinetView::NotReported => "",
                },
                "xtzt": d.platform_state.name(),
                "pllx": snake(json!(d.reason)),
                "sfxfcg": reconciliation.repaired(&d.document),
            })
        })
        .collect();
    let logs: Vec<Value> = diff
        .log_deviations
        .iter()
        .map(|d| {
            json!({
                "ywlsh": d.serial,
                "zjbs": d.document,
                "czlx": d.operation,
                "czsj": d.operated_at
                    .map(|t| t.with_timezone(&china_standard_time()).format("%Y%m%d%H%M%S").to_string())
                    .unwrap_or_default(),
                "ly": match d.side {
                    custody_domain::reconciliation::LogSide::CabinetOnly => "cabinet",
                    custody_domain::reconciliation::LogSide::PlatformOnly => "platform",
                },
            })
        })
        .collect();
    reply.extra.insert("zjztdzpl".into(), Value::Array(states));
    reply.extra.insert("dzsjpl".into(), Value::Array(logs));
    reply
}
