//! `custody backup` and `custody restore` (docs/operations.md, "Backup and restore").
//!
//! A backup is a directory: the store's consistent copy (`custody.db`, or `custody.pgdump` from
//! `pg_dump`), the checkpoint public key, and `backup.json`, which names every file with its
//! SM3 and the newest checkpoint when the copy began. The master key, the platform key and the
//! checkpoint signing key are not in it: a backup beside the key that opens it would undo the
//! encryption at rest (docs/personal-data.md). Keep them apart.
//!
//! A restore checks the files against `backup.json`, restores into a store that holds nothing,
//! and verifies the restored log (every hash, every checkpoint, and that it holds the newest
//! checkpoint of the manifest) before it is used: an embedded copy is moved into the data
//! directory only once it verified.

use std::path::Path;

use custody_audit::bundle::Verdict;
use custody_audit::SignedCheckpoint;
use custody_eventlog::{backup as store_backup, EventLog};
use serde::{Deserialize, Serialize};

use crate::platform_key::CheckpointKey;
use crate::StoreChoice;

pub const MANIFEST: &str = "backup.json";
const FORMAT: &str = "custody-backup/v1";
const EMBEDDED_COPY: &str = "custody.db";
const POSTGRES_COPY: &str = "custody.pgdump";
const PUBLIC_KEY: &str = "checkpoint-key.pub.pem";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] custody_eventlog::EventLogError),
    #[error(transparent)]
    Key(#[from] crate::platform_key::PlatformKeyError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub store: String,
    pub taken_at: String,
    /// The newest checkpoint when the copy began: the copy holds at least what it seals.
    pub checkpoint: Option<SignedCheckpoint>,
    pub files: Vec<ManifestFile>,
    /// What a restore needs and the backup leaves out on purpose.
    pub not_included: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
    pub sm3: String,
}

fn describe(dir: &Path, name: &str) -> Result<ManifestFile, BackupError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    Ok(ManifestFile {
        name: name.to_string(),
        bytes: bytes.len() as u64,
        sm3: custody_domain::identifiers::sm3_hex(&bytes),
    })
}

/// Takes a backup of the store into `out` (created; it must not exist or be empty) while the
/// service keeps serving.
pub async fn backup(
    log: &EventLog,
    store: &StoreChoice,
    checkpoint_public_key_pem: Option<&str>,
    out: &Path,
) -> Result<Manifest, BackupError> {
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(BackupError::Refused(format!(
            "{} is not empty: a backup goes into a directory of its own",
            out.display()
        )));
    }
    custody_eventlog::files::private_directory(out).map_err(io(out))?;
    // Read before the copy starts: whatever it seals is in the copy.
    let checkpoint = log.checkpoints().await?.pop();
    let copy = match store {
        StoreChoice::Embedded => {
            log.copy_embedded_into(&out.join(EMBEDDED_COPY)).await?;
            EMBEDDED_COPY
        }
        StoreChoice::Postgres { url } => {
            let (url, file) = (url.clone(), out.join(POSTGRES_COPY));
            tokio::task::spawn_blocking(move || store_backup::pg_dump(&url, &file))
                .await
                .map_err(|e| BackupError::Refused(format!("pg_dump task: {e}")))??;
            POSTGRES_COPY
        }
    };
    let mut files = vec![describe(out, copy)?];
    if let Some(pem) = checkpoint_public_key_pem {
        let key_path = out.join(PUBLIC_KEY);
        std::fs::write(&key_path, pem).map_err(io(&key_path))?;
        files.push(describe(out, PUBLIC_KEY)?);
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        store: log.backend_name().to_string(),
        taken_at: chrono::Utc::now().to_rfc3339(),
        checkpoint,
        files,
        not_included: vec![
            "the master key (--master-key, data-dir/master.key)".into(),
            "the platform encryption key (platform-enc.key.pem and its certificate)".into(),
            "the checkpoint signing key (checkpoint-sign.key.pem)".into(),
        ],
    };
    let manifest_path = out.join(MANIFEST);
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| BackupError::Refused(e.to_string()))?;
    std::fs::write(&manifest_path, text).map_err(io(&manifest_path))?;
    custody_eventlog::files::private_file(&manifest_path).map_err(io(&manifest_path))?;
    Ok(manifest)
}

/// The public checkpoint key of a data directory, if it has a signing key (none is made).
pub fn checkpoint_public_key(data_dir: &Path) -> Result<Option<String>, BackupError> {
    if !data_dir.join("checkpoint-sign.key.pem").is_file() {
        return Ok(None);
    }
    Ok(Some(
        CheckpointKey::load_or_generate(data_dir, None)?.public_key_pem,
    ))
}

/// What a restore found.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub verdict: Verdict,
    pub events: i64,
    /// Where the verifying key came from: the operator's (`--checkpoint-key` or the data
    /// directory's signing key), or the backup's own.
    pub key_from: String,
}

/// Reads and checks `from/backup.json` and the files it names.
pub fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| BackupError::Refused(format!("{}: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Refused(format!(
            "{}: format {:?}, expected {FORMAT:?}",
            path.display(),
            manifest.format
        )));
    }
    for file in &manifest.files {
        let found = describe(from, &file.name)?;
        if &found != file {
            return Err(BackupError::Refused(format!(
                "{}: its SM3 or size differs from {MANIFEST}: the backup was altered or cut",
                from.join(&file.name).display()
            )));
        }
    }
    Ok(manifest)
}

/// The checkpoint public key to verify with: `key` (a public key PEM the operator holds apart),
/// else the data directory's checkpoint signing key, else the backup's own copy (weakest: a
/// forger of the backup could forge it too; said in `key_from`).
fn verifying_key(
    from: &Path,
    data_dir: &Path,
    key: Option<&Path>,
) -> Result<(String, String), BackupError> {
    if let Some(key) = key {
        let pem = std::fs::read_to_string(key).map_err(io(key))?;
        return Ok((pem, format!("{}", key.display())));
    }
    if let Some(pem) = checkpoint_public_key(data_dir)? {
        return Ok((pem, "the data directory's checkpoint signing key".into()));
    }
    let path = from.join(PUBLIC_KEY);
    if !path.is_file() {
        return Err(BackupError::Refused(
            "no checkpoint key to verify with: give --checkpoint-key (the public key PEM)".into(),
        ));
    }
    let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
    Ok((pem, "the backup's own copy of the checkpoint key".into()))
}

/// Restores the backup in `from` into `store` (an embedded data directory without a store, or
/// an empty PostgreSQL database) and verifies it. An embedded copy that does not verify is
/// left beside the data directory, never in it.
pub async fn restore(
    from: &Path,
    store: &StoreChoice,
    data_dir: &Path,
    key: Option<&Path>,
) -> Result<Restored, BackupError> {
    let manifest = read_manifest(from)?;
    let (pem, key_from) = verifying_key(from, data_dir, key)?;
    let public_key = custody_protocol::keys::public_key_from_spki_pem(&pem)
        .map_err(|e| BackupError::Refused(format!("checkpoint key: {e}")))?;
    let verifier = custody_protocol::Sm2Verifier::new(&public_key);
    let witnessed: Vec<SignedCheckpoint> = manifest.checkpoint.iter().cloned().collect();
    match store {
        StoreChoice::Embedded => {
            if manifest.store != "embedded" {
                return Err(BackupError::Refused(format!(
                    "a {} backup restores into PostgreSQL (--database-url)",
                    manifest.store
                )));
            }
            let target = data_dir.join(EMBEDDED_COPY);
            if target.exists() {
                return Err(BackupError::Refused(format!(
                    "{} exists: restore into a data directory without a store",
                    target.display()
                )));
            }
            custody_eventlog::files::private_directory(data_dir).map_err(io(data_dir))?;
            let staging = data_dir.join(".restoring");
            if staging.exists() {
                std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
            }
            custody_eventlog::files::private_directory(&staging).map_err(io(&staging))?;
            let staged = staging.join(EMBEDDED_COPY);
            std::fs::copy(from.join(EMBEDDED_COPY), &staged).map_err(io(&staged))?;
            custody_eventlog::files::private_file(&staged).map_err(io(&staged))?;
            let log = EventLog::open_embedded(&staging).await?;
            let verdict = crate::audit::verify_store(&log, &verifier, &witnessed).await?;
            let events = log.count().await?;
            log.close().await;
            if !verdict.verified {
                return Ok(Restored {
                    verdict,
                    events,
                    key_from,
                });
            }
            // Only a verified copy takes the place of the store.
            for name in ["custody.db-wal", "custody.db-shm"] {
                let _ = std::fs::remove_file(staging.join(name));
            }
            std::fs::rename(&staged, &target).map_err(io(&target))?;
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
            Ok(Restored {
                verdict,
                events,
                key_from,
            })
        }
        StoreChoice::Postgres { url } => {
            if manifest.store != "postgres" {
                return Err(BackupError::Refused(format!(
                    "a {} backup restores into a data directory (without --database-url)",
                    manifest.store
                )));
            }
            if EventLog::postgres_has_events_table(url).await? {
                return Err(BackupError::Refused(
                    "the database already holds a store: restore into an empty database".into(),
                ));
            }
            let (url_owned, file) = (url.clone(), from.join(POSTGRES_COPY));
            tokio::task::spawn_blocking(move || store_backup::pg_restore(&url_owned, &file))
                .await
                .map_err(|e| BackupError::Refused(format!("pg_restore task: {e}")))??;
            let log = EventLog::connect_postgres(url, 4).await?;
            let verdict = crate::audit::verify_store(&log, &verifier, &witnessed).await?;
            let events = log.count().await?;
            log.close().await;
            Ok(Restored {
                verdict,
                events,
                key_from,
            })
        }
    }
}
