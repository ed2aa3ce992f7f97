//! Versioned migrations on a real server: round trips, checksum drift, failures that
//! leave nothing applied and the lock free, concurrent runners, the no-transaction
//! marker and the embedded folder (`tests/migrations`). Each test migrates a schema of
//! its own, so the migrations table and the lock key are its own too.

mod common;

use std::time::Duration;

use common::{count_queries, test_db, TestDb};
use matrx_orm::migrate::{
    lock_key, Direction, MigrateError, Migration, Migrations, Migrator, State, DEFAULT_TABLE,
};
use matrx_orm::{Db, Error};

static EMBEDDED: Migrations = matrx_orm::embed_migrations!("migrations");

fn migrations(list: &[(i64, &str, &str, Option<&str>)]) -> Migrations {
    Migrations::new(
        list.iter()
            .map(|(v, name, up, down)| Migration {
                version: *v,
                name: (*name).to_owned().into(),
                up: (*up).to_owned().into(),
                down: down.map(|d| d.to_owned().into()),
            })
            .collect(),
    )
    .expect("distinct versions")
}

async fn tables(db: &Db) -> Vec<String> {
    db.query_sql(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1",
        &[],
    )
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn recorded(db: &Db) -> Vec<i64> {
    db.query_sql(
        &format!("SELECT version FROM {DEFAULT_TABLE} ORDER BY version"),
        &[],
    )
    .await
    .expect("migrations table")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// How many sessions hold the migration lock of the test's schema.
async fn lock_holders(t: &TestDb) -> i64 {
    let key = lock_key(t.schema.name(), DEFAULT_TABLE);
    let rows = t
        .query_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid",
            &[&key],
        )
        .await
        .expect("pg_locks");
    rows[0].get(0)
}

async fn indexes(db: &Db) -> Vec<String> {
    db.query_sql(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
         AND indexname LIKE 'entries_%' ORDER BY 1",
        &[],
    )
    .await
    .expect("indexes")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn embedded_folder_applies_reverts_and_redoes() {
    let t = test_db("mig_embedded").await;
    let versions: Vec<i64> = EMBEDDED.iter().map(|m| m.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert!(!EMBEDDED.get(3).expect("v3").up_in_transaction());

    // Statements: current_schema, lock, CREATE TABLE IF NOT EXISTS, read the table,
    // unlock (5); per transactional migration BEGIN, its script, INSERT, COMMIT,
    // RESET ALL (5 x 2); the no-transaction one sends its 2 statements one by one,
    // then INSERT and RESET ALL (4).
    let (ran, statements) = count_queries(&t, t.migrate(&EMBEDDED)).await;
    let ran = ran.expect("migrate");
    assert_eq!(statements, 5 + 5 * 2 + 4);
    assert_eq!(ran.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(ran.iter().all(|r| r.direction == Direction::Up));
    assert_eq!(tables(&t).await, ["accounts", "entries", DEFAULT_TABLE]);
    assert_eq!(
        indexes(&t).await,
        ["entries_account_idx", "entries_amount_idx", "entries_pkey"]
    );
    let owner: String = t
        .query_sql("SELECT owner FROM accounts", &[])
        .await
        .expect("row")[0]
        .get(0);
    assert_eq!(owner, "first; with a semicolon");

    // Recorded with checksum, time and duration.
    let rows = t
        .query_sql(
            &format!("SELECT name, checksum, applied_at <= now(), execution_ms >= 0 FROM {DEFAULT_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .expect("table");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<_, String>(0), "create_accounts");
    assert_eq!(
        rows[0].get::<_, String>(1),
        EMBEDDED.get(1).expect("v1").checksum()
    );
    assert!(rows
        .iter()
        .all(|r| r.get::<_, bool>(2) && r.get::<_, bool>(3)));

    // Nothing left to do: the five statements of an empty run.
    let (again, statements) = count_queries(&t, t.migrate(&EMBEDDED)).await;
    assert!(again.expect("again").is_empty());
    assert_eq!(statements, 5);
    let status = Migrator::new(&EMBEDDED).status(&t).await.expect("status");
    assert!(status
        .iter()
        .all(|s| s.state == State::Applied && s.applied_at.is_some()));

    // Down two: the no-transaction down.sql of 3, then 2.
    let migrator = Migrator::new(&EMBEDDED);
    let down = migrator.down(&t, 2).await.expect("down");
    assert_eq!(
        down.iter()
            .map(|r| (r.version, r.direction))
            .collect::<Vec<_>>(),
        [(3, Direction::Down), (2, Direction::Down)]
    );
    assert_eq!(tables(&t).await, ["accounts", DEFAULT_TABLE]);
    assert_eq!(recorded(&t).await, [1]);
    let status = migrator.status(&t).await.expect("status");
    assert_eq!(
        status.iter().map(|s| s.state.clone()).collect::<Vec<_>>(),
        [State::Applied, State::Pending, State::Pending]
    );

    // Up to 2 only, then redo 2, then the rest.
    assert_eq!(migrator.up_to(&t, 2).await.expect("up to").len(), 1);
    let redo = migrator.redo(&t).await.expect("redo");
    assert_eq!(
        redo.iter()
            .map(|r| (r.version, r.direction))
            .collect::<Vec<_>>(),
        [(2, Direction::Down), (2, Direction::Up)]
    );
    assert_eq!(migrator.up(&t).await.expect("rest").len(), 1);
    assert_eq!(recorded(&t).await, [1, 2, 3]);

    // All the way down: only the migrations table is left.
    assert_eq!(migrator.down(&t, 10).await.expect("all down").len(), 3);
    assert_eq!(tables(&t).await, [DEFAULT_TABLE]);
    assert!(recorded(&t).await.is_empty());
    assert_eq!(lock_holders(&t).await, 0);
}

#[tokio::test]
async fn a_changed_applied_file_is_an_error_naming_it() {
    let t = test_db("mig_checksum").await;
    let first = migrations(&[
        (
            1,
            "create_notes",
            "CREATE TABLE notes (id int)",
            Some("DROP TABLE notes"),
        ),
        (
            2,
            "add_body",
            "ALTER TABLE notes ADD COLUMN body text",
            None,
        ),
    ]);
    t.migrate(&first).await.expect("first run");
    let edited = migrations(&[
        (
            1,
            "create_notes",
            "CREATE TABLE notes (id bigint)",
            Some("DROP TABLE notes"),
        ),
        (
            2,
            "add_body",
            "ALTER TABLE notes ADD COLUMN body text",
            None,
        ),
        (
            3,
            "add_title",
            "ALTER TABLE notes ADD COLUMN title text",
            None,
        ),
    ]);
    let err = t.migrate(&edited).await.expect_err("drift must be refused");
    match &err {
        MigrateError::Changed {
            version,
            name,
            applied,
            current,
        } => {
            assert_eq!((*version, name.as_str()), (1, "create_notes"));
            assert_ne!(applied, current);
        }
        other => panic!("expected Changed, got {other:?}"),
    }
    assert!(err.to_string().contains("create_notes"), "{err}");
    // Refused before anything ran: 3 is not applied, and the lock is free.
    assert_eq!(recorded(&t).await, [1, 2]);
    assert_eq!(lock_holders(&t).await, 0);
    let status = Migrator::new(&edited).status(&t).await.expect("status");
    assert_eq!(
        status.iter().map(|s| s.state.clone()).collect::<Vec<_>>(),
        [State::Changed, State::Applied, State::Pending]
    );

    // Down refuses too; a migration without down.sql is irreversible; a recorded
    // migration the list lacks is missing.
    assert!(matches!(
        Migrator::new(&edited).down(&t, 1).await,
        Err(MigrateError::Changed { version: 1, .. })
    ));
    assert!(matches!(
        Migrator::new(&first).down(&t, 1).await,
        Err(MigrateError::Irreversible { version: 2, .. })
    ));
    let only_first = migrations(&[(
        1,
        "create_notes",
        "CREATE TABLE notes (id int)",
        Some("DROP TABLE notes"),
    )]);
    let status = Migrator::new(&only_first).status(&t).await.expect("status");
    assert_eq!(status[1].state, State::Missing);
    assert!(matches!(
        Migrator::new(&only_first).down(&t, 1).await,
        Err(MigrateError::Missing { version: 2, .. })
    ));
    assert_eq!(lock_holders(&t).await, 0);
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_applied_and_the_lock_free() {
    let t = test_db("mig_failing").await;
    let list = migrations(&[
        (1, "ok", "CREATE TABLE kept (id int)", None),
        (
            2,
            "fails",
            "CREATE TABLE lost (id int); INSERT INTO lost VALUES (1); SELECT 1 / 0",
            None,
        ),
        (3, "after", "CREATE TABLE never (id int)", None),
    ]);
    let err = t.migrate(&list).await.expect_err("division by zero");
    match &err {
        MigrateError::Failed {
            version: 2,
            name,
            statement: None,
            source,
        } => {
            assert_eq!(name, "fails");
            assert!(
                matches!(&**source, Error::Database { code, .. } if code == "22012"),
                "{source:?}"
            );
        }
        other => panic!("expected Failed for 2, got {other:?}"),
    }
    assert_eq!(tables(&t).await, ["kept", DEFAULT_TABLE]);
    assert_eq!(recorded(&t).await, [1]);
    assert_eq!(lock_holders(&t).await, 0);

    // The lock really is free: another pool's run gets it at once.
    let other = Db::builder(t.schema.url())
        .search_path(t.schema.name())
        .connect()
        .await
        .expect("db");
    let retry = tokio::time::timeout(Duration::from_secs(10), other.migrate(&list))
        .await
        .expect("not blocked");
    assert!(matches!(
        retry,
        Err(MigrateError::Failed { version: 2, .. })
    ));

    // A no-transaction file keeps the statements before the failing one, and is not recorded.
    let list = migrations(&[
        (1, "ok", "CREATE TABLE kept (id int)", None),
        (2, "partial", "-- matrx-orm: no-transaction\nCREATE TABLE half (id int);\nSELECT 1 / 0;\nCREATE TABLE other_half (id int);", None),
    ]);
    let err = t.migrate(&list).await.expect_err("division by zero");
    assert!(
        matches!(
            err,
            MigrateError::Failed {
                version: 2,
                statement: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(tables(&t).await, ["half", "kept", DEFAULT_TABLE]);
    assert_eq!(recorded(&t).await, [1]);
    assert_eq!(lock_holders(&t).await, 0);
}

#[tokio::test]
async fn the_no_transaction_marker_lets_concurrent_index_builds_run() {
    let t = test_db("mig_notx").await;
    let base = (1, "create", "CREATE TABLE items (id int, sku text)", None);
    // Without the marker, the server refuses: it runs in a transaction.
    let plain = migrations(&[
        base,
        (
            2,
            "index",
            "CREATE INDEX CONCURRENTLY items_sku ON items (sku)",
            None,
        ),
    ]);
    let err = t
        .migrate(&plain)
        .await
        .expect_err("refused in a transaction");
    assert!(
        matches!(&err, MigrateError::Failed { version: 2, source, .. }
            if matches!(&**source, Error::Database { code, .. } if code == "25001")),
        "{err:?}"
    );
    assert_eq!(recorded(&t).await, [1]);

    let marked = migrations(&[
        base,
        (2, "index", "-- matrx-orm: no-transaction\nCREATE INDEX CONCURRENTLY items_sku ON items (sku);\nCREATE UNIQUE INDEX CONCURRENTLY items_id ON items (id)", None),
    ]);
    assert_eq!(t.migrate(&marked).await.expect("marked").len(), 1);
    let n: i64 = t
        .query_sql("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname IN ('items_sku', 'items_id')", &[])
        .await
        .expect("indexes")[0]
        .get(0);
    assert_eq!(n, 2);
    assert_eq!(recorded(&t).await, [1, 2]);
}

#[tokio::test]
async fn session_settings_of_a_migration_stay_out_of_the_pool() {
    let t = test_db("mig_settings").await;
    // One connection, so the run's connection is the one the next query gets. The
    // settings of 1 reach neither 2 (which would create its table in pg_catalog) nor
    // the application.
    let db = Db::builder(t.schema.url())
        .search_path(t.schema.name())
        .pool_size(1)
        .connect()
        .await
        .expect("db");
    let list = migrations(&[
        (1, "settings", "-- matrx-orm: no-transaction\nSET search_path TO pg_catalog;\nSET application_name = 'leaked'", None),
        (2, "in_tx", "SET statement_timeout = '5min'; CREATE TABLE IF NOT EXISTS after (id int)", None),
    ]);
    assert_eq!(db.migrate(&list).await.expect("migrate").len(), 2);
    let row = &db
        .query_sql("SELECT current_schema()::text, current_setting('application_name'), current_setting('statement_timeout')", &[])
        .await
        .expect("settings")[0];
    assert_eq!(row.get::<_, String>(0), t.schema.name());
    assert_ne!(row.get::<_, String>(1), "leaked");
    assert_eq!(row.get::<_, String>(2), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runners_apply_each_migration_once() {
    let t = test_db("mig_concurrent").await;
    let list = migrations(&[
        (
            1,
            "create",
            "CREATE TABLE hits (version int NOT NULL)",
            None,
        ),
        (
            2,
            "slow",
            "SELECT pg_sleep(0.2); INSERT INTO hits VALUES (2)",
            None,
        ),
        (3, "third", "INSERT INTO hits VALUES (3)", None),
    ]);
    let list = std::sync::Arc::new(list);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        // A pool each: as if six instances of an application started at once.
        let db = Db::builder(t.schema.url())
            .search_path(t.schema.name())
            .pool_size(2)
            .connect()
            .await
            .expect("db");
        let list = list.clone();
        tasks.push(tokio::spawn(async move { db.migrate(&list).await }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        let ran = task.await.expect("task").expect("every runner succeeds");
        applied.extend(ran.into_iter().map(|r| r.version));
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3],
        "each migration applied by exactly one runner"
    );
    let hits: Vec<i32> = t
        .query_sql("SELECT version FROM hits ORDER BY 1", &[])
        .await
        .expect("hits")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hits, [2, 3]);
    assert_eq!(recorded(&t).await, [1, 2, 3]);
    assert_eq!(lock_holders(&t).await, 0);
}

#[tokio::test]
async fn a_cancelled_run_does_not_keep_the_lock() {
    let t = test_db("mig_cancel").await;
    let list = std::sync::Arc::new(migrations(&[(
        1,
        "slow",
        "CREATE TABLE slow (id int); SELECT pg_sleep(60)",
        None,
    )]));
    let db = t.db.clone();
    let run = {
        let list = list.clone();
        tokio::spawn(async move { db.migrate(&list).await })
    };
    // Wait until the run holds the lock and sleeps inside its transaction.
    let mut holders = 0;
    for _ in 0..100 {
        holders = lock_holders(&t).await;
        if holders == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holders, 1, "the run holds the lock");
    run.abort();
    assert!(run.await.is_err_and(|e| e.is_cancelled()));
    // Dropped: its statement is cancelled and its connection closed, so the server
    // rolls back and releases the lock long before the 60 s sleep would end.
    let started = std::time::Instant::now();
    while lock_holders(&t).await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lock still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!tables(&t).await.contains(&"slow".to_owned()));
    let fast = migrations(&[(1, "slow", "CREATE TABLE slow (id int)", None)]);
    assert_eq!(t.migrate(&fast).await.expect("runs after").len(), 1);
    assert_eq!(recorded(&t).await, [1]);
}

#[tokio::test]
async fn a_folder_read_at_run_time_matches_the_embedded_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let read = Migrations::from_dir(&dir).expect("read");
    assert_eq!(
        read.iter().collect::<Vec<_>>(),
        EMBEDDED.iter().collect::<Vec<_>>()
    );

    let scratch = std::env::temp_dir().join(format!("matrx_mig_bad_{}", std::process::id()));
    std::fs::create_dir_all(scratch.join("first_try")).expect("mkdir");
    let err = Migrations::from_dir(&scratch).expect_err("not <version>_<name>");
    assert!(matches!(err, MigrateError::BadFolder { .. }), "{err:?}");
    std::fs::remove_dir_all(&scratch).expect("cleanup");
}
