//! The union shape of `select_related` (one `UNION ALL` branch of plain rows per edge,
//! stitched as prefetch stitches them) on random shop data: NULL foreign keys
//! (`referred_by`), empty collections, composite keys (stock's warehouse, products'
//! warehouses through `product_warehouses`), to-one under to-many (items' products,
//! stock's warehouses), to-many under to-many (a customer's orders' items and tags),
//! many-to-many (orders' tags, products' warehouses), and pages whose order has ties
//! (orders by customer: each row of the page read once, with its own children).
//!
//! Every load is exactly ONE statement, and the graph equals prefetch's (compared as
//! `serde_json` values). Case count: 24 by default, `PROPTEST_CASES` overrides it.

mod common;
mod differential;

use std::collections::{BTreeMap, BTreeSet};

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use matrx_orm::{AggregateEncoding, IntoPrefetch, JoinedShape, Select};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn json<M: serde::Serialize>(rows: &[M]) -> serde_json::Value {
    serde_json::to_value(rows).unwrap()
}

/// The two ways a tree is loaded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Prefetch,
    /// `select_related` in `shape`.
    Joined(JoinedShape),
}

const UNION_SHAPES: [JoinedShape; 3] = [
    JoinedShape::Auto,
    JoinedShape::UnionToOneJoined,
    JoinedShape::UnionToOneBranched,
];

impl How {
    fn add<M: Model>(self, query: Select<M>, tree: impl IntoPrefetch<M>) -> Select<M> {
        match self {
            How::Prefetch => query.prefetch(tree),
            How::Joined(shape) => query.select_related(tree).joined_shape(shape),
        }
    }
}

/// Orders with every kind of edge: a to-one with a to-many under it, and to-many
/// under to-many; items with their products (to-one under to-many) and the products'
/// warehouses (many-to-many to a composite key); tags (many-to-many).
fn orders(how: How) -> Select<Order> {
    let q = how.add(
        Order::query(),
        Order::CUSTOMER
            .with(Customer::REFERRER)
            .with(Customer::ORDERS.with(Order::ITEMS).with(Order::TAGS)),
    );
    let q = how.add(
        q,
        Order::ITEMS.with(
            OrderItem::PRODUCT
                .with(Product::WAREHOUSES)
                .with(Product::STOCK.with(Stock::WAREHOUSE)),
        ),
    );
    how.add(q, Order::TAGS)
}

/// Customers: a NULL-able to-one (the referrer) with its own to-many, orders with
/// their items and tags; a filter on a to-many edge.
fn customers(how: How) -> Select<Customer> {
    let q = how.add(
        Customer::query().order_by(Customer::ID.desc()),
        Customer::REFERRER.with(Customer::ORDERS.filter(Order::TOTAL_CENTS.gt(2))),
    );
    how.add(
        q,
        Customer::ORDERS
            .with(
                Order::ITEMS
                    .filter(OrderItem::QUANTITY.gte(2))
                    .with(OrderItem::PRODUCT),
            )
            .with(Order::TAGS),
    )
}

/// Loads `query` in one statement and checks that it took the union shape (with no
/// aggregate left when every edge is a branch: the orders' tree customises no edge).
async fn one_union_load<M: Model>(
    db: &Db,
    label: &str,
    query: Select<M>,
) -> Result<Vec<M>, TestCaseError> {
    let sql = query
        .joined_statement(AggregateEncoding::Records)
        .map_err(|e| fail("statement", e))?;
    prop_assert!(
        sql.text.contains(" UNION ALL SELECT "),
        "{}: {}",
        label,
        sql.text
    );
    if label.starts_with("orders") && !sql.text.contains(" LEFT JOIN ") {
        prop_assert!(!sql.text.contains("array_agg"), "{}: {}", label, sql.text);
    }
    let before = db.query_count();
    let rows = query.all(db).await.map_err(|e| fail(label, e))?;
    prop_assert_eq!(db.query_count() - before, 1, "{}: one query", label);
    Ok(rows)
}

async fn run_case(db: &Db, data: &Data, page: (u64, u64)) -> Result<(), TestCaseError> {
    data.insert(db).await.map_err(|e| fail("insert", e))?;
    let (limit, offset) = page;

    // Whole tables, in key order: exactly prefetch's graph.
    let expected_orders = json(
        &orders(How::Prefetch)
            .order_by(Order::ID.asc())
            .all(db)
            .await
            .map_err(|e| fail("prefetch", e))?,
    );
    let expected_customers = json(
        &customers(How::Prefetch)
            .all(db)
            .await
            .map_err(|e| fail("prefetch", e))?,
    );
    let by_id: BTreeMap<i64, serde_json::Value> = expected_orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_i64().unwrap(), o.clone()))
        .collect();
    for shape in UNION_SHAPES {
        let how = How::Joined(shape);
        let got = one_union_load(db, "orders", orders(how).order_by(Order::ID.asc())).await?;
        prop_assert_eq!(&json(&got), &expected_orders, "orders {:?}", shape);
        if shape != JoinedShape::UnionToOneJoined {
            // The referrer is a to-one edge: a branch only when to-one edges are.
            let got = one_union_load(db, "customers", customers(how)).await?;
            prop_assert_eq!(&json(&got), &expected_customers, "customers {:?}", shape);
        }

        // A page whose order has ties (many orders per customer): every row of the
        // page once, in the page's order, each with its own children.
        let page = one_union_load(
            db,
            "orders page",
            orders(how)
                .order_by(Order::CUSTOMER_ID.asc())
                .limit(limit)
                .offset(offset),
        )
        .await?;
        let total = data.orders.len() as u64;
        prop_assert_eq!(
            page.len() as u64,
            limit.min(total.saturating_sub(offset)),
            "page size"
        );
        let ids: BTreeSet<i64> = page.iter().map(|o| o.id).collect();
        prop_assert_eq!(ids.len(), page.len(), "each row of the page once");
        prop_assert!(
            page.windows(2)
                .all(|w| w[0].customer_id <= w[1].customer_id),
            "the page's order"
        );
        for o in &page {
            prop_assert_eq!(
                &serde_json::to_value(o).unwrap(),
                &by_id[&o.id],
                "order {}",
                o.id
            );
        }
    }
    Ok(())
}

#[test]
fn the_union_shape_loads_what_prefetch_loads() {
    let (rt, db, mut runner) = shop_runner("sr_union");
    let strategy = (raw(), (0..8u64, 0..4u64));
    let result = runner.run(&strategy, |(raw, page)| {
        let data = Data::from(&raw);
        rt.block_on(run_case(&db, &data, page))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// In a session, the union load joins the identity map and records its relation
/// entries as prefetch does: a later load of the same edges runs no statement.
#[test]
fn a_session_holds_what_the_union_load_read() {
    let (rt, db, _) = shop_runner("sr_union_session");
    rt.block_on(async {
        Data::small().insert(&db).await.unwrap();
        let session = db.session();
        let orders = Order::query()
            .order_by(Order::ID.asc())
            .select_related(Order::ITEMS.with(OrderItem::PRODUCT))
            .select_related(Order::TAGS)
            .all(&session)
            .await
            .unwrap();
        assert_eq!(orders.len(), 3);
        let before = db.query_count();
        let again = Order::query()
            .order_by(Order::ID.asc())
            .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
            .prefetch(Order::TAGS)
            .all(&session)
            .await
            .unwrap();
        assert_eq!(db.query_count() - before, 1, "only the root statement");
        assert_eq!(json(&again), json(&orders));
        // The same product row is one instance in the session.
        let p = |o: &Order| {
            o.items.get().unwrap()[0]
                .product
                .state()
                .unwrap()
                .unwrap()
                .clone()
        };
        assert!(std::sync::Arc::ptr_eq(&p(&orders[2]), &p(&again[2])));
    });
    drop(db);
}
