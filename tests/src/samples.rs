//! Builders of valid commands and metadata, so tests say only what they are about.

use chrono::{DateTime, FixedOffset, NaiveDate};
use custody_domain::cabinet::{Activated, CabinetBody, CabinetCommand, Disabled, Enrolled};
use custody_domain::document::*;
use custody_domain::identifiers::{CitizenId, DocumentId, DocumentNumber, DocumentType, PersonId};
use custody_domain::person::*;
use custody_domain::values::{DeviceSerial, DocumentRecord, Drawer, Location, Sex};
use custody_domain::EventMetadata;

/// The fixture holder 张三 (record-1 of shared/fixtures).
pub const CITIZEN_ID: &str = "11010519491231002X";
pub const CHINESE_NAME: &str = "张三";
pub const UNIT: &str = "91350100M000100Y43";

pub fn time(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).expect("test time")
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

/// A document number nobody else in this test run uses.
pub fn fresh_document_number() -> DocumentNumber {
    let n = uuid::Uuid::new_v4().as_u128() % 100_000_000;
    format!("E{n:08}").parse().expect("document number")
}

pub fn record(number: &DocumentNumber) -> DocumentRecord {
    DocumentRecord {
        document_type: DocumentType::OrdinaryPassport,
        number: number.clone(),
        citizen_id: CITIZEN_ID.parse().expect("citizen id"),
        chinese_name: CHINESE_NAME.into(),
        latin_name: "ZHANG SAN".into(),
        birth_date: date(1949, 12, 31),
        sex: Sex::Male,
        valid_until: date(2032, 1, 1),
    }
}

pub fn document_id(number: &DocumentNumber) -> DocumentId {
    DocumentId::of(DocumentType::OrdinaryPassport, number)
}

pub fn holder() -> PersonId {
    PersonId::of(
        &CITIZEN_ID.parse::<CitizenId>().expect("citizen id"),
        CHINESE_NAME,
    )
}

pub fn location() -> Location {
    Location {
        unit: UNIT.parse().expect("credit code"),
        device: "XJH-Q2555061"
            .parse::<DeviceSerial>()
            .expect("device serial"),
        drawer: Drawer {
            body: "G1".into(),
            row: 1,
            column: 2,
        },
    }
}

pub fn deposit(number: &DocumentNumber) -> DocumentCommand {
    DocumentCommand::Deposit(Deposited {
        kind: DepositKind::New,
        record: record(number).into(),
        location: location(),
        operator: Some("admin01".into()),
        operated_at: time("2026-11-23T10:30:05+08:00"),
    })
}

pub fn lend(planned_return: NaiveDate, approval: ApprovalCheck) -> DocumentCommand {
    DocumentCommand::Withdraw {
        withdrawal: Withdrawn {
            kind: WithdrawalKind::Lend,
            location: location(),
            operator: Some("admin01".into()),
            operated_at: time("2026-11-23T11:00:00+08:00"),
            purpose: Some("business trip".into()),
            planned_return: Some(planned_return),
            destination: Some("FRA".into()),
            travel_approval: Some("SP".to_string() + &"0".repeat(58)),
            anomaly: None,
        },
        approval,
    }
}

pub fn take_out() -> DocumentCommand {
    DocumentCommand::Withdraw {
        withdrawal: Withdrawn {
            kind: WithdrawalKind::TakeOut,
            location: location(),
            operator: Some("admin01".into()),
            operated_at: time("2026-11-23T11:00:00+08:00"),
            purpose: None,
            planned_return: None,
            destination: None,
            travel_approval: None,
            anomaly: None,
        },
        approval: ApprovalCheck::Missing,
    }
}

pub fn abnormal_withdrawal() -> DocumentCommand {
    DocumentCommand::WithdrawAbnormally(AbnormalWithdrawal {
        reason: AbnormalReason::ChipUnreadable,
        location: location(),
        operator: Some("admin01".into()),
        operated_at: time("2026-11-23T11:00:00+08:00"),
    })
}

pub fn crossing(direction: CrossingDirection) -> DocumentCommand {
    DocumentCommand::RecordCrossing(BorderCrossed {
        record_id: uuid::Uuid::new_v4().simple().to_string(),
        direction,
        crossed_at: time("2026-11-24T09:00:00+08:00"),
        port: "310101".into(),
        country: "FRA".into(),
        anomaly: None,
    })
}

pub fn file_application() -> DocumentCommand {
    DocumentCommand::FileApplication(ApplicationFiled {
        holder: holder(),
        document_type: DocumentType::OrdinaryPassport,
        consent_letter: None,
    })
}

pub fn confirm_issuance(number: &DocumentNumber) -> DocumentCommand {
    DocumentCommand::ConfirmIssuance(IssuanceConfirmed {
        record_id: uuid::Uuid::new_v4().simple().to_string(),
        holder: holder(),
        document_type: DocumentType::OrdinaryPassport,
        number: number.clone().into(),
        issued_on: date(2026, 11, 1),
        valid_until: date(2036, 10, 31),
    })
}

pub fn cancel() -> DocumentCommand {
    DocumentCommand::Cancel(Cancelled {
        reason: CancellationReason::Lost,
        proof: Some("police report 42".into()),
    })
}

pub fn correct_by_reconciliation() -> DocumentCommand {
    DocumentCommand::CorrectByReconciliation(ReconciliationCorrected {
        reconciliation_serial: "DZ".to_string() + &"0".repeat(58),
        location: location(),
    })
}

/// The scheduler's command, on a day well after [`PLANNED_RETURN`].
pub fn return_date_reached() -> DocumentCommand {
    DocumentCommand::MarkReturnDateReached {
        today: date(2026, 12, 31),
    }
}

/// The planned return date of sample lends.
pub const PLANNED_RETURN: (i32, u32, u32) = (2026, 12, 1);

pub fn planned_return() -> NaiveDate {
    date(PLANNED_RETURN.0, PLANNED_RETURN.1, PLANNED_RETURN.2)
}

pub fn person_details() -> PersonDetails {
    PersonDetails {
        name: CHINESE_NAME.into(),
        citizen_id: CITIZEN_ID.parse().expect("citizen id"),
        phone: Some("13800000000".into()),
        position: Some("处长".into()),
        registered_documents: None,
    }
}

pub fn answer() -> FilingAnswered {
    FilingAnswered {
        filing_serial: "BB".to_string() + &"0".repeat(58),
        remark: None,
    }
}

pub fn submit_filing() -> PersonCommand {
    PersonCommand::SubmitFiling(FilingSubmitted {
        filing_serial: "BB".to_string() + &"0".repeat(58),
        unit: UNIT.parse().expect("credit code"),
        details: person_details().into(),
    })
}

pub fn submit_change() -> PersonCommand {
    let mut details = person_details();
    details.phone = Some("13900000000".into());
    PersonCommand::SubmitChange(ChangeSubmitted {
        filing_serial: "BB".to_string() + &"1".repeat(58),
        details: details.into(),
    })
}

pub fn submit_revocation() -> PersonCommand {
    PersonCommand::SubmitRevocation(RevocationSubmitted {
        filing_serial: "BB".to_string() + &"2".repeat(58),
    })
}

pub fn enroll() -> CabinetCommand {
    CabinetCommand::Enroll(Enrolled {
        unit: UNIT.parse().expect("credit code"),
        model: "ZNG-100".into(),
        bodies: vec![CabinetBody {
            serial: "G1".into(),
            rows: 4,
            columns: 5,
        }],
        public_key_pem: "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n".into(),
    })
}

pub fn activate() -> CabinetCommand {
    CabinetCommand::Activate(Activated {
        unit_name: "测试单位".into(),
        contact: None,
        contact_phone: None,
        administrators: vec![],
        activated_at: time("2026-11-23T09:00:00+08:00"),
    })
}

pub fn disable() -> CabinetCommand {
    CabinetCommand::Disable(Disabled {
        reason: Some("decommissioned".into()),
    })
}

pub fn raise_alarm() -> CabinetCommand {
    CabinetCommand::RaiseAlarm(custody_domain::cabinet::AlarmRaised {
        kind: "tamper".into(),
        content: "door forced".into(),
        raised_at: time("2026-11-23T12:00:00+08:00"),
    })
}

/// A business serial (YWLSH) of the given prefix nobody else uses.
pub fn fresh_serial(prefix: &str) -> String {
    format!(
        "{prefix}000001{}000001{}",
        "20261123103005",
        uuid::Uuid::new_v4().simple()
    )
}

/// Metadata of a cabinet report with its own business serial.
pub fn reported(serial: &str) -> EventMetadata {
    EventMetadata {
        business_serial: Some(serial.to_string()),
        idempotency_key: Some(serial.to_string()),
        sender: "XJH-Q2555061".into(),
        request_id: Some(uuid::Uuid::new_v4().simple().to_string()),
        envelope_sm3: None,
        recorded_at: None,
        content_sm3: None,
    }
}

/// Metadata of a command with no business serial (the platform's own, or a test's set-up).
pub fn unkeyed() -> EventMetadata {
    EventMetadata {
        sender: "test".into(),
        ..EventMetadata::default()
    }
}
