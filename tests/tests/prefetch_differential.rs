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
mod differential;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

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
    let (rt, db, mut runner) = shop_runner("pf_differential");
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
