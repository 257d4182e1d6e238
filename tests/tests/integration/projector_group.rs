//! The projectors applied as one group (issue 11, `projections/src/group.rs`), on both stores:
//! a batch read once reaches every view, in one transaction fenced by the lease; a view that
//! fails on its own leaves the group while the others go on, and catches up alone.

use std::sync::Arc;
use std::time::Duration;

use custody_commands::{Commands, ManualClock};
use custody_eventlog::EventLogError;
use custody_projections::feed::{Cursor, EventFeed, FeedItem, StoreFeed};
use custody_projections::{Projection, ProjectionError, Projector, ProjectorGroup};
use custody_tests::samples;
use custody_tests::{StoreKind, TestStore};

const LONG: Duration = Duration::from_secs(60);

async fn deposit_documents(store: &TestStore, count: usize) {
    let commands = Commands::new(
        store.log.clone(),
        Arc::new(ManualClock::at(samples::time("2026-11-23T12:00:00+08:00"))),
    );
    for _ in 0..count {
        let number = samples::fresh_document_number();
        commands
            .document(
                samples::document_id(&number).as_str(),
                samples::deposit(&number),
                samples::unkeyed(),
            )
            .await
            .expect("deposit");
    }
}

async fn group_of_all(store: &TestStore) -> ProjectorGroup {
    let mut projectors = Vec::new();
    for projection in Projection::ALL {
        projectors.push(
            Projector::new(store.log.clone(), projection)
                .await
                .expect("projector"),
        );
    }
    ProjectorGroup::new(projectors)
}

/// What the feed has after `after`: every event committed so far.
async fn batch_after(store: &TestStore, after: Cursor, expected: usize) -> Vec<FeedItem> {
    let mut feed = StoreFeed::new(store.log.clone(), after);
    let items = feed
        .next(500, Duration::from_secs(5))
        .await
        .expect("a batch");
    assert_eq!(items.len(), expected);
    items
}

async fn rows(store: &TestStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.log.platform().pool())
        .await
        .expect("count")
}

async fn cursors(group: &ProjectorGroup) -> Vec<(&'static str, Cursor)> {
    let mut cursors = Vec::new();
    for projector in group.projectors() {
        let status = projector.status().await.expect("status");
        cursors.push((status.name, status.cursor));
    }
    cursors
}

async fn one_batch_reaches_every_view_and_a_failing_view_leaves_alone(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let leases = store.log.leases();
    let token = leases
        .try_acquire("projectors", "a", LONG)
        .await
        .expect("acquire")
        .expect("free");
    let fence = ("projectors", token);
    deposit_documents(&store, 5).await;
    let group = group_of_all(&store).await;
    assert_eq!(group.start().await.expect("start"), Cursor::START);

    // Under a token that is not the lease's, nothing is written to any view.
    let items = batch_after(&store, Cursor::START, 5).await;
    let refused = group.commit(&items, ("projectors", token + 1)).await;
    assert!(
        matches!(
            refused,
            Err(ProjectionError::Store(EventLogError::Fenced { .. }))
        ),
        "{kind:?}"
    );
    assert_eq!(rows(&store, "view_documents").await, 0, "{kind:?}");
    assert!(cursors(&group)
        .await
        .iter()
        .all(|(_, c)| *c == Cursor::START));

    // Under the lease's token, every view takes the batch and records its end.
    let failed = group.commit(&items, fence).await.expect("commit");
    assert!(failed.is_empty(), "{kind:?}: {failed:?}");
    let end = items.last().expect("items").cursor;
    for (name, cursor) in cursors(&group).await {
        assert_eq!(cursor, end, "{kind:?}: {name}");
    }
    assert_eq!(rows(&store, "view_documents").await, 5);
    assert_eq!(rows(&store, "view_access_records").await, 5);
    assert_eq!(group.start().await.expect("start"), end);

    // One view fails on its own (its table is gone): the others take the next batch, and
    // only that view is reported, its cursor where it was.
    sqlx::query("ALTER TABLE view_access_records RENAME TO view_access_records_away")
        .execute(store.log.platform().pool())
        .await
        .expect("rename");
    deposit_documents(&store, 3).await;
    let items = batch_after(&store, end, 3).await;
    let failed = group.commit(&items, fence).await.expect("commit");
    let failing = Projection::ALL
        .iter()
        .position(|p| *p == Projection::AccessRecords)
        .expect("access records");
    assert_eq!(failed, [failing], "{kind:?}");
    let later = items.last().expect("items").cursor;
    for (name, cursor) in cursors(&group).await {
        let expected = if name == Projection::AccessRecords.name() {
            end
        } else {
            later
        };
        assert_eq!(cursor, expected, "{kind:?}: {name}");
    }
    assert_eq!(rows(&store, "view_documents").await, 8);

    // Back, it catches up alone from its own cursor.
    sqlx::query("ALTER TABLE view_access_records_away RENAME TO view_access_records")
        .execute(store.log.platform().pool())
        .await
        .expect("rename back");
    let alone = &group.projectors()[failing];
    let behind = batch_after(&store, end, 3).await;
    alone
        .commit_fenced(&behind, Some(fence))
        .await
        .expect("alone");
    assert_eq!(rows(&store, "view_access_records").await, 8, "{kind:?}");
    assert_eq!(alone.status().await.expect("status").cursor, later);
}

#[tokio::test]
async fn one_batch_reaches_every_view_and_a_failing_view_leaves_alone_on_postgres() {
    one_batch_reaches_every_view_and_a_failing_view_leaves_alone(StoreKind::Postgres).await;
}

#[tokio::test]
async fn one_batch_reaches_every_view_and_a_failing_view_leaves_alone_on_the_embedded_store() {
    one_batch_reaches_every_view_and_a_failing_view_leaves_alone(StoreKind::Embedded).await;
}
