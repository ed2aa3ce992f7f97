//! `Select::stream` and `Select::stream_chunks` against a real server: the rows of
//! `all()` in order, one statement, bounded memory (the server waits on the client),
//! cancellation that leaves the pool usable, transactions, and the per-chunk
//! prefetch count.

mod common;
mod fixtures;

use std::time::Duration;

use common::count_queries;
use common::shop::*;
use fixtures::*;
use futures_util::{StreamExt, TryStreamExt};
use matrx_orm::prelude::*;
use matrx_orm::Error;

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "blobs")]
pub struct Blob {
    #[orm(primary_key)]
    pub id: i64,
    pub body: String,
}

/// `customers` customers, `orders` orders spread over them (ids 1..), each order with
/// `order_id % 3` items.
async fn seed_shop<E: Executor>(ex: &E, customers: i64, orders: i64) {
    ex.execute(
        "INSERT INTO customers (name, email, created_at) \
         SELECT 'c' || g, 'c' || g || '@example.com', now() FROM generate_series(1, $1::int8) g",
        &[&customers],
    )
    .await
    .unwrap();
    ex.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES ('p1', 'P1', 100)",
        &[],
    )
    .await
    .unwrap();
    ex.execute(
        "INSERT INTO orders (customer_id, status, placed_at, total_cents) \
         SELECT 1 + g % $2::int8, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END, now(), g * 7 % 1000 \
         FROM generate_series(1, $1::int8) g",
        &[&orders, &customers],
    )
    .await
    .unwrap();
    ex.execute(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
         SELECT o.id, 1, n, 100 FROM orders o, generate_series(1, 2) n WHERE n <= o.id % 3",
        &[],
    )
    .await
    .unwrap();
}

async fn seed_blobs(db: &Db, n: i64, width: i32) {
    db.batch_execute("CREATE TABLE blobs (id bigint PRIMARY KEY, body text NOT NULL)")
        .await
        .unwrap();
    db.execute_sql(
        "INSERT INTO blobs SELECT g, repeat('x', $2) FROM generate_series(1, $1::int8) g",
        &[&n, &width],
    )
    .await
    .unwrap();
}

fn ids(orders: &[Order]) -> Vec<i64> {
    orders.iter().map(|o| o.id).collect()
}

#[tokio::test]
async fn stream_yields_the_rows_of_all_in_order_in_one_statement() {
    let db = shop_db("stream_all").await;
    seed_shop(&*db, 50, 2_500).await;
    let query = Order::query()
        .filter(Order::STATUS.eq("paid"))
        .order_by(Order::TOTAL_CENTS.desc())
        .order_by(Order::ID.asc());
    let all = query.all(&*db).await.unwrap();
    assert_eq!(all.len(), 1_250);

    // Db
    let (streamed, n) = count_queries(&db, query.stream(&*db).try_collect::<Vec<_>>()).await;
    let streamed = streamed.unwrap();
    assert_eq!(n, 1);
    assert_eq!(streamed, all);

    // Session
    let session = db.session();
    let streamed: Vec<Order> = query.stream(&session).try_collect().await.unwrap();
    assert_eq!(session.query_count(), 1);
    assert_eq!(streamed, all);

    // Transaction (a cursor fetched in batches of 1,000: two batches and the end)
    let tx = db.begin().await.unwrap();
    let before = db.query_count();
    let streamed: Vec<Order> = query.stream(&tx).try_collect().await.unwrap();
    assert_eq!(db.query_count() - before, 1);
    assert_eq!(streamed, all);
    tx.commit().await.unwrap();

    // Limit and offset apply as in all().
    let paged = query.clone().limit(10).offset(5);
    let streamed: Vec<Order> = paged.stream(&*db).try_collect().await.unwrap();
    assert_eq!(ids(&streamed), ids(&paged.all(&*db).await.unwrap()));
}

#[tokio::test]
async fn an_unread_stream_holds_the_server_back_not_the_rows() {
    let tdb = shop_db("stream_bounded").await;
    // 200,000 rows of 200 bytes: ~45 MB on the wire, far beyond socket buffers.
    seed_blobs(&tdb, 200_000, 200).await;
    let db = pool_on(&tdb, 1, Duration::from_secs(10)).await;
    let pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);

    let mut stream = Blob::query().order_by(Blob::ID.asc()).stream(&db);
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(first.id, 1);
    // The client reads no further than its buffers: the server is left waiting to
    // write (ClientWrite), the result is not pulled into memory.
    let observer = tdb.db.clone();
    let waiting = eventually(Duration::from_secs(5), || {
        let observer = observer.clone();
        async move {
            let rows = observer
                .query_sql(
                    "SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await
                .unwrap();
            rows.first().map(|r| r.get::<_, String>(0)).as_deref() == Some("ClientWrite")
        }
    })
    .await;
    assert!(
        waiting,
        "the server should be blocked writing to the unread stream"
    );

    // Reading on yields every row, in order, one at a time.
    let mut expected = 2;
    while let Some(blob) = stream.try_next().await.unwrap() {
        assert_eq!(blob.id, expected);
        expected += 1;
    }
    assert_eq!(expected, 200_001);
}

#[tokio::test]
async fn a_stream_dropped_mid_way_leaves_a_pool_of_one_usable() {
    let tdb = shop_db("stream_cancel").await;
    seed_blobs(&tdb, 200_000, 100).await;
    let db = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);

    // Dropped after ten rows, the result still in flight: the connection is closed
    // (never pooled mid-result) and the pool opens a fresh one.
    let taken: Vec<Blob> = Blob::query()
        .order_by(Blob::ID.asc())
        .stream(&db)
        .take(10)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(taken.len(), 10);
    let (count, elapsed) = timed(Blob::query().count(&db)).await;
    assert_eq!(count.unwrap(), 200_000);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let new_pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);
    assert_ne!(new_pid, pid);

    // Cancelled while waiting for a row (a timeout around the consumer).
    let consume = async {
        let mut stream = Blob::query().stream(&db);
        while stream.try_next().await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    assert!(tokio::time::timeout(Duration::from_millis(50), consume)
        .await
        .is_err());
    let all: Vec<Blob> = Blob::query()
        .filter(Blob::ID.lte(3))
        .stream(&db)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);

    // Dropped after its last row arrived: nothing is in flight, the connection is
    // kept (same server process).
    let pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);
    let mut stream = Blob::query().filter(Blob::ID.lte(3)).stream(&db);
    assert!(stream.try_next().await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let same_pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);
    assert_eq!(same_pid, pid);
    assert_eq!(db.pool_status().size, 1);
}

#[tokio::test]
async fn a_stream_in_a_transaction_sees_its_writes_and_lets_other_statements_run() {
    let tdb = shop_db("stream_tx").await;
    seed_blobs(&tdb, 0, 0).await;
    let db = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute_sql(
        "INSERT INTO blobs SELECT g, 'b' || g FROM generate_series(1, 3500) g",
        &[],
    )
    .await
    .unwrap();

    // Other statements of the transaction run between two batches of the cursor.
    let mut stream = Blob::query().order_by(Blob::ID.desc()).stream(&tx);
    let mut seen = Vec::new();
    while let Some(blob) = stream.try_next().await.unwrap() {
        if seen.len() % 700 == 0 {
            let n = Blob::query().count(&tx).await.unwrap();
            assert_eq!(n, 3_500);
        }
        seen.push(blob.id);
    }
    assert_eq!(seen, (1..=3_500).rev().collect::<Vec<i64>>());
    drop(stream);

    // Dropped mid-way: the transaction goes on and commits.
    let mut stream = Blob::query().stream(&tx);
    assert!(stream.try_next().await.unwrap().is_some());
    drop(stream);
    {
        let sp = tx.savepoint().await.unwrap();
        let two: Vec<Blob> = Blob::query()
            .filter(Blob::ID.lte(2))
            .stream(&sp)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(two.len(), 2);
        sp.commit().await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(Blob::query().count(&db).await.unwrap(), 3_500);

    // A failing stream aborts the transaction as any failed statement does.
    let tx = db.begin().await.unwrap();
    let failed: Result<Vec<Blob>, _> = Blob::query()
        .filter(Blob::ID.eq(1))
        .stream(&tx)
        .try_collect()
        .await;
    assert!(failed.is_ok());
    let bad = match tx.query_stream("SELECT 1 / 0", &[], 10).await {
        Ok(rows) => rows.try_collect::<Vec<_>>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(bad.is_err());
    assert!(tx.commit().await.is_err());
}

#[tokio::test]
async fn stream_chunks_prefetch_once_per_edge_per_chunk() {
    let db = shop_db("stream_chunks").await;
    seed_shop(&*db, 40, 250).await;
    let query = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .prefetch(Order::ITEMS.with(OrderItem::PRODUCT));
    let all = query.all(&*db).await.unwrap();

    let tx = db.begin().await.unwrap();
    for run in 0..2 {
        let stream = match run {
            0 => query.stream_chunks(&*db, 100),
            _ => query.stream_chunks(&tx, 100),
        };
        let (chunks, n) = count_queries(&db, stream.try_collect::<Vec<Vec<Order>>>()).await;
        let chunks = chunks.unwrap();
        // 250 rows: chunks of 100, 100, 50; edges: customer, items, items.product.
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(n, 1 + 3 * 3);
        let flat: Vec<Order> = chunks.into_iter().flatten().collect();
        assert_eq!(ids(&flat), ids(&all));
        for (got, want) in flat.iter().zip(&all) {
            assert_eq!(
                got.customer.get().map(|c| c.id),
                want.customer.get().map(|c| c.id)
            );
            let items = |o: &Order| -> Vec<(i64, Option<i64>)> {
                o.items
                    .get()
                    .unwrap()
                    .iter()
                    .map(|i| (i.id, i.product.get().map(|p| p.id)))
                    .collect()
            };
            assert_eq!(items(got), items(want));
        }
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn streams_refuse_what_they_cannot_do_with_typed_errors() {
    let db = shop_db("stream_refuse").await;
    seed_shop(&*db, 2, 4).await;
    let refused = |r: Option<Result<Order, Error>>| matches!(r, Some(Err(Error::InvalidInput(_))));
    let joined = Order::query().select_related(Order::CUSTOMER);
    assert!(refused(joined.stream(&*db).next().await));
    let prefetch = Order::query().prefetch(Order::CUSTOMER);
    assert!(refused(prefetch.stream(&*db).next().await));
    assert!(matches!(
        joined.stream_chunks(&*db, 10).next().await,
        Some(Err(Error::InvalidInput(_)))
    ));
    assert!(matches!(
        Order::query().stream_chunks(&*db, 0).next().await,
        Some(Err(Error::InvalidInput(_)))
    ));
    // Nothing was sent.
    let (_, n) = count_queries(&db, async {
        let _ = joined.stream(&*db).next().await;
    })
    .await;
    assert_eq!(n, 0);
}
