//! Issue 16: personal data at rest. After a lifecycle through the service (a filing and its
//! answer, deposits, a lend, a crossing, an issuance), no event in the store holds a test
//! person's citizen ID number, document number or names in clear; the read and audit APIs still
//! answer unmasked with `pii`, and the log verifies without any key (docs/personal-data.md).

use custody_simulator::exit_entry::Direction;
use custody_simulator::generate::document_id;
use custody_simulator::unit::{FilingKind, PersonData};
use custody_simulator::{DepositKind, Trip};
use custody_tests::samples::date;
use custody_tests::{StoreKind, TestApp};
use std::sync::Arc;

use sqlx::{AnyPool, Row};

use crate::exit_entry::{record, send_ok};
use crate::lifecycle::{filed, Parties};

#[tokio::test]
async fn no_event_holds_personal_data_in_clear_and_every_read_still_opens_it() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let Lifecycle {
            unit,
            kept,
            lent,
            clear,
            ..
        } = lifecycle(&app).await;

        // Every stored event, as the database holds it.
        let rows = sqlx::query(
            "SELECT CAST(payload AS TEXT) AS payload, CAST(metadata AS TEXT) AS metadata \
             FROM events",
        )
        .fetch_all(app.store.log.platform().pool())
        .await
        .expect("read the events table");
        assert!(
            rows.len() >= 8,
            "the lifecycle was recorded: {} events",
            rows.len()
        );
        let mut sealed = 0;
        for row in &rows {
            let payload: String = row.try_get("payload").expect("payload");
            let metadata: String = row.try_get("metadata").expect("metadata");
            for value in &clear {
                assert!(
                    !payload.contains(value.as_str()) && !metadata.contains(value.as_str()),
                    "{kind:?}: {value:?} is stored in clear: {payload} {metadata}"
                );
            }
            sealed += usize::from(payload.contains("\"sealed_for\""));
        }
        // Two deposits, the filing and the issuance.
        assert!(sealed >= 4, "{kind:?}: {sealed} events hold sealed fields");

        // The readers still see the values (with `pii`), masked without.
        let zjbs = document_id(&kept).expect("zjbs");
        let with_pii = app.token("reader", &unit, &["pii"]).await;
        let (status, clear_read) = app
            .read(&with_pii, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_eq!(status, 200, "{clear_read}");
        assert_eq!(clear_read["zjhm"], kept.document_number.as_str());
        assert_eq!(
            clear_read["holder"]["gmsfhm"],
            kept.citizen_id_number.as_str()
        );
        let reader = app.token("reader", &unit, &[]).await;
        let (_, masked) = app
            .read(&reader, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_ne!(masked["zjhm"], kept.document_number.as_str());

        // The audit history opens the events for an auditor with `pii`; the log verifies on
        // its stored (sealed) form.
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
        let (status, verdict) = app.read(&auditor, "/api/v1/audit/verify").await;
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(verdict["verified"], true, "{verdict}");

        // The aggregate replays from the sealed events.
        let document = crate::exit_entry::document(&app, &lent).await;
        assert_eq!(
            document.number.map(|n| n.as_str().to_string()),
            Some(lent.document_number.clone())
        );
        // After the reads: the query audit log holds what they were about.
        // Every table holds personal data in clear in
        // none: a new table that leaks fails here. (The reconciliation's deviations keep the
        // holder's RYBS only; reconciliation::another_drawer_than_the_platforms_is_listed
        // checks its tables after a batch.)
        let leaks = tables_holding(app.store.log.platform().pool(), kind, &clear).await;
        assert!(
            leaks.is_empty(),
            "{kind:?}: personal data in clear: {leaks:?}"
        );

        // Every file the service wrote in its data directory (the embedded store's database and
        // write-ahead log, keys, spool), byte for byte.
        assert_no_file_holds(app.store.data_dir.path(), &clear, kind);
        app.stop().await;
    }
}

/// What [`lifecycle`] did: the unit, two of its documents, and every personal value it sent.
pub(crate) struct Lifecycle {
    pub unit: String,
    pub kept: custody_protocol::DocumentRecord,
    pub lent: custody_protocol::DocumentRecord,
    /// The unit's cabinet, which holds `kept` in its first drawer.
    pub cabinet: custody_simulator::SimulatedCabinet,
    /// Citizen ID numbers, document numbers and names of every test person, as sent.
    pub clear: Vec<String>,
}

/// A filing and its answer, two deposits, a lend, a crossing, an issuance, a refused crossing
/// and a refused deposit (both kept in the rejected-reports log), the projections caught up.
pub(crate) async fn lifecycle(app: &TestApp) -> Lifecycle {
    let Parties {
        unit,
        cabinet,
        client,
        adapter,
    } = Parties::of(app).await;

    let kept = record();
    let lent = record();
    let who = PersonData::holder_of(&kept);
    filed(app, &client, &adapter, FilingKind::New, &who).await;
    for (i, document) in [&kept, &lent].into_iter().enumerate() {
        send_ok(
            app,
            cabinet.deposit(document, &cabinet.drawer(i), DepositKind::New, app.now_ms()),
            "deposit",
        )
        .await;
    }
    send_ok(
        app,
        cabinet.lend(
            &lent,
            &cabinet.drawer(1),
            date(2099, 12, 10),
            &Trip::default(),
            app.now_ms(),
        ),
        "lend",
    )
    .await;
    let crossing = adapter
        .crossing(&lent, Direction::Exit, app.now_ms(), "310000", "HKG")
        .expect("crossing");
    send_ok(
        app,
        adapter.crossings(&[crossing], app.now_ms()),
        "crossing",
    )
    .await;
    let issued = record();
    let issuance = adapter
        .issued(&issued, date(2026, 11, 20))
        .expect("issued record");
    send_ok(
        app,
        adapter.issued_documents(&[issuance], app.now_ms()),
        "issued",
    )
    .await;
    // Two refused reports, kept whole in the rejected-reports log: a crossing two days
    // ahead of the clock (its records are in the signed JSON) and a cabinet's deposit of
    // the same document twice.
    let refused = record();
    let crossing = adapter
        .crossing(
            &refused,
            Direction::Exit,
            app.now_ms() + 2 * 86_400_000,
            "310000",
            "HKG",
        )
        .expect("crossing");
    let answer = app
        .send(
            &adapter
                .crossings(&[crossing], app.now_ms())
                .expect("crossings"),
        )
        .await;
    assert!(
        answer.1.to_string().contains("E_TIME_AHEAD"),
        "{}",
        answer.1
    );
    let answer = app
        .send(
            &cabinet
                .deposit(&kept, &cabinet.drawer(0), DepositKind::New, app.now_ms())
                .expect("deposit"),
        )
        .await;
    assert_ne!(answer.1["status"], true, "{}", answer.1);
    app.caught_up().await;
    let mut clear: Vec<String> = Vec::new();
    for document in [&kept, &lent, &issued, &refused] {
        clear.push(document.document_number.clone());
        clear.push(document.citizen_id_number.clone());
        clear.push(document.chinese_name.clone());
        if !document.latin_name.is_empty() {
            clear.push(document.latin_name.clone());
        }
    }
    clear.push(who.name.clone());
    clear.push(who.citizen_id.clone());
    Lifecycle {
        unit,
        kept,
        lent,
        cabinet,
        clear,
    }
}

/// Asserts that no file under `dir` holds any of `clear`, byte for byte.
pub(crate) fn assert_no_file_holds(dir: &std::path::Path, clear: &[String], kind: StoreKind) {
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).expect("read a data file");
        for value in clear {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{kind:?}: {value:?} in clear in {}",
                file.display()
            );
        }
    }
}

pub(crate) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read the data directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The tables (and a column of each) where any of `values` is stored in clear, every text-like
/// column of every table read as text.
pub(crate) async fn tables_holding(
    pool: &AnyPool,
    kind: StoreKind,
    values: &[String],
) -> Vec<(String, String)> {
    let columns: Vec<(String, String)> = match kind {
        StoreKind::Postgres => sqlx::query(
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = 'public' AND data_type IN ('text', 'json', 'jsonb', 'character varying')",
        )
        .fetch_all(pool)
        .await
        .expect("columns")
        .iter()
        .map(|row| (row.try_get("t").expect("t"), row.try_get("c").expect("c")))
        .collect(),
        StoreKind::Embedded => {
            let tables: Vec<String> = sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .expect("tables")
            .iter()
            .map(|row| row.try_get("name").expect("name"))
            .collect();
            let mut columns = Vec::new();
            for table in tables {
                for row in sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(pool)
                    .await
                    .expect("pragma")
                {
                    columns.push((table.clone(), row.try_get("name").expect("column")));
                }
            }
            columns
        }
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for (table, column) in columns {
        if found.iter().any(|(t, _)| *t == table) {
            continue;
        }
        // As bytes: SQLite keeps some cells as blobs.
        let cast = match kind {
            StoreKind::Postgres => format!("convert_to(CAST(\"{column}\" AS TEXT), 'UTF8')"),
            StoreKind::Embedded => format!("CAST(\"{column}\" AS BLOB)"),
        };
        let sql = format!("SELECT {cast} AS v FROM \"{table}\"");
        for row in sqlx::query(&sql).fetch_all(pool).await.expect("scan") {
            let bytes: Option<Vec<u8>> = row.try_get("v").expect("cell bytes");
            let holds = |bytes: &[u8]| {
                values
                    .iter()
                    .any(|v| bytes.windows(v.len()).any(|w| w == v.as_bytes()))
            };
            if bytes.is_some_and(|bytes| holds(&bytes)) {
                found.push((table.clone(), column.clone()));
                break;
            }
        }
    }
    found
}

/// Item 4: the master key rotates online. With the new key current and the old one previous,
/// every data key is re-wrapped; then the new key alone opens everything and the old one alone
/// opens nothing. The data keys, and so every sealed field, are untouched.
#[tokio::test]
async fn the_master_key_rotates_and_the_old_one_then_opens_nothing() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let documents = [record(), record(), record()];
        for (i, document) in documents.iter().enumerate() {
            send_ok(
                &app,
                cabinet.deposit(document, &cabinet.drawer(i), DepositKind::New, app.now_ms()),
                "deposit",
            )
            .await;
        }
        let store = app.stop().await;
        let data_dir = store.data_dir.path();
        let old_key = data_dir.join("master.key");
        let keys_dir = tempfile::tempdir().expect("keys");
        let new_key = keys_dir.path().join("master-2.key");

        let rotating = custody_api::master_key::load(data_dir, Some(&new_key), Some(&old_key))
            .expect("both keys");
        let log = store.log.clone().with_personal_data(Arc::new(rotating));
        let personal = log.personal_data().expect("sealing");
        assert_eq!(
            personal.keys_to_rewrap().await.expect("count"),
            3,
            "{kind:?}"
        );
        let zjbs = document_id(&documents[0]).expect("zjbs");
        // Mid-rotation every key opens, under whichever master made it.
        log.opened_events_of("Document", &zjbs)
            .await
            .expect("opens during the rotation");
        let done = custody_api::master_key::rewrap_with_progress(&log)
            .await
            .expect("rewrap");
        assert_eq!(done, 3, "{kind:?}");
        assert_eq!(personal.keys_to_rewrap().await.expect("count"), 0);

        let only = |path: &std::path::Path| {
            let master = custody_vault::MasterKeyFile::load_or_generate(path).expect("key");
            store.log.clone().with_personal_data(Arc::new(master))
        };
        // A service given the old key alone refuses to start (it would make keys the others
        // cannot open); the new key alone is accepted.
        let checked = |log: custody_eventlog::EventLog| async move {
            log.personal_data()
                .expect("sealing")
                .check_master_keys()
                .await
        };
        assert!(matches!(
            checked(only(&old_key)).await,
            Err(custody_eventlog::EventLogError::ForeignMasterKey { .. })
        ));
        checked(only(&new_key))
            .await
            .expect("the new key wrapped them all");
        for document in &documents {
            let zjbs = document_id(document).expect("zjbs");
            let events = only(&new_key)
                .opened_events_of("Document", &zjbs)
                .await
                .expect("the new key opens everything");
            assert_eq!(
                events[0].payload["Deposited"]["record"]["citizen_id"],
                document.citizen_id_number.as_str()
            );
            assert!(
                only(&old_key)
                    .opened_events_of("Document", &zjbs)
                    .await
                    .is_err(),
                "{kind:?}: the old key opens nothing any more"
            );
        }
    }
}
