use std::sync::Arc;
use std::time::Duration;

use cqrs_es::{Aggregate, AggregateError, EventStore};
use custody_domain::cabinet::Cabinet;
use custody_domain::document::Document;
use custody_domain::person::Person;
use custody_domain::{DomainError, EventMetadata};
use custody_eventlog::{ChainContext, EventLog, EventLogError, StoredEventRef};
use rand::RngExt;

use crate::clock::Clock;
use crate::error::PersistenceFailure;
use crate::hot::{HotAggregates, HotStats, HOT_AGGREGATES, HOT_AGGREGATE_TTL};
use crate::CommandError;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its event was appended.
    Appended,
    /// Its idempotency key had already produced this event; nothing was appended.
    Duplicate(StoredEventRef),
}

/// A guarded command's failure: its precondition refused, or the command itself failed.
#[derive(Debug)]
pub enum Guarded<E> {
    Refused(E),
    Command(CommandError),
}

impl<E> From<CommandError> for Guarded<E> {
    fn from(error: CommandError) -> Self {
        Guarded::Command(error)
    }
}

/// An aggregate loaded for a command ([`Commands::load_for_command`]), with where its chain
/// ended when loaded.
pub struct Loaded<A> {
    context: ChainContext<A>,
    /// Taken from the hot aggregates rather than the store: a refusal on it is checked again.
    from_memory: bool,
}

impl<A> Loaded<A> {
    pub fn aggregate(&self) -> &A {
        &self.context.aggregate
    }
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

/// What one command came to, for whoever watches the service (metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandResult {
    Appended,
    Duplicate,
    Refused,
    /// Other writers kept winning until the attempts ran out.
    Conflict,
    Failed,
}

impl CommandResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandResult::Appended => "appended",
            CommandResult::Duplicate => "duplicate",
            CommandResult::Refused => "refused",
            CommandResult::Conflict => "conflict",
            CommandResult::Failed => "failed",
        }
    }
}

/// Told of every command run: the aggregate type, how it ended, how long it took, how many
/// commits lost to another writer (each one retried), and how many events it appended.
pub trait CommandObserver: Send + Sync {
    fn executed(
        &self,
        aggregate: &'static str,
        result: CommandResult,
        elapsed: Duration,
        conflicts: u32,
        events: usize,
    );
}

/// The application services over one event log.
pub struct Commands {
    log: EventLog,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    observer: Option<Arc<dyn CommandObserver>>,
    hot: HotAggregates,
}

impl Commands {
    pub fn new(log: EventLog, clock: Arc<dyn Clock>) -> Self {
        Commands {
            log,
            clock,
            retry: RetryPolicy::default(),
            observer: None,
            hot: HotAggregates::new(HOT_AGGREGATES, HOT_AGGREGATE_TTL),
        }
    }

    /// How many aggregates to hold in memory for commands (`crate::hot`); 0 holds none, so
    /// that every command loads from the store.
    pub fn with_hot_aggregates(mut self, capacity: usize) -> Self {
        self.hot = HotAggregates::new(capacity, HOT_AGGREGATE_TTL);
        self
    }

    /// What the hot aggregates did since this process started.
    pub fn hot_aggregates(&self) -> HotStats {
        self.hot.stats()
    }

    /// Drops the aggregate `id` from memory, so that nothing of it stays there (erasure).
    pub fn forget_in_memory<A: Aggregate>(&self, id: &str) {
        self.hot.forget(A::TYPE, id);
    }

    pub fn with_observer(mut self, observer: Arc<dyn CommandObserver>) -> Self {
        self.observer = Some(observer);
        self
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

    /// The aggregate as its stored events make it now, read from the store: a look-up that
    /// decides by itself is never answered from memory, where nothing would check it.
    pub async fn load<A>(&self, id: &str) -> Result<A, CommandError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
    {
        Ok(self
            .load_context::<A>(id, true)
            .await
            .map_err(store_error)?
            .0
            .aggregate)
    }

    /// The aggregate `id`, from memory unless `fresh` or none is held, then from the store
    /// (and held). Whether it came from memory.
    async fn load_context<A>(
        &self,
        id: &str,
        fresh: bool,
    ) -> Result<(ChainContext<A>, bool), AggregateError<DomainError>>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
    {
        if !fresh {
            if let Some(held) = self.hot.get::<A>(id) {
                return Ok((held, true));
            }
        }
        let context = self.log.store::<A>().load_aggregate(id).await?;
        self.hot
            .put(id, &context.aggregate, context.sequence, &context.last_hash);
        Ok((context, false))
    }

    /// Runs one command of any aggregate: idempotent by the metadata's key, retried on
    /// conflicts.
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: EventMetadata,
    ) -> Result<Outcome, CommandError>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        self.execute_guarded::<A, std::convert::Infallible>(id, command, metadata, |_| Ok(()))
            .await
            .map_err(|guarded| match guarded {
                Guarded::Command(error) => error,
                Guarded::Refused(never) => match never {},
            })
    }

    /// As [`Commands::execute`], with a precondition judged on the very state the command is
    /// decided on: `guard` sees the aggregate as loaded for each attempt, so a check such as
    /// custody cannot be overtaken by a write between the check and the commit (the commit
    /// fails on the sequence and the next attempt judges again).
    pub async fn execute_guarded<A, E>(
        &self,
        id: &str,
        command: A::Command,
        metadata: EventMetadata,
        guard: impl Fn(&A) -> Result<(), E>,
    ) -> Result<Outcome, Guarded<E>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        self.execute_observed(id, None, command, metadata, guard)
            .await
    }

    /// The aggregate `id` as its stored events make it now, loaded for a command: a use case
    /// that must look at it before deciding (the custody policy's look-ups) hands it on to
    /// [`Commands::execute_guarded_on`], which decides its first attempt on it instead of
    /// loading it again (issue 11: one round trip fewer).
    ///
    /// It may come from memory (`crate::hot`): the command decided on it is checked by its
    /// append, and a refusal on it is decided again on a fresh load.
    pub async fn load_for_command<A>(&self, id: &str) -> Result<Loaded<A>, CommandError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
    {
        let (context, from_memory) = self
            .load_context::<A>(id, false)
            .await
            .map_err(store_error)?;
        Ok(Loaded {
            context,
            from_memory,
        })
    }

    /// As [`Commands::execute_guarded`], the first attempt decided on `loaded`. That is safe
    /// however old it is: the append checks the sequence it was loaded at, so if another writer
    /// appended since, the commit fails as a conflict and the next attempt loads afresh.
    pub async fn execute_guarded_on<A, E>(
        &self,
        loaded: Loaded<A>,
        command: A::Command,
        metadata: EventMetadata,
        guard: impl Fn(&A) -> Result<(), E>,
    ) -> Result<Outcome, Guarded<E>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        let id = loaded.context.aggregate_id.clone();
        self.execute_observed(&id, Some(loaded), command, metadata, guard)
            .await
    }

    async fn execute_observed<A, E>(
        &self,
        id: &str,
        loaded: Option<Loaded<A>>,
        command: A::Command,
        metadata: EventMetadata,
        guard: impl Fn(&A) -> Result<(), E>,
    ) -> Result<Outcome, Guarded<E>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        let started = std::time::Instant::now();
        let mut tally = Tally::default();
        let result = self
            .execute_counted(id, loaded, command, metadata, guard, &mut tally)
            .await;
        if let Some(observer) = &self.observer {
            let ended = match &result {
                Ok(Outcome::Appended) => CommandResult::Appended,
                Ok(Outcome::Duplicate(_)) => CommandResult::Duplicate,
                Err(Guarded::Refused(_)) | Err(Guarded::Command(CommandError::Domain(_))) => {
                    CommandResult::Refused
                }
                Err(Guarded::Command(CommandError::Conflict { .. })) => CommandResult::Conflict,
                Err(Guarded::Command(_)) => CommandResult::Failed,
            };
            observer.executed(
                A::TYPE,
                ended,
                started.elapsed(),
                tally.conflicts,
                tally.events,
            );
        }
        result
    }

    async fn execute_counted<A, E>(
        &self,
        id: &str,
        mut loaded: Option<Loaded<A>>,
        command: A::Command,
        mut metadata: EventMetadata,
        guard: impl Fn(&A) -> Result<(), E>,
        tally: &mut Tally,
    ) -> Result<Outcome, Guarded<E>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        let store = self.log.store::<A>();
        metadata.recorded_at.get_or_insert_with(|| self.clock.now());
        let key = metadata.idempotency_key.clone();
        let content = metadata.content_sm3.clone();
        let earlier = Earlier {
            key: key.as_deref(),
            content: content.as_deref(),
        };
        // No look-up of the key before deciding: the idempotency index refuses a second event
        // under it in the append itself, and every way a command can end other than appended
        // (refused, illegal, conflicting, failed) asks the index first whether a twin was
        // recorded. A first send thus costs no look-up (issue 11: one round trip fewer).
        let metadata = metadata.to_map();
        // Whether this attempt must load from the store: after its state from memory was found
        // behind the store, or refused (a refusal is never answered from memory).
        let mut fresh = false;
        for attempt in 1..=self.retry.attempts {
            let loading = match loaded.take() {
                Some(loaded) => Ok((loaded.context, loaded.from_memory)),
                None => self.load_context::<A>(id, fresh).await,
            };
            let (mut context, from_memory) = match loading {
                Ok(loaded) => loaded,
                Err(error) => return self.unless_earlier::<A, E>(&earlier, id, error).await,
            };
            if let Err(refusal) = guard(&context.aggregate) {
                if from_memory {
                    self.hot.stale(A::TYPE, id);
                    fresh = true;
                    continue;
                }
                // A twin of this report may have committed since our look-up: a duplicate.
                if let Some(outcome) = self.earlier_outcome::<A>(&earlier, id).await? {
                    return Ok(outcome);
                }
                return Err(Guarded::Refused(refusal));
            }
            let sink = cqrs_es::event_sink::EventSink::<A>::default();
            // As cqrs-es's framework does: the sink applies what it is given to the loaded
            // aggregate, which is then what the store holds after the commit.
            if let Err(error) = context.aggregate.handle(command.clone(), &(), &sink).await {
                if from_memory {
                    self.hot.stale(A::TYPE, id);
                    fresh = true;
                    continue;
                }
                // A twin of this report may have committed between our look-up and our
                // load, making the command look illegal: it is a duplicate, not a refusal.
                if let Some(outcome) = self.earlier_outcome::<A>(&earlier, id).await? {
                    return Ok(outcome);
                }
                return Err(CommandError::from(error).into());
            }
            let events = sink.collect().await;
            let count = events.len();
            if count == 0 {
                if from_memory {
                    self.hot.stale(A::TYPE, id);
                    fresh = true;
                    continue;
                }
                // Nothing to append, so the index was not asked: a duplicate, if the key was.
                if let Some(outcome) = self.earlier_outcome::<A>(&earlier, id).await? {
                    return Ok(outcome);
                }
            }
            let after = (count > 0).then(|| (context.aggregate.clone(), context.sequence + count));
            match store
                .commit_chained(events, context, metadata.clone())
                .await
            {
                Ok((_, last_hash)) => {
                    if let Some((aggregate, sequence)) = after {
                        self.hot.put(id, &aggregate, sequence, &last_hash);
                    }
                    tally.events = count;
                    return Ok(Outcome::Appended);
                }
                Err(AggregateError::AggregateConflict) => {
                    tally.conflicts += 1;
                    if from_memory {
                        self.hot.stale(A::TYPE, id);
                    } else {
                        self.hot.forget(A::TYPE, id);
                    }
                    fresh = true;
                    // Either another writer took our sequence number, or a concurrent twin of
                    // this very report won: the idempotency index tells which.
                    if let Some(outcome) = self.earlier_outcome::<A>(&earlier, id).await? {
                        return Ok(outcome);
                    }
                    // Behind the store only because memory was: no one to give way to.
                    if !from_memory {
                        let pause = rand::rng()
                            .random_range(0..=self.retry.backoff.as_micros() as u64)
                            * u64::from(attempt);
                        tokio::time::sleep(Duration::from_micros(pause)).await;
                    }
                }
                Err(other) => {
                    // Whether it was appended is unknown: the next command loads.
                    self.hot.forget(A::TYPE, id);
                    return self.unless_earlier::<A, E>(&earlier, id, other).await;
                }
            }
        }
        Err(CommandError::Conflict {
            attempts: self.retry.attempts,
        }
        .into())
    }

    /// A store failure, unless the key already produced an event (the look-up the command
    /// skipped before deciding would have answered that first).
    async fn unless_earlier<A: Aggregate, E>(
        &self,
        earlier: &Earlier<'_>,
        id: &str,
        error: AggregateError<DomainError>,
    ) -> Result<Outcome, Guarded<E>> {
        match self.earlier_outcome::<A>(earlier, id).await {
            Ok(Some(outcome)) => Ok(outcome),
            Err(
                reused @ (CommandError::ContentDiffers { .. } | CommandError::SerialReused { .. }),
            ) => Err(reused.into()),
            // The look-up failing too says nothing new: the store's own error is the answer.
            Ok(None) | Err(_) => Err(store_error(error).into()),
        }
    }

    /// If the idempotency key already produced an event: a duplicate of it, or an error when it
    /// was used for another aggregate or for other business content.
    async fn earlier_outcome<A: Aggregate>(
        &self,
        earlier: &Earlier<'_>,
        id: &str,
    ) -> Result<Option<Outcome>, CommandError> {
        let Some(key) = earlier.key else {
            return Ok(None);
        };
        match self.log.find_by_idempotency_key(key).await? {
            None => Ok(None),
            Some(existing) if existing.aggregate_type == A::TYPE && existing.aggregate_id == id => {
                // Events recorded before content was fingerprinted carry none: they compare
                // by key alone, as they always did.
                let differs = matches!(
                    (existing.content_sm3.as_deref(), earlier.content),
                    (Some(stored), Some(sent)) if stored != sent
                );
                if differs {
                    return Err(CommandError::ContentDiffers {
                        key: key.to_string(),
                    });
                }
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

/// What a command is compared by when its key was seen before.
struct Earlier<'a> {
    key: Option<&'a str>,
    content: Option<&'a str>,
}

fn store_error(error: AggregateError<DomainError>) -> CommandError {
    let (kind, source) = match error {
        AggregateError::UserError(error) => return CommandError::Domain(error),
        AggregateError::AggregateConflict => return CommandError::Conflict { attempts: 1 },
        AggregateError::DatabaseConnectionError(source) => (PersistenceFailure::Connection, source),
        AggregateError::DeserializationError(source) => {
            (PersistenceFailure::Deserialization, source)
        }
        AggregateError::UnexpectedError(source) => match source.downcast::<EventLogError>() {
            Ok(error) => match *error {
                EventLogError::PersonErased(person) => {
                    return CommandError::PersonErased { person }
                }
                other => (PersistenceFailure::Unexpected, Box::new(other) as _),
            },
            Err(source) => (PersistenceFailure::Unexpected, source),
        },
    };
    CommandError::Persistence { kind, source }
}

/// What one command's attempts came to, for the observer.
#[derive(Default)]
struct Tally {
    conflicts: u32,
    events: usize,
}
