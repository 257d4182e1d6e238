//! The comparison itself, pure: the platform's state of a document at the end of a business
//! date, and what makes a cabinet's report of it, or its operation log, a deviation.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::events::{DeviationReason, LogDeviation, LogSide};
use crate::document::{Document, DocumentEvent, DocumentState};
use crate::history::{document_as_of, last_instant_before, EventTime};
use crate::identifiers::{CreditCode, DocumentId, PersonId};
use crate::values::{DeviceSerial, Drawer, Location, Timestamp};

pub use crate::history::effective_time;

/// What the cabinet says about one document (`zt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CabinetClaim {
    /// `zt` 1, in this drawer.
    InCabinet(Drawer),
    /// `zt` 2.
    Out,
}

/// One document state of the batch (a `zjzt` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedDocument {
    pub document: DocumentId,
    pub holder: PersonId,
    pub claim: CabinetClaim,
}

/// The document as its events (in sequence order, each with its recorded time) make it at the
/// end of a business date that ends, excluded, at `end`: the events that took effect by the
/// date's last instant (`crate::history`, the one "as of" rule, with the effective time).
pub fn replay_until(
    events: impl IntoIterator<Item = (DocumentEvent, Timestamp)>,
    end: Timestamp,
) -> Document {
    document_as_of(events, last_instant_before(end), EventTime::Effective).aggregate
}

/// Whether the cabinet's report of a document deviates from the platform's state, and why;
/// with the repair of SPEC §6.1 when it is the one case the platform repairs by itself.
/// `device` and `unit` are the reporting cabinet's.
pub fn compare(
    reported: &ReportedDocument,
    platform: &Document,
    device: &DeviceSerial,
    unit: &CreditCode,
) -> Option<(DeviationReason, Option<Location>)> {
    use DocumentState as S;
    if platform.state == S::Unknown {
        return Some((DeviationReason::UnknownDocument, None));
    }
    if platform
        .holder
        .as_ref()
        .is_some_and(|holder| holder != &reported.holder)
    {
        return Some((DeviationReason::HolderMismatch, None));
    }
    let here = platform
        .location
        .as_ref()
        .filter(|_| platform.state == S::InCabinet)
        .map(|location| &location.device == device);
    match (&reported.claim, platform.state) {
        (CabinetClaim::InCabinet(drawer), S::InCabinet) => {
            let same_drawer = platform
                .location
                .as_ref()
                .is_some_and(|l| &l.device == device && &l.drawer == drawer);
            (!same_drawer).then_some((DeviationReason::LocationMismatch, None))
        }
        (CabinetClaim::InCabinet(drawer), S::Withdrawn | S::AwaitingReturn) => Some((
            DeviationReason::OutOnPlatform,
            Some(Location {
                unit: unit.clone(),
                device: device.clone(),
                drawer: drawer.clone(),
            }),
        )),
        (CabinetClaim::InCabinet(_), _) => Some((DeviationReason::StateMismatch, None)),
        // Out of this cabinet is consistent with being in another one.
        (CabinetClaim::Out, S::InCabinet) => {
            (here == Some(true)).then_some((DeviationReason::InCabinetOnPlatform, None))
        }
        (CabinetClaim::Out, S::Withdrawn | S::AwaitingReturn | S::Cancelled) => None,
        (CabinetClaim::Out, _) => Some((DeviationReason::StateMismatch, None)),
    }
}

/// An entry of the cabinet's operation log (`czls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedOperation {
    pub serial: String,
    pub operation: String,
    pub operated_at: Timestamp,
}

/// An operation the platform recorded for the cabinet on the business date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformOperation {
    pub serial: String,
    pub operation: String,
    pub operated_at: Timestamp,
    pub document: DocumentId,
}

/// The operation-log deviations: serials of the cabinet's log the platform never recorded
/// (`held` are those it did, for any cabinet or day; `refused` maps a serial to the error code
/// of a report the platform refused), in the log's order; then serials the platform recorded
/// for this cabinet and day that the log lacks, by time and serial.
pub fn log_deviations(
    cabinet: &[LoggedOperation],
    platform: &[PlatformOperation],
    held: &HashSet<String>,
    refused: &HashMap<String, String>,
) -> Vec<LogDeviation> {
    let mut out = Vec::new();
    let mut logged = HashSet::new();
    for entry in cabinet {
        if !logged.insert(entry.serial.as_str()) || held.contains(&entry.serial) {
            continue;
        }
        out.push(LogDeviation {
            serial: entry.serial.clone(),
            side: LogSide::CabinetOnly,
            operation: entry.operation.clone(),
            operated_at: Some(entry.operated_at),
            document: None,
            note: refused
                .get(&entry.serial)
                .map(|code| format!("refused: {code}")),
        });
    }
    let mut missing: Vec<&PlatformOperation> = platform
        .iter()
        .filter(|op| !logged.contains(op.serial.as_str()))
        .collect();
    missing.sort_by(|a, b| (a.operated_at, &a.serial).cmp(&(b.operated_at, &b.serial)));
    missing.dedup_by(|a, b| a.serial == b.serial);
    out.extend(missing.into_iter().map(|op| LogDeviation {
        serial: op.serial.clone(),
        side: LogSide::PlatformOnly,
        operation: op.operation.clone(),
        operated_at: Some(op.operated_at),
        document: Some(op.document.clone()),
        note: None,
    }));
    out
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::document::{
        AbnormalReason, AbnormalWithdrawal, CancellationReason, Cancelled, DepositKind, Deposited,
        WithdrawalKind, Withdrawn,
    };
    use crate::identifiers::{CitizenId, DocumentNumber, DocumentType};
    use crate::values::{DocumentRecord, Sex};

    fn time(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text).expect("time")
    }

    fn unit() -> CreditCode {
        "91350100M000100Y43".parse().expect("credit code")
    }

    fn device() -> DeviceSerial {
        "SIM-00000001".parse().expect("device")
    }

    fn drawer(row: u16) -> Drawer {
        Drawer {
            body: "SIM-00000001-G1".into(),
            row,
            column: 1,
        }
    }

    fn location(device: &str, row: u16) -> Location {
        Location {
            unit: unit(),
            device: device.parse().expect("device"),
            drawer: drawer(row),
        }
    }

    fn record() -> DocumentRecord {
        DocumentRecord {
            document_type: DocumentType::OrdinaryPassport,
            number: "E12345678".parse::<DocumentNumber>().expect("number"),
            citizen_id: "11010519491231002X".parse::<CitizenId>().expect("id"),
            chinese_name: "张三".into(),
            latin_name: "ZHANG SAN".into(),
            birth_date: chrono::NaiveDate::from_ymd_opt(1949, 12, 31).expect("date"),
            sex: Sex::Male,
            valid_until: chrono::NaiveDate::from_ymd_opt(2032, 1, 1).expect("date"),
        }
    }

    fn deposited(at: &str) -> DocumentEvent {
        DocumentEvent::Deposited(Deposited {
            kind: DepositKind::New,
            record: record().into(),
            location: location("SIM-00000001", 1),
            operator: None,
            operated_at: time(at),
        })
    }

    fn lent(at: &str) -> DocumentEvent {
        DocumentEvent::Withdrawn(Withdrawn {
            kind: WithdrawalKind::Lend,
            location: location("SIM-00000001", 1),
            operator: None,
            operated_at: time(at),
            purpose: None,
            planned_return: chrono::NaiveDate::from_ymd_opt(2026, 12, 24),
            destination: None,
            travel_approval: None,
            anomaly: None,
        })
    }

    fn reported(claim: CabinetClaim) -> ReportedDocument {
        ReportedDocument {
            document: record().document_id(),
            holder: record().holder_id(),
            claim,
        }
    }

    fn platform(events: Vec<DocumentEvent>) -> Document {
        let recorded = time("2026-11-23T12:00:00+08:00");
        replay_until(
            events.into_iter().map(|e| (e, recorded)),
            time("2026-11-24T00:00:00+08:00"),
        )
    }

    #[test]
    fn replay_stops_at_the_end_of_the_business_date() {
        let end = time("2026-11-24T00:00:00+08:00");
        // Operated at 23:50, recorded after midnight: it belongs to its day.
        let late = time("2026-11-24T00:10:00+08:00");
        let document = replay_until(
            [
                (deposited("2026-11-23T10:00:00+08:00"), late),
                (lent("2026-11-23T23:50:00+08:00"), late),
                (deposited("2026-11-24T00:05:00+08:00"), late),
            ],
            end,
        );
        assert_eq!(document.state, DocumentState::Withdrawn);
        let cancelled = DocumentEvent::Cancelled(Cancelled {
            reason: CancellationReason::Lost,
            proof: None,
        });
        let document = replay_until(
            [
                (deposited("2026-11-23T10:00:00+08:00"), late),
                (cancelled, time("2026-11-24T00:00:00+08:00")),
            ],
            end,
        );
        assert_eq!(document.state, DocumentState::InCabinet);
    }

    #[test]
    fn only_in_cabinet_against_out_is_repaired() {
        let (d, u) = (device(), unit());
        let out = platform(vec![
            deposited("2026-11-23T09:00:00+08:00"),
            lent("2026-11-23T10:00:00+08:00"),
        ]);
        let here = reported(CabinetClaim::InCabinet(drawer(3)));
        let (reason, repair) = compare(&here, &out, &d, &u).expect("deviation");
        assert_eq!(reason, DeviationReason::OutOnPlatform);
        assert_eq!(repair, Some(location("SIM-00000001", 3)));
        assert_eq!(compare(&reported(CabinetClaim::Out), &out, &d, &u), None);

        let inside = platform(vec![deposited("2026-11-23T09:00:00+08:00")]);
        assert_eq!(
            compare(
                &reported(CabinetClaim::InCabinet(drawer(1))),
                &inside,
                &d,
                &u
            ),
            None
        );
        assert_eq!(
            compare(&here, &inside, &d, &u),
            Some((DeviationReason::LocationMismatch, None))
        );
        assert_eq!(
            compare(&reported(CabinetClaim::Out), &inside, &d, &u),
            Some((DeviationReason::InCabinetOnPlatform, None))
        );
        // Out of this cabinet, in another one: consistent.
        let other: DeviceSerial = "SIM-00000002".parse().expect("device");
        assert_eq!(
            compare(&reported(CabinetClaim::Out), &inside, &other, &u),
            None
        );

        assert_eq!(
            compare(&here, &Document::default(), &d, &u),
            Some((DeviationReason::UnknownDocument, None))
        );
        let cancelled = platform(vec![
            deposited("2026-11-23T09:00:00+08:00"),
            DocumentEvent::Cancelled(Cancelled {
                reason: CancellationReason::Lost,
                proof: None,
            }),
        ]);
        assert_eq!(
            compare(&here, &cancelled, &d, &u),
            Some((DeviationReason::StateMismatch, None))
        );
        assert_eq!(
            compare(&reported(CabinetClaim::Out), &cancelled, &d, &u),
            None
        );
        let mut stranger = here.clone();
        stranger.holder = "0".repeat(64).parse().expect("person id");
        assert_eq!(
            compare(&stranger, &out, &d, &u),
            Some((DeviationReason::HolderMismatch, None))
        );
        let gap = platform(vec![
            deposited("2026-11-23T09:00:00+08:00"),
            DocumentEvent::AbnormalWithdrawal(AbnormalWithdrawal {
                reason: AbnormalReason::Missing,
                location: location("SIM-00000001", 1),
                operator: None,
                operated_at: time("2026-11-23T10:00:00+08:00"),
            }),
        ]);
        assert_eq!(compare(&reported(CabinetClaim::Out), &gap, &d, &u), None);
    }

    #[test]
    fn log_deviations_name_each_side() {
        let serial = |n: u32| format!("RG000001{}{n:06}{}", "20261123100000", "0".repeat(32));
        let at = time("2026-11-23T10:00:00+08:00");
        let logged = |n| LoggedOperation {
            serial: serial(n),
            operation: "11".into(),
            operated_at: at,
        };
        let recorded = |n| PlatformOperation {
            serial: serial(n),
            operation: "deposit_new".into(),
            operated_at: at,
            document: record().document_id(),
        };
        let held: HashSet<String> = [serial(1), serial(2)].into_iter().collect();
        let refused: HashMap<String, String> = [(serial(3), "E_ILLEGAL_TRANSITION".to_string())]
            .into_iter()
            .collect();
        let out = log_deviations(
            &[logged(1), logged(3), logged(3), logged(4)],
            &[recorded(1), recorded(5), recorded(5)],
            &held,
            &refused,
        );
        let sides: Vec<(String, LogSide)> =
            out.iter().map(|d| (d.serial.clone(), d.side)).collect();
        assert_eq!(
            sides,
            vec![
                (serial(3), LogSide::CabinetOnly),
                (serial(4), LogSide::CabinetOnly),
                (serial(5), LogSide::PlatformOnly),
            ]
        );
        assert_eq!(
            out[0].note.as_deref(),
            Some("refused: E_ILLEGAL_TRANSITION")
        );
        assert_eq!(out[2].document, Some(record().document_id()));
    }
}
