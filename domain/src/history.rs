//! "State as of T": the one rule for replaying an aggregate's history up to a moment.
//!
//! An event counts as of `at` when its time is at or before `at` (the boundary is inclusive:
//! an event exactly at `at` counts). Events are replayed in sequence order and replay stops at
//! the first one that does not count: a state machine cannot apply a later event before an
//! earlier one, so an event out of time order ends the replay rather than being skipped.
//!
//! Which of an event's times is meant is the caller's to say ([`EventTime`]), because two
//! questions are asked of the log and the tests of both pin their answers:
//! - the audit API asks what the legal record said at T: what the platform had recorded by
//!   then ([`EventTime::Recorded`]);
//! - reconciliation asks what the cabinet's business date ended with: a cabinet's operation at
//!   23:50 that reached the platform after midnight belongs to its day
//!   ([`EventTime::Effective`]), and the date ends at its last instant
//!   ([`last_instant_before`] the next midnight).
//!
//! docs/architecture.md ("Time") records the decision.

use chrono::Duration;
use cqrs_es::Aggregate;

use crate::document::{Document, DocumentEvent};
use crate::values::Timestamp;

/// Which of an event's times decides whether it counts as of a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// When the platform recorded it (`recorded_at`): what the platform knew.
    Recorded,
    /// When it took effect for the business ([`effective_time`]).
    Effective,
}

/// An aggregate replayed up to a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct AsOf<A> {
    pub aggregate: A,
    /// How many events counted: the first `applied` of the history.
    pub applied: usize,
}

/// Whether an event at `time` counts as of `at`.
pub fn counts_as_of(time: Timestamp, at: Timestamp) -> bool {
    time <= at
}

/// The aggregate its events (in sequence order, each with the time meant) make as of `at`.
pub fn state_as_of<A: Aggregate>(
    events: impl IntoIterator<Item = (A::Event, Timestamp)>,
    at: Timestamp,
) -> AsOf<A> {
    let mut aggregate = A::default();
    let mut applied = 0;
    for (event, time) in events {
        if !counts_as_of(time, at) {
            break;
        }
        aggregate.apply(event);
        applied += 1;
    }
    AsOf { aggregate, applied }
}

/// The document its events (in sequence order, each with its recorded time) make as of `at`,
/// judged by the time `meant`.
pub fn document_as_of(
    events: impl IntoIterator<Item = (DocumentEvent, Timestamp)>,
    at: Timestamp,
    meant: EventTime,
) -> AsOf<Document> {
    state_as_of(
        events.into_iter().map(|(event, recorded_at)| {
            let time = match meant {
                EventTime::Recorded => recorded_at,
                EventTime::Effective => effective_time(&event, recorded_at),
            };
            (event, time)
        }),
        at,
    )
}

/// When an event took effect for the business: the cabinet's operation time for what a
/// cabinet reports, the crossing time for a border crossing, else when the platform recorded
/// it. The cabinet's batch is written by the cabinet's clock, so an operation at 23:50 that
/// reached the platform after midnight still belongs to its day.
pub fn effective_time(event: &DocumentEvent, recorded_at: Timestamp) -> Timestamp {
    match event {
        DocumentEvent::BorderCrossed(e) => e.crossed_at,
        _ => event.operated_at().unwrap_or(recorded_at),
    }
}

/// The last instant of a period that ends, excluded, at `end` (a business date runs up to the
/// next midnight, which belongs to the next date). Timestamps resolve nanoseconds, so "as of
/// this instant" is exactly "before `end`".
pub fn last_instant_before(end: Timestamp) -> Timestamp {
    end - Duration::nanoseconds(1)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate};

    use super::*;
    use crate::document::{
        CancellationReason, Cancelled, DepositKind, Deposited, DocumentState, WithdrawalKind,
        Withdrawn,
    };
    use crate::identifiers::{CitizenId, DocumentNumber, DocumentType};
    use crate::test_support::location;
    use crate::values::{DocumentRecord, Sex};

    fn time(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text).expect("time")
    }

    fn deposited(operated_at: &str) -> DocumentEvent {
        DocumentEvent::Deposited(Deposited {
            kind: DepositKind::New,
            record: DocumentRecord {
                document_type: DocumentType::OrdinaryPassport,
                number: "E12345678".parse::<DocumentNumber>().expect("number"),
                citizen_id: "11010519491231002X".parse::<CitizenId>().expect("id"),
                chinese_name: "张三".into(),
                latin_name: "ZHANG SAN".into(),
                birth_date: NaiveDate::from_ymd_opt(1949, 12, 31).expect("date"),
                sex: Sex::Male,
                valid_until: NaiveDate::from_ymd_opt(2032, 1, 1).expect("date"),
            }
            .into(),
            location: location(),
            operator: None,
            operated_at: time(operated_at),
        })
    }

    fn lent(operated_at: &str) -> DocumentEvent {
        DocumentEvent::Withdrawn(Withdrawn {
            kind: WithdrawalKind::Lend,
            location: location(),
            operator: None,
            operated_at: time(operated_at),
            purpose: None,
            planned_return: NaiveDate::from_ymd_opt(2026, 12, 24),
            destination: None,
            travel_approval: None,
            anomaly: None,
        })
    }

    fn cancelled() -> DocumentEvent {
        DocumentEvent::Cancelled(Cancelled {
            reason: CancellationReason::Lost,
            proof: None,
        })
    }

    #[test]
    fn an_event_exactly_at_the_moment_counts() {
        let at = time("2026-11-23T12:00:00+08:00");
        assert!(counts_as_of(at, at));
        assert!(counts_as_of(time("2026-11-23T11:59:59.999+08:00"), at));
        assert!(!counts_as_of(
            time("2026-11-23T12:00:00.000000001+08:00"),
            at
        ));
        // The same instant in another offset is the same instant.
        assert!(counts_as_of(time("2026-11-23T04:00:00Z"), at));

        let history = || {
            [
                (
                    deposited("2026-11-23T09:00:00+08:00"),
                    time("2026-11-23T09:00:00+08:00"),
                ),
                (lent("2026-11-23T12:00:00+08:00"), at),
            ]
        };
        let as_of = document_as_of(history(), at, EventTime::Recorded);
        assert_eq!(as_of.aggregate.state, DocumentState::Withdrawn);
        assert_eq!(as_of.applied, 2);
        let before = document_as_of(
            history(),
            at - Duration::nanoseconds(1),
            EventTime::Recorded,
        );
        assert_eq!(before.aggregate.state, DocumentState::InCabinet);
        assert_eq!(before.applied, 1);
        let nothing = document_as_of(
            history(),
            time("2000-01-01T00:00:00+08:00"),
            EventTime::Recorded,
        );
        assert_eq!(nothing.aggregate.state, DocumentState::Unknown);
        assert_eq!(nothing.applied, 0);
    }

    #[test]
    fn which_time_is_meant_decides_a_late_report() {
        // Operated at 23:50, recorded at 00:10 the next day.
        let late = time("2026-11-24T00:10:00+08:00");
        let history = || {
            [
                (
                    deposited("2026-11-23T10:00:00+08:00"),
                    time("2026-11-23T10:00:01+08:00"),
                ),
                (lent("2026-11-23T23:50:00+08:00"), late),
            ]
        };
        let end_of_day = last_instant_before(time("2026-11-24T00:00:00+08:00"));
        let recorded = document_as_of(history(), end_of_day, EventTime::Recorded);
        assert_eq!(
            recorded.aggregate.state,
            DocumentState::InCabinet,
            "not yet known"
        );
        let effective = document_as_of(history(), end_of_day, EventTime::Effective);
        assert_eq!(
            effective.aggregate.state,
            DocumentState::Withdrawn,
            "its day's"
        );
    }

    #[test]
    fn the_end_of_a_day_excludes_the_next_midnight() {
        let midnight = time("2026-11-24T00:00:00+08:00");
        let end_of_day = last_instant_before(midnight);
        assert!(end_of_day < midnight);
        assert!(counts_as_of(
            time("2026-11-23T23:59:59.999999999+08:00"),
            end_of_day
        ));
        assert!(!counts_as_of(midnight, end_of_day));
        let history = [
            (
                deposited("2026-11-23T10:00:00+08:00"),
                time("2026-11-23T10:00:00+08:00"),
            ),
            (cancelled(), midnight),
        ];
        let as_of = document_as_of(history, end_of_day, EventTime::Effective);
        assert_eq!(as_of.aggregate.state, DocumentState::InCabinet);
    }

    #[test]
    fn replay_stops_at_the_first_event_that_does_not_count() {
        let at = time("2026-11-23T12:00:00+08:00");
        // The cancellation is recorded before `at`, but after an event that does not count.
        let history = [
            (
                deposited("2026-11-23T09:00:00+08:00"),
                time("2026-11-23T09:00:00+08:00"),
            ),
            (
                lent("2026-11-23T13:00:00+08:00"),
                time("2026-11-23T13:00:00+08:00"),
            ),
            (cancelled(), time("2026-11-23T11:00:00+08:00")),
        ];
        let as_of = document_as_of(history, at, EventTime::Recorded);
        assert_eq!(as_of.aggregate.state, DocumentState::InCabinet);
        assert_eq!(as_of.applied, 1);
    }
}
