//! A simulated cabinet's nightly reconciliation batch (`sjsb-dzsj`, SPEC §6).
//!
//! A [`DayLedger`] is what the cabinet itself knows of one business day: the documents whose
//! state changed (the last state of each) and its operation log. Tests make it tell the truth,
//! or doctor it to make a deviation; [`SimulatedCabinet::reconciliation`] signs it.

use chrono::NaiveDate;
use custody_domain::identifiers::SerialKind;
use custody_domain::values::Drawer;
use custody_protocol::{DocumentRecord, SignedRequest};
use serde::{Deserialize, Serialize};

use super::cabinet::SimulatedCabinet;
use super::error::SimulateError;
use super::generate::{document_id, person_id, wire_date};

/// The message type of the batch.
pub const RECONCILIATION: &str = "sjsb-dzsj";

/// One document state of the batch (`zjzt` item). Drawer row and column are strings of digits,
/// empty when the document is out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentStateData {
    /// RYBS of the holder.
    #[serde(rename = "rybs")]
    pub person_id: String,
    /// ZJBS.
    #[serde(rename = "zjbs")]
    pub document_id: String,
    /// ZJGXLH: the cabinet body, when in the cabinet.
    #[serde(rename = "zjgxlh")]
    pub cabinet_body: String,
    /// CTH: drawer row.
    #[serde(rename = "cth")]
    pub row: String,
    /// CTL: drawer column.
    #[serde(rename = "ctl")]
    pub column: String,
    /// ZT: `1` in the cabinet, `2` out.
    #[serde(rename = "zt")]
    pub state: String,
}

/// One entry of the cabinet's operation log (`czls` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationLogData {
    /// YWLSH of the operation.
    #[serde(rename = "ywlsh")]
    pub business_serial: String,
    /// CZLX: the operation (the `optype` of a custody report, `zx` for a cancellation).
    #[serde(rename = "czlx")]
    pub operation: String,
    /// CZSJ: `YYYYMMDDHHMMSS`.
    #[serde(rename = "czsj")]
    pub operated_at: String,
}

/// `sjsb-dzsj` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationData {
    /// DZYWLSH: the batch's `DZ` serial.
    #[serde(rename = "dzywlsh")]
    pub business_serial: String,
    /// DZRQ: the business date, `YYYYMMDD`.
    #[serde(rename = "dzrq")]
    pub business_date: String,
    /// SBXLH.
    #[serde(rename = "sbxlh")]
    pub device_serial: String,
    /// TYSHXYDM.
    #[serde(rename = "tyshxydm")]
    pub unit_credit_code: String,
    /// ZJZT.
    #[serde(rename = "zjzt")]
    pub documents: Vec<DocumentStateData>,
    /// CZLS.
    #[serde(rename = "czls")]
    pub operations: Vec<OperationLogData>,
}

/// What a cabinet knows of one business day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayLedger {
    /// The last state of each document that changed, in the order they first changed.
    pub documents: Vec<DocumentStateData>,
    pub operations: Vec<OperationLogData>,
}

impl DayLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&mut self, state: DocumentStateData) {
        match self
            .documents
            .iter_mut()
            .find(|d| d.document_id == state.document_id)
        {
            Some(existing) => *existing = state,
            None => self.documents.push(state),
        }
    }

    /// The document ends the day in `drawer`.
    pub fn in_cabinet(
        &mut self,
        record: &DocumentRecord,
        drawer: &Drawer,
    ) -> Result<&mut Self, SimulateError> {
        self.set(DocumentStateData {
            person_id: person_id(&record.citizen_id_number, &record.chinese_name)?,
            document_id: document_id(record)?,
            cabinet_body: drawer.body.clone(),
            row: drawer.row.to_string(),
            column: drawer.column.to_string(),
            state: "1".into(),
        });
        Ok(self)
    }

    /// The document ends the day out of the cabinet.
    pub fn out(&mut self, record: &DocumentRecord) -> Result<&mut Self, SimulateError> {
        self.set(DocumentStateData {
            person_id: person_id(&record.citizen_id_number, &record.chinese_name)?,
            document_id: document_id(record)?,
            cabinet_body: String::new(),
            row: String::new(),
            column: String::new(),
            state: "2".into(),
        });
        Ok(self)
    }

    /// Forgets what the ledger says about a document (a cabinet that failed to list it).
    pub fn forget(&mut self, record: &DocumentRecord) -> Result<&mut Self, SimulateError> {
        let id = document_id(record)?;
        self.documents.retain(|d| d.document_id != id);
        Ok(self)
    }

    /// Logs the operation a signed custody report or cancellation carried.
    pub fn logged(&mut self, request: &SignedRequest) -> Result<&mut Self, SimulateError> {
        let data: serde_json::Value = request.business_data()?;
        let text = |key: &str| data[key].as_str().unwrap_or_default().to_string();
        let operation = match text("optype") {
            code if !code.is_empty() => code,
            _ => "zx".to_string(),
        };
        self.operations.push(OperationLogData {
            business_serial: text("ywlsh"),
            operation,
            operated_at: text("optime"),
        });
        Ok(self)
    }

    /// Logs an operation by hand.
    pub fn log(&mut self, serial: &str, operation: &str, operated_at: &str) -> &mut Self {
        self.operations.push(OperationLogData {
            business_serial: serial.to_string(),
            operation: operation.to_string(),
            operated_at: operated_at.to_string(),
        });
        self
    }
}

impl SimulatedCabinet {
    /// `sjsb-dzsj` business data for `business_date` from `ledger`, with a fresh `DZ` serial.
    pub fn reconciliation_data(
        &self,
        business_date: NaiveDate,
        ledger: &DayLedger,
        time_millis: i64,
    ) -> Result<ReconciliationData, SimulateError> {
        Ok(ReconciliationData {
            business_serial: self.next_business_serial(SerialKind::Reconciliation, time_millis)?,
            business_date: wire_date(business_date),
            device_serial: self.device_serial().to_string(),
            unit_credit_code: self.unit_credit_code().to_string(),
            documents: ledger.documents.clone(),
            operations: ledger.operations.clone(),
        })
    }

    /// The signed batch (`sjsb-dzsj`).
    pub fn reconciliation(
        &self,
        business_date: NaiveDate,
        ledger: &DayLedger,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = self.reconciliation_data(business_date, ledger, time_millis)?;
        self.sign(RECONCILIATION, &data, time_millis)
    }
}
