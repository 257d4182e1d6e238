//! Who may sign what: every enrolled cabinet (folded from its Cabinet events) and every other
//! registered sender (gateways, the exit-entry adapter, unit clients), with a ready SM2 verifier.
//!
//! Kept in memory because every report needs it before anything else; rebuilt from the store at
//! start and refreshed after each change, which all go through this service.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use custody_application::Principal;
use custody_commands::{CommandError, Commands};
use custody_domain::cabinet::{Cabinet, CabinetState};
use custody_domain::custody::Actor;
use custody_eventlog::EventLogError;
use custody_protocol::keys::public_key_from_spki_pem;
use custody_protocol::{Sm2Verifier, VerifyTables};

/// What kind of sender a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderKind {
    Cabinet,
    Gateway,
    ExitEntry,
    Unit,
}

impl SenderKind {
    pub fn parse(kind: &str) -> Option<SenderKind> {
        match kind {
            "gateway" => Some(SenderKind::Gateway),
            "exit_entry" => Some(SenderKind::ExitEntry),
            "unit" => Some(SenderKind::Unit),
            _ => None,
        }
    }
}

/// A registered signer.
#[derive(Clone)]
pub struct Sender {
    pub ei: String,
    pub kind: SenderKind,
    pub verifier: Arc<Sm2Verifier>,
    pub unit: Option<String>,
    /// For cabinets: the device as its events make it.
    pub cabinet: Option<Arc<Cabinet>>,
}

impl Sender {
    pub fn cabinet_state(&self) -> Option<CabinetState> {
        self.cabinet.as_ref().map(|c| c.state)
    }

    /// The authenticated sender as the application layer knows it; a gateway only countersigns
    /// and is never one.
    pub fn principal(&self) -> Option<Principal> {
        let actor = match self.kind {
            SenderKind::Cabinet => Actor::Cabinet,
            SenderKind::Unit => Actor::UnitClient,
            SenderKind::ExitEntry => Actor::ExitEntry,
            SenderKind::Gateway => return None,
        };
        Some(Principal {
            actor,
            sender: self.ei.clone(),
            // Registration refuses a unit that does not parse; one that still fails here is a
            // damaged registration, and the use cases refuse the sender as unit-less.
            unit: self.unit.as_deref().and_then(|unit| unit.parse().ok()),
            cabinet: self.cabinet.clone(),
        })
    }
}

#[derive(Default)]
pub struct Registry {
    senders: RwLock<HashMap<String, Sender>>,
    /// Precomputed verify tables of the keys that sign often, bounded (docs/security.md).
    verify_tables: VerifyTables,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] EventLogError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("stored key of {ei} does not parse: {reason}")]
    BadStoredKey { ei: String, reason: String },
}

impl Registry {
    /// Everything registered in the store now.
    pub async fn load(commands: &Commands) -> Result<Registry, RegistryError> {
        let registry = Registry::default();
        for id in commands.log().aggregate_ids(Cabinet::AGGREGATE).await? {
            registry.refresh_cabinet(commands, &id).await?;
        }
        registry.refresh_senders(commands).await?;
        Ok(registry)
    }

    /// Re-reads one cabinet from its events (after enrolment, activation, disabling).
    pub async fn refresh_cabinet(
        &self,
        commands: &Commands,
        sbxlh: &str,
    ) -> Result<(), RegistryError> {
        let cabinet: Cabinet = commands.load(sbxlh).await?;
        let Some(pem) = cabinet.public_key_pem.clone() else {
            return Ok(());
        };
        let verifier = verifier(&pem).map_err(|reason| RegistryError::BadStoredKey {
            ei: sbxlh.to_string(),
            reason,
        })?;
        self.insert(Sender {
            ei: sbxlh.to_string(),
            kind: SenderKind::Cabinet,
            verifier: Arc::new(verifier),
            unit: cabinet.unit.as_ref().map(|u| u.to_string()),
            cabinet: Some(Arc::new(cabinet)),
        });
        Ok(())
    }

    /// A sender this instance does not know yet may have been registered through another
    /// instance (several on one database): looks for it in the store.
    pub async fn refresh_unknown(
        &self,
        commands: &Commands,
        ei: &str,
    ) -> Result<(), RegistryError> {
        self.refresh_cabinet(commands, ei).await?;
        if self.get(ei).is_none() {
            self.refresh_senders(commands).await?;
        }
        Ok(())
    }

    /// Re-reads the senders other than cabinets (gateways, unit clients, the exit-entry
    /// adapter) from the platform table.
    pub async fn refresh_senders(&self, commands: &Commands) -> Result<(), RegistryError> {
        for record in commands.log().platform().senders().await? {
            let Some(kind) = SenderKind::parse(&record.kind) else {
                continue;
            };
            let known = self
                .get(&record.ei)
                .is_some_and(|s| s.kind == kind && s.unit == record.unit);
            if known {
                continue;
            }
            let verifier =
                verifier(&record.public_key_pem).map_err(|reason| RegistryError::BadStoredKey {
                    ei: record.ei.clone(),
                    reason,
                })?;
            self.insert(Sender {
                ei: record.ei,
                kind,
                verifier: Arc::new(verifier),
                unit: record.unit,
                cabinet: None,
            });
        }
        Ok(())
    }

    /// Keeps this cache in step with changes made through other instances: every two seconds,
    /// the cabinets whose version in the cabinets view moved are re-read from their events, and
    /// the other senders from their table. (Within an instance the routes refresh it at once.)
    pub fn spawn_follower(self: &Arc<Self>, commands: Arc<Commands>) {
        let registry = self.clone();
        let reader = custody_projections::read::Reader::new(commands.log().clone());
        tokio::spawn(async move {
            let mut seen: HashMap<String, i64> = HashMap::new();
            let mut first = true;
            let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                every.tick().await;
                let versions = match reader.cabinet_versions().await {
                    Ok(versions) => versions,
                    Err(error) => {
                        tracing::debug!(%error, "cannot read the cabinets' versions");
                        continue;
                    }
                };
                for (sbxlh, version) in versions {
                    if seen.get(&sbxlh) == Some(&version) {
                        continue;
                    }
                    // What the first look finds was loaded at start.
                    if !first {
                        if let Err(error) = registry.refresh_cabinet(&commands, &sbxlh).await {
                            tracing::warn!(%error, "cannot refresh a cabinet in the registry");
                            continue;
                        }
                    }
                    seen.insert(sbxlh, version);
                }
                first = false;
                if let Err(error) = registry.refresh_senders(&commands).await {
                    tracing::debug!(%error, "cannot refresh the senders");
                }
            }
        });
    }

    pub fn insert(&self, sender: Sender) {
        self.senders
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(sender.ei.clone(), sender);
    }

    pub fn get(&self, ei: &str) -> Option<Sender> {
        self.senders
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(ei)
            .cloned()
    }

    /// The table cache every signature check of a registered key goes through.
    pub fn verify_tables(&self) -> &VerifyTables {
        &self.verify_tables
    }

    /// Every registered gateway, for checking `rsig`.
    pub fn gateways(&self) -> Vec<Sender> {
        self.senders
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter(|s| s.kind == SenderKind::Gateway)
            .cloned()
            .collect()
    }
}

/// An SM2 verifier for a PEM SubjectPublicKeyInfo, or why not.
pub fn verifier(public_key_pem: &str) -> Result<Sm2Verifier, String> {
    public_key_from_spki_pem(public_key_pem)
        .map(|key| Sm2Verifier::new(&key))
        .map_err(|e| e.to_string())
}
