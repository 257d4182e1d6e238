//! A cqrs-es `EventStore` that replays from the repository and appends hash-chained events.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use serde_json::Value;

use crate::chain::{chain_hash, event_hash, GENESIS_HASH, PREVIOUS_HASH};
use crate::personal::{self, PersonalData, Sealed};
use crate::repository::Repository;

/// The metadata key that must be unique across the log; only the first event of a commit
/// carries it, so one command's events can never collide with each other.
const IDEMPOTENCY_KEY: &str = "idempotency_key";

pub struct ChainedEventStore<A> {
    repository: Repository,
    personal: Option<Arc<PersonalData>>,
    _aggregate: PhantomData<fn() -> A>,
}

/// The aggregate as loaded, with where its chain ends.
pub struct ChainContext<A> {
    pub aggregate_id: String,
    pub aggregate: A,
    pub sequence: usize,
    pub last_hash: String,
}

impl<A: Aggregate> AggregateContext<A> for ChainContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate> ChainedEventStore<A> {
    pub(crate) fn new(repository: Repository, personal: Option<Arc<PersonalData>>) -> Self {
        ChainedEventStore {
            repository,
            personal,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> EventStore<A> for ChainedEventStore<A> {
    type AC = ChainContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let mut stored = self
            .repository
            .get_events::<A>(aggregate_id)
            .await
            .map_err(persistence_error)?;
        self.open(&mut stored).await?;
        stored.into_iter().map(envelope).collect()
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<ChainContext<A>, AggregateError<A::Error>> {
        let stored = self
            .repository
            .get_events::<A>(aggregate_id)
            .await
            .map_err(persistence_error)?;
        let mut context = ChainContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate: A::default(),
            sequence: 0,
            last_hash: GENESIS_HASH.to_string(),
        };
        let hashes: Vec<String> = stored.iter().map(chain_hash).collect();
        let mut stored = stored;
        self.open(&mut stored).await?;
        for (event, hash) in stored.into_iter().zip(hashes) {
            // The chain links the stored (sealed) form, or a resealed event's plain form.
            context.last_hash = hash;
            context.sequence = event.sequence;
            let envelope: EventEnvelope<A> = envelope(event)?;
            context.aggregate.apply(envelope.payload);
        }
        Ok(context)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: ChainContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        Ok(self.commit_chained(events, context, metadata).await?.0)
    }
}

impl<A: Aggregate> ChainedEventStore<A> {
    /// As [`EventStore::commit`], also answering the hash the chain now ends with (the
    /// command service keeps it with the aggregate it holds in memory).
    pub async fn commit_chained(
        &self,
        events: Vec<A::Event>,
        context: ChainContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<(Vec<EventEnvelope<A>>, String), AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok((Vec::new(), context.last_hash));
        }
        let mut previous_hash = context.last_hash;
        let mut serialized = Vec::with_capacity(events.len());
        let mut envelopes = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let mut event_metadata = metadata.clone();
            if i > 0 {
                event_metadata.remove(IDEMPOTENCY_KEY);
            }
            event_metadata.insert(PREVIOUS_HASH.to_string(), previous_hash.clone());
            let mut payload = serde_json::to_value(&event).map_err(unexpected)?;
            if let Some(personal) = &self.personal {
                personal
                    .seal(
                        A::TYPE,
                        &context.aggregate_id,
                        &event.event_type(),
                        &mut payload,
                    )
                    .await
                    .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
            }
            let record = SerializedEvent::new(
                context.aggregate_id.clone(),
                context.sequence + i + 1,
                A::TYPE.to_string(),
                event.event_type(),
                event.event_version(),
                payload,
                serde_json::to_value(&event_metadata).map_err(unexpected)?,
            );
            previous_hash = event_hash(&record);
            serialized.push(record);
            envelopes.push(EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence: context.sequence + i + 1,
                payload: event,
                metadata: event_metadata,
            });
        }
        self.repository
            .persist::<A>(&serialized, None)
            .await
            .map_err(persistence_error)?;
        Ok((envelopes, previous_hash))
    }

    /// Opens the sealed personal fields of events read from the repository.
    async fn open(&self, stored: &mut [SerializedEvent]) -> Result<(), AggregateError<A::Error>> {
        let items = stored
            .iter_mut()
            .filter_map(|e| {
                Sealed::of(
                    &e.aggregate_type,
                    &e.aggregate_id,
                    &e.event_type,
                    &mut e.payload,
                )
            })
            .collect();
        personal::open_all(self.personal.as_deref(), items)
            .await
            .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))
    }
}

fn envelope<A: Aggregate>(
    event: SerializedEvent,
) -> Result<EventEnvelope<A>, AggregateError<A::Error>> {
    let payload = serde_json::from_value(event.payload)
        .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?;
    let metadata: HashMap<String, String> = match event.metadata {
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => HashMap::new(),
    };
    Ok(EventEnvelope {
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        payload,
        metadata,
    })
}

fn unexpected<T: std::error::Error>(e: serde_json::Error) -> AggregateError<T> {
    AggregateError::UnexpectedError(Box::new(e))
}

/// Every unique-key violation (another writer took this sequence number, or the idempotency key
/// exists) and SQLite's "busy" are conflicts: the caller reloads and decides again. sqlite-es
/// only recognises primary-key violations itself, hence the second look here.
fn persistence_error<T: std::error::Error>(error: PersistenceError) -> AggregateError<T> {
    match error {
        PersistenceError::OptimisticLockError => AggregateError::AggregateConflict,
        PersistenceError::ConnectionError(e) => AggregateError::DatabaseConnectionError(e),
        PersistenceError::DeserializationError(e) => AggregateError::DeserializationError(e),
        PersistenceError::UnknownError(e) => {
            let conflict = e
                .downcast_ref::<sqlx::Error>()
                .and_then(|e| e.as_database_error())
                .and_then(|e| e.code())
                .is_some_and(|code| {
                    matches!(code.as_ref(), "23505" | "1555" | "2067" | "5" | "517")
                });
            if conflict {
                AggregateError::AggregateConflict
            } else {
                AggregateError::UnexpectedError(e)
            }
        }
    }
}
