//! The revocation cascade (SPEC §3.2): when a person's filing is revoked (`RevocationAccepted`),
//! every document of that person not already cancelled gets `Cancelled` with reason
//! `filing_revoked`.
//!
//! The process follows Document and Person events in commit order and keeps who holds which
//! document and whether it is cancelled, as of the event it is handling: the documents it cancels
//! are exactly those the log says the person held when the revocation was accepted. Each
//! cancellation is keyed `revocation:<rybs>:<zjbs>`, so a run that stops half-way (a crash between
//! two cancellations) is finished by the next one, and nothing is cancelled twice.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};

use custody_domain::document::{
    CancellationReason, Cancelled, Document, DocumentCommand, DocumentEvent, DocumentState,
    TRANSITIONS,
};
use custody_domain::person::PersonEvent;
use custody_domain::transitions::{next_state, Named};
use custody_domain::DomainError;
use custody_eventlog::StoredEvent;
use custody_projections::bulk::{Cell, OnConflict, Table};
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::consumer::{select_in, write_rows, Effects, Handler, Reaction};
use crate::reminders::decode;
use crate::ProcessError;

#[derive(Debug, Clone, Default)]
struct Holding {
    holder: Option<String>,
    state: DocumentState,
}

#[derive(Default)]
pub(crate) struct CascadeBatch {
    holdings: HashMap<String, Holding>,
    dirty: HashSet<String>,
}

pub(crate) struct CascadeHandler;

impl Handler for CascadeHandler {
    type Batch = CascadeBatch;
    const NAME: &'static str = "revocation_cascade";

    fn takes(&self, aggregate_type: &str) -> bool {
        matches!(aggregate_type, "Document" | "Person")
    }

    fn batch(&self) -> CascadeBatch {
        CascadeBatch::default()
    }

    async fn prefetch(
        &self,
        batch: &mut CascadeBatch,
        keys: &[(&str, &str)],
        connection: &mut AnyConnection,
    ) -> Result<(), ProcessError> {
        let documents: Vec<&str> = keys
            .iter()
            .filter(|(kind, _)| *kind == "Document")
            .map(|(_, id)| *id)
            .collect();
        for row in select_in(
            connection,
            "zjbs, holder, state FROM process_holdings",
            &[],
            "zjbs",
            &documents,
        )
        .await?
        {
            batch
                .holdings
                .insert(row.try_get("zjbs")?, holding_of(&row)?);
        }
        for zjbs in documents {
            batch.holdings.entry(zjbs.to_string()).or_default();
        }
        Ok(())
    }

    async fn handle(
        &self,
        batch: &mut CascadeBatch,
        event: &StoredEvent,
        effects: &Effects<'_>,
    ) -> Result<(), ProcessError> {
        match event.aggregate_type.as_str() {
            "Document" => {
                let decoded: DocumentEvent = decode(event)?;
                let zjbs = &event.aggregate_id;
                // Prefetched for every document of the batch (a new one as the default).
                if let Some(holding) = batch.holdings.get_mut(zjbs) {
                    match &decoded {
                        DocumentEvent::ApplicationFiled(e) => {
                            holding.holder = Some(e.holder.to_string())
                        }
                        DocumentEvent::IssuanceConfirmed(e) => {
                            holding.holder = Some(e.holder.to_string())
                        }
                        DocumentEvent::Deposited(e) => {
                            holding.holder = Some(e.holder().to_string())
                        }
                        _ => {}
                    }
                    // As the aggregate's own apply does: the table decides the state.
                    holding.state = next_state(TRANSITIONS, holding.state, decoded.kind())
                        .unwrap_or(holding.state);
                }
                batch.dirty.insert(zjbs.clone());
                Ok(())
            }
            "Person" => match decode::<PersonEvent>(event)? {
                PersonEvent::RevocationAccepted(answer) => {
                    cascade(batch, &event.aggregate_id, &answer.filing_serial, effects).await
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn write(
        &self,
        batch: CascadeBatch,
        tx: &mut Transaction<'static, Any>,
    ) -> Result<(), ProcessError> {
        let rows = batch
            .dirty
            .iter()
            .filter_map(|zjbs| {
                batch.holdings.get(zjbs).map(|holding| {
                    vec![
                        Cell::from(zjbs.as_str()),
                        holding.holder.clone().into(),
                        holding.state.name().into(),
                    ]
                })
            })
            .collect();
        write_rows(tx, &HOLDINGS, rows).await
    }
}

const HOLDINGS: Table = Table {
    name: "process_holdings",
    columns: &["zjbs", "holder", "state"],
    key: &["zjbs"],
    on_conflict: OnConflict::Update,
};

/// Cancels every document `rybs` holds that is not cancelled yet, in a fixed order.
async fn cascade(
    batch: &mut CascadeBatch,
    rybs: &str,
    filing_serial: &str,
    effects: &Effects<'_>,
) -> Result<(), ProcessError> {
    // The stored holdings of the person, and those this batch has seen.
    let stored = sqlx::query("SELECT zjbs, holder, state FROM process_holdings WHERE holder = $1")
        .bind(rybs)
        .fetch_all(effects.pool)
        .await?;
    for row in stored {
        let zjbs: String = row.try_get("zjbs")?;
        // What this batch has changed wins over what is stored.
        if let Entry::Vacant(vacant) = batch.holdings.entry(zjbs) {
            vacant.insert(holding_of(&row)?);
        }
    }
    let documents: BTreeSet<String> = batch
        .holdings
        .iter()
        .filter(|(_, h)| h.holder.as_deref() == Some(rybs) && h.state != DocumentState::Cancelled)
        .map(|(zjbs, _)| zjbs.clone())
        .collect();
    for zjbs in documents {
        let command = DocumentCommand::Cancel(Cancelled {
            reason: CancellationReason::FilingRevoked,
            proof: Some(filing_serial.to_string()),
        });
        let reaction = effects
            .execute::<Document>(
                &zjbs,
                command,
                format!("revocation:{rybs}:{zjbs}"),
                Some(filing_serial.to_string()),
            )
            .await?;
        match reaction {
            Reaction::Appended | Reaction::Duplicate => {}
            // Cancelled meanwhile by its cabinet (after the revocation in the commit order).
            Reaction::Refused(DomainError::IllegalTransition { .. }) => {}
            Reaction::Refused(error) => {
                tracing::warn!(document = zjbs, person = rybs, %error, "not cancelled");
            }
        }
    }
    Ok(())
}

fn holding_of(row: &sqlx::any::AnyRow) -> Result<Holding, ProcessError> {
    let state: String = row.try_get("state")?;
    Ok(Holding {
        holder: row.try_get("holder")?,
        state: DocumentState::ALL
            .iter()
            .copied()
            .find(|s| s.name() == state)
            .ok_or_else(|| ProcessError::Decode(format!("document state {state:?}")))?,
    })
}
