//! Worker leases (docs/scaling.md, "Leases"), on both stores: a lease is taken only when free
//! or expired, each take raises the fencing token, and a write fenced by a token that is no
//! longer the lease's is refused and changes nothing. The same behaviour across `custody serve`
//! processes is in `instances.rs`.

use std::sync::Arc;
use std::time::Duration;

use custody_commands::{Commands, ManualClock};
use custody_eventlog::{fence, EventLogError, Leases};
use custody_projections::feed::{Cursor, EventFeed, StoreFeed};
use custody_projections::{Projection, ProjectionError, Projector};
use custody_tests::samples;
use custody_tests::{StoreKind, TestStore};

const LONG: Duration = Duration::from_secs(60);

/// Lets the lease `name` run out now: renewed with no time left, then a moment passes.
async fn expire(store: &TestStore, name: &str, holder: &str, token: i64) {
    let leases = store.log.leases();
    assert!(leases
        .renew(name, holder, token, Duration::ZERO)
        .await
        .expect("renew"));
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Takes a lease that must be free (or expired): its token.
async fn take(leases: &Leases, name: &str, holder: &str) -> i64 {
    leases
        .try_acquire(name, holder, LONG)
        .await
        .expect("acquire")
        .expect("the lease is free")
}

#[tokio::test]
async fn a_lease_is_taken_only_once_expired_and_a_stale_token_is_fenced() {
    for kind in StoreKind::ALL {
        let store = TestStore::new(kind).await;
        let leases = store.log.leases();
        let first = take(&leases, "w", "a").await;
        assert_eq!(
            leases.try_acquire("w", "b", LONG).await.expect("acquire"),
            None,
            "{kind:?}: a running lease is not taken"
        );
        assert!(leases.renew("w", "a", first, LONG).await.expect("renew"));
        assert!(
            !leases.renew("w", "b", first, LONG).await.expect("renew"),
            "only the holder renews"
        );

        expire(&store, "w", "a", first).await;
        let second = take(&leases, "w", "b").await;
        assert!(second > first, "{kind:?}: every take raises the token");
        assert!(
            !leases.renew("w", "a", first, LONG).await.expect("renew"),
            "{kind:?}: the former holder cannot renew"
        );

        let pool = store.log.platform().pool();
        let mut tx = pool.begin().await.expect("begin");
        let stale = fence(&mut tx, "w", first).await;
        assert!(
            matches!(stale, Err(EventLogError::Fenced { token, .. }) if token == first),
            "{kind:?}: {stale:?}"
        );
        drop(tx);
        let mut tx = pool.begin().await.expect("begin");
        fence(&mut tx, "w", second)
            .await
            .expect("the current token passes");
        tx.commit().await.expect("commit");

        let rows = leases.list().await.expect("list");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].holder.as_str(), rows[0].live), ("b", true));

        // A clean stop gives the lease up at once, and the token still only grows.
        leases.release("w", second).await.expect("release");
        assert!(!leases.list().await.expect("list")[0].live);
        let third = take(&leases, "w", "a").await;
        assert!(third > second);
    }
}

#[tokio::test]
async fn a_take_waits_for_a_fenced_transaction_in_progress() {
    for kind in StoreKind::ALL {
        let store = TestStore::new(kind).await;
        let leases = store.log.leases();
        let first = take(&leases, "w", "a").await;
        expire(&store, "w", "a", first).await;
        // Expired but not taken yet: a fenced transaction of the holder still passes …
        let mut tx = store.log.platform().pool().begin().await.expect("begin");
        fence(&mut tx, "w", first)
            .await
            .expect("nobody took it yet");
        let taking = {
            let leases = leases.clone();
            tokio::spawn(async move { leases.try_acquire("w", "b", LONG).await })
        };
        // … and the take cannot happen before it ends: whatever it writes lands before the
        // next holder starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !taking.is_finished(),
            "{kind:?}: the lease was taken under a fenced transaction"
        );
        tx.commit().await.expect("commit");
        let second = taking
            .await
            .expect("task")
            .expect("acquire")
            .expect("taken once the transaction ended");
        assert!(second > first);
    }
}

#[tokio::test]
async fn a_projector_batch_under_a_lost_lease_writes_nothing() {
    for kind in StoreKind::ALL {
        let store = TestStore::new(kind).await;
        let commands = Commands::new(
            store.log.clone(),
            Arc::new(ManualClock::at(samples::time("2026-11-23T12:00:00+08:00"))),
        );
        for _ in 0..5 {
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
        let projector = Projector::new(store.log.clone(), Projection::Documents)
            .await
            .expect("projector");
        let leases = store.log.leases();
        let old = take(&leases, "projectors", "a").await;
        expire(&store, "projectors", "a", old).await;
        let new = take(&leases, "projectors", "b").await;

        let mut feed = StoreFeed::new(store.log.clone(), Cursor::START);
        let items = feed
            .next(100, Duration::from_secs(5))
            .await
            .expect("a batch");
        assert_eq!(items.len(), 5, "{kind:?}");
        let before = projector.status().await.expect("status");
        let refused = projector
            .commit_fenced(&items, Some(("projectors", old)))
            .await;
        assert!(
            matches!(
                refused,
                Err(ProjectionError::Store(EventLogError::Fenced { .. }))
            ),
            "{kind:?}: {refused:?}"
        );
        assert_eq!(
            projector.status().await.expect("status").cursor,
            before.cursor,
            "{kind:?}: the cursor did not move"
        );
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM view_documents")
            .fetch_one(store.log.platform().pool())
            .await
            .expect("count");
        assert_eq!(rows, 0, "{kind:?}: no view row was written");

        let applied = projector
            .commit_fenced(&items, Some(("projectors", new)))
            .await
            .expect("the holder's batch is applied");
        assert_eq!(applied, 5);
        assert!(projector.status().await.expect("status").cursor > before.cursor);
    }
}
