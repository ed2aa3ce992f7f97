//! Generating from the benchmark's shop schema: the output is the checked-in golden,
//! the golden models compile (they are a module of this test) and load every workload (W1 to W5) over
//! the full benchmark dataset (`seed.sql`) with its checksums and query counts, and the round trip through the crate's
//! DDL gives the same output again.

mod common;

#[path = "golden/shop/mod.rs"]
#[allow(dead_code, unused_imports)]
mod models;

use common::*;
use matrx_orm::prelude::*;
use matrx_orm_cli::Options;
use models::{Customer, Order, OrderItem, Product, Stock, Tag, Warehouse};

fn options() -> Options {
    Options::new("shop", "src/models")
}

#[tokio::test]
async fn shop_generates_the_golden_models() {
    let t = test_db("cli_shop_golden").await;
    load_shop(&t, false).await;
    let first = generate_as(&t, options(), "shop").await;
    assert_golden("shop", &first);
    let second = generate_as(&t, options(), "shop").await;
    assert_eq!(first, second, "generation is deterministic");
    t.schema.drop_now().await.expect("drop schema");
}

fn all_models() -> Vec<&'static matrx_orm::ModelMeta> {
    vec![
        <Customer as Model>::META,
        <Order as Model>::META,
        <OrderItem as Model>::META,
        <Product as Model>::META,
        <Stock as Model>::META,
        <Tag as Model>::META,
        <Warehouse as Model>::META,
    ]
}

#[tokio::test]
async fn shop_round_trip_through_ddl_gives_the_golden_again() {
    let t = test_db("cli_shop_roundtrip").await;
    matrx_orm::ddl::create_tables(&t.db, &all_models())
        .await
        .expect("create tables from the generated models");
    let again = generate_as(&t, options(), "shop").await;
    assert_golden("shop", &again);
    t.schema.drop_now().await.expect("drop schema");
}

/// W1 (`limit` 1000) or W2 (no limit): the checksums of WORKLOADS.md in their order,
/// after asserting one query per relation edge (5).
async fn orders_checksums(db: &Db, limit: Option<u64>) -> [i64; 11] {
    let before = db.query_count();
    let mut query = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .prefetch(Order::ORDER_ITEMS.with(OrderItem::PRODUCT))
        .prefetch(Order::TAGS);
    if let Some(n) = limit {
        query = query.limit(n);
    }
    let orders = query.all(db).await.expect("load orders");
    assert_eq!(db.query_count() - before, 5, "one query per edge");
    let mut sums = [0i64; 11];
    for o in &orders {
        sums[0] += 1;
        sums[1] += o.id;
        let c = o.customer.get().expect("customer loaded");
        sums[2] += c.id;
        sums[3] += c.email.chars().count() as i64;
        for (pos, i) in (1..).zip(o.order_items.get().expect("items loaded")) {
            sums[4] += 1;
            sums[5] += i64::from(i.quantity) * i64::from(i.unit_price_cents);
            sums[6] += pos * i.id;
            sums[7] += i64::from(i.product.get().expect("product loaded").price_cents);
        }
        for (pos, tag) in (1..).zip(o.tags.get().expect("tags loaded")) {
            sums[8] += 1;
            sums[9] += tag.id;
            sums[10] += pos * tag.id;
        }
    }
    sums
}

#[tokio::test]
async fn golden_shop_models_load_every_workload_with_the_benchmark_checksums_and_query_counts() {
    let t = test_db("cli_shop_w1").await;
    load_shop(&t, true).await;
    let report = matrx_orm_cli::check(&t.db, t.schema.name(), &all_models())
        .await
        .expect("check");
    assert!(report.is_clean(), "{report}");

    // W1: the 1,000 orders with the smallest ids; W2: all 20,000 orders.
    assert_eq!(
        orders_checksums(&t.db, Some(1000)).await,
        [1000, 500500, 998901, 23453, 4955, 659126575, 49402437, 244654397, 1931, 48972, 110115],
        "W1 checksums (WORKLOADS.md)"
    );
    assert_eq!(
        orders_checksums(&t.db, None).await,
        [
            20000,
            200010000,
            19868346,
            468839,
            100261,
            13528411759,
            20124361816,
            4969722001,
            40440,
            1026659,
            2334108
        ],
        "W2 checksums (WORKLOADS.md)"
    );

    // W4: 64 requests, each a session running 25 per-object pipelines concurrently
    // (get the order, then its customer and tags): 3 queries per request.
    let before = t.db.query_count();
    let tasks: Vec<_> = (0..64i64)
        .map(|k| {
            let db = t.db.clone();
            tokio::spawn(async move {
                let s = db.session();
                let pipelines = (k * 25 + 1..=k * 25 + 25).map(|id| {
                    let s = &s;
                    async move {
                        let order = Order::get(s, &id).await?;
                        let (customer, tags) = futures_util::future::join(
                            order.fetch_fk(s, Order::CUSTOMER),
                            order.fetch_m2m(s, Order::TAGS),
                        )
                        .await;
                        Ok::<_, matrx_orm::Error>((order, customer?, tags?))
                    }
                });
                futures_util::future::try_join_all(pipelines).await
            })
        })
        .collect();
    let mut sums = [0i64; 7];
    for task in tasks {
        for (order, customer, tags) in task.await.expect("task").expect("W4 request") {
            sums[0] += 1;
            sums[1] += order.id;
            let c = customer.expect("every order has a customer");
            sums[2] += c.id;
            sums[3] += c.email.chars().count() as i64;
            for (pos, tag) in (1..).zip(&tags) {
                sums[4] += 1;
                sums[5] += tag.id;
                sums[6] += pos * tag.id;
            }
        }
    }
    assert_eq!(
        sums,
        [1600, 1280800, 1605141, 37519, 3196, 80122, 182485],
        "W4 checksums (WORKLOADS.md)"
    );
    assert_eq!(
        t.db.query_count() - before,
        192,
        "W4: 3 batched queries per request"
    );

    // W5: like W4, one wave deeper (customer and items, then referrer and products):
    // 5 queries per request.
    let before = t.db.query_count();
    let tasks: Vec<_> = (0..64i64)
        .map(|k| {
            let db = t.db.clone();
            tokio::spawn(async move {
                let s = db.session();
                let pipelines = (k * 25 + 1..=k * 25 + 25).map(|id| {
                    let s = &s;
                    async move {
                        let order = Order::get(s, &id).await?;
                        let (customer, items) = futures_util::future::join(
                            order.fetch_fk(s, Order::CUSTOMER),
                            order.fetch_ifk(s, Order::ORDER_ITEMS),
                        )
                        .await;
                        let (customer, items) = (customer?, items?);
                        let referrer = async {
                            match &customer {
                                Some(c) => c.fetch_fk(s, Customer::REFERRED_BY_CUSTOMER).await,
                                None => Ok(None),
                            }
                        };
                        let products = futures_util::future::try_join_all(
                            items.iter().map(|i| i.fetch_fk(s, OrderItem::PRODUCT)),
                        );
                        let (referrer, products) =
                            futures_util::future::join(referrer, products).await;
                        Ok::<_, matrx_orm::Error>((order, customer, referrer?, items, products?))
                    }
                });
                futures_util::future::try_join_all(pipelines).await
            })
        })
        .collect();
    let mut sums = [0i64; 9];
    for task in tasks {
        for (order, customer, referrer, items, products) in
            task.await.expect("task").expect("W5 request")
        {
            sums[0] += 1;
            sums[1] += order.id;
            sums[2] += customer.expect("every order has a customer").id;
            if let Some(r) = referrer {
                sums[3] += 1;
                sums[4] += r.id;
                sums[5] += r.email.chars().count() as i64;
            }
            for (item, product) in items.iter().zip(&products) {
                sums[6] += 1;
                sums[7] += i64::from(item.quantity) * i64::from(item.unit_price_cents);
                sums[8] += i64::from(product.as_ref().expect("product").price_cents);
            }
        }
    }
    assert_eq!(
        sums,
        [1600, 1280800, 1605141, 770, 384091, 17665, 7974, 1067136864, 392984074],
        "W5 checksums (WORKLOADS.md)"
    );
    assert_eq!(
        t.db.query_count() - before,
        320,
        "W5: 5 batched queries per request"
    );

    // W3: all products, stock (+ warehouse), warehouses through the junction.
    let before = t.db.query_count();
    let products = Product::query()
        .order_by(Product::ID.asc())
        .prefetch(Product::STOCK.with(Stock::WAREHOUSE))
        .prefetch(Product::WAREHOUSES)
        .all(&t.db)
        .await
        .expect("load W3");
    assert_eq!(t.db.query_count() - before, 4, "W3 is one query per edge");
    let mut sums = [0i64; 9];
    for p in &products {
        sums[0] += 1;
        sums[1] += p.id;
        for (pos, s) in (1..).zip(p.stock.get().expect("stock loaded")) {
            sums[2] += 1;
            sums[3] += i64::from(s.qty);
            sums[4] += pos * i64::from(s.qty);
            sums[5] += s.warehouse.get().expect("warehouse").name.chars().count() as i64;
        }
        for (pos, w) in (1..).zip(p.warehouses.get().expect("warehouses loaded")) {
            sums[6] += 1;
            sums[7] += w.name.chars().count() as i64;
            sums[8] += pos * i64::from(w.code);
        }
    }
    assert_eq!(
        sums,
        [1000, 500500, 3042, 766080, 2067338, 30280, 2471, 24623, 14770],
        "W3 checksums (WORKLOADS.md)"
    );
    t.schema.drop_now().await.expect("drop schema");
}

#[tokio::test]
async fn qualify_names_the_schema_on_models_and_junctions() {
    let t = test_db("cli_shop_qualify").await;
    load_shop(&t, false).await;
    let mut qualified = options();
    qualified.qualify = true;
    let generated = generate_as(&t, qualified, "shop").await;
    let order = &generated.files["order.rs"];
    assert!(
        order.contains("#[orm(table = \"orders\", schema = \"shop\")]"),
        "{order}"
    );
    assert!(order.contains("through_schema = \"shop\""), "{order}");
    assert!(order.contains("--out src/models --qualify"), "{order}");
    t.schema.drop_now().await.expect("drop schema");
}
