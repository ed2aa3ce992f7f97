//! Lazy, per-instance relation loads (`fetch`, `fetch_fk`, `fetch_ifk`, `fetch_m2m`,
//! `fetch_all_related`) on a small shop: the right rows, in the documented order, for
//! every relation kind, with exactly one query per load (none for a NULL key or an
//! already loaded relation), plus serde output and strict mode.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use common::{count_queries, test_db, TestDb};
use matrx_orm::prelude::*;
use matrx_orm::Error;

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn customer(id: i64, name: &str, referred_by: Option<i64>) -> Customer {
    Customer {
        id,
        name: name.to_owned(),
        email: format!("{}@example.com", name.to_lowercase()),
        created_at: ts(id),
        referred_by,
        referrer: Default::default(),
        orders: Default::default(),
    }
}

fn product(id: i64, price_cents: i32) -> Product {
    Product {
        id,
        sku: format!("SKU-{id}"),
        name: format!("product {id}"),
        price_cents,
        stock: Default::default(),
        warehouses: Default::default(),
    }
}

fn order(id: i64, customer_id: i64) -> Order {
    Order {
        id,
        customer_id,
        status: "paid".to_owned(),
        placed_at: ts(1_000 + id),
        total_cents: 100 * id,
        customer: Default::default(),
        items: Default::default(),
        tags: Default::default(),
    }
}

fn item(id: i64, order_id: i64, product_id: i64, quantity: i32) -> OrderItem {
    OrderItem {
        id,
        order_id,
        product_id,
        quantity,
        unit_price_cents: 10 * id as i32,
        order: Default::default(),
        product: Default::default(),
    }
}

fn tag(id: i64, name: &str) -> Tag {
    Tag {
        id,
        name: name.to_owned(),
    }
}

fn warehouse(region: &str, code: i32, name: &str) -> Warehouse {
    Warehouse {
        region: region.to_owned(),
        code,
        name: name.to_owned(),
    }
}

fn stock(product_id: i64, region: &str, code: i32, qty: i32) -> Stock {
    Stock {
        product_id,
        region: region.to_owned(),
        code,
        qty,
        warehouse: Default::default(),
        product: Default::default(),
    }
}

/// The small shop every test here reads:
///
/// * customers: 1 Ann (no referrer), 2 Bob (referred by Ann), 3 Cid (referred by Bob),
///   4 Dan (no referrer, no orders)
/// * orders: 10 (Ann), 11 (Bob), 12 (Ann; no items, no tags)
/// * items (inserted out of id order): order 10 -> 5, 2, 9; order 11 -> 7
/// * tags 1 gift, 2 rush, 3 fragile; order 10 -> 3, 1 (inserted in that order); 11 -> 1
/// * warehouses (af,1) (eu,2) (eu,1) (na,7); stock of product 1 inserted out of key
///   order; product_warehouses of product 1 likewise; product 3 has neither
async fn shop(prefix: &str) -> TestDb {
    let db = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    Customer::insert_rows(&[
        customer(1, "Ann", None),
        customer(2, "Bob", Some(1)),
        customer(3, "Cid", Some(2)),
        customer(4, "Dan", None),
    ])
    .include_auto()
    .exec(&*db)
    .await
    .unwrap();
    Product::insert_rows(&[product(1, 150), product(2, 275), product(3, 990)])
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    Order::insert_rows(&[order(10, 1), order(11, 2), order(12, 1)])
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    OrderItem::insert_rows(&[
        item(5, 10, 2, 1),
        item(2, 10, 1, 3),
        item(9, 10, 3, 4),
        item(7, 11, 1, 5),
    ])
    .include_auto()
    .exec(&*db)
    .await
    .unwrap();
    Tag::insert_rows(&[tag(1, "gift"), tag(2, "rush"), tag(3, "fragile")])
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    Warehouse::insert_many(
        &*db,
        &[
            warehouse("eu", 2, "Berlin"),
            warehouse("af", 1, "Lagos"),
            warehouse("na", 7, "Denver"),
            warehouse("eu", 1, "Paris"),
        ],
    )
    .await
    .unwrap();
    Stock::insert_many(
        &*db,
        &[
            stock(1, "eu", 2, 5),
            stock(1, "af", 1, 7),
            stock(1, "eu", 1, 3),
            stock(2, "na", 7, 1),
        ],
    )
    .await
    .unwrap();
    db.batch_execute(
        "INSERT INTO order_tags (order_id, tag_id) VALUES (10, 3), (10, 1), (11, 1);
         INSERT INTO product_warehouses (product_id, region, code)
             VALUES (1, 'na', 7), (1, 'af', 1), (1, 'eu', 2), (2, 'eu', 1);",
    )
    .await
    .unwrap();
    db
}

async fn get_order(db: &Db, id: i64) -> Order {
    Order::get(db, &id).await.unwrap()
}

async fn get_customer(db: &Db, id: i64) -> Customer {
    Customer::get(db, &id).await.unwrap()
}

async fn get_product(db: &Db, id: i64) -> Product {
    Product::get(db, &id).await.unwrap()
}

fn ids<T, K>(items: &[Arc<T>], key: impl Fn(&T) -> K) -> Vec<K> {
    items.iter().map(|t| key(t)).collect()
}

fn wh_key(w: &Warehouse) -> (String, i32) {
    (w.region.clone(), w.code)
}

fn stock_key(s: &Stock) -> (String, i32) {
    (s.region.clone(), s.code)
}

#[tokio::test]
async fn belongs_to_loads_the_target_with_one_query_then_none() {
    let db = shop("rel_lazy_fk").await;
    let o = get_order(&db, 11).await;
    assert!(o.customer.state().is_none(), "not loaded before the fetch");

    let (customer, n) = count_queries(&db, o.fetch(&*db, Order::CUSTOMER)).await;
    let customer = customer.unwrap().expect("order 11 has a customer");
    assert_eq!(n, 1, "one query for a lazy belongs_to load");
    assert_eq!(customer.id, 2);
    assert_eq!(customer.name, "Bob");
    assert_eq!(customer.referred_by, Some(1));
    assert!(Arc::ptr_eq(&customer, o.customer.state().unwrap().unwrap()));
    assert_eq!(o.customer.get().map(|c| c.id), Some(2));
    // The loaded target's own relations start not loaded.
    assert!(customer.referrer.state().is_none());
    assert!(customer.orders.get().is_none());

    let (again, n) = count_queries(&db, o.fetch(&*db, Order::CUSTOMER)).await;
    assert_eq!(n, 0, "a loaded relation is answered from the slot");
    assert!(Arc::ptr_eq(&again.unwrap().unwrap(), &customer));

    // fetch_fk is the same load under the seed's name.
    let o2 = get_order(&db, 10).await;
    let (c, n) = count_queries(&db, o2.fetch_fk(&*db, Order::CUSTOMER)).await;
    assert_eq!(n, 1);
    assert_eq!(c.unwrap().unwrap().name, "Ann");
    let (_, n) = count_queries(&db, o2.fetch_fk(&*db, Order::CUSTOMER)).await;
    assert_eq!(n, 0);

    // An item's two belongs_to relations.
    let it = OrderItem::get(&*db, &9).await.unwrap();
    let (p, n) = count_queries(&db, it.fetch(&*db, OrderItem::PRODUCT)).await;
    assert_eq!((p.unwrap().unwrap().id, n), (3, 1));
    let (parent, n) = count_queries(&db, it.fetch(&*db, OrderItem::ORDER)).await;
    assert_eq!((parent.unwrap().unwrap().id, n), (10, 1));
}

#[tokio::test]
async fn self_reference_and_a_null_key() {
    let db = shop("rel_lazy_self").await;
    let cid = get_customer(&db, 3).await;
    let (bob, n) = count_queries(&db, cid.fetch(&*db, Customer::REFERRER)).await;
    let bob = bob.unwrap().unwrap();
    assert_eq!((bob.id, n), (2, 1));
    // Walk the chain lazily on the loaded target: Bob -> Ann -> NULL.
    let (ann, n) = count_queries(&db, bob.fetch(&*db, Customer::REFERRER)).await;
    let ann = ann.unwrap().unwrap();
    assert_eq!((ann.id, n), (1, 1));
    assert_eq!(
        cid.referrer
            .get()
            .and_then(|b| b.referrer.get())
            .map(|a| a.id),
        Some(1),
        "the chain is navigable from the first instance"
    );

    let (none, n) = count_queries(&db, ann.fetch(&*db, Customer::REFERRER)).await;
    assert_eq!(n, 0, "a NULL key owes no query");
    assert!(none.unwrap().is_none());
    assert_eq!(
        ann.referrer.state(),
        Some(None),
        "loaded, and NULL: distinct from not loaded"
    );
    assert!(ann.referrer.get().is_none());

    let dan = get_customer(&db, 4).await;
    assert_eq!(dan.referrer.state(), None, "not loaded yet");
    let (r, n) = count_queries(&db, dan.fetch_fk(&*db, Customer::REFERRER)).await;
    assert_eq!((r.unwrap(), n), (None, 0));
    assert_eq!(dan.referrer.state(), Some(None));
}

#[tokio::test]
async fn has_many_in_id_order_with_one_query() {
    let db = shop("rel_lazy_ifk").await;
    let o = get_order(&db, 10).await;
    let (items, n) = count_queries(&db, o.fetch(&*db, Order::ITEMS)).await;
    let items = items.unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        ids(&items, |i| i.id),
        vec![2, 5, 9],
        "by item id, not insertion order"
    );
    assert!(items.iter().all(|i| i.order_id == 10));
    assert_eq!(o.items.get().map(<[_]>::len), Some(3));
    assert_eq!(
        o.items.iter().map(|i| i.quantity).collect::<Vec<_>>(),
        vec![3, 1, 4]
    );
    let (again, n) = count_queries(&db, o.fetch_ifk(&*db, Order::ITEMS)).await;
    assert_eq!(n, 0);
    assert!(Arc::ptr_eq(&again.unwrap()[0], &items[0]));

    let ann = get_customer(&db, 1).await;
    let (orders, n) = count_queries(&db, ann.fetch_ifk(&*db, Customer::ORDERS)).await;
    assert_eq!(n, 1);
    assert_eq!(ids(&orders.unwrap(), |o| o.id), vec![10, 12]);
    let bob = get_customer(&db, 2).await;
    let (orders, n) = count_queries(&db, bob.fetch(&*db, Customer::ORDERS)).await;
    assert_eq!((ids(&orders.unwrap(), |o| o.id), n), (vec![11], 1));
}

#[tokio::test]
async fn empty_has_many_is_loaded_and_empty() {
    let db = shop("rel_lazy_empty").await;
    let o = get_order(&db, 12).await;
    assert!(o.items.get().is_none(), "not loaded");
    assert!(o.items.is_not_loaded());
    let (items, n) = count_queries(&db, o.fetch(&*db, Order::ITEMS)).await;
    assert_eq!(n, 1, "an empty answer still costs its one query");
    assert!(items.unwrap().is_empty());
    assert_eq!(o.items.get(), Some(&[][..]), "loaded, and empty");
    assert!(!o.items.is_not_loaded());
    let (_, n) = count_queries(&db, o.fetch(&*db, Order::ITEMS)).await;
    assert_eq!(n, 0, "an empty loaded list is not loaded again");

    let dan = get_customer(&db, 4).await;
    let (orders, n) = count_queries(&db, dan.fetch(&*db, Customer::ORDERS)).await;
    assert_eq!((orders.unwrap().len(), n), (0, 1));
    assert_eq!(dan.orders.get(), Some(&[][..]));

    // The two states serialize differently: [] when loaded and empty, null when not.
    let fresh = get_order(&db, 12).await;
    assert_eq!(
        serde_json::to_value(&o).unwrap()["items"],
        serde_json::json!([])
    );
    assert_eq!(
        serde_json::to_value(&fresh).unwrap()["items"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn many_to_many_is_one_query_joining_junction_and_target() {
    let db = shop("rel_lazy_m2m").await;
    let o = get_order(&db, 10).await;
    let (tags, n) = count_queries(&db, o.fetch_m2m(&*db, Order::TAGS)).await;
    let tags = tags.unwrap();
    assert_eq!(n, 1, "junction and target in one query");
    assert_eq!(ids(&tags, |t| t.id), vec![1, 3], "by tag id");
    assert_eq!(ids(&tags, |t| t.name.clone()), vec!["gift", "fragile"]);
    let (_, n) = count_queries(&db, o.fetch_m2m(&*db, Order::TAGS)).await;
    assert_eq!(n, 0);

    let o11 = get_order(&db, 11).await;
    let (tags, n) = count_queries(&db, o11.fetch(&*db, Order::TAGS)).await;
    assert_eq!((ids(&tags.unwrap(), |t| t.id), n), (vec![1], 1));

    let o12 = get_order(&db, 12).await;
    let (tags, n) = count_queries(&db, o12.fetch(&*db, Order::TAGS)).await;
    assert_eq!((tags.unwrap().len(), n), (0, 1));
    assert_eq!(o12.tags.get(), Some(&[][..]));
}

#[tokio::test]
async fn composite_foreign_key_and_composite_children() {
    let db = shop("rel_lazy_composite").await;
    // Composite FK: stock (region, code) -> warehouses.
    let s = Stock::get(&*db, &(1, "eu".to_owned(), 2)).await.unwrap();
    let (w, n) = count_queries(&db, s.fetch_fk(&*db, Stock::WAREHOUSE)).await;
    let w = w.unwrap().unwrap();
    assert_eq!(n, 1);
    assert_eq!(*w, warehouse("eu", 2, "Berlin"));
    // ("eu", 1) is a different warehouse: both key columns are matched.
    let s2 = Stock::get(&*db, &(1, "eu".to_owned(), 1)).await.unwrap();
    let (w2, _) = count_queries(&db, s2.fetch(&*db, Stock::WAREHOUSE)).await;
    assert_eq!(w2.unwrap().unwrap().name, "Paris");
    let (_, n) = count_queries(&db, s.fetch(&*db, Stock::WAREHOUSE)).await;
    assert_eq!(n, 0);

    // has_many whose children have a composite primary key, by (region, code).
    let p1 = get_product(&db, 1).await;
    let (rows, n) = count_queries(&db, p1.fetch_ifk(&*db, Product::STOCK)).await;
    let rows = rows.unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        ids(&rows, stock_key),
        vec![("af".into(), 1), ("eu".into(), 1), ("eu".into(), 2)]
    );
    assert_eq!(ids(&rows, |s| s.qty), vec![7, 3, 5]);

    // many_to_many to the composite-key target, by (region, code).
    let (whs, n) = count_queries(&db, p1.fetch_m2m(&*db, Product::WAREHOUSES)).await;
    let whs = whs.unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        ids(&whs, wh_key),
        vec![("af".into(), 1), ("eu".into(), 2), ("na".into(), 7)]
    );
    assert_eq!(
        ids(&whs, |w| w.name.clone()),
        vec!["Lagos", "Berlin", "Denver"]
    );

    let p2 = get_product(&db, 2).await;
    let (whs, _) = count_queries(&db, p2.fetch(&*db, Product::WAREHOUSES)).await;
    assert_eq!(ids(&whs.unwrap(), wh_key), vec![("eu".into(), 1)]);

    let p3 = get_product(&db, 3).await;
    let (rows, n1) = count_queries(&db, p3.fetch(&*db, Product::STOCK)).await;
    let (whs, n2) = count_queries(&db, p3.fetch(&*db, Product::WAREHOUSES)).await;
    assert_eq!(
        (rows.unwrap().len(), whs.unwrap().len(), n1, n2),
        (0, 0, 1, 1)
    );
}

#[tokio::test]
async fn a_dangling_foreign_key_gives_none_not_an_error() {
    let db = shop("rel_lazy_dangling").await;
    db.batch_execute(
        "ALTER TABLE order_items DROP CONSTRAINT order_items_product_fkey;
         ALTER TABLE stock DROP CONSTRAINT stock_warehouse_fkey;
         INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents)
             VALUES (100, 12, 999999, 1, 1);
         INSERT INTO stock (product_id, region, code, qty) VALUES (3, 'sa', 9, 1), (3, 'eu', 3, 1);",
    )
    .await
    .unwrap();
    let it = OrderItem::get(&*db, &100).await.unwrap();
    let (p, n) = count_queries(&db, it.fetch(&*db, OrderItem::PRODUCT)).await;
    assert_eq!(n, 1, "the key is not NULL, so the query runs");
    assert!(p.expect("a dangling key is not an error").is_none());
    assert_eq!(it.product.state(), Some(None), "loaded, no target");

    // Composite: neither ("sa", 9) nor ("eu", 3) exists, though "eu" and 3 each occur.
    for key in [("sa", 9), ("eu", 3)] {
        let s = Stock::get(&*db, &(3, key.0.to_owned(), key.1))
            .await
            .unwrap();
        let (w, n) = count_queries(&db, s.fetch(&*db, Stock::WAREHOUSE)).await;
        assert_eq!(n, 1);
        assert!(w.unwrap().is_none(), "{key:?} has no warehouse");
        assert_eq!(s.warehouse.state(), Some(None));
    }

    // Batched too: the dangling row gets NULL, its neighbours their targets.
    let items = OrderItem::query()
        .order_by(OrderItem::ID.asc())
        .prefetch(OrderItem::PRODUCT)
        .all(&*db)
        .await
        .unwrap();
    let got: Vec<(i64, Option<i64>)> = items
        .iter()
        .map(|i| (i.id, i.product.get().map(|p| p.id)))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, Some(1)),
            (5, Some(2)),
            (7, Some(1)),
            (9, Some(3)),
            (100, None)
        ]
    );
}

#[tokio::test]
async fn every_kind_costs_nothing_once_loaded() {
    let db = shop("rel_lazy_cached").await;
    let o = get_order(&db, 10).await;
    let c = get_customer(&db, 2).await;
    let p = get_product(&db, 1).await;
    let s = Stock::get(&*db, &(1, "af".to_owned(), 1)).await.unwrap();
    let (_, first) = count_queries(&db, async {
        o.fetch(&*db, Order::CUSTOMER).await.unwrap();
        o.fetch(&*db, Order::ITEMS).await.unwrap();
        o.fetch(&*db, Order::TAGS).await.unwrap();
        c.fetch(&*db, Customer::REFERRER).await.unwrap();
        c.fetch(&*db, Customer::ORDERS).await.unwrap();
        p.fetch(&*db, Product::STOCK).await.unwrap();
        p.fetch(&*db, Product::WAREHOUSES).await.unwrap();
        s.fetch(&*db, Stock::WAREHOUSE).await.unwrap();
        s.fetch(&*db, Stock::PRODUCT).await.unwrap();
    })
    .await;
    assert_eq!(first, 9, "one query per relation");
    let (_, second) = count_queries(&db, async {
        o.fetch(&*db, Order::CUSTOMER).await.unwrap();
        o.fetch(&*db, Order::ITEMS).await.unwrap();
        o.fetch(&*db, Order::TAGS).await.unwrap();
        c.fetch(&*db, Customer::REFERRER).await.unwrap();
        c.fetch(&*db, Customer::ORDERS).await.unwrap();
        p.fetch(&*db, Product::STOCK).await.unwrap();
        p.fetch(&*db, Product::WAREHOUSES).await.unwrap();
        s.fetch(&*db, Stock::WAREHOUSE).await.unwrap();
        s.fetch(&*db, Stock::PRODUCT).await.unwrap();
        o.fetch_all_related(&*db).await.unwrap();
        c.fetch_all_related(&*db).await.unwrap();
        p.fetch_all_related(&*db).await.unwrap();
        s.fetch_all_related(&*db).await.unwrap();
    })
    .await;
    assert_eq!(second, 0, "everything is loaded");
}

#[tokio::test]
async fn fetch_all_related_is_one_query_per_relation() {
    let db = shop("rel_lazy_all").await;
    let o = get_order(&db, 10).await;
    let (res, n) = count_queries(&db, o.fetch_all_related(&*db)).await;
    res.unwrap();
    assert_eq!(n, 3, "customer, items, tags");
    assert_eq!(o.customer.get().map(|c| c.id), Some(1));
    assert_eq!(
        o.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![2, 5, 9]
    );
    assert_eq!(o.tags.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 3]);
    // Nested relations are not part of it.
    assert!(o.items.iter().all(|i| i.product.state().is_none()));

    // A NULL key costs nothing: Ann's referrer.
    let ann = get_customer(&db, 1).await;
    let (res, n) = count_queries(&db, ann.fetch_all_related(&*db)).await;
    res.unwrap();
    assert_eq!(n, 1, "orders only; the NULL referrer owes no query");
    assert_eq!(ann.referrer.state(), Some(None));
    assert_eq!(
        ann.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![10, 12]
    );

    let bob = get_customer(&db, 2).await;
    let (res, n) = count_queries(&db, bob.fetch_all_related(&*db)).await;
    res.unwrap();
    assert_eq!(n, 2);
    assert_eq!(bob.referrer.get().map(|r| r.id), Some(1));

    // Already loaded relations are skipped.
    let o11 = get_order(&db, 11).await;
    o11.fetch(&*db, Order::CUSTOMER).await.unwrap();
    let (res, n) = count_queries(&db, o11.fetch_all_related(&*db)).await;
    res.unwrap();
    assert_eq!(n, 2, "items and tags; the customer was loaded");

    // Composite keys.
    let s = Stock::get(&*db, &(1, "eu".to_owned(), 1)).await.unwrap();
    let (res, n) = count_queries(&db, s.fetch_all_related(&*db)).await;
    res.unwrap();
    assert_eq!(n, 2);
    assert_eq!(s.warehouse.get().map(|w| w.name.as_str()), Some("Paris"));
    assert_eq!(s.product.get().map(|p| p.id), Some(1));

    // Models without relations: nothing to do.
    let t = Tag::get(&*db, &1).await.unwrap();
    let (res, n) = count_queries(&db, t.fetch_all_related(&*db)).await;
    res.unwrap();
    assert_eq!(n, 0);

    // Inside a transaction, the concurrent loads share (pipeline on) its connection.
    let tx = db.begin().await.unwrap();
    let p = Product::get(&tx, &1).await.unwrap();
    let (res, n) = count_queries(&db, p.fetch_all_related(&tx)).await;
    res.unwrap();
    assert_eq!(n, 2);
    assert_eq!(p.stock.get().map(<[_]>::len), Some(3));
    assert_eq!(p.warehouses.get().map(<[_]>::len), Some(3));
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn the_seed_names_refuse_other_relation_kinds() {
    let db = shop("rel_lazy_kinds").await;
    let o = get_order(&db, 10).await;
    let (res, n) = count_queries(&db, o.fetch_fk(&*db, Order::ITEMS)).await;
    assert_eq!(n, 0);
    match res {
        Err(Error::InvalidInput(msg)) => {
            assert!(msg.contains("fetch_fk"), "{msg}");
            assert!(msg.contains("items"), "{msg}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(o.items.get().is_none(), "the refused call loads nothing");

    let (res, n) = count_queries(&db, o.fetch_fk(&*db, Order::TAGS)).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert_eq!(n, 0);
    let (res, n) = count_queries(&db, o.fetch_ifk(&*db, Order::CUSTOMER)).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert_eq!(n, 0);
    let (res, n) = count_queries(&db, o.fetch_m2m(&*db, Order::ITEMS)).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert_eq!(n, 0);
    let p = get_product(&db, 1).await;
    let (res, _) = count_queries(&db, p.fetch_ifk(&*db, Product::WAREHOUSES)).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert!(o.customer.state().is_none() && o.tags.get().is_none());
}

#[tokio::test]
async fn a_loaded_graph_serializes_with_nested_relations() {
    let db = shop("rel_lazy_serde").await;
    let o = get_order(&db, 10).await;
    let customer = o.fetch(&*db, Order::CUSTOMER).await.unwrap().unwrap();
    customer.fetch(&*db, Customer::REFERRER).await.unwrap();
    let items = o.fetch(&*db, Order::ITEMS).await.unwrap();
    items[0].fetch(&*db, OrderItem::PRODUCT).await.unwrap();
    // o.tags stays not loaded.

    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(v["id"], 10);
    assert_eq!(v["customer_id"], 1);
    assert_eq!(v["customer"]["id"], 1);
    assert_eq!(v["customer"]["email"], "ann@example.com");
    assert_eq!(
        v["customer"]["referrer"],
        serde_json::Value::Null,
        "loaded and NULL"
    );
    assert_eq!(
        v["customer"]["orders"],
        serde_json::Value::Null,
        "not loaded"
    );
    assert_eq!(v["tags"], serde_json::Value::Null, "not loaded");
    let items_json = v["items"].as_array().expect("items is a list");
    assert_eq!(items_json.len(), 3);
    assert_eq!(items_json[0]["id"], 2);
    assert_eq!(items_json[0]["product"]["id"], 1);
    assert_eq!(items_json[0]["product"]["sku"], "SKU-1");
    assert_eq!(items_json[0]["product"]["stock"], serde_json::Value::Null);
    assert_eq!(items_json[1]["product"], serde_json::Value::Null);
    assert_eq!(items_json[2]["order"], serde_json::Value::Null);

    // Composite keys and an M2M list, nested two levels.
    let s = Stock::get(&*db, &(1, "eu".to_owned(), 2)).await.unwrap();
    let p = s.fetch(&*db, Stock::PRODUCT).await.unwrap().unwrap();
    p.fetch(&*db, Product::WAREHOUSES).await.unwrap();
    s.fetch(&*db, Stock::WAREHOUSE).await.unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v["warehouse"],
        serde_json::json!({"region": "eu", "code": 2, "name": "Berlin"})
    );
    let codes: Vec<_> = v["product"]["warehouses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["region"].as_str().unwrap().to_owned(),
                w["code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![("af".into(), 1), ("eu".into(), 2), ("na".into(), 7)]
    );
    assert_eq!(v["product"]["stock"], serde_json::Value::Null);
}

#[tokio::test]
async fn strict_session_refuses_lazy_queries_but_not_free_reads() {
    let db = shop("rel_lazy_strict").await;
    let mut s = db.session();
    s.set_strict(true);
    let o = get_order(&db, 10).await;

    let (res, n) = count_queries(&db, o.fetch(&s, Order::CUSTOMER)).await;
    assert_eq!(n, 0, "refused before any query");
    match res {
        Err(Error::StrictLoad { model, relation }) => {
            assert_eq!(model, "Order");
            assert_eq!(relation, "customer");
        }
        other => panic!("expected StrictLoad, got {other:?}"),
    }
    assert!(o.customer.state().is_none(), "still not loaded");
    let (res, _) = count_queries(&db, o.fetch_ifk(&s, Order::ITEMS)).await;
    assert!(
        matches!(
            res,
            Err(Error::StrictLoad {
                model: "Order",
                relation: "items"
            })
        ),
        "{res:?}"
    );
    let (res, _) = count_queries(&db, o.fetch_m2m(&s, Order::TAGS)).await;
    assert!(
        matches!(
            res,
            Err(Error::StrictLoad {
                model: "Order",
                relation: "tags"
            })
        ),
        "{res:?}"
    );
    let (res, n) = count_queries(&db, o.fetch_all_related(&s)).await;
    assert!(matches!(res, Err(Error::StrictLoad { .. })), "{res:?}");
    assert_eq!(n, 0);
    let st = Stock::get(&*db, &(1, "eu".to_owned(), 2)).await.unwrap();
    let (res, _) = count_queries(&db, st.fetch(&s, Stock::WAREHOUSE)).await;
    assert!(
        matches!(
            res,
            Err(Error::StrictLoad {
                model: "Stock",
                relation: "warehouse"
            })
        ),
        "{res:?}"
    );

    // A NULL key owes no query: allowed, and loaded as NULL.
    let ann = get_customer(&db, 1).await;
    let (res, n) = count_queries(&db, ann.fetch(&s, Customer::REFERRER)).await;
    assert_eq!((res.unwrap(), n), (None, 0));
    assert_eq!(ann.referrer.state(), Some(None));

    // Prefetching through the strict session is not lazy loading; reading what it
    // loaded costs nothing and succeeds.
    let (orders, n) = count_queries(&db, async {
        Order::query()
            .order_by(Order::ID.asc())
            .prefetch(Order::CUSTOMER.with(Customer::REFERRER))
            .prefetch(Order::ITEMS)
            .prefetch(Order::TAGS)
            .all(&s)
            .await
    })
    .await;
    let orders = orders.unwrap();
    assert_eq!(n, 5);
    let (_, n) = count_queries(&db, async {
        for o in &orders {
            let c = o.fetch(&s, Order::CUSTOMER).await.unwrap().unwrap();
            c.fetch(&s, Customer::REFERRER).await.unwrap();
            o.fetch(&s, Order::ITEMS).await.unwrap();
            o.fetch(&s, Order::TAGS).await.unwrap();
            o.fetch_all_related(&s).await.unwrap();
        }
    })
    .await;
    assert_eq!(n, 0);
    // One level further was not prefetched: refused.
    let res = orders[0].items.get().unwrap()[0]
        .fetch(&s, OrderItem::PRODUCT)
        .await;
    assert!(
        matches!(
            res,
            Err(Error::StrictLoad {
                model: "OrderItem",
                relation: "product"
            })
        ),
        "{res:?}"
    );

    // Strictness belongs to the session: the Db and other sessions load lazily.
    assert_eq!(o.fetch(&*db, Order::CUSTOMER).await.unwrap().unwrap().id, 1);
    let other = db.session();
    assert!(o.fetch(&other, Order::ITEMS).await.is_ok());
    s.set_strict(false);
    assert!(o.fetch(&s, Order::TAGS).await.is_ok());
}

#[tokio::test]
async fn strict_db_refuses_lazy_queries() {
    let tdb = shop("rel_lazy_strict_db").await;
    let strict = Db::builder(tdb.schema.url())
        .search_path(tdb.schema.name())
        .pool_size(2)
        .strict(true)
        .connect()
        .await
        .unwrap();
    let o = Order::get(&strict, &11).await.unwrap();
    let before = strict.query_count();
    let res = o.fetch(&strict, Order::CUSTOMER).await;
    assert!(
        matches!(
            res,
            Err(Error::StrictLoad {
                model: "Order",
                relation: "customer"
            })
        ),
        "{res:?}"
    );
    let p = Product::get(&strict, &1).await.unwrap();
    let res = p.fetch(&strict, Product::WAREHOUSES).await;
    assert!(
        matches!(
            res,
            Err(Error::StrictLoad {
                model: "Product",
                relation: "warehouses"
            })
        ),
        "{res:?}"
    );
    assert_eq!(strict.query_count() - before, 1, "only the get ran");

    // Its sessions inherit strict mode, and a session may turn it off.
    let mut s = strict.session();
    assert!(matches!(
        o.fetch(&s, Order::ITEMS).await,
        Err(Error::StrictLoad { .. })
    ));
    s.set_strict(false);
    assert_eq!(o.fetch(&s, Order::ITEMS).await.unwrap().len(), 1);

    // NULL keys and prefetch work on the strict Db.
    let ann = Customer::get(&strict, &1).await.unwrap();
    assert_eq!(ann.fetch(&strict, Customer::REFERRER).await.unwrap(), None);
    let customers = Customer::query()
        .order_by(Customer::ID.asc())
        .prefetch(Customer::REFERRER)
        .prefetch(Customer::ORDERS.with(Order::TAGS))
        .all(&strict)
        .await
        .unwrap();
    let before = strict.query_count();
    for c in &customers {
        c.fetch(&strict, Customer::REFERRER).await.unwrap();
        for o in c.fetch(&strict, Customer::ORDERS).await.unwrap() {
            o.fetch(&strict, Order::TAGS).await.unwrap();
        }
    }
    assert_eq!(strict.query_count() - before, 0);
    assert_eq!(
        customers
            .iter()
            .map(|c| c.referrer.get().map(|r| r.id))
            .collect::<Vec<_>>(),
        vec![None, Some(1), Some(2), None]
    );
}

/// A has_one relation, declared here because the shop has none.
#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "accounts")]
pub struct Account {
    #[orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[orm(has_one(foreign_key = "account_id"))]
    pub profile: One<Profile>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "profiles")]
pub struct Profile {
    #[orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub bio: String,
}

/// A composite foreign key whose columns are nullable: a key with any NULL part is
/// NULL and owes no query.
#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "shipments")]
pub struct Shipment {
    #[orm(primary_key)]
    pub id: i64,
    pub region: Option<String>,
    pub code: Option<i32>,
    #[orm(belongs_to(key = "region, code"))]
    pub warehouse: One<Warehouse>,
}

#[tokio::test]
async fn has_one_loads_one_target_or_null() {
    let db = test_db("rel_lazy_has_one").await;
    matrx_orm::ddl::create_tables(&*db, &[Account::META, Profile::META])
        .await
        .unwrap();
    db.batch_execute(
        "INSERT INTO accounts (id, name) VALUES (1, 'with'), (2, 'without'), (3, 'also');
         INSERT INTO profiles (id, account_id, bio) VALUES (10, 1, 'hello'), (11, 3, 'hi');",
    )
    .await
    .unwrap();
    let a1 = Account::get(&*db, &1).await.unwrap();
    let (p, n) = count_queries(&db, a1.fetch_ifk(&*db, Account::PROFILE)).await;
    assert_eq!(n, 1);
    assert_eq!(p.unwrap().map(|p| p.id), Some(10));
    let a2 = Account::get(&*db, &2).await.unwrap();
    let (p, n) = count_queries(&db, a2.fetch(&*db, Account::PROFILE)).await;
    assert_eq!((p.unwrap(), n), (None, 1));
    assert_eq!(a2.profile.state(), Some(None));
    let (_, n) = count_queries(&db, a2.fetch(&*db, Account::PROFILE)).await;
    assert_eq!(n, 0);

    let (accounts, n) = count_queries(&db, async {
        Account::query()
            .order_by(Account::ID.asc())
            .prefetch(Account::PROFILE)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 2);
    let got: Vec<Option<i64>> = accounts
        .iter()
        .map(|a| a.profile.get().map(|p| p.id))
        .collect();
    assert_eq!(got, vec![Some(10), None, Some(11)]);
    assert!(accounts.iter().all(|a| a.profile.state().is_some()));
}

#[tokio::test]
async fn a_composite_key_with_a_null_part_owes_no_query() {
    let db = shop("rel_lazy_null_composite").await;
    matrx_orm::ddl::create_tables(&*db, &[Shipment::META])
        .await
        .unwrap();
    db.batch_execute(
        "INSERT INTO shipments (id, region, code) VALUES
             (1, 'eu', 2), (2, NULL, 2), (3, 'eu', NULL), (4, NULL, NULL), (5, 'af', 1);",
    )
    .await
    .unwrap();
    for id in [2i64, 3, 4] {
        let s = Shipment::get(&*db, &id).await.unwrap();
        let (w, n) = count_queries(&db, s.fetch(&*db, Shipment::WAREHOUSE)).await;
        assert_eq!((w.unwrap(), n), (None, 0), "shipment {id}");
        assert_eq!(s.warehouse.state(), Some(None));
    }
    let s1 = Shipment::get(&*db, &1).await.unwrap();
    let (w, n) = count_queries(&db, s1.fetch(&*db, Shipment::WAREHOUSE)).await;
    assert_eq!(
        (w.unwrap().map(|w| w.name.clone()), n),
        (Some("Berlin".into()), 1)
    );

    let (all, n) = count_queries(&db, async {
        Shipment::query()
            .order_by(Shipment::ID.asc())
            .prefetch(Shipment::WAREHOUSE)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 2);
    let names: Vec<Option<&str>> = all
        .iter()
        .map(|s| s.warehouse.get().map(|w| w.name.as_str()))
        .collect();
    assert_eq!(names, vec![Some("Berlin"), None, None, None, Some("Lagos")]);

    let (partial, n) = count_queries(&db, async {
        Shipment::query()
            .filter(Shipment::ID.is_in([2i64, 3, 4]))
            .prefetch(Shipment::WAREHOUSE)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1, "every key has a NULL part: only the root query");
    assert!(partial.iter().all(|s| s.warehouse.state() == Some(None)));
}

/// Relations on a non-key column: a review names its customer by email.
#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "reviews")]
pub struct Review {
    #[orm(primary_key)]
    pub id: i64,
    pub customer_email: Option<String>,
    pub stars: i32,
    #[orm(belongs_to(key = "customer_email", references = "email"))]
    pub customer: One<Customer>,
}

/// The customers table again, with the reverse of `Review.customer`.
#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "customers")]
pub struct Reviewer {
    #[orm(primary_key)]
    pub id: i64,
    pub email: String,
    #[orm(has_many(foreign_key = "customer_email", references = "email"))]
    pub reviews: Many<Review>,
}

#[tokio::test]
async fn relations_on_a_referenced_non_key_column() {
    let db = shop("rel_lazy_references").await;
    matrx_orm::ddl::create_tables(&*db, &[Review::META])
        .await
        .unwrap();
    db.batch_execute(
        "INSERT INTO reviews (id, customer_email, stars) VALUES
             (1, 'bob@example.com', 5), (2, NULL, 1), (3, 'ann@example.com', 4),
             (4, 'bob@example.com', 2);",
    )
    .await
    .unwrap();
    let r1 = Review::get(&*db, &1).await.unwrap();
    let (c, n) = count_queries(&db, r1.fetch_fk(&*db, Review::CUSTOMER)).await;
    assert_eq!((c.unwrap().map(|c| c.id), n), (Some(2), 1));
    let r2 = Review::get(&*db, &2).await.unwrap();
    let (c, n) = count_queries(&db, r2.fetch(&*db, Review::CUSTOMER)).await;
    assert_eq!((c.unwrap(), n), (None, 0));

    let (reviews, n) = count_queries(&db, async {
        Review::query()
            .order_by(Review::ID.asc())
            .prefetch(Review::CUSTOMER)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 2);
    let got: Vec<Option<i64>> = reviews
        .iter()
        .map(|r| r.customer.get().map(|c| c.id))
        .collect();
    assert_eq!(got, vec![Some(2), None, Some(1), Some(2)]);
    assert!(Arc::ptr_eq(
        reviews[0].customer.state().unwrap().unwrap(),
        reviews[3].customer.state().unwrap().unwrap()
    ));

    let bob = Reviewer::get(&*db, &2).await.unwrap();
    let (rs, n) = count_queries(&db, bob.fetch_ifk(&*db, Reviewer::REVIEWS)).await;
    assert_eq!(n, 1);
    assert_eq!(
        rs.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 4]
    );
    let (reviewers, n) = count_queries(&db, async {
        Reviewer::query()
            .order_by(Reviewer::ID.asc())
            .prefetch(Reviewer::REVIEWS.with(Review::CUSTOMER))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 3);
    let got: Vec<Vec<i64>> = reviewers
        .iter()
        .map(|r| r.reviews.iter().map(|x| x.id).collect())
        .collect();
    assert_eq!(got, vec![vec![3], vec![1, 4], vec![], vec![]]);
    assert!(reviewers
        .iter()
        .flat_map(|r| r.reviews.iter().map(move |x| (r, x)))
        .all(|(r, x)| x.customer.get().map(|c| c.id) == Some(r.id)));
}
