//! Document (SPEC §3.1): the table, and the rules the aggregate decides beyond it.

use chrono::{DateTime, FixedOffset, NaiveDate};
use cqrs_es::test::TestFramework;
use custody_domain::document::*;
use custody_domain::identifiers::{CitizenId, DocumentNumber, DocumentType, PersonId};
use custody_domain::values::{DocumentRecord, Drawer, Location, Sex};
use custody_domain::DomainError;

use crate::given_when_then::{replay, run_every_pair, Machine};

use DocumentEventKind as K;
use DocumentState as S;

const CITIZEN_ID: &str = "11010519491231002X";
const CHINESE_NAME: &str = "张三";

fn at(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).expect("test time")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

/// The planned return date of the lend every `Withdrawn` history holds.
fn planned_return() -> NaiveDate {
    day(2026, 12, 1)
}

fn number() -> DocumentNumber {
    "E12345678".parse().expect("document number")
}

fn holder() -> PersonId {
    PersonId::of(
        &CITIZEN_ID.parse::<CitizenId>().expect("citizen id"),
        CHINESE_NAME,
    )
}

fn location() -> Location {
    Location {
        unit: "91350100M000100Y43".parse().expect("credit code"),
        device: "XJH-Q2555061".parse().expect("device serial"),
        drawer: Drawer {
            body: "G1".into(),
            row: 1,
            column: 2,
        },
    }
}

fn filed() -> ApplicationFiled {
    ApplicationFiled {
        holder: holder(),
        document_type: DocumentType::OrdinaryPassport,
        consent_letter: Some("TY20261101000001".into()),
    }
}

fn issued() -> IssuanceConfirmed {
    IssuanceConfirmed {
        record_id: "BZ-1".into(),
        holder: holder(),
        document_type: DocumentType::OrdinaryPassport,
        number: number().into(),
        issued_on: day(2026, 11, 20),
        valid_until: day(2036, 11, 19),
    }
}

fn deposited() -> Deposited {
    Deposited {
        kind: DepositKind::New,
        record: DocumentRecord {
            document_type: DocumentType::OrdinaryPassport,
            number: number(),
            citizen_id: CITIZEN_ID.parse().expect("citizen id"),
            chinese_name: CHINESE_NAME.into(),
            latin_name: "ZHANG SAN".into(),
            birth_date: day(1949, 12, 31),
            sex: Sex::Male,
            valid_until: day(2036, 11, 19),
        }
        .into(),
        location: location(),
        operator: Some("admin01".into()),
        operated_at: at("2026-11-23T10:30:05+08:00"),
    }
}

fn withdrawal(kind: WithdrawalKind, planned_return: Option<NaiveDate>) -> Withdrawn {
    Withdrawn {
        kind,
        location: location(),
        operator: Some("admin01".into()),
        operated_at: at("2026-11-24T09:00:00+08:00"),
        purpose: Some("business trip".into()),
        planned_return,
        destination: Some("SG".into()),
        travel_approval: Some("SP20261120000001".into()),
        anomaly: None,
    }
}

fn lent() -> Withdrawn {
    withdrawal(WithdrawalKind::Lend, Some(planned_return()))
}

fn abnormal() -> AbnormalWithdrawal {
    AbnormalWithdrawal {
        reason: AbnormalReason::ChipUnreadable,
        location: location(),
        operator: None,
        operated_at: at("2026-11-24T09:00:00+08:00"),
    }
}

fn crossing(direction: CrossingDirection, anomaly: Option<Anomaly>) -> BorderCrossed {
    BorderCrossed {
        record_id: "CRJ-1".into(),
        direction,
        crossed_at: at("2026-11-25T08:00:00+08:00"),
        port: "Luohu".into(),
        country: "HKG".into(),
        anomaly,
    }
}

fn cancelled() -> Cancelled {
    Cancelled {
        reason: CancellationReason::Lost,
        proof: Some("report-1".into()),
    }
}

fn corrected() -> ReconciliationCorrected {
    ReconciliationCorrected {
        reconciliation_serial: "DZ20261123000001".into(),
        location: location(),
    }
}

fn lend_command(withdrawal: Withdrawn, approval: ApprovalCheck) -> DocumentCommand {
    DocumentCommand::Withdraw {
        withdrawal,
        approval,
    }
}

fn crossing_command(direction: CrossingDirection) -> DocumentCommand {
    DocumentCommand::RecordCrossing(crossing(direction, None))
}

/// SPEC §3.1: a crossing of a document with no events, or an exit while in a cabinet, is flagged.
fn crossing_anomaly(state: DocumentState, direction: CrossingDirection) -> Option<Anomaly> {
    match (state, direction) {
        (S::Unknown, _) => Some(Anomaly::CrossingOfUnknownDocument),
        (S::InCabinet, CrossingDirection::Exit) => Some(Anomaly::ExitWhileInCabinet),
        _ => None,
    }
}

impl Machine for Document {
    type State = DocumentState;
    type Kind = DocumentEventKind;

    fn state(&self) -> DocumentState {
        self.state
    }

    fn kind(event: &DocumentEvent) -> DocumentEventKind {
        event.kind()
    }

    fn spec(state: DocumentState, kind: DocumentEventKind) -> Option<DocumentState> {
        match (kind, state) {
            (K::ApplicationFiled, S::Unknown) => Some(S::Applying),
            (K::IssuanceConfirmed, S::Unknown | S::Applying) => Some(S::AwaitingReturn),
            (K::Deposited, S::Unknown | S::AwaitingReturn | S::Withdrawn | S::Applying) => {
                Some(S::InCabinet)
            }
            (K::Withdrawn | K::AbnormalWithdrawal, S::InCabinet) => Some(S::Withdrawn),
            // A crossing is kept whatever the state; only an entry while out moves the state.
            (K::BorderCrossedEntry, S::Withdrawn) => Some(S::AwaitingReturn),
            (K::BorderCrossedExit | K::BorderCrossedEntry, same) => Some(same),
            (K::ReturnDateReached, S::Withdrawn) => Some(S::AwaitingReturn),
            (K::Cancelled, from) if from != S::Cancelled => Some(S::Cancelled),
            (K::ReconciliationCorrected, S::Withdrawn | S::AwaitingReturn) => Some(S::InCabinet),
            _ => None,
        }
    }

    fn given(state: DocumentState) -> Vec<DocumentEvent> {
        use DocumentEvent as Ev;
        match state {
            S::Unknown => vec![],
            S::Applying => vec![Ev::ApplicationFiled(filed())],
            S::InCabinet => vec![Ev::Deposited(deposited())],
            // A lend, so that the return date can be reached from here.
            // Before the builders' times, so that every command of `when` comes after it.
            S::Withdrawn => vec![
                Ev::Deposited(Deposited {
                    operated_at: at("2026-11-22T10:00:00+08:00"),
                    ..deposited()
                }),
                Ev::Withdrawn(Withdrawn {
                    operated_at: at("2026-11-22T11:00:00+08:00"),
                    ..lent()
                }),
            ],
            S::AwaitingReturn => vec![Ev::IssuanceConfirmed(issued())],
            S::Cancelled => vec![Ev::Cancelled(cancelled())],
        }
    }

    fn when(state: DocumentState, kind: DocumentEventKind) -> (DocumentCommand, DocumentEvent) {
        use DocumentCommand as C;
        use DocumentEvent as Ev;
        match kind {
            K::ApplicationFiled => (C::FileApplication(filed()), Ev::ApplicationFiled(filed())),
            K::IssuanceConfirmed => (
                C::ConfirmIssuance(issued()),
                Ev::IssuanceConfirmed(issued()),
            ),
            K::Deposited => (C::Deposit(deposited()), Ev::Deposited(deposited())),
            K::Withdrawn => (
                lend_command(lent(), ApprovalCheck::Valid),
                Ev::Withdrawn(lent()),
            ),
            K::AbnormalWithdrawal => (
                C::WithdrawAbnormally(abnormal()),
                Ev::AbnormalWithdrawal(abnormal()),
            ),
            K::BorderCrossedExit | K::BorderCrossedEntry => {
                let direction = if kind == K::BorderCrossedExit {
                    CrossingDirection::Exit
                } else {
                    CrossingDirection::Entry
                };
                (
                    crossing_command(direction),
                    Ev::BorderCrossed(crossing(direction, crossing_anomaly(state, direction))),
                )
            }
            // The day after the `Withdrawn` history's planned return date: due. From any other
            // state the table refuses before the date is looked at.
            K::ReturnDateReached => {
                let today = planned_return().succ_opt().expect("next day");
                (
                    C::MarkReturnDateReached { today },
                    Ev::ReturnDateReached(ReturnDateReached {
                        planned_return: planned_return(),
                        observed_on: today,
                    }),
                )
            }
            K::Cancelled => (C::Cancel(cancelled()), Ev::Cancelled(cancelled())),
            K::ReconciliationCorrected => (
                C::CorrectByReconciliation(corrected()),
                Ev::ReconciliationCorrected(corrected()),
            ),
        }
    }
}

#[test]
fn every_state_times_every_event() {
    let (allowed, refused) = run_every_pair::<Document>();
    assert_eq!((allowed, refused), (29, 31));
}

fn given(state: DocumentState) -> cqrs_es::test::AggregateTestExecutor<Document> {
    TestFramework::<Document>::with(()).given(Document::given(state))
}

#[test]
fn a_lend_without_a_return_date_is_refused() {
    given(S::InCabinet)
        .when(lend_command(
            withdrawal(WithdrawalKind::Lend, None),
            ApprovalCheck::Valid,
        ))
        .then_expect_error(DomainError::MissingField("retdate"));
}

#[test]
fn a_take_out_needs_no_return_date() {
    let take_out = withdrawal(WithdrawalKind::TakeOut, None);
    given(S::InCabinet)
        .when(lend_command(take_out.clone(), ApprovalCheck::Missing))
        .then_expect_events(vec![DocumentEvent::Withdrawn(take_out)]);
}

#[test]
fn a_lend_without_a_valid_approval_is_recorded_and_flagged() {
    given(S::InCabinet)
        .when(lend_command(lent(), ApprovalCheck::Missing))
        .then_expect_events(vec![DocumentEvent::Withdrawn(Withdrawn {
            anomaly: Some(Anomaly::WithdrawalWithoutApproval),
            ..lent()
        })]);
}

#[test]
fn the_caller_cannot_flag_a_withdrawal() {
    let flagged = Withdrawn {
        anomaly: Some(Anomaly::WithdrawalWithoutApproval),
        ..lent()
    };
    given(S::InCabinet)
        .when(lend_command(flagged, ApprovalCheck::Valid))
        .then_expect_events(vec![DocumentEvent::Withdrawn(lent())]);
}

#[test]
fn an_exit_while_in_the_cabinet_is_recorded_and_flagged() {
    given(S::InCabinet)
        .when(crossing_command(CrossingDirection::Exit))
        .then_expect_events(vec![DocumentEvent::BorderCrossed(crossing(
            CrossingDirection::Exit,
            Some(Anomaly::ExitWhileInCabinet),
        ))]);
}

#[test]
fn an_entry_while_in_the_cabinet_is_not_flagged() {
    given(S::InCabinet)
        .when(crossing_command(CrossingDirection::Entry))
        .then_expect_events(vec![DocumentEvent::BorderCrossed(crossing(
            CrossingDirection::Entry,
            None,
        ))]);
}

#[test]
fn a_crossing_of_an_unknown_document_is_recorded_and_flagged() {
    for direction in [CrossingDirection::Exit, CrossingDirection::Entry] {
        TestFramework::<Document>::with(())
            .given_no_previous_events()
            .when(crossing_command(direction))
            .then_expect_events(vec![DocumentEvent::BorderCrossed(crossing(
                direction,
                Some(Anomaly::CrossingOfUnknownDocument),
            ))]);
    }
}

#[test]
fn the_caller_cannot_flag_a_crossing() {
    let flagged = crossing(CrossingDirection::Exit, Some(Anomaly::ExitWhileInCabinet));
    given(S::Withdrawn)
        .when(DocumentCommand::RecordCrossing(flagged))
        .then_expect_events(vec![DocumentEvent::BorderCrossed(crossing(
            CrossingDirection::Exit,
            None,
        ))]);
}

#[test]
fn the_return_date_is_not_reached_on_or_before_the_planned_day() {
    for today in [day(2026, 11, 30), planned_return()] {
        given(S::Withdrawn)
            .when(DocumentCommand::MarkReturnDateReached { today })
            .then_expect_error(DomainError::NotYetDue {
                planned_return: planned_return(),
                today,
            });
    }
}

#[test]
fn the_return_date_is_reached_the_day_after() {
    let today = day(2026, 12, 2);
    given(S::Withdrawn)
        .when(DocumentCommand::MarkReturnDateReached { today })
        .then_expect_events(vec![DocumentEvent::ReturnDateReached(ReturnDateReached {
            planned_return: planned_return(),
            observed_on: today,
        })]);
}

/// `Withdrawn` without a planned return date (a take-out, an abnormal withdrawal) is never due.
#[test]
fn a_withdrawal_without_a_planned_return_date_is_never_due() {
    let take_out = DocumentEvent::Withdrawn(withdrawal(WithdrawalKind::TakeOut, None));
    let abnormal = DocumentEvent::AbnormalWithdrawal(abnormal());
    for out in [take_out, abnormal] {
        TestFramework::<Document>::with(())
            .given(vec![DocumentEvent::Deposited(deposited())])
            .and(vec![out])
            .when(DocumentCommand::MarkReturnDateReached {
                today: day(2030, 1, 1),
            })
            .then_expect_error(DomainError::MissingField("planned_return"));
    }
}

#[test]
fn a_deposit_ends_the_lend() {
    let history = Document::given(S::Withdrawn)
        .into_iter()
        .chain([DocumentEvent::Deposited(Deposited {
            kind: DepositKind::Return,
            ..deposited()
        })]);
    let document: Document = replay(history);
    assert_eq!(document.state, S::InCabinet);
    assert_eq!(document.planned_return, None);
    assert_eq!(document.location, Some(location()));
}

// Time rules (docs/protocol.md, "Time rules").

#[test]
fn a_cabinet_operation_before_the_latest_one_is_refused() {
    // Deposited at 2026-11-23T10:30:05; a take-out an hour earlier cannot have followed it.
    let earlier = Withdrawn {
        operated_at: at("2026-11-23T09:30:05+08:00"),
        ..withdrawal(WithdrawalKind::TakeOut, None)
    };
    given(S::InCabinet)
        .when(lend_command(earlier, ApprovalCheck::Missing))
        .then_expect_error(DomainError::OutOfOrder {
            field: "optime",
            at: "2026-11-23T09:30:05+08:00".into(),
            latest: "2026-11-23T10:30:05+08:00".into(),
        });
}

#[test]
fn a_late_report_in_order_is_accepted_however_late() {
    // A cabinet offline for weeks reports, in order, at the same second and then later.
    let same_second = Withdrawn {
        operated_at: at("2026-11-23T10:30:05+08:00"),
        ..withdrawal(WithdrawalKind::TakeOut, None)
    };
    given(S::InCabinet)
        .when(lend_command(same_second.clone(), ApprovalCheck::Missing))
        .then_expect_events(vec![DocumentEvent::Withdrawn(same_second)]);
}

#[test]
fn a_lend_due_back_before_it_left_is_refused() {
    let backwards = withdrawal(WithdrawalKind::Lend, Some(day(2026, 11, 23)));
    given(S::InCabinet)
        .when(lend_command(backwards, ApprovalCheck::Valid))
        .then_expect_error(DomainError::InvalidField {
            field: "retdate",
            reason: "2026-11-23 is before the operation date 2026-11-24".into(),
        });
    let same_day = withdrawal(WithdrawalKind::Lend, Some(day(2026, 11, 24)));
    given(S::InCabinet)
        .when(lend_command(same_day.clone(), ApprovalCheck::Valid))
        .then_expect_events(vec![DocumentEvent::Withdrawn(same_day)]);
}

#[test]
fn a_crossing_is_not_held_to_the_cabinets_order() {
    // The exit-entry administration reports on its own timeline, and every crossing is kept.
    let before_the_lend = BorderCrossed {
        crossed_at: at("2026-11-20T08:00:00+08:00"),
        ..crossing(CrossingDirection::Exit, None)
    };
    given(S::Withdrawn)
        .when(DocumentCommand::RecordCrossing(before_the_lend.clone()))
        .then_expect_events(vec![DocumentEvent::BorderCrossed(before_the_lend)]);
}
