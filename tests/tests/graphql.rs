//! The GraphQL example's schema (`matrx_orm_examples::graphql`): resolvers that call
//! plain `fetch` per object, run with a fresh `Session` per request, cost a fixed
//! number of statements per query shape, whatever the page size, and answer what the
//! database holds.

mod common;

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use common::shop::*;
use common::{test_db, TestDb};
use matrx_orm_examples::dataset::{Progress, Shop, Size};
use matrx_orm_examples::graphql::{execute, schema, ShopSchema};
use serde_json::{json, Value};

/// The shop every test reads: 40 customers, 25 products, 150 orders, plus one more
/// customer (the last id) with no order at all.
async fn shop_db(prefix: &str) -> (TestDb, Shop) {
    let db = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&db.db, &models())
        .await
        .expect("create tables");
    let size = Size {
        customers: 40,
        products: 25,
        orders: 150,
    };
    let mut data = Shop::generate(size, 7).expect("generate the shop");
    let id = data.customers.len() as i64 + 1;
    data.customers.push(Customer {
        id,
        name: "Nobody Yet".to_owned(),
        email: "nobody@example.com".to_owned(),
        created_at: Utc.timestamp_opt(1_704_067_200, 0).unwrap(),
        referred_by: None,
        referrer: Default::default(),
        orders: Default::default(),
    });
    data.insert(&db.db, &mut Progress::new("shop", data.row_count()))
        .await
        .expect("insert the shop");
    (db, data)
}

/// Runs `query` as one request (its own session); returns its data and the number of
/// statements it sent. Fails on a GraphQL error.
async fn run_once(schema: &ShopSchema, db: &TestDb, query: &str) -> (Value, u64) {
    let session = db.session();
    let response = execute(schema, &session, query).await;
    let statements = session.query_count();
    assert!(response.errors.is_empty(), "{query}: {:?}", response.errors);
    let data = serde_json::to_value(&response.data).expect("data as JSON");
    (data, statements)
}

/// Runs `query` as [`run_once`] does, three times (three requests); returns the data
/// and the statement count, which must be the same each time: a wave of resolvers
/// woken by one batch (the items of every order) meets in one batch for the next
/// edge (their products) however the runtime interleaves them.
async fn run(schema: &ShopSchema, db: &TestDb, query: &str) -> (Value, u64) {
    let (data, first) = run_once(schema, db, query).await;
    let mut counts = vec![first];
    for _ in 0..2 {
        let (again, n) = run_once(schema, db, query).await;
        assert_eq!(
            again, data,
            "{query}: a second request answered differently"
        );
        counts.push(n);
    }
    assert!(
        counts.iter().all(|&n| n == first),
        "{query}: statement counts {counts:?}"
    );
    (data, first)
}

const ORDER_FIELDS: &str =
    "id status customer { name } items { quantity product { name } } tags { name }";

/// What `orders(first, after) { ORDER_FIELDS }` must answer, from the data written.
fn expected_orders(data: &Shop, first: usize, after: i64) -> Value {
    let customers: HashMap<i64, &Customer> = data.customers.iter().map(|c| (c.id, c)).collect();
    let products: HashMap<i64, &Product> = data.products.iter().map(|p| (p.id, p)).collect();
    let tags: HashMap<i64, &Tag> = data.tags.iter().map(|t| (t.id, t)).collect();
    let mut orders: Vec<(&Order, &Vec<i64>)> = data.orders.iter().zip(&data.order_tags).collect();
    orders.sort_by_key(|(o, _)| o.id);
    let page: Vec<Value> = orders
        .into_iter()
        .filter(|(o, _)| o.id > after)
        .take(first)
        .map(|(order, tag_ids)| {
            let mut items: Vec<&OrderItem> = data
                .items
                .iter()
                .filter(|i| i.order_id == order.id)
                .collect();
            items.sort_by_key(|i| i.id);
            let mut tag_ids = tag_ids.clone();
            tag_ids.sort();
            json!({
                "id": order.id,
                "status": order.status,
                "customer": { "name": customers[&order.customer_id].name },
                "items": items.iter().map(|i| json!({
                    "quantity": i.quantity,
                    "product": { "name": products[&i.product_id].name },
                })).collect::<Vec<_>>(),
                "tags": tag_ids.iter().map(|t| json!({ "name": tags[t].name })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "orders": page })
}

/// Each customer's orders, by id.
fn orders_of(data: &Shop) -> HashMap<i64, Vec<&Order>> {
    let mut by_customer = data.orders_by_customer();
    for orders in by_customer.values_mut() {
        orders.sort_by_key(|o| o.id);
    }
    by_customer
}

// On a multi-thread runtime, as a server runs: a request is one task, so its
// resolvers still meet in the same batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_orders_with_customer_items_products_and_tags_is_five_statements() {
    let (db, data) = shop_db("graphql_orders").await;
    let schema = schema();
    for first in [1, 5, 25, 50, 100] {
        let query = format!("{{ orders(first: {first}) {{ {ORDER_FIELDS} }} }}");
        let (got, statements) = run(&schema, &db, &query).await;
        assert_eq!(got, expected_orders(&data, first, 0), "first: {first}");
        // orders, customers, items, products, tags: one statement each.
        assert_eq!(statements, 5, "first: {first}");
    }
    // The next page through the cursor: the same shape, the same cost.
    let query = format!("{{ orders(first: 25, after: 25) {{ {ORDER_FIELDS} }} }}");
    let (got, statements) = run(&schema, &db, &query).await;
    assert_eq!(got, expected_orders(&data, 25, 25));
    assert_eq!(statements, 5);
    // Past the last order: the root statement only.
    let query = format!("{{ orders(first: 25, after: 150) {{ {ORDER_FIELDS} }} }}");
    let (got, statements) = run(&schema, &db, &query).await;
    assert_eq!(got, json!({ "orders": [] }));
    assert_eq!(statements, 1);
}

#[tokio::test]
async fn fewer_fields_cost_fewer_statements() {
    let (db, data) = shop_db("graphql_fields").await;
    let schema = schema();
    let (_, statements) = run(&schema, &db, "{ orders(first: 25) { id status } }").await;
    assert_eq!(statements, 1);
    let (_, statements) = run(
        &schema,
        &db,
        "{ orders(first: 25) { id customer { name } } }",
    )
    .await;
    assert_eq!(statements, 2);
    let (got, statements) = run(
        &schema,
        &db,
        "{ orders(first: 25) { items { product { name } } } }",
    )
    .await;
    assert_eq!(statements, 3);
    let expected = expected_orders(&data, 25, 0);
    let items = |v: &Value| -> Vec<Value> {
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                json!(o["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| json!({ "product": i["product"] }))
                    .collect::<Vec<_>>())
            })
            .collect()
    };
    assert_eq!(items(&got), items(&expected));
}

#[tokio::test]
async fn customers_with_orders_and_order_count() {
    let (db, data) = shop_db("graphql_customers").await;
    let schema = schema();
    let orders_of = orders_of(&data);
    let mut customers: Vec<&Customer> = data.customers.iter().collect();
    customers.sort_by_key(|c| c.id);
    for first in [5, 25, 41, 100] {
        let page = &customers[..first.min(customers.len())];

        // The count alone: annotated in the root statement, no order row read.
        let query = format!("{{ customers(first: {first}) {{ id orderCount }} }}");
        let (got, statements) = run(&schema, &db, &query).await;
        let expected: Vec<Value> = page
            .iter()
            .map(|c| json!({ "id": c.id, "orderCount": orders_of.get(&c.id).map_or(0, Vec::len) }))
            .collect();
        assert_eq!(got, json!({ "customers": expected }), "first: {first}");
        assert_eq!(statements, 1, "first: {first}");

        // Orders and their count: customers (with counts), then their orders.
        let query = format!(
            "{{ customers(first: {first}) {{ id name orderCount orders {{ id status }} }} }}"
        );
        let (got, statements) = run(&schema, &db, &query).await;
        let expected: Vec<Value> = page
            .iter()
            .map(|c| {
                let orders = orders_of.get(&c.id).map_or(&[][..], Vec::as_slice);
                json!({
                    "id": c.id,
                    "name": c.name,
                    "orderCount": orders.len(),
                    "orders": orders.iter().map(|o| json!({ "id": o.id, "status": o.status })).collect::<Vec<_>>(),
                })
            })
            .collect();
        assert_eq!(got, json!({ "customers": expected }), "first: {first}");
        assert_eq!(statements, 2, "first: {first}");
    }
    // The customer without orders is on the last page: a count of 0, an empty list.
    let (got, _) = run(
        &schema,
        &db,
        "{ customers(first: 100) { id orderCount orders { id } } }",
    )
    .await;
    let last = got["customers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last, json!({ "id": 41, "orderCount": 0, "orders": [] }));
}

#[tokio::test]
async fn order_count_of_a_customer_reached_through_an_order_is_one_batched_statement() {
    let (db, data) = shop_db("graphql_nested_count").await;
    let schema = schema();
    let orders_of = orders_of(&data);
    let mut orders: Vec<&Order> = data.orders.iter().collect();
    orders.sort_by_key(|o| o.id);
    for first in [5, 25, 100] {
        let page = &orders[..first];
        // orders, customers, the customers' orders (counted): 3 whatever the page.
        let query = format!("{{ orders(first: {first}) {{ id customer {{ id orderCount }} }} }}");
        let (got, statements) = run(&schema, &db, &query).await;
        let expected: Vec<Value> = page
            .iter()
            .map(|o| {
                let count = orders_of[&o.customer_id].len();
                json!({ "id": o.id, "customer": { "id": o.customer_id, "orderCount": count } })
            })
            .collect();
        assert_eq!(got, json!({ "orders": expected }), "first: {first}");
        assert_eq!(statements, 3, "first: {first}");

        // With the customer's orders beside the count: the same load serves both.
        let query = format!(
            "{{ orders(first: {first}) {{ id customer {{ orderCount orders {{ id }} }} }} }}"
        );
        let (got, statements) = run(&schema, &db, &query).await;
        let expected: Vec<Value> = page
            .iter()
            .map(|o| {
                let theirs = &orders_of[&o.customer_id];
                json!({ "id": o.id, "customer": {
                    "orderCount": theirs.len(),
                    "orders": theirs.iter().map(|t| json!({ "id": t.id })).collect::<Vec<_>>(),
                } })
            })
            .collect();
        assert_eq!(got, json!({ "orders": expected }), "first: {first}");
        assert_eq!(statements, 3, "first: {first}");
    }
}

#[tokio::test]
async fn sessions_are_per_request_and_a_bad_page_size_costs_nothing() {
    let (db, _data) = shop_db("graphql_requests").await;
    let schema = schema();
    let query = format!("{{ orders(first: 25) {{ {ORDER_FIELDS} }} }}");
    // A second request starts from an empty session: it pays the same again, it
    // does not see the first one's cache.
    let (first, a) = run(&schema, &db, &query).await;
    let (second, b) = run(&schema, &db, &query).await;
    assert_eq!((a, b), (5, 5));
    assert_eq!(first, second);
    // Concurrent requests each count their own statements (one more at most: see
    // `run`).
    let counts =
        futures_util::future::join_all((0..4).map(|_| run_once(&schema, &db, &query))).await;
    assert!(counts
        .iter()
        .all(|(data, n)| (5..=6).contains(n) && *data == first));

    for bad in ["-1", "101"] {
        let session = db.session();
        let response = execute(
            &schema,
            &session,
            format!("{{ orders(first: {bad}) {{ id }} }}"),
        )
        .await;
        let statements = session.query_count();
        assert_eq!(response.errors.len(), 1, "first: {bad}");
        assert!(response.errors[0]
            .message
            .contains("`first` must be between 0 and 100"));
        assert_eq!(statements, 0);
    }
}
