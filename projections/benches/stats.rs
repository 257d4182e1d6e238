//! Statistics at national scale: fills the `stats` projection with N documents (default
//! 1,000,000) spread over 1,000 units (10 provinces × 10 cities × 10 units, under one national
//! node, all in the org tree), then times `Reader::stats` for a unit, a city (10 units), a
//! province (100 units) and the national node (all 1,000), each as its token's scope (the org
//! subtree), and the whole tree (an operator's), and prints the figures (median and slowest of
//! 20 calls after 2 unmeasured ones); then the destinations page's and CSV's read for the same
//! scopes (median and slowest of 5).
//!
//! ```text
//! cargo bench -p custody-projections --bench stats                      # embedded (SQLite)
//! scripts/bench-stats                                                   # and a throwaway PostgreSQL
//! ```
//!
//! Options (after `--`): `--documents N` (`CUSTODY_BENCH_DOCUMENTS` overrides it), `--backend
//! embedded|postgres|both` (default: postgres if `DATABASE_URL` is set, else embedded). On
//! PostgreSQL a database `custody_bench_stats_<pid>` is created on the server of `DATABASE_URL`
//! and dropped afterwards.
//!
//! The documents' events (valid `DocumentEvent`s: deposits, lends and take-outs to 20
//! destinations with their returns, documents due back, abnormal withdrawals, cancellations,
//! documents issued but never deposited) are made in memory over the year 2026 and applied by
//! the stats projector itself (`Projector::commit`, 2,000 events a transaction), as the live
//! feed would: every row is the projection's own, with each holder's filing (Person events: the
//! projection counts a document no cabinet has held for its holder's unit). Only the stats
//! projection is filled, so the event store and the other views stay empty (the scan
//! [`Reader::stats_from_views`] has nothing to scan here; scripts/bench-department-page measures
//! the page over a full store).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it fills 3,000 documents and
//! checks the whole tree's figures add up to what was generated, and that a province's roll-up
//! answers what the sum of its units' own counters answers, in seconds; there the last unit is
//! left out of the org tree, as if its org were registered after its documents were counted.

mod support;
use support::{drop_database, throwaway_postgres, Rng};

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use cqrs_es::DomainEvent;
use custody_domain::document::{
    AbnormalReason, AbnormalWithdrawal, CancellationReason, Cancelled, DepositKind, Deposited,
    DocumentEvent, IssuanceConfirmed, ReturnDateReached, WithdrawalKind, Withdrawn,
};
use custody_domain::identifiers::{
    CitizenId, CreditCode, DocumentId, DocumentNumber, DocumentType,
};
use custody_domain::person::{FilingSubmitted, PersonDetails, PersonEvent};
use custody_domain::values::{DocumentRecord, Drawer, Location, Sex};
use custody_eventlog::{EventLog, Org, StoredEvent};
use custody_projections::feed::{Acker, Cursor, FeedItem};
use custody_projections::read::{Reader, Scope};
use custody_projections::{Projection, Projector};

const PROVINCES: usize = 10;
const CITIES: usize = 10;
const UNITS_PER_CITY: usize = 10;
const UNITS: usize = PROVINCES * CITIES * UNITS_PER_CITY;
const DESTINATIONS: [&str; 20] = [
    "HKG", "MAC", "TWN", "JPN", "KOR", "SGP", "THA", "MYS", "USA", "GBR", "FRA", "DEU", "ITA",
    "ESP", "AUS", "NZL", "CAN", "RUS", "ARE", "EGY",
];
/// Events per projector transaction.
const BATCH: usize = 2_000;
/// The day the figures are asked for (overdue counted on it).
const TODAY: (i32, u32, u32) = (2026, 12, 1);

struct Options {
    documents: usize,
    backends: Vec<&'static str>,
    quick: bool,
}

fn options() -> Options {
    let args = support::Args::from_env();
    let (quick, backends) = (args.quick, args.backends());
    let documents = args.count("CUSTODY_BENCH_DOCUMENTS", "--documents", 3_000, 1_000_000);
    Options {
        documents,
        backends,
        quick,
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    for backend in &options.backends {
        match *backend {
            "postgres" => {
                let (log, throwaway) =
                    throwaway_postgres("custody_bench_stats", "scripts/bench-stats").await;
                run("postgres", &log, &options).await;
                drop_database(log, throwaway).await;
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let log = EventLog::open_embedded(dir.path()).await.expect("open");
                run("embedded", &log, &options).await;
            }
        }
    }
}

async fn run(backend: &str, log: &EventLog, options: &Options) {
    let projector = Projector::new(log.clone(), Projection::Stats)
        .await
        .expect("projector");
    let units: Vec<CreditCode> = (0..UNITS).map(credit_code).collect();
    let tree = org_tree(log, &units, options.quick).await;
    let started = Instant::now();
    let generated = fill(&projector, &units, options.documents).await;
    let filled = started.elapsed();
    println!(
        "{backend}: {} documents, {} events applied by the stats projector in {:.1} s ({:.0} events/s)",
        options.documents,
        generated.events,
        filled.as_secs_f64(),
        generated.events as f64 / filled.as_secs_f64()
    );
    let reader = Reader::new(log.clone());
    let today = NaiveDate::from_ymd_opt(TODAY.0, TODAY.1, TODAY.2).expect("date");
    let platform = log.platform();
    let subtree = |root: &CreditCode| {
        let root = root.to_string();
        async move {
            let units = platform.org_subtree(&root).await.expect("org subtree");
            Scope::subtrees([root].into(), units)
        }
    };
    let scopes = [
        ("a unit", subtree(&units[0]).await),
        ("a city (10 units)", subtree(&tree.cities[0]).await),
        ("a province (100 units)", subtree(&tree.provinces[0]).await),
        (
            "the national node (1,000 units)",
            subtree(&tree.national).await,
        ),
        ("the whole tree (everything)", Scope::everything()),
    ];
    if options.quick {
        let stats = reader
            .stats(&Scope::everything(), today)
            .await
            .expect("stats");
        let documents: i64 = stats.documents_by_state.values().sum();
        assert_eq!(documents, options.documents as i64, "{stats:?}");
        let withdrawals: i64 = stats.withdrawals_per_day.values().sum();
        assert_eq!(withdrawals, generated.withdrawals, "{stats:?}");
        assert_eq!(stats.overdue, generated.overdue, "{stats:?}");
        let (_, province) = &scopes[2];
        let rolled_up = reader.stats(province, today).await.expect("stats");
        let units = platform
            .org_subtree(&tree.provinces[0].to_string())
            .await
            .expect("org subtree");
        let unit_by_unit = reader
            .stats(&Scope::units(units), today)
            .await
            .expect("stats");
        assert!(rolled_up.documents_by_state.values().sum::<i64>() > 0);
        assert_eq!(rolled_up, unit_by_unit);
        // Every holder is filed in a unit, so every document counts in some unit: under the
        // national node, or the one unit left out of the tree.
        let (_, national) = &scopes[3];
        let national = reader.stats(national, today).await.expect("stats");
        let left_out = [credit_code(UNITS - 1).to_string()].into_iter().collect();
        let left_out = reader
            .stats(&Scope::units(left_out), today)
            .await
            .expect("stats");
        let counted: i64 = [national, left_out]
            .iter()
            .map(|s| s.documents_by_state.values().sum::<i64>())
            .sum();
        assert_eq!(counted, options.documents as i64);
        println!(
            "{backend}: the whole tree's figures add up to what was generated, \
             a province's roll-up to its units' counters, the units' to every document"
        );
        return;
    }
    println!(
        "{:<10} {:<32} {:>10} {:>8} {:>8}",
        "backend", "scope", "documents", "p50 ms", "max ms"
    );
    for (label, scope) in &scopes {
        let mut times = Vec::new();
        let mut documents = 0;
        for round in 0..22 {
            let clock = Instant::now();
            let stats = reader.stats(scope, today).await.expect("stats");
            let took = clock.elapsed();
            documents = stats.documents_by_state.values().sum::<i64>();
            if round >= 2 {
                times.push(took);
            }
        }
        times.sort();
        println!(
            "{:<10} {:<32} {:>10} {:>8.1} {:>8.1}",
            backend,
            label,
            documents,
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }

    // The destinations page (a 90-day period, its first 100 holders) and its CSV (all time,
    // every holder), from the trips counts; holders' names are read from the persons view,
    // which this bench leaves empty, so the name look-up is not in these figures.
    println!(
        "{:<10} {:<32} {:>10} {:>10} {:>8} {:>8}",
        "backend", "destinations of", "what", "rows", "p50 ms", "max ms"
    );
    let from = today - chrono::Duration::days(90);
    for (label, scope) in &scopes {
        for (what, from, persons) in [("page", Some(from), Some(100)), ("csv", None, None)] {
            let mut times = Vec::new();
            let mut rows = 0;
            for round in 0..7 {
                let clock = Instant::now();
                let found = reader
                    .destinations(scope, from, None, persons)
                    .await
                    .expect("destinations");
                let took = clock.elapsed();
                rows = found.by_destination.len() + found.by_person.len();
                if round >= 2 {
                    times.push(took);
                }
            }
            times.sort();
            println!(
                "{:<10} {:<32} {:>10} {:>10} {:>8.1} {:>8.1}",
                backend,
                label,
                what,
                rows,
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

// ---------------------------------------------------------------------------------------------
// The documents.

/// The org nodes above the units.
struct Tree {
    national: CreditCode,
    provinces: Vec<CreditCode>,
    cities: Vec<CreditCode>,
}

/// Registers the org tree: a national node, its provinces, their cities, their units (all but
/// the last unit when `quick`).
async fn org_tree(log: &EventLog, units: &[CreditCode], quick: bool) -> Tree {
    let platform = log.platform();
    let insert = |code: &CreditCode, parent: Option<&CreditCode>| {
        let org = Org {
            code: code.to_string(),
            name: "单位".to_string(),
            parent: parent.map(|p| p.to_string()),
        };
        async move { assert!(platform.insert_org(&org, 0).await.expect("insert org")) }
    };
    let national = credit_code(UNITS);
    insert(&national, None).await;
    let provinces: Vec<CreditCode> = (0..PROVINCES).map(|p| credit_code(UNITS + 1 + p)).collect();
    let cities: Vec<CreditCode> = (0..PROVINCES * CITIES)
        .map(|c| credit_code(UNITS + 1 + PROVINCES + c))
        .collect();
    for province in &provinces {
        insert(province, Some(&national)).await;
    }
    for (c, city) in cities.iter().enumerate() {
        insert(city, Some(&provinces[c / CITIES])).await;
    }
    let placed = if quick { units.len() - 1 } else { units.len() };
    for (u, unit) in units.iter().enumerate().take(placed) {
        insert(unit, Some(&cities[u / UNITS_PER_CITY])).await;
    }
    Tree {
        national,
        provinces,
        cities,
    }
}

fn credit_code(n: usize) -> CreditCode {
    let mut code = format!("11110000{:09}", 100_000_000 + n);
    let check = CreditCode::check_character(code.as_bytes()).expect("alphabet");
    code.push(check);
    code.parse().expect("credit code")
}

fn record(n: usize) -> DocumentRecord {
    let document_type = DocumentType::ALL[n % 3];
    let birth = NaiveDate::from_ymd_opt(
        1960 + (n % 40) as i32,
        1 + (n % 12) as u32,
        1 + (n % 28) as u32,
    )
    .expect("date");
    let first17 = format!("110101{}{:03}", birth.format("%Y%m%d"), (n / 1_000) % 1_000);
    let mut digits = [0u8; 17];
    digits.copy_from_slice(first17.as_bytes());
    let citizen_id: CitizenId = format!("{first17}{}", CitizenId::check_character(&digits))
        .parse()
        .expect("citizen id");
    DocumentRecord {
        document_type,
        number: format!("E{n:08}").parse().expect("number"),
        citizen_id,
        chinese_name: "王伟".to_string(),
        latin_name: "WANG WEI".to_string(),
        birth_date: birth,
        sex: Sex::Male,
        valid_until: NaiveDate::from_ymd_opt(2031, 6, 1).expect("date"),
    }
}

/// What was generated, to check the figures against.
#[derive(Default)]
struct Generated {
    events: usize,
    withdrawals: i64,
    overdue: i64,
}

/// The events of document `n`, in order: 2 % issued and never deposited; the others deposited
/// on a day of 2026 in a unit, then lent (60 %: due back 7–30 days later, 70 % returned, half
/// of the rest marked due back), taken out (15 %, 80 % returned), withdrawn abnormally (2 %) or
/// cancelled (1 %), or left in the cabinet.
fn document_events(
    n: usize,
    rng: &mut Rng,
    units: &[CreditCode],
    today: NaiveDate,
    generated: &mut Generated,
) -> Vec<DocumentEvent> {
    let cst: FixedOffset = custody_domain::values::china_standard_time();
    let record = record(n);
    if rng.below(100) < 2 {
        return vec![DocumentEvent::IssuanceConfirmed(IssuanceConfirmed {
            record_id: format!("R{n:010}"),
            holder: record.holder_id(),
            document_type: record.document_type,
            number: record.number.clone().into(),
            issued_on: NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
            valid_until: record.valid_until,
        })];
    }
    let unit = units[(n / 7) % units.len()].clone();
    let location = Location {
        unit,
        device: format!("CAB{:05}", n % 5_000).parse().expect("device"),
        drawer: Drawer {
            body: "ZZG0001-1".to_string(),
            row: 1 + (n % 10) as u16,
            column: 1 + (n % 20) as u16,
        },
    };
    let day = rng.below(330) as i64;
    let at = |days: i64| -> DateTime<FixedOffset> {
        cst.with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
            .single()
            .expect("time")
            + chrono::Duration::days(days)
            + chrono::Duration::minutes(rng_minutes(n))
    };
    let deposit = |kind, days| {
        DocumentEvent::Deposited(Deposited {
            kind,
            record: record.clone().into(),
            location: location.clone(),
            operator: Some("admin01".to_string()),
            operated_at: at(days),
        })
    };
    let mut events = vec![deposit(DepositKind::New, day)];
    let roll = rng.below(100);
    let out = day + 1 + rng.below(20) as i64;
    let destination = DESTINATIONS[rng.below(DESTINATIONS.len() as u64) as usize].to_string();
    let withdrawn = |kind, planned_return| {
        DocumentEvent::Withdrawn(Withdrawn {
            kind,
            location: location.clone(),
            operator: Some("admin01".to_string()),
            operated_at: at(out),
            purpose: Some("因公出国".to_string()),
            planned_return,
            destination: Some(destination.clone()),
            travel_approval: None,
            anomaly: None,
        })
    };
    if roll < 60 {
        let planned = (at(out) + chrono::Duration::days(7 + rng.below(24) as i64)).date_naive();
        events.push(withdrawn(WithdrawalKind::Lend, Some(planned)));
        generated.withdrawals += 1;
        let fate = rng.below(100);
        if fate < 70 {
            events.push(deposit(DepositKind::Return, out + 3));
        } else if fate < 85 {
            events.push(DocumentEvent::ReturnDateReached(ReturnDateReached {
                planned_return: planned,
                observed_on: planned + chrono::Duration::days(1),
            }));
            if planned < today {
                generated.overdue += 1;
            }
        }
    } else if roll < 75 {
        events.push(withdrawn(WithdrawalKind::TakeOut, None));
        generated.withdrawals += 1;
        if rng.below(100) < 80 {
            events.push(deposit(DepositKind::Return, out + 2));
        }
    } else if roll < 77 {
        events.push(DocumentEvent::AbnormalWithdrawal(AbnormalWithdrawal {
            reason: AbnormalReason::ChipUnreadable,
            location: location.clone(),
            operator: Some("admin01".to_string()),
            operated_at: at(out),
        }));
        generated.withdrawals += 1;
    } else if roll < 78 {
        events.push(DocumentEvent::Cancelled(Cancelled {
            reason: CancellationReason::Lost,
            proof: None,
        }));
    }
    events
}

fn rng_minutes(n: usize) -> i64 {
    (n % 480) as i64
}

/// Applies every document's events with the stats projector, `BATCH` events a transaction,
/// each holder filed (in the unit of their first document) before their first document: the
/// stats count a document no cabinet has held for its holder's unit.
async fn fill(projector: &Projector, units: &[CreditCode], documents: usize) -> Generated {
    let mut rng = Rng(0x5eed);
    let today = NaiveDate::from_ymd_opt(TODAY.0, TODAY.1, TODAY.2).expect("date");
    let mut generated = Generated::default();
    let mut batch = Vec::with_capacity(BATCH + 8);
    let mut filed = std::collections::HashSet::new();
    let mut position = 0i64;
    for n in 0..documents {
        let holder = record(n);
        if filed.insert(holder.holder_id()) {
            let event = PersonEvent::FilingSubmitted(FilingSubmitted {
                filing_serial: format!("B{n:010}"),
                unit: units[(n / 7) % units.len()].clone(),
                details: PersonDetails {
                    name: holder.chinese_name.clone(),
                    citizen_id: holder.citizen_id.clone(),
                    phone: None,
                    position: None,
                    registered_documents: None,
                }
                .into(),
            });
            position += 1;
            batch.push(feed_item(
                "Person",
                holder.holder_id().to_string(),
                1,
                &event,
                position,
            ));
        }
        let events = document_events(n, &mut rng, units, today, &mut generated);
        let document_type = events
            .first()
            .map(|_| DocumentType::ALL[n % 3])
            .expect("an event");
        let number: DocumentNumber = format!("E{n:08}").parse().expect("number");
        let id = DocumentId::of(document_type, &number).to_string();
        for (i, event) in events.into_iter().enumerate() {
            position += 1;
            batch.push(feed_item(
                "Document",
                id.clone(),
                i as i64 + 1,
                &event,
                position,
            ));
        }
        if batch.len() >= BATCH {
            generated.events += projector.commit(&batch).await.expect("commit");
            batch.clear();
        }
    }
    generated.events += projector.commit(&batch).await.expect("commit");
    generated
}

/// `event` as the feed would hand it over, at `position`.
fn feed_item<E: DomainEvent>(
    aggregate_type: &str,
    aggregate_id: String,
    sequence: i64,
    event: &E,
    position: i64,
) -> FeedItem {
    FeedItem {
        event: StoredEvent {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id,
            sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event).expect("payload"),
            metadata: serde_json::json!({"recorded_at": "2026-12-01T09:00:00+08:00"}),
            global_position: position,
        },
        cursor: Cursor {
            tx_id: position as u64,
            position,
        },
        acker: Acker::None,
    }
}
