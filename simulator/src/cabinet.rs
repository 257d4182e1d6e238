//! A simulated certificate cabinet: its identity and SM2 key, and the signed reports it sends
//! (SPEC §5, §5.1).
//!
//! Every report is built in two steps, both public: a typed business-data value (`*_data`
//! methods, wire names kept by serde) and its signature ([`SimulatedCabinet::sign`]). The
//! one-call methods (`deposit`, `lend`, ...) do both; tests that need a doctored report (a
//! drawer outside the grid, a reused serial, a chosen `reqid`) change the data and sign it.

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use chrono::NaiveDate;
use custody_domain::identifiers::SerialKind;
use custody_domain::values::Drawer;
use custody_protocol::keys::{generate_secret_key, public_key_to_spki_pem};
use custody_protocol::request::{NewRequest, RequestError};
use custody_protocol::{Certificate, DocumentRecord, SecretKey, SignedRequest, Sm2Signer};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::error::SimulateError;
use super::generate::{
    business_serial, new_reqid, person_id, random_citizen_id, random_device_serial, random_name,
    random_phone, wire_date, wire_time,
};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The message types (`mstype`) a cabinet sends.
pub mod message_type {
    /// Device initialisation / activation.
    pub const ACTIVATION: &str = "sjsb-sbcsh";
    /// Heartbeat.
    pub const HEARTBEAT: &str = "sjsb-xt";
    /// Deposit or withdrawal of a document.
    pub const CUSTODY: &str = "sjsb-zjcq";
    /// Cancellation of a document.
    pub const CANCELLATION: &str = "sjsb-zjzx";
    /// Device alarm.
    pub const ALARM: &str = "sjsb-gj";
}

/// One cabinet body driven by the touch terminal, with its drawer grid (wire names of the ops
/// API's enrollment body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CabinetBody {
    /// Cabinet body serial (ZJGXLH, `ZZGSN` in custody reports).
    #[serde(rename = "zjgxlh")]
    pub serial: String,
    /// Drawer rows, counted from 1.
    pub rows: u16,
    /// Drawer columns, counted from 1.
    #[serde(rename = "cols")]
    pub columns: u16,
}

/// The body of `POST /api/v1/ops/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEnrollment {
    /// Device serial (SBXLH), also the `ei` of its signed requests.
    #[serde(rename = "sbxlh")]
    pub device_serial: String,
    /// The owning unit's credit code (TYSHXYDM).
    #[serde(rename = "tyshxydm")]
    pub unit_credit_code: String,
    /// Device model.
    pub model: String,
    /// Its cabinet bodies.
    #[serde(rename = "cabinets")]
    pub bodies: Vec<CabinetBody>,
    /// The security module's SM2 public key, SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
}

/// A cabinet administrator named at activation (`glylb` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdministratorData {
    /// Administrator account (GLYZH).
    #[serde(rename = "glyzh")]
    pub account: String,
    /// The administrator's person id (RYBS).
    #[serde(rename = "rybs")]
    pub person_id: String,
}

/// `sjsb-sbcsh` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationData {
    /// TYSHXYDM.
    #[serde(rename = "tyshxydm")]
    pub unit_credit_code: String,
    /// SBXLH.
    #[serde(rename = "sbxlh")]
    pub device_serial: String,
    /// DWMC.
    #[serde(rename = "dwmc")]
    pub unit_name: String,
    /// GZLXR.
    #[serde(rename = "gzlxr")]
    pub contact_name: String,
    /// GZLXDH.
    #[serde(rename = "gzlxdh")]
    pub contact_phone: String,
    /// JMKID: id of the device's encryption card.
    #[serde(rename = "jmkid")]
    pub encryption_card_id: String,
    /// GLYLB.
    #[serde(rename = "glylb")]
    pub administrators: Vec<AdministratorData>,
}

/// `sjsb-xt` business data. Readings are strings on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatData {
    /// SBXLH.
    #[serde(rename = "sbxlh")]
    pub device_serial: String,
    /// SBIPDZ.
    #[serde(rename = "sbipdz")]
    pub ip_address: String,
    /// CZSJ, `YYYYMMDDHHMMSS` China time.
    #[serde(rename = "czsj")]
    pub reported_at: String,
    /// SBBB.
    #[serde(rename = "sbbb")]
    pub software_version: String,
    /// SBWD, °C.
    #[serde(rename = "sbwd")]
    pub temperature: String,
    /// SBSD, % relative humidity.
    #[serde(rename = "sbsd")]
    pub humidity: String,
    /// CLQZY, % CPU.
    #[serde(rename = "clqzy")]
    pub cpu_usage: String,
    /// NCZY, % memory.
    #[serde(rename = "nczy")]
    pub memory_usage: String,
    /// CPZY, % disk.
    #[serde(rename = "cpzy")]
    pub disk_usage: String,
}

/// `sjsb-zjcq` business data: a deposit or withdrawal. Optional fields are `""` when absent;
/// `Row` and `Column` are the only integers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyReportData {
    /// YWLSH.
    #[serde(rename = "ywlsh")]
    pub business_serial: String,
    /// SBTTIME: when the cabinet reports, `YYYYMMDDHHMMSS`.
    #[serde(rename = "sbttime")]
    pub report_time: String,
    /// ZJDATA: base64 of the GM/T 0010 envelope of the 137-byte record.
    #[serde(rename = "zjdata")]
    pub sealed_record: String,
    /// OPTYPE: `11`, `12`, `21`, `22` or `23`.
    #[serde(rename = "optype")]
    pub operation: String,
    /// OPTIME: when the drawer was operated, `YYYYMMDDHHMMSS`.
    #[serde(rename = "optime")]
    pub operation_time: String,
    /// RETDATE: planned return date `YYYYMMDD`, or `""`.
    #[serde(rename = "retdate")]
    pub return_date: String,
    /// QZYT: purpose of the trip, or `""`.
    #[serde(rename = "qzyt")]
    pub purpose: String,
    /// MDD: destination, or `""`.
    #[serde(rename = "mdd")]
    pub destination: String,
    /// CGSPYWLSH: the travel approval's serial, or `""`.
    #[serde(rename = "cgspywlsh")]
    pub travel_approval_serial: String,
    /// YCYY: abnormal withdrawal reason, or `""`.
    #[serde(rename = "ycyy")]
    pub abnormal_reason: String,
    /// Deviceid: the device serial.
    #[serde(rename = "Deviceid")]
    pub device_serial: String,
    /// ZZGSN: the cabinet body serial.
    #[serde(rename = "ZZGSN")]
    pub cabinet_body: String,
    /// Row, from 1.
    #[serde(rename = "Row")]
    pub row: u16,
    /// Column, from 1.
    #[serde(rename = "Column")]
    pub column: u16,
}

/// `sjsb-zjzx` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationData {
    /// YWLSH.
    #[serde(rename = "ywlsh")]
    pub business_serial: String,
    /// ZJBS: the document id.
    #[serde(rename = "zjbs")]
    pub document_id: String,
    /// ZXYY: `lost`, `damaged`, `expired` or `left_unit`.
    #[serde(rename = "zxyy")]
    pub reason: String,
    /// ZMWJQM: base64 SM2 signature of the proof document.
    #[serde(rename = "zmwjqm")]
    pub proof_signature: String,
    /// OPTIME.
    #[serde(rename = "optime")]
    pub operation_time: String,
}

/// `sjsb-gj` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmData {
    /// YWLSH.
    #[serde(rename = "ywlsh")]
    pub business_serial: String,
    /// SBXLH.
    #[serde(rename = "sbxlh")]
    pub device_serial: String,
    /// GJLX: alarm kind (voltage, temperature, humidity, ...).
    #[serde(rename = "gjlx")]
    pub kind: String,
    /// GJNR: alarm text.
    #[serde(rename = "gjnr")]
    pub content: String,
    /// GJSJ: `YYYYMMDDHHMMSS`.
    #[serde(rename = "gjsj")]
    pub raised_at: String,
}

/// What a custody report (`optype`) does to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustodyOperation {
    /// `11`: first deposit of a document.
    DepositNew,
    /// `12`: deposit of a document coming back.
    DepositReturn,
    /// `21`: lent out for a trip, with a return date.
    Lend,
    /// `22`: taken out.
    TakeOut,
    /// `23`: abnormal withdrawal.
    AbnormalWithdrawal,
}

impl CustodyOperation {
    /// The `optype` code.
    pub fn code(self) -> &'static str {
        match self {
            CustodyOperation::DepositNew => "11",
            CustodyOperation::DepositReturn => "12",
            CustodyOperation::Lend => "21",
            CustodyOperation::TakeOut => "22",
            CustodyOperation::AbnormalWithdrawal => "23",
        }
    }

    /// The business serial prefix of the operation (`RG` deposit, `CG` withdrawal).
    pub fn serial_kind(self) -> SerialKind {
        match self {
            CustodyOperation::DepositNew | CustodyOperation::DepositReturn => SerialKind::Deposit,
            _ => SerialKind::Withdrawal,
        }
    }
}

/// Whether a deposit is the document's first or a return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepositKind {
    /// `11`.
    New,
    /// `12`.
    Return,
}

/// Why a withdrawal was abnormal (`ycyy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbnormalReason {
    /// The document's chip cannot be read.
    ChipUnreadable,
    /// The document is missing from its drawer.
    Missing,
    /// The document is no longer valid.
    Invalid,
}

impl AbnormalReason {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            AbnormalReason::ChipUnreadable => "chip_unreadable",
            AbnormalReason::Missing => "missing",
            AbnormalReason::Invalid => "invalid",
        }
    }
}

/// Why a document is cancelled (`zxyy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancellationReason {
    /// Lost.
    Lost,
    /// Damaged.
    Damaged,
    /// Expired.
    Expired,
    /// The holder left the unit.
    LeftUnit,
}

impl CancellationReason {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            CancellationReason::Lost => "lost",
            CancellationReason::Damaged => "damaged",
            CancellationReason::Expired => "expired",
            CancellationReason::LeftUnit => "left_unit",
        }
    }
}

/// The trip a withdrawal is for (all optional on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trip {
    /// QZYT, e.g. `旅游`.
    pub purpose: String,
    /// MDD, e.g. `HKG`.
    pub destination: String,
    /// CGSPYWLSH, the `SP…` serial of the travel approval, if any.
    pub travel_approval_serial: Option<String>,
}

/// Who and what a simulated cabinet is, before it has a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CabinetSpec {
    /// Device serial (SBXLH), also `ei`.
    pub device_serial: String,
    /// The owning unit's credit code.
    pub unit_credit_code: String,
    /// The owning unit's name (DWMC).
    pub unit_name: String,
    /// Device model.
    pub model: String,
    /// Cabinet bodies; at least one, each with at least one drawer.
    pub bodies: Vec<CabinetBody>,
}

impl CabinetSpec {
    /// A random device of `unit`: serial `SIM-nnnnnnnn`, one body `<serial>-G1` of 4 × 6
    /// drawers.
    pub fn random<R: Rng + ?Sized>(rng: &mut R, unit_credit_code: &str, unit_name: &str) -> Self {
        let device_serial = random_device_serial(rng);
        CabinetSpec {
            bodies: vec![CabinetBody {
                serial: format!("{device_serial}-G1"),
                rows: 4,
                columns: 6,
            }],
            device_serial,
            unit_credit_code: unit_credit_code.to_owned(),
            unit_name: unit_name.to_owned(),
            model: "SIM-ZJG-100".to_owned(),
        }
    }
}

/// A simulated certificate cabinet with its own SM2 signing key, sealing personal data to the
/// platform's encryption certificate. `Sync`: one cabinet can be shared by concurrent senders
/// (its business-serial sequence is atomic).
pub struct SimulatedCabinet {
    spec: CabinetSpec,
    signer: Sm2Signer,
    public_key_pem: String,
    platform_certificate: Certificate,
    /// Six-digit terminal number of the YWLSH.
    terminal_number: u32,
    /// Six-digit sequence of the YWLSH.
    sequence: AtomicU32,
    contact_name: String,
    contact_phone: String,
    encryption_card_id: String,
    administrators: Vec<AdministratorData>,
}

impl std::fmt::Debug for SimulatedCabinet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedCabinet")
            .field("spec", &self.spec)
            .field("public_key_pem", &self.public_key_pem)
            .finish_non_exhaustive()
    }
}

impl SimulatedCabinet {
    /// A cabinet with a fresh SM2 key.
    pub fn new(spec: CabinetSpec, platform_certificate_pem: &str) -> Result<Self, SimulateError> {
        let secret_key = generate_secret_key(&mut rand::rng());
        Self::with_secret_key(spec, &secret_key, platform_certificate_pem)
    }

    /// A cabinet with a given SM2 key (e.g. the fixtures' `XJH-Q2555061` key).
    pub fn with_secret_key(
        spec: CabinetSpec,
        secret_key: &SecretKey,
        platform_certificate_pem: &str,
    ) -> Result<Self, SimulateError> {
        if spec.bodies.is_empty() || spec.bodies.iter().any(|b| b.rows == 0 || b.columns == 0) {
            return Err(SimulateError::Options(format!(
                "cabinet {} needs at least one body, each with at least one drawer",
                spec.device_serial
            )));
        }
        let platform_certificate = Certificate::from_pem(platform_certificate_pem)
            .map_err(SimulateError::PlatformCertificate)?;
        let public_key_pem =
            public_key_to_spki_pem(&secret_key.public_key()).map_err(SimulateError::CabinetKey)?;
        let mut rng = rand::rng();
        let (administrator_name, _) = random_name(&mut rng);
        let administrator_birth = NaiveDate::from_ymd_opt(1980, 5, 17).unwrap_or_default();
        let administrator_id = random_citizen_id(&mut rng, administrator_birth, true);
        let administrators = vec![AdministratorData {
            account: format!("admin-{}", spec.device_serial.to_ascii_lowercase()),
            person_id: person_id(&administrator_id, &administrator_name)?,
        }];
        let (contact_name, _) = random_name(&mut rng);
        Ok(SimulatedCabinet {
            signer: Sm2Signer::new(secret_key),
            public_key_pem,
            platform_certificate,
            terminal_number: rng.random_range(0..1_000_000),
            sequence: AtomicU32::new(0),
            contact_name,
            contact_phone: random_phone(&mut rng),
            encryption_card_id: format!("JMK-{}", spec.device_serial),
            administrators,
            spec,
        })
    }

    /// Device serial (SBXLH), also `ei`.
    pub fn device_serial(&self) -> &str {
        &self.spec.device_serial
    }

    /// The owning unit's credit code.
    pub fn unit_credit_code(&self) -> &str {
        &self.spec.unit_credit_code
    }

    /// What the cabinet was made from.
    pub fn spec(&self) -> &CabinetSpec {
        &self.spec
    }

    /// The cabinet bodies.
    pub fn bodies(&self) -> &[CabinetBody] {
        &self.spec.bodies
    }

    /// The security module's public key, SubjectPublicKeyInfo PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The signer (to check signatures in tests, or sign foreign bytes).
    pub fn signer(&self) -> &Sm2Signer {
        &self.signer
    }

    /// The platform certificate envelopes are sealed to.
    pub fn platform_certificate(&self) -> &Certificate {
        &self.platform_certificate
    }

    /// The number of drawers over all bodies.
    pub fn drawer_count(&self) -> usize {
        self.spec
            .bodies
            .iter()
            .map(|b| usize::from(b.rows) * usize::from(b.columns))
            .sum()
    }

    /// The `index`-th drawer (modulo [`Self::drawer_count`]), body by body, row by row.
    pub fn drawer(&self, index: usize) -> Drawer {
        let mut remaining = index % self.drawer_count().max(1);
        for body in &self.spec.bodies {
            let columns = usize::from(body.columns);
            let size = usize::from(body.rows) * columns;
            if remaining < size {
                // Both quotient and remainder are below u16::MAX + 1 by construction.
                return Drawer {
                    body: body.serial.clone(),
                    row: u16::try_from(remaining / columns + 1).unwrap_or(u16::MAX),
                    column: u16::try_from(remaining % columns + 1).unwrap_or(u16::MAX),
                };
            }
            remaining -= size;
        }
        // Unreachable: the constructor refuses an empty geometry.
        Drawer {
            body: String::new(),
            row: 1,
            column: 1,
        }
    }

    /// A fresh business serial of this terminal.
    pub fn next_business_serial(
        &self,
        kind: SerialKind,
        time_millis: i64,
    ) -> Result<String, SimulateError> {
        let sequence = self
            .sequence
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        business_serial(kind, self.terminal_number, time_millis, sequence)
    }

    /// The body of `POST /api/v1/ops/devices` that enrolls this cabinet.
    pub fn enrollment(&self) -> DeviceEnrollment {
        DeviceEnrollment {
            device_serial: self.spec.device_serial.clone(),
            unit_credit_code: self.spec.unit_credit_code.clone(),
            model: self.spec.model.clone(),
            bodies: self.spec.bodies.clone(),
            public_key_pem: self.public_key_pem.clone(),
        }
    }

    /// Signs `data` as a `mstype` request with a fresh `reqid`.
    pub fn sign<T: Serialize + ?Sized>(
        &self,
        mstype: &str,
        data: &T,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        self.sign_with_reqid(mstype, data, time_millis, &new_reqid())
    }

    /// Signs `data` as a `mstype` request with a chosen `reqid` (replay tests).
    pub fn sign_with_reqid<T: Serialize + ?Sized>(
        &self,
        mstype: &str,
        data: &T,
        time_millis: i64,
        reqid: &str,
    ) -> Result<SignedRequest, SimulateError> {
        let business_data_json = serde_json::to_string(data)?;
        self.sign_json(mstype, &business_data_json, time_millis, reqid)
    }

    /// Signs the same business data as `request` again, with another time and a fresh (or
    /// chosen) `reqid`: the same operation reported twice, as a cabinet retrying would.
    pub fn sign_again(
        &self,
        request: &SignedRequest,
        time_millis: i64,
        reqid: Option<&str>,
    ) -> Result<SignedRequest, SimulateError> {
        let bytes = request.business_data_bytes()?;
        let business_data_json = String::from_utf8(bytes)
            .map_err(|err| RequestError::BadBusinessData(err.to_string()))?;
        let reqid = reqid.map_or_else(new_reqid, str::to_owned);
        self.sign_json(&request.mstype, &business_data_json, time_millis, &reqid)
    }

    fn sign_json(
        &self,
        mstype: &str,
        business_data_json: &str,
        time_millis: i64,
        reqid: &str,
    ) -> Result<SignedRequest, SimulateError> {
        let new = NewRequest {
            mstype,
            business_data_json,
            ei: &self.spec.device_serial,
            reqid,
            time_millis,
        };
        Ok(SignedRequest::sign(&new, &self.signer)?)
    }

    /// `sjsb-sbcsh` business data.
    pub fn activation_data(&self) -> ActivationData {
        ActivationData {
            unit_credit_code: self.spec.unit_credit_code.clone(),
            device_serial: self.spec.device_serial.clone(),
            unit_name: self.spec.unit_name.clone(),
            contact_name: self.contact_name.clone(),
            contact_phone: self.contact_phone.clone(),
            encryption_card_id: self.encryption_card_id.clone(),
            administrators: self.administrators.clone(),
        }
    }

    /// The signed activation (`sjsb-sbcsh`).
    pub fn activation(&self, time_millis: i64) -> Result<SignedRequest, SimulateError> {
        self.sign(
            message_type::ACTIVATION,
            &self.activation_data(),
            time_millis,
        )
    }

    /// `sjsb-xt` business data with plausible random readings.
    pub fn heartbeat_data(&self, time_millis: i64) -> Result<HeartbeatData, SimulateError> {
        let mut rng = rand::rng();
        let mut percent = |low: f64, high: f64| format!("{:.1}", rng.random_range(low..high));
        Ok(HeartbeatData {
            device_serial: self.spec.device_serial.clone(),
            ip_address: format!(
                "10.20.{}.{}",
                self.terminal_number % 250,
                10 + self.terminal_number % 200
            ),
            reported_at: wire_time(time_millis)?,
            software_version: "2.3.1".to_owned(),
            temperature: percent(18.0, 30.0),
            humidity: percent(30.0, 60.0),
            cpu_usage: percent(2.0, 40.0),
            memory_usage: percent(20.0, 70.0),
            disk_usage: percent(10.0, 60.0),
        })
    }

    /// The signed heartbeat (`sjsb-xt`).
    pub fn heartbeat(&self, time_millis: i64) -> Result<SignedRequest, SimulateError> {
        self.sign(
            message_type::HEARTBEAT,
            &self.heartbeat_data(time_millis)?,
            time_millis,
        )
    }

    /// Seals a record for the platform: base64 of the DER GM/T 0010 envelope (`zjdata`).
    pub fn seal_record(&self, record: &DocumentRecord) -> Result<String, SimulateError> {
        let plaintext = record.to_bytes()?;
        let envelope = custody_protocol::envelope::seal(
            &plaintext,
            &self.platform_certificate,
            &mut rand::rng(),
        )?;
        Ok(BASE64.encode(envelope))
    }

    /// `sjsb-zjcq` business data for `operation` on `record` in `drawer`, with a fresh serial,
    /// the record sealed, operation and report time both `time_millis`, and every optional field
    /// `""`.
    pub fn custody_report_data(
        &self,
        operation: CustodyOperation,
        record: &DocumentRecord,
        drawer: &Drawer,
        time_millis: i64,
    ) -> Result<CustodyReportData, SimulateError> {
        let time = wire_time(time_millis)?;
        Ok(CustodyReportData {
            business_serial: self.next_business_serial(operation.serial_kind(), time_millis)?,
            report_time: time.clone(),
            sealed_record: self.seal_record(record)?,
            operation: operation.code().to_owned(),
            operation_time: time,
            return_date: String::new(),
            purpose: String::new(),
            destination: String::new(),
            travel_approval_serial: String::new(),
            abnormal_reason: String::new(),
            device_serial: self.spec.device_serial.clone(),
            cabinet_body: drawer.body.clone(),
            row: drawer.row,
            column: drawer.column,
        })
    }

    /// A signed deposit (`sjsb-zjcq`, optype 11 or 12).
    pub fn deposit(
        &self,
        record: &DocumentRecord,
        drawer: &Drawer,
        kind: DepositKind,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let operation = match kind {
            DepositKind::New => CustodyOperation::DepositNew,
            DepositKind::Return => CustodyOperation::DepositReturn,
        };
        let data = self.custody_report_data(operation, record, drawer, time_millis)?;
        self.sign(message_type::CUSTODY, &data, time_millis)
    }

    /// A signed loan for a trip (`sjsb-zjcq`, optype 21), due back on `return_date`.
    pub fn lend(
        &self,
        record: &DocumentRecord,
        drawer: &Drawer,
        return_date: NaiveDate,
        trip: &Trip,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let mut data =
            self.custody_report_data(CustodyOperation::Lend, record, drawer, time_millis)?;
        data.return_date = wire_date(return_date);
        apply_trip(&mut data, trip);
        self.sign(message_type::CUSTODY, &data, time_millis)
    }

    /// A signed take-out (`sjsb-zjcq`, optype 22), with an optional return date.
    pub fn take_out(
        &self,
        record: &DocumentRecord,
        drawer: &Drawer,
        return_date: Option<NaiveDate>,
        trip: &Trip,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let mut data =
            self.custody_report_data(CustodyOperation::TakeOut, record, drawer, time_millis)?;
        data.return_date = return_date.map(wire_date).unwrap_or_default();
        apply_trip(&mut data, trip);
        self.sign(message_type::CUSTODY, &data, time_millis)
    }

    /// A signed abnormal withdrawal (`sjsb-zjcq`, optype 23).
    pub fn abnormal_withdrawal(
        &self,
        record: &DocumentRecord,
        drawer: &Drawer,
        reason: AbnormalReason,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let mut data = self.custody_report_data(
            CustodyOperation::AbnormalWithdrawal,
            record,
            drawer,
            time_millis,
        )?;
        data.abnormal_reason = reason.code().to_owned();
        self.sign(message_type::CUSTODY, &data, time_millis)
    }

    /// `sjsb-zjzx` business data. The proof signature (`zmwjqm`) is this cabinet's SM2
    /// signature over a synthetic proof document naming the document and reason.
    pub fn cancellation_data(
        &self,
        document_id: &str,
        reason: CancellationReason,
        time_millis: i64,
    ) -> Result<CancellationData, SimulateError> {
        let time = wire_time(time_millis)?;
        let proof = format!(
            "cancellation proof\n{document_id}\n{}\n{time}",
            reason.code()
        );
        let proof_signature = self
            .signer
            .sign(proof.as_bytes())
            .map_err(RequestError::Signing)?;
        Ok(CancellationData {
            business_serial: self.next_business_serial(SerialKind::Cancellation, time_millis)?,
            document_id: document_id.to_owned(),
            reason: reason.code().to_owned(),
            proof_signature: BASE64.encode(proof_signature),
            operation_time: time,
        })
    }

    /// A signed cancellation (`sjsb-zjzx`) of the document with id `document_id` (ZJBS).
    pub fn cancellation(
        &self,
        document_id: &str,
        reason: CancellationReason,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = self.cancellation_data(document_id, reason, time_millis)?;
        self.sign(message_type::CANCELLATION, &data, time_millis)
    }

    /// `sjsb-gj` business data. SPEC §2 has no alarm prefix; the serial uses `PD` (inventory),
    /// the nearest device-side operation.
    pub fn alarm_data(
        &self,
        kind: &str,
        content: &str,
        time_millis: i64,
    ) -> Result<AlarmData, SimulateError> {
        Ok(AlarmData {
            business_serial: self.next_business_serial(SerialKind::Inventory, time_millis)?,
            device_serial: self.spec.device_serial.clone(),
            kind: kind.to_owned(),
            content: content.to_owned(),
            raised_at: wire_time(time_millis)?,
        })
    }

    /// A signed alarm (`sjsb-gj`).
    pub fn alarm(
        &self,
        kind: &str,
        content: &str,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = self.alarm_data(kind, content, time_millis)?;
        self.sign(message_type::ALARM, &data, time_millis)
    }
}

fn apply_trip(data: &mut CustodyReportData, trip: &Trip) {
    data.purpose = trip.purpose.clone();
    data.destination = trip.destination.clone();
    data.travel_approval_serial = trip.travel_approval_serial.clone().unwrap_or_default();
}

/// The business serial (`ywlsh`) inside a signed request's business data, if it has one.
pub fn business_serial_of(request: &SignedRequest) -> Option<String> {
    let data: serde_json::Value = request.business_data().ok()?;
    data.get("ywlsh")?.as_str().map(str::to_owned)
}
