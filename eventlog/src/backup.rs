//! Consistent copies of the store (docs/operations.md, "Backup and restore"): the embedded file
//! by SQLite's `VACUUM INTO` (a snapshot, taken while the service writes), PostgreSQL by the
//! tools its operators already use (`pg_dump` custom format, `pg_restore`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Backend, EventLog, EventLogError};

impl EventLog {
    /// Writes a consistent copy of the embedded store to `target` (which must not exist), while
    /// the store keeps serving. The copy is made private (0600).
    pub async fn copy_embedded_into(&self, target: &Path) -> Result<(), EventLogError> {
        let Backend::Sqlite(pool) = &self.backend() else {
            return Err(EventLogError::Backup(
                "a PostgreSQL store is copied with pg_dump".into(),
            ));
        };
        let target_text = target
            .to_str()
            .ok_or_else(|| EventLogError::Backup(format!("{} is not UTF-8", target.display())))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target_text)
            .execute(pool)
            .await?;
        crate::files::private_file(target).map_err(|e| EventLogError::Backup(e.to_string()))
    }
}

impl EventLog {
    /// Whether the PostgreSQL database at `url` already holds an event store (a restore goes
    /// into an empty one). Applies no migration.
    pub async fn postgres_has_events_table(url: &str) -> Result<bool, EventLogError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.events')::text")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        Ok(found.is_some())
    }

    /// Closes the log's connections (a restore reopens the file it verified).
    pub async fn close(&self) {
        match self.backend() {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Sqlite(pool) => pool.close().await,
        }
        self.platform().pool().close().await;
    }
}

/// Where PostgreSQL's client tools are: `CUSTODY_PG_BIN`, else PATH, else Debian's
/// `/usr/lib/postgresql/N/bin` (the newest).
pub fn postgres_tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CUSTODY_PG_BIN") {
        return Path::new(&dir).join(name);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from(name);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|tool| tool.is_file())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(name))
}

fn run(mut command: Command, what: &str) -> Result<(), EventLogError> {
    let output = command
        .output()
        .map_err(|e| EventLogError::Backup(format!("cannot run {what}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(EventLogError::Backup(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// `pg_dump --format=custom` of the database at `url` into `file`: one snapshot, taken while
/// the service writes.
pub fn pg_dump(url: &str, file: &Path) -> Result<(), EventLogError> {
    let mut command = Command::new(postgres_tool("pg_dump"));
    command
        .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
        .arg(file)
        .arg("--dbname")
        .arg(url);
    run(command, "pg_dump")?;
    crate::files::private_file(file).map_err(|e| EventLogError::Backup(e.to_string()))
}

/// `pg_restore` of `file` into the (empty) database at `url`, in one transaction: a restore
/// that fails leaves the database as it was.
pub fn pg_restore(url: &str, file: &Path) -> Result<(), EventLogError> {
    let mut command = Command::new(postgres_tool("pg_restore"));
    command
        .args([
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
        ])
        .arg("--dbname")
        .arg(url)
        .arg(file);
    run(command, "pg_restore")
}
