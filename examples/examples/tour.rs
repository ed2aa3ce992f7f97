//! The guided tour of matrx-orm: every way to load a relation, with the number of
//! queries each one costs.
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! Needs nothing but PostgreSQL: the server is `DATABASE_URL`, else the local
//! default, else a throwaway cluster the tour starts (and removes) itself. The tour
//! works in a schema of its own, dropped at the end.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use matrx_orm::cache::CachePolicy;
use matrx_orm::prelude::*;
use matrx_orm::{count, Select};
use matrx_orm_examples::dataset::{Progress, Shop, Size};
use matrx_orm_examples::shop::{self, Customer, Order, OrderItem, Product, Stock, Tag};
use matrx_orm_testkit::{Server, ServerSource, TestSchema};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many orders the loading steps work on.
const ORDERS: u64 = 200;
/// The dataset's seed: the same shop on every run.
const SEED: u64 = 2024;
/// How many per-object pipelines the session-batching step runs.
const PIPELINES: i64 = 25;

#[tokio::main]
async fn main() -> ExitCode {
    println!("matrx-orm guided tour: every way to load a relation, and what it costs");
    println!();
    let server = match matrx_orm_testkit::server().await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(server).await;
    matrx_orm_testkit::shutdown().await;
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(problems) => {
            eprintln!("\n!!! {problems} check(s) failed: see the WARNING lines above");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("\nerror: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up a schema, runs the tour in it, and drops it whatever happened.
async fn run(server: &Server) -> Result<u32, BoxError> {
    let source = match server.source() {
        ServerSource::EnvVar => "from DATABASE_URL",
        ServerSource::LocalDefault => "the local default",
        ServerSource::Throwaway => "a throwaway cluster, removed at the end",
    };
    println!("  server   {}", redact(server.url()));
    println!("           PostgreSQL {}, {source}", server.major_version());
    let schema = TestSchema::create("tour").await?;
    println!("  schema   {} (dropped at the end)", schema.name());
    let outcome = tour(&schema).await;
    let dropped = schema.drop_now().await;
    let problems = outcome?;
    dropped?;
    Ok(problems)
}

async fn tour(schema: &TestSchema) -> Result<u32, BoxError> {
    let started = Instant::now();
    let db = Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(16)
        .connect()
        .await?;
    matrx_orm::ddl::create_tables(&db, &shop::models()).await?;

    let shop = Shop::generate(Size::default(), SEED)?;
    println!();
    let mut progress = Progress::new("building the shop", shop.row_count());
    shop.insert(&db, &mut progress).await?;
    print_dataset(&shop);

    let tour = Tour::new(db, shop);
    tour.lazy_serial().await?;
    tour.lazy_concurrent().await?;
    tour.fetch_all_related().await?;
    tour.prefetch_on_query().await?;
    tour.select_related().await?;
    tour.balanced().await?;
    tour.prefetch_on_vec().await?;
    tour.self_reference().await?;
    tour.composite_keys().await?;
    tour.top_n_per_parent().await?;
    tour.filtered_edge().await?;
    tour.string_paths().await?;
    tour.strict_mode().await?;
    tour.session_batching().await?;
    tour.cache_hits(schema).await?;
    tour.m2m_writes().await?;
    tour.questions_across_relations().await?;
    tour.summary(started.elapsed());
    Ok(tour.problems.get())
}

fn print_dataset(shop: &Shop) {
    let referred = shop
        .customers
        .iter()
        .filter(|c| c.referred_by.is_some())
        .count();
    let links: usize = shop.order_tags.iter().map(Vec::len).sum();
    let listed: usize = shop.product_warehouses.iter().map(Vec::len).sum();
    println!(
        "  data     {} customers ({} referred by another), {} products,",
        shop.customers.len(),
        referred,
        shop.products.len()
    );
    println!(
        "           {} orders, {} items, {} tags on {} order links,",
        thousands(shop.orders.len() as u64),
        thousands(shop.items.len() as u64),
        shop.tags.len(),
        thousands(links as u64)
    );
    println!(
        "           {} warehouses (key: region + code), {} stock rows, {} listings",
        shop.warehouses.len(),
        shop.stock.len(),
        listed
    );
}

/// The tour's state: the pool, the data it wrote (to check loads against), the
/// summary so far and the number of failed checks.
struct Tour {
    db: Db,
    shop: Shop,
    item_counts: HashMap<i64, usize>,
    rows: RefCell<Vec<SummaryRow>>,
    problems: Cell<u32>,
    /// Queries and time of step 1a, to compare with.
    baseline: Cell<Option<(u64, Duration)>>,
    /// Queries, time and loaded graph (as JSON) of step 2a's prefetch, to compare
    /// the joined strategies with.
    prefetched: RefCell<Option<(u64, Duration, serde_json::Value)>>,
}

struct SummaryRow {
    label: &'static str,
    cost: Option<(u64, Duration)>,
    note: &'static str,
}

/// The query every loading step starts from: 200 paid orders, oldest id first.
fn paid_orders() -> Select<Order> {
    Order::query()
        .filter(Order::STATUS.eq("paid"))
        .order_by(Order::ID.asc())
        .limit(ORDERS)
}

const PAID_ORDERS: &str = "\
let orders = Order::query()
    .filter(Order::STATUS.eq(\"paid\"))
    .order_by(Order::ID.asc())
    .limit(200)";

/// What step 8's per-object code returns for one order.
type Pipeline = (Order, Option<Arc<Customer>>, Vec<Arc<Tag>>);

/// Step 8's per-object code: an order by key, then its customer and its tags
/// concurrently. Generic over where it runs: a session batches it, `&Db` does not.
async fn one_order<E: Executor>(ex: &E, id: i64) -> matrx_orm::Result<Pipeline> {
    let order = Order::get(ex, &id).await?;
    let (customer, tags) = futures_util::join!(
        order.fetch(ex, Order::CUSTOMER),
        order.fetch(ex, Order::TAGS)
    );
    Ok((order, customer?, tags?))
}

/// Runs `work` and returns its value, the statements it ran on `db` and its wall time.
async fn measured<T>(
    db: &Db,
    work: impl Future<Output = matrx_orm::Result<T>>,
) -> matrx_orm::Result<(T, u64, Duration)> {
    let before = db.query_count();
    let started = Instant::now();
    let value = work.await?;
    Ok((value, db.query_count() - before, started.elapsed()))
}

impl Tour {
    fn new(db: Db, shop: Shop) -> Tour {
        let item_counts = shop.item_counts();
        Tour {
            db,
            shop,
            item_counts,
            rows: RefCell::new(Vec::new()),
            problems: Cell::new(0),
            baseline: Cell::new(None),
            prefetched: RefCell::new(None),
        }
    }

    // ----- the steps ------------------------------------------------------------

    async fn lazy_serial(&self) -> Result<(), BoxError> {
        title("1a", "the N+1 pattern: lazy loads in a loop");
        code(&format!(
            "{PAID_ORDERS}
    .all(&db).await?;
for order in &orders {{
    order.fetch_fk(&db, Order::CUSTOMER).await?;   // or .fetch(..)
    for item in order.fetch_ifk(&db, Order::ITEMS).await? {{
        item.fetch_fk(&db, OrderItem::PRODUCT).await?;
    }}
    order.fetch_m2m(&db, Order::TAGS).await?;
}}"
        ));
        let db = &self.db;
        let (orders, n, time) = measured(db, async {
            let orders = paid_orders().all(db).await?;
            for order in &orders {
                order.fetch_fk(db, Order::CUSTOMER).await?;
                for item in order.fetch_ifk(db, Order::ITEMS).await? {
                    item.fetch_fk(db, OrderItem::PRODUCT).await?;
                }
                order.fetch_m2m(db, Order::TAGS).await?;
            }
            Ok(orders)
        })
        .await?;
        let items = orders.iter().map(|o| o.items.iter().count()).sum::<usize>() as u64;
        let expected = 1 + 3 * orders.len() as u64 + items;
        self.queries(
            n,
            expected,
            &format!("1 + 3 per order + 1 per item ({} items)", thousands(items)),
        );
        self.time(time);
        self.check_orders(&orders, true);
        sample(&order_sample(&orders));
        self.baseline.set(Some((n, time)));
        self.record("1a lazy, one by one (200 orders)", n, time);
        Ok(())
    }

    async fn lazy_concurrent(&self) -> Result<(), BoxError> {
        title("1b", "the same, concurrent (join_all): still N queries");
        code(&format!(
            "{PAID_ORDERS}
    .all(&db).await?;
try_join_all(orders.iter().map(|order| async move {{
    let (_, _, items) = tokio::try_join!(
        order.fetch(&db, Order::CUSTOMER),
        order.fetch(&db, Order::TAGS),
        order.fetch(&db, Order::ITEMS))?;
    try_join_all(items.iter().map(|i| i.fetch(&db, OrderItem::PRODUCT))).await
}}))
.await?;"
        ));
        let db = &self.db;
        let (orders, n, time) = measured(db, async {
            let orders = paid_orders().all(db).await?;
            try_join_all(orders.iter().map(|order| async move {
                let (_, _, items) = tokio::try_join!(
                    order.fetch(db, Order::CUSTOMER),
                    order.fetch(db, Order::TAGS),
                    order.fetch(db, Order::ITEMS)
                )?;
                try_join_all(items.iter().map(|i| i.fetch(db, OrderItem::PRODUCT))).await
            }))
            .await?;
            Ok(orders)
        })
        .await?;
        let items = orders.iter().map(|o| o.items.iter().count()).sum::<usize>() as u64;
        let expected = 1 + 3 * orders.len() as u64 + items;
        self.queries(n, expected, "the same statements, only overlapped");
        self.time(time);
        self.check_orders(&orders, true);
        self.record("1b lazy + join_all (200 orders)", n, time);
        Ok(())
    }

    async fn fetch_all_related(&self) -> Result<(), BoxError> {
        title("1c", "every relation of one instance at once");
        code(
            "let order = Order::get(&db, &1).await?;
order.fetch_all_related(&db).await?;   // customer, items, tags, concurrently",
        );
        let order = Order::get(&self.db, &1).await?;
        let ((), n, time) = measured(&self.db, order.fetch_all_related(&self.db)).await?;
        self.queries(n, 3, "one per relation: customer, items, tags");
        self.time(time);
        self.check(
            order.customer.state().is_some()
                && order.items.get().is_some()
                && order.tags.get().is_some(),
            || "fetch_all_related left a relation not loaded".to_owned(),
        );
        self.record("1c fetch_all_related (1 order)", n, time);
        Ok(())
    }

    async fn prefetch_on_query(&self) -> Result<(), BoxError> {
        title("2a", "prefetch on the query builder: one query per edge");
        code(&format!(
            "{PAID_ORDERS}
    .prefetch(Order::CUSTOMER)
    .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
    .prefetch(Order::TAGS)
    .all(&db).await?;"
        ));
        let db = &self.db;
        let (orders, n, time) = measured(
            db,
            paid_orders()
                .prefetch(Order::CUSTOMER)
                .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
                .prefetch(Order::TAGS)
                .all(db),
        )
        .await?;
        self.queries(n, 5, "orders, customers, items, products, tags");
        self.time(time);
        self.check_orders(&orders, true);
        sample(&order_sample(&orders));
        if let Some((lazy_n, lazy_time)) = self.baseline.get() {
            note(&format!(
                "vs 1a: {} → {n} queries, {} → {}",
                thousands(lazy_n),
                ms(lazy_time),
                ms(time)
            ));
        }
        match serde_json::to_value(&orders) {
            Ok(graph) => *self.prefetched.borrow_mut() = Some((n, time, graph)),
            Err(err) => self.warn(format!("the prefetched orders do not serialise: {err}")),
        }
        self.record("2a prefetch on the query (200 orders)", n, time);
        Ok(())
    }

    async fn select_related(&self) -> Result<(), BoxError> {
        title("2b", "select_related: the whole tree in one joined query");
        code(&format!(
            "{PAID_ORDERS}
    .select_related(Order::CUSTOMER)
    .select_related(Order::ITEMS.with(OrderItem::PRODUCT))
    .select_related(Order::TAGS)
    .all(&db).await?;"
        ));
        let db = &self.db;
        let (orders, n, time) = measured(
            db,
            paid_orders()
                .select_related(Order::CUSTOMER)
                .select_related(Order::ITEMS.with(OrderItem::PRODUCT))
                .select_related(Order::TAGS)
                .all(db),
        )
        .await?;
        self.queries(
            n,
            1,
            "customers LEFT JOINed; items (+ products), tags as LATERAL arrays",
        );
        self.time(time);
        self.check_orders(&orders, true);
        self.same_graph_as_prefetch(&orders);
        sample(&order_sample(&orders));
        if let Some((prefetch_n, prefetch_time, _)) = &*self.prefetched.borrow() {
            note(&format!(
                "vs 2a: {prefetch_n} → {n} queries, {} → {}: one round trip, but each",
                ms(*prefetch_time),
                ms(time)
            ));
            note("to-many edge is a subquery per parent; balanced (2c) batches those");
        }
        self.record("2b select_related (200 orders)", n, time);
        Ok(())
    }

    async fn balanced(&self) -> Result<(), BoxError> {
        title("2c", "balanced: to-one edges joined, to-many edges batched");
        code(&format!(
            "{PAID_ORDERS}
    .balanced(Order::CUSTOMER)
    .balanced(Order::ITEMS.with(OrderItem::PRODUCT))
    .balanced(Order::TAGS)
    .all(&db).await?;"
        ));
        let db = &self.db;
        let (orders, n, time) = measured(
            db,
            paid_orders()
                .balanced(Order::CUSTOMER)
                .balanced(Order::ITEMS.with(OrderItem::PRODUCT))
                .balanced(Order::TAGS)
                .all(db),
        )
        .await?;
        // The root's page decides the customer, the items' order keys their products.
        let page = ORDERS as usize;
        let (expected, because) = if page <= matrx_orm::BALANCED_JOIN_LIMIT_TO_MANY {
            (3, "orders + customers, items + products, tags")
        } else if page <= matrx_orm::BALANCED_JOIN_LIMIT {
            (4, "orders + customers, items, products, tags")
        } else {
            (5, "orders, customers, items, products, tags")
        };
        self.queries(n, expected, because);
        self.time(time);
        self.check_orders(&orders, true);
        self.same_graph_as_prefetch(&orders);
        note("to-one edges (customer, product) join their parent's statement, as an index");
        note(&format!(
            "probe per row, when it has ≤ {} parents (BALANCED_JOIN_LIMIT; {} under a batched",
            matrx_orm::BALANCED_JOIN_LIMIT,
            matrx_orm::BALANCED_JOIN_LIMIT_TO_MANY
        ));
        note(&format!(
            "to-many edge), else they are batched; here {ORDERS} orders, {ORDERS} order keys;"
        ));
        note("to-many edges (items, tags) are batched: one statement each");
        self.record("2c balanced (200 orders)", n, time);
        Ok(())
    }

    async fn prefetch_on_vec(&self) -> Result<(), BoxError> {
        title("3", "prefetch_related on a Vec you already have");
        code(
            "let orders: Vec<Order> = Order::raw(&db,
    \"SELECT * FROM orders WHERE status = $1 ORDER BY id LIMIT 200\",
    &[&\"paid\"]).await?;                // from anywhere: query, raw SQL, cache
matrx_orm::prefetch_related(&db, &orders, Order::CUSTOMER).await?;
matrx_orm::prefetch_related(&db, &orders,
    Order::ITEMS.with(OrderItem::PRODUCT)).await?;",
        );
        let db = &self.db;
        let orders = Order::raw(
            db,
            "SELECT * FROM orders WHERE status = $1 ORDER BY id LIMIT 200",
            &[&"paid"],
        )
        .await?;
        let ((), n, time) = measured(db, async {
            matrx_orm::prefetch_related(db, &orders, Order::CUSTOMER).await?;
            matrx_orm::prefetch_related(db, &orders, Order::ITEMS.with(OrderItem::PRODUCT)).await
        })
        .await?;
        self.queries(n, 3, "customers, items, products (the Vec was free)");
        self.time(time);
        self.check_orders(&orders, false);
        sample(&order_sample(&orders));
        let ((), again, _) = measured(db, async {
            matrx_orm::prefetch_related(db, &orders, Order::CUSTOMER).await?;
            matrx_orm::prefetch_related(db, &orders, Order::ITEMS.with(OrderItem::PRODUCT)).await
        })
        .await?;
        self.check(again == 0, || {
            format!("prefetching a loaded Vec again ran {again} queries, not 0")
        });
        note(&format!(
            "running both calls again: {again} queries (already loaded)"
        ));
        self.record("3  prefetch_related on a Vec", n, time);
        Ok(())
    }

    async fn self_reference(&self) -> Result<(), BoxError> {
        title("4a", "nested, through a self-reference");
        code(
            "let referred = Customer::query()
    .filter(Customer::REFERRED_BY.is_not_null())
    .prefetch(Customer::REFERRER.with(Customer::ORDERS))
    .all(&db).await?;",
        );
        let db = &self.db;
        let (customers, n, time) = measured(
            db,
            Customer::query()
                .filter(Customer::REFERRED_BY.is_not_null())
                .order_by(Customer::ID.asc())
                .prefetch(Customer::REFERRER.with(Customer::ORDERS))
                .all(db),
        )
        .await?;
        self.queries(n, 3, "customers, their referrers, the referrers' orders");
        self.time(time);
        let by_customer = self.shop.orders_by_customer();
        let mut bad = 0;
        for c in &customers {
            match c.referrer.get() {
                Some(r) if Some(r.id) == c.referred_by => {
                    let expected = by_customer.get(&r.id).map_or(0, Vec::len);
                    if r.orders.get().map(<[_]>::len) != Some(expected) {
                        bad += 1;
                    }
                }
                _ => bad += 1,
            }
        }
        self.check(bad == 0, || {
            format!("{bad} referred customers loaded a wrong referrer or orders")
        });
        let lines = customers
            .iter()
            .take(2)
            .filter_map(|c| {
                let r = c.referrer.get()?;
                Some(format!(
                    "{} (#{}) ← referred by {} (#{}), {} orders",
                    c.name,
                    c.id,
                    r.name,
                    r.id,
                    r.orders.iter().count()
                ))
            })
            .collect::<Vec<_>>();
        sample(&lines);
        self.record("4a self-reference, nested", n, time);
        Ok(())
    }

    async fn composite_keys(&self) -> Result<(), BoxError> {
        title(
            "4b",
            "composite keys: FK of two columns, M2M to a composite PK",
        );
        code(
            "let products = Product::query()
    .prefetch(Product::STOCK.with(Stock::WAREHOUSE))  // stock(region, code)
    .prefetch(Product::WAREHOUSES)        // M2M to warehouses(region, code)
    .all(&db).await?;",
        );
        let db = &self.db;
        let (products, n, time) = measured(
            db,
            Product::query()
                .order_by(Product::ID.asc())
                .prefetch(Product::STOCK.with(Stock::WAREHOUSE))
                .prefetch(Product::WAREHOUSES)
                .all(db),
        )
        .await?;
        self.queries(n, 4, "products, stock, warehouses (FK), warehouses (M2M)");
        self.time(time);
        let mut bad = 0;
        for (product, listed) in products.iter().zip(&self.shop.product_warehouses) {
            let stock_ok = product.stock.get().is_some_and(|rows| {
                rows.len() == listed.len()
                    && rows.iter().all(|s| {
                        s.warehouse
                            .get()
                            .is_some_and(|w| (&w.region, w.code) == (&s.region, s.code))
                    })
            });
            let mut got: Vec<(String, i32)> = product
                .warehouses
                .iter()
                .map(|w| (w.region.clone(), w.code))
                .collect();
            got.sort();
            let mut want = listed.clone();
            want.sort();
            if !stock_ok || got != want || products.len() != self.shop.products.len() {
                bad += 1;
            }
        }
        self.check(bad == 0, || {
            format!("{bad} products loaded wrong stock or warehouses")
        });
        if let Some(p) = products.first() {
            let stock = p
                .stock
                .iter()
                .filter_map(|s| Some(format!("{} in {}", s.qty, s.warehouse.get()?.name)))
                .collect::<Vec<_>>()
                .join(", ");
            let listed = p
                .warehouses
                .iter()
                .map(|w| format!("{}/{}", w.region, w.code))
                .collect::<Vec<_>>()
                .join(", ");
            sample(&[
                format!("{} ({}): {stock}", p.name, p.sku),
                format!("listed in {listed}"),
            ]);
        }
        self.record("4b composite keys (100 products)", n, time);
        Ok(())
    }

    async fn top_n_per_parent(&self) -> Result<(), BoxError> {
        title(
            "5a",
            "customised edge: the 3 newest orders of each customer",
        );
        code(
            "let customers = Customer::query()
    .prefetch(Customer::ORDERS
        .order_by(Order::PLACED_AT.desc())
        .limit_per_parent(3))
    .all(&db).await?;",
        );
        let db = &self.db;
        let (customers, n, time) = measured(
            db,
            Customer::query()
                .order_by(Customer::ID.asc())
                .prefetch(
                    Customer::ORDERS
                        .order_by(Order::PLACED_AT.desc())
                        .limit_per_parent(3),
                )
                .all(db),
        )
        .await?;
        self.queries(n, 2, "customers, orders (top 3 per customer, in SQL)");
        self.time(time);
        let by_customer = self.shop.orders_by_customer();
        let mut bad = 0;
        for c in &customers {
            let mut want: Vec<_> = by_customer
                .get(&c.id)
                .into_iter()
                .flatten()
                .map(|o| o.placed_at)
                .collect();
            want.sort_by(|a, b| b.cmp(a));
            want.truncate(3);
            let got: Vec<_> = c.orders.iter().map(|o| o.placed_at).collect();
            if got != want {
                bad += 1;
            }
        }
        self.check(bad == 0, || {
            format!("{bad} customers got other than their 3 newest orders")
        });
        if let Some(c) = customers.first() {
            let total = by_customer.get(&c.id).map_or(0, Vec::len);
            let dates = c
                .orders
                .iter()
                .map(|o| format!("#{} {}", o.id, o.placed_at.format("%b %d")))
                .collect::<Vec<_>>()
                .join(", ");
            sample(&[
                format!("{} has {total} orders; the newest 3:", c.name),
                format!("  {dates}"),
            ]);
        }
        self.record("5a top 3 per parent (200 customers)", n, time);
        Ok(())
    }

    async fn filtered_edge(&self) -> Result<(), BoxError> {
        title("5b", "customised edge: only cancelled orders");
        code(
            "let customers = Customer::query()
    .prefetch(Customer::ORDERS.filter(Order::STATUS.eq(\"cancelled\")))
    .all(&db).await?;",
        );
        let db = &self.db;
        let (customers, n, time) = measured(
            db,
            Customer::query()
                .order_by(Customer::ID.asc())
                .prefetch(Customer::ORDERS.filter(Order::STATUS.eq("cancelled")))
                .all(db),
        )
        .await?;
        self.queries(n, 2, "customers, their cancelled orders");
        self.time(time);
        let by_customer = self.shop.orders_by_customer();
        let mut bad = 0;
        for c in &customers {
            let want = by_customer
                .get(&c.id)
                .into_iter()
                .flatten()
                .filter(|o| o.status == "cancelled")
                .count();
            let all_cancelled = c.orders.iter().all(|o| o.status == "cancelled");
            if c.orders.get().map(<[_]>::len) != Some(want) || !all_cancelled {
                bad += 1;
            }
        }
        self.check(bad == 0, || {
            format!("{bad} customers loaded a wrong set of cancelled orders")
        });
        if let Some(c) = customers.iter().find(|c| c.orders.iter().count() >= 2) {
            let ids = c
                .orders
                .iter()
                .map(|o| format!("#{}", o.id))
                .collect::<Vec<_>>()
                .join(", ");
            sample(&[format!(
                "{}: {} cancelled ({ids})",
                c.name,
                c.orders.iter().count()
            )]);
        }
        self.record("5b filtered edge (200 customers)", n, time);
        Ok(())
    }

    async fn string_paths(&self) -> Result<(), BoxError> {
        title("6", "string paths, Django style");
        code(&format!(
            "{PAID_ORDERS}
    .prefetch_path(\"customer\")?
    .prefetch_path(\"items__product\")?
    .all(&db).await?;"
        ));
        let built = paid_orders()
            .prefetch_path("customer")
            .and_then(|q| q.prefetch_path("items__product"));
        let query = built?;
        let db = &self.db;
        let (orders, n, time) = measured(db, query.all(db)).await?;
        self.queries(n, 4, "orders, customers, items, products");
        self.time(time);
        self.check_orders(&orders, false);
        sample(&order_sample(&orders));
        if let Err(err) = Order::query().prefetch_path("itemz") {
            note("a typo is an error that lists the valid names:");
            for part in err.to_string().split("; ") {
                note(&format!("  {part}"));
            }
        } else {
            self.warn("prefetch_path(\"itemz\") was accepted".to_owned());
        }
        self.record("6  string paths (200 orders)", n, time);
        Ok(())
    }

    async fn strict_mode(&self) -> Result<(), BoxError> {
        title("7", "strict mode: lazy loads become errors");
        code(&format!(
            "let mut session = db.session();
session.set_strict(true);
{PAID_ORDERS}
    .prefetch(Order::CUSTOMER)
    .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
    .all(&session).await?;
orders[0].fetch(&session, Order::CUSTOMER).await?;  // loaded: Ok
orders[0].fetch(&session, Order::TAGS).await;       // not loaded: Err"
        ));
        let mut session = self.db.session();
        session.set_strict(true);
        let started = Instant::now();
        let orders = paid_orders()
            .prefetch(Order::CUSTOMER)
            .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
            .all(&session)
            .await?;
        let load_queries = session.query_count();
        let load_time = started.elapsed();
        self.queries(load_queries, 4, "orders, customers, items, products");
        self.time(load_time);

        // Walk the whole graph, through `fetch` too: everything is loaded already.
        let before = session.query_count();
        let mut read = 0usize;
        for order in &orders {
            if order.fetch(&session, Order::CUSTOMER).await?.is_some() {
                read += 1;
            }
            for item in order.fetch(&session, Order::ITEMS).await? {
                if item.fetch(&session, OrderItem::PRODUCT).await?.is_some() {
                    read += 1;
                }
            }
        }
        let walk = session.query_count() - before;
        self.check(walk == 0, || {
            format!("reading the prefetched graph ran {walk} queries, not 0")
        });
        println!(
            "  {:<9}{walk} queries to read {} customers and products back",
            "reading",
            thousands(read as u64)
        );

        let Some(first) = orders.first() else {
            self.warn("the strict-mode query returned no orders".to_owned());
            return Ok(());
        };
        let before = session.query_count();
        match first.fetch(&session, Order::TAGS).await {
            Err(err @ matrx_orm::Error::StrictLoad { .. }) => {
                println!("  {:<9}Err: {err}", "lazy");
            }
            Err(other) => self.warn(format!("expected a strict-mode error, got: {other}")),
            Ok(_) => self.warn("a lazy load succeeded in strict mode".to_owned()),
        }
        let refused = session.query_count() - before;
        self.check(refused == 0, || {
            format!("the refused lazy load ran {refused} queries")
        });
        self.record(
            "7  strict mode (load + read)",
            load_queries + walk,
            load_time,
        );
        Ok(())
    }

    async fn session_batching(&self) -> Result<(), BoxError> {
        title("8", "lazy code in a session: concurrent loads batched");
        code(&format!(
            "async fn one_order(s: &impl Executor, id: i64) -> Result<..> {{
    let order = Order::get(s, &id).await?;
    let (customer, tags) = futures_util::join!(
        order.fetch(s, Order::CUSTOMER),
        order.fetch(s, Order::TAGS));
    Ok((order, customer?, tags?))
}}
let session = db.session();
try_join_all((1..={PIPELINES}).map(|id| one_order(&session, id))).await?;
try_join_all((1..={PIPELINES}).map(|id| one_order(&db, id))).await?;  // no session"
        ));
        let db = &self.db;
        let ids: Vec<i64> = (1..=PIPELINES).collect();
        let session = db.session();
        let (batched, n, time) = measured(
            db,
            try_join_all(ids.iter().map(|&id| one_order(&session, id))),
        )
        .await?;
        self.queries(
            n,
            3,
            "in the session: orders, customers, tags, one batch each",
        );
        self.time(time);
        let (plain, plain_n, plain_time) =
            measured(db, try_join_all(ids.iter().map(|&id| one_order(db, id)))).await?;
        self.queries(
            plain_n,
            3 * PIPELINES as u64,
            &format!("on &db: one per call, 3 per order × {PIPELINES}"),
        );
        self.time(plain_time);
        self.check_pipelines(&batched);
        self.check_pipelines(&plain);

        // Orders of one customer got one instance of it from the session's batch.
        let mut by_customer: HashMap<i64, &Arc<Customer>> = HashMap::new();
        let mut shared = 0;
        for (_, customer, _) in &batched {
            let Some(customer) = customer else { continue };
            match by_customer.get(&customer.id) {
                Some(seen) if Arc::ptr_eq(seen, customer) => shared += 1,
                Some(_) => self.warn(format!(
                    "customer #{} is two instances in one session",
                    customer.id
                )),
                None => {
                    by_customer.insert(customer.id, customer);
                }
            }
        }
        if let Some((order, customer, tags)) = batched.iter().find(|(_, _, t)| !t.is_empty()) {
            let tags: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
            sample(&[format!(
                "order #{} → {}, tags: {}",
                order.id,
                customer.as_ref().map_or("(none)", |c| c.email.as_str()),
                tags.join(", ")
            )]);
        }
        note(&format!(
            "wave 1: {PIPELINES} gets, one query; wave 2: {PIPELINES} customer and {PIPELINES} tag loads,"
        ));
        note(&format!(
            "one query per edge; {PIPELINES} orders name {} customers: each key sent once,",
            by_customer.len()
        ));
        note(&format!(
            "and orders of one customer share one Arc ({shared} such orders here)"
        ));
        self.record("8  lazy code in a session (25 orders)", n, time);
        self.record("8  the same code on &db (25 orders)", plain_n, plain_time);
        Ok(())
    }

    async fn cache_hits(&self, schema: &TestSchema) -> Result<(), BoxError> {
        title(
            "9",
            "cache hits: the session's identity map, the shared cache",
        );
        let by_customer = self.shop.orders_by_customer();
        let Some((customer_id, [a_id, b_id, c_id])) = by_customer
            .iter()
            .filter_map(|(&id, orders)| match orders.as_slice() {
                [a, b, c, ..] => Some((id, [a.id, b.id, c.id])),
                _ => None,
            })
            .min_by_key(|(id, _)| *id)
        else {
            self.warn("no customer has three orders".to_owned());
            return Ok(());
        };
        code(&format!(
            "let s = db.session();
let a = Order::get(&s, &{a_id}).await?;     // three orders of customer #{customer_id}
let b = Order::get(&s, &{b_id}).await?;
let c = Order::get(&s, &{c_id}).await?;
let mut customer = Customer::get(&s, &{customer_id}).await?;"
        ));
        let db = &self.db;
        let s = db.session();
        let a = Order::get(&s, &a_id).await?;
        let b = Order::get(&s, &b_id).await?;
        let c = Order::get(&s, &c_id).await?;
        let mut customer = Customer::get(&s, &customer_id).await?;
        let original = customer.email.clone();
        println!("    {:<46}{:<20}queries", "call", "result");

        let (first, n, _) = measured(db, a.fetch(&s, Order::CUSTOMER)).await?;
        let result = first
            .as_ref()
            .map_or("(none)".to_owned(), |c| format!("{} (#{})", c.name, c.id));
        let ok = first.as_ref().is_some_and(|c| c.id == customer_id);
        self.call_row(n, 1, "a.fetch(&s, Order::CUSTOMER)", result, ok);

        let (second, hit_n, hit_time) = measured(db, b.fetch(&s, Order::CUSTOMER)).await?;
        let same = matches!((&first, &second), (Some(x), Some(y)) if Arc::ptr_eq(x, y));
        let call = "b.fetch(&s, Order::CUSTOMER)";
        self.call_row(hit_n, 0, call, "the same Arc".to_owned(), same);

        let changed = format!("vip.{original}");
        customer.email = changed.clone();
        let ((), n, _) = measured(db, customer.update(&s)).await?;
        let call = "customer.email = ..; customer.update(&s)";
        self.call_row(n, 1, call, "saved".to_owned(), customer.email == changed);

        let (third, n, _) = measured(db, c.fetch(&s, Order::CUSTOMER)).await?;
        let ok = third.as_ref().is_some_and(|c| c.email == changed);
        let result = if ok { "the new email" } else { "a stale email" };
        self.call_row(n, 1, "c.fetch(&s, Order::CUSTOMER)", result.to_owned(), ok);
        // Put the data back as the dataset wrote it.
        customer.email = original.clone();
        customer.update(&s).await?;
        println!();
        note("one instance per row in a session; a write through the ORM evicts it");
        println!();

        code(
            "let cached = Db::builder(url)
    .search_path(schema)
    .cache::<Customer>(CachePolicy::ShortTerm)   // ten minutes
    .connect().await?;",
        );
        let cached = Db::builder(schema.url())
            .search_path(schema.name())
            .pool_size(2)
            .cache::<Customer>(CachePolicy::ShortTerm)
            .connect()
            .await?;
        println!("    {:<46}{:<20}queries", "call", "result");
        let call = format!("Customer::get(&cached.session(), &{customer_id})");
        let (got, n, _) = measured(&cached, Customer::get(&cached.session(), &customer_id)).await?;
        self.call_row(
            n,
            1,
            &call,
            "a miss: stored".to_owned(),
            got.email == original,
        );
        let (got, shared_n, shared_time) =
            measured(&cached, Customer::get(&cached.session(), &customer_id)).await?;
        let ok = got.id == customer_id && got.email == original;
        self.call_row(shared_n, 0, &call, "a hit".to_owned(), ok);
        let stats = cached.cache_stats::<Customer>();
        println!(
            "    {:<46}hits {}, misses {}, {} row held",
            "cached.cache_stats::<Customer>()", stats.hits, stats.misses, stats.len
        );
        self.check((stats.hits, stats.misses, stats.len) == (1, 1, 1), || {
            format!("expected 1 hit, 1 miss, 1 row cached: {stats:?}")
        });
        println!();
        note("each hit decodes a fresh instance: nothing one session attached leaks");
        note("into another; every write through the ORM evicts the row");
        self.record("9  identity map hit (session)", hit_n, hit_time);
        self.record("9  shared cache hit (next session)", shared_n, shared_time);
        Ok(())
    }

    async fn m2m_writes(&self) -> Result<(), BoxError> {
        title("10", "many-to-many writes: one statement each");
        let db = self.db.clone();
        let mut order = Order::get(&db, &1).await?;
        let mut product = Product::get(&db, &1).await?;
        code(
            "let mut order = Order::get(&db, &1).await?;
let mut product = Product::get(&db, &1).await?;",
        );
        println!("    {:<46}{:<20}queries", "call", "result");
        // What the links should be after each call, starting from the generated ones.
        let mut linked: BTreeSet<i64> = self
            .shop
            .order_tags
            .first()
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let started = Instant::now();
        let before = db.query_count();

        let mark = db.query_count();
        let n = order.m2m_add(&db, Order::TAGS, [1, 2, 3]).await?;
        let want = [1, 2, 3].into_iter().filter(|t| linked.insert(*t)).count() as u64;
        let call = "order.m2m_add(&db, Order::TAGS, [1, 2, 3])";
        self.write_row(
            db.query_count() - mark,
            call,
            format!("{n} added"),
            n == want,
        );

        let mark = db.query_count();
        let n = order.m2m_add(&db, Order::TAGS, [3, 4]).await?;
        let want = [3, 4].into_iter().filter(|t| linked.insert(*t)).count() as u64;
        let call = "order.m2m_add(.., [3, 4])";
        self.write_row(
            db.query_count() - mark,
            call,
            format!("{n} added (3 was)"),
            n == want,
        );

        let mark = db.query_count();
        let n = order.m2m_remove(&db, Order::TAGS, [1, 9]).await?;
        let want = [1, 9].into_iter().filter(|t| linked.remove(t)).count() as u64;
        let call = "order.m2m_remove(.., [1, 9])";
        self.write_row(
            db.query_count() - mark,
            call,
            format!("{n} removed"),
            n == want,
        );

        let mark = db.query_count();
        let out = order.m2m_set(&db, Order::TAGS, [2, 5]).await?;
        let wanted = BTreeSet::from([2, 5]);
        let added = wanted.difference(&linked).count() as u64;
        let removed = linked.difference(&wanted).count() as u64;
        linked = wanted;
        let result = format!("+{} -{}", out.added, out.removed);
        let ok = (out.added, out.removed) == (added, removed);
        self.write_row(
            db.query_count() - mark,
            "order.m2m_set(.., [2, 5])",
            result,
            ok,
        );

        let mark = db.query_count();
        let tags = order.fetch(&db, Order::TAGS).await?;
        let names = tags
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let ids: BTreeSet<i64> = tags.iter().map(|t| t.id).collect();
        self.write_row(
            db.query_count() - mark,
            "order.fetch(&db, Order::TAGS)",
            names,
            ids == linked,
        );

        let mark = db.query_count();
        let n = order.m2m_clear(&db, Order::TAGS).await?;
        let call = "order.m2m_clear(&db, Order::TAGS)";
        self.write_row(
            db.query_count() - mark,
            call,
            format!("{n} removed"),
            n == linked.len() as u64,
        );

        let keys = [("eu".to_owned(), 1), ("ap".to_owned(), 2)];
        let mark = db.query_count();
        let out = product
            .m2m_set(&db, Product::WAREHOUSES, keys.clone())
            .await?;
        let listed: BTreeSet<(String, i32)> = self
            .shop
            .product_warehouses
            .first()
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let wanted: BTreeSet<(String, i32)> = keys.into_iter().collect();
        let added = wanted.difference(&listed).count() as u64;
        let removed = listed.difference(&wanted).count() as u64;
        self.write_row(
            db.query_count() - mark,
            "product.m2m_set(&db, Product::WAREHOUSES,",
            format!("+{} -{}", out.added, out.removed),
            (out.added, out.removed) == (added, removed),
        );
        println!("        [(\"eu\".into(), 1), (\"ap\".into(), 2)])");

        let n = db.query_count() - before;
        let time = started.elapsed();
        println!();
        self.queries(n, 7, "one statement per call, 7 calls");
        self.time(time);
        self.record("10 m2m writes (7 calls)", n, time);
        Ok(())
    }

    fn summary(&self, total: Duration) {
        let head = "══ summary ";
        println!("\n{head}{}", "═".repeat(74 - head.chars().count()));
        println!("  {:<38}{:>9}{:>12}", "strategy", "queries", "time");
        for row in self.rows.borrow().iter() {
            match row.cost {
                Some((n, time)) => {
                    println!("  {:<38}{:>9}{:>12}", row.label, thousands(n), ms(time))
                }
                None => println!("  {:<38}{:>21}", row.label, row.note),
            }
        }
        println!();
        if self.problems.get() == 0 {
            println!("  every query count and loaded graph matched what the tour claims");
        } else {
            println!(
                "  !!! {} check(s) FAILED: see the WARNING lines above",
                self.problems.get()
            );
        }
        println!("  whole tour, data included: {:.1} s", total.as_secs_f64());
    }

    // ----- checks and output ----------------------------------------------------

    /// Checks loaded orders against the written data: customer, items (with
    /// products) and, if `with_tags`, tags.
    fn check_orders(&self, orders: &[Order], with_tags: bool) {
        let mut bad = 0;
        for o in orders {
            let customer_ok = o.customer.get().is_some_and(|c| c.id == o.customer_id);
            let items = o.items.get().unwrap_or(&[]);
            let items_ok = o.items.get().is_some()
                && items.len() == self.item_counts.get(&o.id).copied().unwrap_or(0)
                && items
                    .iter()
                    .all(|i| i.product.get().is_some_and(|p| p.id == i.product_id));
            let tags_ok = !with_tags || {
                let want = usize::try_from(o.id - 1)
                    .ok()
                    .and_then(|i| self.shop.order_tags.get(i));
                let got: Vec<i64> = o.tags.iter().map(|t| t.id).collect();
                o.tags.get().is_some() && want == Some(&got)
            };
            if !(customer_ok && items_ok && tags_ok) {
                bad += 1;
            }
        }
        let wrong_size = orders.len() as u64 != ORDERS;
        self.check(bad == 0 && !wrong_size, || {
            format!(
                "{bad} of {} orders loaded a wrong graph (expected {ORDERS} orders)",
                orders.len()
            )
        });
    }

    /// Compares loaded orders with the graph step 2a prefetched, field by field.
    fn same_graph_as_prefetch(&self, orders: &[Order]) {
        let prefetched = self.prefetched.borrow();
        let Some((_, _, want)) = &*prefetched else {
            self.warn("no prefetched graph to compare with (step 2a)".to_owned());
            return;
        };
        let got = match serde_json::to_value(orders) {
            Ok(got) => got,
            Err(err) => {
                self.warn(format!("the loaded orders do not serialise: {err}"));
                return;
            }
        };
        if &got == want {
            println!(
                "  {:<9}✓ the same graph as 2a's prefetch (compared as serde_json values)",
                "graph"
            );
            return;
        }
        let empty = Vec::new();
        let (got, want) = (
            got.as_array().unwrap_or(&empty),
            want.as_array().unwrap_or(&empty),
        );
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        self.warn(match first.and_then(|i| orders.get(i)) {
            Some(order) => format!(
                "the graph differs from 2a's prefetch, first at order #{}",
                order.id
            ),
            None => format!(
                "the graph differs from 2a's prefetch: {} orders, not {}",
                got.len(),
                want.len()
            ),
        });
    }

    async fn questions_across_relations(&self) -> Result<(), BoxError> {
        title("11", "questions: relation filters, counts, grouped values");
        code(
            "let unhappy = Customer::query()
    .filter(Customer::ORDERS.any(Order::STATUS.eq(\"cancelled\")))
    .all(&db).await?;
let counted = Customer::query()
    .annotate(Customer::ORDERS.count())
    .all(&db).await?;          // Vec<(Customer, i64)>
let per_status = Order::query()
    .values((Order::STATUS, count(), Order::TOTAL_CENTS.sum()))
    .group_by(Order::STATUS)
    .order_by(count().desc())
    .all(&db).await?;          // Vec<(String, i64, Option<i64>)>",
        );
        let db = &self.db;
        let by_customer = self.shop.orders_by_customer();
        let cancelled = |id: i64| {
            by_customer
                .get(&id)
                .is_some_and(|os| os.iter().any(|o| o.status == "cancelled"))
        };

        // A relation filter: one EXISTS semi-join, against the same question by hand.
        let (unhappy, n, time) = measured(
            db,
            Customer::query()
                .filter(Customer::ORDERS.any(Order::STATUS.eq("cancelled")))
                .order_by(Customer::ID.asc())
                .all(db),
        )
        .await?;
        self.queries(
            n,
            1,
            "one statement: an EXISTS semi-join, no repeated customer",
        );
        // The same columns the ORM reads, the same semi-join.
        let by_hand = "SELECT c.id, c.name, c.email, c.created_at, c.referred_by \
                       FROM customers c WHERE EXISTS \
                       (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.status = $1) \
                       ORDER BY c.id";
        let (hand, _, hand_time) = measured(db, db.query_sql(by_hand, &[&"cancelled"])).await?;
        versus_hand(time, hand_time);
        let got: Vec<i64> = unhappy.iter().map(|c| c.id).collect();
        let want: Vec<i64> = self
            .shop
            .customers
            .iter()
            .map(|c| c.id)
            .filter(|&id| cancelled(id))
            .collect();
        let hand: Vec<i64> = hand.iter().map(|r| r.get(0)).collect();
        self.check(got == want && got == hand, || {
            format!(
                "{} customers with a cancelled order, expected {} (by hand: {})",
                got.len(),
                want.len(),
                hand.len()
            )
        });
        sample(&[format!(
            "{} of {} customers have a cancelled order",
            got.len(),
            self.shop.customers.len()
        )]);
        self.record("11a relation filter", n, time);

        // A count annotation: one scalar subquery per customer row.
        let (counted, n, time) = measured(
            db,
            Customer::query()
                .order_by(Customer::ID.asc())
                .annotate(Customer::ORDERS.count())
                .all(db),
        )
        .await?;
        self.queries(n, 1, "one statement: the count beside each customer");
        let by_hand = "SELECT c.id, c.name, c.email, c.created_at, c.referred_by, \
                       (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n \
                       FROM customers c ORDER BY c.id";
        let (hand, _, hand_time) = measured(db, db.query_sql(by_hand, &[])).await?;
        versus_hand(time, hand_time);
        let got: Vec<(i64, i64)> = counted.iter().map(|(c, n)| (c.id, *n)).collect();
        let want: Vec<(i64, i64)> = self
            .shop
            .customers
            .iter()
            .map(|c| (c.id, by_customer.get(&c.id).map_or(0, |os| os.len() as i64)))
            .collect();
        let hand: Vec<(i64, i64)> = hand.iter().map(|r| (r.get(0), r.get(5))).collect();
        self.check(got == want && got == hand, || {
            "the order counts differ from the data written".to_owned()
        });
        if let Some((c, n)) = counted.iter().max_by_key(|(_, n)| *n) {
            sample(&[format!("most orders: {} with {n}", c.name)]);
        }
        self.record("11b count annotation", n, time);

        // A grouped question: orders and revenue per status, the most frequent first.
        let (per_status, n, time) = measured(
            db,
            Order::query()
                .values((Order::STATUS, count(), Order::TOTAL_CENTS.sum()))
                .group_by(Order::STATUS)
                .order_by(count().desc())
                .order_by(Order::STATUS.asc())
                .all(db),
        )
        .await?;
        self.queries(
            n,
            1,
            "one statement: GROUP BY, typed tuples, no model built",
        );
        let by_hand = "SELECT status, count(*), sum(total_cents)::int8 FROM orders \
                       GROUP BY status ORDER BY count(*) DESC, status";
        let (hand, _, hand_time) = measured(db, db.query_sql(by_hand, &[])).await?;
        versus_hand(time, hand_time);
        let mut want: HashMap<&str, (i64, i64)> = HashMap::new();
        for order in &self.shop.orders {
            let entry = want.entry(order.status.as_str()).or_default();
            entry.0 += 1;
            entry.1 += order.total_cents;
        }
        let mut want: Vec<(String, i64, Option<i64>)> = want
            .into_iter()
            .map(|(status, (n, total))| (status.to_owned(), n, Some(total)))
            .collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let hand: Vec<(String, i64, Option<i64>)> = hand
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        self.check(per_status == want && per_status == hand, || {
            "the per-status counts differ from the data written".to_owned()
        });
        if let Some((status, n, total)) = per_status.first() {
            sample(&[format!(
                "most frequent status: {status}, {n} orders, {} cents",
                total.unwrap_or(0)
            )]);
        }
        self.record("11c grouped values", n, time);
        Ok(())
    }

    fn queries(&self, counted: u64, expected: u64, because: &str) {
        if counted == expected {
            println!("  {:<9}{:<7}✓ {because}", "queries", thousands(counted));
        } else {
            println!(
                "  {:<9}{:<7}✗ expected {}: {because}",
                "queries",
                thousands(counted),
                thousands(expected)
            );
            self.warn(format!(
                "expected {expected} queries here, counted {counted}"
            ));
        }
    }

    fn write_row(&self, queries: u64, call: &str, result: String, ok: bool) {
        self.call_row(queries, 1, call, result, ok);
    }

    /// One row of a call table: the call, its result and the queries it ran.
    fn call_row(&self, queries: u64, expected: u64, call: &str, result: String, ok: bool) {
        println!("    {call:<46}{result:<20}{queries}");
        if !ok {
            self.warn(format!("{call} gave an unexpected result: {result}"));
        }
        if queries != expected {
            self.warn(format!("{call} ran {queries} queries, not {expected}"));
        }
    }

    /// Checks step 8's pipelines: each order, its customer and its tags as written.
    fn check_pipelines(&self, loaded: &[Pipeline]) {
        let mut bad = 0;
        for (i, (order, customer, tags)) in loaded.iter().enumerate() {
            let id = i as i64 + 1;
            let want_tags = usize::try_from(id - 1)
                .ok()
                .and_then(|i| self.shop.order_tags.get(i));
            let got_tags: Vec<i64> = tags.iter().map(|t| t.id).collect();
            let ok = order.id == id
                && customer.as_ref().is_some_and(|c| c.id == order.customer_id)
                && order.customer.get().is_some()
                && order.tags.get().is_some()
                && want_tags == Some(&got_tags);
            if !ok {
                bad += 1;
            }
        }
        let wrong_size = loaded.len() as i64 != PIPELINES;
        self.check(bad == 0 && !wrong_size, || {
            format!(
                "{bad} of {} pipelines loaded a wrong order, customer or tags",
                loaded.len()
            )
        });
    }

    fn time(&self, elapsed: Duration) {
        println!("  {:<9}{}", "time", ms(elapsed));
    }

    fn check(&self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.warn(message());
        }
    }

    fn warn(&self, message: String) {
        self.problems.set(self.problems.get() + 1);
        println!("  !!! WARNING: {message} !!!");
    }

    fn record(&self, label: &'static str, queries: u64, time: Duration) {
        self.rows.borrow_mut().push(SummaryRow {
            label,
            cost: Some((queries, time)),
            note: "",
        });
    }
}

/// Two or three lines about the first order: customer, items, tags.
fn order_sample(orders: &[Order]) -> Vec<String> {
    // The first order with tags and a few items shows the most.
    let interesting = orders
        .iter()
        .find(|o| o.tags.iter().next().is_some() && o.items.iter().count() >= 3);
    let Some(order) = interesting.or(orders.first()) else {
        return vec!["(no orders)".to_owned()];
    };
    let email = order
        .customer
        .get()
        .map_or("(not loaded)", |c| c.email.as_str());
    let mut lines = vec![format!(
        "order #{} → {email}, {}",
        order.id,
        money(order.total_cents)
    )];
    let items = order.items.get().unwrap_or(&[]);
    let mut shown: Vec<String> = items
        .iter()
        .take(2)
        .map(|i| {
            format!(
                "{} × {}",
                i.quantity,
                i.product.get().map_or("?", |p| p.name.as_str())
            )
        })
        .collect();
    if items.len() > 2 {
        shown.push(format!("+{} more", items.len() - 2));
    }
    lines.push(format!("  items: {}", shown.join(", ")));
    if order.tags.get().is_some() {
        let tags: Vec<&str> = order.tags.iter().map(|t| t.name.as_str()).collect();
        lines.push(format!(
            "  tags:  {}",
            if tags.is_empty() {
                "(none)".to_owned()
            } else {
                tags.join(", ")
            }
        ));
    }
    lines
}

fn title(number: &str, text: &str) {
    let head = format!("── {number} · {text} ");
    println!(
        "\n{head}{}",
        "─".repeat(74usize.saturating_sub(head.chars().count()))
    );
}

fn code(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
    println!();
}

fn sample(lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        println!("  {:<9}{line}", if i == 0 { "sample" } else { "" });
    }
}

fn note(text: &str) {
    println!("  {:<9}{text}", "note");
}

/// Prints a step's time next to the same question answered by hand-written SQL.
fn versus_hand(time: Duration, hand_time: Duration) {
    println!(
        "  {:<9}{} (hand-written SQL: {}, ratio {:.2})",
        "time",
        ms(time),
        ms(hand_time),
        time.as_secs_f64() / hand_time.as_secs_f64().max(1e-9)
    );
}

fn ms(elapsed: Duration) -> String {
    let millis = elapsed.as_secs_f64() * 1000.0;
    if millis < 0.1 {
        // Cache hits: a tenth of a millisecond would print as 0.0.
        format!("{millis:.3} ms")
    } else {
        format!("{millis:.1} ms")
    }
}

fn money(cents: i64) -> String {
    format!(
        "${}.{:02}",
        thousands(cents.unsigned_abs() / 100),
        cents.unsigned_abs() % 100
    )
}

/// `1612` → `1,612`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // Groups of three digits from the right; the digits are ASCII, so every group is
    // valid UTF-8.
    let mut groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .map(|group| std::str::from_utf8(group).unwrap_or_default())
        .collect();
    groups.reverse();
    groups.join(",")
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let path = match path.find("password=") {
        Some(at) => {
            let tail = &path[at + "password=".len()..];
            let end = tail.find('&').unwrap_or(tail.len());
            format!("{}password=***{}", &path[..at], &tail[end..])
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}
