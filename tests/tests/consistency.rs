//! Consistency under writes, transactions and cancellation: caches never give a stale
//! or partial answer, and statements never undo or lose each other.

mod common;

use std::time::Duration;

use common::small_shop::*;
use matrx_orm::prelude::*;

fn customer_order_ids(o: &Order) -> Vec<i64> {
    o.customer
        .get()
        .unwrap()
        .orders
        .iter()
        .map(|x| x.id)
        .collect()
}

#[tokio::test]
async fn a_session_sees_a_child_inserted_after_it_loaded_the_parent() {
    let (_t, db) = fixture("cons_child_insert", false).await;
    let s = db.session();
    let q = Order::query()
        .filter(Order::ID.eq(1i64))
        .prefetch(Order::CUSTOMER.with(Customer::ORDERS));
    assert_eq!(customer_order_ids(&q.all(&s).await.unwrap()[0]), [1, 2]);
    Order {
        id: 10,
        customer_id: 1,
        status: "new".into(),
        customer: One::default(),
    }
    .insert(&s)
    .await
    .unwrap();
    assert_eq!(customer_order_ids(&q.all(&s).await.unwrap()[0]), [1, 2, 10]);
}

#[tokio::test]
async fn a_filtered_edge_never_leaks_into_a_later_plain_load() {
    let (_t, db) = fixture("cons_filtered", false).await;
    let s = db.session();
    let paid = Order::query()
        .filter(Order::ID.eq(1i64))
        .prefetch(Order::CUSTOMER.with(Customer::ORDERS.filter(Order::STATUS.eq("paid"))))
        .all(&s)
        .await
        .unwrap();
    assert_eq!(customer_order_ids(&paid[0]), [1]);
    let all = Order::query()
        .filter(Order::ID.eq(2i64))
        .prefetch(Order::CUSTOMER.with(Customer::ORDERS))
        .all(&s)
        .await
        .unwrap();
    assert_eq!(customer_order_ids(&all[0]), [1, 2]);
}

#[tokio::test]
async fn a_transaction_reads_its_own_writes_and_leaves_no_stale_shared_row() {
    let (_t, db) = fixture("cons_tx_shared", true).await;
    let tx = db.begin().await.unwrap();
    let mut tag = Tag::get(&tx, &1).await.unwrap();
    tag.name = "changed".into();
    tag.update(&tx).await.unwrap();
    assert_eq!(
        Tag::get(&db, &1).await.unwrap().name,
        "gift",
        "outside: committed row"
    );
    assert_eq!(
        Tag::get(&tx, &1).await.unwrap().name,
        "changed",
        "inside: its own write"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        Tag::get(&db, &1).await.unwrap().name,
        "changed",
        "after commit"
    );
}

#[tokio::test]
async fn a_rolled_back_savepoint_leaves_nothing_in_the_transaction_cache() {
    let (_t, db) = fixture("cons_savepoint", false).await;
    let s = db.session();
    let mut tx = s.begin().await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        Order {
            id: 11,
            customer_id: 2,
            status: "new".into(),
            customer: One::default(),
        }
        .insert(&sp)
        .await
        .unwrap();
        let bob = Customer::get(&sp, &2).await.unwrap();
        assert_eq!(bob.fetch(&sp, Customer::ORDERS).await.unwrap().len(), 2);
        sp.rollback().await.unwrap();
    }
    let bob = Customer::get(&tx, &2).await.unwrap();
    let ids: Vec<i64> = bob
        .fetch(&tx, Customer::ORDERS)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids, [3]);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_primary_key_changed_by_filter_is_not_found_under_the_old_key() {
    let (_t, db) = fixture("cons_pk_change", true).await;
    Tag::get(&db, &2).await.unwrap();
    Tag::query()
        .filter(Tag::ID.eq(2i64))
        .update()
        .set(Tag::ID, 200i64)
        .exec(&db)
        .await
        .unwrap();
    assert!(Tag::get_or_none(&db, &2).await.unwrap().is_none());
    assert_eq!(Tag::get(&db, &200).await.unwrap().name, "rush");
}

#[tokio::test]
async fn a_failed_atomic_insert_never_undoes_a_concurrent_statement() {
    let (_t, db) = fixture("cons_atomic", false).await;
    let tx = db.begin().await.unwrap();
    // Past the parameter limit as VALUES lists: chunks in a savepoint; the last row
    // conflicts.
    let mut rows: Vec<Tag> = (0..70_000i64)
        .map(|i| Tag {
            id: 1000 + i,
            name: format!("n{i}"),
        })
        .collect();
    rows.push(Tag {
        id: 999_999,
        name: "gift".into(),
    });
    let insert = Tag::insert_rows(&rows).include_auto().values_only();
    let (inserted, updated) = tokio::join!(
        insert.exec(&tx),
        tx.execute_sql("UPDATE customers SET name = 'UPDATED' WHERE id = 1", &[])
    );
    assert!(matches!(
        inserted,
        Err(matrx_orm::Error::UniqueViolation { .. })
    ));
    assert_eq!(updated.unwrap(), 1);
    tx.commit().await.unwrap();
    let rows = db
        .query_sql("SELECT name FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<_, String>(0),
        "UPDATED",
        "the update survived"
    );
    let tags = db
        .query_sql("SELECT count(*) FROM tags", &[])
        .await
        .unwrap();
    assert_eq!(tags[0].get::<_, i64>(0), 2, "the insert left nothing");
}

#[tokio::test]
async fn a_write_cancelled_after_it_was_sent_is_still_evicted() {
    let (_t, db) = fixture("cons_cancelled_write", true).await;
    let mut tag = Tag::get(&db, &1).await.unwrap();
    let locker = db.begin().await.unwrap();
    locker
        .execute_sql("SELECT 1 FROM tags WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap();
    tag.name = "renamed".into();
    let timed_out = tokio::time::timeout(Duration::from_millis(300), tag.update(&db)).await;
    assert!(timed_out.is_err(), "the update waited on the lock");
    locker.commit().await.unwrap();
    // The cancelled UPDATE still runs on the server once the lock is released.
    for _ in 0..50 {
        let rows = db
            .query_sql("SELECT name FROM tags WHERE id = 1", &[])
            .await
            .unwrap();
        if rows[0].get::<_, String>(0) == "renamed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(Tag::get(&db, &1).await.unwrap().name, "renamed");
}

#[tokio::test]
async fn a_cancelled_commit_never_pools_an_aborted_connection() {
    let (tdb, _) = fixture("cons_cancelled_commit", false).await;
    let db = Db::builder(tdb.schema.url())
        .search_path(tdb.schema.name())
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    let tx = db.begin().await.unwrap();
    // Fails on the server (division by zero) after the caller stopped waiting.
    let failing = tx.query_sql(
        "SELECT 1 / (count(*) - count(*))::int FROM (SELECT pg_sleep(0.3)) s",
        &[],
    );
    assert!(tokio::time::timeout(Duration::from_millis(50), failing)
        .await
        .is_err());
    assert!(tokio::time::timeout(Duration::from_millis(50), tx.commit())
        .await
        .is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..2 {
        let rows = db.query_sql("SELECT 1", &[]).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
}
