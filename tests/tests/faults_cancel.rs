//! Cancellation: a load future dropped at any point (a `tokio::time::timeout` of a
//! random tiny duration, or a `select!` against a future that is ready after a random
//! number of scheduler turns) must never leave a connection that answers the next
//! caller with another call's rows, nor a session batch that hangs or misattaches.
//!
//! Thousands of distinguishable loads run on a small pool, many of them cancelled;
//! every load that completes is checked to be exactly the one asked for: on the pool,
//! pipelined inside one transaction, and batched inside sessions (cancelling waiters
//! and batch leaders alike).

mod common;
mod fixtures;
mod reliability;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use common::shop::*;
use common::TestDb;
use futures_util::FutureExt;
use matrx_orm::prelude::*;
use matrx_orm::Error;
use reliability::{backend_states, eventually, tagged_pool, Rng};

const CUSTOMERS: i64 = 60;
const ORDERS: i64 = 200;

/// Ids are predictable in a fresh schema: customer `g` is `c{g}`, order `g` belongs to
/// customer `g % 60 + 1`, has items of products `(3g + k) % 10 + 1` (k = 1..3) and
/// tags `g % 10 + 1`, `(g + 3) % 10 + 1`.
async fn seeded(prefix: &str) -> TestDb {
    let tdb = fixtures::shop_db(prefix).await;
    tdb.batch_execute(&format!(
        "INSERT INTO customers (name, email, created_at) \
           SELECT 'c' || g, 'c' || g || '@x', now() FROM generate_series(1, {CUSTOMERS}) g; \
         INSERT INTO tags (name) SELECT 't' || g FROM generate_series(1, 10) g; \
         INSERT INTO products (sku, name, price_cents) SELECT 's' || g, 'p' || g, g FROM generate_series(1, 10) g; \
         INSERT INTO orders (customer_id, status, placed_at, total_cents) \
           SELECT g % {CUSTOMERS} + 1, 'paid', now(), g FROM generate_series(1, {ORDERS}) g; \
         INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
           SELECT o, (3 * o + k) % 10 + 1, k, 1 FROM generate_series(1, {ORDERS}) o, generate_series(1, 3) k; \
         INSERT INTO order_tags (order_id, tag_id) \
           SELECT o, o % 10 + 1 FROM generate_series(1, {ORDERS}) o \
           UNION SELECT o, (o + 3) % 10 + 1 FROM generate_series(1, {ORDERS}) o;"
    ))
    .await
    .unwrap();
    tdb
}

fn expected_customer(order: i64) -> i64 {
    order % CUSTOMERS + 1
}

fn expected_products(order: i64) -> BTreeSet<i64> {
    (1..=3).map(|k| (3 * order + k) % 10 + 1).collect()
}

fn expected_tags(order: i64) -> BTreeSet<i64> {
    [order % 10 + 1, (order + 3) % 10 + 1].into_iter().collect()
}

/// Checks an order and whichever of its relations are loaded.
fn check_order(o: &Order, id: i64) -> Result<(), String> {
    if o.id != id || o.customer_id != expected_customer(id) || o.total_cents != id {
        return Err(format!("asked for order {id}, got {o:?}"));
    }
    if let Some(c) = o.customer.state() {
        if c.map(|c| c.id) != Some(expected_customer(id)) {
            return Err(format!("order {id}: customer {c:?}"));
        }
    }
    if let Some(items) = o.items.get() {
        if items.len() != 3 || items.iter().any(|i| i.order_id != id) {
            return Err(format!("order {id}: items {items:?}"));
        }
        let products: BTreeSet<i64> = items.iter().map(|i| i.product_id).collect();
        if products != expected_products(id) {
            return Err(format!("order {id}: products {products:?}"));
        }
        for i in items {
            if let Some(p) = i.product.state() {
                if p.map(|p| p.id) != Some(i.product_id) {
                    return Err(format!("item {}: product {p:?}", i.id));
                }
            }
        }
    }
    if let Some(tags) = o.tags.get() {
        let ids: BTreeSet<i64> = tags.iter().map(|t| t.id).collect();
        if ids != expected_tags(id) {
            return Err(format!("order {id}: tags {ids:?}"));
        }
    }
    Ok(())
}

/// How a load is cut short, if at all.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Never,
    /// `tokio::time::timeout` (the timer's granularity is 1 ms: a few ms at most).
    Timeout(Duration),
    /// `select!` against a future ready after `n` scheduler turns.
    Yields(u32),
}

impl Cut {
    fn random(rng: &mut Rng) -> Cut {
        match rng.below(10) {
            0..=3 => Cut::Never,
            4..=6 => Cut::Timeout(Duration::from_micros(rng.below(3000))),
            _ => Cut::Yields(rng.below(40) as u32),
        }
    }

    /// Runs `f` under this cut: `None` when it was cancelled.
    async fn run<F: Future>(self, f: F) -> Option<F::Output> {
        match self {
            Cut::Never => Some(f.await),
            Cut::Timeout(d) => tokio::time::timeout(d, f).await.ok(),
            Cut::Yields(n) => {
                let ready = async {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                };
                tokio::select! {
                    biased;
                    out = f => Some(out),
                    () = ready => None,
                }
            }
        }
    }
}

/// One distinguishable load on `ex`, checked; `Err` describes a wrong answer or an
/// unexpected error.
async fn load<E: Executor>(ex: &E, rng: &mut Rng) -> Result<(), String> {
    let fail = |e: Error| format!("unexpected error: {e:?}");
    match rng.below(5) {
        0 => {
            let v = rng.next_u64() as i64;
            let nap = rng.below(3) as f64 / 1000.0;
            let rows = ex
                .query(
                    "SELECT $1::int8 AS v, pg_sleep($2::float8) AS nap",
                    &[&v, &nap],
                )
                .await
                .map_err(fail)?;
            let got: i64 = rows[0].get(0);
            (rows.len() == 1 && got == v)
                .then_some(())
                .ok_or(format!("asked {v}, got {got} ({} rows)", rows.len()))
        }
        1 => {
            let id = rng.below(CUSTOMERS as u64) as i64 + 1;
            let c = Customer::get(ex, &id).await.map_err(fail)?;
            (c.id == id && c.name == format!("c{id}"))
                .then_some(())
                .ok_or(format!("asked customer {id}, got {c:?}"))
        }
        2 => {
            let id = rng.below(ORDERS as u64) as i64 + 1;
            let o = Order::query()
                .filter(Order::ID.eq(id))
                .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
                .prefetch(Order::TAGS)
                .prefetch(Order::CUSTOMER)
                .one(ex)
                .await
                .map_err(fail)?;
            if !o.items.is_loaded() || !o.tags.is_loaded() || !o.customer.is_loaded() {
                return Err(format!("order {id}: a relation was not loaded"));
            }
            check_order(&o, id)
        }
        3 => {
            let ids: BTreeSet<i64> = (0..rng.below(8) + 1)
                .map(|_| rng.below(CUSTOMERS as u64) as i64 + 1)
                .collect();
            let got: BTreeSet<i64> = Customer::query()
                .filter(Customer::ID.is_in(ids.iter().copied()))
                .all(ex)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|c| c.id)
                .collect();
            (got == ids)
                .then_some(())
                .ok_or(format!("asked {ids:?}, got {got:?}"))
        }
        _ => {
            let id = rng.below(ORDERS as u64) as i64 + 1;
            let o = Order::query()
                .filter(Order::ID.eq(id))
                .select_related(Order::CUSTOMER)
                .select_related(Order::TAGS)
                .one(ex)
                .await
                .map_err(fail)?;
            if !o.tags.is_loaded() || !o.customer.is_loaded() {
                return Err(format!("order {id}: a joined relation was not loaded"));
            }
            check_order(&o, id)
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    completed: usize,
    cancelled: usize,
    wrong: Vec<String>,
}

impl Tally {
    fn add(&mut self, outcome: Option<Result<(), String>>) {
        match outcome {
            None => self.cancelled += 1,
            Some(Ok(())) => self.completed += 1,
            Some(Err(e)) => self.wrong.push(e),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.cancelled += other.cancelled;
        self.wrong.extend(other.wrong);
    }

    fn assert_sound(&self, what: &str) {
        eprintln!(
            "{what}: {} completed, {} cancelled",
            self.completed, self.cancelled
        );
        assert!(
            self.wrong.is_empty(),
            "{what}: {} wrong answers, first: {:?}",
            self.wrong.len(),
            &self.wrong[..self.wrong.len().min(5)]
        );
        let total = self.completed + self.cancelled;
        assert!(
            self.completed * 10 >= total && self.cancelled * 10 >= total,
            "{what}: both outcomes are exercised: {self:?}"
        );
    }
}

/// The pool answers exactly, and none of its backends is left in a transaction.
async fn assert_pool_clean(tdb: &TestDb, db: &Db, app: &str) {
    for v in 0..30i64 {
        let rows = db.query_sql("SELECT $1::int8", &[&v]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), v);
    }
    let clean = eventually(Duration::from_secs(5), || async {
        backend_states(tdb, app).await.iter().all(|s| s == "idle")
    })
    .await;
    assert!(clean, "{:?}", backend_states(tdb, app).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_loads_on_the_pool_never_hand_wrong_rows_to_the_next_caller() {
    let tdb = seeded("cancel_pool").await;
    let app = "matrx_cancel_pool";
    let db = tagged_pool(&tdb, app, 3, Duration::from_secs(30)).await;
    let mut rng = Rng::new(reliability::seed("cancel_pool"));
    let workers: Vec<_> = (0..12)
        .map(|_| {
            let db = db.clone();
            let mut rng = rng.fork();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for _ in 0..170 {
                    let cut = Cut::random(&mut rng);
                    let mut op_rng = rng.fork();
                    tally.add(cut.run(load(&db, &mut op_rng)).await);
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    let all = async {
        for w in workers {
            tally.merge(w.await.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(90), all)
        .await
        .expect("no load hangs");
    tally.assert_sound("pool");
    assert_pool_clean(&tdb, &db, app).await;
    assert!(db.pool_status().size <= 3);
}

#[tokio::test]
async fn cancelled_loads_pipelined_in_a_transaction_never_misanswer() {
    let tdb = seeded("cancel_tx").await;
    let app = "matrx_cancel_tx";
    let db = tagged_pool(&tdb, app, 2, Duration::from_secs(30)).await;
    let mut rng = Rng::new(reliability::seed("cancel_tx"));
    let tx = db.begin().await.unwrap();
    let mut tally = Tally::default();
    let run = async {
        for _ in 0..12 {
            // 40 concurrent loads on the transaction's one connection, some cut short.
            let outcomes = futures_util::future::join_all((0..40).map(|_| {
                let cut = Cut::random(&mut rng);
                let mut op_rng = rng.fork();
                let tx = &tx;
                async move { cut.run(load(tx, &mut op_rng)).await }
            }))
            .await;
            for o in outcomes {
                tally.add(o);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("no load hangs");
    tally.assert_sound("transaction");
    // The transaction goes on and commits.
    fixtures::customer("after", "after@x")
        .insert(&tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        Customer::query()
            .filter(Customer::EMAIL.eq("after@x"))
            .count(&*tdb)
            .await
            .unwrap(),
        1
    );
    assert_pool_clean(&tdb, &db, app).await;
}

/// One request's per-object code: the order, then its customer, tags and items (with
/// their products) fetched concurrently: batched by the session.
async fn request_order(s: &Session, id: i64) -> Result<Order, Error> {
    let o = Order::get(s, &id).await?;
    let (c, t, items) = futures_util::join!(
        o.fetch(s, Order::CUSTOMER),
        o.fetch(s, Order::TAGS),
        o.fetch(s, Order::ITEMS)
    );
    c?;
    t?;
    futures_util::future::try_join_all(items?.iter().map(|i| i.fetch(s, OrderItem::PRODUCT)))
        .await?;
    Ok(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_waiters_and_leaders_of_session_batches_never_misattach() {
    let tdb = seeded("cancel_session").await;
    let app = "matrx_cancel_session";
    let db = tagged_pool(&tdb, app, 3, Duration::from_secs(30)).await;
    let mut rng = Rng::new(reliability::seed("cancel_session"));
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            let mut rng = rng.fork();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for _ in 0..8 {
                    let session = db.session();
                    let ids: Vec<i64> = (0..20)
                        .map(|_| rng.below(ORDERS as u64) as i64 + 1)
                        .collect();
                    // Each pipeline may be cut at any point: the first one to ask for
                    // an edge leads its batch, so leaders are cancelled too.
                    let outcomes = futures_util::future::join_all(ids.iter().map(|&id| {
                        let cut = Cut::random(&mut rng);
                        let session = &session;
                        async move {
                            cut.run(async move {
                                match request_order(session, id).await {
                                    Ok(o) => check_order(&o, id),
                                    Err(e) => Err(format!("unexpected error: {e:?}")),
                                }
                            })
                            .await
                        }
                    }))
                    .await;
                    for o in outcomes {
                        tally.add(o);
                    }
                    // The session is still sound: every order loads in full, correctly.
                    let again = futures_util::future::join_all(
                        ids.iter().map(|&id| request_order(&session, id)),
                    )
                    .await;
                    for (r, &id) in again.into_iter().zip(&ids) {
                        match r {
                            Ok(o) => {
                                if let Err(e) = check_order(&o, id) {
                                    tally.wrong.push(format!("after cancellations: {e}"));
                                }
                            }
                            Err(e) => tally.wrong.push(format!("after cancellations: {e:?}")),
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    let all = async {
        for r in requests {
            tally.merge(r.await.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(90), all)
        .await
        .expect("no batch hangs after a cancelled leader");
    tally.assert_sound("session");
    assert_pool_clean(&tdb, &db, app).await;
}

/// `Db::begin` cancelled after `BEGIN` was sent but before its answer: the pooled
/// connection must not stay inside that transaction. (Regression test: until
/// eeb4ed5, `Transaction::begin` held the connection as a plain pool object while it
/// awaited `BEGIN`, so dropping the future returned it to the pool mid-transaction and
/// the next caller's "autocommit" writes were invisible to everyone else, then lost.)
#[tokio::test]
async fn a_cancelled_begin_never_leaves_the_pooled_connection_in_a_transaction() {
    let tdb = fixtures::shop_db("cancel_begin").await;
    let db = tagged_pool(&tdb, "matrx_cancel_begin", 1, Duration::from_secs(5)).await;
    for i in 0..20 {
        // Polled once: the connection is taken and BEGIN sent; then dropped.
        if let Some(tx) = db.begin().now_or_never() {
            drop(tx);
        }
        assert!(
            !reliability::runs_in_open_transaction(&db).await,
            "round {i}: the next statements run inside the abandoned transaction"
        );
    }
    fixtures::customer("A", "a@x").insert(&db).await.unwrap();
    assert_eq!(fixtures::count_rows(&*tdb, "customers").await, 1);
}

/// A savepoint's `commit` (RELEASE) or `rollback` cancelled once its statement was
/// sent: the statement still runs on the server, so the dropped savepoint owes
/// nothing. (Regression test: until eeb4ed5 it also queued a `ROLLBACK TO SAVEPOINT`
/// for the released savepoint; the enclosing transaction's next statement failed with
/// 3B001 and the transaction was aborted.)
#[tokio::test]
async fn a_cancelled_savepoint_commit_or_rollback_keeps_the_transaction_usable() {
    let tdb = fixtures::shop_db("cancel_savepoint").await;
    let mut tx = tdb.begin().await.unwrap();
    fixtures::customer("A", "a@x").insert(&tx).await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        fixtures::customer("B", "b@x").insert(&sp).await.unwrap();
        assert!(sp.commit().now_or_never().is_none(), "cancelled in flight");
    }
    let next = fixtures::customer("C", "c@x").insert(&tx).await;
    assert!(next.is_ok(), "after a cancelled release: {next:?}");
    {
        let sp = tx.savepoint().await.unwrap();
        fixtures::customer("D", "d@x").insert(&sp).await.unwrap();
        assert!(
            sp.rollback().now_or_never().is_none(),
            "cancelled in flight"
        );
    }
    let next = fixtures::customer("E", "e@x").insert(&tx).await;
    assert!(next.is_ok(), "after a cancelled rollback: {next:?}");
    tx.commit().await.unwrap();
    let mut names: Vec<String> = Customer::query()
        .all(&*tdb)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    names.sort();
    assert_eq!(names, ["A", "B", "C", "E"]);
}
