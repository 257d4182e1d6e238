//! Rebuild throughput: stores N realistic events (default 1,000,000) straight into an empty event
//! store, then times `Projector::rebuild` of every projection and prints events/s.
//!
//! ```text
//! cargo bench -p custody-projections --bench rebuild                      # embedded (SQLite)
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p custody-projections --bench rebuild -- --backend both  # and PostgreSQL
//! scripts/bench-projections                                               # starts a throwaway PostgreSQL
//! ```
//!
//! Options (after `--`): `--events N`, `--backend embedded|postgres|both` (default: postgres if
//! `DATABASE_URL` is set, else embedded), `--projections documents,access_records,…`,
//! `--twice` (rebuild each projection a second time, so the rebuild also drops a full old
//! generation), `--keep DIR` (the embedded store in DIR, kept afterwards, e.g. to serve the
//! department page over it: docs/benchmarks.md). `CUSTODY_BENCH_EVENTS` overrides the event
//! count.
//!
//! On PostgreSQL a fresh database `custody_bench_<pid>` is created on the server of
//! `DATABASE_URL` and dropped afterwards; the embedded store lives in a temporary directory.
//!
//! The events are valid serialised domain events (they decode as `DocumentEvent`,
//! `CabinetEvent`, `PersonEvent` and fold through the aggregates' `apply`), with realistic
//! metadata, but they are bulk-inserted behind the command service: the hash chain
//! (`prev_hash`) is not computed and `/api/v1/audit/verify` would refuse this log.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it stores 3,000 events in the
//! embedded store (or as `--backend` says), applies them with the live projector too, through a
//! feed that loses, repeats and reorders events, and checks that every rebuilt view equals the
//! live one, in a few seconds.

mod support;
use support::{drop_database, throwaway_postgres, Rng};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use cqrs_es::DomainEvent;
use custody_domain::cabinet::{Activated, AlarmRaised, CabinetBody, CabinetEvent, Enrolled};
use custody_domain::document::{
    AbnormalReason, AbnormalWithdrawal, BorderCrossed, CrossingDirection,
};
use custody_domain::document::{
    Anomaly, DepositKind, Deposited, DocumentEvent, WithdrawalKind, Withdrawn,
};
use custody_domain::identifiers::{
    CitizenId, CreditCode, DocumentId, DocumentNumber, DocumentType,
};
use custody_domain::person::{FilingSubmitted, PersonDetails, PersonEvent};
use custody_domain::values::DocumentRecord;
use custody_domain::values::{Drawer, Location, Sex};
use custody_eventlog::{Backend, EventLog};
use custody_projections::feed::{Acker, EventFeed, FeedItem, StoreFeed};
use custody_projections::{Projection, Projector};
use sqlx::Row;

const CABINETS: usize = 100;
const UNITS: usize = 20;
const ROWS: u16 = 10;
const COLUMNS: u16 = 20;

struct Options {
    events: usize,
    backends: Vec<&'static str>,
    projections: Vec<Projection>,
    twice: bool,
    quick: bool,
    keep: Option<std::path::PathBuf>,
}

fn options() -> Options {
    let args = support::Args::from_env();
    let (quick, backends) = (args.quick, args.backends());
    let value = |name: &str| args.value(name);
    let events = args.count("CUSTODY_BENCH_EVENTS", "--events", 3_000, 1_000_000);
    let projections = value("--projections")
        .map(|list| {
            list.split(',')
                .map(|name| {
                    Projection::parse(name).unwrap_or_else(|| panic!("no projection {name}"))
                })
                .collect()
        })
        .unwrap_or_else(|| Projection::ALL.to_vec());
    Options {
        events,
        backends,
        projections,
        twice: args.flag("--twice"),
        quick,
        keep: value("--keep").map(Into::into),
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    if !options.quick {
        // The rebuild's phase timings.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG")
                    .unwrap_or_else(|_| "custody_projections=info".to_string()),
            )
            .with_target(false)
            .try_init();
    }
    for backend in &options.backends {
        match *backend {
            "postgres" => {
                let (log, throwaway) =
                    throwaway_postgres("custody_bench", "scripts/bench-projections").await;
                run("postgres", &log, &options).await;
                drop_database(log, throwaway).await;
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = options
                    .keep
                    .clone()
                    .unwrap_or_else(|| dir.path().to_path_buf());
                std::fs::create_dir_all(&path).expect("store dir");
                let log = EventLog::open_embedded(&path).await.expect("open");
                run("embedded", &log, &options).await;
            }
        }
    }
}

async fn run(backend: &str, log: &EventLog, options: &Options) {
    let started = Instant::now();
    let stats = store_events(log, options.events).await;
    let stored = started.elapsed();
    println!(
        "{backend}: stored {} events ({} documents, {} cabinets, {} persons) in {:.1} s ({:.0} events/s)",
        stats.events,
        stats.documents,
        CABINETS,
        stats.persons,
        stored.as_secs_f64(),
        stats.events as f64 / stored.as_secs_f64()
    );
    if options.quick {
        live_then_compare(log, &options.projections).await;
        return;
    }
    println!(
        "{:<10} {:<22} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "backend", "projection", "events", "seconds", "events/s", "CPU s", "RSS MiB", "peak MiB"
    );
    let rounds = if options.twice { 2 } else { 1 };
    for projection in &options.projections {
        let projector = Projector::new(log.clone(), *projection)
            .await
            .expect("projector");
        for round in 0..rounds {
            let before = settle_memory();
            let cpu = cpu_seconds();
            let done = projector.rebuild(2_000, |_| {}).await.expect("rebuild");
            let cpu = cpu_seconds() - cpu;
            let label = if round == 0 {
                projection.name().to_string()
            } else {
                format!("{} (again)", projection.name())
            };
            println!(
                "{:<10} {:<22} {:>9} {:>8.2} {:>9.0} {:>8.1} {:>9} {:>9}",
                backend,
                label,
                done.events,
                done.elapsed.as_secs_f64(),
                done.events_per_second(),
                cpu,
                before.map_or("?".to_string(), |m| m.to_string()),
                peak_rss_mib().map_or("?".to_string(), |m| m.to_string())
            );
        }
    }
}

/// Applies the whole log with the live projector, snapshots every view, rebuilds it and checks
/// the rebuilt generation holds the same rows.
async fn live_then_compare(log: &EventLog, projections: &[Projection]) {
    for projection in projections {
        let projector = Projector::new(log.clone(), *projection)
            .await
            .expect("projector");
        // A feed as bad as JetStream may be: it loses every 7th event (redelivered at the end,
        // out of order) and repeats every 5th, so the live path skips, fills gaps from the store
        // and ignores repeats.
        let mut feed = StoreFeed::new(
            log.clone(),
            projector.status().await.expect("status").cursor,
        );
        let again = |item: &FeedItem| FeedItem {
            event: item.event.clone(),
            cursor: item.cursor,
            acker: Acker::None,
        };
        let mut lost = Vec::new();
        let mut n = 0usize;
        // Whether the generated log holds any event this projection takes (it holds no
        // reconciliation batches, for one).
        let mut took = false;
        loop {
            let items = feed.next(97, Duration::ZERO).await.expect("feed");
            if items.is_empty() {
                break;
            }
            let mut batch = Vec::new();
            for item in items {
                took |= projection.takes(&item.event.aggregate_type);
                n += 1;
                if n % 7 == 3 {
                    lost.push(item);
                } else {
                    if n.is_multiple_of(5) {
                        batch.push(again(&item));
                    }
                    batch.push(item);
                }
            }
            projector.apply(batch).await.expect("apply");
        }
        lost.reverse();
        for chunk in lost.chunks(50) {
            projector
                .apply(chunk.iter().map(again).collect())
                .await
                .expect("apply");
        }
        if !took {
            println!(
                "{}: the generated log holds none of its events; not compared",
                projection.name()
            );
            continue;
        }
        let lag = projector.lag();
        assert!(
            lag.count > 0 && lag.max_ms >= lag.p99_ms && lag.p99_ms >= lag.p50_ms,
            "{lag:?}"
        );
        let live = snapshot(log, *projection, 1).await;
        assert!(
            !live.is_empty(),
            "{}: the live projector wrote nothing",
            projection.name()
        );
        let started = Instant::now();
        let done = projector.rebuild(200, |_| {}).await.expect("rebuild");
        let rebuilt = snapshot(log, *projection, 2).await;
        assert_eq!(live.len(), rebuilt.len(), "{}", projection.name());
        for (key, row) in &live {
            assert_eq!(Some(row), rebuilt.get(key), "{} {key}", projection.name());
        }
        assert_eq!(
            projector.status().await.expect("status").active_generation,
            2
        );
        assert!(
            snapshot(log, *projection, 1).await.is_empty(),
            "the old generation is dropped"
        );
        println!(
            "{}: rebuilt {} events into {} rows in {:.2} s, equal to the live view",
            projection.name(),
            done.events,
            live.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Every row of one generation of a view (and its positions), keyed, without the generation.
async fn snapshot(
    log: &EventLog,
    projection: Projection,
    generation: i64,
) -> BTreeMap<String, String> {
    let tables: &[&str] = match projection {
        Projection::Documents => &["view_documents"],
        Projection::Persons => &["view_persons"],
        Projection::Cabinets => &["view_cabinets"],
        Projection::AccessRecords => &["view_access_records"],
        Projection::Alerts => &["view_alerts"],
        Projection::Reconciliations => &["view_reconciliations", "view_reconciliation_deviations"],
        Projection::Stats => &[
            "view_stats_documents",
            "view_stats_holders",
            "view_stats_undeposited",
            "view_stats_states",
            "view_stats_due",
            "view_stats_withdrawals",
            "view_stats_destinations",
        ],
    };
    let pool = log.platform().pool();
    let mut out = BTreeMap::new();
    let mut rows = Vec::new();
    for table in tables {
        // A counter the live projector took down to 0 keeps its row; a rebuild writes none.
        let counted = table.starts_with("view_stats_")
            && !["view_stats_documents", "view_stats_holders"].contains(table);
        let nonzero = if counted { " AND n <> 0" } else { "" };
        let sql = format!("SELECT * FROM {table} WHERE generation = $1{nonzero}");
        let found = sqlx::query(&sql)
            .bind(generation)
            .fetch_all(pool)
            .await
            .expect("snapshot");
        rows.extend(found.into_iter().map(|row| (table, row)));
    }
    for (table, row) in rows {
        let mut key = format!("{table}/");
        let mut text = String::new();
        for (i, column) in sqlx::Row::columns(&row).iter().enumerate() {
            let name = sqlx::Column::name(column);
            if name == "generation" {
                continue;
            }
            let value = row
                .try_get::<Option<String>, _>(i)
                .map(|v| format!("{v:?}"))
                .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                .expect("text or integer");
            if i <= 3 {
                let _ = write!(key, "{value}/");
            }
            let _ = write!(text, "{name}={value};");
        }
        out.insert(key, text);
    }
    let positions = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence FROM projection_positions \
         WHERE projection = $1 AND generation = $2",
    )
    .bind(projection.name())
    .bind(generation)
    .fetch_all(pool)
    .await
    .expect("positions");
    for row in positions {
        let kind: String = row.get("aggregate_type");
        let id: String = row.get("aggregate_id");
        let sequence: i64 = row.get("sequence");
        out.insert(format!("position/{kind}/{id}"), sequence.to_string());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The events.

fn credit_code(n: usize) -> CreditCode {
    let mut code = format!("11110000{:09}", 100_000_000 + n);
    let check = CreditCode::check_character(code.as_bytes()).expect("alphabet");
    code.push(check);
    code.parse().expect("credit code")
}

fn citizen_id(rng: &mut Rng, birth: NaiveDate) -> CitizenId {
    let first17 = format!("110101{}{:03}", birth.format("%Y%m%d"), rng.below(1000));
    let mut digits = [0u8; 17];
    digits.copy_from_slice(first17.as_bytes());
    format!("{first17}{}", CitizenId::check_character(&digits))
        .parse()
        .expect("citizen id")
}

const SURNAMES: [(&str, &str); 8] = [
    ("王", "WANG"),
    ("李", "LI"),
    ("张", "ZHANG"),
    ("刘", "LIU"),
    ("陈", "CHEN"),
    ("杨", "YANG"),
    ("赵", "ZHAO"),
    ("黄", "HUANG"),
];
const GIVEN: [(&str, &str); 8] = [
    ("伟", "WEI"),
    ("芳", "FANG"),
    ("娜", "NA"),
    ("敏", "MIN"),
    ("静", "JING"),
    ("强", "QIANG"),
    ("磊", "LEI"),
    ("洋", "YANG"),
];

fn cst() -> FixedOffset {
    custody_domain::values::china_standard_time()
}

struct Doc {
    id: String,
    record: DocumentRecord,
    cabinet: usize,
    drawer: Drawer,
    sequence: i64,
    in_cabinet: bool,
}

/// One event ready to store.
struct Raw {
    aggregate_type: &'static str,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    payload: String,
    metadata: String,
}

struct Stats {
    events: usize,
    documents: usize,
    persons: usize,
}

struct Generator {
    rng: Rng,
    units: Vec<CreditCode>,
    devices: Vec<String>,
    clock: DateTime<FixedOffset>,
    serial: u64,
}

impl Generator {
    fn now(&mut self) -> DateTime<FixedOffset> {
        self.clock += chrono::Duration::milliseconds(20 + self.rng.below(40) as i64);
        self.clock
    }

    fn metadata(&mut self, sender: &str, prefix: &str, at: DateTime<FixedOffset>) -> String {
        self.serial += 1;
        let serial = format!(
            "{prefix}{:06}{}{:06}{}",
            self.serial % 1_000_000,
            at.format("%Y%m%d%H%M%S"),
            self.serial % 1_000_000,
            self.rng.hex(32)
        );
        serde_json::json!({
            "ei": sender,
            "ywlsh": serial,
            "idempotency_key": serial,
            "reqid": self.rng.hex(32),
            "envelope_sm3": self.rng.hex(64),
            // Not a real hash chain: this log is written behind the command service.
            "prev_hash": self.rng.hex(64),
            "recorded_at": at.to_rfc3339(),
        })
        .to_string()
    }

    fn document(&mut self, n: usize) -> Doc {
        let document_type = DocumentType::ALL[n % 3];
        let number: DocumentNumber = format!("E{:08}", n).parse().expect("number");
        let birth = NaiveDate::from_ymd_opt(
            1960 + (n % 40) as i32,
            1 + (n % 12) as u32,
            1 + (n % 28) as u32,
        )
        .expect("date");
        let (surname, surname_latin) = SURNAMES[self.rng.below(8) as usize];
        let (given, given_latin) = GIVEN[self.rng.below(8) as usize];
        let record = DocumentRecord {
            document_type,
            number: number.clone(),
            citizen_id: citizen_id(&mut self.rng, birth),
            chinese_name: format!("{surname}{given}"),
            latin_name: format!("{surname_latin} {given_latin}"),
            birth_date: birth,
            sex: if n.is_multiple_of(2) {
                Sex::Male
            } else {
                Sex::Female
            },
            valid_until: NaiveDate::from_ymd_opt(2030 + (n % 5) as i32, 6, 1).expect("date"),
        };
        let cabinet = self.rng.below(CABINETS as u64) as usize;
        Doc {
            id: DocumentId::of(document_type, &number).to_string(),
            record,
            cabinet,
            drawer: Drawer {
                body: format!("ZZG{cabinet:04}-1"),
                row: 1 + self.rng.below(u64::from(ROWS)) as u16,
                column: 1 + self.rng.below(u64::from(COLUMNS)) as u16,
            },
            sequence: 0,
            in_cabinet: false,
        }
    }

    fn location(&self, doc: &Doc) -> Location {
        Location {
            unit: self.units[doc.cabinet % UNITS].clone(),
            device: self.devices[doc.cabinet].parse().expect("device"),
            drawer: doc.drawer.clone(),
        }
    }

    /// The next event of `doc` (always allowed by the document's transition table).
    fn next_document_event(&mut self, doc: &mut Doc) -> Raw {
        let at = self.now();
        let location = self.location(doc);
        let roll = self.rng.below(100);
        let (event, prefix) = if !doc.in_cabinet {
            doc.in_cabinet = true;
            let kind = if doc.sequence == 0 {
                DepositKind::New
            } else {
                DepositKind::Return
            };
            (
                DocumentEvent::Deposited(Deposited {
                    kind,
                    record: doc.record.clone().into(),
                    location,
                    operator: Some("admin01".to_string()),
                    operated_at: at,
                }),
                "RG",
            )
        } else if roll < 2 {
            doc.in_cabinet = false;
            (
                DocumentEvent::AbnormalWithdrawal(AbnormalWithdrawal {
                    reason: AbnormalReason::ChipUnreadable,
                    location,
                    operator: Some("admin01".to_string()),
                    operated_at: at,
                }),
                "CG",
            )
        } else if roll < 4 {
            // An exit while the document is in the cabinet: recorded with its anomaly.
            (
                DocumentEvent::BorderCrossed(BorderCrossed {
                    record_id: self.rng.hex(16),
                    direction: CrossingDirection::Exit,
                    crossed_at: at,
                    port: "罗湖口岸".to_string(),
                    country: "HKG".to_string(),
                    anomaly: Some(Anomaly::ExitWhileInCabinet),
                }),
                "CR",
            )
        } else {
            doc.in_cabinet = false;
            let lend = roll < 70;
            let unapproved = lend && roll.is_multiple_of(10);
            (
                DocumentEvent::Withdrawn(Withdrawn {
                    kind: if lend {
                        WithdrawalKind::Lend
                    } else {
                        WithdrawalKind::TakeOut
                    },
                    location,
                    operator: Some("admin01".to_string()),
                    operated_at: at,
                    purpose: Some("因公出国".to_string()),
                    planned_return: lend.then(|| (at + chrono::Duration::days(30)).date_naive()),
                    destination: Some("新加坡".to_string()),
                    travel_approval: (lend && !unapproved).then(|| self.rng.hex(64)),
                    anomaly: unapproved.then_some(Anomaly::WithdrawalWithoutApproval),
                }),
                "CG",
            )
        };
        doc.sequence += 1;
        let sender = self.devices[doc.cabinet].clone();
        Raw {
            aggregate_type: "Document",
            aggregate_id: doc.id.clone(),
            sequence: doc.sequence,
            event_type: event.event_type(),
            payload: serde_json::to_string(&event).expect("payload"),
            metadata: self.metadata(&sender, prefix, at),
        }
    }
}

/// Stores `count` events: 100 cabinets (enrolled, activated, the odd alarm), about count/5
/// documents moving in and out of their drawers, and a person filing now and then.
async fn store_events(log: &EventLog, count: usize) -> Stats {
    let start = cst()
        .with_ymd_and_hms(2025, 1, 1, 8, 0, 0)
        .single()
        .expect("time");
    let mut generator = Generator {
        rng: Rng(0x5eed),
        units: (0..UNITS).map(credit_code).collect(),
        devices: (0..CABINETS).map(|n| format!("CAB{n:05}")).collect(),
        clock: start,
        serial: 0,
    };
    let mut sink = Sink::new(log);
    let mut stats = Stats {
        events: 0,
        documents: 0,
        persons: 0,
    };
    for cabinet in 0..CABINETS {
        let device = generator.devices[cabinet].clone();
        let enrolled = CabinetEvent::Enrolled(Enrolled {
            unit: generator.units[cabinet % UNITS].clone(),
            model: "ZJG-200".to_string(),
            bodies: vec![CabinetBody {
                serial: format!("ZZG{cabinet:04}-1"),
                rows: ROWS,
                columns: COLUMNS,
            }],
            // A whole SM2 public key (one for every cabinet), so that `custody serve` can
            // load its registry over this store (scripts/bench-department-page).
            public_key_pem: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEBXaosudxgzBArCKr4Cy/Iyhvd0/I\nXe3Poc9WWP76iNZ9vuDHzUoUGACVCe0rpvYO2ArNB7hFmTLfWHaKm00smQ==\n-----END PUBLIC KEY-----\n".to_string(),
        });
        let at = generator.now();
        let activated = CabinetEvent::Activated(Activated {
            unit_name: format!("单位{}", cabinet % UNITS),
            contact: Some("张伟".to_string()),
            contact_phone: Some("13800000000".to_string()),
            administrators: vec![],
            activated_at: at,
        });
        for (sequence, event) in [(1, enrolled), (2, activated)] {
            let metadata = generator.metadata("operator", "KG", at);
            sink.push(Raw {
                aggregate_type: "Cabinet",
                aggregate_id: device.clone(),
                sequence,
                event_type: event.event_type(),
                payload: serde_json::to_string(&event).expect("payload"),
                metadata,
            })
            .await;
        }
        stats.events += 2;
    }
    let mut cabinet_sequence = vec![2i64; CABINETS];
    let documents = (count / 5).max(1);
    let mut docs: Vec<Doc> = (0..documents).map(|n| generator.document(n)).collect();
    stats.documents = documents;
    'rounds: loop {
        for doc in docs.iter_mut() {
            if stats.events >= count {
                break 'rounds;
            }
            let roll = generator.rng.below(1000);
            if roll < 20 {
                // A person filing for the holder.
                let event = PersonEvent::FilingSubmitted(FilingSubmitted {
                    filing_serial: generator.rng.hex(20),
                    unit: generator.units[doc.cabinet % UNITS].clone(),
                    details: PersonDetails {
                        name: doc.record.chinese_name.clone(),
                        citizen_id: doc.record.citizen_id.clone(),
                        phone: Some("13900000000".to_string()),
                        position: Some("处长".to_string()),
                        registered_documents: Some(doc.record.number.to_string()),
                    }
                    .into(),
                });
                let at = generator.now();
                let metadata = generator.metadata("unit-client", "BA", at);
                sink.push(Raw {
                    aggregate_type: "Person",
                    aggregate_id: format!("{:064x}", stats.persons),
                    sequence: 1,
                    event_type: event.event_type(),
                    payload: serde_json::to_string(&event).expect("payload"),
                    metadata,
                })
                .await;
                stats.persons += 1;
                stats.events += 1;
                continue;
            }
            if roll < 22 {
                let cabinet = generator.rng.below(CABINETS as u64) as usize;
                let at = generator.now();
                let event = CabinetEvent::AlarmRaised(AlarmRaised {
                    kind: "door".to_string(),
                    content: "非法开门".to_string(),
                    raised_at: at,
                });
                cabinet_sequence[cabinet] += 1;
                let device = generator.devices[cabinet].clone();
                let metadata = generator.metadata(&device, "BJ", at);
                sink.push(Raw {
                    aggregate_type: "Cabinet",
                    aggregate_id: device,
                    sequence: cabinet_sequence[cabinet],
                    event_type: event.event_type(),
                    payload: serde_json::to_string(&event).expect("payload"),
                    metadata,
                })
                .await;
                stats.events += 1;
                continue;
            }
            let raw = generator.next_document_event(doc);
            sink.push(raw).await;
            stats.events += 1;
        }
    }
    sink.finish().await;
    stats
}

/// Writes events to the store in big transactions: COPY on PostgreSQL, multi-row INSERTs on
/// SQLite.
struct Sink<'a> {
    log: &'a EventLog,
    pending: Vec<Raw>,
}

const EVENTS_PER_TRANSACTION: usize = 50_000;

impl<'a> Sink<'a> {
    fn new(log: &'a EventLog) -> Self {
        Sink {
            log,
            pending: Vec::with_capacity(EVENTS_PER_TRANSACTION),
        }
    }

    async fn push(&mut self, raw: Raw) {
        self.pending.push(raw);
        if self.pending.len() >= EVENTS_PER_TRANSACTION {
            self.flush().await;
        }
    }

    async fn finish(mut self) {
        self.flush().await;
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending);
        match self.log.backend() {
            Backend::Postgres(pool) => {
                use sqlx::postgres::PgPoolCopyExt;
                let mut data = String::with_capacity(events.len() * 1_200);
                let escape = |s: &str| {
                    s.replace('\\', "\\\\")
                        .replace('\t', "\\t")
                        .replace('\n', "\\n")
                };
                for e in &events {
                    let _ = writeln!(
                        data,
                        "{}\t{}\t{}\t{}\t1\t{}\t{}",
                        e.aggregate_type,
                        e.aggregate_id,
                        e.sequence,
                        e.event_type,
                        escape(&e.payload),
                        escape(&e.metadata)
                    );
                }
                let mut copy = pool
                    .copy_in_raw(
                        "COPY events (aggregate_type, aggregate_id, sequence, event_type, \
                         event_version, payload, metadata) FROM STDIN",
                    )
                    .await
                    .expect("copy");
                copy.send(data.into_bytes()).await.expect("copy data");
                copy.finish().await.expect("copy finish");
            }
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                for chunk in events.chunks(500) {
                    let mut sql = String::from(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                         event_version, payload, metadata) VALUES ",
                    );
                    for i in 0..chunk.len() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str("(?, ?, ?, ?, '1', ?, ?)");
                    }
                    let mut query = sqlx::query(&sql);
                    for e in chunk {
                        query = query
                            .bind(e.aggregate_type)
                            .bind(&e.aggregate_id)
                            .bind(e.sequence)
                            .bind(&e.event_type)
                            .bind(&e.payload)
                            .bind(&e.metadata);
                    }
                    query.execute(&mut *tx).await.expect("insert events");
                }
                tx.commit().await.expect("commit");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// Gives freed memory back to the system and resets the peak resident set size (Linux: `5` to
/// /proc/self/clear_refs), so that the next peak is the rebuild's; the resident size now.
fn settle_memory() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free heap memory to the system.
        unsafe {
            malloc_trim(0);
        }
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_mib("VmRSS:")
}

fn peak_rss_mib() -> Option<u64> {
    status_mib("VmHWM:")
}

fn status_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// User + system CPU time of this process so far (all threads), in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // After the command name in parentheses: field 14 (utime) and 15 (stime), in ticks of 1/100 s.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
