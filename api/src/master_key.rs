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

/// Re-wraps every data key not under the current master key, a batch at a time, with a
/// progress bar on a terminal; how many it re-wrapped.
pub async fn rewrap_with_progress(log: &EventLog) -> Result<u64, EventLogError> {
    let Some(personal) = log.personal_data() else {
        return Err(EventLogError::NoMasterKey);
    };
    let total = personal.keys_to_rewrap().await?;
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} data keys  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
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
