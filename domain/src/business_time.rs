//! The time rules of business times as sent (docs/protocol.md, "Time rules").
//!
//! A cabinet may work offline for days (design §4.3.5) and then report, in order, what it did:
//! such a report is accepted however late. What no clock can explain is refused: a time ahead of
//! the server clock by more than [`MAX_CLOCK_SKEW`], or (judged by the aggregate) a cabinet
//! operation before the document's latest one.

use chrono::{Duration, NaiveDate};

use crate::values::{china_standard_time, Timestamp};
use crate::DomainError;

/// How far a sender's clock may run ahead of the server's.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// `at` (the field `field`) is not ahead of `now` by more than the skew.
pub fn not_ahead(field: &'static str, at: Timestamp, now: Timestamp) -> Result<(), DomainError> {
    if at > now + MAX_CLOCK_SKEW {
        return Err(DomainError::AheadOfClock {
            field,
            at: at.to_rfc3339(),
            now: now.to_rfc3339(),
            skew_secs: MAX_CLOCK_SKEW.num_seconds(),
        });
    }
    Ok(())
}

/// A business date is not after the China-time date of `now` (plus the skew).
pub fn date_not_ahead(
    field: &'static str,
    date: NaiveDate,
    now: Timestamp,
) -> Result<(), DomainError> {
    let today = (now + MAX_CLOCK_SKEW)
        .with_timezone(&china_standard_time())
        .date_naive();
    if date > today {
        return Err(DomainError::AheadOfClock {
            field,
            at: date.to_string(),
            now: now.to_rfc3339(),
            skew_secs: MAX_CLOCK_SKEW.num_seconds(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(rfc3339).expect("test time")
    }

    #[test]
    fn the_skew_is_allowed_and_no_more() {
        let now = at("2026-12-01T10:00:00+08:00");
        assert!(not_ahead("optime", at("2026-12-01T10:05:00+08:00"), now).is_ok());
        assert!(not_ahead("optime", at("2016-12-01T10:05:00+08:00"), now).is_ok());
        assert!(matches!(
            not_ahead("optime", at("2026-12-01T10:05:01+08:00"), now),
            Err(DomainError::AheadOfClock {
                field: "optime",
                ..
            })
        ));
    }

    #[test]
    fn a_date_is_judged_in_china_time() {
        // 16:00 UTC is midnight in China: the first of December there.
        let now = at("2026-11-30T16:00:00+00:00");
        let first = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        assert!(date_not_ahead("qfrq", first, now).is_ok());
        assert!(date_not_ahead("qfrq", first.succ_opt().expect("date"), now).is_err());
    }
}
