//! When cabinets may upload their nightly batch, and where a business date ends: the clock
//! rules of SPEC §6, pure.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime};

use crate::values::china_standard_time;

/// When cabinets may upload their batch, China time: from `opens` (included) to `closes`
/// (excluded), past midnight when `closes` is earlier than `opens`; always when they are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconciliationWindow {
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

impl Default for ReconciliationWindow {
    /// 20:00 to 06:00, as the design has it (§2.1.4.10).
    fn default() -> Self {
        ReconciliationWindow {
            opens: NaiveTime::from_hms_opt(20, 0, 0).unwrap_or(NaiveTime::MIN),
            closes: NaiveTime::from_hms_opt(6, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

impl ReconciliationWindow {
    pub fn contains(&self, time: NaiveTime) -> bool {
        match self.opens.cmp(&self.closes) {
            std::cmp::Ordering::Less => self.opens <= time && time < self.closes,
            std::cmp::Ordering::Greater => time >= self.opens || time < self.closes,
            std::cmp::Ordering::Equal => true,
        }
    }

    /// The latest business date whose window has closed at `now`: the window of date D closes
    /// on D + 1 at `closes`.
    pub fn last_closed_date(&self, now: DateTime<FixedOffset>) -> Option<NaiveDate> {
        let local = now.with_timezone(&china_standard_time());
        let back = if local.time() >= self.closes { 1 } else { 2 };
        local.date_naive().checked_sub_days(Days::new(back))
    }
}

impl fmt::Display for ReconciliationWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.opens.format("%H:%M"),
            self.closes.format("%H:%M")
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a window HH:MM-HH:MM")]
pub struct WindowParseError(String);

impl FromStr for ReconciliationWindow {
    type Err = WindowParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(t.trim(), "%H:%M:%S"))
                .map_err(|_| WindowParseError(s.to_string()))
        };
        let (opens, closes) = s
            .split_once('-')
            .ok_or_else(|| WindowParseError(s.to_string()))?;
        Ok(ReconciliationWindow {
            opens: time(opens)?,
            closes: time(closes)?,
        })
    }
}

/// The start of a business date, China time.
pub fn start_of_business_date(date: NaiveDate) -> Option<DateTime<FixedOffset>> {
    date.and_time(NaiveTime::MIN)
        .and_local_timezone(china_standard_time())
        .single()
}

/// The end of a business date: the start of the next day, China time. None only at the end of
/// the calendar chrono can count.
pub fn end_of_business_date(date: NaiveDate) -> Option<DateTime<FixedOffset>> {
    date.checked_add_days(Days::new(1))
        .and_then(start_of_business_date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, s).expect("time")
    }

    #[test]
    fn the_window_runs_past_midnight_and_excludes_its_end() {
        let window = ReconciliationWindow::default();
        assert!(!window.contains(at(19, 59, 59)));
        assert!(window.contains(at(20, 0, 0)));
        assert!(window.contains(at(0, 0, 0)));
        assert!(window.contains(at(5, 59, 59)));
        assert!(!window.contains(at(6, 0, 0)));
        assert!(!window.contains(at(12, 0, 0)));
        let day: ReconciliationWindow = "01:00-05:30".parse().expect("window");
        assert!(
            day.contains(at(1, 0, 0)) && !day.contains(at(5, 30, 0)) && !day.contains(at(23, 0, 0))
        );
        assert_eq!(day.to_string(), "01:00-05:30");
        assert!("20:00".parse::<ReconciliationWindow>().is_err());
        assert!("always".parse::<ReconciliationWindow>().is_err());
    }

    #[test]
    fn a_date_closes_at_the_end_of_its_window() {
        let window = ReconciliationWindow::default();
        let time = |t: &str| DateTime::parse_from_rfc3339(t).expect("time");
        let date = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d);
        assert_eq!(
            window.last_closed_date(time("2026-11-24T05:59:59+08:00")),
            date(22)
        );
        assert_eq!(
            window.last_closed_date(time("2026-11-24T06:00:00+08:00")),
            date(23)
        );
        // The same moment written in UTC.
        assert_eq!(
            window.last_closed_date(time("2026-11-23T22:00:00+00:00")),
            date(23)
        );
    }

    #[test]
    fn a_business_date_ends_at_the_next_midnight_china_time() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        assert_eq!(
            end_of_business_date(date).map(|t| t.to_rfc3339()),
            Some("2026-11-24T00:00:00+08:00".to_string())
        );
    }
}
