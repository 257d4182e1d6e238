//! Reminders (SPEC §3.5): opened and closed by reacting to document events, sent by the clock.
//!
//! The reminder process follows Document, Cabinet and Reminder events in commit order and keeps:
//! - each document (the Document aggregate, folded by its own `apply`), with the sequence that put
//!   it in its state, the cabinet it last left from and its open reminder: what it decides on,
//!   and what the return-date scheduler asks;
//! - each cabinet (the Cabinet aggregate): its unit and administrators, the recipients;
//! - each reminder (the Reminder aggregate): the open ones are the overdue list;
//! - the notification outbox: one row per `Sent` event, for the webhook adapter.
//!
//! A document that goes from `Withdrawn` to `AwaitingReturn` (return date reached, or an entry
//! crossing) opens reminder `<zjbs>-<sequence>`; one that leaves `AwaitingReturn` (deposited,
//! reconciled into a cabinet, cancelled) closes it. A document that becomes `AwaitingReturn` by
//! issuance was never lent: no reminder (SPEC §3.5 names only `overdue` and `entered`).

use std::collections::{HashMap, HashSet};

use cqrs_es::Aggregate;
use custody_commands::Commands;
use custody_domain::cabinet::{Administrator, Cabinet, CabinetEvent};
use custody_domain::document::{CrossingDirection, Document, DocumentEvent, DocumentState};
use custody_domain::identifiers::DocumentId;
use custody_domain::reminder::{
    china_date, overdue_days, within_sending_window, CloseReason, Closed, Opened, Reminder,
    ReminderCommand, ReminderEvent, ReminderKind, ReminderState, Sent, SENDING_FROM, SENDING_UNTIL,
};
use custody_domain::transitions::Named;
use custody_domain::values::Timestamp;
use custody_eventlog::StoredEvent;
use custody_projections::bulk::{Cell, OnConflict, Table};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};

use crate::consumer::{select_in, write_rows, Effects, Handler, Reaction};
use crate::ProcessError;

/// A document as the reminder process knows it.
#[derive(Debug, Clone, Default)]
struct DocumentRow {
    document: Document,
    /// The sequence of the event that put the document in its current state.
    state_since: i64,
    /// The cabinet it last left from (or is in).
    device: Option<String>,
    open_reminder: Option<String>,
}

/// The rows one batch has read and changed.
#[derive(Default)]
pub(crate) struct RemindersBatch {
    documents: HashMap<String, DocumentRow>,
    cabinets: HashMap<String, Cabinet>,
    reminders: HashMap<String, Reminder>,
    dirty_documents: HashSet<String>,
    dirty_cabinets: HashSet<String>,
    dirty_reminders: HashSet<String>,
    outbox: Vec<OutboxEntry>,
}

struct OutboxEntry {
    id: String,
    reminder: String,
    unit: Option<String>,
    payload: String,
    queued_ms: i64,
}

pub(crate) struct RemindersHandler;

impl Handler for RemindersHandler {
    type Batch = RemindersBatch;
    const NAME: &'static str = "reminders";

    fn takes(&self, aggregate_type: &str) -> bool {
        matches!(aggregate_type, "Document" | "Cabinet" | "Reminder")
    }

    fn batch(&self) -> RemindersBatch {
        RemindersBatch::default()
    }

    async fn prefetch(
        &self,
        batch: &mut RemindersBatch,
        keys: &[(&str, &str)],
        connection: &mut AnyConnection,
    ) -> Result<(), ProcessError> {
        let of = |kind: &str| -> Vec<&str> {
            keys.iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, id)| *id)
                .collect()
        };
        let ids = of("Document");
        for row in select_in(
            connection,
            "zjbs, aggregate, state_since, device, open_reminder FROM process_documents",
            &[],
            "zjbs",
            &ids,
        )
        .await?
        {
            let zjbs: String = row.try_get("zjbs")?;
            let document = document_row(&row, &zjbs)?;
            batch.documents.insert(zjbs, document);
        }
        for id in ids {
            batch.documents.entry(id.to_string()).or_default();
        }
        let ids = of("Cabinet");
        for row in select_in(
            connection,
            "sbxlh, aggregate FROM process_cabinets",
            &[],
            "sbxlh",
            &ids,
        )
        .await?
        {
            let id: String = row.try_get("sbxlh")?;
            let cabinet = from_json(&row.try_get::<String, _>("aggregate")?, &id)?;
            batch.cabinets.insert(id, cabinet);
        }
        for id in ids {
            batch.cabinets.entry(id.to_string()).or_default();
        }
        let ids = of("Reminder");
        for row in select_in(
            connection,
            "id, aggregate FROM process_reminders",
            &[],
            "id",
            &ids,
        )
        .await?
        {
            let id: String = row.try_get("id")?;
            let reminder = from_json(&row.try_get::<String, _>("aggregate")?, &id)?;
            batch.reminders.insert(id, reminder);
        }
        for id in ids {
            batch.reminders.entry(id.to_string()).or_default();
        }
        Ok(())
    }

    async fn handle(
        &self,
        batch: &mut RemindersBatch,
        event: &StoredEvent,
        effects: &Effects<'_>,
    ) -> Result<(), ProcessError> {
        match event.aggregate_type.as_str() {
            "Document" => document_event(batch, event, effects).await,
            "Cabinet" => {
                let decoded: CabinetEvent = decode(event)?;
                let id = &event.aggregate_id;
                // Prefetched for every aggregate of the batch (a new one as the default).
                if let Some(cabinet) = batch.cabinets.get_mut(id) {
                    cabinet.apply(decoded);
                }
                batch.dirty_cabinets.insert(id.clone());
                Ok(())
            }
            "Reminder" => {
                let decoded: ReminderEvent = decode(event)?;
                let id = &event.aggregate_id;
                let Some(reminder) = batch.reminders.get_mut(id) else {
                    return Ok(());
                };
                reminder.apply(decoded.clone());
                batch.dirty_reminders.insert(id.clone());
                if let ReminderEvent::Sent(sent) = decoded {
                    batch
                        .outbox
                        .push(outbox_entry(id, event.sequence, reminder, &sent)?);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn write(
        &self,
        batch: RemindersBatch,
        tx: &mut Transaction<'static, Any>,
    ) -> Result<(), ProcessError> {
        let mut rows = Vec::with_capacity(batch.dirty_documents.len());
        for id in &batch.dirty_documents {
            let Some(row) = batch.documents.get(id) else {
                continue;
            };
            rows.push(vec![
                Cell::from(id.as_str()),
                to_json(&without_personal_data(&row.document))?.into(),
                row.document.state.name().into(),
                row.state_since.into(),
                row.document.planned_return.map(|d| d.to_string()).into(),
                row.device.clone().into(),
                row.open_reminder.clone().into(),
            ]);
        }
        write_rows(tx, &DOCUMENTS, rows).await?;
        let mut rows = Vec::with_capacity(batch.dirty_cabinets.len());
        for id in &batch.dirty_cabinets {
            let Some(cabinet) = batch.cabinets.get(id) else {
                continue;
            };
            rows.push(vec![
                Cell::from(id.as_str()),
                to_json(cabinet)?.into(),
                cabinet.state.name().into(),
                cabinet.unit.as_ref().map(|u| u.to_string()).into(),
            ]);
        }
        write_rows(tx, &CABINETS, rows).await?;
        let mut rows = Vec::with_capacity(batch.dirty_reminders.len());
        for id in &batch.dirty_reminders {
            let Some(reminder) = batch.reminders.get(id) else {
                continue;
            };
            let details = reminder.details.as_ref();
            rows.push(vec![
                Cell::from(id.as_str()),
                to_json(reminder)?.into(),
                reminder.state.name().into(),
                details
                    .map(|d| d.document.to_string())
                    .unwrap_or_default()
                    .into(),
                details
                    .and_then(|d| d.unit.as_ref())
                    .map(|u| u.to_string())
                    .into(),
                details
                    .and_then(|d| d.planned_return)
                    .map(|d| d.to_string())
                    .into(),
            ]);
        }
        write_rows(tx, &REMINDERS, rows).await?;
        for entry in batch.outbox {
            sqlx::query(
                "INSERT INTO notification_outbox (id, reminder, unit, payload, queued_ms, \
                 attempts, next_attempt_ms, delivered_ms, last_error) \
                 VALUES ($1, $2, $3, $4, $5, 0, $5, NULL, NULL) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&entry.id)
            .bind(&entry.reminder)
            .bind(entry.unit)
            .bind(&entry.payload)
            .bind(entry.queued_ms)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// The reminder process decides on a document's state, dates, unit and holder (a RYBS) only: it
/// keeps no copy of the record or the number (docs/personal-data.md), which a later deposit
/// would bring back into memory anyway.
fn without_personal_data(document: &Document) -> Document {
    Document {
        record: None,
        number: None,
        ..document.clone()
    }
}

const DOCUMENTS: Table = Table {
    name: "process_documents",
    columns: &[
        "zjbs",
        "aggregate",
        "state",
        "state_since",
        "planned_return",
        "device",
        "open_reminder",
    ],
    key: &["zjbs"],
    on_conflict: OnConflict::Update,
};
const CABINETS: Table = Table {
    name: "process_cabinets",
    columns: &["sbxlh", "aggregate", "state", "unit"],
    key: &["sbxlh"],
    on_conflict: OnConflict::Update,
};
const REMINDERS: Table = Table {
    name: "process_reminders",
    columns: &["id", "aggregate", "state", "zjbs", "unit", "planned_return"],
    key: &["id"],
    on_conflict: OnConflict::Update,
};

async fn document_event(
    batch: &mut RemindersBatch,
    event: &StoredEvent,
    effects: &Effects<'_>,
) -> Result<(), ProcessError> {
    let decoded: DocumentEvent = decode(event)?;
    let zjbs = event.aggregate_id.clone();
    // Prefetched for every document of the batch (a new one as the default).
    let Some(row) = batch.documents.get_mut(&zjbs) else {
        return Ok(());
    };
    let before = row.document.state;
    let mut document = row.document.clone();
    document.apply(decoded.clone());
    let after = document.state;
    match &decoded {
        DocumentEvent::Deposited(e) => row.device = Some(e.location.device.to_string()),
        DocumentEvent::Withdrawn(e) => row.device = Some(e.location.device.to_string()),
        DocumentEvent::AbnormalWithdrawal(e) => row.device = Some(e.location.device.to_string()),
        DocumentEvent::ReconciliationCorrected(e) => {
            row.device = Some(e.location.device.to_string())
        }
        _ => {}
    }

    if before == DocumentState::Withdrawn && after == DocumentState::AwaitingReturn {
        let id = Reminder::id_for(&zjbs, event.sequence);
        let kind = match &decoded {
            // An entry counts as `entered` while the return date has not passed on its day.
            DocumentEvent::BorderCrossed(crossing)
                if crossing.direction == CrossingDirection::Entry =>
            {
                let day = china_date(crossing.crossed_at);
                if overdue_days(document.planned_return, day) > 0 {
                    ReminderKind::Overdue
                } else {
                    ReminderKind::Entered
                }
            }
            _ => ReminderKind::Overdue,
        };
        let opened = Opened {
            document: zjbs
                .parse::<DocumentId>()
                .map_err(|e| ProcessError::Decode(format!("document id {zjbs}: {e}")))?,
            document_sequence: event.sequence,
            kind,
            holder: document.holder.clone(),
            document_type: document.document_type,
            unit: document.unit.clone(),
            device: row.device.as_deref().and_then(|d| d.parse().ok()),
            planned_return: document.planned_return,
            // The document event's own time, so that a replay would open the same reminder.
            opened_at: recorded_at(event).unwrap_or_else(|| effects.commands.clock().now()),
        };
        let reaction = effects
            .execute::<Reminder>(
                &id,
                ReminderCommand::Open(opened),
                format!("reminder-open:{id}"),
                None,
            )
            .await?;
        if let Reaction::Refused(error) = reaction {
            tracing::warn!(reminder = id, %error, "reminder not opened");
        }
        row.open_reminder = Some(id);
    }

    if before == DocumentState::AwaitingReturn && after != DocumentState::AwaitingReturn {
        if let Some(id) = row.open_reminder.take() {
            // The table leaves AwaitingReturn only by these three.
            let reason = match &decoded {
                DocumentEvent::Cancelled(_) => CloseReason::Cancelled,
                DocumentEvent::ReconciliationCorrected(_) => CloseReason::Reconciled,
                _ => CloseReason::Deposited,
            };
            let closed = Closed {
                reason,
                document_sequence: event.sequence,
                at: recorded_at(event).unwrap_or_else(|| effects.commands.clock().now()),
            };
            let reaction = effects
                .execute::<Reminder>(
                    &id,
                    ReminderCommand::Close(closed),
                    format!("reminder-close:{id}"),
                    None,
                )
                .await?;
            if let Reaction::Refused(error) = reaction {
                tracing::warn!(reminder = id, %error, "reminder not closed");
            }
        }
    }

    if after != before {
        row.state_since = event.sequence;
    }
    row.document = document;
    batch.dirty_documents.insert(zjbs);
    Ok(())
}

fn outbox_entry(
    id: &str,
    sequence: i64,
    reminder: &Reminder,
    sent: &Sent,
) -> Result<OutboxEntry, ProcessError> {
    let details = reminder.details.as_ref();
    let notification = format!("{id}#{sequence}");
    let payload = json!({
        "id": notification,
        "reminder": id,
        "kind": details.map(|d| d.kind.code()),
        "document": details.map(|d| d.document.to_string()),
        "holder": details.and_then(|d| d.holder.as_ref()).map(|h| h.to_string()),
        "document_type": details.and_then(|d| d.document_type).map(|t| t.code()),
        "unit": details.and_then(|d| d.unit.as_ref()).map(|u| u.to_string()),
        "device": details.and_then(|d| d.device.as_ref()).map(|d| d.to_string()),
        "planned_return": details.and_then(|d| d.planned_return).map(|d| d.to_string()),
        "overdue_days": sent.overdue_days,
        "day": sent.day.to_string(),
        "ordinal": sent.ordinal,
        "sent_at": sent.at.to_rfc3339(),
        "recipients": sent.recipients,
    });
    Ok(OutboxEntry {
        id: notification,
        reminder: id.to_string(),
        unit: details.and_then(|d| d.unit.as_ref()).map(|u| u.to_string()),
        payload: to_json(&payload)?,
        queued_ms: sent.at.timestamp_millis(),
    })
}

/// An open reminder (Pending or Reminding): one line of the overdue list.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenReminder {
    pub id: String,
    pub state: ReminderState,
    pub details: Opened,
    /// Reminders sent so far.
    pub sent: u32,
    pub last_sent_at: Option<Timestamp>,
}

impl OpenReminder {
    /// Days past the planned return date on `today` (China time), never negative.
    pub fn overdue_days(&self, today: chrono::NaiveDate) -> i64 {
        custody_domain::reminder::overdue_days(self.details.planned_return, today)
    }
}

/// The open reminders, of one unit or of all.
pub(crate) async fn open_reminders(
    pool: &AnyPool,
    unit: Option<&str>,
) -> Result<Vec<OpenReminder>, ProcessError> {
    let rows = sqlx::query(
        "SELECT id, aggregate FROM process_reminders \
         WHERE state IN ('Pending', 'Reminding') AND ($1 = '' OR unit = $1) ORDER BY id",
    )
    .bind(unit.unwrap_or_default())
    .fetch_all(pool)
    .await?;
    let mut open = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let text: String = row.try_get("aggregate")?;
        let reminder: Reminder = from_json(&text, &id)?;
        if let (true, Some(details)) = (reminder.is_open(), reminder.details) {
            open.push(OpenReminder {
                id,
                state: reminder.state,
                details,
                sent: reminder.sent,
                last_sent_at: reminder.last_sent_at,
            });
        }
    }
    Ok(open)
}

/// The outcome of one sending pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendingPass {
    /// Reminders sent (a `Sent` event each, and a notification queued).
    pub sent: usize,
    /// Open reminders not sent now: outside the window, at the day's limit, or too soon after
    /// the last one.
    pub waiting: usize,
}

/// Sends every open reminder that is due at `now`: inside 10:00–17:00 China time, fewer than
/// `per_day` sent today, and, when several a day are allowed, spread over the window (at least
/// window / `per_day` after the last one).
pub(crate) async fn send_due(
    commands: &Commands,
    pool: &AnyPool,
    now: Timestamp,
    per_day: u32,
) -> Result<SendingPass, ProcessError> {
    let open = open_reminders(pool, None).await?;
    let mut pass = SendingPass::default();
    if !within_sending_window(now) {
        pass.waiting = open.len();
        return Ok(pass);
    }
    let per_day = per_day.max(1);
    let day = china_date(now);
    let spacing = (SENDING_UNTIL - SENDING_FROM) / i32::try_from(per_day).unwrap_or(i32::MAX);
    let mut recipients_of: HashMap<Option<String>, Vec<Administrator>> = HashMap::new();
    for candidate in open {
        // The aggregate itself, not the row: it is the authority on what was sent today.
        let reminder: Reminder = commands.load(&candidate.id).await?;
        let already = reminder.sent_on(day);
        let too_soon = already > 0
            && reminder
                .last_sent_at
                .is_some_and(|last| now < last + spacing);
        if !reminder.is_open() || already >= per_day || too_soon {
            pass.waiting += 1;
            continue;
        }
        let unit = candidate.details.unit.as_ref().map(|u| u.to_string());
        if !recipients_of.contains_key(&unit) {
            let recipients = administrators(pool, unit.as_deref()).await?;
            recipients_of.insert(unit.clone(), recipients);
        }
        let recipients = recipients_of.get(&unit).cloned().unwrap_or_default();
        let key = format!("reminder-send:{}:{day}:{}", candidate.id, already + 1);
        let metadata = crate::consumer::platform_metadata(key, None);
        let command = ReminderCommand::Send {
            at: now,
            per_day,
            recipients,
        };
        match commands
            .execute::<Reminder>(&candidate.id, command, metadata)
            .await
        {
            Ok(custody_commands::Outcome::Appended) => pass.sent += 1,
            Ok(custody_commands::Outcome::Duplicate(_)) => pass.waiting += 1,
            Err(custody_commands::CommandError::Domain(error)) => {
                // Closed or sent meanwhile by another pass: nothing to do.
                tracing::debug!(reminder = candidate.id, %error, "reminder not sent");
                pass.waiting += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(pass)
}

/// The administrators of the unit's active cabinets: who is reminded by default.
async fn administrators(
    pool: &AnyPool,
    unit: Option<&str>,
) -> Result<Vec<Administrator>, ProcessError> {
    let Some(unit) = unit else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT sbxlh, aggregate FROM process_cabinets WHERE unit = $1 AND state = 'Active' \
         ORDER BY sbxlh",
    )
    .bind(unit)
    .fetch_all(pool)
    .await?;
    let mut all: Vec<Administrator> = Vec::new();
    for row in rows {
        let sbxlh: String = row.try_get("sbxlh")?;
        let text: String = row.try_get("aggregate")?;
        let cabinet: Cabinet = from_json(&text, &sbxlh)?;
        for administrator in cabinet.administrators {
            if !all.contains(&administrator) {
                all.push(administrator);
            }
        }
    }
    Ok(all)
}

fn document_row(row: &AnyRow, zjbs: &str) -> Result<DocumentRow, ProcessError> {
    let text: String = row.try_get("aggregate")?;
    Ok(DocumentRow {
        document: from_json(&text, zjbs)?,
        state_since: row.try_get("state_since")?,
        device: row.try_get("device")?,
        open_reminder: row.try_get("open_reminder")?,
    })
}

pub(crate) fn decode<E: DeserializeOwned>(event: &StoredEvent) -> Result<E, ProcessError> {
    E::deserialize(&event.payload).map_err(|e| {
        ProcessError::Decode(format!(
            "{} {} #{}: {e}",
            event.aggregate_type, event.aggregate_id, event.sequence
        ))
    })
}

fn from_json<T: DeserializeOwned>(text: &str, id: &str) -> Result<T, ProcessError> {
    serde_json::from_str(text).map_err(|e| ProcessError::Decode(format!("row {id}: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ProcessError> {
    serde_json::to_string(value).map_err(|e| ProcessError::Decode(e.to_string()))
}

/// When the platform recorded `event`.
pub(crate) fn recorded_at(event: &StoredEvent) -> Option<Timestamp> {
    event.metadata["recorded_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
}
