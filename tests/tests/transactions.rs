//! Transactions on `Db`, `Session` and `Transaction`: commit, rollback, savepoints,
//! the closure form, drops (uncommitted, cancelled, outside a runtime), and counting.

mod common;
mod fixtures;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::count_queries;
use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::Error;

async fn backend_pid<E: Executor>(ex: &E) -> i32 {
    ex.query("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0)
}

/// The `pg_stat_activity` state of backend `pid` (`None` once it has gone).
async fn backend_state(db: &Db, pid: i32) -> Option<String> {
    let rows = db
        .query_sql("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap();
    rows.first().and_then(|r| r.get::<_, Option<String>>(0))
}

async fn emails(db: &Db) -> Vec<String> {
    let mut out: Vec<String> = Customer::query()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.email)
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn db_begin_commit_and_rollback() {
    let db = shop_db("tx_db_basic").await;
    let tx = db.begin().await.unwrap();
    customer("A", "a@x").insert(&tx).await.unwrap();
    assert_eq!(count_rows(&tx, "customers").await, 1, "visible inside");
    assert_eq!(
        count_rows(&*db, "customers").await,
        0,
        "invisible outside before commit"
    );
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x"]);

    let tx = db.begin().await.unwrap();
    customer("B", "b@x").insert(&tx).await.unwrap();
    Customer::query()
        .filter(Customer::EMAIL.eq("a@x"))
        .update()
        .set(Customer::NAME, "changed")
        .exec(&tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x"]);
    assert_eq!(Customer::query().one(&*db).await.unwrap().name, "A");

    // Statements: BEGIN, INSERT, COMMIT.
    let ((), n) = count_queries(&db, async {
        let tx = db.begin().await.unwrap();
        customer("C", "c@x").insert(&tx).await.unwrap();
        tx.commit().await.unwrap();
    })
    .await;
    assert_eq!(n, 3);
}

#[tokio::test]
async fn session_begin_commit_rollback_and_counts() {
    let db = shop_db("tx_session").await;
    let session = db.session();
    let tx = session.begin().await.unwrap();
    customer("A", "a@x").insert(&tx).await.unwrap();
    tx.commit().await.unwrap();
    let tx = session.begin().await.unwrap();
    customer("B", "b@x").insert(&tx).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x"]);

    let session = db.session();
    let db_before = db.query_count();
    Customer::query().count(&session).await.unwrap();
    Customer::get_or_none(&session, &1).await.unwrap();
    let tx = session.begin().await.unwrap();
    Customer::query().all(&tx).await.unwrap();
    tx.commit().await.unwrap();
    session.execute_sql("SELECT 1", &[]).await.unwrap();
    assert_eq!(
        session.query_count(),
        6,
        "count, get, BEGIN, select, COMMIT, raw"
    );
    assert_eq!(
        db.query_count() - db_before,
        6,
        "the Db counts its sessions' statements too"
    );
    // Another session, and the Db itself, do not bump this session's counter.
    let other = db.session();
    Customer::query().count(&other).await.unwrap();
    Customer::query().count(&*db).await.unwrap();
    assert_eq!(session.query_count(), 6);
    assert_eq!(other.query_count(), 1);
    // A clone shares the counter.
    let clone = session.clone();
    Customer::query().count(&clone).await.unwrap();
    assert_eq!(session.query_count(), 7);
}

#[tokio::test]
async fn nested_savepoints_roll_back_alone() {
    let db = shop_db("tx_savepoints").await;
    let mut tx = db.begin().await.unwrap();
    customer("A", "a@x").insert(&tx).await.unwrap();
    {
        let mut sp1 = tx.savepoint().await.unwrap();
        customer("B", "b@x").insert(&sp1).await.unwrap();
        {
            let sp2 = sp1.savepoint().await.unwrap();
            customer("C", "c@x").insert(&sp2).await.unwrap();
            assert_eq!(count_rows(&sp2, "customers").await, 3);
            sp2.rollback().await.unwrap();
        }
        assert_eq!(count_rows(&sp1, "customers").await, 2, "C undone, B kept");
        {
            let sp3 = sp1.savepoint().await.unwrap();
            customer("D", "d@x").insert(&sp3).await.unwrap();
            sp3.commit().await.unwrap();
        }
        sp1.rollback().await.unwrap(); // undoes B and the released D
    }
    assert_eq!(count_rows(&tx, "customers").await, 1);
    {
        let sp4 = tx.savepoint().await.unwrap();
        customer("E", "e@x").insert(&sp4).await.unwrap();
        sp4.commit().await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x", "e@x"]);

    // A failed statement in a savepoint leaves the outer transaction usable once the
    // savepoint is rolled back.
    let mut tx = db.begin().await.unwrap();
    customer("F", "f@x").insert(&tx).await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        let dup = customer("dup", "a@x").insert(&sp).await;
        assert!(matches!(dup, Err(Error::UniqueViolation { .. })), "{dup:?}");
        sp.rollback().await.unwrap();
    }
    customer("G", "g@x").insert(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x", "e@x", "f@x", "g@x"]);
}

#[tokio::test]
async fn a_failed_statement_aborts_the_transaction_until_rollback() {
    let db = shop_db("tx_aborted").await;
    customer("A", "a@x").insert(&*db).await.unwrap();
    let tx = db.begin().await.unwrap();
    customer("B", "b@x").insert(&tx).await.unwrap();
    assert!(matches!(
        customer("dup", "a@x").insert(&tx).await,
        Err(Error::UniqueViolation { .. })
    ));
    let next = Customer::query().count(&tx).await.unwrap_err();
    assert_eq!(
        next.sqlstate(),
        Some("25P02"),
        "in failed transaction: {next}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x"]);
    // The pool is healthy afterwards.
    for _ in 0..10 {
        assert_eq!(Customer::query().count(&*db).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn closure_form_commits_on_ok_and_rolls_back_on_err() {
    let db = shop_db("tx_closure").await;
    let id = db
        .transaction(async |tx| {
            let c = customer("A", "a@x").insert(&*tx).await?;
            Ok::<_, Error>(c.id)
        })
        .await
        .unwrap();
    assert_eq!(Customer::get(&*db, &id).await.unwrap().email, "a@x");

    let failed: Result<(), Error> = db
        .transaction(async |tx| {
            customer("B", "b@x").insert(&*tx).await?;
            Err(Error::InvalidInput("changed my mind".into()))
        })
        .await;
    assert!(matches!(failed, Err(Error::InvalidInput(ref m)) if m == "changed my mind"));
    assert_eq!(emails(&db).await, ["a@x"]);

    // A database error propagated with `?` rolls back the earlier work.
    let failed = db
        .transaction(async |tx| {
            customer("C", "c@x").insert(&*tx).await?;
            customer("dup", "a@x").insert(&*tx).await?;
            Ok::<_, Error>(())
        })
        .await;
    assert!(
        matches!(failed, Err(Error::UniqueViolation { .. })),
        "{failed:?}"
    );
    assert_eq!(emails(&db).await, ["a@x"]);

    // The caller's own error type.
    #[derive(Debug)]
    enum AppError {
        Orm(#[allow(dead_code)] Error),
        Rule(&'static str),
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> Self {
            AppError::Orm(e)
        }
    }
    let failed = db
        .transaction(async |tx| {
            customer("D", "d@x").insert(&*tx).await?;
            Err::<(), _>(AppError::Rule("no D"))
        })
        .await;
    assert!(matches!(failed, Err(AppError::Rule("no D"))));
    assert_eq!(emails(&db).await, ["a@x"]);

    // Nested: an inner Err rolls back only the savepoint.
    db.transaction(async |tx| {
        customer("E", "e@x").insert(&*tx).await?;
        let inner: Result<(), Error> = tx
            .transaction(async |sp| {
                customer("F", "f@x").insert(&*sp).await?;
                Err(Error::InvalidInput("inner".into()))
            })
            .await;
        assert!(inner.is_err());
        tx.transaction(async |sp| {
            customer("G", "g@x").insert(&*sp).await?;
            Ok::<_, Error>(())
        })
        .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(emails(&db).await, ["a@x", "e@x", "g@x"]);

    // The Session form, counted on the session.
    let session = db.session();
    session
        .transaction(async |tx| {
            customer("H", "h@x").insert(&*tx).await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    assert_eq!(session.query_count(), 3, "BEGIN, INSERT, COMMIT");
    let failed = session
        .transaction(async |tx| {
            customer("I", "i@x").insert(&*tx).await?;
            Err::<(), _>(Error::InvalidInput("no".into()))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(emails(&db).await, ["a@x", "e@x", "g@x", "h@x"]);
}

#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_and_its_connection_reused() {
    let tdb = shop_db("tx_dropped").await;
    let small = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let tx = small.begin().await.unwrap();
    let pid = backend_pid(&tx).await;
    customer("A", "a@x").insert(&tx).await.unwrap();
    assert_eq!(
        backend_state(&tdb, pid).await.as_deref(),
        Some("idle in transaction")
    );
    drop(tx);
    let rolled_back = eventually(Duration::from_secs(5), || async {
        backend_state(&tdb, pid).await.as_deref() == Some("idle")
    })
    .await;
    assert!(rolled_back, "state is {:?}", backend_state(&tdb, pid).await);
    assert_eq!(count_rows(&*tdb, "customers").await, 0);

    // The same connection serves the next statement, outside any transaction.
    assert_eq!(backend_pid(&small).await, pid);
    customer("B", "b@x").insert(&small).await.unwrap();
    assert_eq!(
        emails(&tdb).await,
        ["b@x"],
        "autocommitted, visible to other connections"
    );
}

#[tokio::test]
async fn a_pool_of_one_waits_for_the_dropped_transaction_rollback() {
    let tdb = shop_db("tx_dropped_immediate").await;
    let small = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let tx = small.begin().await.unwrap();
    customer("A", "a@x").insert(&tx).await.unwrap();
    drop(tx);
    // No wait: the next statement must not run inside the abandoned transaction.
    customer("B", "b@x").insert(&small).await.unwrap();
    assert_eq!(emails(&tdb).await, ["b@x"]);
    assert_eq!(emails(&small).await, ["b@x"]);
}

#[tokio::test]
async fn a_transaction_dropped_outside_a_runtime_closes_its_connection() {
    let tdb = shop_db("tx_dropped_thread").await;
    let small = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let tx = small.begin().await.unwrap();
    let pid = backend_pid(&tx).await;
    customer("A", "a@x").insert(&tx).await.unwrap();
    std::thread::spawn(move || drop(tx)).join().unwrap();
    let gone = eventually(Duration::from_secs(5), || async {
        backend_state(&tdb, pid).await.is_none()
    })
    .await;
    assert!(gone, "the connection is closed, so the server rolls back");
    assert_eq!(count_rows(&*tdb, "customers").await, 0);
    customer("B", "b@x").insert(&small).await.unwrap();
    assert_ne!(backend_pid(&small).await, pid, "a new connection");
    assert_eq!(emails(&tdb).await, ["b@x"]);
}

#[tokio::test]
async fn a_cancelled_closure_transaction_is_rolled_back() {
    let tdb = shop_db("tx_cancelled").await;
    let small = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let inserted = Arc::new(AtomicBool::new(false));
    let flag = inserted.clone();
    let run = small.transaction(async move |tx| {
        customer("A", "a@x").insert(&*tx).await?;
        flag.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Error>(())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), run)
            .await
            .is_err(),
        "cancelled"
    );
    assert!(inserted.load(Ordering::SeqCst));
    customer("B", "b@x").insert(&small).await.unwrap();
    assert_eq!(emails(&tdb).await, ["b@x"]);
}

#[tokio::test]
async fn a_dropped_savepoint_is_rolled_back_before_the_next_statement() {
    let db = shop_db("tx_dropped_savepoint").await;
    let mut tx = db.begin().await.unwrap();
    customer("A", "a@x").insert(&tx).await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        customer("B", "b@x").insert(&sp).await.unwrap();
        assert_eq!(count_rows(&sp, "customers").await, 2);
    }
    let (count, n) = count_queries(&db, async { count_rows(&tx, "customers").await }).await;
    assert_eq!(count, 1, "B rolled back");
    assert_eq!(n, 2, "the owed ROLLBACK TO SAVEPOINT, then the query");
    let (count, n) = count_queries(&db, async { count_rows(&tx, "customers").await }).await;
    assert_eq!((count, n), (1, 1), "owed once");

    // Dropped, then a new savepoint; dropped, then commit.
    {
        let sp = tx.savepoint().await.unwrap();
        customer("C", "c@x").insert(&sp).await.unwrap();
    }
    {
        let sp = tx.savepoint().await.unwrap();
        customer("D", "d@x").insert(&sp).await.unwrap();
        sp.commit().await.unwrap();
    }
    {
        let mut sp = tx.savepoint().await.unwrap();
        let inner = sp.savepoint().await.unwrap();
        customer("E", "e@x").insert(&inner).await.unwrap();
        drop(inner);
        customer("F", "f@x").insert(&sp).await.unwrap();
        sp.commit().await.unwrap();
    }
    {
        let sp = tx.savepoint().await.unwrap();
        customer("G", "g@x").insert(&sp).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x", "d@x", "f@x"]);

    // The closure form of a savepoint that panics is rolled back too.
    let mut tx = db.begin().await.unwrap();
    let caught = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        tx.transaction(async |sp| {
            customer("H", "h@x").insert(&*sp).await?;
            if count_rows(&*sp, "customers").await > 0 {
                panic!("boom");
            }
            Ok::<_, Error>(())
        }),
    ))
    .await;
    assert!(caught.is_err());
    customer("I", "i@x").insert(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x", "d@x", "f@x", "i@x"]);
}

#[tokio::test]
async fn statements_on_one_transaction_are_pipelined_concurrently() {
    let db = shop_db("tx_pipelined").await;
    let stored = Customer::insert_many(&*db, &customers(50)).await.unwrap();
    let tx = db.begin().await.unwrap();
    let pid = backend_pid(&tx).await;
    let (found, n) = count_queries(&db, async {
        futures_util::future::join_all(stored.iter().map(|c| Customer::get(&tx, &c.id))).await
    })
    .await;
    assert_eq!(n, 50);
    for (got, want) in found.into_iter().zip(&stored) {
        assert_eq!(&got.unwrap(), want);
    }
    let pids = futures_util::future::join_all((0..10).map(|_| backend_pid(&tx))).await;
    assert!(
        pids.iter().all(|&p| p == pid),
        "all on the transaction's connection"
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_many_row_insert_is_one_statement_and_fails_like_one() {
    let db = shop_db("tx_unnest_insert").await;
    // 4 written columns: past the parameter limit as VALUES lists, one statement here.
    let rows = customers(20_000);
    let (stored, n) = count_queries(&db, async {
        Customer::insert_many(&*db, &rows).await.unwrap()
    })
    .await;
    assert_eq!(n, 1, "one INSERT, no transaction needed");
    assert_eq!(stored.len(), 20_000);
    assert_eq!(stored[19_999].email, rows[19_999].email, "order kept");
    Customer::query().delete(&*db).await.unwrap();

    // The last row fails: nothing stays.
    let mut bad = customers(20_000);
    bad[19_999].email = bad[0].email.clone();
    let err = Customer::insert_many(&*db, &bad).await.unwrap_err();
    assert!(
        matches!(err, Error::UniqueViolation { ref constraint, .. } if constraint == "customers_email_key"),
        "{err}"
    );
    assert_eq!(count_rows(&*db, "customers").await, 0);

    // Inside a transaction it fails like any statement: the transaction is aborted...
    let tx = db.begin().await.unwrap();
    customer("lost", "lost@x").insert(&tx).await.unwrap();
    let (err, n) = count_queries(&db, Customer::insert_many(&tx, &bad)).await;
    assert!(matches!(err, Err(Error::UniqueViolation { .. })));
    assert_eq!(n, 1, "no savepoint around it");
    let aborted = tx.query_sql("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(aborted.sqlstate(), Some("25P02"), "{aborted}");
    tx.rollback().await.unwrap();
    // ...and a savepoint is how a transaction goes on after it.
    let mut tx = db.begin().await.unwrap();
    customer("kept", "kept@x").insert(&tx).await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        let err = Customer::insert_many(&sp, &bad).await.unwrap_err();
        assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
        sp.rollback().await.unwrap();
    }
    assert_eq!(count_rows(&tx, "customers").await, 1);
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["kept@x"]);
}

#[tokio::test]
async fn a_multi_statement_insert_is_atomic_on_db_and_inside_a_transaction() {
    let db = shop_db("tx_chunked_insert").await;
    // As VALUES lists, 4 written columns: 16,383 rows per statement, so 20,000 rows
    // take two.
    let rows = customers(20_000);
    let (stored, n) = count_queries(&db, async {
        Customer::insert_rows(&rows)
            .values_only()
            .exec(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(stored.len(), 20_000);
    assert_eq!(
        stored[19_999].email, rows[19_999].email,
        "order kept across statements"
    );
    assert_eq!(n, 4, "BEGIN, two INSERTs, COMMIT");
    Customer::query().delete(&*db).await.unwrap();

    // The second statement fails: nothing from the first stays.
    let mut bad = customers(20_000);
    bad[19_999].email = bad[0].email.clone();
    let err = Customer::insert_rows(&bad)
        .values_only()
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UniqueViolation { ref constraint, .. } if constraint == "customers_email_key"),
        "{err}"
    );
    assert_eq!(count_rows(&*db, "customers").await, 0);

    // Inside a transaction: a savepoint undoes only the insert.
    let tx = db.begin().await.unwrap();
    customer("kept", "kept@x").insert(&tx).await.unwrap();
    let err = Customer::insert_rows(&bad)
        .values_only()
        .exec(&tx)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    assert_eq!(
        count_rows(&tx, "customers").await,
        1,
        "the transaction goes on"
    );
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["kept@x"]);
}

/// A model with an array column cannot send its rows as arrays (`unnest` would
/// flatten an array of arrays): it takes the `VALUES` path, chunked in a transaction
/// past the parameter limit, and stays atomic.
#[tokio::test]
async fn an_insert_with_an_array_column_falls_back_and_stays_atomic() {
    #[derive(Model, Debug, Clone, PartialEq)]
    #[orm(table = "labelled")]
    pub struct Labelled {
        #[orm(primary_key, auto)]
        pub id: i64,
        #[orm(unique)]
        pub email: String,
        pub labels: Vec<String>,
        pub scores: Option<Vec<i32>>,
    }
    let labelled = |i: usize| Labelled {
        id: 0,
        email: format!("l{i}@x"),
        labels: (0..i % 4).map(|k| format!("label {k}")).collect(),
        scores: (!i.is_multiple_of(3)).then(|| vec![i as i32, -1, 0]),
    };
    let db = common::test_db("tx_array_fallback").await;
    matrx_orm::ddl::create_tables(&*db, &[Labelled::META])
        .await
        .unwrap();
    // 3 written columns: 21,845 rows per statement, so 30,000 rows take two.
    let rows: Vec<Labelled> = (0..30_000).map(labelled).collect();
    let (stored, n) = count_queries(&db, Labelled::insert_many(&*db, &rows)).await;
    let stored = stored.unwrap();
    assert_eq!(n, 4, "BEGIN, two INSERTs, COMMIT");
    assert!(stored.iter().all(|r| r.id > 0));
    let without_ids: Vec<Labelled> = stored
        .iter()
        .map(|r| Labelled { id: 0, ..r.clone() })
        .collect();
    assert_eq!(without_ids, rows, "arrays round-trip, in input order");
    assert_eq!(
        Labelled::query()
            .order_by(Labelled::ID.asc())
            .all(&*db)
            .await
            .unwrap(),
        stored
    );
    Labelled::query().delete(&*db).await.unwrap();

    // The last row conflicts, in the second statement: nothing stays.
    let mut bad = rows.clone();
    bad[29_999].email = bad[0].email.clone();
    let err = Labelled::insert_many(&*db, &bad).await.unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    assert_eq!(count_rows(&*db, "labelled").await, 0);
    // A NUL byte inside an array element, in the second statement: nothing stays.
    let mut nul = rows.clone();
    nul[29_999].labels = vec!["ok".into(), "b\0d".into()];
    let err = Labelled::insert_many(&*db, &nul).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(count_rows(&*db, "labelled").await, 0);

    // Inside a transaction: a savepoint undoes only the insert.
    let tx = db.begin().await.unwrap();
    labelled(99_999).insert(&tx).await.unwrap();
    let err = Labelled::insert_many(&tx, &bad).await.unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    assert_eq!(
        count_rows(&tx, "labelled").await,
        1,
        "the transaction goes on"
    );
    tx.commit().await.unwrap();
    assert_eq!(count_rows(&*db, "labelled").await, 1);
}

/// Statements on one transaction may run concurrently (they are pipelined), so two
/// multi-statement inserts (`VALUES` lists past the parameter limit) issued together
/// on it must each stay atomic and succeed.
#[tokio::test]
async fn concurrent_multi_statement_inserts_on_one_transaction() {
    let db = shop_db("tx_concurrent_atomic").await;
    let first: Vec<Customer> = customers(20_000);
    let second: Vec<Customer> = (0..20_000)
        .map(|i| customer(&format!("d{i}"), &format!("d{i}@example.com")))
        .collect();
    let tx = db.begin().await.unwrap();
    let (first, second) = (
        Customer::insert_rows(&first).values_only(),
        Customer::insert_rows(&second).values_only(),
    );
    let (a, b) = futures_util::join!(first.exec(&tx), second.exec(&tx));
    let (a, b) = (a.map(|r| r.len()), b.map(|r| r.len()));
    assert!(matches!((&a, &b), (Ok(20_000), Ok(20_000))), "{a:?} {b:?}");
    assert_eq!(count_rows(&tx, "customers").await, 40_000);
    tx.commit().await.unwrap();
    assert_eq!(count_rows(&*db, "customers").await, 40_000);
}

/// One of two concurrent multi-statement inserts fails: only its rows go.
#[tokio::test]
async fn a_failed_concurrent_insert_undoes_only_its_own_rows() {
    let db = shop_db("tx_concurrent_atomic_fail").await;
    let good: Vec<Customer> = customers(20_000);
    let mut bad: Vec<Customer> = (0..20_000)
        .map(|i| customer(&format!("d{i}"), &format!("d{i}@example.com")))
        .collect();
    bad[19_999].email = bad[0].email.clone();
    let tx = db.begin().await.unwrap();
    let (good, bad) = (
        Customer::insert_rows(&good).values_only(),
        Customer::insert_rows(&bad).values_only(),
    );
    let (a, b) = futures_util::join!(good.exec(&tx), bad.exec(&tx));
    assert!(
        matches!(b, Err(Error::UniqueViolation { .. })),
        "{:?}",
        b.map(|r| r.len())
    );
    let a = a.map(|r| r.len());
    assert!(matches!(a, Ok(20_000)), "{a:?}");
    assert_eq!(
        count_rows(&tx, "customers").await,
        20_000,
        "the good insert is kept whole"
    );
    tx.commit().await.unwrap();
}

/// A savepoint dropped after a failed statement (the `?` pattern) is rolled back
/// before the next statement, so the transaction goes on.
#[tokio::test]
async fn a_savepoint_dropped_after_an_error_recovers_the_transaction() {
    let db = shop_db("tx_savepoint_error_drop").await;
    customer("A", "a@x").insert(&*db).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    async fn attempt(tx: &mut Transaction<'_>) -> matrx_orm::Result<()> {
        let sp = tx.savepoint().await?;
        customer("B", "b@x").insert(&sp).await?;
        customer("dup", "a@x").insert(&sp).await?; // fails; sp is dropped
        sp.commit().await
    }
    assert!(matches!(
        attempt(&mut tx).await,
        Err(Error::UniqueViolation { .. })
    ));
    customer("C", "c@x").insert(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(emails(&db).await, ["a@x", "c@x"]);
}
