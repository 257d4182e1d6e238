//! The projectors the service runs, one per view, and their rebuilds.
//!
//! The projectors run as one group (`custody_projections::ProjectorGroup`): one feed, each batch
//! read and opened once and applied to every view in one transaction (issue 11). On the embedded
//! default (and on PostgreSQL without `--nats-url`) the feed follows the store itself, in commit
//! order. With `--nats-url` a relay publishes committed events to JetStream and the group reads
//! its durable consumer (`custody-projectors`). A projector whose batch fails on its own leaves
//! the group and runs alone from its own cursor (and consumer, `custody-<view>`), as every
//! projector did before the group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use custody_eventlog::{EventLog, Lease};
use custody_projections::feed::EventFeed;
use custody_projections::feed::{JetStreamFeed, StoreFeed, StreamSettings};
use custody_projections::relay::{Relay, RelayHealth};
use custody_projections::{
    GroupStop, Projection, ProjectionError, Projector, ProjectorGroup, RebuildProgress,
};
use tokio::sync::watch;

/// Where events reach the projectors from.
#[derive(Debug, Clone)]
pub enum Transport {
    Store,
    JetStream {
        url: String,
        settings: StreamSettings,
    },
}

/// A rebuild's last known state.
#[derive(Debug, Clone, PartialEq)]
pub enum RebuildState {
    Running(RebuildProgress),
    Finished(RebuildProgress),
    Failed(String),
}

pub struct ReadSide {
    projectors: HashMap<Projection, Projector>,
    rebuilds: Mutex<HashMap<Projection, RebuildState>>,
    shutdown: watch::Sender<bool>,
    /// The relay's and each projector's task, by name, so readiness can tell one that ended.
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    relay: Option<RelayHealth>,
}

/// The worker leases the read side runs under (docs/scaling.md).
pub struct ReadSideLeases {
    /// Every projector: one instance applies all views.
    pub projectors: Lease,
    /// The relay, when events go through JetStream.
    pub relay: Lease,
}

impl ReadSide {
    pub async fn start(
        log: &EventLog,
        transport: &Transport,
        leases: ReadSideLeases,
    ) -> Result<Arc<ReadSide>, ProjectionError> {
        let (shutdown, stop) = watch::channel(false);
        let mut projectors = HashMap::new();
        let mut tasks = Vec::new();
        let mut relay_health = None;
        if let Transport::JetStream { url, settings } = transport {
            let relay = Relay::connect(log.clone(), url, settings.clone())
                .await?
                .with_lease(leases.relay);
            relay_health = Some(relay.health());
            let mut stop = stop.clone();
            let task = tokio::spawn(relay.run(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }));
            tasks.push(("relay".to_string(), task));
        }
        let mut group = Vec::new();
        for projection in Projection::ALL {
            let projector = Projector::new(log.clone(), projection).await?;
            group.push(projector.clone());
            projectors.insert(projection, projector);
        }
        let task = tokio::spawn(run_group(
            ProjectorGroup::new(group),
            transport.clone(),
            leases.projectors.clone(),
            stop.clone(),
        ));
        tasks.push(("projectors".to_string(), task));
        Ok(Arc::new(ReadSide {
            projectors,
            rebuilds: Mutex::new(HashMap::new()),
            shutdown,
            tasks,
            relay: relay_health,
        }))
    }

    /// The relay's and the projectors' tasks that have ended although nothing stopped them.
    pub fn ended_tasks(&self) -> Vec<&str> {
        if *self.shutdown.borrow() {
            return vec![];
        }
        self.tasks
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The relay's health, when events reach the projectors through JetStream.
    pub fn relay(&self) -> Option<&RelayHealth> {
        self.relay.as_ref()
    }

    pub fn projector(&self, projection: Projection) -> Option<&Projector> {
        self.projectors.get(&projection)
    }

    pub fn rebuild_state(&self, projection: Projection) -> Option<RebuildState> {
        self.rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&projection)
            .cloned()
    }

    /// Starts a rebuild in the background; false if one of this projection is running.
    pub fn start_rebuild(self: &Arc<Self>, projection: Projection) -> bool {
        {
            let mut rebuilds = self.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(rebuilds.get(&projection), Some(RebuildState::Running(_))) {
                return false;
            }
            rebuilds.insert(
                projection,
                RebuildState::Running(RebuildProgress {
                    events: 0,
                    total: 0,
                    elapsed: std::time::Duration::ZERO,
                }),
            );
        }
        let this = self.clone();
        tokio::spawn(async move {
            let Some(projector) = this.projector(projection).cloned() else {
                return;
            };
            let record = |state: RebuildState| {
                this.rebuilds
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(projection, state);
            };
            match projector
                .rebuild(2_000, |progress| record(RebuildState::Running(progress)))
                .await
            {
                Ok(done) => record(RebuildState::Finished(done)),
                Err(error) => {
                    tracing::error!(projection = projection.name(), %error, "rebuild failed");
                    record(RebuildState::Failed(error.to_string()))
                }
            }
        });
        true
    }

    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// The projectors' group, in this instance only while it holds the projectors' lease: each
/// term of the lease starts from the lowest stored cursor of the group (another instance may
/// have moved them), and every batch is fenced by the term's token. A projector that leaves the
/// group runs alone ([`run_leased`]).
async fn run_group(
    mut group: ProjectorGroup,
    transport: Transport,
    mut lease: Lease,
    mut stop: watch::Receiver<bool>,
) {
    let mut alone = Vec::new();
    while !group.is_empty() {
        let token = tokio::select! {
            token = lease.acquired() => token,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let ran: Result<(), ProjectionError> = match &transport {
            Transport::Store => match group.start().await {
                Ok(start) => {
                    let log = group.projectors()[0].log().clone();
                    let mut feed = StoreFeed::new(log, start);
                    run_group_term(
                        &mut group, &mut feed, &transport, &mut lease, token, &stop, &mut alone,
                    )
                    .await;
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Transport::JetStream { url, settings } => {
                // A durable consumer is shared by name: only the holder pulls from it.
                match JetStreamFeed::connect(url, settings.clone(), "custody-projectors").await {
                    Ok(mut feed) => {
                        run_group_term(
                            &mut group, &mut feed, &transport, &mut lease, token, &stop, &mut alone,
                        )
                        .await;
                        Ok(())
                    }
                    Err(error) => Err(error.into()),
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        if let Err(error) = ran {
            tracing::warn!(%error, "cannot start the projectors; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    // Every projector left the group: they run alone until shutdown.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// One term of the lease: runs the group on `feed` until the lease is lost or shutdown, sending
/// the projectors that leave it to run alone.
async fn run_group_term<F: EventFeed>(
    group: &mut ProjectorGroup,
    feed: &mut F,
    transport: &Transport,
    lease: &mut Lease,
    token: i64,
    stop: &watch::Receiver<bool>,
    alone: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    while !group.is_empty() {
        match group.run_leased(feed, stop.clone(), lease, token).await {
            GroupStop::Stopped => return,
            GroupStop::Detached(projectors) => {
                for projector in projectors {
                    tracing::error!(
                        projection = projector.projection().name(),
                        "the projector failed on its own; it leaves the group and runs alone"
                    );
                    alone.push(tokio::spawn(run_leased(
                        projector,
                        transport.clone(),
                        lease.clone(),
                        stop.clone(),
                    )));
                }
            }
        }
    }
}

/// One projector, in this instance only while it holds the projectors' lease: each term of the
/// lease starts from the cursor as stored (another instance may have moved it), and every batch
/// is fenced by the term's token.
async fn run_leased(
    projector: Projector,
    transport: Transport,
    mut lease: Lease,
    mut stop: watch::Receiver<bool>,
) {
    let name = projector.projection().name();
    loop {
        let token = tokio::select! {
            token = lease.acquired() => token,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let started = match &transport {
            Transport::Store => match projector.status().await {
                Ok(status) => {
                    let feed = StoreFeed::new(projector.log().clone(), status.cursor);
                    projector
                        .run_leased(feed, stop.clone(), &mut lease, token)
                        .await;
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Transport::JetStream { url, settings } => {
                // A durable consumer is shared by name: only the holder pulls from it.
                match JetStreamFeed::connect(url, settings.clone(), format!("custody-{name}")).await
                {
                    Ok(feed) => {
                        projector
                            .run_leased(feed, stop.clone(), &mut lease, token)
                            .await;
                        Ok(())
                    }
                    Err(error) => Err(error.into()),
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        if let Err(error) = started {
            tracing::warn!(projection = name, %error, "cannot start the projector; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
