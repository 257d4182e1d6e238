//! Issue 16 item 6: a store written in clear (sealing off) is sealed in place by
//! `custody keys seal-plaintext` (docs/personal-data.md, "Migrating a plaintext store"). After
//! an interrupted run and the run that finishes it, no table and no file holds a test person's
//! data in clear, the reads with `pii` still show them, the log verifies (checkpoints made
//! before the reseal included), a second run records nothing, and a change to a resealed
//! payload, to a recorded hash or to the run's record is caught.

use std::sync::Arc;

use custody_api::backup::{backup, checkpoint_public_key, restore};
use custody_api::StoreChoice;
use custody_eventlog::EventLog;
use custody_simulator::generate::document_id;
use custody_simulator::unit::{FilingKind, PersonData};
use custody_simulator::{DepositKind, Trip};
use custody_tests::samples::date;
use custody_tests::{postgres, AppOptions, StoreKind, TestApp, TestStore};
use serde_json::{json, Value};
use sqlx::Row;

use crate::exit_entry::{record, send_ok};
use crate::lifecycle::{filed, processes_caught_up, Parties};
use crate::personal_data::{assert_no_file_holds, lifecycle, tables_holding, Lifecycle};

#[tokio::test]
async fn a_plaintext_store_is_sealed_in_place_and_its_log_still_verifies() {
    for kind in StoreKind::ALL {
        let app = spawn_unsealed(kind).await;
        let Lifecycle {
            unit,
            kept,
            cabinet,
            clear,
            ..
        } = lifecycle(&app).await;
        let auditor = app.token("auditor", &unit, &["pii"]).await;
        let zjbs = document_id(&kept).expect("zjbs");
        let (status, _) = app
            .read(&auditor, &format!("/api/v1/audit/documents/{zjbs}/events"))
            .await;
        assert_eq!(status, 200);
        // A checkpoint over the plain events: it must still verify after the reseal.
        let (status, before) = app
            .ops(reqwest::Method::POST, "/api/v1/audit/checkpoints", None)
            .await;
        assert_eq!(status, 201, "{before}");
        let pool = app.store.log.platform().pool().clone();
        assert!(
            !tables_holding(&pool, kind, &clear).await.is_empty(),
            "{kind:?}: the store was written in clear"
        );
        let store = app.stop().await;
        let data_dir = store.data_dir.path().to_path_buf();

        let log = keyed_log(&store);
        // A run cut short after its first batch (of one event): a transaction each, no record.
        let run = log.reseal_run().await.expect("run");
        assert_eq!(run, 1);
        let first = log.reseal_batch(run, i64::MIN, 1).await.expect("one batch");
        assert_eq!((first.scanned, first.resealed), (1, 1), "{kind:?}");
        assert_eq!(log.reseal_run().await.expect("run"), 1, "not recorded yet");

        // The run that finishes it records both its own events and the first batch's.
        let sealed = custody_api::master_key::seal_plaintext_with_progress(&log)
            .await
            .expect("seal the plaintext store");
        let record = sealed.outcome.record.clone().expect("the run is recorded");
        assert_eq!(record.run, 1);
        assert_eq!(record.events, sealed.outcome.resealed + 1, "{kind:?}");
        // Two deposits, the filing and the issuance at least.
        assert!(record.events >= 4, "{kind:?}: {record:?}");
        let entries = log
            .resealed_entries((i64::MIN, i64::MIN), 1000)
            .await
            .expect("entries");
        assert_eq!(entries.len() as u64, record.events);
        assert_eq!(custody_audit::reseal::digest(&entries), record.entries_sm3);
        // Whoever holds the key recomputes every plain hash from the opened events.
        assert_eq!(
            log.unmatched_plain_hashes().await.expect("key check"),
            Vec::<i64>::new()
        );

        // A second run finds nothing in clear and records nothing.
        let again = custody_api::master_key::seal_plaintext_with_progress(&log)
            .await
            .expect("second run");
        assert_eq!((again.outcome.resealed, again.outcome.record), (0, None));
        assert_eq!(log.reseal_run().await.expect("run"), 2);

        // Nothing in clear in any table, nor in any file of the data directory (the embedded
        // store was compacted: its free pages and write-ahead log held the old bytes).
        let leaks = tables_holding(&pool, kind, &clear).await;
        assert!(
            leaks.is_empty(),
            "{kind:?}: in clear after the reseal: {leaks:?}"
        );
        assert_no_file_holds(&data_dir, &clear, kind);

        // Served again, sealing on: the reads open what was resealed.
        let app = TestApp::serve(store, AppOptions::default()).await;
        let with_pii = app.token("reader", &unit, &["pii"]).await;
        let (status, read) = app
            .read(&with_pii, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["zjhm"], kept.document_number.as_str());
        assert_eq!(read["holder"]["gmsfhm"], kept.citizen_id_number.as_str());
        let reader = app.token("reader", &unit, &[]).await;
        let (_, masked) = app
            .read(&reader, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_ne!(masked["zjhm"], kept.document_number.as_str());
        let auditor = app.token("auditor", &unit, &["pii"]).await;
        let (status, history) = app
            .read(&auditor, &format!("/api/v1/audit/documents/{zjbs}/events"))
            .await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(
            history["events"][0]["payload"]["Deposited"]["record"]["citizen_id"],
            kept.citizen_id_number.as_str(),
            "{history}"
        );

        // A resealed aggregate takes a new event: it links to the plain hash, its chain holds.
        send_ok(
            &app,
            cabinet.lend(
                &kept,
                &cabinet.drawer(0),
                date(2099, 12, 10),
                &Trip::default(),
                app.now_ms(),
            ),
            "lend after the reseal",
        )
        .await;
        let (status, after) = app
            .ops(reqwest::Method::POST, "/api/v1/audit/checkpoints", None)
            .await;
        assert_eq!(status, 201, "{after}");
        let verdict = verify(&app, &auditor).await;
        assert_eq!(verdict["verified"], true, "{kind:?}: {verdict}");

        // The export bundle carries the entries and verifies offline; a resealed payload
        // changed in it is caught there too.
        let verifier = app.state.checkpointer.verifier();
        let mut bundle = app.store.log.audit_bundle("").await.expect("bundle");
        assert_eq!(bundle.resealed, entries);
        let lines = bundle.to_lines();
        let offline = custody_audit::bundle::verify_lines(
            || Ok(std::io::Cursor::new(&lines)),
            &verifier,
            &[],
        )
        .expect("a bundle");
        assert!(offline.verified, "{kind:?}: {offline:?}");
        let event = bundle
            .events
            .iter_mut()
            .find(|e| e.global_position == entries[1].global_position)
            .expect("a resealed event");
        flip_sealed(&mut event.payload);
        let verdict = custody_audit::bundle::verify(&bundle, &verifier);
        assert!(
            verdict
                .findings
                .iter()
                .any(|f| f.kind == custody_audit::bundle::FindingKind::Resealed),
            "{kind:?}: {verdict:?}"
        );

        // A backup of the resealed store restores and passes the restore's check.
        let out_dir = tempfile::tempdir().expect("backup dir");
        let out = out_dir.path().join("backup");
        let key = checkpoint_public_key(app.store.data_dir.path()).expect("key");
        backup(&app.store.log, &app.store.choice, key.as_deref(), &out)
            .await
            .expect("backup");
        let target = match kind {
            StoreKind::Embedded => StoreChoice::Embedded,
            StoreKind::Postgres => StoreChoice::Postgres {
                url: postgres().fresh_database().await,
            },
        };
        let restored_dir = tempfile::tempdir().expect("restore dir");
        let restored = restore(&out, &target, restored_dir.path(), None)
            .await
            .expect("restore");
        assert!(
            restored.verdict.verified,
            "{kind:?}: {:?}",
            restored.verdict
        );

        // Tampering is caught: a byte of a resealed payload, a recorded hash, the run's record.
        let entry = &entries[0];
        let payload: String =
            sqlx::query("SELECT CAST(payload AS TEXT) AS p FROM events WHERE global_position = $1")
                .bind(entry.global_position)
                .fetch_one(&pool)
                .await
                .expect("payload")
                .try_get("p")
                .expect("text");
        let mut flipped: Value = serde_json::from_str(&payload).expect("json");
        flip_sealed(&mut flipped);
        set_payload(&pool, kind, entry.global_position, &flipped.to_string()).await;
        let verdict = verify(&app, &auditor).await;
        assert_resealed_finding(&verdict, kind);
        set_payload(&pool, kind, entry.global_position, &payload).await;
        assert_eq!(verify(&app, &auditor).await["verified"], true);

        let sql = "UPDATE resealed_events SET sealed_hash = $1 WHERE global_position = $2";
        let mut forged = entry.sealed_hash.clone();
        forged.replace_range(0..1, if forged.starts_with('0') { "1" } else { "0" });
        for hash in [&forged, &entry.sealed_hash] {
            sqlx::query(sql)
                .bind(hash)
                .bind(entry.global_position)
                .execute(&pool)
                .await
                .expect("entry");
            if *hash == forged {
                assert_resealed_finding(&verify(&app, &auditor).await, kind);
            }
        }

        let record_position: i64 = sqlx::query_scalar(
            "SELECT global_position FROM events WHERE aggregate_type = 'Store' \
             AND aggregate_id = 'personal-data'",
        )
        .fetch_one(&pool)
        .await
        .expect("the record event");
        let record_payload: String =
            sqlx::query("SELECT CAST(payload AS TEXT) AS p FROM events WHERE global_position = $1")
                .bind(record_position)
                .fetch_one(&pool)
                .await
                .expect("record")
                .try_get("p")
                .expect("text");
        let mut changed: Value = serde_json::from_str(&record_payload).expect("json");
        changed["PlaintextResealed"]["events"] = (record.events + 1).into();
        set_payload(&pool, kind, record_position, &changed.to_string()).await;
        let verdict = verify(&app, &auditor).await;
        assert_resealed_finding(&verdict, kind);
        set_payload(&pool, kind, record_position, &record_payload).await;
        assert_eq!(verify(&app, &auditor).await["verified"], true);

        // An instance with sealing off writes in clear again: a second run reseals that and
        // chains its record after the first.
        let store = app.stop().await;
        let app = TestApp::serve(
            store,
            AppOptions {
                seal_personal_data: false,
                ..AppOptions::default()
            },
        )
        .await;
        let late = crate::exit_entry::record();
        send_ok(
            &app,
            cabinet.deposit(&late, &cabinet.drawer(5), DepositKind::New, app.now_ms()),
            "a deposit in clear",
        )
        .await;
        app.caught_up().await;
        let store = app.stop().await;
        let sealed = custody_api::master_key::seal_plaintext_with_progress(&log)
            .await
            .expect("the second run");
        let second = sealed.outcome.record.expect("recorded");
        assert_eq!((second.run, second.events), (2, 1), "{kind:?}");
        let app = TestApp::serve(store, AppOptions::default()).await;
        let (status, _) = app
            .ops(reqwest::Method::POST, "/api/v1/audit/checkpoints", None)
            .await;
        assert_eq!(status, 201);
        let auditor = app.token("auditor", &unit, &["pii"]).await;
        let verdict = verify(&app, &auditor).await;
        assert_eq!(verdict["verified"], true, "{kind:?}: {verdict}");
        let leaks = tables_holding(&pool, kind, std::slice::from_ref(&late.document_number)).await;
        assert!(leaks.is_empty(), "{kind:?}: {leaks:?}");
        app.stop().await;
    }
}

/// A person written in clear, then erased by a service that seals: the erasure destroys a key
/// their plain events never used. The reseal seals those events under a key it throws away,
/// so they open to nothing, are stored nowhere in clear, and the log still verifies.
#[tokio::test]
async fn an_erased_persons_plain_events_are_sealed_to_nothing() {
    for kind in StoreKind::ALL {
        let app = spawn_unsealed(kind).await;
        let Parties {
            unit,
            cabinet,
            client,
            adapter,
        } = Parties::of(&app).await;
        let leaving = record();
        let who = PersonData::holder_of(&leaving);
        filed(&app, &client, &adapter, FilingKind::New, &who).await;
        send_ok(
            &app,
            cabinet.deposit(&leaving, &cabinet.drawer(0), DepositKind::New, app.now_ms()),
            "deposit in clear",
        )
        .await;
        app.caught_up().await;
        let store = app.stop().await;

        // Sealing from here on: the filing is revoked and the person erased.
        let app = TestApp::serve(store, AppOptions::default()).await;
        filed(&app, &client, &adapter, FilingKind::Revoke, &who).await;
        processes_caught_up(&app).await;
        app.caught_up().await;
        let rybs = who.person_id().expect("rybs");
        let erasure = json!({"ground": "purpose_fulfilled", "reference": "RS-2026/18"});
        let (status, body) = app
            .ops(
                reqwest::Method::POST,
                &format!("/api/v1/ops/persons/{rybs}/erasure"),
                Some(erasure),
            )
            .await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        let store = app.stop().await;

        let data_dir = store.data_dir.path().to_path_buf();
        let log = keyed_log(&store);
        let sealed = custody_api::master_key::seal_plaintext_with_progress(&log)
            .await
            .expect("seal the plaintext store");
        // The filing and the deposit at least.
        assert!(
            sealed.outcome.resealed >= 2,
            "{kind:?}: {:?}",
            sealed.outcome
        );

        let mut clear = vec![
            leaving.document_number.clone(),
            leaving.citizen_id_number.clone(),
            leaving.chinese_name.clone(),
        ];
        if !leaving.latin_name.is_empty() {
            clear.push(leaving.latin_name.clone());
        }
        let pool = store.log.platform().pool().clone();
        let leaks = tables_holding(&pool, kind, &clear).await;
        assert!(leaks.is_empty(), "{kind:?}: in clear: {leaks:?}");
        assert_no_file_holds(&data_dir, &clear, kind);

        // Served again: the document and its history read as erased; the log verifies.
        let app = TestApp::serve(store, AppOptions::default()).await;
        let zjbs = document_id(&leaving).expect("zjbs");
        let reader = app.token("reader", &unit, &["pii"]).await;
        let (status, document) = app
            .read(&reader, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_eq!(status, 200, "{kind:?}: {document}");
        assert_eq!(document["zjhm"], Value::Null, "{kind:?}: {document}");
        assert_eq!(
            document["holder"]["gmsfhm"],
            Value::Null,
            "{kind:?}: {document}"
        );
        let auditor = app.token("auditor", &unit, &["pii"]).await;
        let (status, history) = app
            .read(&auditor, &format!("/api/v1/audit/documents/{zjbs}/events"))
            .await;
        assert_eq!(status, 200, "{kind:?}: {history}");
        assert_eq!(
            history["events"][0]["payload"]["Deposited"]["record"],
            json!({"erased_for": rybs}),
            "{kind:?}: {history}"
        );
        let verdict = verify(&app, &auditor).await;
        assert_eq!(verdict["verified"], true, "{kind:?}: {verdict}");
        app.stop().await;
    }
}

/// A service on a fresh store of `kind` that writes personal data in clear.
async fn spawn_unsealed(kind: StoreKind) -> TestApp {
    TestApp::spawn_with(
        kind,
        AppOptions {
            seal_personal_data: false,
            ..AppOptions::default()
        },
    )
    .await
}

/// The stopped store's log with its master key, as `custody keys seal-plaintext` opens it.
fn keyed_log(store: &TestStore) -> EventLog {
    let master =
        custody_api::master_key::load(store.data_dir.path(), None, None).expect("master key");
    store.log.clone().with_personal_data(Arc::new(master))
}

async fn verify(app: &TestApp, auditor: &str) -> Value {
    let (status, verdict) = app.read(auditor, "/api/v1/audit/verify").await;
    assert_eq!(status, 200, "{verdict}");
    verdict
}

fn assert_resealed_finding(verdict: &Value, kind: StoreKind) {
    assert_eq!(verdict["verified"], false, "{kind:?}: {verdict}");
    assert!(
        verdict["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "resealed")),
        "{kind:?}: {verdict}"
    );
}

/// Changes one character of the first sealed field's ciphertext.
fn flip_sealed(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(sealed)) = map.get_mut("sealed") {
                let c = if sealed.starts_with('A') { "B" } else { "A" };
                sealed.replace_range(0..1, c);
                return;
            }
            map.values_mut().for_each(flip_sealed);
        }
        Value::Array(items) => items.iter_mut().for_each(flip_sealed),
        _ => {}
    }
}

async fn set_payload(pool: &sqlx::AnyPool, kind: StoreKind, position: i64, payload: &str) {
    let sql = match kind {
        StoreKind::Postgres => {
            "UPDATE events SET payload = CAST($1 AS json) WHERE global_position = $2"
        }
        StoreKind::Embedded => "UPDATE events SET payload = $1 WHERE global_position = $2",
    };
    sqlx::query(sql)
        .bind(payload)
        .bind(position)
        .execute(pool)
        .await
        .expect("write the payload");
}

/// The cost of the migration (docs/benchmarks.md, "Sealing a plaintext store"): issuances of
/// `RESEAL_BENCH_EVENTS` documents (default 2,000), each a new holder, written with sealing off;
/// then the command, timed: the events resealed, the views rebuilt, the store compacted.
/// `cargo test -p custody-tests --test integration seal_plaintext::reseal_cost -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn reseal_cost() {
    use std::time::Instant;
    let total: usize = std::env::var("RESEAL_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    for kind in StoreKind::ALL {
        let app = spawn_unsealed(kind).await;
        let adapter = crate::exit_entry::registered_adapter(&app).await;
        let mut sent = 0;
        while sent < total {
            let records: Vec<_> = (0..100.min(total - sent))
                .map(|_| {
                    adapter
                        .issued(&crate::exit_entry::record(), date(2026, 11, 20))
                        .expect("issued record")
                })
                .collect();
            sent += records.len();
            send_ok(
                &app,
                adapter.issued_documents(&records, app.now_ms()),
                "issued",
            )
            .await;
        }
        app.caught_up().await;
        let store = app.stop().await;
        let events = store.log.count().await.expect("count");
        let log = keyed_log(&store);
        let started = Instant::now();
        let run = log.reseal_run().await.expect("run");
        let mut after = i64::MIN;
        let mut resealed = 0;
        loop {
            let batch = log.reseal_batch(run, after, 500).await.expect("batch");
            resealed += batch.resealed;
            match batch.next {
                Some(next) => after = next,
                None => break,
            }
        }
        log.record_reseal_run(run).await.expect("record");
        let events_time = started.elapsed();
        let started = Instant::now();
        let sealed = custody_api::master_key::seal_plaintext_with_progress(&log)
            .await
            .expect("the rest of the command");
        let rest = started.elapsed();
        assert_eq!(sealed.outcome.resealed, 0);
        println!(
            "{kind:?}: {events} events in the log, {resealed} resealed and recorded in {:.2} s \
             ({:.0} events/s); then the command (nothing left to reseal, 2 views rebuilt, \
             compaction) {:.2} s",
            events_time.as_secs_f64(),
            resealed as f64 / events_time.as_secs_f64(),
            rest.as_secs_f64()
        );
    }
}
