//! Counts and aggregates across relations: `annotate` (in the parents' own statement)
//! and `Aggregate::load` (one `GROUP BY` statement for a loaded collection), checked
//! against answers computed in memory from random shop data, with exact query counts.

mod common;
mod differential;

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use matrx_orm::Error;
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

/// A customer's id with its order count, largest order total and tagged order count.
type Annotated = (i64, (i64, Option<i64>, i64));

async fn run_case(db: &Db, d: &Data) -> Result<(), TestCaseError> {
    d.insert(db).await.map_err(|e| fail("insert", e))?;
    let err = |e: matrx_orm::Error| fail("query", e);

    // Per customer: number of orders, and the largest order total (total = id).
    let before = db.query_count();
    let rows = Customer::query()
        .order_by(Customer::ID.asc())
        .annotate((
            Customer::ORDERS.count(),
            Customer::ORDERS.max(Order::TOTAL_CENTS),
            Customer::ORDERS.count().filter(Order::TAGS.exists()),
        ))
        .all(db)
        .await
        .map_err(err)?;
    same("one statement", db.query_count() - before, 1)?;
    let got: Vec<Annotated> = rows.iter().map(|(c, v)| (c.id, *v)).collect();
    let tagged = |o: usize| d.order_tags.iter().any(|&(oo, _)| oo == o);
    let want: Vec<Annotated> = (0..d.customers.len())
        .map(|c| {
            let mine: Vec<usize> = (0..d.orders.len()).filter(|&o| d.orders[o] == c).collect();
            let count = mine.len() as i64;
            let max = mine.iter().map(|&o| o as i64 + 1).max();
            let tagged = mine.iter().filter(|&&o| tagged(o)).count() as i64;
            (c as i64 + 1, (count, max, tagged))
        })
        .collect();
    same("customers annotated", got, want)?;

    // Per order: tags (many-to-many), item quantities (sum, min, avg).
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .all(db)
        .await
        .map_err(err)?;
    let before = db.query_count();
    let tags = Order::TAGS.count().load(db, &orders).await.map_err(err)?;
    let qty = Order::ITEMS
        .sum(OrderItem::QUANTITY)
        .load(db, &orders)
        .await
        .map_err(err)?;
    let low = Order::ITEMS
        .min(OrderItem::QUANTITY)
        .load(db, &orders)
        .await
        .map_err(err)?;
    let avg = Order::ITEMS
        .avg(OrderItem::QUANTITY)
        .load(db, &orders)
        .await
        .map_err(err)?;
    let expected_queries = if orders.is_empty() { 0 } else { 4 };
    same(
        "one statement per load",
        db.query_count() - before,
        expected_queries,
    )?;
    for (o, order) in orders.iter().enumerate() {
        let quantities: Vec<i32> = d
            .items
            .iter()
            .filter(|&&(_, oo, _, _)| oo == o)
            .map(|&(_, _, _, q)| q)
            .collect();
        let want_tags = d.order_tags.iter().filter(|&&(oo, _)| oo == o).count() as i64;
        same("order tags", tags.get(order), want_tags)?;
        let sum = (!quantities.is_empty()).then(|| quantities.iter().map(|&q| i64::from(q)).sum());
        same("order quantity sum", qty.get(order), sum)?;
        same(
            "order quantity min",
            low.get(order),
            quantities.iter().copied().min(),
        )?;
        let mean = (!quantities.is_empty()).then(|| {
            quantities.iter().map(|&q| f64::from(q)).sum::<f64>() / quantities.len() as f64
        });
        let close = match (avg.get(order), mean) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            (a, b) => a.is_none() && b.is_none(),
        };
        if !close {
            return Err(TestCaseError::fail(format!(
                "order {} avg: {:?} != {mean:?}",
                order.id,
                avg.get(order)
            )));
        }
    }

    // Many-to-many to a composite primary key, and a NULL self-reference.
    let products = Product::query()
        .order_by(Product::ID.asc())
        .annotate(Product::WAREHOUSES.count())
        .all(db)
        .await
        .map_err(err)?;
    let got: Vec<i64> = products.iter().map(|(_, n)| *n).collect();
    let want: Vec<i64> = (0..d.products)
        .map(|p| d.links.iter().filter(|&&(pp, _)| pp == p).count() as i64)
        .collect();
    same("product warehouses", got, want)?;
    let referrers = Customer::query()
        .order_by(Customer::ID.asc())
        .annotate(Customer::REFERRER.count())
        .all(db)
        .await
        .map_err(err)?;
    let got: Vec<i64> = referrers.iter().map(|(_, n)| *n).collect();
    let want: Vec<i64> = d.customers.iter().map(|r| i64::from(r.is_some())).collect();
    same("customer referrer (NULL keys count 0)", got, want)?;
    Ok(())
}

#[test]
fn aggregates_answer_what_memory_answers() {
    let (rt, db, mut runner) = shop_runner("agg_differential");
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
    let db = common::test_db("agg_fixed").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let data = Data::small();
    data.insert(&db).await.unwrap();
    db
}

#[tokio::test]
async fn annotate_pages_parents_and_loads_prefetch_trees() {
    let db = fixed().await;
    let before = db.query_count();
    let rows = Customer::query()
        .order_by(Customer::ID.desc())
        .limit(2)
        .prefetch(Customer::ORDERS.with(Order::TAGS))
        .annotate(Customer::ORDERS.count())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(
        db.query_count() - before,
        3,
        "root with counts, orders, tags"
    );
    let got: Vec<(i64, i64, usize)> = rows
        .iter()
        .map(|(c, n)| (c.id, *n, c.orders.get().map_or(0, |o| o.len())))
        .collect();
    assert_eq!(got, [(3, 0, 0), (2, 1, 1)], "the limit counts customers");
    let first = Customer::query()
        .annotate(Customer::ORDERS.count())
        .first(&*db)
        .await
        .unwrap();
    assert_eq!(first.map(|(c, n)| (c.id, n)), Some((1, 2)));
}

#[tokio::test]
async fn aggregate_filters_are_bound_and_empty_sets_cost_nothing() {
    let db = fixed().await;
    let hostile = "'; DELETE FROM orders; --";
    let query =
        Customer::query().annotate(Customer::ORDERS.count().filter(Order::STATUS.eq(hostile)));
    let sql = query.to_sql().unwrap();
    assert!(!sql.text.contains("DELETE"), "{}", sql.text);
    let counts: Vec<i64> = query
        .all(&*db)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(counts, [0, 0, 0]);
    let none: Vec<Customer> = Vec::new();
    let before = db.query_count();
    let empty = Customer::ORDERS.count().load(&*db, &none).await.unwrap();
    assert_eq!(db.query_count() - before, 0);
    assert_eq!(empty.by_key(&1), 0);
    assert_eq!(
        Order::query().count(&*db).await.unwrap(),
        3,
        "nothing deleted"
    );
}

#[tokio::test]
async fn annotate_refuses_joined_trees_with_a_typed_error() {
    let db = fixed().await;
    let result = Customer::query()
        .select_related(Customer::ORDERS)
        .annotate(Customer::ORDERS.count())
        .all(&*db)
        .await;
    assert!(matches!(result, Err(Error::InvalidInput(m)) if m.contains("annotate")));
}

#[tokio::test]
async fn the_sql_is_one_scalar_subquery_per_aggregate() {
    let sql = Order::query()
        .filter(Order::ID.gt(10))
        .annotate((Order::TAGS.count(), Order::ITEMS.sum(OrderItem::QUANTITY)))
        .to_sql()
        .unwrap();
    assert_eq!(
        sql.text,
        concat!(
            r#"SELECT "t"."id", "t"."customer_id", "t"."status", "t"."placed_at", "t"."total_cents", "#,
            r#"(SELECT count(*) FROM "order_tags" AS "t_a0j" JOIN "tags" AS "t_a0" ON "t_a0"."id" = "t_a0j"."tag_id" "#,
            r#"WHERE "t_a0j"."order_id" = "t"."id"), "#,
            r#"(SELECT sum("t_a1"."quantity")::int8 FROM "order_items" AS "t_a1" WHERE "t_a1"."order_id" = "t"."id") "#,
            r#"FROM "orders" AS "t" WHERE "t"."id" > $1"#
        )
    );
}
