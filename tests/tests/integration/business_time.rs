//! Time rules of business times as sent (docs/protocol.md, "Time rules"), on both stores: a
//! time ahead of the server clock is refused, a cabinet operation before the document's latest
//! one is refused, a lend due back before it left is refused, and a cabinet that was offline
//! reports late, in order, and is accepted however late.

use chrono::Duration;
use custody_protocol::{DocumentRecord, SignedRequest};
use custody_simulator::cabinet::message_type;
use custody_simulator::exit_entry::Direction;
use custody_simulator::{CustodyOperation, DepositKind, SimulatedCabinet};
use custody_tests::{StoreKind, TestApp};

use crate::exit_entry::{
    assert_refused, codes, document_events, event_count, record, registered_adapter,
    rejection_count, send_ok,
};

const DAY_MS: i64 = 86_400_000;

/// A `sjsb-zjcq` whose operation happened at `operated_ms`, reported (signed) now.
fn reported_now(
    app: &TestApp,
    cabinet: &SimulatedCabinet,
    operation: CustodyOperation,
    document: &DocumentRecord,
    operated_ms: i64,
    return_date: Option<chrono::NaiveDate>,
) -> SignedRequest {
    let mut data = cabinet
        .custody_report_data(operation, document, &cabinet.drawer(0), operated_ms)
        .expect("report data");
    if let Some(date) = return_date {
        data.return_date = date.format("%Y%m%d").to_string();
    }
    cabinet
        .sign(message_type::CUSTODY, &data, app.now_ms())
        .expect("sign")
}

/// Sends `request`, expects the refusal, and that it appended nothing and was kept.
async fn refused(app: &TestApp, request: &SignedRequest, status: u16, code: &str, case: &str) {
    let (events, kept) = (event_count(app).await, rejection_count(app).await);
    assert_refused(&app.send(request).await, status, code, case);
    assert_eq!(event_count(app).await, events, "{case}: nothing appended");
    assert_eq!(rejection_count(app).await, kept + 1, "{case}: kept");
}

/// An app with an active cabinet that has just deposited a document.
async fn deposited_now(kind: StoreKind) -> (TestApp, SimulatedCabinet, DocumentRecord) {
    let app = TestApp::spawn(kind).await;
    let cabinet = app.active_cabinet().await;
    let document = record();
    let deposit = cabinet.deposit(
        &document,
        &cabinet.drawer(0),
        DepositKind::New,
        app.now_ms(),
    );
    send_ok(&app, deposit, "deposit").await;
    (app, cabinet, document)
}

#[tokio::test]
async fn a_business_time_ahead_of_the_clock_is_refused() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let document = record();
        let ahead = app.now_ms() + 400 * DAY_MS;
        let deposit = reported_now(
            &app,
            &cabinet,
            CustodyOperation::DepositNew,
            &document,
            ahead,
            None,
        );
        refused(
            &app,
            &deposit,
            422,
            "E_TIME_AHEAD",
            "a deposit 400 days ahead",
        )
        .await;
        // Within the allowed skew (300 s) it is taken.
        let skewed = app.now_ms() + 240_000;
        let deposit = reported_now(
            &app,
            &cabinet,
            CustodyOperation::DepositNew,
            &document,
            skewed,
            None,
        );
        send_ok(&app, Ok(deposit), "a deposit 4 minutes ahead").await;

        let adapter = registered_adapter(&app).await;
        let crossing = adapter
            .crossing(
                &document,
                Direction::Exit,
                app.now_ms() + 2 * DAY_MS,
                "Luohu",
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
        assert_eq!(codes(&answer), ["E_TIME_AHEAD"], "{kind:?}: {}", answer.1);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_cabinet_operation_before_the_documents_latest_is_refused() {
    for kind in StoreKind::ALL {
        let (app, cabinet, document) = deposited_now(kind).await;
        let ten_years_back = app.now_ms() - 3653 * DAY_MS;
        let take_out = reported_now(
            &app,
            &cabinet,
            CustodyOperation::TakeOut,
            &document,
            ten_years_back,
            None,
        );
        refused(
            &app,
            &take_out,
            409,
            "E_OUT_OF_ORDER",
            "a take-out before the deposit",
        )
        .await;
        assert_eq!(document_events(&app, &document).await.len(), 1, "{kind:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_lend_due_back_before_it_left_is_refused() {
    for kind in StoreKind::ALL {
        let (app, cabinet, document) = deposited_now(kind).await;
        let yesterday = (app.clock.now() - Duration::days(1)).date_naive();
        let lend = reported_now(
            &app,
            &cabinet,
            CustodyOperation::Lend,
            &document,
            app.now_ms(),
            Some(yesterday),
        );
        refused(&app, &lend, 422, "E_INVALID_FIELD", "due back yesterday").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_cabinet_that_was_offline_reports_in_order_however_late() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let document = record();
        let month_ago = app.now_ms() - 30 * DAY_MS;
        let operations = [
            (CustodyOperation::DepositNew, month_ago, None),
            (
                CustodyOperation::Lend,
                month_ago + DAY_MS,
                Some((app.clock.now() - Duration::days(20)).date_naive()),
            ),
            (
                CustodyOperation::DepositReturn,
                month_ago + 2 * DAY_MS,
                None,
            ),
        ];
        for (operation, at, return_date) in operations {
            let request = reported_now(&app, &cabinet, operation, &document, at, return_date);
            send_ok(&app, Ok(request), "a late report, in order").await;
        }
        assert_eq!(document_events(&app, &document).await.len(), 3, "{kind:?}");
        app.stop().await;
    }
}
