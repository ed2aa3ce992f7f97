//! A to-one relation that matches several rows gives the same answer whatever loads
//! it: a typed error naming the relation and the key, unless the edge's ordering picks
//! the first row — then every strategy picks the same one.

mod common;

use common::{test_db, TestDb};
use matrx_orm::prelude::*;
use matrx_orm::Error;

#[derive(Model, Debug, Clone)]
#[orm(table = "customers")]
pub struct Customer {
    #[orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[orm(has_many(foreign_key = "customer_id"))]
    pub orders: Many<Order>,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "orders")]
pub struct Order {
    #[orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    #[orm(has_one(foreign_key = "order_id"))]
    pub invoice: One<Invoice>,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "invoices")]
pub struct Invoice {
    #[orm(primary_key)]
    pub id: i64,
    pub order_id: i64,
    pub number: String,
}

/// Ann has orders 1 (one invoice, 10) and 2 (two invoices: 21 and 20); Bob has order 3
/// (no invoice).
async fn fixture(prefix: &str) -> (TestDb, Db) {
    let tdb = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*tdb, &[Customer::META, Order::META, Invoice::META])
        .await
        .unwrap();
    tdb.batch_execute(
        "INSERT INTO customers VALUES (1, 'Ann'), (2, 'Bob');
         INSERT INTO orders VALUES (1, 1), (2, 1), (3, 2);
         INSERT INTO invoices VALUES (10, 1, 'A-10'), (21, 2, 'A-21'), (20, 2, 'A-20');",
    )
    .await
    .unwrap();
    let db = Db::builder(tdb.schema.url())
        .search_path(tdb.schema.name())
        .connect()
        .await
        .unwrap();
    (tdb, db)
}

fn assert_ambiguous<T: std::fmt::Debug>(result: matrx_orm::Result<T>, how: &str) {
    match result {
        Err(Error::AmbiguousToOne {
            model,
            relation,
            key,
            count,
        }) => {
            assert_eq!(
                (model, relation, key.as_str(), count),
                ("Order", "invoice", "2", 2),
                "{how}"
            );
        }
        other => panic!("{how}: expected AmbiguousToOne, got {other:?}"),
    }
}

async fn order(db: &Db, id: i64) -> Order {
    Order::query()
        .filter(Order::ID.eq(id))
        .one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_strategy_refuses_a_has_one_with_two_rows() {
    let (_t, db) = fixture("h1_refuse").await;
    let all = || Order::query().order_by(Order::ID.asc());

    assert_ambiguous(order(&db, 2).await.fetch(&db, Order::INVOICE).await, "lazy");
    let s = db.session();
    assert_ambiguous(
        order(&db, 2).await.fetch(&s, Order::INVOICE).await,
        "session loader",
    );
    assert_ambiguous(all().prefetch(Order::INVOICE).all(&db).await, "prefetch");
    assert_ambiguous(
        all().select_related(Order::INVOICE).all(&db).await,
        "select_related",
    );
    assert_ambiguous(all().balanced(Order::INVOICE).all(&db).await, "balanced");
    assert_ambiguous(
        all()
            .select_related(Order::INVOICE.batched())
            .all(&db)
            .await,
        "select_related, batched edge",
    );
    let orders = all().all(&db).await.unwrap();
    assert_ambiguous(
        matrx_orm::prefetch_related(&db, &orders, Order::INVOICE).await,
        "prefetch_related",
    );
}

#[tokio::test]
async fn a_nested_has_one_is_refused_inside_an_aggregate_too() {
    let (_t, db) = fixture("h1_nested").await;
    for strategy in ["prefetch", "select_related", "balanced"] {
        let query = Customer::query();
        let tree = Customer::ORDERS.with(Order::INVOICE);
        let result = match strategy {
            "prefetch" => query.prefetch(tree).all(&db).await,
            "select_related" => query.select_related(tree).all(&db).await,
            _ => query.balanced(tree).all(&db).await,
        };
        assert_ambiguous(result, strategy);
    }
}

#[tokio::test]
async fn one_matching_row_or_none_loads_the_same_everywhere() {
    let (_t, db) = fixture("h1_fine").await;
    db.execute_sql("DELETE FROM invoices WHERE id = 21", &[])
        .await
        .unwrap();
    let numbers = |orders: &[Order]| -> Vec<Option<String>> {
        orders
            .iter()
            .map(|o| o.invoice.get().map(|i| i.number.clone()))
            .collect()
    };
    let expect = vec![Some("A-10".to_owned()), Some("A-20".to_owned()), None];
    let all = || Order::query().order_by(Order::ID.asc());
    let prefetched = all().prefetch(Order::INVOICE).all(&db).await.unwrap();
    let joined = all().select_related(Order::INVOICE).all(&db).await.unwrap();
    let balanced = all().balanced(Order::INVOICE).all(&db).await.unwrap();
    assert_eq!(numbers(&prefetched), expect);
    assert_eq!(numbers(&joined), expect);
    assert_eq!(numbers(&balanced), expect);
    let lazy = order(&db, 2)
        .await
        .fetch(&db, Order::INVOICE)
        .await
        .unwrap();
    assert_eq!(lazy.map(|i| i.number.clone()), Some("A-20".to_owned()));
}

#[tokio::test]
async fn an_ordered_edge_takes_the_same_first_row_everywhere() {
    let (_t, db) = fixture("h1_ordered").await;
    for (order_by, first) in [
        (Invoice::ID.asc(), "A-20"),
        (Invoice::ID.desc(), "A-21"),
        (Invoice::NUMBER.desc(), "A-21"),
    ] {
        let edge = || Order::INVOICE.order_by(order_by);
        let all = || Order::query().filter(Order::ID.eq(2i64));
        let picks = [
            all().prefetch(edge()).one(&db).await,
            all().select_related(edge()).one(&db).await,
            all().balanced(edge()).one(&db).await,
            all().select_related(edge().batched()).one(&db).await,
        ];
        for (i, pick) in picks.into_iter().enumerate() {
            let number = pick.unwrap().invoice.get().map(|inv| inv.number.clone());
            assert_eq!(
                number.as_deref(),
                Some(first),
                "strategy #{i}, {order_by:?}"
            );
        }
    }
    // A limit of one per parent picks by primary key when no ordering is given.
    let limited = Order::query()
        .filter(Order::ID.eq(2i64))
        .select_related(Order::INVOICE.limit_per_parent(1))
        .one(&db)
        .await
        .unwrap();
    let batched = Order::query()
        .filter(Order::ID.eq(2i64))
        .prefetch(Order::INVOICE.limit_per_parent(1))
        .one(&db)
        .await
        .unwrap();
    assert_eq!(limited.invoice.get().unwrap().number, "A-20");
    assert_eq!(batched.invoice.get().unwrap().number, "A-20");
}
