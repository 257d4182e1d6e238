//! Cabinet (SPEC §3.4): the table, the enrolled geometry and the drawers it allows.

use chrono::DateTime;
use cqrs_es::test::TestFramework;
use custody_domain::cabinet::*;
use custody_domain::values::Drawer;
use custody_domain::DomainError;

use crate::given_when_then::{replay, run_every_pair, Machine};

use CabinetEventKind as K;
use CabinetState as S;

fn body(serial: &str, rows: u16, columns: u16) -> CabinetBody {
    CabinetBody {
        serial: serial.into(),
        rows,
        columns,
    }
}

fn enrolled(bodies: Vec<CabinetBody>) -> Enrolled {
    Enrolled {
        unit: "91350100M000100Y43".parse().expect("credit code"),
        model: "XJH-Q25".into(),
        bodies,
        public_key_pem: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
    }
}

fn enrolled_with_one_body() -> Enrolled {
    enrolled(vec![body("G1", 4, 3)])
}

fn activated(account: &str) -> Activated {
    Activated {
        unit_name: "Unit One".into(),
        contact: None,
        contact_phone: None,
        administrators: vec![Administrator {
            account: account.into(),
            person: "李四".into(),
        }],
        activated_at: DateTime::parse_from_rfc3339("2026-11-23T09:00:00+08:00").expect("time"),
    }
}

fn disabled() -> Disabled {
    Disabled {
        reason: Some("decommissioned".into()),
    }
}

fn alarm() -> AlarmRaised {
    AlarmRaised {
        kind: "tamper".into(),
        content: "door forced".into(),
        raised_at: DateTime::parse_from_rfc3339("2026-11-23T11:00:00+08:00").expect("time"),
    }
}

impl Machine for Cabinet {
    type State = CabinetState;
    type Kind = CabinetEventKind;

    fn state(&self) -> CabinetState {
        self.state
    }

    fn kind(event: &CabinetEvent) -> CabinetEventKind {
        event.kind()
    }

    fn spec(state: CabinetState, kind: CabinetEventKind) -> Option<CabinetState> {
        match (kind, state) {
            (K::Enrolled, S::Unknown) => Some(S::Enrolled),
            // A device may initialise again once active; a disabled one has no way back.
            (K::Activated, S::Enrolled | S::Active) => Some(S::Active),
            (K::Disabled, S::Enrolled | S::Active) => Some(S::Disabled),
            (K::AlarmRaised, S::Active) => Some(S::Active),
            _ => None,
        }
    }

    fn given(state: CabinetState) -> Vec<CabinetEvent> {
        use CabinetEvent as Ev;
        let enrolled = Ev::Enrolled(enrolled_with_one_body());
        match state {
            S::Unknown => vec![],
            S::Enrolled => vec![enrolled],
            S::Active => vec![enrolled, Ev::Activated(activated("admin01"))],
            S::Disabled => vec![enrolled, Ev::Disabled(disabled())],
        }
    }

    fn when(_: CabinetState, kind: CabinetEventKind) -> (CabinetCommand, CabinetEvent) {
        use CabinetCommand as C;
        use CabinetEvent as Ev;
        match kind {
            K::Enrolled => (
                C::Enroll(enrolled_with_one_body()),
                Ev::Enrolled(enrolled_with_one_body()),
            ),
            K::Activated => (
                C::Activate(activated("admin02")),
                Ev::Activated(activated("admin02")),
            ),
            K::Disabled => (C::Disable(disabled()), Ev::Disabled(disabled())),
            K::AlarmRaised => (C::RaiseAlarm(alarm()), Ev::AlarmRaised(alarm())),
        }
    }
}

#[test]
fn every_state_times_every_event() {
    let (allowed, refused) = run_every_pair::<Cabinet>();
    assert_eq!((allowed, refused), (6, 10));
}

fn when_enrolled(bodies: Vec<CabinetBody>) -> cqrs_es::test::AggregateResultValidator<Cabinet> {
    TestFramework::<Cabinet>::with(())
        .given_no_previous_events()
        .when(CabinetCommand::Enroll(enrolled(bodies)))
}

#[test]
fn a_cabinet_without_bodies_is_not_enrolled() {
    when_enrolled(vec![]).then_expect_error(DomainError::MissingField("cabinets"));
}

#[test]
fn a_body_without_drawers_is_not_enrolled() {
    for empty in [body("G2", 0, 3), body("G2", 4, 0)] {
        let result = when_enrolled(vec![body("G1", 4, 3), empty]).inspect_result();
        assert!(
            matches!(
                result,
                Err(DomainError::InvalidField {
                    field: "cabinets",
                    ..
                })
            ),
            "{result:?}"
        );
    }
}

#[test]
fn a_device_initialising_again_names_its_administrators_anew() {
    let cabinet: Cabinet = replay(
        Cabinet::given(S::Active)
            .into_iter()
            .chain([CabinetEvent::Activated(activated("admin02"))]),
    );
    assert_eq!(cabinet.state, S::Active);
    assert_eq!(cabinet.administrators, activated("admin02").administrators);
}

#[test]
fn only_drawers_of_the_enrolled_geometry_are_allowed() {
    let cabinet: Cabinet = replay(Cabinet::given(S::Active));
    let drawer = |body: &str, row, column| Drawer {
        body: body.into(),
        row,
        column,
    };
    for inside in [drawer("G1", 1, 1), drawer("G1", 4, 3)] {
        assert_eq!(cabinet.check_drawer("XJH-Q2555061", &inside), Ok(()));
    }
    for outside in [
        drawer("G1", 0, 1),
        drawer("G1", 5, 1),
        drawer("G1", 1, 4),
        drawer("G2", 1, 1),
    ] {
        assert_eq!(
            cabinet.check_drawer("XJH-Q2555061", &outside),
            Err(DomainError::NoSuchDrawer {
                device: "XJH-Q2555061".into(),
                body: outside.body.clone(),
                row: outside.row,
                column: outside.column,
            })
        );
    }
}
