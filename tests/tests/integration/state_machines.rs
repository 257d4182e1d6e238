//! Every state × every event of each aggregate, through the application service on a real store:
//! allowed pairs reach the table's state and append one event; all others are refused with
//! E_ILLEGAL_TRANSITION naming the current state, and append nothing.

use custody_commands::{CommandError, Commands, ManualClock, Outcome};
use custody_domain::cabinet::{Cabinet, CabinetCommand, CabinetEventKind, CabinetState};
use custody_domain::document::{
    ApprovalCheck, CrossingDirection, Document, DocumentCommand, DocumentEventKind, DocumentState,
};
use custody_domain::identifiers::{CitizenId, PersonId};
use custody_domain::person::{Person, PersonCommand, PersonEventKind, PersonState};
use custody_domain::transitions::{next_state, Named, Rule};
use custody_domain::{cabinet, document, person, DomainError};
use custody_tests::samples::{self, *};
use custody_tests::{StoreKind, TestStore};
use std::sync::Arc;

/// One aggregate's machine, as the exhaustive test drives it.
trait Machine {
    type Aggregate: cqrs_es::Aggregate<Error = DomainError> + Clone + 'static;
    type State: Named;
    type Kind: Named;
    type Command: Clone;
    const TYPE: &'static str;
    fn table() -> &'static [Rule<Self::State, Self::Kind>];
    fn fresh_id() -> String;
    /// Commands that bring a fresh aggregate to `state` by legal steps.
    fn path_to(state: Self::State, id: &str) -> Vec<Self::Command>;
    /// A command whose event is of `kind`.
    fn command_for(kind: Self::Kind, id: &str) -> Self::Command;
    async fn run(
        commands: &Commands,
        id: &str,
        command: Self::Command,
    ) -> Result<Outcome, CommandError>;
    fn state_of(aggregate: &Self::Aggregate) -> Self::State;
}

struct DocumentMachine;
impl Machine for DocumentMachine {
    type Aggregate = Document;
    type State = DocumentState;
    type Kind = DocumentEventKind;
    type Command = DocumentCommand;
    const TYPE: &'static str = "Document";
    fn table() -> &'static [Rule<DocumentState, DocumentEventKind>] {
        document::TRANSITIONS
    }
    fn fresh_id() -> String {
        fresh_document_number().to_string()
    }
    fn path_to(state: DocumentState, number: &str) -> Vec<DocumentCommand> {
        let number = number.parse().expect("number");
        match state {
            DocumentState::Unknown => vec![],
            DocumentState::Applying => vec![file_application()],
            DocumentState::InCabinet => vec![a_day_earlier(deposit(&number))],
            DocumentState::Withdrawn => vec![
                a_day_earlier(deposit(&number)),
                a_day_earlier(lend(planned_return(), ApprovalCheck::Valid)),
            ],
            DocumentState::AwaitingReturn => vec![confirm_issuance(&number)],
            DocumentState::Cancelled => vec![cancel()],
        }
    }
    fn command_for(kind: DocumentEventKind, number: &str) -> DocumentCommand {
        let number = number.parse().expect("number");
        match kind {
            DocumentEventKind::ApplicationFiled => file_application(),
            DocumentEventKind::IssuanceConfirmed => confirm_issuance(&number),
            DocumentEventKind::Deposited => deposit(&number),
            DocumentEventKind::Withdrawn => lend(planned_return(), ApprovalCheck::Valid),
            DocumentEventKind::AbnormalWithdrawal => abnormal_withdrawal(),
            DocumentEventKind::BorderCrossedExit => crossing(CrossingDirection::Exit),
            DocumentEventKind::BorderCrossedEntry => crossing(CrossingDirection::Entry),
            DocumentEventKind::ReturnDateReached => return_date_reached(),
            DocumentEventKind::Cancelled => cancel(),
            DocumentEventKind::ReconciliationCorrected => correct_by_reconciliation(),
        }
    }
    async fn run(
        c: &Commands,
        number: &str,
        command: DocumentCommand,
    ) -> Result<Outcome, CommandError> {
        let id = document_id(&number.parse().expect("number"));
        c.document(id.as_str(), command, unkeyed()).await
    }
    fn state_of(aggregate: &Document) -> DocumentState {
        aggregate.state
    }
}

/// A path's cabinet operation a day before the samples' times, so that the command under test
/// always comes after its path in business time (docs/protocol.md, "Time rules").
fn a_day_earlier(command: DocumentCommand) -> DocumentCommand {
    let day = chrono::Duration::days(1);
    match command {
        DocumentCommand::Deposit(mut deposited) => {
            deposited.operated_at -= day;
            DocumentCommand::Deposit(deposited)
        }
        DocumentCommand::Withdraw {
            mut withdrawal,
            approval,
        } => {
            withdrawal.operated_at -= day;
            DocumentCommand::Withdraw {
                withdrawal,
                approval,
            }
        }
        other => other,
    }
}

struct PersonMachine;
impl Machine for PersonMachine {
    type Aggregate = Person;
    type State = PersonState;
    type Kind = PersonEventKind;
    type Command = PersonCommand;
    const TYPE: &'static str = "Person";
    fn table() -> &'static [Rule<PersonState, PersonEventKind>] {
        person::TRANSITIONS
    }
    fn fresh_id() -> String {
        let citizen: CitizenId = samples::CITIZEN_ID.parse().expect("citizen id");
        PersonId::of(&citizen, &uuid::Uuid::new_v4().to_string()).to_string()
    }
    fn path_to(state: PersonState, _: &str) -> Vec<PersonCommand> {
        let filed = vec![submit_filing(), PersonCommand::AcceptFiling(answer())];
        match state {
            PersonState::Unknown => vec![],
            PersonState::Filing => vec![submit_filing()],
            PersonState::Filed => filed,
            PersonState::Changing => [filed, vec![submit_change()]].concat(),
            PersonState::Revoking => [filed, vec![submit_revocation()]].concat(),
            PersonState::Revoked => [
                filed,
                vec![
                    submit_revocation(),
                    PersonCommand::AcceptRevocation(answer()),
                ],
            ]
            .concat(),
            PersonState::Rejected => vec![submit_filing(), PersonCommand::RefuseFiling(answer())],
            PersonState::Erased => vec![erase_personal_data()],
        }
    }
    fn command_for(kind: PersonEventKind, _: &str) -> PersonCommand {
        match kind {
            PersonEventKind::FilingSubmitted => submit_filing(),
            PersonEventKind::FilingAccepted => PersonCommand::AcceptFiling(answer()),
            PersonEventKind::FilingRefused => PersonCommand::RefuseFiling(answer()),
            PersonEventKind::ChangeSubmitted => submit_change(),
            PersonEventKind::ChangeAccepted => PersonCommand::AcceptChange(answer()),
            PersonEventKind::ChangeRefused => PersonCommand::RefuseChange(answer()),
            PersonEventKind::RevocationSubmitted => submit_revocation(),
            PersonEventKind::RevocationAccepted => PersonCommand::AcceptRevocation(answer()),
            PersonEventKind::RevocationRefused => PersonCommand::RefuseRevocation(answer()),
            PersonEventKind::PersonalDataErased => erase_personal_data(),
        }
    }
    async fn run(c: &Commands, id: &str, command: PersonCommand) -> Result<Outcome, CommandError> {
        c.person(id, command, unkeyed()).await
    }
    fn state_of(aggregate: &Person) -> PersonState {
        aggregate.state
    }
}

fn erase_personal_data() -> PersonCommand {
    PersonCommand::ErasePersonalData(person::PersonalDataErased {
        ground: person::ErasureGround::PurposeFulfilled,
        reference: "RS-2026-17".into(),
        erased_by: "tok-operator".into(),
    })
}

struct CabinetMachine;
impl Machine for CabinetMachine {
    type Aggregate = Cabinet;
    type State = CabinetState;
    type Kind = CabinetEventKind;
    type Command = CabinetCommand;
    const TYPE: &'static str = "Cabinet";
    fn table() -> &'static [Rule<CabinetState, CabinetEventKind>] {
        cabinet::TRANSITIONS
    }
    fn fresh_id() -> String {
        format!("DEV-{}", uuid::Uuid::new_v4().simple())
    }
    fn path_to(state: CabinetState, _: &str) -> Vec<CabinetCommand> {
        match state {
            CabinetState::Unknown => vec![],
            CabinetState::Enrolled => vec![enroll()],
            CabinetState::Active => vec![enroll(), activate()],
            CabinetState::Disabled => vec![enroll(), disable()],
        }
    }
    fn command_for(kind: CabinetEventKind, _: &str) -> CabinetCommand {
        match kind {
            CabinetEventKind::Enrolled => enroll(),
            CabinetEventKind::Activated => activate(),
            CabinetEventKind::Disabled => disable(),
            CabinetEventKind::AlarmRaised => raise_alarm(),
        }
    }
    async fn run(c: &Commands, id: &str, command: CabinetCommand) -> Result<Outcome, CommandError> {
        c.cabinet(id, command, unkeyed()).await
    }
    fn state_of(aggregate: &Cabinet) -> CabinetState {
        aggregate.state
    }
}

/// The stored id of an aggregate the machine addresses by `key`.
fn stored_id<M: Machine>(key: &str) -> String {
    if M::TYPE == "Document" {
        document_id(&key.parse().expect("number")).to_string()
    } else {
        key.to_string()
    }
}

async fn exhaustive<M: Machine>(kind: StoreKind) -> usize {
    let store = TestStore::new(kind).await;
    let commands = Commands::new(
        store.log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    );
    let mut checked = 0;
    for &state in M::State::ALL {
        for &event in M::Kind::ALL {
            let key = M::fresh_id();
            for step in M::path_to(state, &key) {
                M::run(&commands, &key, step)
                    .await
                    .unwrap_or_else(|e| panic!("path to {state:?}: {e}"));
            }
            let id = stored_id::<M>(&key);
            let reached: M::Aggregate = commands.load(&id).await.expect("load");
            assert_eq!(M::state_of(&reached), state, "path to {state:?}");
            let before = store
                .log
                .events_of(M::TYPE, &id)
                .await
                .expect("events")
                .len();

            let result = M::run(&commands, &key, M::command_for(event, &key)).await;
            let after_events = store.log.events_of(M::TYPE, &id).await.expect("events");
            let after: M::Aggregate = commands.load(&id).await.expect("load");
            match next_state(M::table(), state, event) {
                Some(to) => {
                    assert_eq!(
                        result.ok(),
                        Some(Outcome::Appended),
                        "{event:?} from {state:?}"
                    );
                    assert_eq!(M::state_of(&after), to, "{event:?} from {state:?}");
                    assert_eq!(after_events.len(), before + 1, "{event:?} from {state:?}");
                }
                None => {
                    match result {
                        Err(CommandError::Domain(DomainError::IllegalTransition {
                            current, ..
                        })) => assert_eq!(current, state.name(), "{event:?} from {state:?}"),
                        other => panic!("{event:?} from {state:?}: expected E_ILLEGAL_TRANSITION, got {other:?}"),
                    }
                    assert_eq!(
                        after_events.len(),
                        before,
                        "{event:?} from {state:?} appended"
                    );
                    assert_eq!(M::state_of(&after), state);
                }
            }
            checked += 1;
        }
    }
    checked
}

#[tokio::test]
async fn document_every_state_times_every_event() {
    for kind in StoreKind::ALL {
        let checked = exhaustive::<DocumentMachine>(kind).await;
        assert_eq!(
            checked,
            DocumentState::ALL.len() * DocumentEventKind::ALL.len()
        );
    }
}

#[tokio::test]
async fn person_every_state_times_every_event() {
    for kind in StoreKind::ALL {
        let checked = exhaustive::<PersonMachine>(kind).await;
        assert_eq!(checked, PersonState::ALL.len() * PersonEventKind::ALL.len());
    }
}

#[tokio::test]
async fn cabinet_every_state_times_every_event() {
    for kind in StoreKind::ALL {
        let checked = exhaustive::<CabinetMachine>(kind).await;
        assert_eq!(
            checked,
            CabinetState::ALL.len() * CabinetEventKind::ALL.len()
        );
    }
}

#[tokio::test]
async fn the_error_code_of_an_illegal_transition_is_stable() {
    let store = TestStore::new(StoreKind::Embedded).await;
    let commands = Commands::new(
        store.log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    );
    let number = fresh_document_number();
    let error = commands
        .document(document_id(&number).as_str(), take_out(), unkeyed())
        .await
        .expect_err("a document that is not in a cabinet cannot be taken out");
    assert_eq!(
        error.to_string(),
        "Withdrawn is not allowed for a Document in state Unknown"
    );
    assert_eq!(
        custody_api::WireError::from(error).code.as_str(),
        "E_ILLEGAL_TRANSITION"
    );
}
