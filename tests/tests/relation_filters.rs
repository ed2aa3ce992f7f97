//! Filters across relations: `has` / `any` / `none` / `exists` on belongs-to, has-many,
//! many-to-many, composite keys and self-references, nested, combined with `& | !`,
//! in reads, counts, updates, deletes and prefetch edge filters — rendered as
//! `EXISTS` semi-joins, so a parent is never repeated.
//!
//! The differential test draws random shop data and answers each question twice: with
//! the relation filter in SQL, and in memory from the generated data.

mod common;
mod differential;

use std::collections::BTreeSet;

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use proptest::test_runner::TestCaseError;

/// The ids a query returns, in id order.
async fn ids<M: Model<Key = i64>>(db: &Db, filter: Filter<M>) -> matrx_orm::Result<Vec<i64>> {
    let rows = M::query().filter(filter).all(db).await?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.key()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Ids `1..=n` for which `keep` holds.
fn expect(n: usize, keep: impl Fn(usize) -> bool) -> Vec<i64> {
    (0..n).filter(|&i| keep(i)).map(|i| i as i64 + 1).collect()
}

fn check(what: &str, got: Vec<i64>, want: Vec<i64>) -> Result<(), TestCaseError> {
    if got == want {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: sql {got:?} != memory {want:?}"
        )))
    }
}

async fn run_case(db: &Db, d: &Data, k: usize) -> Result<(), TestCaseError> {
    d.insert(db).await.map_err(|e| fail("insert", e))?;
    let nc = d.customers.len();
    let no = d.orders.len();
    let np = d.products;
    let q = |r: matrx_orm::Result<Vec<i64>>| r.map_err(|e| fail("query", e));
    let kk = k as i64 + 1;

    // Belongs-to: orders of customer kk.
    let got = q(ids(db, Order::CUSTOMER.has(Customer::NAME.eq(format!("c{kk}")))).await)?;
    check("order.customer has", got, expect(no, |o| d.orders[o] == k))?;

    // Has-many, any / none: customers with an order id above k, and with none.
    let has_big = |c: usize| (0..no).any(|o| d.orders[o] == c && o > k);
    let got = q(ids(db, Customer::ORDERS.any(Order::TOTAL_CENTS.gt(kk))).await)?;
    check("customer.orders any", got, expect(nc, has_big))?;
    let got = q(ids(db, Customer::ORDERS.none(Order::TOTAL_CENTS.gt(kk))).await)?;
    check("customer.orders none", got, expect(nc, |c| !has_big(c)))?;

    // Many-to-many, and exists / not_exists.
    let got = q(ids(db, Order::TAGS.any(Tag::ID.eq(kk))).await)?;
    check(
        "order.tags any",
        got,
        expect(no, |o| d.order_tags.contains(&(o, k))),
    )?;
    let tagged = |o: usize| d.order_tags.iter().any(|&(oo, _)| oo == o);
    let got = q(ids(db, Order::TAGS.exists()).await)?;
    check("order.tags exists", got, expect(no, tagged))?;
    let got = q(ids(db, Order::TAGS.not_exists()).await)?;
    check("order.tags not_exists", got, expect(no, |o| !tagged(o)))?;

    // Many-to-many to a composite primary key.
    let in_eu = |p: usize| {
        d.links
            .iter()
            .any(|&(pp, w)| pp == p && d.warehouses[w].0 == "eu")
    };
    let got = q(ids(db, Product::WAREHOUSES.any(Warehouse::REGION.eq("eu"))).await)?;
    check("product.warehouses any (composite)", got, expect(np, in_eu))?;

    // Composite belongs-to: stock rows in a warehouse with code 2 (keyed by product).
    let stock = Stock::query()
        .filter(Stock::WAREHOUSE.has(Warehouse::CODE.eq(2)))
        .all(db)
        .await
        .map_err(|e| fail("stock", e))?;
    let got: BTreeSet<(i64, String, i32)> = stock
        .iter()
        .map(|s| (s.product_id, s.region.clone(), s.code))
        .collect();
    let want: BTreeSet<(i64, String, i32)> = d
        .stock
        .keys()
        .filter(|&&(_, w)| d.warehouses[w].1 == 2)
        .map(|&(p, w)| (p as i64 + 1, d.warehouses[w].0.clone(), d.warehouses[w].1))
        .collect();
    if got != want {
        return Err(TestCaseError::fail(format!(
            "stock.warehouse has (composite FK): {got:?} != {want:?}"
        )));
    }

    // A nullable self-reference: NULL keys have no target.
    let got = q(ids(db, Customer::REFERRER.has(Customer::ID.eq(kk))).await)?;
    check(
        "customer.referrer has",
        got,
        expect(nc, |c| d.customers[c] == Some(k)),
    )?;
    let got = q(ids(db, Customer::REFERRER.not_exists()).await)?;
    check(
        "customer.referrer not_exists",
        got,
        expect(nc, |c| d.customers[c].is_none()),
    )?;

    // Nested three levels: customers who bought product kk.
    let bought = |c: usize| {
        d.items
            .iter()
            .any(|&(_, o, p, _)| d.orders[o] == c && p == k)
    };
    let got = q(ids(
        db,
        Customer::ORDERS.any(Order::ITEMS.any(OrderItem::PRODUCT.has(Product::ID.eq(kk)))),
    )
    .await)?;
    check("customer.orders.items.product", got, expect(nc, bought))?;

    // Combined: tagged orders not of customer kk, or orders of customers referred by
    // nobody.
    let got = q(ids(
        db,
        (Order::TAGS.exists() & !Order::CUSTOMER.has(Customer::ID.eq(kk)))
            | Order::CUSTOMER.has(Customer::REFERRER.not_exists()),
    )
    .await)?;
    let want = expect(no, |o| {
        (tagged(o) && d.orders[o] != k) || d.customers[d.orders[o]].is_none()
    });
    check("combined", got, want)?;

    // Counts agree and never repeat a parent.
    let n = Customer::query()
        .filter(Customer::ORDERS.exists())
        .count(db)
        .await
        .map_err(|e| fail("count", e))?;
    let want = (0..nc).filter(|&c| d.orders.contains(&c)).count() as u64;
    if n != want {
        return Err(TestCaseError::fail(format!(
            "count of customers with orders: {n} != {want}"
        )));
    }
    Ok(())
}

#[test]
fn relation_filters_answer_what_memory_answers() {
    let (rt, db, mut runner) = shop_runner("rf_differential");
    let result = runner.run(&(raw(), 0..5usize), |(raw, k)| {
        let data = Data::from(&raw);
        rt.block_on(run_case(&db, &data, k))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A fixed dataset for the paths the random draws may miss: writes by relation
/// filter, prefetch and joined edges filtered by a relation, hostile values.
async fn fixed() -> common::TestDb {
    let db = common::test_db("rf_fixed").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let data = Data {
        customers: vec![None, Some(0), Some(1)],
        products: 2,
        tags: 2,
        warehouses: vec![("eu".into(), 1)],
        orders: vec![0, 0, 1, 2],
        items: vec![(4, 0, 0, 1), (3, 1, 1, 1), (2, 2, 1, 1), (1, 3, 0, 2)],
        order_tags: [(0, 0), (1, 1), (2, 0)].into_iter().collect(),
        stock: [((0, 0), 5)].into_iter().collect(),
        links: [(0, 0)].into_iter().collect(),
    };
    data.insert(&db).await.unwrap();
    db
}

#[tokio::test]
async fn a_relation_filter_works_in_updates_deletes_and_edge_filters() {
    let db = fixed().await;
    // Update by relation filter: orders tagged t1.
    let updated = Order::query()
        .filter(Order::TAGS.any(Tag::NAME.eq("t1")))
        .update()
        .set(Order::STATUS, "gift")
        .exec(&*db)
        .await
        .unwrap();
    let mut ids: Vec<i64> = updated.iter().map(|o| o.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 3]);

    // A prefetch edge and a joined edge filtered by a relation, same answer.
    let tagged_orders = || Customer::ORDERS.filter(Order::TAGS.exists());
    let prefetched = Customer::query()
        .order_by(Customer::ID.asc())
        .prefetch(tagged_orders())
        .all(&*db)
        .await
        .unwrap();
    let joined = Customer::query()
        .order_by(Customer::ID.asc())
        .select_related(tagged_orders())
        .all(&*db)
        .await
        .unwrap();
    let per_customer = |cs: &[Customer]| -> Vec<Vec<i64>> {
        cs.iter()
            .map(|c| c.orders.iter().map(|o| o.id).collect())
            .collect()
    };
    assert_eq!(per_customer(&prefetched), [vec![1, 2], vec![3], vec![]]);
    assert_eq!(per_customer(&joined), per_customer(&prefetched));

    // Delete by relation filter: items of orders of customer c3.
    let deleted = OrderItem::query()
        .filter(OrderItem::ORDER.has(Order::CUSTOMER.has(Customer::NAME.eq("c3"))))
        .delete(&*db)
        .await
        .unwrap();
    assert_eq!(deleted.iter().map(|i| i.id).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn a_parent_matching_many_children_appears_once() {
    let db = fixed().await;
    // Customer c1 has two orders with items: a join would return it twice.
    let customers = Customer::query()
        .filter(Customer::ORDERS.any(Order::ITEMS.exists()))
        .order_by(Customer::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(
        customers.iter().map(|c| c.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let page = Customer::query()
        .filter(Customer::ORDERS.any(Order::ITEMS.exists()))
        .order_by(Customer::ID.asc())
        .limit(2)
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(page.len(), 2, "a limit counts parents");
}

#[tokio::test]
async fn values_in_relation_filters_are_bound_never_spliced() {
    let db = fixed().await;
    let hostile = "'; DROP TABLE orders; --";
    let query = Order::query().filter(Order::CUSTOMER.has(Customer::NAME.eq(hostile)));
    let sql = query.to_sql().unwrap();
    assert!(!sql.text.contains("DROP"), "{}", sql.text);
    assert_eq!(sql.params.len(), 1);
    assert!(query.all(&*db).await.unwrap().is_empty());
    assert_eq!(
        Order::query().count(&*db).await.unwrap(),
        4,
        "nothing dropped"
    );
}

#[tokio::test]
async fn the_sql_is_one_semi_join_per_relation() {
    let sql = Customer::query()
        .filter(Customer::ORDERS.any(Order::TAGS.any(Tag::NAME.eq("b2b"))))
        .to_sql()
        .unwrap();
    assert_eq!(
        sql.text,
        concat!(
            r#"SELECT "t"."id", "t"."name", "t"."email", "t"."created_at", "t"."referred_by" "#,
            r#"FROM "customers" AS "t" WHERE EXISTS (SELECT 1 FROM "orders" AS "t_x" "#,
            r#"WHERE "t_x"."customer_id" = "t"."id" AND EXISTS (SELECT 1 FROM "order_tags" AS "t_x_j" "#,
            r#"JOIN "tags" AS "t_x_x" ON "t_x_x"."id" = "t_x_j"."tag_id" "#,
            r#"WHERE "t_x_j"."order_id" = "t_x"."id" AND "t_x_x"."name" = $1))"#
        )
    );
}
