//! Many-to-many writes (`m2m_add`, `m2m_remove`, `m2m_set`, `m2m_clear`) with single
//! and composite target keys: counts, idempotence, `set` applying only the difference
//! and atomically, one statement per write, and the instance's slot reset.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::shop::*;
use common::{count_queries, test_db, TestDb};
use matrx_orm::prelude::*;
use matrx_orm::Error;
use matrx_orm::SetOutcome;

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// Customers 1, 2; orders 10, 11 (customer 1), 12 (customer 2); tags 1..=5;
/// links 10 -> {1, 3}, 11 -> {1}; products 1, 2; warehouses (af,1) (eu,1) (eu,2)
/// (na,7) (na,8); product 1 -> {(af,1), (eu,2), (na,7)}, product 2 -> {(eu,1)}.
///
/// Both junction tables get a `created_at` column defaulting to `clock_timestamp()`,
/// so a link that is deleted and inserted again is told apart from one left alone.
async fn shop(prefix: &str) -> TestDb {
    let db = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let customers: Vec<Customer> = (1..=2)
        .map(|id| Customer {
            id,
            name: format!("c{id}"),
            email: format!("c{id}@example.com"),
            created_at: ts(id),
            referred_by: None,
            referrer: Default::default(),
            orders: Default::default(),
        })
        .collect();
    Customer::insert_rows(&customers)
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    let orders: Vec<Order> = [(10, 1), (11, 1), (12, 2)]
        .into_iter()
        .map(|(id, customer_id)| Order {
            id,
            customer_id,
            status: "new".into(),
            placed_at: ts(id),
            total_cents: 0,
            customer: Default::default(),
            items: Default::default(),
            tags: Default::default(),
        })
        .collect();
    Order::insert_rows(&orders)
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    let tags: Vec<Tag> = (1..=5)
        .map(|id| Tag {
            id,
            name: format!("t{id}"),
        })
        .collect();
    Tag::insert_rows(&tags)
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    let products: Vec<Product> = (1..=2)
        .map(|id| Product {
            id,
            sku: format!("p{id}"),
            name: format!("p{id}"),
            price_cents: 1,
            stock: Default::default(),
            warehouses: Default::default(),
        })
        .collect();
    Product::insert_rows(&products)
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    let warehouses: Vec<Warehouse> = [("af", 1), ("eu", 1), ("eu", 2), ("na", 7), ("na", 8)]
        .into_iter()
        .map(|(region, code)| Warehouse {
            region: region.into(),
            code,
            name: format!("{region}{code}"),
        })
        .collect();
    Warehouse::insert_many(&*db, &warehouses).await.unwrap();
    db.batch_execute(
        "ALTER TABLE order_tags ADD COLUMN created_at timestamptz NOT NULL DEFAULT clock_timestamp();
         ALTER TABLE product_warehouses ADD COLUMN created_at timestamptz NOT NULL DEFAULT clock_timestamp();
         INSERT INTO order_tags (order_id, tag_id) VALUES (10, 1), (10, 3), (11, 1);
         INSERT INTO product_warehouses (product_id, region, code)
             VALUES (1, 'af', 1), (1, 'eu', 2), (1, 'na', 7), (2, 'eu', 1);",
    )
    .await
    .unwrap();
    db
}

/// An order's linked tag ids, with each link's `created_at` and `xmin`, by tag id.
async fn order_links(db: &Db, order_id: i64) -> Vec<(i64, DateTime<Utc>, String)> {
    db.query_sql(
        "SELECT tag_id, created_at, xmin::text FROM order_tags WHERE order_id = $1 ORDER BY tag_id",
        &[&order_id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn tag_ids(db: &Db, order_id: i64) -> Vec<i64> {
    order_links(db, order_id)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect()
}

/// A product's linked warehouse keys with each link's `created_at` and `xmin`.
async fn product_links(db: &Db, product_id: i64) -> Vec<((String, i32), DateTime<Utc>, String)> {
    db.query_sql(
        "SELECT region, code, created_at, xmin::text FROM product_warehouses
         WHERE product_id = $1 ORDER BY region, code",
        &[&product_id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| ((r.get(0), r.get(1)), r.get(2), r.get(3)))
    .collect()
}

async fn wh_keys(db: &Db, product_id: i64) -> Vec<(String, i32)> {
    product_links(db, product_id)
        .await
        .into_iter()
        .map(|(k, _, _)| k)
        .collect()
}

fn wk(region: &str, code: i32) -> (String, i32) {
    (region.to_owned(), code)
}

#[tokio::test]
async fn add_is_idempotent_and_counts_each_new_link_once() {
    let db = shop("m2m_add").await;
    let mut o = Order::get(&*db, &12).await.unwrap();
    let (n, q) = count_queries(&db, o.m2m_add(&*db, Order::TAGS, [2, 4])).await;
    assert_eq!((n.unwrap(), q), (2, 1));
    assert_eq!(tag_ids(&db, 12).await, vec![2, 4]);

    let (n, q) = count_queries(&db, o.m2m_add(&*db, Order::TAGS, [2, 4])).await;
    assert_eq!((n.unwrap(), q), (0, 1), "adding existing links is a no-op");
    assert_eq!(tag_ids(&db, 12).await, vec![2, 4]);

    let (n, q) = count_queries(&db, o.m2m_add(&*db, Order::TAGS, [5, 5, 5, 2, 5])).await;
    assert_eq!(
        (n.unwrap(), q),
        (1, 1),
        "duplicate keys in one call count once"
    );
    assert_eq!(tag_ids(&db, 12).await, vec![2, 4, 5]);

    let (n, q) = count_queries(&db, o.m2m_add(&*db, Order::TAGS, Vec::<i64>::new())).await;
    assert_eq!((n.unwrap(), q), (0, 0), "nothing to add, no statement");

    // Other orders' links are untouched.
    assert_eq!(tag_ids(&db, 10).await, vec![1, 3]);
    assert_eq!(tag_ids(&db, 11).await, vec![1]);

    // A key that is not a tag: a typed error, and nothing of the call is written.
    let (res, q) = count_queries(&db, o.m2m_add(&*db, Order::TAGS, [1, 999])).await;
    assert_eq!(q, 1);
    assert!(
        matches!(res, Err(Error::ForeignKeyViolation { .. })),
        "{res:?}"
    );
    assert_eq!(tag_ids(&db, 12).await, vec![2, 4, 5]);
}

#[tokio::test]
async fn remove_and_clear_return_counts() {
    let db = shop("m2m_remove").await;
    let mut o = Order::get(&*db, &10).await.unwrap();
    let (n, q) = count_queries(&db, o.m2m_remove(&*db, Order::TAGS, [1, 2, 99])).await;
    assert_eq!((n.unwrap(), q), (1, 1), "only the existing link is counted");
    assert_eq!(tag_ids(&db, 10).await, vec![3]);
    let (n, _) = count_queries(&db, o.m2m_remove(&*db, Order::TAGS, [1, 1])).await;
    assert_eq!(n.unwrap(), 0);
    let (n, q) = count_queries(&db, o.m2m_remove(&*db, Order::TAGS, Vec::<i64>::new())).await;
    assert_eq!((n.unwrap(), q), (0, 0));
    assert_eq!(tag_ids(&db, 11).await, vec![1], "other orders untouched");

    o.m2m_add(&*db, Order::TAGS, [4, 5]).await.unwrap();
    let (n, q) = count_queries(&db, o.m2m_clear(&*db, Order::TAGS)).await;
    assert_eq!((n.unwrap(), q), (3, 1));
    assert!(tag_ids(&db, 10).await.is_empty());
    let (n, q) = count_queries(&db, o.m2m_clear(&*db, Order::TAGS)).await;
    assert_eq!((n.unwrap(), q), (0, 1));
    assert_eq!(tag_ids(&db, 11).await, vec![1], "other orders untouched");
}

#[tokio::test]
async fn set_applies_only_the_difference() {
    let db = shop("m2m_set").await;
    let mut o = Order::get(&*db, &10).await.unwrap();
    let before = order_links(&db, 10).await;
    assert_eq!(before.len(), 2);
    let kept = before.iter().find(|l| l.0 == 3).unwrap().clone();

    let (out, q) = count_queries(&db, o.m2m_set(&*db, Order::TAGS, [3, 2, 2])).await;
    assert_eq!(q, 1, "set is one statement");
    assert_eq!(
        out.unwrap(),
        SetOutcome {
            added: 1,
            removed: 1
        }
    );
    let after = order_links(&db, 10).await;
    assert_eq!(after.iter().map(|l| l.0).collect::<Vec<_>>(), vec![2, 3]);
    let kept_after = after.iter().find(|l| l.0 == 3).unwrap();
    assert_eq!(
        kept_after, &kept,
        "the kept link was not deleted and inserted again (same created_at and xmin)"
    );

    // Setting the same set again changes nothing at all.
    let snapshot = order_links(&db, 10).await;
    let (out, q) = count_queries(&db, o.m2m_set(&*db, Order::TAGS, [2, 3])).await;
    assert_eq!((out.unwrap(), q), (SetOutcome::default(), 1));
    assert_eq!(order_links(&db, 10).await, snapshot);

    // To the empty set: everything removed.
    let (out, q) = count_queries(&db, o.m2m_set(&*db, Order::TAGS, Vec::<i64>::new())).await;
    assert_eq!(
        (out.unwrap(), q),
        (
            SetOutcome {
                added: 0,
                removed: 2
            },
            1
        )
    );
    assert!(tag_ids(&db, 10).await.is_empty());

    // From the empty set: everything added.
    let (out, _) = count_queries(&db, o.m2m_set(&*db, Order::TAGS, [5, 1, 4])).await;
    assert_eq!(
        out.unwrap(),
        SetOutcome {
            added: 3,
            removed: 0
        }
    );
    assert_eq!(tag_ids(&db, 10).await, vec![1, 4, 5]);
    assert_eq!(tag_ids(&db, 11).await, vec![1], "other orders untouched");
}

#[tokio::test]
async fn set_is_atomic() {
    let db = shop("m2m_set_atomic").await;
    let mut o = Order::get(&*db, &10).await.unwrap();
    let order_before = order_links(&db, 10).await;
    let (res, q) = count_queries(&db, o.m2m_set(&*db, Order::TAGS, [2, 999])).await;
    assert_eq!(q, 1);
    match res {
        Err(Error::ForeignKeyViolation { constraint, .. }) => {
            assert!(constraint.contains("order_tags"), "{constraint}")
        }
        other => panic!("expected ForeignKeyViolation, got {other:?}"),
    }
    assert_eq!(
        order_links(&db, 10).await,
        order_before,
        "the old links are intact: neither 1 and 3 removed nor 2 added"
    );

    // Composite target: a key whose parts each exist, but not together.
    let mut p = Product::get(&*db, &1).await.unwrap();
    let before = product_links(&db, 1).await;
    let (res, q) = count_queries(
        &db,
        p.m2m_set(&*db, Product::WAREHOUSES, [wk("eu", 1), wk("af", 2)]),
    )
    .await;
    assert_eq!(q, 1);
    assert!(
        matches!(res, Err(Error::ForeignKeyViolation { .. })),
        "{res:?}"
    );
    assert_eq!(product_links(&db, 1).await, before);

    // Inside a transaction the writes are the transaction's: rolled back with it.
    let tx = db.begin().await.unwrap();
    let (n, q) = count_queries(&db, o.m2m_add(&tx, Order::TAGS, [4])).await;
    assert_eq!((n.unwrap(), q), (1, 1));
    let out = o.m2m_set(&tx, Order::TAGS, [4, 5]).await.unwrap();
    assert_eq!(
        out,
        SetOutcome {
            added: 1,
            removed: 2
        }
    );
    tx.rollback().await.unwrap();
    assert_eq!(order_links(&db, 10).await, order_before);
}

#[tokio::test]
async fn composite_key_links() {
    let db = shop("m2m_composite").await;
    let mut p = Product::get(&*db, &1).await.unwrap();

    let (n, q) = count_queries(
        &db,
        p.m2m_add(
            &*db,
            Product::WAREHOUSES,
            [wk("eu", 1), wk("eu", 1), wk("af", 1)],
        ),
    )
    .await;
    assert_eq!(
        (n.unwrap(), q),
        (1, 1),
        "(eu,1) added once, (af,1) already linked"
    );
    assert_eq!(
        wh_keys(&db, 1).await,
        vec![wk("af", 1), wk("eu", 1), wk("eu", 2), wk("na", 7)]
    );

    // Both key columns are matched: (af,7) and (na,1) are not linked although
    // "af", "na", 1 and 7 all occur in links.
    let (n, q) = count_queries(
        &db,
        p.m2m_remove(&*db, Product::WAREHOUSES, [wk("af", 7), wk("na", 1)]),
    )
    .await;
    assert_eq!((n.unwrap(), q), (0, 1));
    let (n, _) = count_queries(
        &db,
        p.m2m_remove(&*db, Product::WAREHOUSES, [wk("na", 7), wk("na", 8)]),
    )
    .await;
    assert_eq!(n.unwrap(), 1);
    assert_eq!(
        wh_keys(&db, 1).await,
        vec![wk("af", 1), wk("eu", 1), wk("eu", 2)]
    );

    let before = product_links(&db, 1).await;
    let (out, q) = count_queries(
        &db,
        p.m2m_set(
            &*db,
            Product::WAREHOUSES,
            [wk("eu", 2), wk("na", 8), wk("eu", 2)],
        ),
    )
    .await;
    assert_eq!(q, 1);
    assert_eq!(
        out.unwrap(),
        SetOutcome {
            added: 1,
            removed: 2
        }
    );
    let after = product_links(&db, 1).await;
    assert_eq!(
        after.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        vec![wk("eu", 2), wk("na", 8)]
    );
    assert_eq!(
        after.iter().find(|l| l.0 == wk("eu", 2)),
        before.iter().find(|l| l.0 == wk("eu", 2)),
        "the kept composite link was left alone"
    );

    let (n, q) = count_queries(&db, p.m2m_clear(&*db, Product::WAREHOUSES)).await;
    assert_eq!((n.unwrap(), q), (2, 1));
    assert!(wh_keys(&db, 1).await.is_empty());
    assert_eq!(
        wh_keys(&db, 2).await,
        vec![wk("eu", 1)],
        "product 2 untouched"
    );
}

#[tokio::test]
async fn each_write_is_one_statement_and_resets_the_slot() {
    let db = shop("m2m_reset").await;
    let mut o = Order::get(&*db, &10).await.unwrap();

    o.fetch(&*db, Order::TAGS).await.unwrap();
    assert_eq!(o.tags.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 3]);
    let (_, q) = count_queries(&db, o.m2m_add(&*db, Order::TAGS, [2])).await;
    assert_eq!(q, 1);
    assert!(o.tags.get().is_none(), "add resets the slot to not loaded");
    let tags = o.fetch(&*db, Order::TAGS).await.unwrap();
    assert_eq!(tags.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 2, 3]);

    let (_, q) = count_queries(&db, o.m2m_remove(&*db, Order::TAGS, [1])).await;
    assert_eq!(q, 1);
    assert!(o.tags.get().is_none(), "remove resets the slot");
    let tags = o.fetch(&*db, Order::TAGS).await.unwrap();
    assert_eq!(tags.iter().map(|t| t.id).collect::<Vec<_>>(), vec![2, 3]);

    let (_, q) = count_queries(&db, o.m2m_set(&*db, Order::TAGS, [4])).await;
    assert_eq!(q, 1);
    assert!(o.tags.get().is_none(), "set resets the slot");
    let tags = o.fetch(&*db, Order::TAGS).await.unwrap();
    assert_eq!(tags.iter().map(|t| t.id).collect::<Vec<_>>(), vec![4]);

    let (_, q) = count_queries(&db, o.m2m_clear(&*db, Order::TAGS)).await;
    assert_eq!(q, 1);
    assert!(o.tags.get().is_none(), "clear resets the slot");
    assert_eq!(o.fetch(&*db, Order::TAGS).await.unwrap().len(), 0);

    // Only the written relation is reset.
    o.fetch(&*db, Order::CUSTOMER).await.unwrap();
    o.m2m_add(&*db, Order::TAGS, [5]).await.unwrap();
    assert_eq!(o.customer.get().map(|c| c.id), Some(1));

    // Composite.
    let mut p = Product::get(&*db, &1).await.unwrap();
    p.fetch(&*db, Product::WAREHOUSES).await.unwrap();
    p.fetch(&*db, Product::STOCK).await.unwrap();
    let (_, q) = count_queries(&db, p.m2m_add(&*db, Product::WAREHOUSES, [wk("eu", 1)])).await;
    assert_eq!(q, 1);
    assert!(p.warehouses.get().is_none());
    assert!(p.stock.get().is_some(), "the other relation stays loaded");
    let whs = p.fetch(&*db, Product::WAREHOUSES).await.unwrap();
    assert_eq!(whs.len(), 4);
}

#[tokio::test]
async fn writes_through_a_relation_that_is_not_many_to_many_are_refused() {
    let db = shop("m2m_wrong_kind").await;
    let mut o = Order::get(&*db, &10).await.unwrap();
    let (res, q) = count_queries(&db, o.m2m_add(&*db, Order::ITEMS, [1])).await;
    assert_eq!(q, 0);
    match res {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("items"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let (res, q) = count_queries(&db, o.m2m_set(&*db, Order::CUSTOMER, [1])).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert_eq!(q, 0);
    let (res, q) = count_queries(&db, o.m2m_clear(&*db, Order::ITEMS)).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert_eq!(q, 0);
    let (res, q) = count_queries(&db, o.m2m_remove(&*db, Order::CUSTOMER, [1])).await;
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    assert_eq!(q, 0);
    assert_eq!(tag_ids(&db, 10).await, vec![1, 3]);
}

/// The shop's warehouses as the *source* of a many-to-many: a composite source key.
#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "warehouses")]
pub struct Depot {
    #[orm(primary_key)]
    pub region: String,
    #[orm(primary_key)]
    pub code: i32,
    pub name: String,
    #[orm(many_to_many(
        through = "product_warehouses",
        source = "region, code",
        target = "product_id"
    ))]
    pub products: Many<Product>,
}

async fn depot_products(db: &Db) -> Vec<(String, i32, i64)> {
    db.query_sql(
        "SELECT region, code, product_id FROM product_warehouses ORDER BY 1, 2, 3",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn composite_source_key_links() {
    let db = shop("m2m_composite_source").await;
    let link = |r: &str, c: i32, p: i64| (r.to_owned(), c, p);
    let mut eu2 = Depot::get(&*db, &wk("eu", 2)).await.unwrap();
    assert_eq!(
        eu2.fetch(&*db, Depot::PRODUCTS)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![1]
    );

    let (n, q) = count_queries(&db, eu2.m2m_add(&*db, Depot::PRODUCTS, [2, 2, 1])).await;
    assert_eq!((n.unwrap(), q), (1, 1));
    assert!(eu2.products.get().is_none(), "slot reset");
    assert_eq!(
        depot_products(&db).await,
        vec![
            link("af", 1, 1),
            link("eu", 1, 2),
            link("eu", 2, 1),
            link("eu", 2, 2),
            link("na", 7, 1)
        ]
    );

    let kept = product_links(&db, 2).await;
    let (out, q) = count_queries(&db, eu2.m2m_set(&*db, Depot::PRODUCTS, [2])).await;
    assert_eq!(q, 1);
    assert_eq!(
        out.unwrap(),
        SetOutcome {
            added: 0,
            removed: 1
        }
    );
    assert_eq!(
        product_links(&db, 2).await,
        kept,
        "(eu,2)-2 kept, (eu,1)-2 untouched"
    );
    assert_eq!(
        depot_products(&db).await,
        vec![
            link("af", 1, 1),
            link("eu", 1, 2),
            link("eu", 2, 2),
            link("na", 7, 1)
        ]
    );

    let (n, q) = count_queries(&db, eu2.m2m_remove(&*db, Depot::PRODUCTS, [1, 2])).await;
    assert_eq!((n.unwrap(), q), (1, 1));
    let mut na7 = Depot::get(&*db, &wk("na", 7)).await.unwrap();
    let (n, q) = count_queries(&db, na7.m2m_clear(&*db, Depot::PRODUCTS)).await;
    assert_eq!((n.unwrap(), q), (1, 1));
    assert_eq!(
        depot_products(&db).await,
        vec![link("af", 1, 1), link("eu", 1, 2)],
        "only the two depots' own links changed"
    );

    // Atomic with a composite source key too.
    let mut af1 = Depot::get(&*db, &wk("af", 1)).await.unwrap();
    let (res, q) = count_queries(&db, af1.m2m_set(&*db, Depot::PRODUCTS, [2, 404])).await;
    assert_eq!(q, 1);
    assert!(
        matches!(res, Err(Error::ForeignKeyViolation { .. })),
        "{res:?}"
    );
    assert_eq!(
        depot_products(&db).await,
        vec![link("af", 1, 1), link("eu", 1, 2)]
    );
}
