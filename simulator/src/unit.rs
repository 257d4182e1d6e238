//! A simulated unit client (报备/证件领用 client of one unit, with its UKey's SM2 key): filing
//! lists, pulling their answers, travel approvals and consent letters (SPEC §5.1).
//!
//! Personal data (`rydata`) is sealed to the platform's certificate exactly as a cabinet seals
//! `zjdata`; scanned forms are small synthetic PDFs signed with the client's own key.

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use chrono::NaiveDate;
use custody_domain::identifiers::SerialKind;
use custody_protocol::keys::{generate_secret_key, public_key_to_spki_pem};
use custody_protocol::request::RequestError;
use custody_protocol::{Certificate, DocumentRecord, SignedRequest, Sm2Signer};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::error::SimulateError;
use super::exit_entry::{resign, sign_json, SenderRegistration};
use super::generate::{
    business_serial, person_id, random_citizen_id, random_name, random_phone, wire_date,
};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The message types (`mstype`) a unit client sends.
pub mod message_type {
    /// A filing list.
    pub const FILING_LIST: &str = "sjsb-bbxx";
    /// Pull the answers to a filing list.
    pub const FILING_RESULTS_PULL: &str = "sjfk-bbjg";
    /// A travel approval.
    pub const TRAVEL_APPROVAL: &str = "sjsb-cgsp";
    /// A consent letter.
    pub const CONSENT_LETTER: &str = "sjsb-tyh";
}

/// What a filing list asks for a person (`bblx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilingKind {
    /// `new`: file the person.
    New,
    /// `change`: change the filed details.
    Change,
    /// `revoke`: revoke the filing.
    Revoke,
}

impl FilingKind {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            FilingKind::New => "new",
            FilingKind::Change => "change",
            FilingKind::Revoke => "revoke",
        }
    }
}

/// What a consent letter is for (`crjywlx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentPurpose {
    /// `new`: a new document.
    NewDocument,
    /// `renew`: a renewal.
    Renewal,
    /// `endorse`: an endorsement.
    Endorsement,
}

impl ConsentPurpose {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            ConsentPurpose::NewDocument => "new",
            ConsentPurpose::Renewal => "renew",
            ConsentPurpose::Endorsement => "endorse",
        }
    }
}

/// The plaintext of `rydata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonData {
    /// XM: Chinese name.
    #[serde(rename = "xm")]
    pub name: String,
    /// GMSFHM: citizen ID number.
    #[serde(rename = "gmsfhm")]
    pub citizen_id: String,
    /// LXDH: phone.
    #[serde(rename = "lxdh")]
    pub phone: String,
}

impl PersonData {
    /// A random person with a valid citizen ID.
    pub fn random() -> PersonData {
        let mut rng = rand::rng();
        let (name, _) = random_name(&mut rng);
        let birth =
            NaiveDate::from_ymd_opt(rng.random_range(1960..2000), 3, 14).unwrap_or_default();
        let male = rng.random_bool(0.5);
        PersonData {
            name,
            citizen_id: random_citizen_id(&mut rng, birth, male),
            phone: random_phone(&mut rng),
        }
    }

    /// The holder of a document record.
    pub fn holder_of(record: &DocumentRecord) -> PersonData {
        PersonData {
            name: record.chinese_name.clone(),
            citizen_id: record.citizen_id_number.clone(),
            phone: random_phone(&mut rand::rng()),
        }
    }

    /// The person's RYBS.
    pub fn person_id(&self) -> Result<String, SimulateError> {
        person_id(&self.citizen_id, &self.name)
    }
}

/// One `bbrylb` item of a filing list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingItemData {
    /// BBLX: `new`, `change` or `revoke`.
    #[serde(rename = "bblx")]
    pub kind: String,
    /// RYBS.
    #[serde(rename = "rybs")]
    pub person_id: String,
    /// RYDATA: base64 GM/T 0010 envelope of [`PersonData`] as JSON.
    #[serde(rename = "rydata")]
    pub sealed_person: String,
    /// ZW: position.
    #[serde(rename = "zw")]
    pub position: String,
    /// ZJHZC: documents registered with the filing.
    #[serde(rename = "zjhzc")]
    pub registered_documents: String,
}

/// `sjsb-bbxx` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingListData {
    /// BBYWLSH: the list's `BB…` serial.
    #[serde(rename = "bbywlsh")]
    pub filing_serial: String,
    /// TYSHXYDM: the unit.
    #[serde(rename = "tyshxydm")]
    pub unit_credit_code: String,
    /// BBRYLB: the persons.
    #[serde(rename = "bbrylb")]
    pub persons: Vec<FilingItemData>,
    /// SPDWJ: base64 PDF of the signed approval sheet.
    #[serde(rename = "spdwj")]
    pub approval_sheet: String,
    /// SPDWJQM: its SM2 signature, base64.
    #[serde(rename = "spdwjqm")]
    pub approval_sheet_signature: String,
}

/// `sjfk-bbjg` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingResultsPullData {
    /// BBYWLSH.
    #[serde(rename = "bbywlsh")]
    pub filing_serial: String,
}

/// A trip to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripPlan {
    /// MDD.
    pub destination: String,
    /// CFSJ.
    pub departure: NaiveDate,
    /// FHSJ.
    pub return_date: NaiveDate,
    /// CGSY.
    pub reason: String,
    /// ZJLX of the document the trip needs.
    pub document_type: String,
    /// TYSJ.
    pub approved_on: NaiveDate,
}

/// `sjsb-cgsp` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TravelApprovalData {
    /// CGSPYWLSH: the approval's `SP…` serial.
    #[serde(rename = "cgspywlsh")]
    pub approval_serial: String,
    /// RYBS.
    #[serde(rename = "rybs")]
    pub person_id: String,
    /// MDD.
    #[serde(rename = "mdd")]
    pub destination: String,
    /// CFSJ `YYYYMMDD`.
    #[serde(rename = "cfsj")]
    pub departure: String,
    /// FHSJ `YYYYMMDD`.
    #[serde(rename = "fhsj")]
    pub return_date: String,
    /// CGSY.
    #[serde(rename = "cgsy")]
    pub reason: String,
    /// ZJLX.
    #[serde(rename = "zjlx")]
    pub document_type: String,
    /// TYSJ `YYYYMMDD`.
    #[serde(rename = "tysj")]
    pub approved_on: String,
    /// SPBWJ: base64 PDF of the approval form.
    #[serde(rename = "spbwj")]
    pub form: String,
    /// SPBWJQM: its SM2 signature, base64.
    #[serde(rename = "spbwjqm")]
    pub form_signature: String,
}

/// `sjsb-tyh` business data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentLetterData {
    /// TYHYWLSH: the letter's `TY…` serial.
    #[serde(rename = "tyhywlsh")]
    pub letter_serial: String,
    /// CGSPYWLSH: the approval it was made for, or `""`.
    #[serde(rename = "cgspywlsh")]
    pub approval_serial: String,
    /// RYBS.
    #[serde(rename = "rybs")]
    pub person_id: String,
    /// CRJYWLX: `new`, `renew` or `endorse`.
    #[serde(rename = "crjywlx")]
    pub purpose: String,
    /// ZJLX.
    #[serde(rename = "zjlx")]
    pub document_type: String,
    /// KJRQ `YYYYMMDD`.
    #[serde(rename = "kjrq")]
    pub issued_on: String,
    /// TYHWJ: base64 PDF of the letter.
    #[serde(rename = "tyhwj")]
    pub form: String,
    /// TYHWJQM: its SM2 signature, base64.
    #[serde(rename = "tyhwjqm")]
    pub form_signature: String,
}

/// A unit client, with its UKey's SM2 key.
pub struct SimulatedUnitClient {
    ei: String,
    unit_credit_code: String,
    signer: Sm2Signer,
    public_key_pem: String,
    platform_certificate: Certificate,
    terminal_number: u32,
    sequence: AtomicU32,
}

impl std::fmt::Debug for SimulatedUnitClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedUnitClient")
            .field("ei", &self.ei)
            .field("unit_credit_code", &self.unit_credit_code)
            .finish_non_exhaustive()
    }
}

impl SimulatedUnitClient {
    /// A client of `unit_credit_code` with a fresh key and a random key id `SIM-UK-nnnnnnnn`,
    /// sealing personal data to `platform_certificate_pem`.
    pub fn new(
        unit_credit_code: &str,
        platform_certificate_pem: &str,
    ) -> Result<Self, SimulateError> {
        let platform_certificate = Certificate::from_pem(platform_certificate_pem)
            .map_err(SimulateError::PlatformCertificate)?;
        let secret_key = generate_secret_key(&mut rand::rng());
        let public_key_pem =
            public_key_to_spki_pem(&secret_key.public_key()).map_err(SimulateError::CabinetKey)?;
        let mut rng = rand::rng();
        Ok(SimulatedUnitClient {
            ei: format!("SIM-UK-{:08}", rng.random_range(0..100_000_000u32)),
            unit_credit_code: unit_credit_code.to_owned(),
            signer: Sm2Signer::new(&secret_key),
            public_key_pem,
            platform_certificate,
            terminal_number: rng.random_range(0..1_000_000),
            sequence: AtomicU32::new(0),
        })
    }

    /// The key id (`ei`).
    pub fn ei(&self) -> &str {
        &self.ei
    }

    /// The unit's credit code.
    pub fn unit_credit_code(&self) -> &str {
        &self.unit_credit_code
    }

    /// The signer.
    pub fn signer(&self) -> &Sm2Signer {
        &self.signer
    }

    /// The body of `POST /api/v1/ops/senders` that registers this client for its unit.
    pub fn registration(&self) -> SenderRegistration {
        SenderRegistration {
            ei: self.ei.clone(),
            kind: "unit".to_owned(),
            public_key_pem: self.public_key_pem.clone(),
            unit_credit_code: Some(self.unit_credit_code.clone()),
        }
    }

    /// A fresh business serial of this client.
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

    /// Seals a person's data for the platform: base64 of the GM/T 0010 envelope (`rydata`).
    pub fn seal_person(&self, person: &PersonData) -> Result<String, SimulateError> {
        let plaintext = serde_json::to_vec(person)?;
        let envelope = custody_protocol::envelope::seal(
            &plaintext,
            &self.platform_certificate,
            &mut rand::rng(),
        )?;
        Ok(BASE64.encode(envelope))
    }

    /// A synthetic scanned form about `subject` and this client's signature over it, both
    /// base64.
    pub fn signed_form(&self, subject: &str) -> Result<(String, String), SimulateError> {
        let form = format!("%PDF-1.4\n% simulated form\n{subject}\n%%EOF\n");
        let signature = self
            .signer
            .sign(form.as_bytes())
            .map_err(RequestError::Signing)?;
        Ok((BASE64.encode(form), BASE64.encode(signature)))
    }

    /// One filing-list item for `person`; a revocation carries the person's data too.
    pub fn filing_item(
        &self,
        kind: FilingKind,
        person: &PersonData,
        position: &str,
    ) -> Result<FilingItemData, SimulateError> {
        Ok(FilingItemData {
            kind: kind.code().to_owned(),
            person_id: person.person_id()?,
            sealed_person: self.seal_person(person)?,
            position: position.to_owned(),
            registered_documents: String::new(),
        })
    }

    /// `sjsb-bbxx` business data for `items`, with a fresh `BB…` serial and a signed sheet.
    pub fn filing_list_data(
        &self,
        items: Vec<FilingItemData>,
        time_millis: i64,
    ) -> Result<FilingListData, SimulateError> {
        let filing_serial = self.next_business_serial(SerialKind::Filing, time_millis)?;
        let (sheet, signature) = self.signed_form(&format!("filing list {filing_serial}"))?;
        Ok(FilingListData {
            filing_serial,
            unit_credit_code: self.unit_credit_code.clone(),
            persons: items,
            approval_sheet: sheet,
            approval_sheet_signature: signature,
        })
    }

    /// A signed filing list (`sjsb-bbxx`).
    pub fn filing_list(
        &self,
        items: Vec<FilingItemData>,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = self.filing_list_data(items, time_millis)?;
        self.sign(message_type::FILING_LIST, &data, time_millis)
    }

    /// A signed pull of the answers to the filing list `filing_serial` (`sjfk-bbjg`).
    pub fn filing_results_pull(
        &self,
        filing_serial: &str,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = FilingResultsPullData {
            filing_serial: filing_serial.to_owned(),
        };
        self.sign(message_type::FILING_RESULTS_PULL, &data, time_millis)
    }

    /// `sjsb-cgsp` business data approving `trip` for the person `person_id`, with a fresh
    /// `SP…` serial.
    pub fn travel_approval_data(
        &self,
        person_id: &str,
        trip: &TripPlan,
        time_millis: i64,
    ) -> Result<TravelApprovalData, SimulateError> {
        let approval_serial = self.next_business_serial(SerialKind::TravelApproval, time_millis)?;
        let (form, form_signature) =
            self.signed_form(&format!("travel approval {approval_serial}"))?;
        Ok(TravelApprovalData {
            approval_serial,
            person_id: person_id.to_owned(),
            destination: trip.destination.clone(),
            departure: wire_date(trip.departure),
            return_date: wire_date(trip.return_date),
            reason: trip.reason.clone(),
            document_type: trip.document_type.clone(),
            approved_on: wire_date(trip.approved_on),
            form,
            form_signature,
        })
    }

    /// A signed travel approval (`sjsb-cgsp`).
    pub fn travel_approval(
        &self,
        person_id: &str,
        trip: &TripPlan,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        let data = self.travel_approval_data(person_id, trip, time_millis)?;
        self.sign(message_type::TRAVEL_APPROVAL, &data, time_millis)
    }

    /// `sjsb-tyh` business data: a letter for `person_id`, with a fresh `TY…` serial.
    pub fn consent_letter_data(
        &self,
        person_id: &str,
        approval_serial: Option<&str>,
        purpose: ConsentPurpose,
        document_type: &str,
        issued_on: NaiveDate,
        time_millis: i64,
    ) -> Result<ConsentLetterData, SimulateError> {
        let letter_serial = self.next_business_serial(SerialKind::ConsentLetter, time_millis)?;
        let (form, form_signature) =
            self.signed_form(&format!("consent letter {letter_serial}"))?;
        Ok(ConsentLetterData {
            letter_serial,
            approval_serial: approval_serial.unwrap_or_default().to_owned(),
            person_id: person_id.to_owned(),
            purpose: purpose.code().to_owned(),
            document_type: document_type.to_owned(),
            issued_on: wire_date(issued_on),
            form,
            form_signature,
        })
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
    /// `reqid`: the client retrying.
    pub fn sign_again(
        &self,
        request: &SignedRequest,
        time_millis: i64,
    ) -> Result<SignedRequest, SimulateError> {
        resign(&self.signer, &self.ei, request, time_millis)
    }
}
