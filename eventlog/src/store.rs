//! A cqrs-es `EventStore` that replays from the repository and appends hash-chained events.

use std::collections::HashMap;
use std::marker::PhantomData;

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use serde_json::Value;

use crate::chain::{event_hash, GENESIS_HASH, PREVIOUS_HASH};
use crate::repository::Repository;

/// The metadata key that must be unique across the log; only the first event of a commit
/// carries it, so one command's events can never collide with each other.
const IDEMPOTENCY_KEY: &str = "idempotency_key";

pub struct ChainedEventStore<A> {
    repository: Repository,
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
    pub(crate) fn new(repository: Repository) -> Self {
        ChainedEventStore {
            repository,
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
        let stored = self
            .repository
            .get_events::<A>(aggregate_id)
            .await
            .map_err(persistence_error)?;
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
        for event in stored {
            context.last_hash = event_hash(&event);
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
        if events.is_empty() {
            return Ok(Vec::new());
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
            let record = SerializedEvent::new(
                context.aggregate_id.clone(),
                context.sequence + i + 1,
                A::TYPE.to_string(),
                event.event_type(),
                event.event_version(),
                serde_json::to_value(&event).map_err(unexpected)?,
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
        Ok(envelopes)
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
