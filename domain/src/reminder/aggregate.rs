use chrono::{NaiveDate, NaiveTime};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::ReminderCommand;
use super::events::*;
use super::overdue::{china_date, overdue_days};
use super::state::{ReminderEventKind, ReminderState, TRANSITIONS};
use crate::transitions::{next_state, require};
use crate::values::{china_standard_time, Timestamp};
use crate::DomainError;

/// Reminders go out from this time of day (China time, included) ...
pub const SENDING_FROM: NaiveTime = match NaiveTime::from_hms_opt(10, 0, 0) {
    Some(time) => time,
    None => NaiveTime::MIN,
};
/// ... until this one (excluded): 16:59:59 is in, 17:00:00 is out.
pub const SENDING_UNTIL: NaiveTime = match NaiveTime::from_hms_opt(17, 0, 0) {
    Some(time) => time,
    None => NaiveTime::MIN,
};

/// Whether a reminder may go out at `at`: between 10:00 and 17:00 China time (SPEC §3.5),
/// whatever offset `at` carries.
pub fn within_sending_window(at: Timestamp) -> bool {
    let local = at.with_timezone(&china_standard_time()).time();
    SENDING_FROM <= local && local < SENDING_UNTIL
}

/// A reminder, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    pub state: ReminderState,
    pub details: Option<Opened>,
    /// Reminders sent in all.
    pub sent: u32,
    /// The China-time day of the last reminder sent, and how many went out that day.
    pub last_day: Option<NaiveDate>,
    pub sent_on_last_day: u32,
    pub last_sent_at: Option<Timestamp>,
    pub closed: Option<Closed>,
}

impl Reminder {
    pub const AGGREGATE: &'static str = "Reminder";

    /// The id of the reminder a document event opens: one per time a document becomes due back.
    pub fn id_for(document: &str, document_sequence: i64) -> String {
        format!("{document}-{document_sequence}")
    }

    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            ReminderState::Pending | ReminderState::Reminding
        )
    }

    /// Reminders already sent on `day` (China time).
    pub fn sent_on(&self, day: NaiveDate) -> u32 {
        if self.last_day == Some(day) {
            self.sent_on_last_day
        } else {
            0
        }
    }

    /// Days past the planned return date on `today`, never negative.
    pub fn overdue_days(&self, today: NaiveDate) -> i64 {
        overdue_days(self.details.as_ref().and_then(|d| d.planned_return), today)
    }

    /// Judges a command against the current state: the one event it yields, or why not.
    pub fn decide(&self, command: ReminderCommand) -> Result<ReminderEvent, DomainError> {
        let event = match command {
            ReminderCommand::Open(opened) => ReminderEvent::Opened(opened),
            ReminderCommand::Send {
                at,
                per_day,
                recipients,
            } => {
                // The state first, so that a closed reminder says so rather than "limit".
                require(
                    TRANSITIONS,
                    Self::AGGREGATE,
                    self.state,
                    ReminderEventKind::Sent,
                )?;
                if !within_sending_window(at) {
                    return Err(DomainError::InvalidField {
                        field: "sent_at",
                        reason: format!(
                            "{at} is outside {SENDING_FROM}–{SENDING_UNTIL} China time"
                        ),
                    });
                }
                let day = china_date(at);
                let already = self.sent_on(day);
                if already >= per_day {
                    return Err(DomainError::InvalidField {
                        field: "per_day",
                        reason: format!("{already} of at most {per_day} already sent on {day}"),
                    });
                }
                ReminderEvent::Sent(Sent {
                    at,
                    day,
                    ordinal: already + 1,
                    overdue_days: self.overdue_days(day),
                    recipients,
                })
            }
            ReminderCommand::Close(closed) => ReminderEvent::Closed(closed),
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        Ok(event)
    }
}

impl Aggregate for Reminder {
    const TYPE: &'static str = Reminder::AGGREGATE;
    type Command = ReminderCommand;
    type Event = ReminderEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let Some(next) = next_state(TRANSITIONS, self.state, event.kind()) {
            self.state = next;
        }
        match event {
            ReminderEvent::Opened(e) => self.details = Some(e),
            ReminderEvent::Sent(e) => {
                self.sent += 1;
                self.sent_on_last_day = self.sent_on(e.day) + 1;
                self.last_day = Some(e.day);
                self.last_sent_at = Some(e.at);
            }
            ReminderEvent::Closed(e) => self.closed = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::{DocumentId, DocumentNumber, DocumentType};

    fn at(rfc3339: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(rfc3339).expect("time")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn opened(planned_return: Option<NaiveDate>) -> Reminder {
        let number: DocumentNumber = "E12345678".parse().expect("number");
        let mut reminder = Reminder::default();
        let event = reminder
            .decide(ReminderCommand::Open(Opened {
                document: DocumentId::of(DocumentType::OrdinaryPassport, &number),
                document_sequence: 3,
                kind: ReminderKind::Overdue,
                holder: None,
                document_type: Some(DocumentType::OrdinaryPassport),
                unit: None,
                device: None,
                planned_return,
                opened_at: at("2026-11-26T09:00:00+08:00"),
            }))
            .expect("opened");
        reminder.apply(event);
        reminder
    }

    fn send(reminder: &mut Reminder, when: &str, per_day: u32) -> Result<Sent, DomainError> {
        let event = reminder.decide(ReminderCommand::Send {
            at: at(when),
            per_day,
            recipients: vec![],
        })?;
        reminder.apply(event.clone());
        match event {
            ReminderEvent::Sent(sent) => Ok(sent),
            other => panic!("not a send: {other:?}"),
        }
    }

    #[test]
    fn the_window_is_ten_to_seventeen_china_time() {
        assert!(!within_sending_window(at("2026-11-26T09:59:59+08:00")));
        assert!(within_sending_window(at("2026-11-26T10:00:00+08:00")));
        assert!(within_sending_window(at("2026-11-26T16:59:59+08:00")));
        assert!(!within_sending_window(at("2026-11-26T17:00:00+08:00")));
        // The same instants in UTC.
        assert!(!within_sending_window(at("2026-11-26T01:59:59+00:00")));
        assert!(within_sending_window(at("2026-11-26T02:00:00+00:00")));
        assert!(within_sending_window(at("2026-11-26T08:59:59Z")));
        assert!(!within_sending_window(at("2026-11-26T09:00:00Z")));
    }

    #[test]
    fn overdue_days_are_never_negative() {
        let planned = Some(date(2026, 11, 25));
        assert_eq!(overdue_days(planned, date(2026, 11, 20)), 0);
        assert_eq!(overdue_days(planned, date(2026, 11, 25)), 0);
        assert_eq!(overdue_days(planned, date(2026, 11, 26)), 1);
        assert_eq!(overdue_days(planned, date(2026, 12, 25)), 30);
        assert_eq!(overdue_days(None, date(2026, 12, 25)), 0);
    }

    #[test]
    fn sends_respect_the_window_and_the_daily_limit() {
        let mut reminder = opened(Some(date(2026, 11, 25)));
        assert_eq!(reminder.state, ReminderState::Pending);
        assert!(matches!(
            send(&mut reminder, "2026-11-26T09:59:59+08:00", 2),
            Err(DomainError::InvalidField {
                field: "sent_at",
                ..
            })
        ));
        let first = send(&mut reminder, "2026-11-26T10:00:00+08:00", 2).expect("first");
        assert_eq!((first.ordinal, first.overdue_days), (1, 1));
        assert_eq!(reminder.state, ReminderState::Reminding);
        send(&mut reminder, "2026-11-26T16:59:59+08:00", 2).expect("second");
        assert!(matches!(
            send(&mut reminder, "2026-11-26T16:59:59+08:00", 2),
            Err(DomainError::InvalidField {
                field: "per_day",
                ..
            })
        ));
        let next_day = send(&mut reminder, "2026-11-27T10:00:00+08:00", 2).expect("next day");
        assert_eq!((next_day.ordinal, next_day.overdue_days), (1, 2));
        assert_eq!(reminder.sent, 3);
    }

    #[test]
    fn a_closed_reminder_is_not_sent_nor_closed_again() {
        let mut reminder = opened(None);
        let close = || {
            ReminderCommand::Close(Closed {
                reason: CloseReason::Deposited,
                document_sequence: 5,
                at: at("2026-11-27T11:00:00+08:00"),
            })
        };
        let event = reminder.decide(close()).expect("closed");
        reminder.apply(event);
        assert_eq!(reminder.state, ReminderState::Closed);
        assert!(!reminder.is_open());
        assert!(matches!(
            send(&mut reminder, "2026-11-27T12:00:00+08:00", 1),
            Err(DomainError::IllegalTransition {
                current: "Closed",
                ..
            })
        ));
        assert!(matches!(
            reminder.decide(close()),
            Err(DomainError::IllegalTransition { .. })
        ));
    }
}
