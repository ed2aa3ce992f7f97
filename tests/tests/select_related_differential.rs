//! Differential property test for `select_related`: on random shop data (NULL foreign
//! keys, empty child lists, composite keys and a many-to-many to a composite-key
//! target) and random relation trees, the graph loaded
//!
//! * with every edge joined (`select_related`: exactly ONE query),
//! * by the balanced default (`balanced`),
//! * with each path given to `select_related`, `balanced` or `prefetch` at random
//!   (the three trees merge into one plan),
//! * by prefetch, and
//! * by lazy per-instance fetches
//!
//! is the same graph (compared as `serde_json` values: not loaded = null), also with a
//! random limit and offset on the root, which must page the parents only.
//!
//! The data generator and the lazy walk are those of `prefetch_differential.rs`, whose
//! prefetch graphs are checked against the data itself.
//!
//! Case count: 24 by default, `PROPTEST_CASES` overrides it.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use futures_util::future::BoxFuture;
use matrx_orm::prelude::*;
use matrx_orm::Select;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

const REGIONS: [&str; 3] = ["af", "eu", "na"];

/// One drawn order: its customer, its items `(product, quantity)` and its tags.
type RawOrder = (Index, Vec<(Index, i32)>, Vec<Index>);

/// Random data as drawn (indexes are resolved against the sizes in [`Data::from`]).
#[derive(Debug, Clone)]
struct Raw {
    customers: Vec<Option<Index>>,
    products: usize,
    tags: usize,
    warehouses: BTreeSet<(usize, i32)>,
    orders: Vec<RawOrder>,
    stock: Vec<(Index, Index, i32)>,
    links: Vec<(Index, Index)>,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        vec(proptest::option::of(any::<Index>()), 0..7),
        0..5usize,
        0..5usize,
        btree_set((0..3usize, 1..4i32), 0..5),
        vec(
            (
                any::<Index>(),
                vec((any::<Index>(), 1..6i32), 0..4),
                vec(any::<Index>(), 0..4),
            ),
            0..10,
        ),
        vec((any::<Index>(), any::<Index>(), 0..100i32), 0..8),
        vec((any::<Index>(), any::<Index>()), 0..8),
    )
        .prop_map(
            |(customers, products, tags, warehouses, orders, stock, links)| Raw {
                customers,
                products,
                tags,
                warehouses,
                orders,
                stock,
                links,
            },
        )
}

/// The data of one case, by position (ids are positions + 1).
#[derive(Debug, Clone)]
struct Data {
    /// `referred_by` of each customer, as a position; may point at itself or later
    /// (cycles are allowed: the constraint is checked at the end of the statement).
    customers: Vec<Option<usize>>,
    products: usize,
    tags: usize,
    warehouses: Vec<(String, i32)>,
    /// The customer of each order.
    orders: Vec<usize>,
    /// `(id, order, product, quantity)`; ids run against the generation order.
    items: Vec<(i64, usize, usize, i32)>,
    order_tags: BTreeSet<(usize, usize)>,
    /// `(product, warehouse) -> qty`.
    stock: BTreeMap<(usize, usize), i32>,
    links: BTreeSet<(usize, usize)>,
}

impl Data {
    fn from(raw: &Raw) -> Data {
        let nc = raw.customers.len();
        let customers = raw
            .customers
            .iter()
            .map(|r| r.as_ref().map(|i| i.index(nc)))
            .collect();
        let warehouses: Vec<(String, i32)> = raw
            .warehouses
            .iter()
            .map(|(r, c)| (REGIONS[*r].to_owned(), *c))
            .collect();
        let mut orders = Vec::new();
        let mut items = Vec::new();
        let mut order_tags = BTreeSet::new();
        if nc > 0 {
            for (c, its, tags) in &raw.orders {
                let o = orders.len();
                orders.push(c.index(nc));
                if raw.products > 0 {
                    for (p, q) in its {
                        items.push((0, o, p.index(raw.products), *q));
                    }
                }
                if raw.tags > 0 {
                    for t in tags {
                        order_tags.insert((o, t.index(raw.tags)));
                    }
                }
            }
        }
        let n = items.len() as i64;
        for (k, item) in items.iter_mut().enumerate() {
            item.0 = n - k as i64;
        }
        let mut stock = BTreeMap::new();
        let mut links = BTreeSet::new();
        if raw.products > 0 && !warehouses.is_empty() {
            for (p, w, q) in &raw.stock {
                stock.insert((p.index(raw.products), w.index(warehouses.len())), *q);
            }
            for (p, w) in &raw.links {
                links.insert((p.index(raw.products), w.index(warehouses.len())));
            }
        }
        Data {
            customers,
            products: raw.products,
            tags: raw.tags,
            warehouses,
            orders,
            items,
            order_tags,
            stock,
            links,
        }
    }

    fn customer(&self, c: usize) -> Customer {
        let id = c as i64 + 1;
        Customer {
            id,
            name: format!("c{id}"),
            email: format!("c{id}@example.com"),
            created_at: ts(id),
            referred_by: self.customers[c].map(|r| r as i64 + 1),
            referrer: Default::default(),
            orders: Default::default(),
        }
    }

    fn product(&self, p: usize) -> Product {
        let id = p as i64 + 1;
        Product {
            id,
            sku: format!("s{id}"),
            name: format!("p{id}"),
            price_cents: 10 * id as i32,
            stock: Default::default(),
            warehouses: Default::default(),
        }
    }

    fn order(&self, o: usize) -> Order {
        let id = o as i64 + 1;
        Order {
            id,
            customer_id: self.orders[o] as i64 + 1,
            status: "new".into(),
            placed_at: ts(id * 60),
            total_cents: id,
            customer: Default::default(),
            items: Default::default(),
            tags: Default::default(),
        }
    }

    fn item(&self, k: usize) -> OrderItem {
        let (id, o, p, quantity) = self.items[k];
        OrderItem {
            id,
            order_id: o as i64 + 1,
            product_id: p as i64 + 1,
            quantity,
            unit_price_cents: id as i32,
            order: Default::default(),
            product: Default::default(),
        }
    }

    fn tag(&self, t: usize) -> Tag {
        Tag {
            id: t as i64 + 1,
            name: format!("t{}", t + 1),
        }
    }

    fn warehouse(&self, w: usize) -> Warehouse {
        let (region, code) = self.warehouses[w].clone();
        Warehouse {
            name: format!("{region}{code}"),
            region,
            code,
        }
    }

    fn stock_row(&self, p: usize, w: usize) -> Stock {
        let (region, code) = self.warehouses[w].clone();
        Stock {
            product_id: p as i64 + 1,
            region,
            code,
            qty: self.stock[&(p, w)],
            warehouse: Default::default(),
            product: Default::default(),
        }
    }

    async fn insert(&self, db: &Db) -> matrx_orm::Result<()> {
        db.batch_execute(
            "TRUNCATE customers, products, orders, order_items, tags, warehouses, stock,
                      order_tags, product_warehouses",
        )
        .await?;
        // Reverse order: the heap order is never the documented order.
        let rev = |n: usize| (0..n).rev();
        let customers: Vec<Customer> = rev(self.customers.len())
            .map(|c| self.customer(c))
            .collect();
        Customer::insert_rows(&customers)
            .include_auto()
            .exec(db)
            .await?;
        let products: Vec<Product> = rev(self.products).map(|p| self.product(p)).collect();
        Product::insert_rows(&products)
            .include_auto()
            .exec(db)
            .await?;
        let tags: Vec<Tag> = rev(self.tags).map(|t| self.tag(t)).collect();
        Tag::insert_rows(&tags).include_auto().exec(db).await?;
        let whs: Vec<Warehouse> = rev(self.warehouses.len())
            .map(|w| self.warehouse(w))
            .collect();
        Warehouse::insert_many(db, &whs).await?;
        let orders: Vec<Order> = rev(self.orders.len()).map(|o| self.order(o)).collect();
        Order::insert_rows(&orders).include_auto().exec(db).await?;
        let items: Vec<OrderItem> = (0..self.items.len()).map(|k| self.item(k)).collect();
        OrderItem::insert_rows(&items)
            .include_auto()
            .exec(db)
            .await?;
        let stock: Vec<Stock> = self
            .stock
            .keys()
            .rev()
            .map(|&(p, w)| self.stock_row(p, w))
            .collect();
        Stock::insert_many(db, &stock).await?;
        let (ot_o, ot_t): (Vec<i64>, Vec<i64>) = self
            .order_tags
            .iter()
            .rev()
            .map(|&(o, t)| (o as i64 + 1, t as i64 + 1))
            .unzip();
        db.execute_sql(
            "INSERT INTO order_tags (order_id, tag_id) SELECT * FROM unnest($1::int8[], $2::int8[])",
            &[&ot_o, &ot_t],
        )
        .await?;
        let mut pw = (Vec::new(), Vec::new(), Vec::new());
        for &(p, w) in self.links.iter().rev() {
            pw.0.push(p as i64 + 1);
            pw.1.push(self.warehouses[w].0.clone());
            pw.2.push(self.warehouses[w].1);
        }
        db.execute_sql(
            "INSERT INTO product_warehouses (product_id, region, code)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int4[])",
            &[&pw.0, &pw.1, &pw.2],
        )
        .await?;
        Ok(())
    }
}

/// A relation tree: relation name -> subtree.
#[derive(Debug, Clone, Default)]
struct Tree(BTreeMap<&'static str, Tree>);

impl Tree {
    fn from_paths(paths: &[&'static str]) -> Tree {
        let mut root = Tree::default();
        for path in paths {
            let mut node = &mut root;
            for seg in path.split("__") {
                node = node.0.entry(seg).or_default();
            }
        }
        root
    }
}

const ORDER_PATHS: &[&str] = &[
    "customer",
    "customer__referrer",
    "customer__orders",
    "customer__referrer__referrer",
    "customer__orders__tags",
    "items",
    "items__product",
    "items__order",
    "items__product__stock",
    "items__product__warehouses",
    "items__order__customer",
    "tags",
];

const CUSTOMER_PATHS: &[&str] = &[
    "referrer",
    "referrer__referrer",
    "referrer__referrer__referrer",
    "referrer__orders",
    "orders",
    "orders__items",
    "orders__tags",
    "orders__customer",
    "orders__items__product",
    "orders__customer__referrer",
];

const PRODUCT_PATHS: &[&str] = &[
    "stock",
    "stock__warehouse",
    "stock__product",
    "stock__product__warehouses",
    "stock__product__stock",
    "warehouses",
];

fn pick(paths: &'static [&'static str], picks: &[Index]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = picks.iter().map(|i| paths[i.index(paths.len())]).collect();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------
// The lazy walk (as in prefetch_differential.rs).
// ---------------------------------------------------------------------------------

type Walk<'a> = BoxFuture<'a, matrx_orm::Result<u64>>;

fn lazy_order<'a>(db: &'a Db, o: &'a Order, t: &'a Tree) -> Walk<'a> {
    Box::pin(async move {
        let mut n = 0;
        for (name, sub) in &t.0 {
            n += 1;
            match *name {
                "customer" => {
                    if let Some(c) = o.fetch(db, Order::CUSTOMER).await? {
                        n += lazy_customer(db, &c, sub).await?;
                    }
                }
                "items" => {
                    for i in o.fetch(db, Order::ITEMS).await? {
                        n += lazy_item(db, &i, sub).await?;
                    }
                }
                "tags" => {
                    o.fetch(db, Order::TAGS).await?;
                }
                other => unreachable!("Order.{other}"),
            }
        }
        Ok(n)
    })
}

fn lazy_customer<'a>(db: &'a Db, c: &'a Customer, t: &'a Tree) -> Walk<'a> {
    Box::pin(async move {
        let mut n = 0;
        for (name, sub) in &t.0 {
            match *name {
                "referrer" => {
                    n += u64::from(c.referred_by.is_some());
                    if let Some(r) = c.fetch(db, Customer::REFERRER).await? {
                        n += lazy_customer(db, &r, sub).await?;
                    }
                }
                "orders" => {
                    n += 1;
                    for o in c.fetch(db, Customer::ORDERS).await? {
                        n += lazy_order(db, &o, sub).await?;
                    }
                }
                other => unreachable!("Customer.{other}"),
            }
        }
        Ok(n)
    })
}

fn lazy_item<'a>(db: &'a Db, i: &'a OrderItem, t: &'a Tree) -> Walk<'a> {
    Box::pin(async move {
        let mut n = 0;
        for (name, sub) in &t.0 {
            n += 1;
            match *name {
                "product" => {
                    if let Some(p) = i.fetch(db, OrderItem::PRODUCT).await? {
                        n += lazy_product(db, &p, sub).await?;
                    }
                }
                "order" => {
                    if let Some(o) = i.fetch(db, OrderItem::ORDER).await? {
                        n += lazy_order(db, &o, sub).await?;
                    }
                }
                other => unreachable!("OrderItem.{other}"),
            }
        }
        Ok(n)
    })
}

fn lazy_product<'a>(db: &'a Db, p: &'a Product, t: &'a Tree) -> Walk<'a> {
    Box::pin(async move {
        let mut n = 0;
        for (name, sub) in &t.0 {
            n += 1;
            match *name {
                "stock" => {
                    for s in p.fetch(db, Product::STOCK).await? {
                        n += lazy_stock(db, &s, sub).await?;
                    }
                }
                "warehouses" => {
                    p.fetch(db, Product::WAREHOUSES).await?;
                }
                other => unreachable!("Product.{other}"),
            }
        }
        Ok(n)
    })
}

fn lazy_stock<'a>(db: &'a Db, s: &'a Stock, t: &'a Tree) -> Walk<'a> {
    Box::pin(async move {
        let mut n = 0;
        for (name, sub) in &t.0 {
            n += 1;
            match *name {
                "warehouse" => {
                    s.fetch(db, Stock::WAREHOUSE).await?;
                }
                "product" => {
                    if let Some(p) = s.fetch(db, Stock::PRODUCT).await? {
                        n += lazy_product(db, &p, sub).await?;
                    }
                }
                other => unreachable!("Stock.{other}"),
            }
        }
        Ok(n)
    })
}

// ---------------------------------------------------------------------------------

fn fail(what: &str, e: impl std::fmt::Debug) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {e:?}"))
}

/// How one path of a tree is added to the query.
#[derive(Debug, Clone, Copy)]
enum How {
    Joined,
    Balanced,
    Prefetch,
}

fn add<M: Model>(query: Select<M>, how: How, path: &str) -> Result<Select<M>, TestCaseError> {
    match how {
        How::Joined => query.select_related_path(path),
        How::Balanced => query.balanced_path(path),
        How::Prefetch => query.prefetch_path(path),
    }
    .map_err(|e| fail(path, e))
}

fn with_all<M: Model>(
    mut query: Select<M>,
    paths: &[&str],
    how: impl Fn(usize) -> How,
) -> Result<Select<M>, TestCaseError> {
    for (i, p) in paths.iter().enumerate() {
        query = add(query, how(i), p)?;
    }
    Ok(query)
}

fn json<M: serde::Serialize>(rows: &[M]) -> serde_json::Value {
    serde_json::to_value(rows).unwrap()
}

/// Every strategy on one root model, unpaged and paged.
#[allow(clippy::too_many_arguments)]
async fn check_root<M, W>(
    db: &Db,
    label: &str,
    query: Select<M>,
    paths: &[&'static str],
    mixed: &[How],
    page: (u64, u64),
    lazy: W,
) -> Result<(), TestCaseError>
where
    M: Model + serde::Serialize,
    W: for<'a> Fn(&'a Db, &'a M, &'a Tree) -> Walk<'a>,
{
    let tree = Tree::from_paths(paths);
    let how = |i: usize| mixed[i % mixed.len()];

    let prefetched = with_all(query.clone(), paths, |_| How::Prefetch)?
        .all(db)
        .await
        .map_err(|e| fail("prefetch", e))?;
    let expected = json(&prefetched);

    let before = db.query_count();
    let joined = with_all(query.clone(), paths, |_| How::Joined)?
        .all(db)
        .await
        .map_err(|e| fail("select_related", e))?;
    prop_assert_eq!(
        db.query_count() - before,
        1,
        "{}: {:?}: one query",
        label,
        paths
    );
    prop_assert_eq!(
        &json(&joined),
        &expected,
        "{}: select_related vs prefetch, {:?}",
        label,
        paths
    );

    let balanced = with_all(query.clone(), paths, |_| How::Balanced)?
        .all(db)
        .await
        .map_err(|e| fail("balanced", e))?;
    prop_assert_eq!(
        &json(&balanced),
        &expected,
        "{}: balanced vs prefetch, {:?}",
        label,
        paths
    );

    let mixed_rows = with_all(query.clone(), paths, how)?
        .all(db)
        .await
        .map_err(|e| fail("mixed", e))?;
    prop_assert_eq!(
        &json(&mixed_rows),
        &expected,
        "{}: mixed {:?} vs prefetch, {:?}",
        label,
        mixed,
        paths
    );

    let plain = query.all(db).await.map_err(|e| fail("query", e))?;
    for root in &plain {
        lazy(db, root, &tree).await.map_err(|e| fail("lazy", e))?;
    }
    prop_assert_eq!(
        &json(&plain),
        &expected,
        "{}: lazy vs prefetch, {:?}",
        label,
        paths
    );

    // Paging applies to the roots, not to their joined children.
    let (limit, offset) = page;
    let paged = query.clone().limit(limit).offset(offset);
    let expected_page: Vec<serde_json::Value> = expected
        .as_array()
        .unwrap()
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .cloned()
        .collect();
    let before = db.query_count();
    let joined = with_all(paged.clone(), paths, |_| How::Joined)?
        .all(db)
        .await
        .map_err(|e| fail("select_related paged", e))?;
    prop_assert_eq!(db.query_count() - before, 1);
    prop_assert_eq!(
        json(&joined),
        serde_json::Value::Array(expected_page.clone()),
        "{}: paged select_related",
        label
    );
    let balanced = with_all(paged, paths, |_| How::Balanced)?
        .all(db)
        .await
        .map_err(|e| fail("balanced paged", e))?;
    prop_assert_eq!(
        json(&balanced),
        serde_json::Value::Array(expected_page),
        "{}: paged balanced",
        label
    );
    Ok(())
}

async fn run_case(
    db: &Db,
    data: &Data,
    trees: [&[&'static str]; 3],
    mixed: &[How],
    page: (u64, u64),
) -> Result<(), TestCaseError> {
    data.insert(db).await.map_err(|e| fail("insert", e))?;
    let [order_paths, customer_paths, product_paths] = trees;
    check_root(
        db,
        "orders",
        Order::query().order_by(Order::ID.asc()),
        order_paths,
        mixed,
        page,
        |db, o, t| lazy_order(db, o, t),
    )
    .await?;
    check_root(
        db,
        "customers",
        Customer::query().order_by(Customer::ID.asc()),
        customer_paths,
        mixed,
        page,
        |db, c, t| lazy_customer(db, c, t),
    )
    .await?;
    check_root(
        db,
        "products",
        Product::query().order_by(Product::ID.desc()),
        product_paths,
        mixed,
        page,
        |db, p, t| lazy_product(db, p, t),
    )
    .await
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Joined), Just(How::Balanced), Just(How::Prefetch)]
}

#[test]
fn select_related_equals_prefetch_equals_lazy_loading() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(async {
        let db = common::test_db("sr_differential").await;
        matrx_orm::ddl::create_tables(&*db, &common::shop::models())
            .await
            .unwrap();
        db
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let picks = || vec(any::<Index>(), 1..5);
    let strategy = (
        raw(),
        picks(),
        picks(),
        picks(),
        vec(how(), 1..4),
        (0..6u64, 0..3u64),
    );
    let result = runner.run(&strategy, |(raw, po, pc, pp, mixed, page)| {
        let data = Data::from(&raw);
        let trees = [
            &pick(ORDER_PATHS, &po)[..],
            &pick(CUSTOMER_PATHS, &pc)[..],
            &pick(PRODUCT_PATHS, &pp)[..],
        ];
        rt.block_on(run_case(&db, &data, trees, &mixed, page))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every path of each root at once on a fixed dataset with every relation kind
/// populated, so the widest trees always run.
#[tokio::test]
async fn every_path_at_once_on_a_fixed_dataset() {
    let db = common::test_db("sr_differential_fixed").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let data = Data {
        customers: vec![None, Some(0), Some(1), Some(3), Some(2)],
        products: 3,
        tags: 3,
        warehouses: vec![("af".into(), 1), ("eu".into(), 1), ("eu".into(), 2)],
        orders: vec![0, 1, 1, 3, 4, 4, 4],
        items: vec![
            (9, 0, 0, 1),
            (8, 0, 2, 2),
            (7, 1, 1, 3),
            (6, 2, 0, 1),
            (5, 3, 2, 5),
            (4, 4, 2, 1),
            (3, 4, 1, 2),
            (2, 5, 0, 3),
            (1, 6, 0, 1),
        ],
        order_tags: [
            (0, 0),
            (0, 2),
            (1, 2),
            (3, 1),
            (4, 0),
            (4, 1),
            (4, 2),
            (6, 2),
        ]
        .into_iter()
        .collect(),
        stock: [
            ((0, 0), 5),
            ((0, 2), 7),
            ((0, 1), 1),
            ((1, 1), 9),
            ((2, 2), 3),
        ]
        .into_iter()
        .collect(),
        links: [(0, 2), (0, 0), (1, 0), (1, 1), (1, 2)]
            .into_iter()
            .collect(),
    };
    run_case(
        &db,
        &data,
        [ORDER_PATHS, CUSTOMER_PATHS, PRODUCT_PATHS],
        &[How::Joined, How::Balanced, How::Prefetch, How::Joined],
        (3, 1),
    )
    .await
    .unwrap();
}
