use std::sync::Arc;
use std::time::Duration;

use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use custody_domain::cabinet::Cabinet;
use custody_domain::document::Document;
use custody_domain::person::Person;
use custody_domain::{DomainError, EventMetadata};
use custody_eventlog::{EventLog, StoredEventRef};
use rand::RngExt;

use crate::clock::Clock;
use crate::CommandError;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its event was appended.
    Appended,
    /// Its idempotency key had already produced this event; nothing was appended.
    Duplicate(StoredEventRef),
}

/// How hard to try when other writers append to the same aggregate first.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Upper bound of the random pause before attempt n is n × this.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 20,
            backoff: Duration::from_millis(2),
        }
    }
}

/// The application services over one event log.
pub struct Commands {
    log: EventLog,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl Commands {
    pub fn new(log: EventLog, clock: Arc<dyn Clock>) -> Self {
        Commands {
            log,
            clock,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub async fn document(
        &self,
        id: &str,
        command: <Document as Aggregate>::Command,
        metadata: EventMetadata,
    ) -> Result<Outcome, CommandError> {
        self.execute::<Document>(id, command, metadata).await
    }

    pub async fn person(
        &self,
        id: &str,
        command: <Person as Aggregate>::Command,
        metadata: EventMetadata,
    ) -> Result<Outcome, CommandError> {
        self.execute::<Person>(id, command, metadata).await
    }

    pub async fn cabinet(
        &self,
        id: &str,
        command: <Cabinet as Aggregate>::Command,
        metadata: EventMetadata,
    ) -> Result<Outcome, CommandError> {
        self.execute::<Cabinet>(id, command, metadata).await
    }

    /// The aggregate as its stored events make it now.
    pub async fn load<A>(&self, id: &str) -> Result<A, CommandError>
    where
        A: Aggregate<Error = DomainError>,
    {
        let context = self
            .log
            .store::<A>()
            .load_aggregate(id)
            .await
            .map_err(store_error)?;
        Ok(context.aggregate)
    }

    /// Runs one command of any aggregate: idempotent by the metadata's key, retried on
    /// conflicts. (cqrs-es's framework is a thin, stateless wrapper over the store, so one is
    /// made per call.)
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        mut metadata: EventMetadata,
    ) -> Result<Outcome, CommandError>
    where
        A: Aggregate<Error = DomainError, Services = ()>,
        A::Command: Clone,
    {
        let framework = CqrsFramework::new(self.log.store::<A>(), vec![], ());
        metadata.recorded_at.get_or_insert_with(|| self.clock.now());
        let key = metadata.idempotency_key.clone();
        if let Some(outcome) = self.earlier_outcome::<A>(key.as_deref(), id).await? {
            return Ok(outcome);
        }
        let metadata = metadata.to_map();
        for attempt in 1..=self.retry.attempts {
            match framework
                .execute_with_metadata(id, command.clone(), metadata.clone())
                .await
            {
                Ok(()) => return Ok(Outcome::Appended),
                Err(AggregateError::UserError(error)) => {
                    // A twin of this report may have committed between our look-up and our
                    // load, making the command look illegal: it is a duplicate, not a refusal.
                    if let Some(outcome) = self.earlier_outcome::<A>(key.as_deref(), id).await? {
                        return Ok(outcome);
                    }
                    return Err(error.into());
                }
                Err(AggregateError::AggregateConflict) => {
                    // Either another writer took our sequence number, or a concurrent twin of
                    // this very report won: the idempotency index tells which.
                    if let Some(outcome) = self.earlier_outcome::<A>(key.as_deref(), id).await? {
                        return Ok(outcome);
                    }
                    let pause = rand::rng().random_range(0..=self.retry.backoff.as_micros() as u64)
                        * u64::from(attempt);
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(CommandError::Conflict {
            attempts: self.retry.attempts,
        })
    }

    /// If the idempotency key already produced an event: a duplicate of it, or an error when it
    /// was used for another aggregate.
    async fn earlier_outcome<A: Aggregate>(
        &self,
        key: Option<&str>,
        id: &str,
    ) -> Result<Option<Outcome>, CommandError> {
        let Some(key) = key else { return Ok(None) };
        match self.log.find_by_idempotency_key(key).await? {
            None => Ok(None),
            Some(existing) if existing.aggregate_type == A::TYPE && existing.aggregate_id == id => {
                Ok(Some(Outcome::Duplicate(existing)))
            }
            Some(existing) => Err(CommandError::SerialReused {
                key: key.to_string(),
                aggregate_type: existing.aggregate_type,
                aggregate_id: existing.aggregate_id,
            }),
        }
    }
}

fn store_error(error: AggregateError<DomainError>) -> CommandError {
    match error {
        AggregateError::UserError(error) => CommandError::Domain(error),
        AggregateError::AggregateConflict => CommandError::Conflict { attempts: 1 },
        other => CommandError::Store(other.to_string()),
    }
}
