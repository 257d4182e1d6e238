//! Issue 16 item 5: a backup taken while reports arrive restores into an empty store, verifies
//! (every hash, every checkpoint, and the newest checkpoint from before the copy began) before
//! it is used, and opens with the master key kept apart from it; an altered backup is refused.

use std::time::Instant;

use custody_api::backup::{backup, checkpoint_public_key, restore, BackupError};
use custody_api::StoreChoice;
use custody_simulator::generate::document_id;
use custody_simulator::DepositKind;
use custody_tests::{postgres, StoreKind, TestApp};

use crate::exit_entry::{record, send_ok};

#[tokio::test]
async fn a_backup_under_load_restores_verifies_and_opens_with_the_master_key_kept_apart() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let first = record();
        send_ok(
            &app,
            cabinet.deposit(&first, &cabinet.drawer(0), DepositKind::New, app.now_ms()),
            "deposit",
        )
        .await;
        app.state.checkpointer.seal().await.expect("a checkpoint");

        // Reports keep arriving while the backup is taken.
        let requests: Vec<_> = (1..=40)
            .map(|i| {
                cabinet
                    .deposit(
                        &record(),
                        &cabinet.drawer(i % 8),
                        DepositKind::New,
                        app.now_ms(),
                    )
                    .expect("deposit")
            })
            .collect();
        let (client, base) = (app.client.clone(), format!("http://{}", app.address));
        let load = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for request in requests {
                let (status, answer) = custody_simulator::post(&client, &base, &request)
                    .await
                    .expect("post");
                assert_eq!(status, 200, "{answer}");
                acknowledged.push(Instant::now());
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            acknowledged
        });
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        let events_before = app.store.log.count().await.expect("count");
        let out_dir = tempfile::tempdir().expect("backup dir");
        let out = out_dir.path().join("backup");
        let key = checkpoint_public_key(app.store.data_dir.path()).expect("key");
        assert!(key.is_some(), "the service made its checkpoint key");
        let manifest = backup(&app.store.log, &app.store.choice, key.as_deref(), &out)
            .await
            .expect("backup");
        let acknowledged = load.await.expect("load");
        assert_eq!(acknowledged.len(), 40);
        let events_after = app.store.log.count().await.expect("count");
        assert!(manifest.checkpoint.is_some(), "{manifest:?}");

        // An altered backup is refused before anything is restored.
        let altered_dir = tempfile::tempdir().expect("altered");
        let altered = altered_dir.path().join("backup");
        copy_dir(&out, &altered);
        let copy = manifest.files[0].name.clone();
        let mut bytes = std::fs::read(altered.join(&copy)).expect("read copy");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(altered.join(&copy), bytes).expect("alter");

        let (target, data_dir) = match kind {
            StoreKind::Embedded => (StoreChoice::Embedded, tempfile::tempdir().expect("dir")),
            StoreKind::Postgres => (
                StoreChoice::Postgres {
                    url: postgres().fresh_database().await,
                },
                tempfile::tempdir().expect("dir"),
            ),
        };
        let refused = restore(&altered, &target, data_dir.path(), None).await;
        assert!(
            matches!(&refused, Err(BackupError::Refused(m)) if m.contains("SM3")),
            "{kind:?}: {refused:?}"
        );

        // The backup as taken: restored, verified, put in place.
        let restored = restore(&out, &target, data_dir.path(), None)
            .await
            .expect("restore");
        assert!(
            restored.verdict.verified,
            "{kind:?}: {:?}",
            restored.verdict
        );
        assert!(
            restored.events >= events_before && restored.events <= events_after,
            "{kind:?}: restored {} events, {events_before} before and {events_after} after",
            restored.events
        );
        assert_eq!(
            restored.key_from,
            "the backup's own copy of the checkpoint key"
        );

        // A second restore into the same place is refused: it holds a store now.
        assert!(matches!(
            restore(&out, &target, data_dir.path(), None).await,
            Err(BackupError::Refused(_))
        ));

        // With the master key, which the backup does not hold, the personal data opens.
        assert!(!out.join("master.key").exists());
        let restored_log = match &target {
            StoreChoice::Embedded => custody_eventlog::EventLog::open_embedded(data_dir.path())
                .await
                .expect("open the restored store"),
            StoreChoice::Postgres { url } => custody_eventlog::EventLog::connect_postgres(url, 2)
                .await
                .expect("connect to the restored store"),
        };
        let zjbs = document_id(&first).expect("zjbs");
        assert!(
            restored_log
                .opened_events_of("Document", &zjbs)
                .await
                .is_err(),
            "{kind:?}: sealed fields need the master key"
        );
        let master = custody_vault::MasterKeyFile::load_or_generate(
            &app.store.data_dir.path().join("master.key"),
        )
        .expect("the service's master key");
        let restored_log = restored_log.with_personal_data(std::sync::Arc::new(master));
        let events = restored_log
            .opened_events_of("Document", &zjbs)
            .await
            .expect("opened with the master key");
        assert_eq!(
            events[0].payload["Deposited"]["record"]["citizen_id"],
            first.citizen_id_number.as_str()
        );
        app.stop().await;
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}
