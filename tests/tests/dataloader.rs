//! Request-scoped batching (the DataLoader pattern) in a `Session`: plain per-object
//! code — `get` by key, `fetch_fk` / `fetch_ifk` / `fetch_m2m` — whose calls are
//! pending at the same time costs one query per relation edge (or per model for
//! gets) and per wave, with keys de-duplicated and every result checked. Also: the
//! maximum batch size, errors that reach exactly the waiters of the failed batch,
//! cancelled callers, transactions, isolation between sessions, spawned tasks and
//! strict mode.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use common::{count_queries, test_db, TestDb};
use futures_util::future::{join, join_all, try_join_all};
use matrx_orm::prelude::*;
use matrx_orm::{Error, Session, Transaction};

/// Orders in the dataset (ids `1..=ORDERS`).
const ORDERS: i64 = 80;
/// Customers with orders (ids `1..=CUSTOMERS`): orders share them, so keys repeat in
/// a batch. Customers `CUSTOMERS + 1..=2 * CUSTOMERS` have no orders: they are the
/// referrers, so the referrer wave never meets a customer loaded by the wave before.
const CUSTOMERS: i64 = 12;
const PRODUCTS: i64 = 8;
const TAGS: i64 = 5;

/// A hang fails the test instead of blocking it.
const LIMIT: Duration = Duration::from_secs(30);

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// What was written, to check every loaded object against.
struct Data {
    customers: HashMap<i64, Customer>,
    products: HashMap<i64, Product>,
    orders: HashMap<i64, Order>,
    /// Items of each order, by item id.
    items: HashMap<i64, Vec<OrderItem>>,
    /// Tag ids of each order, ascending.
    tags: HashMap<i64, Vec<i64>>,
}

/// Customer `id`'s referrer: none for multiples of 3 and for the referrers
/// themselves, else `id + CUSTOMERS`.
fn referrer_of(id: i64) -> Option<i64> {
    (id <= CUSTOMERS && id % 3 != 0).then_some(id + CUSTOMERS)
}

impl Data {
    fn generate() -> Data {
        let customers = (1..=2 * CUSTOMERS)
            .map(|id| {
                let c = Customer {
                    id,
                    name: format!("customer {id}"),
                    email: format!("c{id}@example.com"),
                    created_at: ts(id),
                    referred_by: referrer_of(id),
                    referrer: Default::default(),
                    orders: Default::default(),
                };
                (id, c)
            })
            .collect();
        let products = (1..=PRODUCTS)
            .map(|id| {
                let p = Product {
                    id,
                    sku: format!("SKU-{id}"),
                    name: format!("product {id}"),
                    price_cents: 100 * id as i32 + 5,
                    stock: Default::default(),
                    warehouses: Default::default(),
                };
                (id, p)
            })
            .collect();
        let mut orders = HashMap::new();
        let mut items = HashMap::new();
        let mut tags = HashMap::new();
        let mut item_id = 0;
        for id in 1..=ORDERS {
            orders.insert(
                id,
                Order {
                    id,
                    customer_id: (id * 7) % CUSTOMERS + 1,
                    status: if id % 2 == 0 { "paid" } else { "shipped" }.to_owned(),
                    placed_at: ts(1_000 + id),
                    total_cents: 100 * id,
                    customer: Default::default(),
                    items: Default::default(),
                    tags: Default::default(),
                },
            );
            // 0 to 3 items per order.
            let list: Vec<OrderItem> = (0..id % 4)
                .map(|j| {
                    item_id += 1;
                    OrderItem {
                        id: item_id,
                        order_id: id,
                        product_id: (id + j * 3) % PRODUCTS + 1,
                        quantity: (j + 1) as i32,
                        unit_price_cents: 10 * item_id as i32,
                        order: Default::default(),
                        product: Default::default(),
                    }
                })
                .collect();
            items.insert(id, list);
            // 0 to 2 tags per order; none for multiples of 5.
            let mut t: Vec<i64> = if id % 5 == 0 {
                Vec::new()
            } else {
                vec![id % TAGS, (id * 2) % TAGS + 1]
            };
            t.retain(|&t| t >= 1);
            t.sort_unstable();
            t.dedup();
            tags.insert(id, t);
        }
        Data {
            customers,
            products,
            orders,
            items,
            tags,
        }
    }

    async fn insert(&self, db: &Db) {
        let sorted = |mut v: Vec<i64>| {
            v.sort_unstable();
            v
        };
        let customers: Vec<Customer> = sorted(self.customers.keys().copied().collect())
            .iter()
            .map(|id| self.customers[id].clone())
            .collect();
        Customer::insert_rows(&customers)
            .include_auto()
            .exec(db)
            .await
            .unwrap();
        let products: Vec<Product> = self.products.values().cloned().collect();
        Product::insert_rows(&products)
            .include_auto()
            .exec(db)
            .await
            .unwrap();
        let tags: Vec<Tag> = (1..=TAGS)
            .map(|id| Tag {
                id,
                name: format!("tag {id}"),
            })
            .collect();
        Tag::insert_rows(&tags)
            .include_auto()
            .exec(db)
            .await
            .unwrap();
        let orders: Vec<Order> = self.orders.values().cloned().collect();
        Order::insert_rows(&orders)
            .include_auto()
            .exec(db)
            .await
            .unwrap();
        let items: Vec<OrderItem> = self.items.values().flatten().cloned().collect();
        OrderItem::insert_rows(&items)
            .include_auto()
            .exec(db)
            .await
            .unwrap();
        let links: Vec<String> = self
            .tags
            .iter()
            .flat_map(|(o, ts)| ts.iter().map(move |t| format!("({o}, {t})")))
            .collect();
        db.batch_execute(&format!(
            "INSERT INTO order_tags (order_id, tag_id) VALUES {}",
            links.join(", ")
        ))
        .await
        .unwrap();
    }

    fn check_customer(&self, got: &Customer) {
        let want = &self.customers[&got.id];
        assert_eq!(
            (&got.name, &got.email, got.created_at, got.referred_by),
            (&want.name, &want.email, want.created_at, want.referred_by),
            "customer {}",
            got.id
        );
    }

    fn check_order(&self, id: i64, got: &Order) {
        let want = &self.orders[&id];
        assert_eq!(got.id, id);
        assert_eq!(
            (got.customer_id, &got.status, got.placed_at, got.total_cents),
            (
                want.customer_id,
                &want.status,
                want.placed_at,
                want.total_cents
            ),
            "order {id}"
        );
    }

    /// Checks one W4 result: the order, its customer, its tags (by tag id).
    fn check_w4(&self, id: i64, got: &W4Order) {
        self.check_order(id, &got.order);
        let customer = got.customer.as_ref().expect("every order has a customer");
        assert_eq!(customer.id, self.orders[&id].customer_id, "order {id}");
        self.check_customer(customer);
        let tag_ids: Vec<i64> = got.tags.iter().map(|t| t.id).collect();
        assert_eq!(tag_ids, self.tags[&id], "tags of order {id}");
        for t in &got.tags {
            assert_eq!(t.name, format!("tag {}", t.id));
        }
        // The loads are attached to the order, too.
        assert_eq!(got.order.customer.get().map(|c| c.id), Some(customer.id));
        assert_eq!(got.order.tags.get().map(<[_]>::len), Some(tag_ids.len()));
    }

    /// Checks one W5 result: customer, its referrer (or none), items and products.
    fn check_w5(&self, id: i64, got: &W5Order) {
        self.check_order(id, &got.order);
        let customer = got.customer.as_ref().expect("every order has a customer");
        assert_eq!(customer.id, self.orders[&id].customer_id, "order {id}");
        self.check_customer(customer);
        match (customer.referred_by, &got.referrer) {
            (None, None) => {}
            (Some(r), Some(referrer)) => {
                assert_eq!(referrer.id, r);
                self.check_customer(referrer);
            }
            (want, got) => panic!(
                "order {id}: referrer {want:?}, loaded {:?}",
                got.as_ref().map(|c| c.id)
            ),
        }
        let want = &self.items[&id];
        let got_ids: Vec<i64> = got.items.iter().map(|(i, _)| i.id).collect();
        let want_ids: Vec<i64> = want.iter().map(|i| i.id).collect();
        assert_eq!(got_ids, want_ids, "items of order {id}");
        for ((item, product), want) in got.items.iter().zip(want) {
            assert_eq!(
                (item.order_id, item.product_id, item.quantity),
                (want.order_id, want.product_id, want.quantity)
            );
            let product = product.as_ref().expect("every item has a product");
            assert_eq!(product.id, want.product_id);
            assert_eq!(product.price_cents, self.products[&product.id].price_cents);
        }
    }

    /// Orders among `ids` whose customer has a referrer.
    fn referred(&self, ids: impl IntoIterator<Item = i64>) -> u64 {
        ids.into_iter()
            .filter(|id| referrer_of(self.orders[id].customer_id).is_some())
            .count() as u64
    }

    /// Items of the orders `ids`.
    fn item_count(&self, ids: impl IntoIterator<Item = i64>) -> u64 {
        ids.into_iter().map(|id| self.items[&id].len() as u64).sum()
    }
}

/// A fresh schema with the shop tables and [`Data`] in it.
async fn shop(prefix: &str) -> (TestDb, Arc<Data>) {
    let db = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let data = Data::generate();
    data.insert(&db).await;
    (db, Arc::new(data))
}

// ----- the per-object code of W4 and W5 (as in bench/src/orm/lazy.rs) ------------

struct W4Order {
    order: Order,
    customer: Option<Arc<Customer>>,
    tags: Vec<Arc<Tag>>,
}

/// W4, one order: get it by key, then its customer and tags concurrently.
async fn w4_order<E: Executor>(s: &E, id: i64) -> matrx_orm::Result<W4Order> {
    let order = Order::get(s, &id).await?;
    let (customer, tags) = join(
        order.fetch_fk(s, Order::CUSTOMER),
        order.fetch_m2m(s, Order::TAGS),
    )
    .await;
    let (customer, tags) = (customer?, tags?);
    Ok(W4Order {
        order,
        customer,
        tags,
    })
}

/// W4, one request: the per-order pipelines, concurrently.
async fn w4<E: Executor>(s: &E, ids: &[i64]) -> matrx_orm::Result<Vec<W4Order>> {
    try_join_all(ids.iter().map(|&id| w4_order(s, id))).await
}

struct W5Order {
    order: Order,
    customer: Option<Arc<Customer>>,
    referrer: Option<Arc<Customer>>,
    items: Vec<(Arc<OrderItem>, Option<Arc<Product>>)>,
}

/// W5, one order: get; then customer and items; then referrer and products.
async fn w5_order<E: Executor>(s: &E, id: i64) -> matrx_orm::Result<W5Order> {
    let order = Order::get(s, &id).await?;
    let (customer, items) = join(
        order.fetch_fk(s, Order::CUSTOMER),
        order.fetch_ifk(s, Order::ITEMS),
    )
    .await;
    let (customer, items) = (customer?, items?);
    let referrer = async {
        match &customer {
            Some(c) => c.fetch_fk(s, Customer::REFERRER).await,
            None => Ok(None),
        }
    };
    let products = try_join_all(items.iter().map(|i| async move {
        let product = i.fetch_fk(s, OrderItem::PRODUCT).await?;
        Ok::<_, Error>((Arc::clone(i), product))
    }));
    let (referrer, items) = join(referrer, products).await;
    Ok(W5Order {
        order,
        customer,
        referrer: referrer?,
        items: items?,
    })
}

async fn w5<E: Executor>(s: &E, ids: &[i64]) -> matrx_orm::Result<Vec<W5Order>> {
    try_join_all(ids.iter().map(|&id| w5_order(s, id))).await
}

fn order_ids(range: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    range.collect()
}

async fn load_orders(db: &Db, ids: &[i64]) -> Vec<Order> {
    Order::query()
        .filter(Order::ID.is_in(ids.iter().copied()))
        .order_by(Order::ID.asc())
        .all(db)
        .await
        .unwrap()
}

/// The written orders `ids`, relations not loaded (as a query would return them).
fn fresh_orders(data: &Data, ids: std::ops::RangeInclusive<i64>) -> Vec<Order> {
    ids.map(|id| data.orders[&id].clone()).collect()
}

// ----- W4 / W5 -----------------------------------------------------------------

#[tokio::test]
async fn w4_request_costs_three_queries_in_a_session_and_one_per_call_without() {
    let (db, data) = shop("dl_w4").await;
    let ids = order_ids(1..=25);

    let session = db.session();
    let got = w4(&session, &ids).await.unwrap();
    assert_eq!(
        session.query_count(),
        3,
        "orders, customers, tags: one query per wave and edge"
    );
    assert_eq!(got.len(), 25);
    for (id, o) in ids.iter().zip(&got) {
        data.check_w4(*id, o);
    }
    // Keys repeat: 25 orders, at most 12 customers.
    let mut customers: Vec<i64> = got.iter().map(|o| o.order.customer_id).collect();
    customers.sort_unstable();
    customers.dedup();
    assert!(customers.len() < 25, "the data must repeat customers");
    // One customer row is one object within the batch.
    for a in &got {
        for b in &got {
            if a.order.customer_id == b.order.customer_id {
                assert!(Arc::ptr_eq(
                    a.customer.as_ref().unwrap(),
                    b.customer.as_ref().unwrap()
                ));
            }
        }
    }

    // The next request, in its own session, costs its own three queries.
    let session = db.session();
    let again = w4(&session, &order_ids(26..=50)).await.unwrap();
    assert_eq!(session.query_count(), 3);
    for (id, o) in (26..=50).zip(&again) {
        data.check_w4(id, o);
    }

    // The same code on the pool (no session): the seed's one query per call.
    let (got, n) = count_queries(&db, w4(&*db, &ids)).await;
    let got = got.unwrap();
    assert_eq!(
        n,
        25 + 25 + 25,
        "a get, a customer and a tags load per order"
    );
    for (id, o) in ids.iter().zip(&got) {
        data.check_w4(*id, o);
    }
}

#[tokio::test]
async fn w5_nested_waves_cost_one_query_per_level_and_edge() {
    let (db, data) = shop("dl_w5").await;
    let ids = order_ids(1..=25);
    let referred = data.referred(ids.iter().copied());
    assert!(
        referred > 0 && referred < 25,
        "some referrers, some NULL: {referred}"
    );

    let session = db.session();
    let got = w5(&session, &ids).await.unwrap();
    assert_eq!(
        session.query_count(),
        5,
        "orders; customers + items; referrers + products"
    );
    for (id, o) in ids.iter().zip(&got) {
        data.check_w5(*id, o);
    }
    assert_eq!(
        got.iter().filter(|o| o.referrer.is_some()).count() as u64,
        referred
    );

    let (got, n) = count_queries(&db, w5(&*db, &ids)).await;
    let got = got.unwrap();
    let items = data.item_count(ids.iter().copied());
    assert_eq!(
        n,
        25 + 25 + 25 + referred + items,
        "without a session: a query per call ({referred} referrers, {items} items; none for NULL)"
    );
    for (id, o) in ids.iter().zip(&got) {
        data.check_w5(*id, o);
    }
}

/// A request joining more futures than `try_join_all` polls in order (over 30: it then
/// polls through `FuturesUnordered`), run as one task on a multi-thread runtime whose
/// other workers are busy with requests of their own: each wave still meets in one
/// batch per edge, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wide_join_in_one_task_on_many_workers_costs_one_query_per_wave_and_edge() {
    let (db, data) = shop("dl_wide").await;
    let ids = order_ids(1..=ORDERS);
    for _ in 0..5 {
        let requests = (0..4).map(|_| {
            let (db, ids) = (db.clone(), ids.clone());
            tokio::spawn(async move {
                let session = db.session();
                let got = w5(&session, &ids).await;
                (got, session.query_count())
            })
        });
        for request in try_join_all(requests).await.unwrap() {
            let (got, statements) = request;
            assert_eq!(
                statements, 5,
                "orders; customers + items; referrers + products"
            );
            for (id, o) in ids.iter().zip(&got.unwrap()) {
                data.check_w5(*id, o);
            }
        }
    }
}

#[tokio::test]
async fn a_wave_with_only_null_keys_costs_no_query() {
    let (db, data) = shop("dl_null").await;
    // Customers 3, 6, 9, 12 have no referrer.
    let session = db.session();
    let customers = try_join_all(
        [3i64, 6, 9, 12]
            .iter()
            .map(|id| Customer::get(&session, id)),
    )
    .await
    .unwrap();
    assert_eq!(session.query_count(), 1);
    let referrers = try_join_all(
        customers
            .iter()
            .map(|c| c.fetch_fk(&session, Customer::REFERRER)),
    )
    .await
    .unwrap();
    assert!(referrers.iter().all(Option::is_none));
    assert_eq!(session.query_count(), 1, "NULL keys are never sent");
    for c in &customers {
        data.check_customer(c);
        assert_eq!(c.referrer.state(), Some(None), "loaded, and NULL");
    }
}

// ----- de-duplication -------------------------------------------------------------

#[tokio::test]
async fn concurrent_loads_of_one_key_cost_one_query_and_share_the_row() {
    let (db, data) = shop("dl_dedup").await;
    let order = Order::get(&*db, &7).await.unwrap();
    let copies: Vec<Order> = (0..25).map(|_| order.clone()).collect();

    let session = db.session();
    let got = try_join_all(copies.iter().map(|o| o.fetch_fk(&session, Order::CUSTOMER)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 1);
    let first = got[0].clone().unwrap();
    data.check_customer(&first);
    assert_eq!(first.id, data.orders[&7].customer_id);
    for c in &got {
        assert!(Arc::ptr_eq(c.as_ref().unwrap(), &first));
    }

    // Many orders of few customers: one query, one object per customer.
    let many = load_orders(&db, &order_ids(1..=60)).await;
    let before = session.query_count();
    let got = try_join_all(many.iter().map(|o| o.fetch(&session, Order::CUSTOMER)))
        .await
        .unwrap();
    assert_eq!(session.query_count() - before, 1);
    for (o, c) in many.iter().zip(&got) {
        let c = c.as_ref().unwrap();
        assert_eq!(c.id, o.customer_id);
        data.check_customer(c);
    }

    // Ten gets of one key: one query, equal rows.
    let session = db.session();
    let before = session.query_count();
    let gets = try_join_all((0..10).map(|_| Customer::get(&session, &5)))
        .await
        .unwrap();
    assert_eq!(session.query_count() - before, 1);
    for c in &gets {
        assert_eq!(c, &gets[0]);
        data.check_customer(c);
    }
}

#[tokio::test]
async fn a_missing_key_fails_only_its_own_get() {
    let (db, data) = shop("dl_missing").await;
    let session = db.session();
    let keys: Vec<i64> = vec![1, 2, 999, 3, 2];
    let got = join_all(keys.iter().map(|id| Order::get(&session, id))).await;
    assert_eq!(session.query_count(), 1);
    for (id, r) in keys.iter().zip(&got) {
        match r {
            Ok(o) => data.check_order(*id, o),
            Err(Error::NotFound { model }) if *id == 999 => assert_eq!(*model, "Order"),
            Err(e) => panic!("get {id}: {e}"),
        }
    }
    assert!(got[2].is_err());
    let none = join_all(
        [998i64, 4]
            .iter()
            .map(|id| Order::get_or_none(&session, id)),
    )
    .await;
    assert_eq!(session.query_count(), 2);
    assert!(none[0].as_ref().unwrap().is_none());
    assert_eq!(none[1].as_ref().unwrap().as_ref().map(|o| o.id), Some(4));
}

// ----- errors ---------------------------------------------------------------------

#[tokio::test]
async fn a_failed_batch_fails_its_waiters_and_nothing_else() {
    let (db, data) = shop("dl_errors").await;
    let ids = order_ids(1..=20);
    let orders = load_orders(&db, &ids).await;
    let session = db.session();

    // Tags can no longer be read; customers can.
    db.batch_execute("ALTER TABLE tags RENAME COLUMN name TO label")
        .await
        .unwrap();
    let (tags, customers) = join(
        join_all(orders.iter().map(|o| o.fetch_m2m(&session, Order::TAGS))),
        join_all(orders.iter().map(|o| o.fetch_fk(&session, Order::CUSTOMER))),
    )
    .await;
    assert_eq!(session.query_count(), 2, "one batch per relation");
    let first = tags[0].as_ref().unwrap_err().to_string();
    for r in &tags {
        let e = r
            .as_ref()
            .expect_err("every waiter of the failed batch fails");
        assert_eq!(e.sqlstate(), Some("42703"), "undefined column: {e}");
        assert_eq!(e.to_string(), first, "the same error for every waiter");
    }
    for (o, c) in orders.iter().zip(&customers) {
        let c = c
            .as_ref()
            .expect("the other batch succeeds")
            .as_ref()
            .unwrap();
        assert_eq!(c.id, o.customer_id);
        data.check_customer(c);
        assert!(o.tags.is_not_loaded(), "a failed load attaches nothing");
    }

    // Fixed: the next batch of the same relation, in the same session, works.
    db.batch_execute("ALTER TABLE tags RENAME COLUMN label TO name")
        .await
        .unwrap();
    let tags = try_join_all(orders.iter().map(|o| o.fetch_m2m(&session, Order::TAGS)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 3);
    for (o, t) in orders.iter().zip(&tags) {
        assert_eq!(t.iter().map(|t| t.id).collect::<Vec<_>>(), data.tags[&o.id]);
    }
}

#[tokio::test]
async fn a_failed_get_batch_fails_its_waiters_and_nothing_else() {
    let (db, data) = shop("dl_get_errors").await;
    let session = db.session();
    let session = &session;
    db.batch_execute("ALTER TABLE orders RENAME COLUMN status TO state")
        .await
        .unwrap();
    let (orders, customers) = join(
        join_all((1..=10i64).map(|id| async move { Order::get(session, &id).await })),
        join_all((1..=10i64).map(|id| async move { Customer::get(session, &id).await })),
    )
    .await;
    assert_eq!(session.query_count(), 2);
    for r in &orders {
        assert_eq!(r.as_ref().unwrap_err().sqlstate(), Some("42703"));
    }
    for c in &customers {
        data.check_customer(c.as_ref().unwrap());
    }
    db.batch_execute("ALTER TABLE orders RENAME COLUMN state TO status")
        .await
        .unwrap();
    let orders = try_join_all((1..=10i64).map(|id| async move { Order::get(session, &id).await }))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 3);
    for o in &orders {
        data.check_order(o.id, o);
    }
}

// ----- cancellation -----------------------------------------------------------------

/// `Ready(..)` if `fut` finishes on its first poll, else `Pending`, leaving it pinned.
async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    futures_util::poll!(fut)
}

#[tokio::test]
async fn dropping_the_leader_while_it_gathers_keys_does_not_break_the_waiters() {
    let (db, data) = shop("dl_cancel_gather").await;
    tokio::time::timeout(LIMIT, async {
        for round in 0..20 {
            let orders = fresh_orders(&data, 1..=25);
            let session = db.session();
            let mut leader = Box::pin(orders[0].fetch(&session, Order::CUSTOMER));
            assert!(
                poll_once(&mut leader).await.is_pending(),
                "the leader yields"
            );
            let mut waiters: Vec<_> = orders[1..]
                .iter()
                .map(|o| Box::pin(o.fetch(&session, Order::CUSTOMER)))
                .collect();
            for w in &mut waiters {
                assert!(poll_once(w).await.is_pending(), "a waiter waits");
            }
            // Cancel the leader, and every third waiter.
            drop(leader);
            let kept: Vec<(usize, _)> = waiters
                .into_iter()
                .enumerate()
                .filter(|(i, _)| (i + round) % 3 != 0)
                .collect();
            let (idx, futs): (Vec<usize>, Vec<_>) = kept.into_iter().unzip();
            let got = join_all(futs).await;
            for (i, c) in idx.iter().zip(got) {
                let c = c.unwrap().unwrap();
                assert_eq!(c.id, orders[i + 1].customer_id);
                data.check_customer(&c);
            }
            assert_eq!(
                session.query_count(),
                1,
                "the abandoned batch never ran; the waiters' retry did"
            );
        }
    })
    .await
    .expect("no hang");
}

#[tokio::test]
async fn dropping_the_leader_while_its_query_runs_does_not_break_the_waiters() {
    let (db, data) = shop("dl_cancel_flight").await;
    tokio::time::timeout(LIMIT, async {
        for _ in 0..20 {
            let orders = fresh_orders(&data, 1..=25);
            let session = db.session();
            let mut leader = Box::pin(orders[0].fetch_m2m(&session, Order::TAGS));
            assert!(poll_once(&mut leader).await.is_pending());
            let mut waiters: Vec<_> = orders[1..]
                .iter()
                .map(|o| Box::pin(o.fetch_m2m(&session, Order::TAGS)))
                .collect();
            for w in &mut waiters {
                assert!(poll_once(w).await.is_pending());
            }
            // Drive the leader alone until its query is sent, then cancel it.
            while session.query_count() == 0 {
                tokio::task::yield_now().await;
                if let std::task::Poll::Ready(r) = poll_once(&mut leader).await {
                    panic!("the leader finished before its query was seen: {r:?}");
                }
            }
            drop(leader);
            let got = join_all(waiters).await;
            for (o, tags) in orders[1..].iter().zip(got) {
                let tags: Vec<i64> = tags.unwrap().iter().map(|t| t.id).collect();
                assert_eq!(tags, data.tags[&o.id]);
            }
            assert_eq!(
                session.query_count(),
                2,
                "the cancelled query and the retry"
            );
        }
    })
    .await
    .expect("no hang");
}

/// Yields `n` times.
async fn yields(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn callers_cancelled_at_any_point_never_break_the_others() {
    let (db, data) = shop("dl_cancel_select").await;
    let ids = order_ids(1..=25);
    tokio::time::timeout(LIMIT, async {
        for round in 0..60usize {
            let session = db.session();
            let session = &session;
            let data = &data;
            // Every fourth pipeline is cancelled after a varying number of yields
            // (0: right after its first poll), whether it leads a batch or waits.
            let runs = ids.iter().enumerate().map(|(i, &id)| async move {
                if (i + round) % 4 == 0 {
                    tokio::select! {
                        biased;
                        r = w5_order(session, id) => Some(r),
                        _ = yields((i + round) % 7) => None,
                    }
                } else {
                    Some(w5_order(session, id).await)
                }
            });
            let got = join_all(runs).await;
            let mut done = 0;
            for (id, r) in ids.iter().zip(got) {
                if let Some(r) = r {
                    data.check_w5(*id, &r.unwrap());
                    done += 1;
                }
            }
            assert!(done >= 18, "the pipelines not cancelled finish: {done}");
            assert!(
                session.query_count() <= 25,
                "retries after cancellation stay batched: {}",
                session.query_count()
            );
        }
    })
    .await
    .expect("no hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aborted_tasks_never_break_the_others() {
    let (db, data) = shop("dl_cancel_abort").await;
    let ids = order_ids(1..=25);
    tokio::time::timeout(LIMIT, async {
        for round in 0..30usize {
            let session = db.session();
            let tasks: Vec<_> = ids
                .iter()
                .map(|&id| {
                    let s = session.clone();
                    tokio::spawn(async move { w5_order(&s, id).await })
                })
                .collect();
            yields(round % 5).await;
            for (i, t) in tasks.iter().enumerate() {
                if (i + round) % 3 == 0 {
                    t.abort();
                }
            }
            for (id, t) in ids.iter().zip(tasks) {
                match t.await {
                    Ok(r) => data.check_w5(*id, &r.unwrap()),
                    Err(e) => assert!(e.is_cancelled(), "{e}"),
                }
            }
        }
    })
    .await
    .expect("no hang");
}

// ----- maximum batch size -----------------------------------------------------------

#[tokio::test]
async fn the_maximum_batch_size_splits_a_wave() {
    let (db, data) = shop("dl_max_batch").await;
    let mut session = db.session();
    session.set_max_batch(10);
    let ids = order_ids(1..=25);

    let got = try_join_all(ids.iter().map(|id| Order::get(&session, id)))
        .await
        .unwrap();
    assert_eq!(
        session.query_count(),
        3,
        "25 keys in batches of 10: 10 + 10 + 5"
    );
    for (id, o) in ids.iter().zip(&got) {
        data.check_order(*id, o);
    }
    let tags = try_join_all(got.iter().map(|o| o.fetch_m2m(&session, Order::TAGS)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 6);
    for (o, t) in got.iter().zip(&tags) {
        assert_eq!(t.iter().map(|t| t.id).collect::<Vec<_>>(), data.tags[&o.id]);
    }

    // 1 turns batching off: one query per call.
    session.set_max_batch(1);
    let before = session.query_count();
    let ids = order_ids(26..=30);
    let got = try_join_all(ids.iter().map(|id| Order::get(&session, id)))
        .await
        .unwrap();
    assert_eq!(session.query_count() - before, 5);
    for (id, o) in ids.iter().zip(&got) {
        data.check_order(*id, o);
    }
}

#[tokio::test]

async fn the_maximum_batch_size_counts_distinct_keys() {
    let (db, data) = shop("dl_max_batch_dup").await;
    let mut session = db.session();
    session.set_max_batch(10);
    // 25 loads of one key carry one key: one query.
    let got = try_join_all((0..25).map(|_| Customer::get(&session, &4)))
        .await
        .unwrap();
    for c in &got {
        data.check_customer(c);
    }
    assert_eq!(session.query_count(), 1, "one distinct key");
}

// ----- transactions -------------------------------------------------------------------

/// Writes, in `tx`, customer 100 (referred by 13) and its order 100 tagged 2 and 4.
async fn insert_order_100(tx: &Transaction<'_>) {
    Customer::insert_rows(&[Customer {
        id: 100,
        name: "new".to_owned(),
        email: "new@example.com".to_owned(),
        created_at: ts(100),
        referred_by: Some(13),
        referrer: Default::default(),
        orders: Default::default(),
    }])
    .include_auto()
    .exec(tx)
    .await
    .unwrap();
    Order::insert_rows(&[Order {
        id: 100,
        customer_id: 100,
        status: "pending".to_owned(),
        placed_at: ts(5_000),
        total_cents: 1,
        customer: Default::default(),
        items: Default::default(),
        tags: Default::default(),
    }])
    .include_auto()
    .exec(tx)
    .await
    .unwrap();
    tx.execute_sql(
        "INSERT INTO order_tags (order_id, tag_id) VALUES (100, 2), (100, 4)",
        &[],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn batching_works_inside_a_transaction_and_sees_its_writes() {
    let (db, data) = shop("dl_tx").await;
    let session = db.session();
    let mut ids = order_ids(1..=24);
    ids.push(100);

    // W4 in a transaction that wrote order 100 first.
    let tx = session.begin().await.unwrap();
    insert_order_100(&tx).await;
    let (s0, d0) = (session.query_count(), db.query_count());
    let got = w4(&tx, &ids).await.unwrap();
    assert_eq!(session.query_count() - s0, 3, "counted in the session");
    assert_eq!(db.query_count() - d0, 3, "and in the Db");
    for (id, o) in ids.iter().zip(&got[..24]) {
        data.check_w4(*id, o);
    }
    let new = &got[24];
    assert_eq!(new.order.id, 100);
    let customer = new.customer.as_ref().unwrap();
    assert_eq!((customer.id, customer.name.as_str()), (100, "new"));
    assert_eq!(new.tags.iter().map(|t| t.id).collect::<Vec<_>>(), [2, 4]);
    // Outside the transaction the new rows do not exist.
    assert!(Order::get_or_none(&session, &100).await.unwrap().is_none());
    tx.rollback().await.unwrap();
    assert!(Order::get_or_none(&*db, &100).await.unwrap().is_none());

    // Nested waves (W5) too, on another transaction's one connection.
    let tx = session.begin().await.unwrap();
    insert_order_100(&tx).await;
    let s1 = session.query_count();
    let waves = w5(&tx, &ids).await.unwrap();
    assert_eq!(session.query_count() - s1, 5);
    for (id, o) in ids.iter().zip(&waves[..24]) {
        data.check_w5(*id, o);
    }
    let new = &waves[24];
    assert_eq!(new.customer.as_ref().map(|c| c.id), Some(100));
    assert_eq!(new.referrer.as_ref().map(|c| c.id), Some(13));
    assert!(new.items.is_empty());
    tx.commit().await.unwrap();
    assert_eq!(Order::get(&*db, &100).await.unwrap().customer_id, 100);
}

#[tokio::test]
async fn a_session_and_its_transaction_never_share_a_batch() {
    let (db, data) = shop("dl_tx_split").await;
    let session = db.session();
    let tx = session.begin().await.unwrap();
    tx.execute_sql("UPDATE customers SET name = 'renamed' WHERE id = 3", &[])
        .await
        .unwrap();
    // The same key, at the same time, inside and outside the transaction.
    let (inside, outside) = join(
        join_all((0..5).map(|_| Customer::get(&tx, &3))),
        join_all((0..5).map(|_| Customer::get(&session, &3))),
    )
    .await;
    for c in inside {
        assert_eq!(c.unwrap().name, "renamed");
    }
    for c in outside {
        data.check_customer(&c.unwrap());
    }
    tx.rollback().await.unwrap();
}

// ----- isolation and tasks ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_never_see_each_others_results() {
    let (db, data) = shop("dl_sessions").await;
    let before = db.query_count();
    let tasks: Vec<_> = (0..16i64)
        .map(|k| {
            let db = db.db.clone();
            let data = data.clone();
            // Overlapping key ranges: 25 orders starting at 3k + 1.
            let ids = order_ids(3 * k + 1..=3 * k + 25);
            tokio::spawn(async move {
                let session = db.session();
                let got = w4(&session, &ids).await?;
                assert_eq!(got.len(), ids.len());
                for (id, o) in ids.iter().zip(&got) {
                    data.check_w4(*id, o);
                }
                Ok::<u64, Error>(session.query_count())
            })
        })
        .collect();
    for t in tasks {
        let n = tokio::time::timeout(LIMIT, t)
            .await
            .expect("no hang")
            .unwrap()
            .unwrap();
        assert_eq!(n, 3, "each session pays its own three queries");
    }
    assert_eq!(db.query_count() - before, 16 * 3);
}

/// One request on a multi-thread runtime: a handler task that spawns the 25 W4
/// pipelines as tasks sharing (clones of) its session, and returns the query count.
async fn spawned_request(db: &Db, data: &Arc<Data>) -> u64 {
    let db = db.clone();
    let data = data.clone();
    let handler = tokio::spawn(async move {
        let session = db.session();
        let tasks: Vec<_> = (1..=25i64)
            .map(|id| {
                let s = session.clone();
                tokio::spawn(async move { w4_order(&s, id).await })
            })
            .collect();
        for (id, t) in (1..=25i64).zip(tasks) {
            data.check_w4(id, &t.await.unwrap().unwrap());
        }
        session.query_count()
    });
    tokio::time::timeout(LIMIT, handler)
        .await
        .expect("no hang")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spawned_tasks_sharing_a_session_are_batched() {
    let (db, data) = shop("dl_spawn").await;
    // Tasks run on several worker threads, so a wave may close before a task on
    // another thread joins it (a worker thread the OS has not scheduled yet cannot be
    // waited for without a timer): the bound is loose, but far from the 75 queries of
    // one per call. Futures joined inside one task (`join_all`) batch exactly.
    let mut counts = Vec::new();
    for _ in 0..20 {
        counts.push(spawned_request(&db, &data).await);
    }
    let total: u64 = counts.iter().sum();
    println!("statements per spawned request (3 when joined in one task): {counts:?}");
    assert!(
        counts.iter().all(|&n| (3..=37).contains(&n)),
        "per request: {counts:?}"
    );
    assert!(
        total <= 20 * 10,
        "on average at most 10 per request: {counts:?}"
    );
}

#[tokio::test]
async fn a_shared_session_is_batched_with_its_clones() {
    let (db, data) = shop("dl_clone").await;
    let session = db.session();
    let clones: Vec<Session> = (0..25).map(|_| session.clone()).collect();
    let ids = order_ids(1..=25);
    let got = try_join_all(clones.iter().zip(&ids).map(|(s, &id)| w4_order(s, id)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 3);
    for (id, o) in ids.iter().zip(&got) {
        data.check_w4(*id, o);
    }
}

// ----- strict mode --------------------------------------------------------------------

#[tokio::test]
async fn strict_mode_refuses_the_batched_lazy_load() {
    let (db, data) = shop("dl_strict").await;
    let mut session = db.session();
    session.set_strict(true);
    let ids = order_ids(1..=10);
    // Gets are reads the caller asked for, not lazy loads: still batched.
    let orders = try_join_all(ids.iter().map(|id| Order::get(&session, id)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 1);
    let got = join_all(orders.iter().map(|o| o.fetch_fk(&session, Order::CUSTOMER))).await;
    for r in &got {
        match r {
            Err(Error::StrictLoad { relation, .. }) => assert_eq!(*relation, "customer"),
            other => panic!("expected StrictLoad, got {other:?}"),
        }
    }
    let w4_err = w4(&session, &order_ids(11..=20)).await;
    assert!(matches!(w4_err, Err(Error::StrictLoad { .. })));
    assert_eq!(
        session.query_count(),
        2,
        "W4's gets ran, its lazy loads did not"
    );
    // A NULL key costs no query, so strict mode lets it through.
    let c3 = Customer::get(&session, &3).await.unwrap();
    data.check_customer(&c3);
    assert_eq!(
        c3.fetch_fk(&session, Customer::REFERRER).await.unwrap(),
        None
    );
    assert_eq!(session.query_count(), 3, "gets only; no lazy load ran");
}
