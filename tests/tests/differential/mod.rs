//! Shared by the differential tests (`prefetch_differential.rs`,
//! `select_related_differential.rs`): random shop data, random relation trees drawn
//! from fixed lists of valid paths, and the per-instance lazy walk every strategy's
//! graph is compared with.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;
use matrx_orm::prelude::*;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::common::shop::*;

pub fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

pub const REGIONS: [&str; 3] = ["af", "eu", "na"];

/// One drawn order: its customer, its items `(product, quantity)` and its tags.
pub type RawOrder = (Index, Vec<(Index, i32)>, Vec<Index>);

/// Random data as drawn (indexes are resolved against the sizes in [`Data::from`]).
#[derive(Debug, Clone)]
pub struct Raw {
    pub customers: Vec<Option<Index>>,
    pub products: usize,
    pub tags: usize,
    pub warehouses: BTreeSet<(usize, i32)>,
    pub orders: Vec<RawOrder>,
    pub stock: Vec<(Index, Index, i32)>,
    pub links: Vec<(Index, Index)>,
}

pub fn raw() -> impl Strategy<Value = Raw> {
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
pub struct Data {
    /// `referred_by` of each customer, as a position; may point at itself or later
    /// (cycles are allowed: the constraint is checked at the end of the statement).
    pub customers: Vec<Option<usize>>,
    pub products: usize,
    pub tags: usize,
    pub warehouses: Vec<(String, i32)>,
    /// The customer of each order.
    pub orders: Vec<usize>,
    /// `(id, order, product, quantity)`; ids run against the generation order.
    pub items: Vec<(i64, usize, usize, i32)>,
    pub order_tags: BTreeSet<(usize, usize)>,
    /// `(product, warehouse) -> qty`.
    pub stock: BTreeMap<(usize, usize), i32>,
    pub links: BTreeSet<(usize, usize)>,
}

impl Data {
    /// A small fixed shop: three customers (the second referred by the first), two
    /// products, two tags, one warehouse, three orders (two of the first customer),
    /// three items and two order tags.
    pub fn small() -> Data {
        Data {
            customers: vec![None, Some(0), None],
            products: 2,
            tags: 2,
            warehouses: vec![("eu".into(), 1)],
            orders: vec![0, 0, 1],
            items: vec![(3, 0, 0, 2), (2, 0, 1, 5), (1, 2, 1, 1)],
            order_tags: [(0, 0), (2, 1)].into_iter().collect(),
            stock: BTreeMap::new(),
            links: Default::default(),
        }
    }

    pub fn from(raw: &Raw) -> Data {
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

    pub fn customer(&self, c: usize) -> Customer {
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

    pub fn product(&self, p: usize) -> Product {
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

    pub fn order(&self, o: usize) -> Order {
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

    pub fn item(&self, k: usize) -> OrderItem {
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

    pub fn tag(&self, t: usize) -> Tag {
        Tag {
            id: t as i64 + 1,
            name: format!("t{}", t + 1),
        }
    }

    pub fn warehouse(&self, w: usize) -> Warehouse {
        let (region, code) = self.warehouses[w].clone();
        Warehouse {
            name: format!("{region}{code}"),
            region,
            code,
        }
    }

    pub fn stock_row(&self, p: usize, w: usize) -> Stock {
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

    pub async fn insert(&self, db: &Db) -> matrx_orm::Result<()> {
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
pub struct Tree(pub BTreeMap<&'static str, Tree>);

impl Tree {
    pub fn from_paths(paths: &[&'static str]) -> Tree {
        let mut root = Tree::default();
        for path in paths {
            let mut node = &mut root;
            for seg in path.split("__") {
                node = node.0.entry(seg).or_default();
            }
        }
        root
    }

    pub fn edges(&self) -> usize {
        self.0.values().map(|t| 1 + t.edges()).sum()
    }
}

pub const ORDER_PATHS: &[&str] = &[
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

pub const CUSTOMER_PATHS: &[&str] = &[
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

pub const PRODUCT_PATHS: &[&str] = &[
    "stock",
    "stock__warehouse",
    "stock__product",
    "stock__product__warehouses",
    "stock__product__stock",
    "warehouses",
];

pub fn pick(paths: &'static [&'static str], picks: &[Index]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = picks.iter().map(|i| paths[i.index(paths.len())]).collect();
    out.dedup();
    out
}

pub type Walk<'a> = BoxFuture<'a, matrx_orm::Result<u64>>;

pub fn lazy_order<'a>(db: &'a Db, o: &'a Order, t: &'a Tree) -> Walk<'a> {
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

pub fn lazy_customer<'a>(db: &'a Db, c: &'a Customer, t: &'a Tree) -> Walk<'a> {
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

pub fn lazy_item<'a>(db: &'a Db, i: &'a OrderItem, t: &'a Tree) -> Walk<'a> {
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

pub fn lazy_product<'a>(db: &'a Db, p: &'a Product, t: &'a Tree) -> Walk<'a> {
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

pub fn lazy_stock<'a>(db: &'a Db, s: &'a Stock, t: &'a Tree) -> Walk<'a> {
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

pub fn fail(what: &str, e: impl std::fmt::Debug) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {e:?}"))
}

/// What a differential test runs on: a multi-thread runtime, one shop schema with its
/// tables (cases refill it), and a property runner of `PROPTEST_CASES` cases (24 by
/// default). Drop the schema before the runtime.
pub fn shop_runner(prefix: &str) -> (tokio::runtime::Runtime, crate::common::TestDb, TestRunner) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(async {
        let db = crate::common::test_db(prefix).await;
        matrx_orm::ddl::create_tables(&*db, &crate::common::shop::models())
            .await
            .unwrap();
        db
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    (rt, db, runner)
}
