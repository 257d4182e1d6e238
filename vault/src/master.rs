//! The master key: it wraps the data keys and is kept outside the database.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::seal::{open, seal, DataKey};
use crate::VaultError;

/// Wraps and unwraps data keys. A key file here ([`MasterKeyFile`]); in production the design's
/// key-management system (§4.4.8) behind the same two calls.
pub trait KeyWrap: Send + Sync {
    /// Names the master key a wrapped key was made under (stored beside it, for rotation).
    fn key_id(&self) -> &str;
    /// Every master key this one unwraps under (the current one, and any previous one during a
    /// rotation).
    fn key_ids(&self) -> Vec<&str> {
        vec![self.key_id()]
    }
    fn wrap(&self, key: &DataKey) -> Vec<u8>;
    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, VaultError>;
}

const WRAP_AAD: &[u8] = b"custody data key";

/// A master key in a file of its own (hex, mode 0600), generated on first start.
pub struct MasterKeyFile {
    id: String,
    key: DataKey,
}

impl MasterKeyFile {
    /// Reads `path`, or creates it with a new key if it does not exist.
    pub fn load_or_generate(path: &Path) -> Result<MasterKeyFile, VaultError> {
        let file_error = |reason: String| VaultError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            let key = DataKey::generate();
            write_private(path, hex::encode(&*key.to_bytes()).as_bytes())
                .map_err(|e| file_error(e.to_string()))?;
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?,
        );
        let bytes = zeroize::Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| file_error("not hex".to_string()))?,
        );
        let key = DataKey::from_bytes(&bytes)
            .map_err(|_| file_error(format!("not a key of {} bytes", DataKey::LEN)))?;
        // The id names the key without revealing it: the first 16 hex digits of its SM3.
        let id = {
            use sm3::Digest;
            hex::encode(sm3::Sm3::digest(&*bytes))[..16].to_string()
        };
        Ok(MasterKeyFile { id, key })
    }

    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("master.key")
    }
}

impl KeyWrap for MasterKeyFile {
    fn key_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, key: &DataKey) -> Vec<u8> {
        seal(&self.key, WRAP_AAD, &key.to_bytes())
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, VaultError> {
        let bytes = zeroize::Zeroizing::new(open(&self.key, WRAP_AAD, wrapped)?);
        DataKey::from_bytes(&bytes)
    }
}

/// The current master key, and the previous ones while their wrapped keys are re-wrapped
/// (docs/personal-data.md, "Rotating the master key"): new keys are wrapped under the current
/// one; a wrapped key opens under whichever of them made it.
pub struct MasterKeys {
    current: MasterKeyFile,
    previous: Vec<MasterKeyFile>,
}

impl MasterKeys {
    pub fn new(current: MasterKeyFile, previous: Vec<MasterKeyFile>) -> MasterKeys {
        MasterKeys { current, previous }
    }
}

impl KeyWrap for MasterKeys {
    fn key_id(&self) -> &str {
        self.current.key_id()
    }

    fn key_ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|m| m.key_id())
            .collect()
    }

    fn wrap(&self, key: &DataKey) -> Vec<u8> {
        self.current.wrap(key)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, VaultError> {
        // The tag fails at once under a key that did not make it.
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|master| master.unwrap(wrapped).ok())
            .ok_or(VaultError::Unauthentic)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_file_is_private_and_wraps_what_it_unwraps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = MasterKeyFile::default_path(dir.path());
        let master = MasterKeyFile::load_or_generate(&path).expect("generated");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = MasterKeyFile::load_or_generate(&path).expect("read back");
        assert_eq!(master.key_id(), again.key_id());
        let data_key = DataKey::generate();
        let wrapped = master.wrap(&data_key);
        let unwrapped = again.unwrap(&wrapped).expect("unwraps");
        assert_eq!(*unwrapped.to_bytes(), *data_key.to_bytes());
        let other = MasterKeyFile::load_or_generate(&dir.path().join("other.key")).expect("new");
        assert_ne!(other.key_id(), master.key_id());
        assert!(other.unwrap(&wrapped).is_err());

        // During a rotation both open; new keys are wrapped under the new one only.
        let rotating = MasterKeys::new(other, vec![again]);
        assert_eq!(
            *rotating
                .unwrap(&wrapped)
                .expect("under the previous")
                .to_bytes(),
            *data_key.to_bytes()
        );
        let rewrapped = rotating.wrap(&data_key);
        assert!(master.unwrap(&rewrapped).is_err());
        assert_ne!(rotating.key_id(), master.key_id());
    }
}
