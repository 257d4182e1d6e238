//! Person (SPEC §3.2): the table, and what a change's answer does to the details in force.

use custody_domain::person::*;

use crate::given_when_then::{replay, run_every_pair, Machine};

use PersonEventKind as K;
use PersonState as S;

const SERIAL: &str = "BB20261101000001";

fn details(position: &str) -> PersonDetails {
    PersonDetails {
        name: "张三".into(),
        citizen_id: "11010519491231002X".parse().expect("citizen id"),
        phone: Some("13800000000".into()),
        position: Some(position.into()),
        registered_documents: None,
    }
}

fn submitted() -> FilingSubmitted {
    FilingSubmitted {
        filing_serial: SERIAL.into(),
        unit: "91350100M000100Y43".parse().expect("credit code"),
        details: details("engineer").into(),
    }
}

fn change() -> ChangeSubmitted {
    ChangeSubmitted {
        filing_serial: SERIAL.into(),
        details: details("director").into(),
    }
}

fn erasure() -> PersonalDataErased {
    PersonalDataErased {
        ground: ErasureGround::PurposeFulfilled,
        reference: "RS-2026-17".into(),
        erased_by: "tok-operator".into(),
    }
}

fn revocation() -> RevocationSubmitted {
    RevocationSubmitted {
        filing_serial: SERIAL.into(),
    }
}

fn answer() -> FilingAnswered {
    FilingAnswered {
        filing_serial: SERIAL.into(),
        remark: Some("ok".into()),
    }
}

impl Machine for Person {
    type State = PersonState;
    type Kind = PersonEventKind;

    fn state(&self) -> PersonState {
        self.state
    }

    fn kind(event: &PersonEvent) -> PersonEventKind {
        event.kind()
    }

    fn spec(state: PersonState, kind: PersonEventKind) -> Option<PersonState> {
        match (kind, state) {
            (K::FilingSubmitted, S::Unknown | S::Rejected) => Some(S::Filing),
            (K::FilingAccepted, S::Filing) => Some(S::Filed),
            (K::FilingRefused, S::Filing) => Some(S::Rejected),
            (K::ChangeSubmitted, S::Filed) => Some(S::Changing),
            (K::ChangeAccepted | K::ChangeRefused, S::Changing) => Some(S::Filed),
            (K::RevocationSubmitted, S::Filed) => Some(S::Revoking),
            (K::RevocationAccepted, S::Revoking) => Some(S::Revoked),
            (K::RevocationRefused, S::Revoking) => Some(S::Filed),
            // Erasure by person (docs/personal-data.md): once the person is gone from the unit.
            (K::PersonalDataErased, S::Unknown | S::Revoked | S::Rejected) => Some(S::Erased),
            _ => None,
        }
    }

    fn given(state: PersonState) -> Vec<PersonEvent> {
        use PersonEvent as Ev;
        let filed = || {
            vec![
                Ev::FilingSubmitted(submitted()),
                Ev::FilingAccepted(answer()),
            ]
        };
        let then = |mut events: Vec<PersonEvent>, more: PersonEvent| {
            events.push(more);
            events
        };
        match state {
            S::Unknown => vec![],
            S::Filing => vec![Ev::FilingSubmitted(submitted())],
            S::Filed => filed(),
            S::Changing => then(filed(), Ev::ChangeSubmitted(change())),
            S::Revoking => then(filed(), Ev::RevocationSubmitted(revocation())),
            S::Revoked => then(Self::given(S::Revoking), Ev::RevocationAccepted(answer())),
            S::Rejected => then(Self::given(S::Filing), Ev::FilingRefused(answer())),
            S::Erased => then(Self::given(S::Revoked), Ev::PersonalDataErased(erasure())),
        }
    }

    fn when(_: PersonState, kind: PersonEventKind) -> (PersonCommand, PersonEvent) {
        use PersonCommand as C;
        use PersonEvent as Ev;
        match kind {
            K::FilingSubmitted => (
                C::SubmitFiling(submitted()),
                Ev::FilingSubmitted(submitted()),
            ),
            K::FilingAccepted => (C::AcceptFiling(answer()), Ev::FilingAccepted(answer())),
            K::FilingRefused => (C::RefuseFiling(answer()), Ev::FilingRefused(answer())),
            K::ChangeSubmitted => (C::SubmitChange(change()), Ev::ChangeSubmitted(change())),
            K::ChangeAccepted => (C::AcceptChange(answer()), Ev::ChangeAccepted(answer())),
            K::ChangeRefused => (C::RefuseChange(answer()), Ev::ChangeRefused(answer())),
            K::RevocationSubmitted => (
                C::SubmitRevocation(revocation()),
                Ev::RevocationSubmitted(revocation()),
            ),
            K::RevocationAccepted => (
                C::AcceptRevocation(answer()),
                Ev::RevocationAccepted(answer()),
            ),
            K::RevocationRefused => (
                C::RefuseRevocation(answer()),
                Ev::RevocationRefused(answer()),
            ),
            K::PersonalDataErased => (
                C::ErasePersonalData(erasure()),
                Ev::PersonalDataErased(erasure()),
            ),
        }
    }
}

#[test]
fn every_state_times_every_event() {
    let (allowed, refused) = run_every_pair::<Person>();
    assert_eq!((allowed, refused), (13, 67));
}

/// An accepted change puts the submitted details in force; a refused one keeps the old ones.
#[test]
fn the_answer_to_a_change_decides_the_details_in_force() {
    let answers = [
        (PersonEvent::ChangeAccepted(answer()), "director"),
        (PersonEvent::ChangeRefused(answer()), "engineer"),
    ];
    for (answered, in_force) in answers {
        let person: Person = replay(Person::given(S::Changing).into_iter().chain([answered]));
        assert_eq!(person.state, S::Filed);
        assert_eq!(person.details, Some(details(in_force)), "{in_force}");
        assert_eq!(person.pending_details, None);
    }
}

#[test]
fn a_change_in_progress_keeps_the_old_details_in_force() {
    let person: Person = replay(Person::given(S::Changing));
    assert_eq!(person.details, Some(details("engineer")));
    assert_eq!(person.pending_details, Some(details("director")));
}

/// An erased person's events come back from the log with a mark where the details were: they
/// still fold, to a person who is erased and whose details are not known any more.
#[test]
fn an_erased_persons_history_folds_without_the_details() {
    let mut events = Person::given(S::Revoked);
    for event in events.iter_mut() {
        let mut json = serde_json::to_value(&*event).expect("serialise");
        for variant in ["FilingSubmitted", "ChangeSubmitted"] {
            if json.get(variant).is_some() {
                json[variant]["details"] = serde_json::json!({"erased_for": "a".repeat(64)});
            }
        }
        *event = serde_json::from_value(json).expect("an erased mark deserialises");
    }
    events.push(PersonEvent::PersonalDataErased(erasure()));
    let person: Person = replay(events);
    assert_eq!(person.state, S::Erased);
    assert_eq!(person.details, None);
    // And a mark is never taken for details, nor details for a mark.
    let known: custody_domain::values::Personal<PersonDetails> =
        serde_json::from_value(serde_json::to_value(details("engineer")).expect("json"))
            .expect("details");
    assert_eq!(known.known(), Some(&details("engineer")));
    let refused = serde_json::from_value::<custody_domain::values::Personal<PersonDetails>>(
        serde_json::json!({"erased_for": "a".repeat(64), "name": "x"}),
    );
    assert!(
        refused.is_err(),
        "a mark with more than its one field is not a mark"
    );
}
