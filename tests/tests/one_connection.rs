//! Which connection statements run on: a load on `Db::one_connection` (its root
//! statement and every edge of its relation tree, sibling edges pipelined) runs on one
//! connection, a load on a plain `Db` sends its sibling edges on pooled connections of
//! their own, and a session keeps one connection from its first statement until it is
//! dropped, hands it to a transaction it begins when it is idle, and releases it when
//! dropped. The rows read carry `pg_backend_pid()`, so every test sees which backend
//! answered.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{test_db, TestDb};
use futures_util::future::try_join_all;
use matrx_orm::prelude::*;
use matrx_orm::{Db, Error, Prefetch};

/// An order read through a view that adds the answering backend's process id.
#[derive(Model, Debug, Clone)]
#[orm(table = "pid_orders")]
pub struct POrder {
    #[orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub pid: i32,
    #[orm(belongs_to(key = "customer_id"))]
    pub customer: One<PCustomer>,
    #[orm(has_many(foreign_key = "order_id"))]
    pub items: Many<PItem>,
    #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
    pub tags: Many<PTag>,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "pid_customers")]
pub struct PCustomer {
    #[orm(primary_key)]
    pub id: i64,
    pub pid: i32,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "pid_items")]
pub struct PItem {
    #[orm(primary_key)]
    pub id: i64,
    pub order_id: i64,
    pub pid: i32,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "pid_tags")]
pub struct PTag {
    #[orm(primary_key)]
    pub id: i64,
    pub pid: i32,
}

/// 20 orders of 5 customers, 2 items each, tags 1-3 on every order.
async fn fixture(prefix: &str) -> TestDb {
    let tdb = test_db(prefix).await;
    tdb.batch_execute(
        "CREATE TABLE customers (id bigint PRIMARY KEY);
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL);
         CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint NOT NULL);
         CREATE TABLE tags (id bigint PRIMARY KEY);
         CREATE TABLE order_tags (order_id bigint NOT NULL, tag_id bigint NOT NULL);
         CREATE VIEW pid_customers AS SELECT id, pg_backend_pid() AS pid FROM customers;
         CREATE VIEW pid_orders AS
             SELECT id, customer_id, pg_backend_pid() AS pid FROM orders;
         CREATE VIEW pid_items AS SELECT id, order_id, pg_backend_pid() AS pid FROM items;
         CREATE VIEW pid_tags AS SELECT id, pg_backend_pid() AS pid FROM tags;
         INSERT INTO customers SELECT g FROM generate_series(1, 5) g;
         INSERT INTO orders SELECT g, g % 5 + 1 FROM generate_series(1, 20) g;
         INSERT INTO items SELECT g, (g + 1) / 2 FROM generate_series(1, 40) g;
         INSERT INTO tags SELECT g FROM generate_series(1, 3) g;
         INSERT INTO order_tags SELECT o, t FROM generate_series(1, 20) o,
             generate_series(1, 3) t;",
    )
    .await
    .unwrap();
    tdb
}

/// A second pool on the test's schema with `size` connections, waiting at most
/// `wait` for one.
async fn pool(tdb: &TestDb, size: usize, wait: Duration) -> Db {
    let builder = match &tdb.bouncer {
        Some(bouncer) => {
            Db::builder(bouncer.url()).statement_mode(matrx_orm::StatementMode::Unnamed)
        }
        None => Db::builder(tdb.schema.url()).search_path(tdb.schema.name()),
    };
    builder
        .pool_size(size)
        .pool_wait(wait)
        .connect()
        .await
        .unwrap()
}

/// Every backend that answered some row of the loaded graph.
fn backends(orders: &[POrder]) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for order in orders {
        pids.insert(order.pid);
        if let Some(customer) = order.customer.get() {
            pids.insert(customer.pid);
        }
        for item in order.items.get().unwrap_or_default() {
            pids.insert(item.pid);
        }
        for tag in order.tags.get().unwrap_or_default() {
            pids.insert(tag.pid);
        }
    }
    pids
}

/// The process id of the backend a statement of `ex` runs on.
async fn backend_of(ex: &impl Executor) -> i32 {
    ex.query("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0)
}

fn loaded_everything(orders: &[POrder]) {
    assert_eq!(orders.len(), 20);
    for order in orders {
        assert_eq!(order.customer.get().map(|c| c.id), Some(order.id % 5 + 1));
        assert_eq!(order.items.get().map(|i| i.len()), Some(2));
        assert_eq!(order.tags.get().map(|t| t.len()), Some(3));
    }
}

#[tokio::test]
async fn a_prefetch_on_one_connection_runs_its_root_and_sibling_edges_there() {
    let tdb = fixture("one_conn_prefetch").await;
    let db = pool(&tdb, 8, Duration::from_secs(5)).await;
    let tree = || {
        POrder::query()
            .prefetch(POrder::CUSTOMER)
            .prefetch(POrder::ITEMS)
            .prefetch(POrder::TAGS)
    };
    for _ in 0..5 {
        let before = db.query_count();
        let orders = tree().all(&db.one_connection()).await.unwrap();
        assert_eq!(db.query_count() - before, 4, "root + one per edge");
        loaded_everything(&orders);
        assert_eq!(backends(&orders).len(), 1, "one backend answered every row");
    }
    // The connection went back to the pool once the load ended.
    assert_eq!(db.pool_status().available, db.pool_status().size);

    // `prefetch_related` on rows already read: its edges share one connection too.
    let orders = POrder::query().all(&db).await.unwrap();
    let before = db.query_count();
    let mut edges = Prefetch::default();
    edges.add(POrder::CUSTOMER);
    edges.add(POrder::ITEMS);
    edges.add(POrder::TAGS);
    matrx_orm::prefetch_related(&db.one_connection(), &orders, edges.clone())
        .await
        .unwrap();
    assert_eq!(db.query_count() - before, 3);
    assert_eq!(
        edge_backends(&orders).len(),
        1,
        "the three edges ran on one backend"
    );

    // On a plain `Db` the sibling edges each take a pooled connection (several
    // server processes at once: measured faster), with the same statements.
    for _ in 0..5 {
        let before = db.query_count();
        let orders = tree().all(&db).await.unwrap();
        assert_eq!(db.query_count() - before, 4);
        loaded_everything(&orders);
        assert!(
            edge_backends(&orders).len() > 1,
            "sibling edges ran side by side"
        );
    }
}

/// The backends that answered the rows of the orders' relations.
fn edge_backends(orders: &[POrder]) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for order in orders {
        pids.extend(order.customer.get().map(|c| c.pid));
        pids.extend(order.items.iter().map(|i| i.pid));
        pids.extend(order.tags.iter().map(|t| t.pid));
    }
    pids
}

#[tokio::test]
async fn a_balanced_load_runs_its_batched_edges_on_its_connection() {
    let tdb = fixture("one_conn_balanced").await;
    let db = pool(&tdb, 8, Duration::from_secs(5)).await;
    for _ in 0..5 {
        let before = db.query_count();
        let orders = POrder::query()
            .order_by(POrder::ID.asc())
            .limit(20)
            .balanced(POrder::CUSTOMER)
            .balanced(POrder::ITEMS)
            .balanced(POrder::TAGS)
            .all(&db.one_connection())
            .await
            .unwrap();
        assert_eq!(
            db.query_count() - before,
            3,
            "root with the customer joined, items, tags"
        );
        loaded_everything(&orders);
        assert_eq!(backends(&orders).len(), 1, "one backend answered every row");
    }
}

#[tokio::test]
async fn a_load_in_a_pool_of_one_connection_does_not_wait_for_itself() {
    let tdb = fixture("one_conn_pool_of_one").await;
    let db = pool(&tdb, 1, Duration::from_millis(500)).await;
    let tree = || {
        POrder::query()
            .prefetch(POrder::CUSTOMER)
            .prefetch(POrder::ITEMS)
            .prefetch(POrder::TAGS)
    };
    loaded_everything(&tree().all(&db.one_connection()).await.unwrap());
    // On a plain `Db`, sibling edges wait for the one pooled connection in turn.
    loaded_everything(&tree().all(&db).await.unwrap());
    // A transaction runs its loads on its own connection.
    let tx = db.begin().await.unwrap();
    let pid = backend_of(&tx).await;
    let orders = POrder::query()
        .prefetch(POrder::CUSTOMER)
        .prefetch(POrder::ITEMS)
        .prefetch(POrder::TAGS)
        .all(&tx)
        .await
        .unwrap();
    assert_eq!(backends(&orders), BTreeSet::from([pid]));
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_session_runs_every_statement_on_one_backend() {
    let tdb = fixture("one_conn_session").await;
    let db = pool(&tdb, 8, Duration::from_secs(5)).await;
    let session = db.session();
    // Concurrent statements: on a pool each would take a connection of its own.
    let pids = try_join_all((0..8).map(|_| {
        let session = &session;
        async move {
            let rows = session
                .query_sql("SELECT pg_backend_pid(), pg_sleep(0.02)::text", &[])
                .await?;
            Ok::<i32, Error>(rows[0].get(0))
        }
    }))
    .await
    .unwrap();
    let first = pids[0];
    assert!(pids.iter().all(|&p| p == first), "{pids:?}");
    // Its loads, lazy per-object loads batched by the session, and spawned tasks
    // sharing it (clones share the connection) run there too.
    let orders = POrder::query()
        .prefetch(POrder::CUSTOMER)
        .prefetch(POrder::ITEMS)
        .all(&session)
        .await
        .unwrap();
    assert_eq!(backends(&orders), BTreeSet::from([first]));
    let fresh = POrder::query().all(&session).await.unwrap();
    try_join_all(fresh.iter().map(|o| o.fetch(&session, POrder::TAGS)))
        .await
        .unwrap();
    assert_eq!(backends(&fresh), BTreeSet::from([first]));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { backend_of(&session).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), first);
    }
    // Another session has a connection of its own.
    let other = db.session();
    assert_ne!(backend_of(&other).await, first);
    drop(other);
    // Dropping the session (every clone) returns its connection to the pool.
    drop(session);
    let status = db.pool_status();
    assert_eq!(status.available, status.size, "{status:?}");
}

#[tokio::test]
async fn a_session_hands_its_idle_connection_to_its_transaction() {
    let tdb = fixture("one_conn_session_tx").await;
    // One connection: a session and its transaction must share it.
    let db = pool(&tdb, 1, Duration::from_millis(500)).await;
    let session = db.session();
    let pid = backend_of(&session).await;
    let tx = session.begin().await.unwrap();
    assert_eq!(backend_of(&tx).await, pid);
    tx.execute_sql("INSERT INTO tags VALUES (10)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // After the transaction the session takes a connection again.
    assert_eq!(backend_of(&session).await, pid);
    let n: i64 = session
        .query_sql("SELECT count(*) FROM tags", &[])
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(n, 4);
    // The closure form, and a multi-statement write's own transaction.
    let n = session
        .transaction(async |tx| tx.execute_sql("DELETE FROM tags WHERE id = 10", &[]).await)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(backend_of(&session).await, pid);
    // While the session holds the only connection, another session waits and fails
    // with PoolTimeout; once the first is dropped, the second gets it.
    let other = db.session();
    match other.query_sql("SELECT 1", &[]).await {
        Err(Error::PoolTimeout(_)) => {}
        got => panic!("expected a pool timeout, got {got:?}"),
    }
    drop(session);
    assert_eq!(backend_of(&other).await, pid);
}

#[tokio::test]
async fn a_session_streams_on_its_idle_connection() {
    use futures_util::TryStreamExt;
    let tdb = fixture("one_conn_session_stream").await;
    let db = pool(&tdb, 1, Duration::from_millis(500)).await;
    let session = db.session();
    let pid = backend_of(&session).await;
    let orders: Vec<POrder> = POrder::query()
        .stream(&session)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(orders.len(), 20);
    assert!(orders.iter().all(|o| o.pid == pid));
    assert_eq!(backend_of(&session).await, pid);
}
