//! Atomicity under faults: transactions dropped in the middle of a statement,
//! multi-statement writes (inserts sent as `VALUES` lists past the 65,535-parameter
//! limit, in chunks in one transaction or savepoint: the path of models with array
//! columns) cancelled after each of their statements or failing in a middle chunk, and many-to-many `set` with a missing target, in every scope
//! (`Db`, `Session`, transaction, savepoint). Nothing is ever left half-written.

mod common;
mod fixtures;
mod reliability;

use std::task::Poll;
use std::time::Duration;

use common::shop::*;
use common::TestDb;
use fixtures::{count_rows, customer, customers, order};
use matrx_orm::prelude::*;
use matrx_orm::Error;
use reliability::{backend_states, eventually, runs_in_open_transaction, tagged_pool};

/// Customers write 4 columns: as `VALUES` lists 16,383 rows per statement, so 40,000
/// rows take three INSERTs (BEGIN, 3 x INSERT, COMMIT on a `Db`).
const ROWS: usize = 40_000;

/// Polls `fut` until it completes or `db` has started `k` statements since `before`,
/// then drops it. Returns the output if it completed.
async fn run_until_statement<F: std::future::Future>(
    db: &Db,
    before: u64,
    k: u64,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = futures_util::poll!(fut.as_mut()) {
            return Some(out);
        }
        if db.query_count() - before >= k {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

async fn settled(tdb: &TestDb, db: &Db, app: &str) {
    let idle = eventually(Duration::from_secs(5), || async {
        backend_states(tdb, app).await.iter().all(|s| s == "idle")
    })
    .await;
    assert!(idle, "{:?}", backend_states(tdb, app).await);
    assert!(!runs_in_open_transaction(db).await);
}

#[tokio::test]
async fn a_transaction_dropped_mid_statement_is_rolled_back_and_its_connection_clean() {
    let tdb = fixtures::shop_db("atomic_drop_mid").await;
    let app = "matrx_atomic_drop_mid";
    let db = tagged_pool(&tdb, app, 1, Duration::from_secs(5)).await;
    for round in 0..3 {
        let tx = db.begin().await.unwrap();
        customer("A", &format!("a{round}@x"))
            .insert(&tx)
            .await
            .unwrap();
        let slow = tx.query_sql("SELECT pg_sleep(0.3)", &[]);
        assert!(tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err());
        drop(tx);
        // The pool's one connection serves the next call outside any transaction.
        customer("B", &format!("b{round}@x"))
            .insert(&db)
            .await
            .unwrap();
        settled(&tdb, &db, app).await;
    }
    let names: Vec<String> = Customer::query()
        .all(&*tdb)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        ["B", "B", "B"],
        "every A rolled back, every B committed"
    );

    // The closure form, cancelled while the server runs one of its statements.
    let run = db.transaction(async |tx| {
        customer("C", "c@x").insert(&*tx).await?;
        tx.query_sql("SELECT pg_sleep(0.3)", &[]).await?;
        Ok::<_, Error>(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(50), run)
        .await
        .is_err());
    settled(&tdb, &db, app).await;
    assert_eq!(
        Customer::query()
            .filter(Customer::NAME.eq("C"))
            .count(&db)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_chunked_insert_cancelled_after_any_statement_is_all_or_nothing() {
    let tdb = fixtures::shop_db("atomic_cancel_chunks").await;
    let app = "matrx_atomic_cancel_chunks";
    let db = tagged_pool(&tdb, app, 1, Duration::from_secs(30)).await;
    let rows = customers(ROWS);

    // On a Db: BEGIN (1), INSERT x 3 (2..4), COMMIT (5). Cut after the k-th has started.
    // (k = 1, cut while BEGIN is in flight, is `faults_cancel`'s ignored bug test.)
    for k in 2..=5u64 {
        let before = db.query_count();
        let done = run_until_statement(
            &db,
            before,
            k,
            Customer::insert_rows(&rows).values_only().exec(&db),
        )
        .await;
        settled(&tdb, &db, app).await;
        let n = count_rows(&*tdb, "customers").await;
        match done {
            Some(r) => assert_eq!((r.unwrap().len(), n), (ROWS, ROWS as i64)),
            None if k < 5 => assert_eq!(n, 0, "cut at statement {k}: nothing written"),
            // COMMIT was sent: the server commits whatever the caller does.
            None => assert_eq!(n, ROWS as i64, "cut at COMMIT: everything written"),
        }
        Customer::query().delete(&db).await.unwrap();
    }

    // Inside a transaction: SAVEPOINT (1), INSERT x 3 (2..4), RELEASE (5). A cut
    // insert is undone alone; the transaction goes on with its earlier rows.
    // (k = 5, cut while RELEASE is in flight, is `faults_cancel`'s ignored bug test.)
    for k in 1..=4u64 {
        let tx = db.begin().await.unwrap();
        customer("kept", "kept@x").insert(&tx).await.unwrap();
        let before = db.query_count();
        let done = run_until_statement(
            &db,
            before,
            k,
            Customer::insert_rows(&rows).values_only().exec(&tx),
        )
        .await;
        assert!(done.is_none(), "cut at statement {k}");
        assert_eq!(
            count_rows(&tx, "customers").await,
            1,
            "cut at statement {k}"
        );
        customer("after", "after@x").insert(&tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count_rows(&*tdb, "customers").await, 2);
        Customer::query().delete(&db).await.unwrap();
        settled(&tdb, &db, app).await;
    }
}

#[tokio::test]
async fn a_chunked_insert_failing_in_a_middle_chunk_leaves_nothing_in_any_scope() {
    let tdb = fixtures::shop_db("atomic_mid_chunk").await;
    let db = &tdb.db;
    let owner = customer("owner", "owner@x").insert(db).await.unwrap();
    // Orders write 4 columns too: 16,383 per statement; the bad row is in chunk 2.
    fn chunked(rows: &[Order]) -> matrx_orm::InsertRows<'_, Order> {
        Order::insert_rows(rows).values_only()
    }
    let mut bad_fk: Vec<Order> = (0..ROWS)
        .map(|i| order(owner.id, "paid", i as i64))
        .collect();
    bad_fk[20_000].customer_id = 999_999;
    let mut bad_nul = bad_fk.clone();
    bad_nul[20_000].customer_id = owner.id;
    bad_nul[39_999].status = "pa\0id".into();

    let fk = |r: Result<Vec<Order>, Error>| {
        assert!(
            matches!(&r, Err(Error::ForeignKeyViolation { constraint, .. }) if constraint.contains("orders")),
            "{:?}",
            r.map(|v| v.len())
        )
    };
    fk(chunked(&bad_fk).exec(db).await);
    fk(chunked(&bad_fk).exec(&db.session()).await);
    let err = chunked(&bad_nul).exec(db).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(count_rows(db, "orders").await, 0);

    // In a transaction and a savepoint: the failed insert is undone alone.
    let mut tx = db.begin().await.unwrap();
    order(owner.id, "first", 1).insert(&tx).await.unwrap();
    fk(chunked(&bad_fk).exec(&tx).await);
    {
        let sp = tx.savepoint().await.unwrap();
        order(owner.id, "in savepoint", 2)
            .insert(&sp)
            .await
            .unwrap();
        let err = chunked(&bad_nul).exec(&sp).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        assert_eq!(count_rows(&sp, "orders").await, 2);
        sp.commit().await.unwrap();
    }
    // M2M set with a missing target, in a savepoint: the links are untouched and the
    // transaction goes on.
    let mut o = order(owner.id, "tagged", 3).insert(&tx).await.unwrap();
    let tag = Tag {
        id: 0,
        name: "t".into(),
    }
    .insert(&tx)
    .await
    .unwrap();
    o.m2m_add(&tx, Order::TAGS, [tag.id]).await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        let err = o
            .m2m_set(&sp, Order::TAGS, [tag.id, 424_242])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ForeignKeyViolation { .. }), "{err:?}");
        sp.rollback().await.unwrap();
    }
    assert_eq!(count_rows(&tx, "order_tags").await, 1);
    tx.commit().await.unwrap();
    let statuses: Vec<String> = Order::query()
        .order_by(Order::TOTAL_CENTS.asc())
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.status)
        .collect();
    assert_eq!(statuses, ["first", "in savepoint", "tagged"]);
    assert_eq!(count_rows(db, "order_tags").await, 1);
}

/// A statement fails inside a transaction and the caller commits anyway (the error
/// was logged and ignored, or swallowed by the closure). PostgreSQL answers `COMMIT`
/// on an aborted transaction with a *successful* `ROLLBACK`; a commit that rolled back
/// must be an error, not `Ok(())` for writes that are gone. (Regression test: it was
/// `Ok(())` until the fix in eeb4ed5.)
#[tokio::test]
async fn a_commit_after_a_failed_statement_is_an_error_not_a_silent_rollback() {
    let tdb = fixtures::shop_db("atomic_commit_aborted").await;
    let db = &tdb.db;
    let owner = customer("owner", "owner@x").insert(db).await.unwrap();

    let tx = db.begin().await.unwrap();
    let mut o = order(owner.id, "paid", 1).insert(&tx).await.unwrap();
    let failed = o.m2m_set(&tx, Order::TAGS, [404]).await;
    assert!(matches!(failed, Err(Error::ForeignKeyViolation { .. })));
    let committed = tx.commit().await;
    let stored = count_rows(db, "orders").await;
    assert!(
        committed.is_err() || stored == 1,
        "commit said {committed:?} but {stored} orders were stored"
    );

    let result = db
        .transaction(async |tx| {
            order(owner.id, "paid", 2).insert(&*tx).await?;
            let _ignored = customer("dup", "owner@x").insert(&*tx).await;
            Ok::<_, Error>(())
        })
        .await;
    let stored = count_rows(db, "orders").await;
    assert!(
        result.is_err() || stored == 1,
        "the closure transaction said {result:?} but its order was not stored"
    );
}

/// A statement cancelled by the caller (a timeout around it) after it was sent, which
/// then fails on the server: the caller never sees the error, but the server has
/// aborted the transaction. A commit right after must not report success for writes
/// the server rolled back: `commit` sends a probe in the same batch as `COMMIT`, which
/// fails in an aborted transaction even when no error was seen on the client.
#[tokio::test]
async fn a_commit_after_a_cancelled_statement_that_failed_is_an_error() {
    let tdb = fixtures::shop_db("atomic_commit_cancelled_failure").await;
    let db = &tdb.db;
    let tx = db.begin().await.unwrap();
    customer("A", "a@x").insert(&tx).await.unwrap();
    // Prepared once (cached), so the next call sends it on its first poll.
    // Divides by zero after a 50 ms nap when $1 is 1 (pg_sleep is volatile, so
    // nothing is folded at planning time).
    let slow_div = "SELECT 1 / (1 - $1::int4 + 0 * length(pg_sleep(0.05)::text))";
    tx.query_sql(slow_div, &[&0i32]).await.unwrap();
    let cut =
        tokio::time::timeout(Duration::from_millis(5), tx.query_sql(slow_div, &[&1i32])).await;
    assert!(cut.is_err(), "cancelled while the server still runs it");
    // Let the server fail it (division by zero) before the commit is sent.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let committed = tx.commit().await;
    let stored = count_rows(db, "customers").await;
    assert!(
        committed.is_err() || stored == 1,
        "commit said {committed:?} but {stored} customers were stored"
    );
}
