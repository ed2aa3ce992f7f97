//! `select_related` and `balanced` on a generated shop: the W1, W2 and W3 trees in ONE
//! query (checked against plain SQL), the balanced and per-edge query counts, root
//! paging and filters that apply to parents only, customised edges (filter, order,
//! limit per parent) equal to prefetch's, rows shared as one `Arc`, conflicts refused,
//! and the statement's shape.

mod common;
mod workload_checks;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use common::{count_queries, test_db, TestDb};
use matrx_orm::prelude::*;
use matrx_orm::{AggregateEncoding, Error, JoinedShape, Select};
use workload_checks::*;

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

const REGIONS: [&str; 5] = ["af", "ap", "eu", "na", "sa"];

/// Sizes of a generated shop.
#[derive(Clone, Copy)]
struct Shape {
    customers: i64,
    products: i64,
    tags: i64,
    orders: i64,
}

const W: Shape = Shape {
    customers: 200,
    products: 100,
    tags: 20,
    orders: 3_000,
};

/// A deterministic shop of `shape`:
///
/// * customer `c` (1-based) is referred by `c / 2` when `c` is even, else by nobody;
/// * order `o` belongs to customer `(7 o mod customers) + 1`, has `3 o mod 5` items
///   (order 1 has 3) and `o mod 4` tags; placed_at values are all distinct;
/// * warehouses: every region with codes 1 and 2 (10 composite keys); product `p`
///   has stock in warehouse `w` when `(p + w) mod 3 == 0` and is linked to it through
///   `product_warehouses` when `(p + w) mod 4 == 1`.
///
/// Items, links and stock rows are inserted in an order unlike the documented
/// ordering, so that ordering is the loader's work, not the heap's.
async fn seed(db: &Db, shape: Shape) {
    matrx_orm::ddl::create_tables(db, &common::shop::models())
        .await
        .unwrap();
    let customers: Vec<Customer> = (1..=shape.customers)
        .map(|id| Customer {
            id,
            name: format!("customer {id}"),
            email: format!("c{id}@{}.example.com", "x".repeat((id % 7) as usize)),
            created_at: ts(id),
            referred_by: (id % 2 == 0).then_some(id / 2),
            referrer: Default::default(),
            orders: Default::default(),
        })
        .collect();
    Customer::insert_rows(&customers)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let products: Vec<Product> = (1..=shape.products)
        .map(|id| Product {
            id,
            sku: format!("SKU-{id:05}"),
            name: format!("product {id}"),
            price_cents: (id * 37 % 1_000 + 1) as i32,
            stock: Default::default(),
            warehouses: Default::default(),
        })
        .collect();
    Product::insert_rows(&products)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let tags: Vec<Tag> = (1..=shape.tags)
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
    let mut warehouses = Vec::new();
    for code in [2, 1] {
        for region in REGIONS.iter().rev() {
            warehouses.push(Warehouse {
                region: (*region).to_owned(),
                code,
                name: format!("{region}-{code}-{}", "w".repeat(code as usize)),
            });
        }
    }
    Warehouse::insert_many(db, &warehouses).await.unwrap();
    let orders: Vec<Order> = (1..=shape.orders)
        .map(|id| Order {
            id,
            customer_id: (id * 7 % shape.customers.max(1)) + 1,
            status: ["new", "paid", "shipped"][(id % 3) as usize].to_owned(),
            placed_at: ts(id * 7_919 % 100_003),
            total_cents: id * 100,
            customer: Default::default(),
            items: Default::default(),
            tags: Default::default(),
        })
        .collect();
    Order::insert_rows(&orders)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    // Items: ids handed out newest order first, so ids do not follow the heap order.
    let mut items = Vec::new();
    let mut next_id = 1;
    for o in (1..=shape.orders).rev() {
        for j in (0..(o * 3 % 5)).rev() {
            items.push(OrderItem {
                id: next_id,
                order_id: o,
                product_id: ((o * 13 + j * 7) % shape.products) + 1,
                quantity: ((o + j) % 6 + 1) as i32,
                unit_price_cents: ((o * 31 + j) % 500 + 1) as i32,
                order: Default::default(),
                product: Default::default(),
            });
            next_id += 1;
        }
    }
    items.reverse();
    OrderItem::insert_rows(&items)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let (mut ot_order, mut ot_tag) = (Vec::new(), Vec::new());
    for o in 1..=shape.orders {
        for k in (0..(o % 4)).rev() {
            ot_order.push(o);
            ot_tag.push((o * 5 + k * 3) % shape.tags + 1);
        }
    }
    db.execute_sql(
        "INSERT INTO order_tags (order_id, tag_id) SELECT * FROM unnest($1::int8[], $2::int8[])",
        &[&ot_order, &ot_tag],
    )
    .await
    .unwrap();
    let mut stock_rows = Vec::new();
    let (mut pw_p, mut pw_r, mut pw_c) = (Vec::new(), Vec::new(), Vec::new());
    for p in 1..=shape.products {
        for (w, wh) in warehouses.iter().enumerate() {
            let w = w as i64;
            if (p + w) % 3 == 0 {
                stock_rows.push(Stock {
                    product_id: p,
                    region: wh.region.clone(),
                    code: wh.code,
                    qty: ((p * 11 + w * 5) % 90 + 1) as i32,
                    warehouse: Default::default(),
                    product: Default::default(),
                });
            }
            if (p + w) % 4 == 1 {
                pw_p.push(p);
                pw_r.push(wh.region.clone());
                pw_c.push(wh.code);
            }
        }
    }
    Stock::insert_many(db, &stock_rows).await.unwrap();
    db.execute_sql(
        "INSERT INTO product_warehouses (product_id, region, code)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::int4[])",
        &[&pw_p, &pw_r, &pw_c],
    )
    .await
    .unwrap();
}

async fn shop(prefix: &str, shape: Shape) -> TestDb {
    let db = test_db(prefix).await;
    seed(&db, shape).await;
    db
}

fn w1<M: Fn(Select<Order>, Tree1) -> Select<Order>>(add: M) -> Select<Order> {
    let q = Order::query().order_by(Order::ID.asc());
    let q = add(q, Tree1::Customer);
    let q = add(q, Tree1::Items);
    add(q, Tree1::Tags)
}

/// The three edges of the W1 tree, to add with any method.
#[derive(Clone, Copy)]
enum Tree1 {
    Customer,
    Items,
    Tags,
}

fn joined(q: Select<Order>, e: Tree1) -> Select<Order> {
    match e {
        Tree1::Customer => q.select_related(Order::CUSTOMER),
        Tree1::Items => q.select_related(Order::ITEMS.with(OrderItem::PRODUCT)),
        Tree1::Tags => q.select_related(Order::TAGS),
    }
}

fn balanced(q: Select<Order>, e: Tree1) -> Select<Order> {
    match e {
        Tree1::Customer => q.balanced(Order::CUSTOMER),
        Tree1::Items => q.balanced(Order::ITEMS.with(OrderItem::PRODUCT)),
        Tree1::Tags => q.balanced(Order::TAGS),
    }
}

fn prefetched(q: Select<Order>, e: Tree1) -> Select<Order> {
    match e {
        Tree1::Customer => q.prefetch(Order::CUSTOMER),
        Tree1::Items => q.prefetch(Order::ITEMS.with(OrderItem::PRODUCT)),
        Tree1::Tags => q.prefetch(Order::TAGS),
    }
}

fn w3(joined: bool) -> Select<Product> {
    let q = Product::query().order_by(Product::ID.asc());
    if joined {
        q.select_related(Product::STOCK.with(Stock::WAREHOUSE))
            .select_related(Product::WAREHOUSES)
    } else {
        q.balanced(Product::STOCK.with(Stock::WAREHOUSE))
            .balanced(Product::WAREHOUSES)
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

#[tokio::test]
async fn w1_w2_and_w3_trees_are_one_query() {
    let db = shop("sr_counts_w", W).await;
    // W1: the first 1,000 orders; W2: all of them.
    for (limit, max_id) in [(Some(1_000), 1_000), (None, W.orders)] {
        let mut query = w1(joined);
        if let Some(n) = limit {
            query = query.limit(n);
        }
        let (orders, queries) = count_queries(&db, query.all(&*db)).await;
        let orders = orders.unwrap();
        assert_eq!(queries, 1, "the whole W1/W2 tree in one statement");
        assert_eq!(orders.len() as i64, max_id);
        assert_eq!(w1_walk(&orders), w1_sql(&db, max_id).await);
    }
    let (products, queries) = count_queries(&db, w3(true).all(&*db)).await;
    let products = products.unwrap();
    assert_eq!(queries, 1, "the whole W3 tree in one statement");
    assert_eq!(w3_walk(&products), w3_sql(&db).await);
}

#[tokio::test]
async fn balanced_joins_to_one_edges_and_batches_to_many_edges() {
    let db = shop("sr_counts_bal", W).await;
    // Root + customer; items + their products (20 order keys); tags.
    let (orders, queries) = count_queries(&db, w1(balanced).limit(20).all(&*db)).await;
    assert_eq!(queries, 3);
    assert_eq!(w1_walk(&orders.unwrap()), w1_sql(&db, 20).await);
    // Root + customer; items; their products; tags.
    let (orders, queries) = count_queries(&db, w1(balanced).limit(100).all(&*db)).await;
    assert_eq!(queries, 4);
    assert_eq!(w1_walk(&orders.unwrap()), w1_sql(&db, 100).await);
    // Root; stock; their warehouses (100 product keys); warehouses.
    let (products, queries) = count_queries(&db, w3(false).all(&*db)).await;
    assert_eq!(queries, 4);
    assert_eq!(w3_walk(&products.unwrap()), w3_sql(&db).await);
    // Unbounded or large parent sets: to-one edges are batched too. The root has no
    // limit (customer batched); items have 3,000 parents (products batched).
    let (orders, queries) = count_queries(&db, w1(balanced).all(&*db)).await;
    assert_eq!(queries, 5);
    assert_eq!(w1_walk(&orders.unwrap()), w1_sql(&db, W.orders).await);
    // 101 parents is one too many for the root's customer.
    let (orders, queries) = count_queries(&db, w1(balanced).limit(101).all(&*db)).await;
    assert_eq!(queries, 5);
    assert_eq!(w1_walk(&orders.unwrap()), w1_sql(&db, 101).await);
    // A nested to-one edge under a batched to-many edge is decided by that edge's key
    // count: the items of 20 orders join their products, those of 21 do not.
    for (orders, expected) in [(20, 2), (21, 3)] {
        let (loaded, queries) = count_queries(
            &db,
            Order::query()
                .filter(Order::ID.lte(orders))
                .order_by(Order::ID.asc())
                .balanced(Order::ITEMS.with(OrderItem::PRODUCT))
                .all(&*db),
        )
        .await;
        assert_eq!(queries, expected, "{orders} orders");
        assert!(loaded.unwrap().iter().all(|o| o
            .items
            .get()
            .unwrap()
            .iter()
            .all(|i| i.product.get().is_some())));
    }
    assert_eq!(matrx_orm::BALANCED_JOIN_LIMIT, 100);
    assert_eq!(matrx_orm::BALANCED_JOIN_LIMIT_TO_MANY, 20);
    use matrx_orm::{balanced_strategy, LoadStrategy, RelationKind};
    assert_eq!(
        balanced_strategy(RelationKind::BelongsTo, Some(100)),
        LoadStrategy::Joined
    );
    assert_eq!(
        balanced_strategy(RelationKind::HasOne, Some(101)),
        LoadStrategy::Batched
    );
    assert_eq!(
        balanced_strategy(RelationKind::BelongsTo, None),
        LoadStrategy::Batched
    );
    assert_eq!(
        balanced_strategy(RelationKind::ManyToMany, Some(1)),
        LoadStrategy::Batched
    );
}

/// `balanced` on pages from 1 to 1,000 orders: the statement count of each page size
/// (3 up to `BALANCED_JOIN_LIMIT_TO_MANY` orders, 4 up to `BALANCED_JOIN_LIMIT`, 5
/// beyond) and the same graph as prefetch (5 statements) on the same page.
#[tokio::test]
async fn balanced_pages_small_and_large_load_the_prefetch_graph() {
    let db = shop("sr_counts_bal_pages", W).await;
    for (page, expected) in [
        (1, 3),
        (10, 3),
        (20, 3),
        (21, 4),
        (100, 4),
        (101, 5),
        (1_000, 5),
    ] {
        let (orders, queries) = count_queries(&db, w1(balanced).limit(page).all(&*db)).await;
        let orders = orders.unwrap();
        assert_eq!(queries, expected, "balanced, {page} orders");
        let (reference, queries) = count_queries(&db, w1(prefetched).limit(page).all(&*db)).await;
        let reference = reference.unwrap();
        assert_eq!(queries, 5, "prefetch, {page} orders");
        assert_eq!(orders.len() as u64, page);
        assert_eq!(json(&orders), json(&reference), "{page} orders");
        assert_eq!(w1_walk(&orders), w1_sql(&db, page as i64).await);
    }
    // The root's customer is a probe per row under a small page (a plain join there
    // was planned as a hash of the whole target table); select_related keeps the join.
    let probe = "LEFT JOIN LATERAL (SELECT \"r1\".\"id\", ";
    let small = w1(balanced)
        .limit(10)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(small.text.contains(probe), "{}", small.text);
    assert!(
        small.text.contains(
            "FROM \"customers\" AS \"r1\" WHERE \"r1\".\"id\" = \"t\".\"customer_id\" \
             ORDER BY \"r1\".\"id\" LIMIT 1) AS \"r1\" ON TRUE"
        ),
        "{}",
        small.text
    );
    let large = w1(balanced)
        .limit(101)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(!large.text.contains("customers"), "{}", large.text);
    let joined = w1(joined)
        .limit(10)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(!joined.text.contains(probe), "{}", joined.text);
}

#[tokio::test]
async fn each_edge_can_choose_its_strategy() {
    let db = shop("sr_counts_edges", Shape { orders: 100, ..W }).await;
    let expected = w1_sql(&db, W.orders.min(100)).await;
    let cases: Vec<(&str, Select<Order>, u64)> = vec![
        (
            "items batched in a select_related tree (product joined into their statement)",
            Order::query()
                .select_related(Order::CUSTOMER)
                .select_related(Order::ITEMS.with(OrderItem::PRODUCT).batched())
                .select_related(Order::TAGS),
            2,
        ),
        (
            "items and their products each batched",
            Order::query()
                .select_related(Order::CUSTOMER)
                .select_related(Order::ITEMS.with(OrderItem::PRODUCT.batched()).batched())
                .select_related(Order::TAGS),
            3,
        ),
        (
            "items joined in a balanced tree",
            Order::query()
                .balanced(Order::CUSTOMER)
                .balanced(Order::ITEMS.with(OrderItem::PRODUCT).joined())
                .balanced(Order::TAGS),
            2,
        ),
        (
            "everything batched through balanced",
            Order::query()
                .balanced(Order::CUSTOMER.batched())
                .balanced(Order::ITEMS.with(OrderItem::PRODUCT.batched()))
                .balanced(Order::TAGS),
            5,
        ),
        (
            "a prefetch tree whose nested edge joins into its parent's statement",
            Order::query()
                .prefetch(Order::CUSTOMER)
                .prefetch(Order::ITEMS.with(OrderItem::PRODUCT.joined()))
                .prefetch(Order::TAGS),
            4,
        ),
        (
            "a batched edge whose statement joins a to-one and, through it, a to-many",
            Order::query()
                .select_related(Order::CUSTOMER)
                .select_related(
                    Order::ITEMS
                        .with(OrderItem::PRODUCT.with(Product::STOCK.with(Stock::WAREHOUSE)))
                        .batched(),
                )
                .select_related(Order::TAGS),
            2,
        ),
        (
            "prefetch and select_related mixed, equal edges merged",
            Order::query()
                .select_related(Order::ITEMS)
                .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
                .select_related(Order::CUSTOMER)
                .select_related(Order::TAGS),
            2,
        ),
    ];
    for (what, query, expected_queries) in cases {
        // A page of 100 orders: few enough for balanced to join the root's to-one edges.
        let query = query.order_by(Order::ID.asc()).limit(100);
        let (orders, queries) = count_queries(&db, query.all(&*db)).await;
        let orders = orders.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(queries, expected_queries, "{what}");
        assert_eq!(w1_walk(&orders), expected, "{what}");
    }
}

#[tokio::test]
async fn empty_results_and_null_keys_cost_no_extra_query() {
    let db = shop("sr_counts_empty", Shape { orders: 30, ..W }).await;
    let none = Order::query().filter(Order::ID.lt(0));
    for query in [w1(joined), w1(balanced)] {
        let (orders, queries) = count_queries(&db, query.filter(Order::ID.lt(0)).all(&*db)).await;
        assert!(orders.unwrap().is_empty());
        assert_eq!(queries, 1);
    }
    let (orders, queries) = count_queries(&db, none.select_related(Order::ITEMS).all(&*db)).await;
    assert!(orders.unwrap().is_empty());
    assert_eq!(queries, 1);
    // Customers without a referrer: loaded and NULL, in one query, and the batched
    // referrer edge sends only the non-NULL keys.
    for strategy in [
        matrx_orm::LoadStrategy::Joined,
        matrx_orm::LoadStrategy::Batched,
    ] {
        let (customers, queries) = count_queries(
            &db,
            Customer::query()
                .filter(Customer::REFERRED_BY.is_null())
                .select_related(Customer::REFERRER.strategy(strategy))
                .all(&*db),
        )
        .await;
        let customers = customers.unwrap();
        assert!(!customers.is_empty());
        assert!(customers.iter().all(|c| c.referrer.state() == Some(None)));
        assert_eq!(queries, 1, "{strategy:?}");
    }
}

#[tokio::test]
async fn root_paging_and_filters_apply_to_parents_only() {
    let db = shop("sr_counts_paging", Shape { orders: 300, ..W }).await;
    let all = w1(prefetched).all(&*db).await.unwrap();
    for (limit, offset) in [(10, 0), (7, 13), (1, 299), (5, 400)] {
        for query in [w1(joined), w1(balanced)] {
            let page = query.limit(limit).offset(offset).all(&*db).await.unwrap();
            let expected: Vec<&Order> = all
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .collect();
            assert_eq!(
                json(&page),
                json(&expected),
                "limit {limit} offset {offset}"
            );
        }
    }
    let ten = w1(joined).limit(10).all(&*db).await.unwrap();
    assert_eq!(ten.len(), 10);
    let items: usize = ten.iter().map(|o| o.items.get().unwrap().len()).sum();
    assert!(
        items > 10,
        "every item of the 10 orders, not 10 rows: {items}"
    );

    // A filter and a descending order on the root, with a to-many edge joined.
    let query = Order::query()
        .filter(Order::STATUS.eq("paid") & Order::TOTAL_CENTS.gte(5_000))
        .order_by(Order::PLACED_AT.desc())
        .limit(20)
        .offset(3);
    let expected = query
        .clone()
        .prefetch(Order::ITEMS)
        .prefetch(Order::TAGS)
        .all(&*db)
        .await
        .unwrap();
    let got = query
        .select_related(Order::ITEMS)
        .select_related(Order::TAGS)
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(got.len(), 20);
    assert_eq!(json(&got), json(&expected));

    // first() and one() page the roots too.
    let first = w1(joined)
        .order_by(Order::ID.desc())
        .first(&*db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, 1, "ID asc came first in w1()");
    assert!(first.items.get().is_some());
    let one = w1(joined).filter(Order::ID.eq(42)).one(&*db).await.unwrap();
    assert_eq!(json(&one), json(&all[41]));
}

#[tokio::test]
async fn customised_edges_load_what_prefetch_loads() {
    let db = shop("sr_counts_custom", Shape { orders: 400, ..W }).await;
    type Tree = Box<dyn Fn(u8) -> Select<Customer>>;
    let trees: Vec<(&str, Tree)> = vec![
        (
            "to-many: filter, descending order, limit per parent; nested",
            Box::new(|how| {
                let tree = Customer::ORDERS
                    .filter(Order::STATUS.ne("shipped"))
                    .order_by(Order::PLACED_AT.desc())
                    .limit_per_parent(3)
                    .with(
                        Order::ITEMS
                            .order_by(OrderItem::QUANTITY.desc())
                            .order_by(OrderItem::ID.asc())
                            .limit_per_parent(2)
                            .with(OrderItem::PRODUCT.filter(Product::PRICE_CENTS.gt(300))),
                    )
                    .with(Order::TAGS.order_by(Tag::ID.desc()).limit_per_parent(1));
                add(Customer::query().order_by(Customer::ID.asc()), how, tree)
            }),
        ),
        (
            "to-one with a filter: NULL where the target does not match",
            Box::new(|how| {
                let tree = Customer::REFERRER
                    .filter(Customer::ID.lt(40))
                    .with(Customer::REFERRER);
                add(Customer::query().order_by(Customer::ID.asc()), how, tree)
            }),
        ),
        (
            "a limit of zero per parent",
            Box::new(|how| {
                let q = Customer::query().order_by(Customer::ID.asc());
                let q = add(q, how, Customer::ORDERS.limit_per_parent(0));
                add(q, how, Customer::REFERRER.limit_per_parent(0))
            }),
        ),
        (
            "many-to-many ordered and limited, composite-key targets",
            Box::new(|how| {
                let tree = Customer::ORDERS.with(
                    Order::ITEMS.with(
                        OrderItem::PRODUCT
                            .with(
                                Product::WAREHOUSES
                                    .order_by(Warehouse::NAME.desc())
                                    .limit_per_parent(2),
                            )
                            .with(
                                Product::STOCK
                                    .filter(Stock::QTY.gt(20))
                                    .with(Stock::WAREHOUSE),
                            ),
                    ),
                );
                add(
                    Customer::query().order_by(Customer::ID.asc()).limit(15),
                    how,
                    tree,
                )
            }),
        ),
    ];
    for (what, tree) in &trees {
        let expected = json(
            &tree(0)
                .all(&*db)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}")),
        );
        let (got, queries) = count_queries(&db, tree(1).all(&*db)).await;
        assert_eq!(
            json(&got.unwrap_or_else(|e| panic!("{what}: {e}"))),
            expected,
            "{what}: select_related"
        );
        assert_eq!(queries, 1, "{what}");
        let got = tree(2)
            .all(&*db)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(json(&got), expected, "{what}: balanced");
    }
}

/// Adds `tree` by prefetch (0), select_related (1) or balanced (2).
fn add<S: Model>(q: Select<S>, how: u8, tree: impl matrx_orm::IntoPrefetch<S>) -> Select<S> {
    match how {
        0 => q.prefetch(tree),
        1 => q.select_related(tree),
        _ => q.balanced(tree),
    }
}

#[tokio::test]
async fn repeated_rows_are_one_arc() {
    let db = shop("sr_counts_shared", Shape { orders: 300, ..W }).await;
    for query in [w1(joined), w1(balanced)] {
        let orders = query.all(&*db).await.unwrap();
        let a = orders.iter().find(|o| o.customer_id == 8).unwrap();
        let b = orders.iter().rev().find(|o| o.customer_id == 8).unwrap();
        assert_ne!(a.id, b.id);
        assert!(Arc::ptr_eq(
            a.customer.state().unwrap().unwrap(),
            b.customer.state().unwrap().unwrap()
        ));
        let tag = |t: i64| -> Vec<&Arc<Tag>> {
            orders
                .iter()
                .flat_map(|o| o.tags.get().unwrap())
                .filter(|x| x.id == t)
                .collect()
        };
        let mut counts = std::collections::HashMap::new();
        for t in orders.iter().flat_map(|o| o.tags.get().unwrap()) {
            *counts.entry(t.id).or_insert(0) += 1;
        }
        let common = counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(id, _)| *id)
            .unwrap();
        let sevens = tag(common);
        assert!(sevens.len() > 1);
        assert!(
            sevens.iter().all(|t| Arc::ptr_eq(t, sevens[0])),
            "many-to-many targets shared"
        );
        let product = |p: i64| -> Vec<&Arc<Product>> {
            orders
                .iter()
                .flat_map(|o| o.items.get().unwrap())
                .filter_map(|i| i.product.state().unwrap())
                .filter(|x| x.id == p)
                .collect()
        };
        let threes = product(3);
        assert!(threes.len() > 1);
        assert!(
            threes.iter().all(|p| Arc::ptr_eq(p, threes[0])),
            "to-one targets shared"
        );
    }
}

#[tokio::test]
async fn conflicting_edges_are_refused_before_any_query() {
    let db = shop("sr_counts_conflict", Shape { orders: 10, ..W }).await;
    let refused = [
        Order::query()
            .select_related(Order::ITEMS.limit_per_parent(1))
            .select_related(Order::ITEMS.with(OrderItem::PRODUCT)),
        Order::query()
            .select_related(Order::ITEMS.batched())
            .select_related(Order::ITEMS.joined()),
        Order::query()
            .select_related(Order::ITEMS.filter(OrderItem::QUANTITY.gt(1)))
            .prefetch(Order::ITEMS),
    ];
    for query in refused {
        let (res, queries) = count_queries(&db, query.all(&*db)).await;
        assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
        assert_eq!(queries, 0);
    }
    let unknown = Order::query().select_related_path("items__nope");
    assert!(matches!(unknown, Err(Error::InvalidInput(m)) if m.contains("nope")));
}

#[tokio::test]
async fn transactions_sessions_and_existing_collections() {
    let db = shop("sr_counts_exec", Shape { orders: 50, ..W }).await;
    let expected = w1_sql(&db, 50).await;
    let tx = db.begin().await.unwrap();
    assert_eq!(w1_walk(&w1(joined).all(&tx).await.unwrap()), expected);
    assert_eq!(w1_walk(&w1(balanced).all(&tx).await.unwrap()), expected);
    tx.rollback().await.unwrap();
    let session = db.session();
    let (orders, queries) = count_queries(&db, w1(joined).all(&session)).await;
    assert_eq!(w1_walk(&orders.unwrap()), expected);
    assert_eq!(queries, 1);

    // A joined edge on an existing collection runs as its own statement, with its
    // joined child inside it; slots loaded before keep their rows, and their children
    // still load.
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    let early = orders[0].fetch(&*db, Order::ITEMS).await.unwrap();
    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(
            &*db,
            &orders,
            Order::ITEMS.with(OrderItem::PRODUCT).joined(),
        ),
    )
    .await;
    res.unwrap();
    assert_eq!(
        queries, 2,
        "items with products joined, then the early items' products"
    );
    assert!(Arc::ptr_eq(&orders[0].items.get().unwrap()[0], &early[0]));
    for o in &orders {
        for i in o.items.get().unwrap() {
            assert_eq!(i.product.get().map(|p| p.id), Some(i.product_id));
        }
    }
}

#[tokio::test]
async fn the_union_statement_is_one_branch_per_edge() {
    // A page of at most 1,000 rows: to-one edges joined into their parent's branch.
    let query = w1(joined).filter(Order::STATUS.eq("paid")).limit(10);
    let sql = query.joined_statement(AggregateEncoding::Records).unwrap();
    let text = &sql.text;
    assert!(
        text.starts_with("WITH \"__root\" AS MATERIALIZED (SELECT \"t\".\"id\", "),
        "{text}"
    );
    assert!(
        text.contains(
            ") SELECT 0 AS \"__edge\", row_number() OVER ( ORDER BY \"t\".\"id\" ASC) AS \"__pos\", \"t\".\"id\", "
        ),
        "the root branch first, with its position in the query's order: {text}"
    );
    assert_eq!(text.matches(" UNION ALL SELECT ").count(), 2, "{text}");
    assert!(
        text.contains("FROM \"__root\" AS \"t\" LEFT JOIN \"customers\" AS \"r1\" ON \"r1\".\"id\" = \"t\".\"customer_id\" UNION ALL SELECT 2, "),
        "{text}"
    );
    assert!(
        text.contains("FROM \"order_items\" AS \"r2\" LEFT JOIN \"products\" AS \"r3\" ON \"r3\".\"id\" = \"r2\".\"product_id\" WHERE \"r2\".\"order_id\" = ANY(ARRAY(SELECT \"p2\".\"id\" FROM \"__root\" AS \"p2\"))"),
        "{text}"
    );
    assert_eq!(sql.params.len(), 2);

    // Every edge a branch: the page once, in a materialized CTE; the items' rows in a
    // CTE of their own (their products' branch reads them).
    let query = w1(joined)
        .filter(Order::STATUS.eq("paid"))
        .limit(10)
        .joined_shape(JoinedShape::UnionToOneBranched);
    let sql = query.joined_statement(AggregateEncoding::Records).unwrap();
    let text = &sql.text;
    assert!(
        text.contains("WHERE \"t\".\"status\" = $1 ORDER BY \"t\".\"id\" ASC LIMIT $2), \"e2\" AS (SELECT \"r2\".\"id\", "),
        "{text}"
    );
    assert!(
        text.contains("(NULL::\"customers\").\"email\""),
        "typed NULLs: {text}"
    );
    assert_eq!(text.matches(" UNION ALL SELECT ").count(), 4, "{text}");
    assert!(
        text.contains("FROM \"customers\" AS \"r1\" WHERE \"r1\".\"id\" = ANY(ARRAY(SELECT \"p1\".\"customer_id\" FROM \"__root\" AS \"p1\"))"),
        "{text}"
    );
    assert!(
        text.contains("FROM \"e2\" AS \"r2\" UNION ALL SELECT 3, "),
        "{text}"
    );
    assert!(
        text.contains("FROM \"products\" AS \"r3\" WHERE \"r3\".\"id\" = ANY(ARRAY(SELECT \"p3\".\"product_id\" FROM \"e2\" AS \"p3\"))"),
        "{text}"
    );
    // Many-to-many: the junction's parent key in fields of its own.
    assert!(
        text.contains("\"j4\".\"order_id\" FROM \"order_tags\" AS \"j4\" JOIN \"tags\" AS \"r4\""),
        "{text}"
    );
    // Branches share fields of the same declared type: the products' id, sku and name
    // in the customers' id, name and email; each row 16 fields, not 24.
    assert!(
        text.contains("UNION ALL SELECT 3, NULL, NULL, NULL, NULL, NULL, NULL, \"r3\".\"id\", \"r3\".\"sku\", \"r3\".\"name\", NULL, "),
        "{text}"
    );
    assert!(
        text.contains("UNION ALL SELECT 1, NULL, NULL, NULL, NULL, NULL, NULL, \"r1\".\"id\", \"r1\".\"name\", \"r1\".\"email\", \"r1\".\"created_at\", \"r1\".\"referred_by\", NULL, NULL, NULL, NULL FROM "),
        "{text}"
    );
    assert!(!text.contains("array_agg"), "{text}");
    assert_eq!(sql.params.len(), 2);

    // Unpaged: the root inlined, keys as a semi-join, to-one edges as branches.
    let all = w1(joined)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(
        all.text.starts_with("WITH \"__root\" AS NOT MATERIALIZED"),
        "{}",
        all.text
    );
    assert_eq!(
        all.text.matches(" UNION ALL SELECT ").count(),
        4,
        "{}",
        all.text
    );
    assert!(
        all.text.contains(
            "WHERE (\"r1\".\"id\") IN (SELECT \"p1\".\"customer_id\" FROM \"__root\" AS \"p1\")"
        ),
        "{}",
        all.text
    );

    // An edge with a limit per parent stays an aggregate, inside its parent's branch.
    let limited = Order::query()
        .order_by(Order::ID.asc())
        .select_related(Order::ITEMS.limit_per_parent(2).with(OrderItem::PRODUCT))
        .select_related(Order::TAGS)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    let text = &limited.text;
    assert_eq!(text.matches(" UNION ALL SELECT ").count(), 1, "{text}");
    assert_eq!(
        text.matches("LEFT JOIN LATERAL (SELECT array_agg(ROW(")
            .count(),
        1,
        "{text}"
    );
    // Below a branch, the aggregate is in that branch's rows (the root types it).
    let below = Order::query()
        .select_related(
            Order::ITEMS.with(OrderItem::PRODUCT.with(Product::STOCK.limit_per_parent(1))),
        )
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    let text = &below.text;
    assert_eq!(text.matches(" UNION ALL SELECT ").count(), 2, "{text}");
    assert_eq!(text.matches("NULL::record[]").count(), 1, "{text}");
    assert!(
        text.contains("FROM \"products\" AS \"r2\" LEFT JOIN LATERAL (SELECT array_agg(ROW("),
        "{text}"
    );

    // Only to-one edges: no union, the root's own statement with joins.
    let to_one = Order::query()
        .select_related(Order::CUSTOMER)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(to_one.text.starts_with("SELECT "), "{}", to_one.text);
}

#[tokio::test]
async fn the_statement_is_one_select_with_grouped_aggregates() {
    let query = w1(joined)
        .filter(Order::STATUS.eq("paid"))
        .limit(10)
        .joined_shape(JoinedShape::Aggregates);
    let sql = query.joined_statement(AggregateEncoding::Records).unwrap();
    let text = &sql.text;
    // The root rows, filtered and paged, in a common table expression the to-many
    // aggregates read their parents' keys from; a page is evaluated once.
    assert!(
        text.starts_with("WITH \"__root\" AS MATERIALIZED (SELECT \"t\".\"id\", "),
        "{text}"
    );
    assert!(
        text.contains("WHERE \"t\".\"status\" = $1 ORDER BY \"t\".\"id\" ASC LIMIT $2) SELECT "),
        "root filter and paging inside the CTE: {text}"
    );
    assert!(
        text.contains("FROM \"__root\" AS \"t\" LEFT JOIN "),
        "{text}"
    );
    // Each to-many edge: one aggregate per parent key over all the parents' children,
    // joined back by key; the page's keys as one array.
    assert_eq!(text.matches("LEFT JOIN (SELECT ").count(), 2, "{text}");
    assert!(!text.contains("LATERAL"), "{text}");
    assert!(
        text.contains(
            "WHERE \"r2\".\"order_id\" = ANY(ARRAY(SELECT \"p2\".\"id\" FROM \"__root\" AS \"p2\")) \
             GROUP BY \"r2\".\"order_id\") AS \"l2\" ON \"l2\".\"k0\" = \"t\".\"id\""
        ),
        "{text}"
    );
    assert!(
        text.contains("LEFT JOIN \"products\" AS \"r3\" ON \"r3\".\"id\" = \"r2\".\"product_id\""),
        "a to-one edge inside a grouped aggregate is a plain join: {text}"
    );
    assert!(
        text.contains("LEFT JOIN \"customers\" AS \"r1\" ON \"r1\".\"id\" = \"t\".\"customer_id\""),
        "{text}"
    );
    assert!(text.contains("FROM \"order_tags\" AS \"j4\" JOIN \"tags\" AS \"r4\" ON \"r4\".\"id\" = \"j4\".\"tag_id\""), "{text}");
    assert!(text.ends_with("ORDER BY \"t\".\"id\" ASC"), "{text}");
    assert_eq!(sql.params.len(), 2);
    let json = query.joined_statement(AggregateEncoding::Json).unwrap();
    assert_eq!(json.text.matches("json_agg(json_build_array(").count(), 2);

    // Unpaged: the keys as a semi-join on the root rows.
    let all = w1(joined)
        .joined_shape(JoinedShape::Aggregates)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(
        all.text.contains(
            "WHERE (\"r2\".\"order_id\") IN (SELECT \"p2\".\"id\" FROM \"__root\" AS \"p2\")"
        ),
        "{}",
        all.text
    );

    // Below a grouped edge, a to-many edge is a LATERAL subquery per row, inside the
    // aggregate (here under a to-one edge).
    let nested = Order::query()
        .select_related(Order::ITEMS.with(OrderItem::PRODUCT.with(Product::STOCK)))
        .joined_shape(JoinedShape::Aggregates)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    let text = &nested.text;
    assert_eq!(text.matches(" GROUP BY ").count(), 1, "{text}");
    assert!(
        text.contains("LEFT JOIN LATERAL (SELECT array_agg(ROW(\"r3\"."),
        "{text}"
    );

    // A limit per parent keeps the LATERAL subquery for that edge (and below it).
    let limited = Order::query()
        .order_by(Order::ID.asc())
        .select_related(Order::ITEMS.limit_per_parent(2).with(OrderItem::PRODUCT))
        .select_related(Order::TAGS)
        .joined_shape(JoinedShape::Aggregates)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    let text = &limited.text;
    assert_eq!(
        text.matches("LEFT JOIN LATERAL (SELECT array_agg(ROW(")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches(" GROUP BY ").count(), 1, "{text}");

    // Only to-one edges: no CTE, the root's own statement.
    let to_one = Order::query()
        .select_related(Order::CUSTOMER)
        .joined_statement(AggregateEncoding::Records)
        .unwrap();
    assert!(to_one.text.starts_with("SELECT "), "{}", to_one.text);
}

#[tokio::test]
async fn a_batched_statement_can_carry_joined_to_many_children() {
    let db = shop("sr_counts_keyed", Shape { orders: 120, ..W }).await;
    let tree = || {
        Order::ITEMS.with(
            OrderItem::PRODUCT
                .with(
                    Product::STOCK
                        .order_by(Stock::QTY.desc())
                        .order_by(Stock::REGION.asc())
                        .order_by(Stock::CODE.asc())
                        .with(Stock::WAREHOUSE),
                )
                .with(Product::WAREHOUSES.limit_per_parent(2)),
        )
    };
    let expected = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(tree())
        .all(&*db)
        .await
        .unwrap();
    let (got, queries) = count_queries(
        &db,
        Order::query()
            .order_by(Order::ID.asc())
            .select_related(tree().batched())
            .all(&*db),
    )
    .await;
    assert_eq!(
        queries, 2,
        "root; items with products, stock and warehouses"
    );
    assert_eq!(json(&got.unwrap()), json(&expected));
    // The same with the items limited per order (the batch statement's window).
    let limited = || {
        Order::ITEMS
            .order_by(OrderItem::ID.desc())
            .limit_per_parent(2)
            .with(OrderItem::PRODUCT.with(Product::STOCK))
    };
    let expected = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(limited())
        .all(&*db)
        .await
        .unwrap();
    let got = Order::query()
        .order_by(Order::ID.asc())
        .select_related(limited().batched())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(json(&got), json(&expected));
}
