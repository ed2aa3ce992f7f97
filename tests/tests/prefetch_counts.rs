//! Prefetch costs exactly one query per relation edge, whatever the collection size:
//! the W1 and W3 benchmark trees at several sizes (checked against plain SQL), empty
//! collections, NULL and duplicate keys, string paths, merging of equal edges, deep
//! self-referencing chains, transactions and sessions, statement reuse across sizes,
//! and 100,000 parent keys in one query.

mod common;
mod workload_checks;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use common::{count_queries, test_db, TestDb};
use matrx_orm::prelude::*;
use matrx_orm::{Error, Prefetch, Related};
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

fn w1_tree() -> Prefetch<Order> {
    let mut tree = Prefetch::default();
    tree.add(Order::CUSTOMER);
    tree.add(Order::ITEMS.with(OrderItem::PRODUCT));
    tree.add(Order::TAGS);
    tree
}

fn w1_query() -> matrx_orm::Select<Order> {
    Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
        .prefetch(Order::TAGS)
}

#[tokio::test]
async fn w1_tree_is_five_queries_at_every_size() {
    let db = shop("pf_counts_w1", W).await;
    for n in [1i64, 10, 500, 3_000] {
        let (orders, queries) = count_queries(&db, async {
            w1_query().filter(Order::ID.lte(n)).all(&*db).await.unwrap()
        })
        .await;
        assert_eq!(orders.len() as i64, n);
        assert_eq!(
            queries, 5,
            "orders, customers, items, products, tags for {n} orders"
        );
        assert_eq!(
            w1_walk(&orders),
            w1_sql(&db, n).await,
            "W1 checksums, {n} orders"
        );
        println!("W1 with {n} orders: {queries} queries");
    }
}

#[tokio::test]
async fn w1_tree_on_an_existing_collection_is_four_queries() {
    let db = shop("pf_counts_w1_standalone", W).await;
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    let (res, queries) =
        count_queries(&db, matrx_orm::prefetch_related(&*db, &orders, w1_tree())).await;
    res.unwrap();
    assert_eq!(
        queries, 4,
        "one per edge; the collection was already loaded"
    );
    assert_eq!(w1_walk(&orders), w1_sql(&db, W.orders).await);

    // A subset, borrowed in any order: still one query per edge.
    let some: Vec<Order> = Order::query()
        .filter(Order::ID.is_in([7i64, 3, 1_500, 2_999]))
        .all(&*db)
        .await
        .unwrap();
    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, some.iter().rev(), w1_tree()),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 4);
    w1_walk(&some);
}

#[tokio::test]
async fn w3_tree_is_four_queries() {
    let db = shop("pf_counts_w3", W).await;
    let (products, queries) = count_queries(&db, async {
        Product::query()
            .order_by(Product::ID.asc())
            .prefetch(Product::STOCK.with(Stock::WAREHOUSE))
            .prefetch(Product::WAREHOUSES)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        queries, 4,
        "products, stock, warehouses of stock, linked warehouses"
    );
    println!("W3 with {} products: {queries} queries", products.len());
    assert_eq!(w3_walk(&products), w3_sql(&db).await);
    // Warehouses are shared by many stock rows: each held once per edge.
    let mut stock_whs: Vec<&Arc<Warehouse>> = Vec::new();
    for p in &products {
        for s in p.stock.get().unwrap() {
            stock_whs.push(s.warehouse.state().unwrap().unwrap());
        }
    }
    let distinct: HashSet<*const Warehouse> = stock_whs.iter().map(|w| Arc::as_ptr(w)).collect();
    let distinct_keys: HashSet<(String, i32)> = stock_whs
        .iter()
        .map(|w| (w.region.clone(), w.code))
        .collect();
    assert_eq!(
        distinct.len(),
        distinct_keys.len(),
        "one Arc per warehouse row"
    );
}

#[tokio::test]
async fn empty_collections_cost_the_root_query_or_nothing() {
    let db = shop("pf_counts_empty", Shape { orders: 20, ..W }).await;
    let (orders, queries) = count_queries(&db, async {
        w1_query()
            .filter(Order::ID.lt(0i64))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert!(orders.is_empty());
    assert_eq!(queries, 1, "the root query only");

    let empty: Vec<Order> = Vec::new();
    let (res, queries) =
        count_queries(&db, matrx_orm::prefetch_related(&*db, &empty, w1_tree())).await;
    res.unwrap();
    assert_eq!(queries, 0);
    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &Vec::<Product>::new(), Product::WAREHOUSES),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 0);

    // Orders without items: the nested product edge has no parents and costs nothing.
    let (orders, queries) = count_queries(&db, async {
        w1_query()
            .filter(Order::ID.is_in([5i64, 10, 15]))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert!(orders.iter().all(|o| o.items.get() == Some(&[][..])));
    assert_eq!(
        queries, 4,
        "orders, customers, items (none), tags; no products"
    );
}

#[tokio::test]
async fn null_keys_are_skipped() {
    let db = shop("pf_counts_null", Shape { orders: 50, ..W }).await;
    // Odd customers have no referrer.
    let (odd, queries) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::REFERRED_BY.is_null())
            .prefetch(Customer::REFERRER.with(Customer::ORDERS))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(odd.len(), 100);
    assert_eq!(
        queries, 1,
        "every key is NULL: the edge and its child cost nothing"
    );
    assert!(odd.iter().all(|c| c.referrer.state() == Some(None)));

    // Mixed: only the non-NULL keys are sent.
    let (all, queries) = count_queries(&db, async {
        Customer::query()
            .order_by(Customer::ID.asc())
            .prefetch(Customer::REFERRER)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(queries, 2);
    for c in &all {
        match c.referred_by {
            None => assert_eq!(c.referrer.state(), Some(None)),
            Some(r) => assert_eq!(c.referrer.get().map(|x| x.id), Some(r)),
        }
    }
}

/// Loads relation `R` for `keys` through the batch primitive.
async fn edge<R: Relation>(
    db: &Db,
    _: R,
    keys: Vec<R::Key>,
) -> matrx_orm::Groups<R::Key, R::Target> {
    matrx_orm::load_edge::<R>(db, keys, &Related::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn duplicate_keys_are_deduplicated_and_rows_held_once() {
    let db = shop("pf_counts_dedup", Shape { orders: 400, ..W }).await;
    let orders = w1_query().all(&*db).await.unwrap();
    // 400 orders over 200 customers: every customer row is one Arc shared by its orders.
    let mut by_customer: std::collections::HashMap<i64, &Arc<Customer>> = Default::default();
    for o in &orders {
        let c = o.customer.state().unwrap().unwrap();
        let first = by_customer.entry(c.id).or_insert(c);
        assert!(Arc::ptr_eq(first, c), "customer {} held once", c.id);
    }
    assert!(
        orders
            .iter()
            .filter(|o| o.customer_id == orders[0].customer_id)
            .count()
            > 1
    );
    // A tag shared by many orders is one Arc.
    let mut by_tag: std::collections::HashMap<i64, (&Arc<Tag>, usize)> = Default::default();
    for o in &orders {
        for t in o.tags.get().unwrap() {
            let e = by_tag.entry(t.id).or_insert((t, 0));
            assert!(Arc::ptr_eq(e.0, t), "tag {} held once", t.id);
            e.1 += 1;
        }
    }
    assert!(by_tag.values().any(|(_, n)| *n > 10), "tags are shared");
    // Products shared by items of different orders: one Arc.
    let mut by_product: std::collections::HashMap<i64, &Arc<Product>> = Default::default();
    for o in &orders {
        for it in o.items.get().unwrap() {
            let p = it.product.state().unwrap().unwrap();
            assert!(Arc::ptr_eq(by_product.entry(p.id).or_insert(p), p));
        }
    }

    // The batch primitive: duplicate keys are sent once, each row comes back once.
    let (groups, queries) = count_queries(
        &db,
        edge(&db, Order::CUSTOMER, vec![3, 3, 3, 5, 3, 5, 999_999]),
    )
    .await;
    assert_eq!(queries, 1);
    assert_eq!(groups.targets().len(), 2);
    assert_eq!(groups.get(&3).len(), 1);
    assert_eq!(groups.get(&999_999).len(), 0);
    let (groups, queries) = count_queries(&db, edge(&db, Order::TAGS, vec![3, 7, 3, 7, 11])).await;
    assert_eq!(queries, 1);
    let linked: HashSet<i64> = [3i64, 7, 11]
        .iter()
        .flat_map(|k| groups.get(k).iter().map(|t| t.id))
        .collect();
    assert_eq!(
        groups.targets().len(),
        linked.len(),
        "each tag decoded once"
    );
    let (groups, queries) = count_queries(&db, edge(&db, Order::CUSTOMER, vec![])).await;
    assert_eq!((groups.targets().len(), queries), (0, 0));
    let (groups, queries) = count_queries(
        &db,
        edge(
            &db,
            Stock::WAREHOUSE,
            vec![
                ("eu".into(), 1),
                ("eu".into(), 1),
                ("na".into(), 2),
                ("zz".into(), 1),
            ],
        ),
    )
    .await;
    assert_eq!(queries, 1);
    assert_eq!(groups.targets().len(), 2);
    assert_eq!(groups.get(&("eu".into(), 1))[0].name, "eu-1-w");
}

#[tokio::test]
async fn string_paths_build_the_same_graph() {
    let db = shop("pf_counts_paths", Shape { orders: 300, ..W }).await;
    let typed = w1_query().all(&*db).await.unwrap();
    let (by_path, queries) = count_queries(&db, async {
        Order::query()
            .order_by(Order::ID.asc())
            .prefetch_path("customer")
            .unwrap()
            .prefetch_path("items__product")
            .unwrap()
            .prefetch_path("tags")
            .unwrap()
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(queries, 5);
    assert_eq!(
        serde_json::to_value(&by_path).unwrap(),
        serde_json::to_value(&typed).unwrap()
    );

    let products = Product::query()
        .order_by(Product::ID.asc())
        .prefetch_path("stock__warehouse")
        .unwrap()
        .prefetch_path("warehouses")
        .unwrap();
    let (products, queries) = count_queries(&db, products.all(&*db)).await;
    let products = products.unwrap();
    assert_eq!(queries, 4);
    assert_eq!(w3_walk(&products), w3_sql(&db).await);

    // Prefetch::parse on its own, standalone.
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    let tree = Prefetch::<Order>::parse("customer__referrer").unwrap();
    let (res, queries) = count_queries(&db, matrx_orm::prefetch_related(&*db, &orders, tree)).await;
    res.unwrap();
    assert_eq!(queries, 2);
    for o in &orders {
        let c = o.customer.get().unwrap();
        assert_eq!(c.referrer.get().map(|r| r.id), c.referred_by);
    }
}

#[tokio::test]
async fn an_unknown_path_segment_is_invalid_input_naming_it() {
    let err = Order::query().prefetch_path("items__nope").unwrap_err();
    match &err {
        Error::InvalidInput(msg) => {
            assert!(msg.contains("nope"), "{msg}");
            assert!(msg.contains("OrderItem"), "{msg}");
            assert!(
                msg.contains("order, product"),
                "lists the valid names: {msg}"
            );
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    match Order::query().prefetch_path("custmer") {
        Err(Error::InvalidInput(msg)) => {
            assert!(msg.contains("custmer"), "{msg}");
            assert!(msg.contains("customer, items, tags"), "{msg}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    match Customer::query().prefetch_path("orders__items__product__nope__x") {
        Err(Error::InvalidInput(msg)) => {
            assert!(msg.contains("`nope`"), "{msg}");
            assert!(msg.contains("stock, warehouses"), "{msg}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // Tags have no relations at all; column names are not relations.
    match Order::query().prefetch_path("tags__name") {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("(none)"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(matches!(
        Order::query().prefetch_path("customer_id"),
        Err(Error::InvalidInput(_))
    ));
    // Empty segments are refused too, not silently dropped.
    for bad in ["", "__", "items__", "__items", "items____product"] {
        assert!(
            matches!(Prefetch::<Order>::parse(bad), Err(Error::InvalidInput(_))),
            "{bad:?} should be refused"
        );
    }
}

#[tokio::test]
async fn equal_edges_are_merged() {
    let db = shop("pf_counts_merge", Shape { orders: 100, ..W }).await;
    let (orders, queries) = count_queries(&db, async {
        Order::query()
            .prefetch(Order::ITEMS)
            .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(queries, 3, "orders, items once, products");
    assert!(orders
        .iter()
        .flat_map(|o| o.items.iter())
        .all(|i| i.product.get().is_some()));

    let (_, queries) = count_queries(&db, async {
        Order::query()
            .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
            .prefetch(Order::ITEMS)
            .prefetch(Order::ITEMS.with(OrderItem::ORDER))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(queries, 4, "orders, items once, products, orders of items");

    let (_, queries) = count_queries(&db, async {
        Order::query()
            .prefetch_path("items")
            .unwrap()
            .prefetch_path("items__product")
            .unwrap()
            .prefetch_path("items__product__stock")
            .unwrap()
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(queries, 4);

    // The same tree twice, and nested merges deeper down.
    let (_, queries) = count_queries(&db, async {
        w1_query()
            .prefetch(w1_tree())
            .prefetch(Order::CUSTOMER.with(Customer::REFERRER))
            .prefetch(Order::CUSTOMER.with(Customer::ORDERS))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        queries, 7,
        "the W1 five, the customers' referrers and orders"
    );
}

#[tokio::test]
async fn deep_self_reference_chains_cost_one_query_per_edge() {
    let db = shop("pf_counts_deep", Shape { orders: 400, ..W }).await;
    // Customer c is referred by c / 2 when c is even: 8 -> 4 -> 2 -> 1 -> NULL.
    let (customers, queries) = count_queries(&db, async {
        Customer::query()
            .order_by(Customer::ID.asc())
            .prefetch(Customer::REFERRER.with(Customer::REFERRER.with(Customer::ORDERS)))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        queries, 4,
        "customers, referrers, their referrers, their orders"
    );
    for c in &customers {
        let Some(r1) = c.referrer.get() else {
            assert!(c.referred_by.is_none());
            continue;
        };
        assert_eq!(Some(r1.id), c.referred_by);
        match r1.referrer.get() {
            None => assert_eq!(r1.referrer.state(), Some(None)),
            Some(r2) => {
                assert_eq!(Some(r2.id), r1.referred_by);
                let orders = r2.orders.get().expect("third level loaded");
                assert!(orders.iter().all(|o| o.customer_id == r2.id));
                assert!(r2.referrer.state().is_none(), "not part of the tree");
            }
        }
        assert!(r1.orders.get().is_none(), "not part of the tree");
    }
    let c8 = &customers[7];
    assert_eq!(
        c8.referrer
            .get()
            .and_then(|r| r.referrer.get())
            .map(|r| r.id),
        Some(2)
    );

    // Four levels, from orders: order -> customer -> referrer -> referrer -> referrer.
    let (orders, queries) = count_queries(&db, async {
        Order::query()
            .filter(Order::ID.lte(50i64))
            .prefetch_path("customer__referrer__referrer__referrer")
            .unwrap()
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    let mut expected = 2; // orders, customers
    let mut level: Vec<&Customer> = orders.iter().map(|o| o.customer.get().unwrap()).collect();
    for _ in 0..3 {
        if level.iter().any(|c| c.referred_by.is_some()) {
            expected += 1;
        }
        level = level.iter().filter_map(|c| c.referrer.get()).collect();
    }
    assert_eq!(queries, expected);
    assert!(expected >= 4);
}

#[tokio::test]
async fn prefetch_in_a_transaction_and_a_session_has_the_same_counts() {
    let db = shop("pf_counts_tx", Shape { orders: 500, ..W }).await;
    let expected = w1_sql(&db, 500).await;
    let tx = db.begin().await.unwrap();
    let (orders, queries) = count_queries(&db, w1_query().all(&tx)).await;
    assert_eq!(queries, 5);
    assert_eq!(w1_walk(&orders.unwrap()), expected);
    let (products, queries) = count_queries(&db, async {
        Product::query()
            .prefetch(Product::STOCK.with(Stock::WAREHOUSE))
            .prefetch(Product::WAREHOUSES)
            .all(&tx)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(queries, 4);
    assert_eq!(products.len(), 100);
    // Rows written inside the transaction are seen by its prefetch.
    tx.execute_sql(
        "INSERT INTO order_tags (order_id, tag_id) SELECT 4, id FROM tags WHERE id > 10
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    let orders = w1_query()
        .filter(Order::ID.eq(4i64))
        .all(&tx)
        .await
        .unwrap();
    assert!(orders[0].tags.get().unwrap().len() >= 10);
    tx.rollback().await.unwrap();

    let session = db.session();
    let (orders, queries) = count_queries(&db, w1_query().all(&session)).await;
    assert_eq!(queries, 5);
    assert_eq!(session.query_count(), 5);
    assert_eq!(w1_walk(&orders.unwrap()), expected);

    // Strict sessions prefetch as usual.
    let mut strict = db.session();
    strict.set_strict(true);
    let (orders, queries) = count_queries(&db, w1_query().all(&strict)).await;
    assert_eq!(queries, 5);
    assert_eq!(w1_walk(&orders.unwrap()), expected);
}

#[tokio::test]
async fn statements_do_not_depend_on_the_collection_size() {
    let tdb = shop("pf_counts_stmt", Shape { orders: 1_000, ..W }).await;
    // One connection, so every statement is prepared on it.
    let db = Db::builder(tdb.schema.url())
        .search_path(tdb.schema.name())
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    let prepared = || async {
        let rows = db
            .query_sql("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap();
        rows[0].get::<_, i64>(0)
    };
    let before = prepared().await;
    let (small, q_small) =
        count_queries(&db, w1_query().filter(Order::ID.lte(10i64)).all(&db)).await;
    assert_eq!(small.unwrap().len(), 10);
    let after_small = prepared().await;
    assert!(
        after_small > before,
        "the first run prepares its statements"
    );
    let (large, q_large) =
        count_queries(&db, w1_query().filter(Order::ID.lte(1_000i64)).all(&db)).await;
    let large = large.unwrap();
    assert_eq!(large.len(), 1_000);
    assert_eq!((q_small, q_large), (5, 5));
    assert_eq!(
        prepared().await,
        after_small,
        "1,000 parents reuse the statements prepared for 10"
    );
    assert_eq!(w1_walk(&large), w1_sql(&db, 1_000).await);

    // The edge statements bind one array per key column, whatever the size.
    let rows = db
        .query_sql(
            "SELECT statement, cardinality(parameter_types) FROM pg_prepared_statements
             WHERE statement LIKE '%ANY(%' OR statement LIKE '%unnest(%'",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 4, "the four edges of W1");
    for r in &rows {
        let (text, params): (String, i32) = (r.get(0), r.get(1));
        assert!(params <= 2, "{params} parameters in {text}");
    }
}

#[tokio::test]
async fn a_hundred_thousand_parent_keys_take_one_query_per_edge() {
    let db = test_db("pf_counts_100k").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    db.batch_execute(
        "INSERT INTO customers (id, name, email, created_at, referred_by)
         SELECT g, 'c' || g, 'c' || g || '@example.com', now(), NULLIF(g - 1, 0)
         FROM generate_series(1, 100000) AS g;
         INSERT INTO orders (customer_id, status, placed_at, total_cents)
         SELECT g * 1000, 'new', now(), g FROM generate_series(1, 100) AS g;",
    )
    .await
    .unwrap();
    let customers = Customer::query()
        .order_by(Customer::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(customers.len(), 100_000);

    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &customers, Customer::REFERRER),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 1, "99,999 distinct keys in one query");
    assert_eq!(customers[0].referrer.state(), Some(None));
    assert_eq!(customers[99_999].referrer.get().map(|r| r.id), Some(99_999));
    assert!(customers[1..]
        .iter()
        .all(|c| c.referrer.get().map(|r| r.id) == c.referred_by));

    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &customers, Customer::ORDERS),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 1, "100,000 keys, one query");
    let with_orders = customers
        .iter()
        .filter(|c| !c.orders.get().unwrap().is_empty())
        .count();
    assert_eq!(with_orders, 100);
    assert_eq!(customers[999].orders.get().unwrap()[0].customer_id, 1_000);

    // A composite key with 100,000 distinct values: two arrays, one query.
    let stock: Vec<Stock> = (0..100_000)
        .map(|i| Stock {
            product_id: 1,
            region: REGIONS[i % 5].to_owned(),
            code: i as i32,
            qty: 0,
            warehouse: Default::default(),
            product: Default::default(),
        })
        .collect();
    Warehouse::insert_many(
        &*db,
        &[Warehouse {
            region: "eu".into(),
            code: 77_777,
            name: "found".into(),
        }],
    )
    .await
    .unwrap();
    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &stock, Stock::WAREHOUSE),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 1);
    let found: Vec<&Stock> = stock
        .iter()
        .filter(|s| s.warehouse.get().is_some())
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].region.as_str(), found[0].code), ("eu", 77_777));
    assert!(stock.iter().all(|s| s.warehouse.state().is_some()));
}

#[tokio::test]
async fn already_loaded_edges_cost_nothing_but_their_children_still_load() {
    let db = shop("pf_counts_loaded", Shape { orders: 60, ..W }).await;
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    let lazily = orders[0]
        .fetch(&*db, Order::CUSTOMER)
        .await
        .unwrap()
        .unwrap();
    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &orders, Order::CUSTOMER),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 1);
    assert!(
        Arc::ptr_eq(orders[0].customer.state().unwrap().unwrap(), &lazily),
        "a loaded slot is left alone"
    );
    assert!(orders.iter().all(|o| o.customer.get().is_some()));

    // Every customer is loaded now: the edge costs nothing, its child edge one query,
    // run on the customers already attached.
    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &orders, Order::CUSTOMER.with(Customer::REFERRER)),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 1);
    for o in &orders {
        let c = o.customer.get().unwrap();
        assert_eq!(c.referrer.get().map(|r| r.id), c.referred_by);
    }
    assert!(
        lazily.referrer.state().is_some(),
        "the lazily loaded row got it too"
    );

    let (res, queries) = count_queries(
        &db,
        matrx_orm::prefetch_related(&*db, &orders, Order::CUSTOMER.with(Customer::REFERRER)),
    )
    .await;
    res.unwrap();
    assert_eq!(queries, 0, "everything is loaded");
}
