//! Nightly reconciliation end to end: N cabinets × M documents each (default 100 × 1,000), each
//! cabinet's signed `sjsb-dzsj` batch posted over HTTP to the app and diffed against the event
//! store, then every batch posted again (duplicates).
//!
//! ```text
//! cargo bench -p custody-tests --bench reconciliation                       # both stores
//! cargo bench -p custody-tests --bench reconciliation -- --store embedded   # one store
//! cargo bench -p custody-tests --bench reconciliation -- --cabinets 10 --documents 500
//! ```
//!
//! Options (after `--`): `--cabinets N`, `--documents M`, `--store embedded|postgres|both`,
//! `--concurrency C` (batches in flight, default 4). PostgreSQL is the harness's throwaway
//! cluster (`fsync=off`); the embedded store is SQLite with `synchronous=FULL`.
//!
//! Set-up, not timed: the cabinets are enrolled and activated over HTTP; their documents'
//! events (a deposit each, and a lend for one in ten) are written straight into the event store
//! with their hash chain, as the command service would have written them; the projectors
//! catch up; every batch is signed. Each batch lists its cabinet's documents (one in twenty as
//! "in the cabinet" although the platform has it lent: the automatic repair), ten documents the
//! platform never saw, and the day's operation log less one in a hundred serials, plus ten
//! serials the platform never received. Timed: posting every batch, with `--concurrency`
//! batches in flight; then posting each again.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it runs 2 cabinets × 40 documents
//! on the embedded store only, in seconds, and checks the same answers.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::DomainEvent;
use custody_commands::ManualClock;
use custody_domain::document::{DepositKind, Deposited, DocumentEvent, WithdrawalKind, Withdrawn};
use custody_domain::identifiers::SerialKind;
use custody_domain::values::{DocumentRecord, Drawer, Location};
use custody_domain::EventMetadata;
use custody_eventlog::{event_hash, Backend, GENESIS_HASH, PREVIOUS_HASH};
use custody_protocol::SignedRequest;
use custody_simulator::generate::random_document_record;
use custody_simulator::reconciliation::DayLedger;
use custody_simulator::SimulatedCabinet;
use custody_tests::samples::time;
use custody_tests::{StoreKind, TestApp};
use futures::stream::{self, StreamExt};

struct Options {
    cabinets: usize,
    documents: usize,
    stores: Vec<StoreKind>,
    concurrency: usize,
    full: bool,
}

fn options() -> Options {
    let args = custody_tests::bench_args::BenchArgs::from_env();
    let (full, stores) = (args.full, args.stores());
    let number = |name: &str, default: usize| args.number(name, default);
    Options {
        cabinets: number("--cabinets", if full { 100 } else { 2 }),
        documents: number("--documents", if full { 1_000 } else { 40 }),
        stores,
        concurrency: number("--concurrency", 4).max(1),
        full,
    }
}

/// One seeded document: its record as the cabinet reads it, its drawer, and what the batch
/// says.
struct Seeded {
    record: custody_protocol::DocumentRecord,
    drawer: Drawer,
    lent: bool,
}

/// A stored event row.
struct Row {
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    payload: String,
    metadata: String,
}

fn domain_record(r: &custody_protocol::DocumentRecord) -> DocumentRecord {
    let date = |d: &str| NaiveDate::parse_from_str(d, "%Y%m%d").expect("date");
    DocumentRecord {
        document_type: r.document_type.parse().expect("type"),
        number: r.document_number.parse().expect("number"),
        citizen_id: r.citizen_id_number.parse().expect("citizen id"),
        chinese_name: r.chinese_name.clone(),
        latin_name: r.latin_name.clone(),
        birth_date: date(&r.birth_date),
        sex: r.sex.parse().expect("sex"),
        valid_until: date(&r.expiry_date),
    }
}

/// The chained rows of one document's events, as the command service would store them.
fn rows(zjbs: &str, events: Vec<(DocumentEvent, EventMetadata)>) -> Vec<Row> {
    let mut previous = GENESIS_HASH.to_string();
    let mut out = Vec::new();
    for (i, (event, metadata)) in events.into_iter().enumerate() {
        let mut map = metadata.to_map();
        map.insert(PREVIOUS_HASH.to_string(), previous.clone());
        let serialized = SerializedEvent::new(
            zjbs.to_string(),
            i + 1,
            "Document".into(),
            event.event_type(),
            event.event_version(),
            serde_json::to_value(&event).expect("payload"),
            serde_json::to_value(&map).expect("metadata"),
        );
        previous = event_hash(&serialized);
        out.push(Row {
            aggregate_id: zjbs.to_string(),
            sequence: i as i64 + 1,
            event_type: serialized.event_type.clone(),
            payload: serialized.payload.to_string(),
            metadata: serialized.metadata.to_string(),
        });
    }
    out
}

async fn insert(app: &TestApp, rows: &[Row]) {
    let pool = app.store.log.platform().pool();
    let json = match app.store.log.backend() {
        Backend::Postgres(_) => |n: usize| format!("CAST(${n} AS json)"),
        Backend::Sqlite(_) => |n: usize| format!("${n}"),
    };
    let mut tx = pool.begin().await.expect("begin");
    for chunk in rows.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let n = i * 5;
                format!(
                    "('Document', ${}, ${}, ${}, '1', {}, {})",
                    n + 1,
                    n + 2,
                    n + 3,
                    json(n + 4),
                    json(n + 5)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(row.aggregate_id.as_str())
                .bind(row.sequence)
                .bind(row.event_type.as_str())
                .bind(row.payload.as_str())
                .bind(row.metadata.as_str());
        }
        query.execute(&mut *tx).await.expect("insert events");
    }
    tx.commit().await.expect("commit");
}

fn metadata(cabinet: &SimulatedCabinet, serial: &str, at: DateTime<FixedOffset>) -> EventMetadata {
    EventMetadata {
        business_serial: Some(serial.to_string()),
        idempotency_key: Some(serial.to_string()),
        sender: cabinet.device_serial().to_string(),
        request_id: Some(uuid::Uuid::new_v4().simple().to_string()),
        envelope_sm3: Some("0".repeat(64)),
        recorded_at: Some(at),
        content_sm3: None,
    }
}

/// Seeds one cabinet's documents into the store; returns them and the day's operation log.
fn seed(
    cabinet: &SimulatedCabinet,
    unit: &str,
    first_number: usize,
    documents: usize,
    rows_out: &mut Vec<Row>,
) -> (Vec<Seeded>, Vec<(String, String, String)>) {
    let mut rng = rand::rng();
    let mut seeded = Vec::with_capacity(documents);
    let mut log = Vec::new();
    for i in 0..documents {
        let mut record = random_document_record(&mut rng);
        // Unique numbers: random ones would collide now and then over 100,000 documents.
        let letter = record.document_number.chars().next().unwrap_or('E');
        record.document_number = format!("{letter}{:08}", first_number + i);
        let drawer = cabinet.drawer(i);
        let domain = domain_record(&record);
        let zjbs = domain.document_id().to_string();
        let location = Location {
            unit: unit.parse().expect("unit"),
            device: cabinet.device_serial().parse().expect("device"),
            drawer: drawer.clone(),
        };
        let deposited_at = time("2026-11-23T09:00:00+08:00") + chrono::Duration::seconds(i as i64);
        let deposit_serial = cabinet
            .next_business_serial(SerialKind::Deposit, deposited_at.timestamp_millis())
            .expect("serial");
        let mut events = vec![(
            DocumentEvent::Deposited(Deposited {
                kind: DepositKind::New,
                record: domain.into(),
                location: location.clone(),
                operator: None,
                operated_at: deposited_at,
            }),
            metadata(cabinet, &deposit_serial, deposited_at),
        )];
        log.push((
            deposit_serial,
            "11".to_string(),
            deposited_at.format("%Y%m%d%H%M%S").to_string(),
        ));
        let lent = i % 10 == 3;
        if lent {
            let lent_at = deposited_at + chrono::Duration::hours(2);
            let serial = cabinet
                .next_business_serial(SerialKind::Withdrawal, lent_at.timestamp_millis())
                .expect("serial");
            events.push((
                DocumentEvent::Withdrawn(Withdrawn {
                    kind: WithdrawalKind::Lend,
                    location,
                    operator: None,
                    operated_at: lent_at,
                    purpose: None,
                    planned_return: NaiveDate::from_ymd_opt(2026, 12, 24),
                    destination: Some("HKG".into()),
                    travel_approval: None,
                    anomaly: None,
                }),
                metadata(cabinet, &serial, lent_at),
            ));
            log.push((
                serial,
                "21".to_string(),
                lent_at.format("%Y%m%d%H%M%S").to_string(),
            ));
        }
        rows_out.extend(rows(&zjbs, events));
        seeded.push(Seeded {
            record,
            drawer,
            lent,
        });
    }
    (seeded, log)
}

/// The cabinet's view of the day: every document, one lent one in two back in its drawer
/// (the repair), ten unknown documents; the log less one serial in a hundred, plus ten the
/// platform never received.
fn ledger(
    cabinet: &SimulatedCabinet,
    seeded: &[Seeded],
    log: &[(String, String, String)],
) -> DayLedger {
    let mut ledger = DayLedger::new();
    for (i, doc) in seeded.iter().enumerate() {
        if doc.lent && i % 20 == 13 {
            ledger.out(&doc.record).expect("ledger");
        } else {
            ledger.in_cabinet(&doc.record, &doc.drawer).expect("ledger");
        }
    }
    for i in 0..10 {
        let stranger = random_document_record(&mut rand::rng());
        ledger
            .in_cabinet(&stranger, &cabinet.drawer(i))
            .expect("ledger");
    }
    for (i, (serial, operation, at)) in log.iter().enumerate() {
        if i % 100 != 50 {
            ledger.log(serial, operation, at);
        }
    }
    for _ in 0..10 {
        let serial = cabinet
            .next_business_serial(
                SerialKind::Deposit,
                time("2026-11-23T12:00:00+08:00").timestamp_millis(),
            )
            .expect("serial");
        ledger.log(&serial, "11", "20261123120000");
    }
    ledger
}

/// What each batch must answer: state deviations, repaired ones, log deviations.
fn expected(documents: usize, log_len: usize) -> (usize, usize, usize) {
    let repairs = (0..documents)
        .filter(|i| i % 10 == 3 && i % 20 != 13)
        .count();
    let platform_only = (0..log_len).filter(|i| i % 100 == 50).count();
    (repairs + 10, repairs, platform_only + 10)
}

async fn wait_for_projections(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (status, body) = app
            .ops(reqwest::Method::GET, "/api/v1/ops/projections", None)
            .await;
        assert_eq!(status, 200, "{body}");
        let behind = body["projections"]
            .as_array()
            .map(|all| all.iter().any(|p| p["lag_events"].as_i64() != Some(0)))
            .unwrap_or(true);
        if !behind {
            return;
        }
        assert!(Instant::now() < deadline, "projections did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Posts every batch, `concurrency` at a time; checks each answer; returns the wall time and
/// the latencies, sorted.
async fn post_all(
    app: &TestApp,
    batches: &[SignedRequest],
    concurrency: usize,
    duplicate: bool,
    expect: (usize, usize, usize),
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(batches)
        .map(|batch| async move {
            let sent = Instant::now();
            let (status, body) = app.send(batch).await;
            let took = sent.elapsed();
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["duplicate"], duplicate, "{body}");
            let states = body["zjztdzpl"].as_array().map_or(0, Vec::len);
            let repaired = body["zjztdzpl"]
                .as_array()
                .map_or(0, |l| l.iter().filter(|d| d["sfxfcg"] == true).count());
            let logs = body["dzsjpl"].as_array().map_or(0, Vec::len);
            assert_eq!((states, repaired, logs), expect, "answer counts");
            took
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    latencies.sort();
    (wall, latencies)
}

async fn run(kind: StoreKind, options: &Options) {
    let app =
        TestApp::spawn_with_clock(kind, ManualClock::at(time("2026-11-23T08:00:00+08:00"))).await;
    let unit = app.unit().await;
    let mut cabinets = Vec::with_capacity(options.cabinets);
    for _ in 0..options.cabinets {
        cabinets.push(app.active_cabinet_of(&unit).await);
    }
    let seeding = Instant::now();
    let mut ledgers = Vec::with_capacity(cabinets.len());
    let mut log_len = 0;
    for (c, cabinet) in cabinets.iter().enumerate() {
        let mut rows = Vec::new();
        let (seeded, log) = seed(
            cabinet,
            &unit,
            c * options.documents,
            options.documents,
            &mut rows,
        );
        insert(&app, &rows).await;
        log_len = log.len();
        ledgers.push(ledger(cabinet, &seeded, &log));
    }
    let events = app.store.log.count().await.expect("count");
    let seeded_in = seeding.elapsed();
    wait_for_projections(&app).await;
    let projected_in = seeding.elapsed();

    app.clock.set(time("2026-11-23T21:00:00+08:00"));
    let day = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    let batches: Vec<SignedRequest> = cabinets
        .iter()
        .zip(&ledgers)
        .map(|(cabinet, ledger)| {
            cabinet
                .reconciliation(day, ledger, app.now_ms())
                .expect("batch")
        })
        .collect();
    let body_bytes = batches
        .first()
        .map(|b| serde_json::to_vec(b).map_or(0, |v| v.len()))
        .unwrap_or(0);
    let expect = expected(options.documents, log_len);

    let (first, first_latencies) =
        post_all(&app, &batches, options.concurrency, false, expect).await;
    let after_first = app.store.log.count().await.expect("count");
    // Sent again: each a duplicate, under a new request id.
    let again: Vec<SignedRequest> = cabinets
        .iter()
        .zip(&batches)
        .map(|(cabinet, batch)| {
            cabinet
                .sign_again(batch, app.now_ms(), None)
                .expect("sign again")
        })
        .collect();
    let (second, second_latencies) =
        post_all(&app, &again, options.concurrency, true, expect).await;
    let after_second = app.store.log.count().await.expect("count");
    assert_eq!(
        after_first, after_second,
        "a batch sent again appends nothing"
    );

    let n = batches.len() as f64;
    println!(
        "reconciliation bench [{}]: {} cabinets x {} documents ({} events seeded in {:.1} s, \
         projected by {:.1} s; batch body {} KiB, {} in flight)",
        match kind {
            StoreKind::Embedded => "embedded",
            StoreKind::Postgres => "postgres",
        },
        options.cabinets,
        options.documents,
        events,
        seeded_in.as_secs_f64(),
        projected_in.as_secs_f64(),
        body_bytes / 1024,
        options.concurrency,
    );
    println!(
        "  first upload: {} batches in {:.2} s = {:.2} batches/s, {:.0} documents/s; latency p50 \
         {:.0} ms, p95 {:.0} ms, max {:.0} ms; per batch {} state deviations ({} repaired), {} \
         log deviations; {} events appended",
        batches.len(),
        first.as_secs_f64(),
        n / first.as_secs_f64(),
        n * options.documents as f64 / first.as_secs_f64(),
        percentile(&first_latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&first_latencies, 0.95).as_secs_f64() * 1e3,
        percentile(&first_latencies, 1.0).as_secs_f64() * 1e3,
        expect.0,
        expect.1,
        expect.2,
        after_first - events,
    );
    println!(
        "  sent again:   {} batches in {:.2} s = {:.2} batches/s; latency p50 {:.0} ms, p95 {:.0} \
         ms; 0 events appended",
        again.len(),
        second.as_secs_f64(),
        n / second.as_secs_f64(),
        percentile(&second_latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&second_latencies, 0.95).as_secs_f64() * 1e3,
    );
    app.stop().await;
}

fn main() {
    let options = options();
    custody_tests::bench_args::run_on_each_store(&options.stores, options.full, |kind| {
        run(kind, &options)
    });
}
