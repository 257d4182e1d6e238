//! `GET /metrics` with many cabinets: how long one scrape takes while it reads the state of the
//! moment (projection lag, the outbox, cabinets by heartbeat age, seven days of reconciliation
//! uploads and missing uploads, a timed acquire per pool).
//!
//! ```text
//! cargo bench -p custody-tests --bench scrape                          # both stores
//! cargo bench -p custody-tests --bench scrape -- --store postgres --cabinets 2000 --scrapes 50
//! ```
//!
//! Set-up, not timed: `--cabinets N` (default 500) cabinets enrolled and activated over HTTP,
//! each beating once, half of them 22 hours earlier, and the missing-upload check run for the
//! last closed date (every cabinet is missing: none uploaded). Timed: `--scrapes K` (default 20)
//! scrapes one after another; printed: p50, p90 and the slowest, and the exposition's size.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it runs 3 cabinets and 3 scrapes
//! on the embedded store only, and checks what the scrape says of them.

use std::time::{Duration, Instant};

use custody_commands::ManualClock;
use custody_tests::samples::time;
use custody_tests::{AppOptions, StoreKind, TestApp};

struct Options {
    cabinets: usize,
    scrapes: usize,
    stores: Vec<StoreKind>,
    full: bool,
}

fn options() -> Options {
    let args = custody_tests::bench_args::BenchArgs::from_env();
    let (full, stores) = (args.full, args.stores());
    let number = |name: &str, default: usize| args.number(name, default);
    Options {
        cabinets: number("--cabinets", if full { 500 } else { 3 }).max(1),
        scrapes: number("--scrapes", if full { 20 } else { 3 }).max(1),
        stores,
        full,
    }
}

fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

async fn run(kind: StoreKind, options: &Options) {
    let app = TestApp::spawn_with(
        kind,
        AppOptions {
            clock: ManualClock::at(time("2026-11-23T10:00:00+08:00")),
            ..AppOptions::default()
        },
    )
    .await;
    let set_up = Instant::now();
    let unit = app.unit().await;
    let mut cabinets = Vec::with_capacity(options.cabinets);
    for _ in 0..options.cabinets {
        cabinets.push(app.active_cabinet_of(&unit).await);
    }
    // Half beat on the 23rd at 12:00, half on the 24th at 09:58; the scrapes run at 10:00 on
    // the 24th.
    let (early, late) = cabinets.split_at(options.cabinets / 2);
    app.clock.set(time("2026-11-23T12:00:00+08:00"));
    for cabinet in early {
        let beat = cabinet.heartbeat(app.now_ms()).expect("heartbeat");
        assert_eq!(app.send(&beat).await.0, 200);
    }
    app.clock.set(time("2026-11-24T09:58:00+08:00"));
    for cabinet in late {
        let beat = cabinet.heartbeat(app.now_ms()).expect("heartbeat");
        assert_eq!(app.send(&beat).await.0, 200);
    }
    app.clock.set(time("2026-11-24T10:00:00+08:00"));
    let missing = custody_processes::check_missing_uploads(
        &app.state.commands,
        app.state.reconciliation_window,
    )
    .await
    .expect("missing-upload check");
    app.caught_up().await;
    let set_up = set_up.elapsed();

    let mut times: Vec<Duration> = Vec::with_capacity(options.scrapes);
    let mut text = String::new();
    for _ in 0..options.scrapes {
        let started = Instant::now();
        text = app.metrics_text().await;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let fresh = "custody_cabinets_by_heartbeat_age{state=\"Active\",age=\"under_15m\"}";
    let old = "custody_cabinets_by_heartbeat_age{state=\"Active\",age=\"1h_to_24h\"}";
    let missing_key = "custody_reconciliation_missing_uploads{business_date=\"2026-11-23\"}";
    assert_eq!(sample(&text, fresh), Some(late.len() as f64), "{fresh}");
    assert_eq!(sample(&text, old), Some(early.len() as f64), "{old}");
    assert_eq!(sample(&text, missing_key), Some(missing as f64));
    assert_eq!(
        missing, options.cabinets,
        "no cabinet uploaded for the 23rd"
    );
    println!(
        "scrape, {kind:?}: {} cabinets ({} missing uploads), {} scrapes: p50 {:.1} ms, \
         p90 {:.1} ms, slowest {:.1} ms; {} bytes, {} samples (set-up {:.1} s, not timed)",
        options.cabinets,
        missing,
        options.scrapes,
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        text.len(),
        text.lines().filter(|l| !l.starts_with('#')).count(),
        set_up.as_secs_f64(),
    );
    app.stop().await;
}

fn main() {
    let options = options();
    custody_tests::bench_args::run_on_each_store(&options.stores, options.full, |kind| {
        run(kind, &options)
    });
}
