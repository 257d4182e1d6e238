//! The data directory holds personal data (the event store) and secret keys: whatever the
//! process's umask, it is made readable by its owner only (docs/security.md).

use std::path::Path;

/// Creates `dir` (and its parents) if needed and restricts it to its owner (0700).
pub fn private_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict(dir, 0o700)
}

/// Restricts an existing file to its owner (0600); a file that does not exist is left alone.
pub fn private_file(file: &Path) -> std::io::Result<()> {
    match std::fs::metadata(file) {
        Ok(_) => restrict(file, 0o600),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// The lock file of a data directory served by the embedded store.
pub const DATA_DIRECTORY_LOCK: &str = "serve.lock";

/// Takes the data directory for this process: an exclusive lock on its `serve.lock`, held while
/// the returned file stays open and released by the kernel when the process dies however it
/// dies (so a crash never leaves a stale lock to clean up). A second `custody serve` on the same
/// embedded store would run every background worker twice on one SQLite file.
pub fn lock_data_directory(dir: &Path) -> Result<std::fs::File, crate::EventLogError> {
    let path = dir.display().to_string();
    let io = |source| crate::EventLogError::DataDirectory {
        path: path.clone(),
        source,
    };
    private_directory(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(DATA_DIRECTORY_LOCK))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::EventLogError::DataDirectoryInUse {
            path,
            lock: DATA_DIRECTORY_LOCK,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

/// Creates (or truncates) a file readable by its owner only, for files that hold personal data
/// outside the data directory (an audit export).
pub fn create_private_file(file: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let opened = options.open(file)?;
    restrict(file, 0o600)?;
    Ok(opened)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}
