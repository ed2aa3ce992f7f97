//! Differential property test: on random shop data and random relation trees, the
//! graph loaded by prefetch (one query per edge) equals the graph loaded by lazy,
//! per-instance fetches, and both equal the graph computed in memory from the
//! generated data. Graphs are compared as `serde_json` values (not loaded = null).
//!
//! Also checked: prefetch runs exactly one query per tree edge whose parent key set is
//! non-empty (plus the root query), and a lazy load exactly one per non-NULL key.
//!
//! Case count: 24 by default, `PROPTEST_CASES` overrides it. Every case truncates
//! and refills one schema.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use futures_util::future::BoxFuture;
use matrx_orm::prelude::*;
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

    fn edges(&self) -> usize {
        self.0.values().map(|t| 1 + t.edges()).sum()
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
// The expected graph, built in memory from the data. `hits` collects the paths of the
// edges that have at least one non-NULL parent key (the edges prefetch must query).
// ---------------------------------------------------------------------------------

struct Expect<'d> {
    d: &'d Data,
    hits: BTreeSet<String>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}__{name}")
    }
}

impl Expect<'_> {
    fn order(&mut self, o: usize, t: &Tree, at: &str) -> Order {
        let v = self.d.order(o);
        for (name, sub) in &t.0 {
            let path = join(at, name);
            self.hits.insert(path.clone());
            match *name {
                "customer" => {
                    let c = self.customer(self.d.orders[o], sub, &path);
                    v.customer.fill(Some(Arc::new(c)));
                }
                "items" => {
                    let mut ks: Vec<usize> = (0..self.d.items.len())
                        .filter(|&k| self.d.items[k].1 == o)
                        .collect();
                    ks.sort_by_key(|&k| self.d.items[k].0);
                    let items = ks
                        .into_iter()
                        .map(|k| Arc::new(self.item(k, sub, &path)))
                        .collect();
                    v.items.fill(items);
                }
                "tags" => {
                    let tags = self
                        .d
                        .order_tags
                        .iter()
                        .filter(|(oo, _)| *oo == o)
                        .map(|&(_, t)| Arc::new(self.d.tag(t)))
                        .collect();
                    v.tags.fill(tags);
                }
                other => unreachable!("Order.{other}"),
            }
        }
        v
    }

    fn customer(&mut self, c: usize, t: &Tree, at: &str) -> Customer {
        let v = self.d.customer(c);
        for (name, sub) in &t.0 {
            let path = join(at, name);
            match *name {
                "referrer" => {
                    let r = self.d.customers[c].map(|r| {
                        self.hits.insert(path.clone());
                        Arc::new(self.customer(r, sub, &path))
                    });
                    v.referrer.fill(r);
                }
                "orders" => {
                    self.hits.insert(path.clone());
                    let orders = (0..self.d.orders.len())
                        .filter(|&o| self.d.orders[o] == c)
                        .map(|o| Arc::new(self.order(o, sub, &path)))
                        .collect();
                    v.orders.fill(orders);
                }
                other => unreachable!("Customer.{other}"),
            }
        }
        v
    }

    fn item(&mut self, k: usize, t: &Tree, at: &str) -> OrderItem {
        let v = self.d.item(k);
        for (name, sub) in &t.0 {
            let path = join(at, name);
            self.hits.insert(path.clone());
            match *name {
                "product" => {
                    let p = self.product(self.d.items[k].2, sub, &path);
                    v.product.fill(Some(Arc::new(p)));
                }
                "order" => {
                    let o = self.order(self.d.items[k].1, sub, &path);
                    v.order.fill(Some(Arc::new(o)));
                }
                other => unreachable!("OrderItem.{other}"),
            }
        }
        v
    }

    fn product(&mut self, p: usize, t: &Tree, at: &str) -> Product {
        let v = self.d.product(p);
        for (name, sub) in &t.0 {
            let path = join(at, name);
            self.hits.insert(path.clone());
            // Warehouses are in (region, code) order already.
            match *name {
                "stock" => {
                    let ws: Vec<usize> = self
                        .d
                        .stock
                        .keys()
                        .filter(|(pp, _)| *pp == p)
                        .map(|&(_, w)| w)
                        .collect();
                    let rows = ws
                        .into_iter()
                        .map(|w| Arc::new(self.stock(p, w, sub, &path)))
                        .collect();
                    v.stock.fill(rows);
                }
                "warehouses" => {
                    let whs = self
                        .d
                        .links
                        .iter()
                        .filter(|(pp, _)| *pp == p)
                        .map(|&(_, w)| Arc::new(self.d.warehouse(w)))
                        .collect();
                    v.warehouses.fill(whs);
                }
                other => unreachable!("Product.{other}"),
            }
        }
        v
    }

    fn stock(&mut self, p: usize, w: usize, t: &Tree, at: &str) -> Stock {
        let v = self.d.stock_row(p, w);
        for (name, sub) in &t.0 {
            let path = join(at, name);
            self.hits.insert(path.clone());
            match *name {
                "warehouse" => {
                    v.warehouse.fill(Some(Arc::new(self.d.warehouse(w))));
                }
                "product" => {
                    let prod = self.product(p, sub, &path);
                    v.product.fill(Some(Arc::new(prod)));
                }
                other => unreachable!("Stock.{other}"),
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------------
// The lazy walk: `fetch` on every instance, depth first. Returns how many loads had
// a non-NULL key (each owes exactly one query).
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

/// Prefetch, lazy walk and in-memory expectation for one root model.
async fn check_root<M, W>(
    db: &Db,
    label: &str,
    query: matrx_orm::Select<M>,
    paths: &[&'static str],
    expected: Vec<M>,
    hits: usize,
    lazy: W,
) -> Result<(), TestCaseError>
where
    M: Model + serde::Serialize,
    W: for<'a> Fn(&'a Db, &'a M, &'a Tree) -> Walk<'a>,
{
    let tree = Tree::from_paths(paths);
    prop_assert!(hits <= tree.edges(), "{label}: hits {hits} > edges");

    // Prefetch through the query.
    let mut prefetched = query.clone();
    for p in paths {
        prefetched = prefetched.prefetch_path(p).map_err(|e| fail(p, e))?;
    }
    let before = db.query_count();
    let roots = prefetched.all(db).await.map_err(|e| fail("prefetch", e))?;
    let queries = db.query_count() - before;
    prop_assert_eq!(
        queries,
        1 + hits as u64,
        "{}: {:?}: root query + one per edge with keys",
        label,
        paths
    );

    // Lazily, instance by instance.
    let plain = query.all(db).await.map_err(|e| fail("query", e))?;
    let before = db.query_count();
    let mut owed = 0;
    for root in &plain {
        owed += lazy(db, root, &tree).await.map_err(|e| fail("lazy", e))?;
    }
    prop_assert_eq!(
        db.query_count() - before,
        owed,
        "{}: one query per lazy load",
        label
    );

    let expected = serde_json::to_value(&expected).unwrap();
    let prefetched = serde_json::to_value(&roots).unwrap();
    let lazily = serde_json::to_value(&plain).unwrap();
    if let Some(diff) = first_diff(&prefetched, &lazily, String::new()) {
        return Err(fail(&format!("{label}: prefetch vs lazy, {paths:?}"), diff));
    }
    if let Some(diff) = first_diff(&prefetched, &expected, String::new()) {
        return Err(fail(&format!("{label}: prefetch vs data, {paths:?}"), diff));
    }

    // The standalone form on the already loaded roots: one query per edge with keys.
    let fresh = query.all(db).await.map_err(|e| fail("query", e))?;
    let mut tree_pf = matrx_orm::Prefetch::<M>::default();
    for p in paths {
        tree_pf.add(matrx_orm::Prefetch::<M>::parse(p).map_err(|e| fail(p, e))?);
    }
    let before = db.query_count();
    matrx_orm::prefetch_related(db, &fresh, tree_pf)
        .await
        .map_err(|e| fail("prefetch_related", e))?;
    prop_assert_eq!(db.query_count() - before, hits as u64);
    let standalone = serde_json::to_value(&fresh).unwrap();
    if let Some(diff) = first_diff(&standalone, &expected, String::new()) {
        return Err(fail(
            &format!("{label}: prefetch_related vs data, {paths:?}"),
            diff,
        ));
    }
    Ok(())
}

/// The first place where two JSON values differ, as `path: left != right`.
fn first_diff(a: &serde_json::Value, b: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{at}: {} items != {} items", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (x, y))| first_diff(x, y, format!("{at}[{i}]")))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(x), Some(y)) => first_diff(x, y, format!("{at}.{k}")),
                    (x, y) => Some(format!("{at}.{k}: {x:?} != {y:?}")),
                })
        }
        _ if a == b => None,
        _ => Some(format!("{at}: {a} != {b}")),
    }
}

async fn run_case(db: &Db, data: &Data, trees: [&[&'static str]; 3]) -> Result<(), TestCaseError> {
    data.insert(db).await.map_err(|e| fail("insert", e))?;

    let [order_paths, customer_paths, product_paths] = trees;
    let mut ex = Expect {
        d: data,
        hits: BTreeSet::new(),
    };
    let t = Tree::from_paths(order_paths);
    let orders: Vec<Order> = (0..data.orders.len())
        .map(|o| ex.order(o, &t, ""))
        .collect();
    let hits = ex.hits.len();
    check_root(
        db,
        "orders",
        Order::query().order_by(Order::ID.asc()),
        order_paths,
        orders,
        hits,
        |db, o, t| lazy_order(db, o, t),
    )
    .await?;

    let mut ex = Expect {
        d: data,
        hits: BTreeSet::new(),
    };
    let t = Tree::from_paths(customer_paths);
    let customers: Vec<Customer> = (0..data.customers.len())
        .map(|c| ex.customer(c, &t, ""))
        .collect();
    let hits = ex.hits.len();
    check_root(
        db,
        "customers",
        Customer::query().order_by(Customer::ID.asc()),
        customer_paths,
        customers,
        hits,
        |db, c, t| lazy_customer(db, c, t),
    )
    .await?;

    let mut ex = Expect {
        d: data,
        hits: BTreeSet::new(),
    };
    let t = Tree::from_paths(product_paths);
    let products: Vec<Product> = (0..data.products).map(|p| ex.product(p, &t, "")).collect();
    let hits = ex.hits.len();
    check_root(
        db,
        "products",
        Product::query().order_by(Product::ID.asc()),
        product_paths,
        products,
        hits,
        |db, p, t| lazy_product(db, p, t),
    )
    .await
}

#[test]
fn prefetch_equals_lazy_loading_equals_the_data() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(async {
        let db = common::test_db("pf_differential").await;
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
    let picks = || vec(any::<Index>(), 1..4);
    let strategy = (raw(), picks(), picks(), picks());
    let result = runner.run(&strategy, |(raw, po, pc, pp)| {
        let data = Data::from(&raw);
        let trees = [
            &pick(ORDER_PATHS, &po)[..],
            &pick(CUSTOMER_PATHS, &pc)[..],
            &pick(PRODUCT_PATHS, &pp)[..],
        ];
        rt.block_on(run_case(&db, &data, trees))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A fixed case with every relation kind populated and every path of each root at
/// once, so the widest trees always run whatever the random draws.
#[tokio::test]
async fn every_path_at_once_on_a_fixed_dataset() {
    let db = common::test_db("pf_differential_fixed").await;
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
    run_case(&db, &data, [ORDER_PATHS, CUSTOMER_PATHS, PRODUCT_PATHS])
        .await
        .unwrap();
}
