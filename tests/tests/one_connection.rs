//! Which connection statements run on: a load on `Db::one_connection` (its root
//! statement and every edge of its relation tree, sibling edges pipelined) runs on one
//! connection, a load on a plain `Db` sends its sibling edges on pooled connections of
//! their own, and a session's statements that run at the same time share one
//! connection, returned to the pool when none runs. The rows read carry
//! `pg_backend_pid()`, so every test sees which backend answered.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{test_db, TestDb};
use futures_util::future::try_join_all;
use futures_util::TryStreamExt;
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

/// Whether the test reaches the server directly: behind a transaction pooler
/// (`MATRX_TEST_PGBOUNCER`) the pooler picks the server process of each
/// transaction, so the backend ids say nothing of the client's connections.
fn direct(tdb: &TestDb) -> bool {
    if tdb.bouncer.is_some() {
        eprintln!("SKIPPED: behind a pooler, server process ids do not show client connections");
    }
    tdb.bouncer.is_none()
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
    if !direct(&tdb) {
        return;
    }
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
    if !direct(&tdb) {
        return;
    }
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
    if !direct(&tdb) {
        return;
    }
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

/// The backend of `n` statements of `ex` running at the same time.
async fn concurrent_backends(ex: &impl Executor, n: usize) -> Vec<i32> {
    try_join_all((0..n).map(|_| async {
        let rows = ex
            .query("SELECT pg_backend_pid(), pg_sleep(0.02)::text", &[])
            .await?;
        Ok::<i32, Error>(rows[0].get(0))
    }))
    .await
    .unwrap()
}

#[tokio::test]
async fn a_session_runs_its_concurrent_statements_on_one_backend() {
    let tdb = fixture("one_conn_session").await;
    if !direct(&tdb) {
        return;
    }
    let db = pool(&tdb, 8, Duration::from_secs(5)).await;
    let session = db.session();
    // On the pool, statements running together each take a connection of their own.
    let pooled: BTreeSet<i32> = concurrent_backends(&db, 4).await.into_iter().collect();
    assert!(pooled.len() > 1, "{pooled:?}");
    // In a session they share one.
    let pids = concurrent_backends(&session, 8).await;
    assert!(pids.iter().all(|&p| p == pids[0]), "{pids:?}");
    // A prefetch's sibling edges, and a wave of per-object loads batched by the
    // session, each run on one backend.
    let orders = POrder::query().all(&session).await.unwrap();
    let before = session.query_count();
    let mut edges = Prefetch::default();
    edges.add(POrder::CUSTOMER);
    edges.add(POrder::ITEMS);
    edges.add(POrder::TAGS);
    matrx_orm::prefetch_related(&session, &orders, edges)
        .await
        .unwrap();
    assert_eq!(session.query_count() - before, 3);
    assert_eq!(
        edge_backends(&orders).len(),
        1,
        "sibling edges on one backend"
    );
    // (a new session: this one holds the relations loaded above)
    let wave = db.session();
    let fresh = POrder::query().all(&wave).await.unwrap();
    let before = wave.query_count();
    try_join_all(fresh.iter().map(|o| async {
        let (customer, tags) = futures_util::future::join(
            o.fetch(&wave, POrder::CUSTOMER),
            o.fetch(&wave, POrder::TAGS),
        )
        .await;
        customer?;
        tags?;
        Ok::<_, Error>(())
    }))
    .await
    .unwrap();
    assert_eq!(wave.query_count() - before, 2, "one batch per edge");
    assert_eq!(
        edge_backends(&fresh).len(),
        1,
        "the wave's batches on one backend"
    );
    // Spawned tasks sharing the session (clones) share its connection too.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move {
                let rows = session
                    .query_sql("SELECT pg_backend_pid(), pg_sleep(0.05)::text", &[])
                    .await?;
                Ok::<i32, Error>(rows[0].get(0))
            })
        })
        .collect();
    let mut spawned = BTreeSet::new();
    for task in tasks {
        spawned.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(spawned.len(), 1, "{spawned:?}");
    // An idle session holds no connection.
    let status = db.pool_status();
    assert_eq!(status.available, status.size, "{status:?}");
}

#[tokio::test]
async fn an_idle_session_leaves_the_pool_to_others() {
    let tdb = fixture("one_conn_session_idle").await;
    if !direct(&tdb) {
        return;
    }
    let db = pool(&tdb, 1, Duration::from_millis(500)).await;
    let first = db.session();
    let second = db.session();
    let pid = backend_of(&first).await;
    // `first` is alive and idle: `second`, its transaction and a stream get the one
    // connection.
    assert_eq!(backend_of(&second).await, pid);
    let tx = second.begin().await.unwrap();
    assert_eq!(backend_of(&tx).await, pid);
    tx.commit().await.unwrap();
    let orders: Vec<POrder> = POrder::query().stream(&first).try_collect().await.unwrap();
    assert_eq!(orders.len(), 20);
    assert!(orders.iter().all(|o| o.pid == pid));
    assert_eq!(backend_of(&first).await, pid);
}
