//! Signed checkpoints and the offline audit (docs/audit.md), on both stores: after a
//! checkpoint, the database is tampered with directly, the bundle is exported after the
//! tampering, and the offline verifier, given only the bundle and the checkpoint key, names
//! what changed and the checkpoint that proves it. Proofs served over HTTP verify and fail for a
//! changed byte.

use custody_audit::merkle::{self, verify_consistency, verify_inclusion};
use custody_audit::parse_hash;
use custody_audit::SignedCheckpoint;
use custody_eventlog::{event_hash, EventLog, GENESIS_HASH, PREVIOUS_HASH};
use custody_protocol::Sm2Signer;
use custody_simulator::generate::{document_id, random_document_record};
use custody_simulator::{DepositKind, SimulatedCabinet, Trip};
use custody_tests::samples::date;
use custody_tests::{AppOptions, StoreKind, TestApp};
use serde_json::Value;

/// An app with documents A (deposited, lent), B and C (deposited), a checkpoint, then D
/// (deposited) and a second checkpoint: D's deposit is the newest event.
struct Scene {
    app: TestApp,
    auditor: String,
    /// A, B, C, D.
    docs: Vec<String>,
    /// The two checkpoints' tree sizes.
    sizes: [u64; 2],
}

async fn deposit(app: &TestApp, cabinet: &SimulatedCabinet, i: usize, lend: bool) -> String {
    let record = random_document_record(&mut rand::rng());
    let drawer = cabinet.drawer(i);
    let now = app.now_ms();
    let mut steps = vec![cabinet.deposit(&record, &drawer, DepositKind::New, now)];
    if lend {
        steps.push(cabinet.lend(&record, &drawer, date(2099, 12, 24), &Trip::default(), now));
    }
    for step in steps {
        let (status, body) = app.send(&step.expect("request")).await;
        assert_eq!(status, 200, "{body}");
    }
    document_id(&record).expect("zjbs").to_string()
}

async fn seal(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/audit/checkpoints"))
        .bearer_auth(token)
        .send()
        .await
        .expect("seal");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Seals until the checkpoint covers every event: on PostgreSQL an event is sealed only once
/// every older transaction in the cluster has ended (the feed's commit order).
async fn seal_all(app: &TestApp, token: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let total = app.store.log.count().await.expect("count") as u64;
    loop {
        let (status, body) = seal(app, token).await;
        assert!(status == 200 || status == 201, "{body}");
        if body["tree_size"].as_u64() == Some(total) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "not sealed: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn build_scene(kind: StoreKind) -> Scene {
    build_scene_with(kind, AppOptions::default()).await
}

async fn build_scene_with(kind: StoreKind, options: AppOptions) -> Scene {
    let app = TestApp::spawn_with(kind, options).await;
    let unit = app.unit().await;
    let cabinet = app.active_cabinet_of(&unit).await;
    // The export is the whole log in clear: an auditor of a root org with `pii`.
    let auditor = app.token("auditor", &unit, &["pii"]).await;
    let mut docs = Vec::new();
    for (i, lend) in [true, false, false].into_iter().enumerate() {
        docs.push(deposit(&app, &cabinet, i, lend).await);
    }
    let first = seal_all(&app, &auditor).await;
    docs.push(deposit(&app, &cabinet, 3, false).await);
    let second = seal_all(&app, &auditor).await;
    let (status, again) = seal(&app, &auditor).await;
    assert_eq!((status, &again), (200, &second), "nothing new: the latest");
    let sizes = [first["tree_size"].as_u64(), second["tree_size"].as_u64()]
        .map(|size| size.expect("tree_size"));
    Scene {
        app,
        auditor,
        docs,
        sizes,
    }
}

/// Exports the bundle now and verifies it offline with the key fetched apart from it.
async fn offline_verdict(scene: &Scene) -> Value {
    offline_verdict_with(scene, None).await
}

async fn offline_verdict_with(scene: &Scene, witness: Option<&std::path::Path>) -> Value {
    let app = &scene.app;
    let (status, key) = app
        .read(&scene.auditor, "/api/v1/audit/checkpoint-key")
        .await;
    assert_eq!(status, 200, "{key}");
    let dir = tempfile::tempdir().expect("temporary directory");
    let bundle_file = dir.path().join("bundle.jsonl");
    let key_file = dir.path().join("checkpoint.pub.pem");
    // Exported as `custody audit export` does: streamed to the file, its end line checked.
    custody_api::client::audit(custody_api::client::AuditCommand::Export {
        out: bundle_file.clone(),
        connection: custody_api::client::Connection {
            url: app.url(""),
            token: scene.auditor.clone(),
        },
    })
    .await
    .expect("the export");
    std::fs::write(&key_file, key["public_key_pem"].as_str().expect("pem")).expect("write key");
    let verdict = custody_api::client::verify_bundle_file(&bundle_file, &key_file, witness)
        .expect("a readable bundle");
    serde_json::to_value(verdict).expect("verdict JSON")
}

/// The first problem is `kind` at `zjbs`#`sequence`, proven by a checkpoint no later than
/// `checkpoint`.
fn assert_named(verdict: &Value, kind: &str, zjbs: &str, sequence: i64, checkpoint: u64) {
    assert_eq!(verdict["verified"], false, "{verdict}");
    let first = &verdict["first_broken"];
    assert_eq!(first["kind"], kind, "{verdict}");
    assert_eq!(first["aggregate_type"], "Document", "{verdict}");
    assert_eq!(first["aggregate_id"], zjbs, "{verdict}");
    assert_eq!(first["sequence"], sequence, "{verdict}");
    // The proving checkpoint is the first that covers the event (PostgreSQL may have sealed
    // more than the scene's two, see seal_all).
    let proving = first["checkpoint"].as_u64().expect("checkpoint");
    let index = first["tree_index"].as_u64().expect("tree_index");
    assert!(index < proving && proving <= checkpoint, "{verdict}");
}

async fn execute(scene: &Scene, sql: &str, binds: &[&str]) {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    let done = query
        .execute(scene.app.store.log.platform().pool())
        .await
        .expect("tamper");
    assert!(done.rows_affected() > 0, "{sql}: no row changed");
}

/// A JSON column set from text: PostgreSQL's is `json`, SQLite's text.
fn json_param(kind: StoreKind, n: usize) -> String {
    match kind {
        StoreKind::Postgres => format!("${n}::json"),
        StoreKind::Embedded => format!("${n}"),
    }
}

async fn payload_text(scene: &Scene, zjbs: &str, sequence: i64) -> String {
    let events = scene
        .app
        .store
        .log
        .events_of("Document", zjbs)
        .await
        .expect("events");
    events
        .iter()
        .find(|e| e.sequence == sequence)
        .map(|e| e.payload.to_string())
        .expect("event")
}

#[tokio::test]
async fn an_untampered_log_verifies_offline_and_online() {
    for kind in StoreKind::ALL {
        let scene = build_scene(kind).await;
        let verdict = offline_verdict(&scene).await;
        assert_eq!(verdict["verified"], true, "{kind:?}: {verdict}");
        // PostgreSQL may have sealed an intermediate one (seal_all).
        assert!(verdict["checkpoints"].as_u64() >= Some(2), "{verdict}");
        assert_eq!(verdict["sealed"], scene.sizes[1]);
        let (status, online) = scene.app.read(&scene.auditor, "/api/v1/audit/verify").await;
        assert_eq!(status, 200);
        assert_eq!(online["verified"], true, "{online}");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn each_kind_of_tampering_is_named_by_the_offline_verifier() {
    for kind in StoreKind::ALL {
        let json = |n| json_param(kind, n);

        // The payload of an aggregate's last event: no later link breaks, the checkpoint does.
        let scene = build_scene(kind).await;
        let b = scene.docs[1].clone();
        let sql = format!(
            "UPDATE events SET payload = {} WHERE aggregate_type = 'Document' \
             AND aggregate_id = $2 AND sequence = 1",
            json(1)
        );
        execute(&scene, &sql, &[r#"{"Tampered":{}}"#, &b]).await;
        assert_named(
            &offline_verdict(&scene).await,
            "altered",
            &b,
            1,
            scene.sizes[0],
        );
        let (_, online) = scene.app.read(&scene.auditor, "/api/v1/audit/verify").await;
        assert_eq!(online["first_broken"]["kind"], "altered", "{online}");
        scene.app.stop().await;

        // The newest event: the log is cut below the latest checkpoint.
        let scene = build_scene(kind).await;
        execute(
            &scene,
            "DELETE FROM events WHERE global_position = (SELECT MAX(global_position) FROM events)",
            &[],
        )
        .await;
        let verdict = offline_verdict(&scene).await;
        assert_named(&verdict, "removed", &scene.docs[3], 1, scene.sizes[1]);
        assert!(
            verdict["first_broken"]["problem"]
                .as_str()
                .is_some_and(|p| p.contains("below the checkpoint")),
            "{verdict}"
        );
        scene.app.stop().await;

        // A whole aggregate.
        let scene = build_scene(kind).await;
        let a = scene.docs[0].clone();
        execute(
            &scene,
            "DELETE FROM events WHERE aggregate_type = 'Document' AND aggregate_id = $1",
            &[&a],
        )
        .await;
        assert_named(
            &offline_verdict(&scene).await,
            "removed",
            &a,
            1,
            scene.sizes[0],
        );
        scene.app.stop().await;

        // Two events' payloads swapped: the earlier one is named.
        let scene = build_scene(kind).await;
        let (b, c) = (scene.docs[1].clone(), scene.docs[2].clone());
        let (pb, pc) = (
            payload_text(&scene, &b, 1).await,
            payload_text(&scene, &c, 1).await,
        );
        assert_ne!(pb, pc);
        let sql = format!(
            "UPDATE events SET payload = {} WHERE aggregate_type = 'Document' \
             AND aggregate_id = $2 AND sequence = 1",
            json(1)
        );
        execute(&scene, &sql, &[&pc, &b]).await;
        execute(&scene, &sql, &[&pb, &c]).await;
        assert_named(
            &offline_verdict(&scene).await,
            "altered",
            &b,
            1,
            scene.sizes[0],
        );
        scene.app.stop().await;

        // One aggregate's chain rewritten consistently: the chains all verify, the tree does
        // not.
        let scene = build_scene(kind).await;
        let a = scene.docs[0].clone();
        let mut events = scene
            .app
            .store
            .log
            .events_of("Document", &a)
            .await
            .expect("events");
        assert_eq!(events.len(), 2);
        events[0].payload["Tampered"] = Value::Bool(true);
        let first = &events[0];
        let rehashed = event_hash(&cqrs_es::persist::SerializedEvent::new(
            first.aggregate_id.clone(),
            first.sequence as usize,
            first.aggregate_type.clone(),
            first.event_type.clone(),
            first.event_version.clone(),
            first.payload.clone(),
            first.metadata.clone(),
        ));
        events[1].metadata[PREVIOUS_HASH] = Value::String(rehashed);
        let set = |column: &str, sequence: i64| {
            format!(
                "UPDATE events SET {column} = {} WHERE aggregate_type = 'Document' \
                 AND aggregate_id = $2 AND sequence = {sequence}",
                json(1)
            )
        };
        execute(
            &scene,
            &set("payload", 1),
            &[&events[0].payload.to_string(), &a],
        )
        .await;
        execute(
            &scene,
            &set("metadata", 2),
            &[&events[1].metadata.to_string(), &a],
        )
        .await;
        let verdict = offline_verdict(&scene).await;
        assert_named(&verdict, "altered", &a, 1, scene.sizes[0]);
        assert!(
            verdict["findings"]
                .as_array()
                .is_some_and(|all| all.iter().all(|f| f["kind"] != "chain")),
            "the rewritten chain links: {verdict}"
        );
        scene.app.stop().await;

        // An event inserted among the sealed ones (first in commit order), with a valid chain.
        let scene = build_scene(kind).await;
        let metadata = serde_json::json!({ PREVIOUS_HASH: GENESIS_HASH }).to_string();
        let sql = match kind {
            StoreKind::Postgres => format!(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata, global_position, tx_id) OVERRIDING SYSTEM \
                 VALUE SELECT 'Document', 'FORGED', 1, event_type, event_version, payload, {}, \
                 0, '1'::xid8 FROM events WHERE aggregate_type = 'Document' LIMIT 1",
                json(1)
            ),
            StoreKind::Embedded => "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
                 event_type, event_version, payload, metadata, global_position) SELECT \
                 'Document', 'FORGED', 1, event_type, event_version, payload, $1, 0 FROM events \
                 WHERE aggregate_type = 'Document' LIMIT 1"
                .to_string(),
        };
        execute(&scene, &sql, &[&metadata]).await;
        let verdict = offline_verdict(&scene).await;
        assert_named(&verdict, "inserted", "FORGED", 1, scene.sizes[0]);
        assert_eq!(verdict["first_broken"]["tree_index"], 0, "{verdict}");
        scene.app.stop().await;
    }
}

fn hashes(value: &Value) -> Vec<custody_audit::Hash> {
    value
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| parse_hash(h.as_str().expect("hex")).expect("hash"))
        .collect()
}

#[tokio::test]
async fn proofs_over_http_verify_and_fail_for_one_changed_byte() {
    for kind in StoreKind::ALL {
        let scene = build_scene(kind).await;
        let app = &scene.app;
        let [first, second] = scene.sizes;
        let (_, latest) = app.read(&scene.auditor, "/api/v1/audit/checkpoints").await;
        let (status, older) = app
            .read(
                &scene.auditor,
                &format!("/api/v1/audit/checkpoints?size={first}"),
            )
            .await;
        assert_eq!(status, 200, "{older}");
        let root = |c: &Value| parse_hash(c["root_hash"].as_str().expect("root")).expect("hash");

        let b_events = app
            .store
            .log
            .events_of("Document", &scene.docs[1])
            .await
            .expect("events");
        let position = b_events[0].global_position;
        let (status, inclusion) = app
            .read(
                &scene.auditor,
                &format!("/api/v1/audit/proofs/inclusion?position={position}&size={second}"),
            )
            .await;
        assert_eq!(status, 200, "{inclusion}");
        assert_eq!(inclusion["root_hash"], latest["root_hash"]);
        let leaf = parse_hash(inclusion["leaf_hash"].as_str().expect("leaf")).expect("hash");
        let index = inclusion["tree_index"].as_u64().expect("index");
        let proof = hashes(&inclusion["proof"]);
        assert!(!proof.is_empty());
        verify_inclusion(&leaf, index, second, &proof, &root(&latest)).expect("inclusion");
        let mut bad = proof.clone();
        bad[0][0] ^= 1;
        assert!(verify_inclusion(&leaf, index, second, &bad, &root(&latest)).is_err());

        let (status, consistency) = app
            .read(
                &scene.auditor,
                &format!("/api/v1/audit/proofs/consistency?from={first}&to={second}"),
            )
            .await;
        assert_eq!(status, 200, "{consistency}");
        let proof = hashes(&consistency["proof"]);
        verify_consistency(first, second, &root(&older), &root(&latest), &proof)
            .expect("consistency");
        let mut bad = proof.clone();
        bad[proof.len() - 1][31] ^= 0x10;
        assert!(verify_consistency(first, second, &root(&older), &root(&latest), &bad).is_err());

        let (status, body) = app
            .read(
                &scene.auditor,
                "/api/v1/audit/proofs/consistency?from=0&to=1",
            )
            .await;
        assert_eq!(
            (status, &body["error_code"]),
            (422, &Value::from("E_BAD_PROOF_RANGE"))
        );
        let (status, body) = app
            .read(
                &scene.auditor,
                &format!("/api/v1/audit/proofs/consistency?from=1&to={}", second + 1),
            )
            .await;
        assert_eq!(
            (status, &body["error_code"]),
            (404, &Value::from("E_NOT_SEALED"))
        );
        let (status, body) = app
            .read(&scene.auditor, "/api/v1/audit/proofs/inclusion?position=x")
            .await;
        assert_eq!(
            (status, &body["error_code"]),
            (422, &Value::from("E_INVALID_FIELD"))
        );

        let unit = app.unit().await;
        let reader = app.token("reader", &unit, &[]).await;
        for path in [
            "/api/v1/audit/checkpoints",
            "/api/v1/audit/checkpoint-key",
            "/api/v1/audit/export",
            "/api/v1/audit/proofs/consistency?from=1&to=2",
        ] {
            assert_eq!(app.read(&reader, path).await.0, 403, "{path}");
        }
        assert_eq!(seal(app, &reader).await.0, 403);
        // Auditors without `pii`, or below a root of the tree, may not export the whole log.
        let masked_auditor = app.token("auditor", &unit, &[]).await;
        let branch = app.org_under(Some(&unit), "branch").await;
        let branch_auditor = app.token("auditor", &branch, &["pii"]).await;
        for (token, case) in [(&masked_auditor, "no pii"), (&branch_auditor, "not a root")] {
            let (status, body) = app.read(token, "/api/v1/audit/export").await;
            assert_eq!(status, 403, "{case}: {body}");
            assert_eq!(body["error_code"], "E_FORBIDDEN", "{case}");
            assert_eq!(
                app.read(token, "/api/v1/audit/checkpoints").await.0,
                200,
                "{case}"
            );
        }
        scene.app.stop().await;
    }
}

/// Whoever can write the database can also delete the checkpoints and the sealed leaves: the
/// bundle then verifies on its own, but not against the witness file kept outside it.
#[tokio::test]
async fn a_witness_file_catches_checkpoints_deleted_from_the_store() {
    for kind in StoreKind::ALL {
        let dir = tempfile::tempdir().expect("temporary directory");
        let witness = dir.path().join("witness.jsonl");
        let scene = build_scene_with(
            kind,
            AppOptions {
                checkpoint_witness: Some(witness.clone()),
                ..AppOptions::default()
            },
        )
        .await;
        let lines = std::fs::read_to_string(&witness).expect("witness file");
        assert!(lines.lines().count() >= 2, "{lines}");
        let verdict = offline_verdict_with(&scene, Some(&witness)).await;
        assert_eq!(verdict["verified"], true, "{verdict}");

        let b = scene.docs[1].clone();
        let sql = format!(
            "UPDATE events SET payload = {} WHERE aggregate_type = 'Document' \
             AND aggregate_id = $2 AND sequence = 1",
            json_param(kind, 1)
        );
        execute(&scene, &sql, &[r#"{"Tampered":{}}"#, &b]).await;
        execute(&scene, "DELETE FROM checkpoints", &[]).await;
        execute(&scene, "DELETE FROM merkle_leaves", &[]).await;
        let alone = offline_verdict(&scene).await;
        assert_eq!(
            alone["verified"], true,
            "no checkpoint left to break: {alone}"
        );
        let verdict = offline_verdict_with(&scene, Some(&witness)).await;
        assert_eq!(verdict["verified"], false, "{verdict}");
        assert_eq!(verdict["first_broken"]["kind"], "witness", "{verdict}");
        let findings = verdict["findings"].as_array().expect("findings");
        assert!(
            findings.iter().any(|f| f["kind"] == "root_mismatch"),
            "the log no longer has the witnessed root: {verdict}"
        );
        scene.app.stop().await;
    }
}

/// With NATS configured, every checkpoint is published to JetStream too.
#[tokio::test]
async fn checkpoints_are_published_to_jetstream() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let settings = custody_projections::feed::StreamSettings::new(
        format!("CKPT_{id}"),
        format!("ckpttest.{id}"),
    );
    let url = custody_tests::nats().url.clone();
    let scene = build_scene_with(
        StoreKind::Embedded,
        AppOptions {
            transport: custody_api::Transport::JetStream {
                url: url.clone(),
                settings: settings.clone(),
            },
            ..AppOptions::default()
        },
    )
    .await;
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("nats"));
    let mut stream = js
        .get_stream(format!("{}_CHECKPOINTS", settings.stream))
        .await
        .expect("checkpoint stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 2, "{info:?}");
    let last = stream
        .get_last_raw_message_by_subject(&format!("{}_checkpoints", settings.subject_prefix))
        .await
        .expect("last checkpoint");
    let published: Value = serde_json::from_slice(&last.payload).expect("JSON");
    let (_, latest) = scene
        .app
        .read(&scene.auditor, "/api/v1/audit/checkpoints")
        .await;
    assert_eq!(published, latest);
    scene.app.stop().await;
}

/// Costs, not correctness: `CHECKPOINT_BENCH_EVENTS` (default 20,000) chained events written
/// straight into each store (or the one `CHECKPOINT_BENCH_STORE` names: `postgres`,
/// `embedded`), then a first seal of them all, an incremental seal of
/// `CHECKPOINT_BENCH_INCREMENT` (default 1,000) more, one inclusion and one consistency proof,
/// the export and its verification. Run with
/// `cargo test -p custody-tests --test integration -- --ignored checkpoint_costs --nocapture`
/// (docs/benchmarks.md, "Checkpoints").
#[tokio::test]
#[ignore]
async fn checkpoint_costs() {
    use std::time::Instant;
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let total = setting("CHECKPOINT_BENCH_EVENTS", 20_000);
    let increment = setting("CHECKPOINT_BENCH_INCREMENT", 1000);
    let only = std::env::var("CHECKPOINT_BENCH_STORE").ok();
    let signer = custody_protocol::Sm2Signer::new(&custody_protocol::keys::generate_secret_key(
        &mut rand::rng(),
    ));
    for kind in StoreKind::ALL {
        if only
            .as_deref()
            .is_some_and(|only| !format!("{kind:?}").eq_ignore_ascii_case(only))
        {
            continue;
        }
        let store = custody_tests::TestStore::new(kind).await;
        let log = &store.log;
        let write = |from: usize, to: usize| write_chained_events(log, kind, from, to);
        let started = Instant::now();
        write(0, total).await;
        let written = started.elapsed();
        let started = Instant::now();
        let first = log
            .seal(&signer, "2026-12-01T00:00:00.000Z", 0)
            .await
            .expect("seal")
            .expect("a checkpoint");
        let first_seal = started.elapsed();
        write(total, total + increment).await;
        let started = Instant::now();
        let second = seal_until(log, &signer, (total + increment) as u64).await;
        let incremental = started.elapsed();
        let position: i64 =
            sqlx::query_scalar("SELECT global_position FROM merkle_leaves WHERE tree_index = $1")
                .bind((total / 2) as i64)
                .fetch_one(log.platform().pool())
                .await
                .expect("a leaf");
        let started = Instant::now();
        log.inclusion_proof(position, second.tree_size)
            .await
            .expect("inclusion");
        let inclusion = started.elapsed();
        let started = Instant::now();
        log.consistency_proof(first.tree_size, second.tree_size)
            .await
            .expect("consistency");
        let consistency = started.elapsed();
        // Exported as the service streams it, to a file, and verified from the file as
        // `custody audit verify --bundle` does: neither holds the log in memory.
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("bundle.jsonl");
        let started = Instant::now();
        {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("file"));
            let (opening, mut end) = log.audit_bundle_opening("").await.expect("opening");
            out.write_all(&opening).expect("write");
            let mut walk = log.audit_walk().await.expect("walk");
            while let Some(page) = walk.next_page(log).await.expect("page") {
                out.write_all(&page.into_lines(&mut end)).expect("write");
            }
            let last = custody_audit::bundle::BundleLine::End(end);
            out.write_all(&custody_audit::bundle::json_line(&last))
                .expect("write");
            out.flush().expect("flush");
        }
        let export = started.elapsed();
        let bytes = std::fs::metadata(&file).expect("bundle").len();
        let started = Instant::now();
        let verdict = custody_audit::bundle::verify_lines(
            || std::fs::File::open(&file).map(std::io::BufReader::new),
            &signer.verifier(),
            &[],
        )
        .expect("a readable bundle");
        let verify = started.elapsed();
        assert!(verdict.verified, "{:?}", verdict.first_broken);
        eprintln!(
            "{kind:?}, {total} events (+{increment}), written in {written:?}: first seal \
             {first_seal:?}, incremental seal {incremental:?}, inclusion proof {inclusion:?}, \
             consistency proof {consistency:?}, export {export:?} ({bytes} bytes), offline verify \
             {verify:?}"
        );
    }
}

/// Events `from..to` of aggregates of ten (`agg-<i / 10>`), chained as the platform chains them,
/// written straight into the store in one transaction, many rows a statement.
async fn write_chained_events(log: &EventLog, kind: StoreKind, from: usize, to: usize) {
    const ROWS: usize = 500;
    let insert = |rows: usize| {
        let values: Vec<String> = (0..rows)
            .map(|r| {
                format!(
                    "('Bench', ${}, ${}, 'Noted', '1', {}, {})",
                    4 * r + 1,
                    4 * r + 2,
                    json_param(kind, 4 * r + 3),
                    json_param(kind, 4 * r + 4)
                )
            })
            .collect();
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES {}",
            values.join(", ")
        )
    };
    let mut previous = GENESIS_HASH.to_string();
    let mut rows = Vec::new();
    for i in from..to {
        let (aggregate, sequence) = (format!("agg-{}", i / 10), (i % 10) as i64 + 1);
        if sequence == 1 {
            previous = GENESIS_HASH.to_string();
        }
        let payload = serde_json::json!({ "n": i });
        let metadata = serde_json::json!({ PREVIOUS_HASH: previous });
        previous = custody_audit::chain::event_hash(custody_audit::chain::EventFields {
            aggregate_type: "Bench",
            aggregate_id: &aggregate,
            sequence,
            event_type: "Noted",
            event_version: "1",
            payload: &payload,
            metadata: &metadata,
        });
        rows.push((
            aggregate,
            sequence,
            payload.to_string(),
            metadata.to_string(),
        ));
    }
    let mut tx = log.platform().pool().begin().await.expect("begin");
    for chunk in rows.chunks(ROWS) {
        let sql = insert(chunk.len());
        let mut query = sqlx::query(&sql);
        for (aggregate, sequence, payload, metadata) in chunk {
            query = query
                .bind(aggregate)
                .bind(sequence)
                .bind(payload)
                .bind(metadata);
        }
        query.execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
}

/// Seals until the latest checkpoint has `size` leaves: on PostgreSQL a commit enters the order
/// only once every older transaction in the cluster has ended.
async fn seal_until(log: &EventLog, signer: &Sm2Signer, size: u64) -> SignedCheckpoint {
    for _ in 0..2000 {
        log.seal(signer, "2026-12-01T00:01:00.000Z", 0)
            .await
            .expect("seal");
        let latest = log.checkpoint(None).await.expect("latest");
        if let Some(checkpoint) = latest.filter(|c| c.tree_size == size) {
            return checkpoint;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the log was never sealed up to {size} events");
}

/// Every inclusion and consistency proof the store serves from its stored subtrees, at every
/// checkpoint, equals the one computed from all the sealed leaves; so do the roots.
async fn assert_proofs_match_the_leaves(log: &EventLog, sizes: &[u64]) {
    let leaves = log.sealed_leaves().await.expect("leaves");
    let hashes: Vec<_> = leaves
        .iter()
        .map(|l| parse_hash(&l.leaf_hash).expect("hash"))
        .collect();
    for &size in sizes {
        for leaf in &leaves[..size as usize] {
            let proof = log
                .inclusion_proof(leaf.global_position, size)
                .await
                .expect("inclusion");
            assert_eq!(
                proof.proof,
                merkle::inclusion_proof(&hashes, leaf.tree_index, size).expect("reference"),
                "leaf {} of {size}",
                leaf.tree_index
            );
            assert_eq!(proof.root_hash, merkle::root(&hashes[..size as usize]));
        }
        for from in 1..=size {
            let proof = log
                .consistency_proof(from, size)
                .await
                .expect("consistency");
            assert_eq!(
                proof.proof,
                merkle::consistency_proof(&hashes, from, size).expect("reference"),
                "{from} to {size}"
            );
            assert_eq!(proof.from_root, merkle::root(&hashes[..from as usize]));
        }
    }
}

/// Proofs come from the stored perfect subtrees (`merkle_nodes`) and equal those computed from
/// every leaf; a store sealed before the nodes existed (here: its nodes deleted) has them
/// rebuilt by the next seal, with or without new events.
#[tokio::test]
async fn stored_node_proofs_equal_the_reference_and_are_backfilled() {
    let signer = Sm2Signer::new(&custody_protocol::keys::generate_secret_key(
        &mut rand::rng(),
    ));
    for kind in StoreKind::ALL {
        let store = custody_tests::TestStore::new(kind).await;
        let log = &store.log;
        let mut sizes = Vec::new();
        for end in [5, 13, 16, 37] {
            write_chained_events(log, kind, sizes.last().copied().unwrap_or(0) as usize, end).await;
            sizes.push(seal_until(log, &signer, end as u64).await.tree_size);
        }
        assert_proofs_match_the_leaves(log, &sizes).await;

        sqlx::query("DELETE FROM merkle_nodes")
            .execute(log.platform().pool())
            .await
            .expect("delete");
        assert!(log.consistency_proof(5, 37).await.is_err(), "no nodes");
        let again = log
            .seal(&signer, "2026-12-01T00:02:00.000Z", 0)
            .await
            .expect("seal");
        assert_eq!(again, None, "nothing new to seal");
        assert_proofs_match_the_leaves(log, &sizes).await;

        sqlx::query("DELETE FROM merkle_nodes")
            .execute(log.platform().pool())
            .await
            .expect("delete");
        write_chained_events(log, kind, 37, 45).await;
        sizes.push(seal_until(log, &signer, 45).await.tree_size);
        assert_proofs_match_the_leaves(log, &sizes).await;
    }
}

/// Two sealers at once on one store (as two instances would be): both succeed, the
/// checkpoints grow strictly and the log verifies against every one of them.
#[tokio::test]
async fn concurrent_seals_yield_consistent_checkpoints() {
    let signer = Sm2Signer::new(&custody_protocol::keys::generate_secret_key(
        &mut rand::rng(),
    ));
    for kind in StoreKind::ALL {
        let store = custody_tests::TestStore::new(kind).await;
        let log = &store.log;
        for round in 0..3 {
            write_chained_events(log, kind, round * 40, (round + 1) * 40).await;
            let (a, b) = tokio::join!(
                log.seal(&signer, "2026-12-01T00:00:00.000Z", 0),
                log.seal(&signer, "2026-12-01T00:00:00.000Z", 0),
            );
            a.expect("first sealer");
            b.expect("second sealer");
        }
        seal_until(log, &signer, 120).await;
        let checkpoints = log.checkpoints().await.expect("checkpoints");
        assert!(checkpoints
            .windows(2)
            .all(|w| w[0].tree_size < w[1].tree_size));
        let bundle = log.audit_bundle("").await.expect("bundle");
        let verdict = custody_audit::bundle::verify(&bundle, &signer.verifier());
        assert!(verdict.verified, "{:?}", verdict.first_broken);
        assert_eq!(
            verdict.checkpoints,
            checkpoints.len() as u64,
            "every checkpoint verified"
        );
    }
}
