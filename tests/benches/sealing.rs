//! The cost of sealing personal data at rest in the ingress (issue 16): the same signed,
//! enveloped deposits sent to a service that seals (as `serve` always does) and to one that does
//! not, in one run, alternating, on each store.
//!
//! ```text
//! cargo bench -p custody-tests --bench sealing                      # both stores
//! cargo bench -p custody-tests --bench sealing -- --store postgres --seconds 20 --rounds 3
//! ```
//!
//! Each round spawns a fresh service without sealing, then one with it, and runs the cabinet
//! simulator's load generator against it (`--cabinets`, `--concurrency`, `--seconds`,
//! `--requests`; the reports are signed before the timed phase). Printed: reports/s, p50 and
//! p99 of each, the ratio, and the ceiling sealing alone puts on the machine (a record sealed in
//! a loop on one core, times the cores).
//!
//! Without `--bench` it runs a few reports on the embedded store and checks that the sealed
//! store holds sealed records and the other plain ones.

use std::time::{Duration, Instant};

use custody_simulator::http::OpsClient;
use custody_simulator::{run_load, LoadConfig};
use custody_tests::{AppOptions, StoreKind, TestApp, OPS_TOKEN};

struct Options {
    load: LoadConfig,
    rounds: usize,
    stores: Vec<StoreKind>,
    full: bool,
}

fn options() -> Options {
    let args = custody_tests::bench_args::BenchArgs::from_env();
    let (full, stores) = (args.full, args.stores());
    let number = |name: &str, quick: usize, default: usize| {
        args.number(name, if full { default } else { quick })
    };
    Options {
        load: LoadConfig {
            cabinets: number("--cabinets", 2, 20).max(1),
            duration: Duration::from_secs(number("--seconds", 2, 15).max(1) as u64),
            concurrency: number("--concurrency", 4, 32).max(1),
            max_requests: number("--requests", 40, 40_000).max(1),
            rate: None,
        },
        rounds: number("--rounds", 1, 2).max(1),
        stores,
        full,
    }
}

struct Figures {
    /// Accepted reports a second.
    throughput: f64,
    /// Answers other than 200, by code.
    refused: Vec<(u16, String, usize)>,
    p50_ms: f64,
    p99_ms: f64,
}

async fn one_run(kind: StoreKind, seal: bool, load: &LoadConfig, full: bool) -> Figures {
    let app = TestApp::spawn_with(
        kind,
        AppOptions {
            seal_personal_data: seal,
            ..AppOptions::default()
        },
    )
    .await;
    let ops = OpsClient::new(reqwest::Client::new(), &app.url(""), OPS_TOKEN).expect("ops client");
    let report = run_load(&ops, load).await.expect("load run");
    let summary = &report.summary;
    let accepted = summary
        .by_outcome
        .iter()
        .filter(|((status, _), _)| *status == 200)
        .map(|(_, n)| n)
        .sum::<usize>();
    if !full {
        assert_eq!(
            accepted, summary.answered,
            "{kind:?}: every report is accepted: {:?} {:?}",
            summary.by_outcome, summary.failures
        );
        // The two services differ in exactly what is measured.
        app.caught_up().await;
        let payloads: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(payload AS TEXT) FROM events WHERE event_type = 'Deposited'",
        )
        .fetch_all(app.store.log.platform().pool())
        .await
        .expect("events");
        assert!(!payloads.is_empty());
        let sealed = payloads
            .iter()
            .filter(|p| p.contains("\"sealed_for\""))
            .count();
        assert_eq!(
            sealed,
            if seal { payloads.len() } else { 0 },
            "{kind:?} seal={seal}"
        );
    }
    let latency = summary.latency.as_ref();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let figures = Figures {
        throughput: accepted as f64 / summary.elapsed.as_secs_f64().max(1e-9),
        refused: summary
            .by_outcome
            .iter()
            .filter(|((status, _), _)| *status != 200)
            .map(|((status, code), n)| (*status, code.clone(), *n))
            .collect(),
        p50_ms: ms(latency.map(|l| l.p50)),
        p99_ms: ms(latency.map(|l| l.p99)),
    };
    app.stop().await;
    figures
}

/// Sealing alone: a deposit's record (its JSON, about 300 bytes) sealed in a loop on one core.
fn sealing_ceiling() -> (f64, f64) {
    let key = custody_vault::DataKey::generate();
    let record = br#"{"document_type":"14","number":"E12345678","citizen_id":"11010519491231002X","chinese_name":"\u5f20\u4e09","latin_name":"ZHANG SAN","birth_date":"1949-12-31","sex":"male","valid_until":"2036-11-19"}"#;
    let aad =
        b"Document/0123456789abcdef0123456789abcdef0123456789abcdef0123456789/Deposited/record";
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(custody_vault::seal(&key, aad, record));
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (micros, cores * 1e6 / micros)
}

async fn run(kind: StoreKind, options: &Options) {
    let mut plain = Vec::new();
    let mut sealed = Vec::new();
    for round in 1..=options.rounds {
        for seal in [false, true] {
            let figures = one_run(kind, seal, &options.load, options.full).await;
            println!(
                "sealing, {kind:?}, round {round}, {}: {:.0} accepted reports/s, p50 {:.1} ms, \
                 p99 {:.1} ms, refused {:?}",
                if seal { "sealed  " } else { "unsealed" },
                figures.throughput,
                figures.p50_ms,
                figures.p99_ms,
                figures.refused
            );
            if seal {
                sealed.push(figures.throughput);
            } else {
                plain.push(figures.throughput);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (micros, ceiling) = sealing_ceiling();
    println!(
        "sealing, {kind:?}: unsealed {:.0}/s, sealed {:.0}/s (mean of {} rounds, {} cabinets, \
         concurrency {}): sealed/unsealed = {:.3}; sealing one record takes {micros:.1} µs, a \
         ceiling of {ceiling:.0} records/s on this machine's cores",
        mean(&plain),
        mean(&sealed),
        options.rounds,
        options.load.cabinets,
        options.load.concurrency,
        mean(&sealed) / mean(&plain),
    );
}

fn main() {
    let options = options();
    custody_tests::bench_args::run_on_each_store(&options.stores, options.full, |kind| {
        run(kind, &options)
    });
}
