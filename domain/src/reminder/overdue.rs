//! Overdue days: the one rule the read API, the reminders and the return-date scheduler share.
//!
//! Days are counted in China time: `today` is the China-time date of the platform clock's now
//! ([`china_date`]), whatever offset that moment carries. A document is overdue by
//! `today − planned return date` days, never negative, so 0 on the return date itself; it is
//! *overdue* when that is at least 1 day while it is due back (`AwaitingReturn`). The scheduler
//! marks a withdrawn document due back on the first day it has an overdue day.

use chrono::NaiveDate;

use crate::document::DocumentState;
use crate::values::{china_standard_time, Timestamp};

/// The China-time calendar date of a moment: the day every day count counts in.
pub fn china_date(at: Timestamp) -> NaiveDate {
    at.with_timezone(&china_standard_time()).date_naive()
}

/// Days past the planned return date on `today`; 0 before it, on it, or without one.
pub fn overdue_days(planned_return: Option<NaiveDate>, today: NaiveDate) -> i64 {
    planned_return
        .map(|planned| (today - planned).num_days().max(0))
        .unwrap_or(0)
}

/// Whether a document in `state` with `planned_return` counts as overdue on `today`: due back
/// and at least one day past its planned return date (a holder who came back before the date
/// is due back, not overdue).
pub fn is_overdue(
    state: DocumentState,
    planned_return: Option<NaiveDate>,
    today: NaiveDate,
) -> bool {
    state == DocumentState::AwaitingReturn && overdue_days(planned_return, today) > 0
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn the_day_is_the_china_time_date() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).expect("time");
        assert_eq!(
            china_date(at("2026-11-25T23:59:59+08:00")),
            date(2026, 11, 25)
        );
        assert_eq!(
            china_date(at("2026-11-26T00:00:00+08:00")),
            date(2026, 11, 26)
        );
        // 16:00 UTC is midnight in China: the next day there.
        assert_eq!(china_date(at("2026-11-25T15:59:59Z")), date(2026, 11, 25));
        assert_eq!(china_date(at("2026-11-25T16:00:00Z")), date(2026, 11, 26));
    }

    #[test]
    fn overdue_starts_the_day_after_the_return_date() {
        let planned = Some(date(2026, 11, 25));
        // The boundary: on the return date itself, 0 days and not overdue.
        assert_eq!(overdue_days(planned, date(2026, 11, 25)), 0);
        assert!(!is_overdue(
            DocumentState::AwaitingReturn,
            planned,
            date(2026, 11, 25)
        ));
        assert_eq!(overdue_days(planned, date(2026, 11, 26)), 1);
        assert!(is_overdue(
            DocumentState::AwaitingReturn,
            planned,
            date(2026, 11, 26)
        ));
        assert_eq!(overdue_days(planned, date(2026, 11, 1)), 0);
        // Only a document due back is overdue.
        for state in [
            DocumentState::Withdrawn,
            DocumentState::InCabinet,
            DocumentState::Cancelled,
        ] {
            assert!(!is_overdue(state, planned, date(2026, 12, 25)), "{state}");
        }
        assert!(!is_overdue(
            DocumentState::AwaitingReturn,
            None,
            date(2026, 12, 25)
        ));
    }
}
