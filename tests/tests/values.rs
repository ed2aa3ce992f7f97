//! Projection and grouping: `Select::values` (typed tuples of columns and aggregates),
//! `group_by` / `having` / ordering by an aggregate, and `select_as` / `FromRow` (plain
//! structs), checked against answers computed in memory from random shop data, with
//! exact statement counts and typed errors sent before anything reaches the server.

mod common;
mod differential;

use std::collections::{BTreeMap, BTreeSet};

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use matrx_orm::{count, Error, FromRow};
use proptest::test_runner::TestCaseError;

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), TestCaseError> {
    if got == want {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: sql {got:?} != memory {want:?}"
        )))
    }
}

/// Per customer with at least two orders: the customer, its order count, the sum of
/// its order totals, its largest order id, and how many of its orders total more than 3.
type PerCustomer = (i64, i64, Option<i64>, Option<i64>, i64);

async fn run_case(db: &Db, d: &Data) -> Result<(), TestCaseError> {
    d.insert(db).await.map_err(|e| fail("insert", e))?;
    let err = |e: matrx_orm::Error| fail("query", e);

    let before = db.query_count();
    let got: Vec<PerCustomer> = Order::query()
        .values((
            Order::CUSTOMER_ID,
            count(),
            Order::TOTAL_CENTS.sum(),
            Order::ID.max(),
            count().filter(Order::TOTAL_CENTS.gt(3)),
        ))
        .group_by(Order::CUSTOMER_ID)
        .having(count().gte(2))
        .order_by(count().desc())
        .order_by(Order::CUSTOMER_ID.asc())
        .all(db)
        .await
        .map_err(err)?;
    same("one statement", db.query_count() - before, 1)?;
    // In the generated data an order's id and its total are both its index + 1.
    let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (o, &c) in d.orders.iter().enumerate() {
        groups.entry(c as i64 + 1).or_default().push(o as i64 + 1);
    }
    let mut want: Vec<PerCustomer> = groups
        .iter()
        .filter(|(_, orders)| orders.len() >= 2)
        .map(|(&c, orders)| {
            (
                c,
                orders.len() as i64,
                Some(orders.iter().sum()),
                orders.iter().copied().max(),
                orders.iter().filter(|&&t| t > 3).count() as i64,
            )
        })
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    same("orders per customer", got, want)?;

    // Per product: quantity sum and average, distinct orders, over items of orders
    // whose customer has a referrer (a relation filter inside a grouped query).
    let got: Vec<(i64, Option<i64>, Option<f64>, i64)> = OrderItem::query()
        .filter(OrderItem::ORDER.has(Order::CUSTOMER.has(Customer::REFERRED_BY.is_not_null())))
        .values((
            OrderItem::PRODUCT_ID,
            OrderItem::QUANTITY.sum(),
            OrderItem::QUANTITY.avg(),
            OrderItem::ORDER_ID.count_distinct(),
        ))
        .group_by(OrderItem::PRODUCT_ID)
        .order_by(OrderItem::PRODUCT_ID.asc())
        .all(db)
        .await
        .map_err(err)?;
    let mut per_product: BTreeMap<i64, (Vec<i32>, BTreeSet<usize>)> = BTreeMap::new();
    for &(_, o, p, q) in &d.items {
        if d.customers[d.orders[o]].is_some() {
            let entry = per_product.entry(p as i64 + 1).or_default();
            entry.0.push(q);
            entry.1.insert(o);
        }
    }
    same("products", got.len(), per_product.len())?;
    for ((product, sum, avg, orders), (want_product, (quantities, want_orders))) in
        got.iter().zip(&per_product)
    {
        same("product", product, want_product)?;
        same(
            "quantity sum",
            *sum,
            Some(quantities.iter().map(|&q| i64::from(q)).sum()),
        )?;
        let mean = quantities.iter().map(|&q| f64::from(q)).sum::<f64>() / quantities.len() as f64;
        if avg.is_none_or(|a| (a - mean).abs() > 1e-9) {
            return Err(TestCaseError::fail(format!(
                "product {product} avg {avg:?} != {mean}"
            )));
        }
        same("distinct orders", *orders, want_orders.len() as i64)?;
    }

    // Whole-table aggregates: exactly one row, even over no rows.
    let (orders, biggest): (i64, Option<i64>) = Order::query()
        .values((count(), Order::TOTAL_CENTS.max()))
        .one(db)
        .await
        .map_err(err)?;
    same("order count", orders, d.orders.len() as i64)?;
    same(
        "largest total",
        biggest,
        (!d.orders.is_empty()).then_some(d.orders.len() as i64),
    )?;
    Ok(())
}

#[test]
fn grouped_values_answer_what_memory_answers() {
    let (rt, db, mut runner) = shop_runner("values_differential");
    let result = runner.run(&raw(), |raw| {
        let data = Data::from(&raw);
        rt.block_on(run_case(&db, &data))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn fixed() -> common::TestDb {
    let db = common::test_db("values_fixed").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let data = Data {
        customers: vec![None, Some(0), None],
        products: 2,
        tags: 2,
        warehouses: vec![("eu".into(), 1)],
        orders: vec![0, 0, 1],
        items: vec![(3, 0, 0, 2), (2, 0, 1, 5), (1, 2, 1, 1)],
        order_tags: [(0, 0), (2, 1)].into_iter().collect(),
        stock: BTreeMap::new(),
        links: Default::default(),
    };
    data.insert(&db).await.unwrap();
    db
}

#[tokio::test]
async fn values_read_chosen_columns_in_one_statement() {
    let db = fixed().await;
    let before = db.query_count();
    let rows: Vec<(i64, i64)> = Order::query()
        .filter(Order::CUSTOMER_ID.eq(1))
        .order_by(Order::ID.desc())
        .values((Order::ID, Order::TOTAL_CENTS))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(db.query_count() - before, 1);
    assert_eq!(rows, [(2, 2), (1, 1)]);

    let sql = Order::query().values(Order::ID).to_sql().unwrap();
    assert_eq!(
        sql.text,
        r#"SELECT "t"."id" FROM "orders" AS "t" WHERE TRUE"#
    );

    // A single column reads as itself, not a 1-tuple; first() limits to one row.
    let first = Order::query()
        .order_by(Order::ID.asc())
        .values(Order::STATUS)
        .first(&*db)
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("new"));
    let none = Order::query()
        .filter(Order::ID.eq(99))
        .values(Order::STATUS)
        .first(&*db)
        .await
        .unwrap();
    assert_eq!(none, None);
}

#[tokio::test]
async fn a_column_that_may_be_null_reads_as_an_option_when_asked() {
    let db = fixed().await;
    let rows: Vec<(i64, Option<i64>)> = Customer::query()
        .order_by(Customer::ID.asc())
        .values((Customer::ID, Customer::REFERRED_BY.nullable()))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(rows, [(1, None), (2, Some(1)), (3, None)]);

    // Read as plain i64, a NULL is a decode error naming the column.
    let err = Customer::query()
        .order_by(Customer::ID.asc())
        .values(Customer::REFERRED_BY)
        .all(&*db)
        .await
        .unwrap_err();
    match err {
        Error::Decode { column, .. } => assert_eq!(column, "referred_by"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[derive(FromRow, Debug, PartialEq)]
struct OrderLine {
    id: i64,
    #[orm(column = "total_cents")]
    total: i64,
    status: String,
}

#[derive(FromRow, Debug)]
struct Misnamed {
    #[allow(dead_code)]
    id: i64,
    #[allow(dead_code)]
    totl_cents: i64,
}

#[tokio::test]
async fn select_as_reads_a_plain_struct_with_only_its_columns() {
    let db = fixed().await;
    let query = Order::query()
        .filter(Order::TOTAL_CENTS.gte(2))
        .order_by(Order::ID.asc())
        .select_as::<OrderLine>();
    assert_eq!(
        query.to_sql().unwrap().text,
        r#"SELECT "t"."id", "t"."total_cents", "t"."status" FROM "orders" AS "t" WHERE "t"."total_cents" >= $1 ORDER BY "t"."id" ASC"#
    );
    let before = db.query_count();
    let lines = query.all(&*db).await.unwrap();
    assert_eq!(db.query_count() - before, 1);
    assert_eq!(
        lines,
        [
            OrderLine {
                id: 2,
                total: 2,
                status: "new".into()
            },
            OrderLine {
                id: 3,
                total: 3,
                status: "new".into()
            }
        ]
    );

    // The same struct from a hand-written statement, by column name in any order.
    let rows = db
        .query_sql(
            "SELECT status, total_cents, id FROM orders WHERE id = $1",
            &[&1_i64],
        )
        .await
        .unwrap();
    let lines = OrderLine::from_rows(&rows).unwrap();
    assert_eq!(
        lines,
        [OrderLine {
            id: 1,
            total: 1,
            status: "new".into()
        }]
    );
    let err = Misnamed::from_rows(&rows).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { column, .. } if column == "totl_cents"),
        "{err:?}"
    );

    // A struct naming a column the model lacks is refused before anything is sent.
    let before = db.query_count();
    let err = Order::query()
        .select_as::<Misnamed>()
        .all(&*db)
        .await
        .unwrap_err();
    assert_eq!(db.query_count() - before, 0);
    match err {
        Error::InvalidInput(message) => {
            assert!(message.contains("totl_cents"), "{message}");
            assert!(
                message.contains("total_cents"),
                "lists the real ones: {message}"
            );
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn grouping_mistakes_are_refused_before_anything_is_sent() {
    let db = fixed().await;
    let before = db.query_count();

    // A plain column next to an aggregate must be grouped by.
    let err = Order::query()
        .values((Order::STATUS, count()))
        .all(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("`status`") && m.contains("group_by")),
        "{err:?}"
    );
    let err = Order::query()
        .values((Order::STATUS, Order::ID))
        .group_by(Order::STATUS)
        .all(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("`id`")),
        "{err:?}"
    );

    // values reads no models, so a relation tree has nothing to load on.
    let err = Customer::query()
        .prefetch(Customer::ORDERS)
        .values(Customer::ID)
        .all(&*db)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    // annotate adds per-row values; an aggregate over the rows needs grouping.
    let err = Customer::query()
        .annotate(count())
        .all(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("group_by")),
        "{err:?}"
    );
    assert_eq!(db.query_count() - before, 0);
}

#[tokio::test]
async fn having_and_aggregate_filters_bind_their_values() {
    let db = fixed().await;
    let hostile = "x'); DROP TABLE orders; --".to_string();
    let query = Order::query()
        .values((
            Order::CUSTOMER_ID,
            count().filter(Order::STATUS.ne(hostile.clone())),
            Order::TOTAL_CENTS.min(),
        ))
        .group_by(Order::CUSTOMER_ID)
        .having(Order::TOTAL_CENTS.sum().gt(0_i64) & !count().eq(99))
        .order_by(Order::TOTAL_CENTS.min().asc());
    let sql = query.to_sql().unwrap();
    assert!(!sql.text.contains("DROP"), "{}", sql.text);
    assert_eq!(sql.params.len(), 3);
    let rows = query.all(&*db).await.unwrap();
    assert_eq!(rows, [(1, 2, Some(1)), (2, 1, Some(3))]);
    assert_eq!(
        Order::query().count(&*db).await.unwrap(),
        3,
        "the table is intact"
    );

    // A limit applies to groups; one() refuses two groups.
    let err = Order::query()
        .values((Order::CUSTOMER_ID, count()))
        .group_by(Order::CUSTOMER_ID)
        .one(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MultipleRows { count: 2, .. }),
        "{err:?}"
    );
    let top = Order::query()
        .values((Order::CUSTOMER_ID, count()))
        .group_by(Order::CUSTOMER_ID)
        .order_by(count().desc())
        .first(&*db)
        .await
        .unwrap();
    assert_eq!(top, Some((1, 2)));
}

#[tokio::test]
async fn relation_aggregates_are_selections_too() {
    let db = fixed().await;
    let before = db.query_count();
    let rows: Vec<(i64, i64, Option<i64>)> = Customer::query()
        .order_by(Customer::ID.asc())
        .values((
            Customer::ID,
            Customer::ORDERS.count(),
            Customer::ORDERS.sum(Order::TOTAL_CENTS),
        ))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(db.query_count() - before, 1);
    assert_eq!(rows, [(1, 2, Some(3)), (2, 1, Some(3)), (3, 0, None)]);
}
