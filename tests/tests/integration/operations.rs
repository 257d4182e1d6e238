//! Operators' surfaces: liveness and readiness.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use custody_api::Transport;
use custody_commands::ManualClock;
use custody_processes::{check_missing_uploads, WebhookConfig};
use custody_projections::feed::StreamSettings;
use custody_simulator::generate::random_document_record;
use custody_simulator::reconciliation::DayLedger;
use custody_simulator::{DepositKind, Trip};
use custody_tests::samples::{date, time};
use custody_tests::{nats, AppOptions, OwnPostgres, StoreKind, TestApp, TestStore};
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// Asks `/ready` until it answers `want` (at most `attempts` times, half a second apart).
async fn ready_becomes(app: &TestApp, want: bool, attempts: usize) -> (u16, Value) {
    let mut last = get(app, "/ready").await;
    for _ in 0..attempts {
        if last.1["ready"] == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = get(app, "/ready").await;
    }
    last
}

/// The app's options with its projectors fed through a JetStream stream of its own.
fn over_jetstream() -> AppOptions {
    let id = uuid::Uuid::new_v4().simple().to_string();
    AppOptions {
        transport: Transport::JetStream {
            url: nats().url.clone(),
            settings: StreamSettings::new(format!("OPS_{id}"), format!("ops.{id}")),
        },
        ..AppOptions::default()
    }
}

#[tokio::test]
async fn ready_on_both_stores_and_with_jetstream() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let (status, body) = get(&app, "/ready").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["ready"], true);
        assert_eq!(
            body["checks"],
            serde_json::json!({"store": "ok", "migrated": "ok", "workers": "ok"})
        );
        app.stop().await;
    }
    let app = TestApp::spawn_with(StoreKind::Postgres, over_jetstream()).await;
    let (status, body) = ready_becomes(&app, true, 20).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["nats"], "ok");
    assert_eq!(body["checks"]["relay"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn ready_is_false_while_postgresql_is_stopped_and_true_once_it_is_back() {
    let mut postgres = OwnPostgres::start().expect("a PostgreSQL of this test's own");
    let app = TestApp::serve(
        TestStore::postgres_on(&postgres.server).await,
        AppOptions::default(),
    )
    .await;
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(
        (status, &body["ready"]),
        (200, &Value::Bool(true)),
        "{body}"
    );

    postgres.stop();
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["store"], "unavailable");
    // Alive all the same: restarting the service would not bring the database back.
    let (status, _) = get(&app, "/health").await;
    assert_eq!(status, 200);

    postgres.restart().expect("PostgreSQL starts again");
    let (status, body) = ready_becomes(&app, true, 60).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["checks"],
        serde_json::json!({"store": "ok", "migrated": "ok", "workers": "ok"})
    );
    app.stop().await;
}

/// The text of one scrape of `/metrics`.
async fn scrape_text(app: &TestApp) -> String {
    let text = app.metrics_text().await;
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    text
}

/// One scrape of `/metrics`: every sample line, `name{labels}` → value.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    scrape_text(app)
        .await
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("name and value");
            (key.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// How much a sample grew between two scrapes (absent counts as 0).
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// Failed authentications an address may cause before admission refuses it (test setting).
const SOURCE_BURST: usize = 3;

/// A client whose requests come from another loopback address than the harness's own, so that
/// its pre-authentication bucket is its own.
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .build()
        .expect("a client bound to a loopback address")
}

#[tokio::test]
async fn metrics_move_by_exactly_what_was_sent() {
    for kind in StoreKind::ALL {
        // The default generous admission, except an address's failures: SOURCE_BURST, refilled
        // so slowly that none comes back during the test.
        let mut options = AppOptions::default();
        options.admission.per_source_burst = SOURCE_BURST as f64;
        options.admission.per_source_rate = 0.0001;
        let app = TestApp::spawn_with(kind, options).await;
        let unauthenticated = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(unauthenticated.status(), 401);

        let cabinet = app.active_cabinet().await;
        let events_before = app.store.log.count().await.expect("count");
        let before = scrape(&app).await;
        const ACCEPTED: usize = 5;
        const MALFORMED: usize = 2;
        for drawer in 0..ACCEPTED {
            let deposit = cabinet
                .deposit(
                    &random_document_record(&mut rand::rng()),
                    &cabinet.drawer(drawer),
                    DepositKind::New,
                    app.now_ms(),
                )
                .expect("deposit");
            assert_eq!(app.send(&deposit).await.0, 200);
            assert_eq!(app.send(&deposit).await.1["error_code"], "E_REPLAY");
        }
        for _ in 0..MALFORMED {
            let answer = app.post_raw("sjsb-zjcq", b"{not json".to_vec()).await;
            assert_eq!(answer.1["error_code"], "E_MALFORMED");
        }
        // From another address: heartbeats an hour old fail after their source's token was
        // taken, so SOURCE_BURST of them use up its bucket and the next is refused admission.
        let elsewhere = client_from([127, 0, 0, 2]);
        let base = format!("http://{}", app.address);
        for attempt in 0..=SOURCE_BURST {
            let stale = cabinet
                .heartbeat(app.now_ms() - 3_600_000)
                .expect("heartbeat");
            let answer = custody_simulator::post(&elsewhere, &base, &stale)
                .await
                .expect("post");
            let want = if attempt < SOURCE_BURST {
                "E_STALE"
            } else {
                "E_RATE_LIMITED"
            };
            assert_eq!(answer.1["error_code"], want, "attempt {attempt}");
        }
        let after = scrape(&app).await;
        let events_appended = app.store.log.count().await.expect("count") - events_before;

        let n = ACCEPTED as f64;
        let m = MALFORMED as f64;
        let moved = |key: &str| moved(&before, &after, key);
        let ingress = |code: &str| {
            moved(&format!(
                "custody_ingress_requests_total{{mstype=\"sjsb-zjcq\",code=\"{code}\"}}"
            ))
        };
        assert_eq!(ingress("0"), n, "{kind:?}");
        assert_eq!(ingress("E_REPLAY"), n);
        assert_eq!(ingress("E_MALFORMED"), m);
        assert_eq!(
            moved("custody_ingress_request_duration_seconds_count{mstype=\"sjsb-zjcq\"}"),
            2.0 * n + m
        );
        let heartbeats = |code: &str| {
            moved(&format!(
                "custody_ingress_requests_total{{mstype=\"sjsb-xt\",code=\"{code}\"}}"
            ))
        };
        let failures = SOURCE_BURST as f64;
        assert_eq!(
            (heartbeats("E_STALE"), heartbeats("E_RATE_LIMITED")),
            (failures, 1.0)
        );
        let refusals = |bucket: &str| {
            moved(&format!(
                "custody_admission_refusals_total{{bucket=\"{bucket}\"}}"
            ))
        };
        assert_eq!(
            (refusals("source"), refusals("sender"), refusals("global")),
            (1.0, 0.0, 0.0)
        );
        // Every token was there when asked for: nothing waited.
        for stage in ["source", "authenticated"] {
            let key = format!("custody_admission_wait_seconds_count{{stage=\"{stage}\"}}");
            assert!(after.contains_key(&key), "{key}");
            assert_eq!(moved(&key), 0.0, "{key}");
        }
        assert_eq!(
            moved("custody_rejected_reports_total{code=\"E_REPLAY\"}"),
            n
        );
        assert_eq!(
            moved("custody_rejected_reports_total{code=\"E_MALFORMED\"}"),
            m
        );
        assert_eq!(
            moved("custody_rejected_reports_total{code=\"E_STALE\"}"),
            failures
        );
        let http = |status: u16| {
            moved(&format!(
                "custody_http_requests_total{{route=\"/yth_g1xt/api/v1/{{mstype}}\",method=\"POST\",status=\"{status}\"}}"
            ))
        };
        // The stale heartbeats are 409 too; the refused one 429.
        assert_eq!(
            (http(200), http(409), http(400), http(429)),
            (n, n + failures, m, 1.0)
        );
        assert_eq!(
            moved("custody_commands_total{aggregate=\"Document\",result=\"appended\"}"),
            n
        );
        assert_eq!(
            moved("custody_command_duration_seconds_count{aggregate=\"Document\"}"),
            n
        );
        assert_eq!(
            moved("custody_command_conflicts_total{aggregate=\"Document\"}"),
            0.0
        );
        let appended: f64 = after
            .keys()
            .filter(|k| k.starts_with("custody_events_appended_total"))
            .map(|k| moved(k))
            .sum();
        assert_eq!(appended, events_appended as f64);
        assert_eq!(
            moved("custody_log_head_position") > 0.0,
            events_appended > 0
        );
        // The request lines went through the harness's check for personal data.
        assert!(
            custody_tests::logs::lines_seen()
                >= (2 * ACCEPTED + MALFORMED + SOURCE_BURST + 1) as u64
        );
        for projection in custody_projections::Projection::ALL {
            let key = format!(
                "custody_projection_lag_events{{projection=\"{}\"}}",
                projection.name()
            );
            assert!(after.contains_key(&key), "{key}");
        }
        app.stop().await;
    }
}

/// A webhook that accepts every notification and counts them.
async fn accepting_webhook() -> (String, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let router = axum::Router::new().route(
        "/reminders",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook");
    let address = listener.local_addr().expect("webhook address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{address}/reminders"), received)
}

#[tokio::test]
async fn reminder_reconciliation_heartbeat_and_pool_metrics_show_what_happened() {
    for kind in StoreKind::ALL {
        let (url, delivered_to_hook) = accepting_webhook().await;
        let app = TestApp::spawn_with(
            kind,
            AppOptions {
                clock: ManualClock::at(time("2026-11-23T10:00:00+08:00")),
                // Delivered only when the test asks: the background pass would wait an hour.
                webhook: Some(WebhookConfig {
                    poll: Duration::from_secs(3600),
                    ..WebhookConfig::new(url)
                }),
                ..AppOptions::default()
            },
        )
        .await;
        let at = |moment: &str| app.clock.set(time(moment));
        let unit = app.unit().await;
        let uploader = app.active_cabinet_of(&unit).await;
        let silent = app.active_cabinet_of(&unit).await;
        let before = scrape(&app).await;

        // The silent cabinet beats once, lends a document due back on 25 November and sends
        // no batch for that date; the uploader sends its batch and beats just before the scrape.
        assert_eq!(
            app.send(&silent.heartbeat(app.now_ms()).expect("beat"))
                .await
                .0,
            200
        );
        let lent = random_document_record(&mut rand::rng());
        let drawer = silent.drawer(0);
        for request in [
            silent.deposit(&lent, &drawer, DepositKind::New, app.now_ms()),
            silent.lend(
                &lent,
                &drawer,
                date(2026, 11, 25),
                &Trip::default(),
                app.now_ms(),
            ),
        ] {
            let answer = app.send(&request.expect("signed")).await;
            assert_eq!(answer.0, 200, "{}", answer.1);
        }
        at("2026-11-25T21:00:00+08:00");
        let batch = uploader
            .reconciliation(date(2026, 11, 25), &DayLedger::new(), app.now_ms())
            .expect("batch");
        let answer = app.send(&batch).await;
        assert_eq!(answer.0, 200, "{}", answer.1);
        at("2026-11-26T09:55:00+08:00");
        assert_eq!(
            app.send(&uploader.heartbeat(app.now_ms()).expect("beat"))
                .await
                .0,
            200
        );

        at("2026-11-26T10:00:00+08:00");
        let (status, run) = app
            .ops(reqwest::Method::POST, "/api/v1/ops/scheduler/run", None)
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["reminders"]["sent"], 1, "{run}");
        let pass = app
            .state
            .processes
            .deliver_notifications()
            .await
            .expect("deliver");
        assert_eq!((pass.delivered, pass.failed), (1, 0));
        assert_eq!(delivered_to_hook.load(Ordering::SeqCst), 1);
        let window = app.state.reconciliation_window;
        let found_here = check_missing_uploads(&app.state.commands, window)
            .await
            .expect("check");
        app.caught_up().await;
        let after = scrape(&app).await;
        let moved = |key: &str| moved(&before, &after, key);
        let now = |key: &str| {
            after
                .get(key)
                .copied()
                .unwrap_or_else(|| panic!("{key} is not exported"))
        };

        assert_eq!(moved("custody_reminders_sent_total"), 1.0, "{kind:?}");
        assert_eq!(moved("custody_notifications_delivered_total"), 1.0);
        assert_eq!(moved("custody_notification_delivery_failures_total"), 0.0);
        assert_eq!(
            (now("custody_outbox_pending"), now("custody_outbox_failing")),
            (0.0, 0.0)
        );
        // The silent cabinet is missing for 25 November, found by the test's check or (had a
        // minute passed) by the service's own, exactly once between them.
        assert_eq!(
            found_here as f64 + moved("custody_missing_uploads_found_total"),
            1.0
        );
        let on_the_25th = "{business_date=\"2026-11-25\"}";
        assert_eq!(
            now(&format!("custody_reconciliation_uploads{on_the_25th}")),
            1.0
        );
        assert_eq!(
            now(&format!(
                "custody_reconciliation_missing_uploads{on_the_25th}"
            )),
            1.0
        );
        // Seven closed dates, 19 to 25 November.
        let dates = after
            .keys()
            .filter(|k| k.starts_with("custody_reconciliation_uploads{"))
            .count();
        assert_eq!(dates, 7);
        assert_eq!(
            now("custody_reconciliation_uploads{business_date=\"2026-11-19\"}"),
            0.0
        );
        // Heartbeats: the uploader's five minutes old, the silent one's three days.
        let cabinets = |state: &str, age: &str| {
            now(&format!(
                "custody_cabinets_by_heartbeat_age{{state=\"{state}\",age=\"{age}\"}}"
            ))
        };
        assert_eq!(cabinets("Active", "under_15m"), 1.0);
        assert_eq!(cabinets("Active", "over_24h"), 1.0);
        for age in ["15m_to_1h", "1h_to_24h", "never"] {
            assert_eq!(cabinets("Active", age), 0.0, "{age}");
        }
        for age in ["under_15m", "never"] {
            assert_eq!(cabinets("Enrolled", age), 0.0, "{age}");
            assert_eq!(cabinets("Disabled", age), 0.0, "{age}");
        }
        for pool in ["events", "platform"] {
            let labels = format!("{{pool=\"{pool}\"}}");
            assert!(now(&format!("custody_db_pool_max_connections{labels}")) >= 1.0);
            assert!(now(&format!("custody_db_pool_acquire_seconds{labels}")) >= 0.0);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn deploy_files_name_only_exported_metrics() {
    // With NATS, so that the relay's metrics are exported too.
    let app = TestApp::spawn_with(StoreKind::Postgres, over_jetstream()).await;
    // Some traffic first: a family shows once it has a series (requests, ingress, commands).
    let _cabinet = app.active_cabinet().await;
    let text = scrape_text(&app).await;
    let exported: HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut named = 0;
    for file in ["grafana/custody.json", "prometheus/alerts.yml"] {
        let body = std::fs::read_to_string(deploy.join(file)).expect("a deploy file");
        for name in body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|token| token.starts_with("custody_") && token.len() > "custody_".len())
        {
            // PromQL names a counter's and a histogram's series; the exposition their family.
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| exported.contains(family))
                .unwrap_or(name);
            assert!(
                exported.contains(family),
                "{file} names {name}, which /metrics does not export"
            );
            named += 1;
        }
    }
    assert!(named > 20, "the dashboard and the alerts name the metrics");
    app.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn(StoreKind::Embedded).await;
    let (status, document) = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        // Every `{parameter}` filled with a placeholder.
        let concrete: String = path
            .split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("path item").keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                .expect("an HTTP method");
            let response = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .expect("a documented operation");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert_ne!(body["error_msg"], "no such route", "{method} {path}");
            operations += 1;
        }
    }
    assert!(operations >= 39, "{operations} operations documented");
    app.stop().await;
}

/// Where `value` breaks `schema` (a JSON Schema subset: `type`, `required`, `properties`,
/// `items`, `oneOf`, `$ref` into `components/schemas`), as `path: reason` lines.
fn schema_breaks(document: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return schema_breaks(
            document,
            &document["components"]["schemas"][name],
            value,
            path,
        );
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let fits = choices
            .iter()
            .filter(|choice| schema_breaks(document, choice, value, path).is_empty())
            .count();
        return if fits == 1 {
            vec![]
        } else {
            vec![format!("{path}: fits {fits} of the oneOf choices: {value}")]
        };
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec![kind],
    };
    let fits = allowed.contains(&kind) || (kind == "integer" && allowed.contains(&"number"));
    if !fits {
        return vec![format!("{path}: {kind}, the schema says {allowed:?}")];
    }
    let mut breaks = Vec::new();
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap_or_default();
        if value.get(key).is_none() {
            breaks.push(format!("{path}: no {key}"));
        }
    }
    if let (Some(properties), Some(fields)) = (schema["properties"].as_object(), value.as_object())
    {
        for (key, field) in fields {
            match properties.get(key) {
                Some(property) => breaks.extend(schema_breaks(
                    document,
                    property,
                    field,
                    &format!("{path}.{key}"),
                )),
                None => breaks.push(format!("{path}: {key} is not documented")),
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            breaks.extend(schema_breaks(
                document,
                items,
                item,
                &format!("{path}[{i}]"),
            ));
        }
    }
    breaks
}

#[tokio::test]
async fn read_answers_have_their_documented_schema() {
    let app = TestApp::spawn_with_clock(
        StoreKind::Embedded,
        ManualClock::at(time("2026-11-23T10:00:00+08:00")),
    )
    .await;
    let (_, document) = get(&app, "/api/v1/openapi.json").await;
    let unit = app.unit().await;
    let cabinet = app.active_cabinet_of(&unit).await;
    let reader = app.token("reader", &unit, &[]).await;
    assert_eq!(
        app.send(&cabinet.heartbeat(app.now_ms()).expect("beat"))
            .await
            .0,
        200
    );
    // One document in a drawer, one lent and overdue since 26 November.
    let mut held = Vec::new();
    for drawer in 0..2 {
        let record = random_document_record(&mut rand::rng());
        let deposit = cabinet.deposit(
            &record,
            &cabinet.drawer(drawer),
            DepositKind::New,
            app.now_ms(),
        );
        assert_eq!(app.send(&deposit.expect("deposit")).await.0, 200);
        held.push(record);
    }
    let lend = cabinet.lend(
        &held[1],
        &cabinet.drawer(1),
        date(2026, 11, 25),
        &Trip::default(),
        app.now_ms(),
    );
    assert_eq!(app.send(&lend.expect("lend")).await.0, 200);
    app.clock.set(time("2026-11-26T10:00:00+08:00"));
    let (status, run) = app
        .ops(reqwest::Method::POST, "/api/v1/ops/scheduler/run", None)
        .await;
    assert_eq!(status, 200, "{run}");
    app.caught_up().await;

    let zjbs = custody_simulator::generate::document_id(&held[0]).expect("zjbs");
    let (_, one) = app
        .read(&reader, &format!("/api/v1/documents/{zjbs}"))
        .await;
    let rybs = one["holder"]["rybs"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reads = [
        (
            "/api/v1/documents/{zjbs}",
            format!("/api/v1/documents/{zjbs}"),
            "",
        ),
        (
            "/api/v1/documents",
            "/api/v1/documents".to_string(),
            "documents",
        ),
        (
            "/api/v1/persons/{rybs}",
            format!("/api/v1/persons/{rybs}"),
            "documents",
        ),
        (
            "/api/v1/cabinets/{sbxlh}",
            format!("/api/v1/cabinets/{}", cabinet.device_serial()),
            "cabinets",
        ),
        (
            "/api/v1/access-records",
            "/api/v1/access-records".to_string(),
            "access_records",
        ),
        ("/api/v1/alerts", "/api/v1/alerts".to_string(), ""),
        ("/api/v1/overdue", "/api/v1/overdue".to_string(), "overdue"),
    ];
    for (template, path, listing) in reads {
        let schema = &document["paths"][template]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        assert!(schema.is_object(), "{template} documents its answer");
        let (status, body) = app.read(&reader, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let breaks = schema_breaks(&document, schema, &body, template);
        assert!(breaks.is_empty(), "{breaks:#?}");
        // The lists the checks went through are not empty.
        if !listing.is_empty() {
            let listed = body[listing].as_array().map_or(0, Vec::len);
            assert!(listed > 0, "{path} lists no {listing}: {body}");
        }
    }
    // The checker itself refuses what breaks a schema.
    let schema = json!({"$ref": "#/components/schemas/Person"});
    let wrong = json!({"rybs": 7, "documents": []});
    assert_eq!(
        schema_breaks(&document, &schema, &wrong, "p"),
        [
            "p: no gmsfhm",
            "p: no state",
            "p: no unit",
            "p: no xm",
            "p.rybs: integer, the schema says [\"string\"]"
        ]
    );
    let undocumented = json!({"rybs": "x", "xm": null, "gmsfhm": null, "state": "Filed",
        "unit": null, "documents": [], "extra": 1});
    assert_eq!(
        schema_breaks(&document, &schema, &undocumented, "p"),
        ["p: extra is not documented"]
    );
    app.stop().await;
}

/// The statistics keeper (issue 11, `eventlog/src/statistics.rs`): a table that grew from
/// nothing by more than it held when last analysed is analysed, once; one that did not is left
/// to autovacuum. On the embedded store the call asks SQLite to optimise and analyses nothing
/// by name.
#[tokio::test]
async fn a_table_grown_from_nothing_is_analysed_once() {
    let store = TestStore::new(StoreKind::Postgres).await;
    let pool = store.log.platform().pool();
    sqlx::query("CREATE TABLE grown (id bigint PRIMARY KEY)")
        .execute(pool)
        .await
        .expect("create");
    sqlx::query("ANALYZE grown")
        .execute(pool)
        .await
        .expect("analyse");
    sqlx::query("INSERT INTO grown SELECT generate_series(1, 5000)")
        .execute(pool)
        .await
        .expect("insert");
    // The counters reach pg_stat_user_tables within a second of the commit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let analysed = loop {
        let analysed = store.log.refresh_statistics().await.expect("refresh");
        if analysed.iter().any(|t| t == "grown") || std::time::Instant::now() > deadline {
            break analysed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(analysed.iter().any(|t| t == "grown"), "{analysed:?}");
    let estimate: f32 =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'grown'")
            .fetch_one(pool)
            .await
            .expect("reltuples");
    assert_eq!(estimate, 5000.0, "the planner knows the table's size");
    let again = store.log.refresh_statistics().await.expect("refresh");
    assert!(!again.iter().any(|t| t == "grown"), "{again:?}");

    let embedded = TestStore::new(StoreKind::Embedded).await;
    assert_eq!(
        embedded.log.refresh_statistics().await.expect("refresh"),
        Vec::<String>::new()
    );
}
