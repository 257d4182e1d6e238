//! The stats projection (docs/department-page.md, "Statistics") answers what the scan of the
//! views it replaced answers, for every scope and day, on both stores, over a varied lifecycle:
//! deposits, lends and take-outs with destinations over several days, returns, an abnormal
//! withdrawal, a cancellation, documents overdue, documents issued but never deposited (counted
//! for their holder's unit, also when the holder is filed after the issue, and for no unit when
//! never filed), an org tree of several levels (a province, its department, two
//! units, a unit below one of them, each level holding documents of its own where it has a
//! cabinet) and an org outside it, for bare sets of units and for org subtrees (read from the
//! roll-ups of their roots), one subtree and two. A rebuild gives the same answers, and
//! `GET /api/v1/stats` is the projection's answer for the token's subtree.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use custody_commands::ManualClock;
use custody_projections::read::{Reader, Scope, Stats};
use custody_projections::Projection;
use custody_protocol::DocumentRecord;
use custody_simulator::generate::{document_id, random_document_record};
use custody_simulator::unit::{FilingKind, PersonData};
use custody_simulator::{
    AbnormalReason, CancellationReason, DepositKind, SimulatedCabinet, SimulatedExitEntryAdapter,
    Trip,
};
use custody_tests::samples::{date, time};
use custody_tests::{StoreKind, TestApp};
use serde_json::{json, Value};

use crate::exit_entry::{
    assert_accepted, registered_adapter, registered_unit_client, results, send_ok,
};
use crate::lifecycle::run_scheduler;

fn trip(destination: &str) -> Trip {
    Trip {
        destination: destination.to_string(),
        ..Trip::default()
    }
}

/// Deposits `count` new documents into drawers `0..count` of `cabinet`.
async fn deposited(app: &TestApp, cabinet: &SimulatedCabinet, count: usize) -> Vec<DocumentRecord> {
    let mut records = Vec::new();
    for i in 0..count {
        let record = random_document_record(&mut rand::rng());
        let request = cabinet.deposit(&record, &cabinet.drawer(i), DepositKind::New, app.now_ms());
        send_ok(app, request, "deposit").await;
        records.push(record);
    }
    records
}

/// Files `who` with the unit client of `unit`, then has the exit-entry adapter issue a document
/// of theirs that no cabinet has held yet.
async fn issued_to_filed_person(app: &TestApp, unit: &str, adapter: &SimulatedExitEntryAdapter) {
    let who = PersonData::random();
    filed(app, unit, &who).await;
    issued(app, adapter, &record_of(&who)).await;
}

/// Has the exit-entry adapter issue a document to someone not filed yet, lets the views take
/// it in, and only then files them with the unit client of `unit`: the document no cabinet has
/// held moves from no unit's counters to that unit's.
async fn issued_then_filed(app: &TestApp, unit: &str, adapter: &SimulatedExitEntryAdapter) {
    let who = PersonData::random();
    issued(app, adapter, &record_of(&who)).await;
    app.caught_up().await;
    filed(app, unit, &who).await;
}

async fn filed(app: &TestApp, unit: &str, who: &PersonData) {
    let client = registered_unit_client(app, unit).await;
    let data = client
        .filing_list_data(
            vec![client
                .filing_item(FilingKind::New, who, "科员")
                .expect("filing item")],
            app.now_ms(),
        )
        .expect("filing list");
    let answer = app
        .send(&client.sign("sjsb-bbxx", &data, app.now_ms()).expect("sign"))
        .await;
    assert_accepted(&answer, "filing list");
    assert!(results(&answer).iter().all(|r| r.status), "{}", answer.1);
}

fn record_of(who: &PersonData) -> DocumentRecord {
    let mut record = random_document_record(&mut rand::rng());
    record.citizen_id_number = who.citizen_id.clone();
    record.chinese_name = who.name.clone();
    record
}

async fn issued(app: &TestApp, adapter: &SimulatedExitEntryAdapter, record: &DocumentRecord) {
    let entry = adapter
        .issued(record, date(2026, 11, 20))
        .expect("issued record");
    let request = adapter
        .issued_documents(std::slice::from_ref(&entry), app.now_ms())
        .expect("issued documents");
    assert_accepted(&app.send(&request).await, "issued");
}

fn units(codes: &[&String]) -> Scope {
    Scope::units(codes.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>())
}

/// The org subtrees of `roots`, as a token's scope is made.
async fn subtrees(app: &TestApp, roots: &[&String]) -> Scope {
    let mut units = BTreeSet::new();
    for root in roots {
        units.extend(
            app.store
                .log
                .platform()
                .org_subtree(root)
                .await
                .expect("org subtree"),
        );
    }
    Scope::subtrees(roots.iter().map(|r| r.to_string()).collect(), units)
}

/// Every scope's statistics on each day, from the projection, each equal to the scan's.
async fn all_equal_to_the_scan(
    reader: &Reader,
    scopes: &[Scope],
    days: &[NaiveDate],
) -> Vec<Stats> {
    let mut answers = Vec::new();
    for scope in scopes {
        for today in days {
            let projected = reader.stats(scope, *today).await.expect("stats");
            let scanned = reader
                .stats_from_views(scope, *today)
                .await
                .expect("scanned stats");
            assert_eq!(projected, scanned, "{scope:?} on {today}");
            answers.push(projected);
        }
        // The destinations page's counts, from the projection's trips, equal the count of the
        // access records and their documents, for all time and for periods of these days.
        let mut periods = vec![(None, None)];
        for day in days {
            periods.extend([
                (Some(*day), Some(*day)),
                (Some(*day), None),
                (None, Some(*day)),
            ]);
        }
        for (from, to) in periods {
            let projected = reader
                .destinations(scope, from, to, None)
                .await
                .expect("destinations");
            let scanned = reader
                .destinations_from_views(scope, from, to)
                .await
                .expect("scanned destinations");
            assert_eq!(projected, scanned, "{scope:?} from {from:?} to {to:?}");
            // The most frequent holders only: the first of the whole list, ranked by the store.
            let first = reader
                .destinations(scope, from, to, Some(2))
                .await
                .expect("first destinations");
            assert_eq!(first.by_destination, scanned.by_destination);
            let expected: Vec<_> = scanned.by_person.iter().take(2).cloned().collect();
            assert_eq!(
                first.by_person, expected,
                "{scope:?} from {from:?} to {to:?}"
            );
        }
    }
    answers
}

#[tokio::test]
async fn the_stats_projection_answers_what_a_scan_of_the_views_answers() {
    for kind in StoreKind::ALL {
        let clock = ManualClock::at(time("2026-11-23T09:00:00+08:00"));
        let app = TestApp::spawn_with_clock(kind, clock).await;
        let province = app.org_under(None, "省委组织部").await;
        let department = app.org_under(Some(&province), "市委组织部").await;
        let ours = app.org_under(Some(&department), "本单位").await;
        let theirs = app.org_under(Some(&department), "兄弟单位").await;
        let below = app.org_under(Some(&ours), "下级单位").await;
        let elsewhere = app.org_under(None, "另一部门").await;
        let province_cabinet = app.active_cabinet_of(&province).await;
        let below_cabinet = app.active_cabinet_of(&below).await;
        let our_cabinet = app.active_cabinet_of(&ours).await;
        let their_cabinet = app.active_cabinet_of(&theirs).await;
        let far_cabinet = app.active_cabinet_of(&elsewhere).await;
        let adapter = registered_adapter(&app).await;

        // 11-23: deposits everywhere; lends, a take-out, an abnormal withdrawal, a cancellation.
        let our = deposited(&app, &our_cabinet, 6).await;
        let their = deposited(&app, &their_cabinet, 3).await;
        let far = deposited(&app, &far_cabinet, 2).await;
        let low = deposited(&app, &below_cabinet, 2).await;
        deposited(&app, &province_cabinet, 1).await;
        let now = app.now_ms();
        for (cabinet, record, drawer, due, to) in [
            (&below_cabinet, &low[0], 0, date(2026, 11, 24), "HKG"),
            (&our_cabinet, &our[0], 0, date(2026, 11, 25), "HKG"),
            (&our_cabinet, &our[1], 1, date(2026, 11, 30), "FRA"),
            (&their_cabinet, &their[0], 0, date(2026, 11, 24), "HKG"),
            (&far_cabinet, &far[0], 0, date(2026, 11, 24), "JPN"),
        ] {
            let lend = cabinet.lend(record, &cabinet.drawer(drawer), due, &trip(to), now);
            send_ok(&app, lend, "lend").await;
        }
        let drawer = our_cabinet.drawer(2);
        let take_out = our_cabinet.take_out(&our[2], &drawer, None, &trip("MAC"), now);
        send_ok(&app, take_out, "take out").await;
        let abnormal = our_cabinet.abnormal_withdrawal(
            &our[3],
            &our_cabinet.drawer(3),
            AbnormalReason::Missing,
            now,
        );
        send_ok(&app, abnormal, "abnormal withdrawal").await;
        let zjbs = document_id(&our[4]).expect("zjbs");
        let cancellation = our_cabinet.cancellation(&zjbs, CancellationReason::Lost, now);
        send_ok(&app, cancellation, "cancellation").await;
        issued_to_filed_person(&app, &ours, &adapter).await;
        issued(&app, &adapter, &random_document_record(&mut rand::rng())).await;
        issued_then_filed(&app, &ours, &adapter).await;

        // 11-24: the take-out comes back; another lend, returned the next day; a take-out.
        app.clock.set(time("2026-11-24T10:00:00+08:00"));
        let now = app.now_ms();
        let back = our_cabinet.deposit(&our[2], &drawer, DepositKind::Return, now);
        send_ok(&app, back, "return").await;
        let drawer = our_cabinet.drawer(5);
        let lend = our_cabinet.lend(&our[5], &drawer, date(2026, 11, 26), &trip("HKG"), now);
        send_ok(&app, lend, "lend").await;
        let drawer = their_cabinet.drawer(1);
        let take_out = their_cabinet.take_out(&their[1], &drawer, None, &trip("FRA"), now);
        send_ok(&app, take_out, "take out").await;
        app.clock.set(time("2026-11-25T10:00:00+08:00"));
        let drawer = our_cabinet.drawer(5);
        let back = our_cabinet.deposit(&our[5], &drawer, DepositKind::Return, app.now_ms());
        send_ok(&app, back, "return").await;

        // 11-27: the scheduler marks the lends past their date due back: overdue.
        app.clock.set(time("2026-11-27T09:00:00+08:00"));
        run_scheduler(&app).await;
        app.caught_up().await;

        let reader = Reader::new(app.store.log.clone());
        let scopes = [
            Scope::everything(),
            units(&[&ours]),
            units(&[&theirs]),
            units(&[&department, &ours, &theirs]),
            units(&[&elsewhere]),
            units(&[&ours, &elsewhere]),
            subtrees(&app, &[&province]).await,
            subtrees(&app, &[&department]).await,
            subtrees(&app, &[&ours]).await,
            subtrees(&app, &[&below]).await,
            subtrees(&app, &[&theirs]).await,
            subtrees(&app, &[&elsewhere]).await,
            subtrees(&app, &[&ours, &elsewhere]).await,
        ];
        let days = [
            date(2026, 11, 23),
            date(2026, 11, 25),
            date(2026, 11, 27),
            date(2026, 12, 1),
        ];
        let before = all_equal_to_the_scan(&reader, &scopes, &days).await;

        // What the scan says, spelled out, so that two empty answers cannot pass.
        let today = date(2026, 11, 27);
        let everything = reader
            .stats(&Scope::everything(), today)
            .await
            .expect("stats");
        let total: i64 = everything.documents_by_state.values().sum();
        assert_eq!(total, 6 + 3 + 2 + 2 + 1 + 3, "{everything:?}");
        assert_eq!(everything.overdue, 4, "{everything:?}");
        let our_stats = reader.stats(&units(&[&ours]), today).await.expect("stats");
        assert_eq!(our_stats.overdue, 1, "{our_stats:?}");
        assert_eq!(
            our_stats.documents_by_state.values().sum::<i64>(),
            6 + 2,
            "the issued documents count for their holders' unit: {our_stats:?}"
        );
        assert_eq!(our_stats.destinations.get("HKG"), Some(&2), "{our_stats:?}");
        assert_eq!(
            our_stats.withdrawals_per_day.get("2026-11-23"),
            Some(&4),
            "{our_stats:?}"
        );
        assert_eq!(
            our_stats.withdrawals_per_day.get("2026-11-24"),
            Some(&1),
            "{our_stats:?}"
        );

        // Our unit's destinations: two lends to HKG (one on 11-24), one to FRA, a take-out to
        // MAC, each by another holder, named in clear; only the first `named` holders named.
        let ours_only = units(&[&ours]);
        let trips = reader
            .destinations(&ours_only, None, None, None)
            .await
            .expect("destinations");
        let expected: Vec<(String, i64)> = [("HKG", 2), ("FRA", 1), ("MAC", 1)]
            .iter()
            .map(|(d, n)| (d.to_string(), *n))
            .collect();
        assert_eq!(trips.by_destination, expected, "{trips:?}");
        assert_eq!(trips.by_person.len(), 4, "{trips:?}");
        let names: BTreeSet<String> = [&our[0], &our[1], &our[2], &our[5]]
            .iter()
            .map(|r| r.chinese_name.clone())
            .collect();
        let shown: BTreeSet<String> = trips
            .by_person
            .iter()
            .filter_map(|p| p.name.clone())
            .collect();
        assert_eq!(shown, names, "{trips:?}");
        let one_day = reader
            .destinations(
                &ours_only,
                Some(date(2026, 11, 24)),
                Some(date(2026, 11, 24)),
                Some(1),
            )
            .await
            .expect("destinations");
        assert_eq!(one_day.by_destination, vec![("HKG".to_string(), 1)]);
        assert_eq!(one_day.by_person.len(), 1, "{one_day:?}");
        assert_eq!(
            one_day.by_person[0].name.as_ref(),
            Some(&our[5].chinese_name)
        );
        let first = reader
            .destinations(&ours_only, None, None, Some(1))
            .await
            .expect("destinations");
        assert_eq!(first.by_destination, trips.by_destination);
        assert_eq!(first.by_person, trips.by_person[..1], "{first:?}");

        // Our subtree holds the unit below us too: its roll-up counts both.
        let our_subtree = reader
            .stats(&subtrees(&app, &[&ours]).await, today)
            .await
            .expect("stats");
        assert_eq!(
            our_subtree.documents_by_state.values().sum::<i64>(),
            6 + 2 + 2,
            "{our_subtree:?}"
        );
        assert_eq!(our_subtree.overdue, 2, "{our_subtree:?}");
        assert_eq!(
            our_subtree.destinations.get("HKG"),
            Some(&3),
            "{our_subtree:?}"
        );
        let province_total: i64 = reader
            .stats(&subtrees(&app, &[&province]).await, today)
            .await
            .expect("stats")
            .documents_by_state
            .values()
            .sum();
        assert_eq!(province_total, 1 + 6 + 2 + 3 + 2, "the province's subtree");

        // The read API answers the projection's figures for the token's subtree, in the same
        // JSON as before.
        let our_stats = our_subtree;
        let token = app.token("reader", &ours, &[]).await;
        let (status, body) = app.read(&token, "/api/v1/stats").await;
        assert_eq!(status, 200, "{body}");
        let expected = json!({
            "documents_by_state": our_stats.documents_by_state,
            "withdrawals_per_day": our_stats.withdrawals_per_day,
            "destinations": our_stats.destinations,
            "overdue": our_stats.overdue,
        });
        for key in [
            "documents_by_state",
            "withdrawals_per_day",
            "destinations",
            "overdue",
        ] {
            assert_eq!(body[key], expected[key], "{key}: {body}");
        }

        // A rebuild into a fresh generation gives the same counts.
        let (status, body) = app
            .ops(
                reqwest::Method::POST,
                "/api/v1/ops/projections/stats/rebuild",
                None,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let generation = loop {
            let (_, body) = app
                .ops(reqwest::Method::GET, "/api/v1/ops/projections", None)
                .await;
            let view: Value = body["projections"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == "stats").cloned())
                .expect("the stats projection is listed");
            match view["rebuild"]["state"].as_str() {
                Some("finished") => break view["generation"].as_i64(),
                Some("failed") => panic!("rebuild failed: {view}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        assert_eq!(generation, Some(2));
        assert_eq!(
            reader
                .generation(Projection::Stats)
                .await
                .expect("generation"),
            2
        );
        let after = all_equal_to_the_scan(&reader, &scopes, &days).await;
        assert_eq!(before, after, "{kind:?}");
        app.stop().await;
    }
}
