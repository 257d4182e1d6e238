//! The master key of personal data at rest, and its rotation (docs/personal-data.md).

use std::path::Path;

use custody_eventlog::{EventLog, EventLogError};
use custody_vault::{MasterKeyFile, MasterKeys, VaultError};

/// `master` (default `data_dir/master.key`, generated if absent), with `previous` during a
/// rotation.
pub fn load(
    data_dir: &Path,
    master: Option<&Path>,
    previous: Option<&Path>,
) -> Result<MasterKeys, VaultError> {
    let current = match master {
        Some(path) => MasterKeyFile::load_or_generate(path)?,
        None => MasterKeyFile::load_or_generate(&MasterKeyFile::default_path(data_dir))?,
    };
    let previous = match previous {
        Some(path) if !path.is_file() => {
            return Err(VaultError::KeyFile {
                path: path.display().to_string(),
                reason: "no such file: a previous master key is read, never made".into(),
            })
        }
        Some(path) => vec![MasterKeyFile::load_or_generate(path)?],
        None => vec![],
    };
    Ok(MasterKeys::new(current, previous))
}

/// A progress bar over `total` of `what` (drawn only on a terminal).
fn progress(total: i64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0));
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what}  {{per_sec}}  ETA {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Re-wraps every data key not under the current master key, a batch at a time, with a
/// progress bar on a terminal; how many it re-wrapped.
pub async fn rewrap_with_progress(log: &EventLog) -> Result<u64, EventLogError> {
    let Some(personal) = log.personal_data() else {
        return Err(EventLogError::NoMasterKey);
    };
    let bar = progress(personal.keys_to_rewrap().await?, "data keys");
    let mut done = 0;
    loop {
        let batch = personal.rewrap_batch(1_000).await?;
        if batch == 0 && personal.keys_to_rewrap().await? == 0 {
            break;
        }
        done += batch;
        bar.inc(batch);
    }
    bar.finish();
    Ok(done)
}

/// Rotates the blind-index key (docs/personal-data.md, "Blind indexes"): a new key becomes
/// current, running instances are given `settle` to read it (until then they may still write
/// under the old one, which stays looked up), every view row is re-indexed under it with a
/// progress bar, and the old key is destroyed. The new key's id, and how many rows it
/// re-indexed.
pub async fn rotate_index_with_progress(
    log: &EventLog,
    settle: std::time::Duration,
) -> Result<(String, u64), RotationError> {
    let Some(personal) = log.personal_data() else {
        return Err(EventLogError::NoMasterKey.into());
    };
    let key = personal.rotate_index_key().await?;
    if !settle.is_zero() {
        eprintln!(
            "custody: index key {key} is current; waiting {} s for running instances",
            settle.as_secs()
        );
        tokio::time::sleep(settle).await;
    }
    let total = custody_projections::personal::indexes_to_rebuild(log).await?;
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} view rows  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    let mut done = 0;
    loop {
        let batch = custody_projections::personal::rebuild_index_batch(log, 1_000).await?;
        done += batch;
        bar.inc(batch);
        if batch == 0 && custody_projections::personal::indexes_to_rebuild(log).await? == 0 {
            break;
        }
        if batch == 0 {
            // Rows the projector is rewriting right now: it writes them under the new key.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    bar.finish();
    personal.retire_previous_index_keys().await?;
    Ok((key, done))
}

/// Why a rotation of the index key stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] EventLogError),
    #[error(transparent)]
    Views(#[from] custody_projections::ProjectionError),
}

/// What `custody keys seal-plaintext` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPlaintext {
    pub outcome: custody_application::reseal::ResealOutcome,
    /// The views rebuilt from the resealed log (sealed and indexed as they are written).
    pub views_rebuilt: Vec<&'static str>,
}

/// Seals a store written in clear (docs/personal-data.md, "Migrating a plaintext store"),
/// offline: refuses while any instance holds a live lease. Reseals the events with a progress
/// bar, records the run, rebuilds the documents and persons views from the resealed log (they
/// seal and index what they write), and compacts the store so that the old bytes are gone from
/// its files.
pub async fn seal_plaintext_with_progress(
    log: &EventLog,
) -> Result<SealedPlaintext, MigrationError> {
    if log.personal_data().is_none() {
        return Err(EventLogError::NoMasterKey.into());
    }
    let running: Vec<String> = log
        .leases()
        .list()
        .await?
        .into_iter()
        .filter(|lease| lease.live)
        .map(|lease| lease.holder)
        .collect();
    if !running.is_empty() {
        return Err(MigrationError::Running(running.join(", ")));
    }
    let bar = progress(log.personal_events().await?, "events with personal data");
    let outcome = custody_application::reseal::seal_plaintext(
        log,
        custody_application::reseal::RESEAL_BATCH,
        |batch| bar.inc(batch.scanned),
    )
    .await?;
    bar.finish();
    let mut views_rebuilt = Vec::new();
    for projection in [
        custody_projections::Projection::Documents,
        custody_projections::Projection::Persons,
    ] {
        custody_projections::Projector::new(log.clone(), projection)
            .await?
            .rebuild(2_000, |_| {})
            .await?;
        views_rebuilt.push(projection.name());
    }
    log.compact().await?;
    Ok(SealedPlaintext {
        outcome,
        views_rebuilt,
    })
}

/// Why sealing a plaintext store stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Store(#[from] EventLogError),
    #[error(transparent)]
    Views(#[from] custody_projections::ProjectionError),
    #[error("instances are running ({0}): stop every custody serve on this store first")]
    Running(String),
}
