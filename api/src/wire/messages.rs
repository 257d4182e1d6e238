//! Business data (`bdata`) of each message type, with the source's pinyin field names: this is
//! the wire boundary, and nothing past it sees these names.

use serde::Deserialize;

use crate::registry::SenderKind;

/// The message types this service takes, and who may send each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// sjsb-sbcsh: device initialisation / activation.
    CabinetInit,
    /// sjsb-xt: heartbeat.
    Heartbeat,
    /// sjsb-zjcq: deposit or withdrawal.
    DocumentOperation,
    /// sjsb-zjzx: cancellation.
    Cancellation,
    /// sjsb-gj: device alarm.
    Alarm,
    /// sjsb-dzsj: the nightly reconciliation batch.
    Reconciliation,
    /// sjfk-cjxx: a cabinet pulls its unit's open reminders.
    ReminderPull,
    /// sjts-crjjl: border-crossing records, from the exit-entry adapter.
    BorderCrossings,
    /// sjts-bzjg: newly issued documents, from the exit-entry adapter.
    IssuedDocuments,
    /// sjts-bbjg: the exit-entry administration's answers to a filing list.
    FilingResults,
    /// sjsb-bbxx: a unit's filing list (new, changed and revoked persons).
    FilingList,
    /// sjfk-bbjg: a unit pulls the answers to one of its filing lists.
    FilingResultsPull,
    /// sjsb-cgsp: a unit's travel approval.
    TravelApproval,
    /// sjsb-tyh: a unit's consent letter.
    ConsentLetter,
}

impl MessageType {
    pub fn parse(mstype: &str) -> Option<MessageType> {
        match mstype {
            "sjsb-sbcsh" => Some(MessageType::CabinetInit),
            "sjsb-xt" => Some(MessageType::Heartbeat),
            "sjsb-zjcq" => Some(MessageType::DocumentOperation),
            "sjsb-zjzx" => Some(MessageType::Cancellation),
            "sjsb-gj" => Some(MessageType::Alarm),
            "sjsb-dzsj" => Some(MessageType::Reconciliation),
            "sjfk-cjxx" => Some(MessageType::ReminderPull),
            "sjts-crjjl" => Some(MessageType::BorderCrossings),
            "sjts-bzjg" => Some(MessageType::IssuedDocuments),
            "sjts-bbjg" => Some(MessageType::FilingResults),
            "sjsb-bbxx" => Some(MessageType::FilingList),
            "sjfk-bbjg" => Some(MessageType::FilingResultsPull),
            "sjsb-cgsp" => Some(MessageType::TravelApproval),
            "sjsb-tyh" => Some(MessageType::ConsentLetter),
            _ => None,
        }
    }

    /// Who may send it.
    pub fn sender_kind(self) -> SenderKind {
        match self {
            MessageType::CabinetInit
            | MessageType::Heartbeat
            | MessageType::DocumentOperation
            | MessageType::Cancellation
            | MessageType::Alarm
            | MessageType::Reconciliation
            | MessageType::ReminderPull => SenderKind::Cabinet,
            MessageType::BorderCrossings
            | MessageType::IssuedDocuments
            | MessageType::FilingResults => SenderKind::ExitEntry,
            MessageType::FilingList
            | MessageType::FilingResultsPull
            | MessageType::TravelApproval
            | MessageType::ConsentLetter => SenderKind::Unit,
        }
    }

    /// Messages a cabinet may send before it has activated itself.
    pub fn allowed_before_activation(self) -> bool {
        matches!(self, MessageType::CabinetInit | MessageType::Heartbeat)
    }
}

/// sjsb-sbcsh
#[derive(Debug, Deserialize)]
pub struct CabinetInit {
    pub tyshxydm: String,
    pub sbxlh: String,
    #[serde(default)]
    pub dwmc: String,
    #[serde(default)]
    pub gzlxr: String,
    #[serde(default)]
    pub gzlxdh: String,
    #[serde(default)]
    pub glylb: Vec<CabinetAdministrator>,
}

#[derive(Debug, Deserialize)]
pub struct CabinetAdministrator {
    pub glyzh: String,
    #[serde(default)]
    pub rybs: String,
}

/// sjfk-cjxx: the cabinet's unit (`orgid`, its credit code) and the cabinet itself (`devid`).
#[derive(Debug, Deserialize)]
pub struct ReminderPull {
    pub orgid: String,
    pub devid: String,
}

/// sjsb-xt: kept whole as the device's latest status; only the serial is checked.
#[derive(Debug, Deserialize)]
pub struct Heartbeat {
    pub sbxlh: String,
}

/// sjsb-zjcq
#[derive(Debug, Deserialize)]
pub struct DocumentOperation {
    pub ywlsh: String,
    pub zjdata: String,
    pub optype: String,
    pub optime: String,
    #[serde(default)]
    pub retdate: String,
    #[serde(default)]
    pub qzyt: String,
    #[serde(default)]
    pub mdd: String,
    #[serde(default)]
    pub cgspywlsh: String,
    #[serde(default)]
    pub ycyy: String,
    #[serde(rename = "Deviceid")]
    pub device_id: String,
    #[serde(rename = "ZZGSN")]
    pub cabinet_body: String,
    #[serde(rename = "Row")]
    pub row: u16,
    #[serde(rename = "Column")]
    pub column: u16,
}

/// sjsb-zjzx
#[derive(Debug, Deserialize)]
pub struct Cancellation {
    pub ywlsh: String,
    pub zjbs: String,
    pub zxyy: String,
    #[serde(default)]
    pub zmwjqm: String,
}

/// sjsb-gj
#[derive(Debug, Deserialize)]
pub struct Alarm {
    pub ywlsh: String,
    pub sbxlh: String,
    pub gjlx: String,
    #[serde(default)]
    pub gjnr: String,
    pub gjsj: String,
}

/// sjsb-dzsj: one cabinet's batch for one business date.
#[derive(Debug, Deserialize)]
pub struct ReconciliationBatch {
    pub dzywlsh: String,
    pub dzrq: String,
    pub sbxlh: String,
    pub tyshxydm: String,
    pub zjzt: Vec<DocumentStateItem>,
    #[serde(default)]
    pub czls: Vec<OperationLogItem>,
}

/// One sjsb-dzsj document state.
#[derive(Debug, Deserialize)]
pub struct DocumentStateItem {
    pub rybs: String,
    pub zjbs: String,
    #[serde(default)]
    pub zjgxlh: String,
    /// Drawer row and column (抽屉行, 抽屉列): a number or a string of digits; empty when out.
    #[serde(default)]
    pub cth: NumberOrText,
    #[serde(default)]
    pub ctl: NumberOrText,
    /// `1` in the cabinet, `2` out (a number or a string).
    pub zt: NumberOrText,
}

/// One sjsb-dzsj operation-log entry.
#[derive(Debug, Deserialize)]
pub struct OperationLogItem {
    pub ywlsh: String,
    #[serde(default)]
    pub czlx: String,
    pub czsj: String,
}

/// A code the source writes sometimes as a JSON number, sometimes as a string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    Number(u64),
    Text(String),
    #[default]
    Absent,
}

// --- exit-entry adapter ------------------------------------------------------------------
//
// List items are read one by one (from `serde_json::Value`), so that one malformed item is
// refused on its own and never blocks the others.

/// sjts-crjjl and sjts-bzjg: `{records: [...]}`.
#[derive(Debug, Deserialize)]
pub struct RecordList {
    pub records: Vec<serde_json::Value>,
}

/// One sjts-crjjl record.
#[derive(Debug, Deserialize)]
pub struct BorderCrossing {
    pub jlbh: String,
    pub zjlx: String,
    pub zjhm: String,
    /// `1` exit, `2` entry.
    pub crjlx: String,
    pub crjsj: String,
    pub kadm: String,
    pub gjdq: String,
}

/// One sjts-bzjg record.
#[derive(Debug, Deserialize)]
pub struct IssuedDocument {
    pub jlbh: String,
    pub rybs: String,
    pub zjlx: String,
    pub zjhm: String,
    pub qfrq: String,
    pub yxqz: String,
}

/// sjts-bbjg
#[derive(Debug, Deserialize)]
pub struct FilingResults {
    pub bbywlsh: String,
    pub bbjg: Vec<serde_json::Value>,
}

/// One sjts-bbjg answer.
#[derive(Debug, Deserialize)]
pub struct FilingResult {
    pub rybs: String,
    /// `accepted` or `refused`.
    pub bbzt: String,
    /// `new`, `change` or `revoke`.
    pub bblx: String,
    #[serde(default)]
    pub bz: String,
}

// --- unit clients ------------------------------------------------------------------------

/// sjsb-bbxx
#[derive(Debug, Deserialize)]
pub struct FilingList {
    pub bbywlsh: String,
    pub tyshxydm: String,
    pub bbrylb: Vec<serde_json::Value>,
    pub spdwj: String,
    pub spdwjqm: String,
}

/// One sjsb-bbxx person.
#[derive(Debug, Deserialize)]
pub struct FilingItem {
    /// `new`, `change` or `revoke`.
    pub bblx: String,
    pub rybs: String,
    /// GM/T 0010 envelope (base64) of [`PersonData`]; may be empty for a revocation.
    #[serde(default)]
    pub rydata: String,
    #[serde(default)]
    pub zw: String,
    #[serde(default)]
    pub zjhzc: String,
}

/// The plaintext of `rydata`.
#[derive(Debug, Deserialize)]
pub struct PersonData {
    pub xm: String,
    pub gmsfhm: String,
    #[serde(default)]
    pub lxdh: String,
}

/// sjfk-bbjg
#[derive(Debug, Deserialize)]
pub struct FilingResultsPull {
    pub bbywlsh: String,
}

/// sjsb-cgsp
#[derive(Debug, Deserialize)]
pub struct TravelApproval {
    pub cgspywlsh: String,
    pub rybs: String,
    pub mdd: String,
    pub cfsj: String,
    pub fhsj: String,
    #[serde(default)]
    pub cgsy: String,
    pub zjlx: String,
    pub tysj: String,
    pub spbwj: String,
    pub spbwjqm: String,
}

/// sjsb-tyh
#[derive(Debug, Deserialize)]
pub struct ConsentLetter {
    pub tyhywlsh: String,
    #[serde(default)]
    pub cgspywlsh: String,
    pub rybs: String,
    /// `new`, `renew` or `endorse`.
    pub crjywlx: String,
    pub zjlx: String,
    pub kjrq: String,
    pub tyhwj: String,
    pub tyhwjqm: String,
}
