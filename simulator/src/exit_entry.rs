//! A simulated exit-entry adapter: the exit-entry administration's side of the platform, with its
//! own SM2 key, pushing border-crossing records, newly issued documents and filing results
//! (SPEC §5.1, `sjts-*`).
//!
//! As with the cabinet simulator, every message is a typed business-data value (wire names kept
//! by serde) and its signature; tests that need a doctored list change the data and sign it.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::NaiveDate;
use custody_protocol::keys::{generate_secret_key, public_key_to_spki_pem};
use custody_protocol::request::{NewRequest, RequestError};
use custody_protocol::{DocumentRecord, SignedRequest, Sm2Signer};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::error::SimulateError;
use super::generate::{new_reqid, person_id, wire_date, wire_time};
use super::unit::FilingKind;

/// The message types (`mstype`) the exit-entry adapter sends.
pub mod message_type {
    /// Border-crossing records.
    pub const CROSSINGS: &str = "sjts-crjjl";
    /// Newly issued documents.
    pub const ISSUED_DOCUMENTS: &str = "sjts-bzjg";
    /// Answers to a filing list.
    pub const FILING_RESULTS: &str = "sjts-bbjg";
}

/// The body of `POST /api/v1/ops/senders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderRegistration {
    /// The sender's key id (`ei` of its requests).
    pub ei: String,
    /// `exit_entry`, `unit` or `gateway`.
    pub kind: String,
    /// Its SM2 public key, SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// For a unit client: its unit's credit code.
    #[serde(rename = "tyshxydm", skip_serializing_if = "Option::is_none")]
    pub unit_credit_code: Option<String>,
}

/// `{records: [...]}`: the business data of `sjts-crjjl` and `sjts-bzjg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsData<T> {
    /// The records, at most 1,000.
    pub records: Vec<T>,
}

/// Which way a border crossing went (`crjlx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `1`: leaving the country.
    Exit,
    /// `2`: coming back.
    Entry,
}

impl Direction {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Direction::Exit => "1",
            Direction::Entry => "2",
        }
    }
}

/// One `sjts-crjjl` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossingRecordData {
    /// JLBH: the record's id, its idempotency key.
    #[serde(rename = "jlbh")]
    pub record_id: String,
    /// ZJLX.
    #[serde(rename = "zjlx")]
    pub document_type: String,
    /// ZJHM.
    #[serde(rename = "zjhm")]
    pub document_number: String,
    /// CRJLX: `1` exit, `2` entry.
    #[serde(rename = "crjlx")]
    pub direction: String,
    /// CRJSJ: `YYYYMMDDHHMMSS` China time.
    #[serde(rename = "crjsj")]
    pub crossed_at: String,
    /// KADM: the border port.
    #[serde(rename = "kadm")]
    pub port: String,
    /// GJDQ: ISO 3166-1 alpha-3.
    #[serde(rename = "gjdq")]
    pub country: String,
}

/// One `sjts-bzjg` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedDocumentData {
    /// JLBH: the record's id, its idempotency key.
    #[serde(rename = "jlbh")]
    pub record_id: String,
    /// RYBS: the holder.
    #[serde(rename = "rybs")]
    pub person_id: String,
    /// ZJLX.
    #[serde(rename = "zjlx")]
    pub document_type: String,
    /// ZJHM.
    #[serde(rename = "zjhm")]
    pub document_number: String,
    /// QFRQ: issue date `YYYYMMDD`.
    #[serde(rename = "qfrq")]
    pub issued_on: String,
    /// YXQZ: expiry date `YYYYMMDD`.
    #[serde(rename = "yxqz")]
    pub valid_until: String,
}

/// The administration's answer to one person of a filing list (`bbzt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilingAnswer {
    /// `accepted`.
    Accepted,
    /// `refused`.
    Refused,
}

impl FilingAnswer {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            FilingAnswer::Accepted => "accepted",
            FilingAnswer::Refused => "refused",
        }
    }
}

/// One `sjts-bbjg` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingResultData {
    /// RYBS.
    #[serde(rename = "rybs")]
    pub person_id: String,
    /// BBZT: `accepted` or `refused`.
    #[serde(rename = "bbzt")]
    pub answer: String,
    /// BBLX: `new`, `change` or `revoke`, as the list asked.
    #[serde(rename = "bblx")]
    pub kind: String,
    /// BZ: remark.
    #[serde(rename = "bz")]
    pub remark: String,
}

/// `sjts-bbjg` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingResultsData {
    /// BBYWLSH: the filing list answered.
    #[serde(rename = "bbywlsh")]
    pub filing_serial: String,
    /// BBJG: one answer per person.
    #[serde(rename = "bbjg")]
    pub answers: Vec<FilingResultData>,
}

/// The exit-entry adapter, with its SM2 key.
pub struct SimulatedExitEntryAdapter {
    ei: String,
    signer: Sm2Signer,
    public_key_pem: String,
    sequence: AtomicU32,
}

impl std::fmt::Debug for SimulatedExitEntryAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedExitEntryAdapter")
            .field("ei", &self.ei)
            .finish_non_exhaustive()
    }
}

impl SimulatedExitEntryAdapter {
    /// An adapter with key id `ei` and a fresh SM2 key.
    pub fn new(ei: &str) -> Result<Self, SimulateError> {
        let secret_key = generate_secret_key(&mut rand::rng());
        let public_key_pem =
            public_key_to_spki_pem(&secret_key.public_key()).map_err(SimulateError::CabinetKey)?;
        Ok(SimulatedExitEntryAdapter {
            ei: ei.to_owned(),
            signer: Sm2Signer::new(&secret_key),
            public_key_pem,
            sequence: AtomicU32::new(0),
        })
    }

    /// An adapter with a random key id `SIM-CRJ-nnnnnnnn`.
    pub fn random() -> Result<Self, SimulateError> {
        let ei = format!("SIM-CRJ-{:08}", rand::rng().random_range(0..100_000_000u32));
        Self::new(&ei)
    }

    /// The key id (`ei`).
    pub fn ei(&self) -> &str {
        &self.ei
    }

    /// The SM2 public key, SubjectPublicKeyInfo PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The signer.
    pub fn signer(&self) -> &Sm2Signer {
        &self.signer
    }

    /// The body of `POST /api/v1/ops/senders` that registers this adapter.
    pub fn registration(&self) -> SenderRegistration {
        SenderRegistration {
            ei: self.ei.clone(),
            kind: "exit_entry".to_owned(),
            public_key_pem: self.public_key_pem.clone(),
            unit_credit_code: None,
        }
    }

    /// A fresh record id (`jlbh`): `CRJ` + a sequence + 24 hex characters.
    pub fn next_record_id(&self) -> String {
        let sequence = self
            .sequence
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        format!("CRJ{sequence:06}{}", &unique[..24])
    }

    /// A crossing record of the document in `record`, with a fresh record id.
    pub fn crossing(
        &self,
        record: &DocumentRecord,
        direction: Direction,
        time_millis: i64,
        port: &str,
        country: &str,
    ) -> Result<CrossingRecordData, SimulateError> {
        Ok(CrossingRecordData {
            record_id: self.next_record_id(),
            document_type: record.document_type.clone(),
            document_number: record.document_number.clone(),
            direction: direction.code().to_owned(),
            crossed_at: wire_time(time_millis)?,
            port: port.to_owned(),
            country: country.to_owned(),
        })
    }

    /// A newly-issued record of the document in `record` (its holder, type, number and expiry),
    /// issued on `issued_on`, with a fresh record id.
    pub fn issued(
        &self,
        record: &DocumentRecord,
        issued_on: NaiveDate,
    ) -> Result<IssuedDocumentData, SimulateError> {
        Ok(IssuedDocumentData {
            record_id: self.next_record_id(),
            person_id: person_id(&record.citizen_id_number, &record.chinese_name)?,
            document_type: record.document_type.clone(),
            document_number: record.document_number.clone(),
            issued_on: wire_date(issued_on),
            valid_until: record.expiry_date.clone(),
        })
    }

    /// An answer to one person of a filing list.
    pub fn answer(
        person_id: &str,
        kind: FilingKind,
        answer: FilingAnswer,
        remark: &str,
    ) -> FilingResultData {
        FilingResultData {
            person_id: person_id.to_owned(),
            answer: answer.code().to_owned(),
            kind: kind.code().to_owned(),
            remark: remark.to_owned(),
        }
    }

    /// Signed border-crossing records (`sjts-crjjl`).
    pub fn crossings(
        &self,
        records: &[CrossingRecordData],
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = RecordsData {
            records: records.to_vec(),
        };
        self.sign(message_type::CROSSINGS, &data, time_millis)
    }

    /// Signed newly-issued documents (`sjts-bzjg`).
    pub fn issued_documents(
        &self,
        records: &[IssuedDocumentData],
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = RecordsData {
            records: records.to_vec(),
        };
        self.sign(message_type::ISSUED_DOCUMENTS, &data, time_millis)
    }

    /// Signed answers to the filing list `filing_serial` (`sjts-bbjg`).
    pub fn filing_results(
        &self,
        filing_serial: &str,
        answers: &[FilingResultData],
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = FilingResultsData {
            filing_serial: filing_serial.to_owned(),
            answers: answers.to_vec(),
        };
        self.sign(message_type::FILING_RESULTS, &data, time_millis)
    }

    /// Signs `data` as a `mstype` request with a fresh `reqid`.
    pub fn sign<T: Serialize + ?Sized>(
        &self,
        mstype: &str,
        data: &T,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let business_data_json = serde_json::to_string(data)?;
        sign_json(
            &self.signer,
            &self.ei,
            mstype,
            &business_data_json,
            time_millis,
        )
    }

    /// The same business data as `request`, signed again with another time and a fresh
    /// `reqid`: the adapter retrying.
    pub fn sign_again(
        &self,
        request: &SignedRequest,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        resign(&self.signer, &self.ei, request, time_millis)
    }
}

/// Signs business data as JSON text with a fresh `reqid`.
pub(super) fn sign_json(
    signer: &Sm2Signer,
    ei: &str,
    mstype: &str,
    business_data_json: &str,
    time_millis: i64,
) -> Result<SignedRequest, SimulateError> {
    let reqid = new_reqid();
    let new = NewRequest {
        mstype,
        business_data_json,
        ei,
        reqid: &reqid,
        time_millis,
    };
    Ok(SignedRequest::sign(&new, signer)?)
}

/// `request`'s business data signed again with another time and a fresh `reqid`.
pub(super) fn resign(
    signer: &Sm2Signer,
    ei: &str,
    request: &SignedRequest,
    time_millis: i64,
) -> Result<SignedRequest, SimulateError> {
    let bytes = request.business_data_bytes()?;
    let business_data_json =
        String::from_utf8(bytes).map_err(|err| RequestError::BadBusinessData(err.to_string()))?;
    sign_json(
        signer,
        ei,
        &request.mstype,
        &business_data_json,
        time_millis,
    )
}
