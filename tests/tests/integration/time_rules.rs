//! The time rules of the lifecycle processes, with a set clock, on both stores: the scheduler
//! marks a document once however often it runs, reminders go out only between 10:00:00 and
//! 16:59:59 China time and at most once a day (the default), and overdue days are never negative.

use custody_commands::ManualClock;
use custody_domain::document::DocumentEvent;
use custody_domain::reminder::Reminder;
use custody_protocol::DocumentRecord;
use custody_simulator::exit_entry::Direction;
use custody_simulator::generate::document_id;
use custody_simulator::{DepositKind, SimulatedCabinet, Trip};
use custody_tests::samples::{date, time};
use custody_tests::{StoreKind, TestApp};
use serde_json::Value;

use crate::exit_entry::{document_events, record, registered_adapter, send_ok};
use crate::lifecycle::{overdue, processes_caught_up, run_scheduler};

async fn lend(
    app: &TestApp,
    cabinet: &SimulatedCabinet,
    slot: usize,
    planned_return: chrono::NaiveDate,
) -> DocumentRecord {
    let document = record();
    let drawer = cabinet.drawer(slot);
    send_ok(
        app,
        cabinet.deposit(&document, &drawer, DepositKind::New, app.now_ms()),
        "deposit",
    )
    .await;
    send_ok(
        app,
        cabinet.lend(
            &document,
            &drawer,
            planned_return,
            &Trip::default(),
            app.now_ms(),
        ),
        "lend",
    )
    .await;
    document
}

/// How many `Sent` events each document's open reminder has, by zjbs, from the overdue list.
async fn sent_by_document(app: &TestApp, token: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for item in overdue(app, token).await {
        let id = item["reminder"].as_str().expect("reminder id");
        let reminder: Reminder = app.state.commands.load(id).await.expect("reminder");
        out.push((
            item["zjbs"].as_str().unwrap_or_default().to_string(),
            reminder.sent,
        ));
    }
    out.sort();
    out
}

fn sent(run: &Value) -> i64 {
    run["reminders"]["sent"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn the_scheduler_marks_once_and_reminders_keep_to_the_window_and_the_day() {
    for kind in StoreKind::ALL {
        let clock = ManualClock::at(time("2026-11-20T08:00:00+08:00"));
        let app = TestApp::spawn_with_clock(kind, clock).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let adapter = registered_adapter(&app).await;
        let reader = app.token("reader", &unit, &[]).await;
        let first = lend(&app, &cabinet, 0, date(2026, 11, 20)).await;
        let second = lend(&app, &cabinet, 1, date(2026, 11, 20)).await;
        let early = lend(&app, &cabinet, 2, date(2026, 11, 30)).await;
        let late = lend(&app, &cabinet, 3, date(2026, 11, 30)).await;

        // Not on the planned day, to its last second.
        app.clock.set(time("2026-11-20T23:59:59+08:00"));
        assert_eq!(run_scheduler(&app).await["return_dates"]["marked"], 0);

        // The next morning: marked once, however often the scheduler runs.
        app.clock.set(time("2026-11-21T09:59:59+08:00"));
        let run = run_scheduler(&app).await;
        assert_eq!(run["return_dates"]["marked"], 2, "{run}");
        assert_eq!(sent(&run), 0, "09:59:59 is before the window: {run}");
        let again = run_scheduler(&app).await;
        assert_eq!(again["return_dates"]["marked"], 0, "{again}");
        for document in [&first, &second] {
            let marks = document_events(&app, document)
                .await
                .into_iter()
                .filter(|e| matches!(e, DocumentEvent::ReturnDateReached(_)))
                .count();
            assert_eq!(marks, 1, "one ReturnDateReached");
        }

        // 10:00:00 opens the window; once a day by default.
        app.clock.set(time("2026-11-21T10:00:00+08:00"));
        assert_eq!(sent(&run_scheduler(&app).await), 2);
        app.clock.set(time("2026-11-21T15:00:00+08:00"));
        assert_eq!(sent(&run_scheduler(&app).await), 0, "the day's one is out");

        // An entry at 15:00 opens an `entered` reminder; 16:59:59 is still inside.
        let crossing = |record: &DocumentRecord, direction| {
            adapter
                .crossing(record, direction, app.now_ms(), "310000", "HKG")
                .expect("crossing")
        };
        let records = [
            crossing(&early, Direction::Exit),
            crossing(&early, Direction::Entry),
        ];
        send_ok(
            &app,
            adapter.crossings(&records, app.now_ms()),
            "early entry",
        )
        .await;
        processes_caught_up(&app).await;
        app.clock.set(time("2026-11-21T16:59:59+08:00"));
        assert_eq!(sent(&run_scheduler(&app).await), 1, "16:59:59 is inside");

        // Another at 16:59:59 waits: 17:00:00 is outside.
        let records = [
            crossing(&late, Direction::Exit),
            crossing(&late, Direction::Entry),
        ];
        send_ok(
            &app,
            adapter.crossings(&records, app.now_ms()),
            "late entry",
        )
        .await;
        processes_caught_up(&app).await;
        app.clock.set(time("2026-11-21T17:00:00+08:00"));
        let run = run_scheduler(&app).await;
        assert_eq!(sent(&run), 0, "17:00:00 is outside: {run}");
        assert_eq!(run["reminders"]["waiting"], 4, "{run}");

        let zjbs = |record: &DocumentRecord| document_id(record).expect("zjbs");
        let mut expected = vec![
            (zjbs(&first), 1),
            (zjbs(&second), 1),
            (zjbs(&early), 1),
            (zjbs(&late), 0),
        ];
        expected.sort();
        assert_eq!(sent_by_document(&app, &reader).await, expected);

        // The next day, each one once more.
        app.clock.set(time("2026-11-22T10:00:00+08:00"));
        assert_eq!(sent(&run_scheduler(&app).await), 4);
        assert_eq!(sent(&run_scheduler(&app).await), 0);
        for (_, count) in expected.iter_mut() {
            *count += 1;
        }
        assert_eq!(sent_by_document(&app, &reader).await, expected);

        // Overdue days: 2 for the overdue ones, 0 (never negative) for those due on the 30th.
        let days: Vec<(String, String, i64)> = overdue(&app, &reader)
            .await
            .iter()
            .map(|item| {
                (
                    item["zjbs"].as_str().unwrap_or_default().to_string(),
                    item["kind"].as_str().unwrap_or_default().to_string(),
                    item["overdue_days"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        let mut want = vec![
            (zjbs(&first), "overdue".to_string(), 2),
            (zjbs(&second), "overdue".to_string(), 2),
            (zjbs(&early), "entered".to_string(), 0),
            (zjbs(&late), "entered".to_string(), 0),
        ];
        let mut days_sorted = days.clone();
        days_sorted.sort();
        want.sort();
        assert_eq!(days_sorted, want);
        // Listed longest overdue first.
        assert_eq!(days[0].2, 2);
        app.stop().await;
    }
}
