//! The organisation departments' page (docs/department-page.md) in a real headless Chromium,
//! driven over WebDriver (chromedriver): sign in with a reader token, open every view, the
//! numbers on the page equal the read API's for the same token, a sibling org's documents
//! never appear, masking holds without `pii` (and an unmasked view is audited), CSRF is
//! refused, and signing out or idling past the limit ends the session. A PNG of each view is
//! saved under `target/department-page/` (scripts/screenshots copies them to docs/).
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test installs them as root).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custody_commands::ManualClock;
use custody_simulator::generate::document_id;
use custody_simulator::{DepositKind, SimulatedCabinet, Trip};
use custody_tests::samples::{date, time};
use custody_tests::{StoreKind, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::lifecycle::{processes_caught_up, run_scheduler};
use crate::read_side::query_audit_rows;

/// chromedriver with a headless Chromium of a new, empty profile.
struct Browser {
    driver: Child,
    client: Client,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start chromedriver (apt-get install chromium chromium-driver; scripts/test does)",
            );
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1366,768",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        // chromedriver takes a moment to listen: retry the session until it answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "chromedriver: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        client
            .set_window_size(1366, 768)
            .await
            .expect("window size");
        Browser {
            driver,
            client,
            _profile: profile,
        }
    }

    async fn goto(&self, app: &TestApp, path: &str) {
        self.client.goto(&app.url(path)).await.expect("goto");
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_string()
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find all")
            .len()
    }

    async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    async fn screenshot(&self, kind: StoreKind, view: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/department-page");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{kind:?}-{view}.png").to_lowercase()), png)
            .expect("write screenshot");
    }

    /// Types a token into the sign-in form and submits it.
    async fn submit_token(&self, app: &TestApp, token: &str) {
        self.goto(app, "/ui/login").await;
        let field = self
            .client
            .find(Locator::Id("token"))
            .await
            .expect("token field");
        field.send_keys(token).await.expect("type the token");
        self.client
            .find(Locator::Id("sign-in"))
            .await
            .expect("sign-in button")
            .click()
            .await
            .expect("sign in");
    }

    async fn sign_in(&self, app: &TestApp, token: &str) {
        self.submit_token(app, token).await;
        self.client
            .wait()
            .for_element(Locator::Css("[data-stat=total]"))
            .await
            .expect("the overview after sign-in");
    }

    async fn sign_in_fails(&self, app: &TestApp, token: &str) {
        self.submit_token(app, token).await;
        if self
            .client
            .wait()
            .for_element(Locator::Id("login-error"))
            .await
            .is_err()
        {
            panic!("no refusal on the form: {}", self.source().await);
        }
    }

    /// The session cookie's value, to fetch the CSV exports with.
    async fn session(&self) -> String {
        self.client
            .get_named_cookie(custody_api::ui::COOKIE)
            .await
            .expect("session cookie")
            .value()
            .to_string()
    }

    async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A client that does not follow redirects, to see where the page sends a request.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn with_session(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    plain_client()
        .get(app.url(path))
        .header("cookie", format!("{}={session}", custody_api::ui::COOKIE))
        .send()
        .await
        .expect("request")
}

/// Deposits `count` documents and lends the first to `destination`, due back on 2026-11-25.
async fn documents(
    app: &TestApp,
    cabinet: &SimulatedCabinet,
    count: usize,
    destination: &str,
) -> Vec<String> {
    let trip = Trip {
        destination: destination.to_string(),
        ..Trip::default()
    };
    let mut ids = Vec::new();
    for i in 0..count {
        let record = custody_simulator::generate::random_document_record(&mut rand::rng());
        let drawer = cabinet.drawer(i);
        let mut steps = vec![cabinet.deposit(&record, &drawer, DepositKind::New, app.now_ms())];
        if i == 0 {
            steps.push(cabinet.lend(&record, &drawer, date(2026, 11, 25), &trip, app.now_ms()));
        }
        for step in steps {
            let (status, body) = app.send(&step.expect("request")).await;
            assert_eq!(status, 200, "{body}");
        }
        ids.push(document_id(&record).expect("zjbs"));
    }
    ids
}

const VIEWS: [(&str, &str); 7] = [
    ("/ui/", "overview"),
    ("/ui/destinations", "destinations"),
    ("/ui/overdue", "overdue"),
    ("/ui/search", "search"),
    ("/ui/cabinets", "cabinets"),
    ("/ui/reconciliations", "reconciliations"),
    ("/ui/alerts", "alerts"),
];

#[tokio::test]
async fn the_department_page_in_chromium_shows_what_the_read_api_answers() {
    for kind in StoreKind::ALL {
        let clock = ManualClock::at(time("2026-11-23T09:00:00+08:00"));
        let app = TestApp::spawn_with_clock(kind, clock).await;
        let (_, ours, theirs) = app.department_with_two_units().await;
        let our_cabinet = app.active_cabinet_of(&ours).await;
        let their_cabinet = app.active_cabinet_of(&theirs).await;
        let our_docs = documents(&app, &our_cabinet, 3, "HKG").await;
        let their_docs = documents(&app, &their_cabinet, 2, "FRA").await;
        // Two days past the planned return: the lent document is overdue, its reminder open.
        app.clock.set(time("2026-11-27T09:00:00+08:00"));
        run_scheduler(&app).await;
        app.caught_up().await;
        processes_caught_up(&app).await;

        let reader = app.token("reader", &ours, &[]).await;
        let (_, stats) = app.read(&reader, "/api/v1/stats").await;
        let (_, alerts) = app.read(&reader, "/api/v1/alerts").await;
        let (_, overdue) = app.read(&reader, "/api/v1/overdue").await;
        let count = |key: &str| stats["documents_by_state"][key].as_i64().unwrap_or(0);
        let total: i64 = stats["documents_by_state"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or_default();
        assert_eq!(total, 3, "{stats}");
        assert_eq!(stats["overdue"], 1, "{stats}");

        let browser = Browser::start().await;
        // Not signed in: every view leads to the sign-in form.
        browser.goto(&app, "/").await;
        assert_eq!(browser.path().await, "/ui/login");
        browser.screenshot(kind, "login").await;
        // A wrong token is refused on the form.
        browser.sign_in_fails(&app, "not-a-token").await;

        browser.sign_in(&app, &reader).await;
        assert_eq!(browser.path().await, "/ui/");
        // The overview's numbers are the read API's.
        assert_eq!(browser.text("[data-stat=total]").await, total.to_string());
        assert_eq!(
            browser.text("[data-stat=out]").await,
            (count("Withdrawn") + count("AwaitingReturn")).to_string()
        );
        assert_eq!(
            browser.text("[data-stat=overdue]").await,
            stats["overdue"].to_string()
        );
        assert_eq!(
            browser.text("[data-stat=alerts]").await,
            alerts["alerts"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
                .to_string()
        );
        for (state, n) in stats["documents_by_state"].as_object().expect("states") {
            assert_eq!(
                browser.text(&format!("td[data-state={state}]")).await,
                n.to_string(),
                "{state}"
            );
        }
        let withdrawals: i64 = stats["withdrawals_per_day"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or_default();
        let bars = browser
            .client
            .find_all(Locator::Css("#chart-withdrawals rect.bar"))
            .await
            .expect("bars");
        assert_eq!(bars.len(), 90);
        let mut charted = 0;
        for bar in bars {
            let value = bar
                .attr("data-value")
                .await
                .expect("attr")
                .unwrap_or_default();
            charted += value.parse::<i64>().unwrap_or(0);
        }
        assert_eq!(charted, withdrawals);

        for (path, view) in VIEWS {
            browser.goto(&app, path).await;
            assert_eq!(browser.path().await, path, "{view}");
            browser.screenshot(kind, view).await;
            let page = browser.source().await;
            for theirs in their_docs
                .iter()
                .chain([&their_cabinet.device_serial().to_string()])
            {
                assert!(
                    !page.contains(theirs.as_str()),
                    "{view} shows the sibling's {theirs}"
                );
            }
        }

        // Destinations: the ranked countries are the API's.
        browser.goto(&app, "/ui/destinations").await;
        for (place, n) in stats["destinations"].as_object().expect("destinations") {
            assert!(
                browser
                    .source()
                    .await
                    .contains(&format!("data-label=\"{place}\" data-value=\"{n}\"")),
                "{place} {n}"
            );
        }
        assert!(
            !browser.source().await.contains("data-label=\"FRA\""),
            "the sibling's trip"
        );
        assert_eq!(browser.count("#destinations tbody tr").await, 1);
        assert_eq!(browser.count("#persons tbody tr").await, 1);

        // Overdue: the same rows, with their overdue days.
        browser.goto(&app, "/ui/overdue").await;
        let listed = overdue["overdue"].as_array().cloned().unwrap_or_default();
        assert_eq!(listed.len(), 1, "{overdue}");
        assert_eq!(browser.count("#overdue tbody tr").await, 1);
        assert_eq!(
            browser.text("#overdue tbody tr td:nth-child(1)").await,
            listed[0]["zjbs"].as_str().unwrap_or_default()
        );
        assert_eq!(
            browser.text("#overdue tbody tr td:nth-child(6)").await,
            listed[0]["overdue_days"].to_string()
        );

        // Search: a document opens its timeline, masked as the API masks.
        let lent = &our_docs[0];
        browser.goto(&app, &format!("/ui/search?q={lent}")).await;
        assert_eq!(browser.path().await, format!("/ui/documents/{lent}"));
        let (_, view) = app
            .read(&reader, &format!("/api/v1/documents/{lent}"))
            .await;
        assert_eq!(
            browser.text("#document-number").await,
            view["zjhm"].as_str().unwrap_or_default()
        );
        assert_eq!(
            browser.text("#citizen-id").await,
            view["holder"]["gmsfhm"].as_str().unwrap_or_default()
        );
        assert!(browser.text("#citizen-id").await.contains('*'));
        let events = app
            .store
            .log
            .events_of("Document", lent)
            .await
            .expect("events");
        assert_eq!(browser.count("#timeline tbody tr").await, events.len());
        let timeline = browser.text("#timeline").await;
        assert!(
            timeline.contains("入柜（新证）") && timeline.contains("出柜（借出）"),
            "{timeline}"
        );
        assert!(timeline.contains("HKG"), "{timeline}");
        browser.screenshot(kind, "timeline").await;
        assert_eq!(
            query_audit_rows(&app).await,
            0,
            "masked views are not audited"
        );
        // A sibling's document is not found, as on the API.
        browser
            .goto(&app, &format!("/ui/search?q={}", their_docs[0]))
            .await;
        assert_eq!(browser.count("#not-found").await, 1);
        browser
            .goto(&app, &format!("/ui/documents/{}", their_docs[0]))
            .await;
        assert!(browser.source().await.contains("E_NOT_FOUND"));

        // Cabinets: ours, with its occupancy; not theirs.
        browser.goto(&app, "/ui/cabinets").await;
        assert_eq!(browser.count("#cabinets tbody tr").await, 1);
        assert_eq!(
            browser.text("#cabinets tbody tr td:nth-child(1)").await,
            our_cabinet.device_serial()
        );
        assert_eq!(
            browser.text("#cabinets tbody tr td:nth-child(6)").await,
            "2"
        );

        // The exports: CSV of the same rows, only with the session.
        let session = browser.session().await;
        let csv = with_session(&app, &session, "/ui/overdue.csv").await;
        assert_eq!(csv.status(), 200);
        assert!(csv.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv"));
        let body = csv.text().await.expect("csv");
        assert_eq!(body.lines().count(), 2, "{body}");
        assert!(body.contains(lent.as_str()));
        for path in [
            "/ui/overview.csv",
            "/ui/destinations.csv",
            "/ui/cabinets.csv",
            "/ui/alerts.csv",
            "/ui/reconciliations.csv",
        ] {
            assert_eq!(
                with_session(&app, &session, path).await.status(),
                200,
                "{path}"
            );
        }
        assert_eq!(
            plain_client()
                .get(app.url("/ui/overdue.csv"))
                .send()
                .await
                .expect("csv")
                .status(),
            303,
            "no session, no export"
        );

        // CSRF: a sign-out without the session's form value, or from another site, is refused.
        let forged = plain_client()
            .post(app.url("/ui/logout"))
            .header("cookie", format!("{}={session}", custody_api::ui::COOKIE))
            .form(&[("csrf", "guessed")])
            .send()
            .await
            .expect("post");
        assert_eq!(forged.status(), 403);
        assert_eq!(
            with_session(&app, &session, "/ui/").await.status(),
            200,
            "still signed in"
        );

        // Signing out ends the session: the browser and the old cookie are both sent back.
        browser
            .client
            .find(Locator::Id("logout"))
            .await
            .expect("sign-out button")
            .click()
            .await
            .expect("sign out");
        browser
            .client
            .wait()
            .for_element(Locator::Id("token"))
            .await
            .expect("sign-in form");
        assert_eq!(browser.path().await, "/ui/login");
        browser.goto(&app, "/ui/").await;
        assert_eq!(browser.path().await, "/ui/login");
        let after = with_session(&app, &session, "/ui/").await;
        assert_eq!(after.status(), 303);
        assert_eq!(after.headers()["location"], "/ui/login");

        // With pii: unmasked, and each such view is in the query audit log.
        let with_pii = app.token("reader", &ours, &["pii"]).await;
        browser.sign_in(&app, &with_pii).await;
        browser.goto(&app, &format!("/ui/documents/{lent}")).await;
        let (_, clear) = app
            .read(&with_pii, &format!("/api/v1/documents/{lent}"))
            .await;
        let audited = query_audit_rows(&app).await;
        assert!(
            audited >= 2,
            "the page's and the API's unmasked reads: {audited}"
        );
        assert_eq!(
            browser.text("#citizen-id").await,
            clear["holder"]["gmsfhm"].as_str().unwrap_or_default()
        );
        assert!(!browser.text("#citizen-id").await.contains('*'));

        // Idle past the limit: the session has ended.
        app.clock.advance(chrono::Duration::minutes(31));
        browser.goto(&app, "/ui/").await;
        assert_eq!(browser.path().await, "/ui/login");

        // Revoking the token ends its sessions at once.
        let (status, issued) = app
            .ops(
                reqwest::Method::POST,
                "/api/v1/ops/tokens",
                Some(json!({"role": "reader", "org": ours, "scopes": []})),
            )
            .await;
        assert_eq!(status, 201, "{issued}");
        browser
            .sign_in(&app, issued["token"].as_str().expect("secret"))
            .await;
        let id = issued["id"].as_str().expect("token id");
        let (status, _) = app
            .ops(
                reqwest::Method::DELETE,
                &format!("/api/v1/ops/tokens/{id}"),
                None,
            )
            .await;
        assert!((200..300).contains(&status), "revoke: {status}");
        browser.goto(&app, "/ui/cabinets").await;
        assert_eq!(browser.path().await, "/ui/login");

        browser.stop().await;
        app.stop().await;
    }
}
