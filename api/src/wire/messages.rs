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
}

impl MessageType {
    pub fn parse(mstype: &str) -> Option<MessageType> {
        match mstype {
            "sjsb-sbcsh" => Some(MessageType::CabinetInit),
            "sjsb-xt" => Some(MessageType::Heartbeat),
            "sjsb-zjcq" => Some(MessageType::DocumentOperation),
            "sjsb-zjzx" => Some(MessageType::Cancellation),
            "sjsb-gj" => Some(MessageType::Alarm),
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
            | MessageType::Alarm => SenderKind::Cabinet,
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
