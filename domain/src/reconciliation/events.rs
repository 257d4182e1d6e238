use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::ReconciliationEventKind;
use crate::document::DocumentState;
use crate::identifiers::{BusinessSerial, CreditCode, DocumentId, PersonId};
use crate::values::{DeviceSerial, Drawer, Location, Timestamp};

/// Something that happened to a reconciliation. Part of the stored format, like every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReconciliationEvent {
    BatchDiffed(BatchDiffed),
    RepairsRecorded(RepairsRecorded),
}

/// What the cabinet's batch says about a document (`zt`), or that it does not list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CabinetView {
    /// `zt` 1: in a drawer of this cabinet.
    InCabinet,
    /// `zt` 2: out of this cabinet.
    Out,
    /// The batch does not list the document, although the platform recorded an operation of
    /// this cabinet on it that day.
    NotReported,
}

/// Why a document is a state deviation (证件状态偏离).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviationReason {
    /// The cabinet holds it; the platform has it `Withdrawn` or `AwaitingReturn`. The one case
    /// the platform repairs by itself (SPEC §6.1).
    OutOnPlatform,
    /// The cabinet says it is out; the platform has it in this cabinet.
    InCabinetOnPlatform,
    /// Both say it is in a cabinet, but not in the same drawer or not in the same cabinet.
    LocationMismatch,
    /// The cabinet's state does not fit the platform's at all (e.g. a cancelled document in a
    /// drawer, or one still being applied for).
    StateMismatch,
    /// The platform has never seen the document.
    UnknownDocument,
    /// The cabinet names another holder than the platform knows.
    HolderMismatch,
    /// The platform recorded an operation of this cabinet on the document that day, but the
    /// batch does not list it.
    NotReported,
    /// The cabinet lists as in its drawer a document that another unit holds, while the
    /// platform has it out: the custody policy allows no repair across units (docs/custody.md);
    /// listed for operators and both units.
    OtherUnitsDocument,
}

/// One row of the state deviation table (证件状态偏离): document, holder, unit, cabinet state,
/// platform state, and whether it is repaired (see [`RepairsRecorded`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDeviation {
    pub document: DocumentId,
    /// The holder the cabinet names (the platform's holder for an unreported document).
    pub holder: Option<PersonId>,
    /// The holder's name, for the cabinet's answer only: never stored (the holder's name is
    /// personal data, kept sealed under their key in the views; readers look it up by
    /// `holder`). Events written before this may still carry it.
    #[serde(default, skip_serializing)]
    pub holder_name: Option<String>,
    /// The document's unit as the platform knows it, else the reporting cabinet's unit.
    pub unit: Option<CreditCode>,
    pub cabinet_state: CabinetView,
    /// The drawer the cabinet names, when it says the document is in it.
    pub cabinet_drawer: Option<Drawer>,
    /// The platform's state at the end of the business date.
    pub platform_state: DocumentState,
    pub platform_location: Option<Location>,
    pub reason: DeviationReason,
    /// Where the automatic repair puts the document back; only for [`DeviationReason::
    /// OutOnPlatform`].
    pub repair: Option<Location>,
}

/// Which side alone has a serial of the operation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSide {
    /// The cabinet logged it; the platform never recorded it.
    CabinetOnly,
    /// The platform recorded it for this cabinet and day; the cabinet did not log it.
    PlatformOnly,
}

/// One row of the operation-log deviation table (操作日志偏离).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogDeviation {
    pub serial: String,
    pub side: LogSide,
    /// The cabinet's `czlx` as logged, or the platform's operation kind (`deposit_new`,
    /// `lend`, ...).
    pub operation: String,
    pub operated_at: Option<Timestamp>,
    /// The document, when the platform's event names it.
    pub document: Option<DocumentId>,
    /// For a serial only the cabinet logged: why the platform has no event, when it refused the
    /// report (its error code).
    pub note: Option<String>,
}

/// The batch of one cabinet and business date, diffed against the platform's state at the end
/// of that date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDiffed {
    /// The batch's serial (`dzywlsh`, a `DZ` business serial).
    pub serial: BusinessSerial,
    pub device: DeviceSerial,
    /// The unit the cabinet is enrolled for.
    pub unit: CreditCode,
    pub business_date: NaiveDate,
    pub received_at: Timestamp,
    /// The moment the platform's state was taken at: the end of the business date.
    pub as_of: Timestamp,
    /// How many document states (`zjzt`) and log entries (`czls`) the batch carried.
    pub documents_reported: u32,
    pub operations_reported: u32,
    pub state_deviations: Vec<StateDeviation>,
    pub log_deviations: Vec<LogDeviation>,
}

/// What became of one planned repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairOutcome {
    pub document: DocumentId,
    pub repaired: bool,
    /// Why not, when it was not (the document's state machine refused it: it moved since).
    pub note: Option<String>,
}

/// The outcome of every repair the diff planned, in the diff's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairsRecorded {
    pub outcomes: Vec<RepairOutcome>,
}

impl ReconciliationEvent {
    pub fn kind(&self) -> ReconciliationEventKind {
        match self {
            ReconciliationEvent::BatchDiffed(_) => ReconciliationEventKind::BatchDiffed,
            ReconciliationEvent::RepairsRecorded(_) => ReconciliationEventKind::RepairsRecorded,
        }
    }
}

impl DomainEvent for ReconciliationEvent {
    fn event_type(&self) -> String {
        crate::transitions::Named::name(self.kind()).to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
