//! Erasure by person (crypto-shredding, docs/personal-data.md "Erasure"): an operator's act on a
//! person who is gone from the unit. The erasure is recorded as an event of its own on the
//! Person aggregate, then the person's data key is destroyed, so that every stored copy of their
//! personal data (events, views, backups) is unreadable while the events, their hashes and the
//! checkpoints stay intact.

use custody_commands::{CommandError, Outcome};
use custody_domain::document::{Document, DocumentState};
use custody_domain::identifiers::{DocumentId, PersonId};
use custody_domain::person::{Person, PersonCommand, PersonState, PersonalDataErased};
use custody_domain::transitions::Named;
use custody_domain::EventMetadata;
use custody_eventlog::EventLogError;

use crate::{Application, ApplicationError};

/// What erasure asks of the read side: a port.
pub trait HeldDocuments {
    /// Which documents name a person as their holder (the log has no index by holder).
    fn held_by(
        &self,
        person: &PersonId,
    ) -> impl std::future::Future<Output = Result<Vec<DocumentId>, ApplicationError>> + Send;
    /// Clears the person's blind indexes in the views (their sealed cells need no work: their
    /// key is gone).
    fn forget(
        &self,
        person: &PersonId,
    ) -> impl std::future::Future<Output = Result<(), ApplicationError>> + Send;
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// The erasure event was appended now (false: it was recorded before, and this call only
    /// made sure the key is gone).
    pub recorded: bool,
    /// A data key was destroyed now.
    pub key_destroyed: bool,
    /// The documents naming the person as their holder (all cancelled).
    pub documents: Vec<DocumentId>,
}

impl Application {
    /// Erases a person's personal data. Allowed once the filing is revoked or refused (or the
    /// person was never filed) and every document naming them is cancelled: a document still in
    /// custody needs its record for the next deposit. Running it again finishes an erasure that
    /// stopped between its two steps.
    pub async fn erase_person(
        &self,
        held: &impl HeldDocuments,
        person: &PersonId,
        erasure: PersonalDataErased,
        metadata: EventMetadata,
    ) -> Result<Erased, ApplicationError> {
        let Some(keys) = self.commands.log().personal_data().cloned() else {
            return Err(EventLogError::NoMasterKey.into());
        };
        let documents = held.held_by(person).await?;
        let current: Person = self.commands.load(person.as_str()).await?;
        if current.state == PersonState::Unknown && documents.is_empty() {
            return Err(ApplicationError::NotFound(format!("no person {person}")));
        }
        let recorded = match current.state {
            PersonState::Erased => false,
            _ => {
                // The state machine first (the filing revoked or refused), then the documents.
                let command = PersonCommand::ErasePersonalData(erasure);
                current.decide(command.clone())?;
                let mut held_now = Vec::new();
                for document in &documents {
                    let state = self
                        .commands
                        .load::<Document>(document.as_str())
                        .await?
                        .state;
                    if state != DocumentState::Cancelled {
                        held_now.push(format!("{document} ({})", state.name()));
                    }
                }
                if !held_now.is_empty() {
                    return Err(ApplicationError::NotErasable(format!(
                        "documents of {person} are not cancelled: {}",
                        held_now.join(", ")
                    )));
                }
                match self
                    .commands
                    .person(person.as_str(), command, metadata)
                    .await
                {
                    Ok(Outcome::Appended) => true,
                    Ok(Outcome::Duplicate(_)) => false,
                    Err(CommandError::PersonErased { .. }) => false,
                    Err(error) => return Err(error.into()),
                }
            }
        };
        let key_destroyed = keys.destroy_key(person.as_str()).await?;
        // Nothing of theirs stays in this process's memory either (other instances drop theirs
        // within `custody_commands::HOT_AGGREGATE_TTL`, as they drop the key).
        self.commands.forget_in_memory::<Person>(person.as_str());
        for document in &documents {
            self.commands
                .forget_in_memory::<Document>(document.as_str());
        }
        held.forget(person).await?;
        tracing::info!(person = %person, recorded, key_destroyed, "personal data erased");
        Ok(Erased {
            recorded,
            key_destroyed,
            documents,
        })
    }
}
