//! The session cache under writes and joined loads: a load that raced a write never
//! stores its older rows, joined loads record what they loaded as batched loads do,
//! and a write evicts what it can make stale — and nothing else.

mod common;

use std::sync::Arc;

use common::small_shop::*;
use matrx_orm::executor::Scope;
use matrx_orm::prelude::*;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// A fresh instance of order `id`, its relations not loaded.
async fn order(s: &Session, id: i64) -> Order {
    Order::query()
        .filter(Order::ID.eq(id))
        .one(s)
        .await
        .unwrap()
}

/// Queries `f` costs in session `s`.
async fn cost<T>(s: &Session, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = s.query_count();
    let value = f.await;
    (value, s.query_count() - before)
}

/// A session whose statements on `table` stop, once they have their rows, until the
/// test lets them go: the write of the test runs while such a load is in flight.
struct Gated<'s> {
    session: &'s Session,
    table: &'static str,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl Executor for Gated<'_> {
    type Atomic<'a>
        = Transaction<'static>
    where
        Self: 'a;

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> matrx_orm::Result<Vec<Row>> {
        let rows = self.session.query(sql, params).await?;
        if sql.contains(&format!("FROM \"{}\"", self.table)) {
            self.arrived.notify_one();
            self.release.notified().await;
        }
        Ok(rows)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> matrx_orm::Result<u64> {
        self.session.execute(sql, params).await
    }

    fn scope(&self) -> &Scope {
        self.session.scope()
    }

    async fn atomic(&self) -> matrx_orm::Result<Transaction<'static>> {
        self.session.atomic().await
    }
}

#[tokio::test]
async fn a_load_that_raced_a_write_does_not_store_its_older_rows() {
    let (_t, db) = fixture("sc_race", false).await;
    let s = db.session();
    let first = order(&s, 1).await;
    let gated = Gated {
        session: &s,
        table: "customers",
        arrived: Arc::new(Notify::new()),
        release: Arc::new(Notify::new()),
    };
    let load = matrx_orm::prefetch_related(&gated, [&first], Order::CUSTOMER);
    let write = async {
        // The load has read Ann's row and not yet stored it.
        gated.arrived.notified().await;
        Customer::query()
            .filter(Customer::ID.eq(1i64))
            .update()
            .set(Customer::NAME, "Ann Lee")
            .exec(&s)
            .await
            .unwrap();
        gated.release.notify_one();
    };
    let (loaded, ()) = tokio::join!(load, write);
    loaded.unwrap();
    assert_eq!(
        first.customer.get().unwrap().name,
        "Ann",
        "the raced load itself returns what it read"
    );
    let second = order(&s, 2).await;
    let (customer, queries) = cost(&s, second.fetch(&s, Order::CUSTOMER)).await;
    assert_eq!(
        customer.unwrap().unwrap().name,
        "Ann Lee",
        "never the row read before the write"
    );
    assert_eq!(queries, 1, "the raced load stored nothing: loaded again");
}

#[tokio::test]
async fn a_joined_to_one_load_answers_later_lazy_loads() {
    let (_t, db) = fixture("sc_joined_one", false).await;
    for balanced in [false, true] {
        let s = db.session();
        let query = Order::query().order_by(Order::ID.asc()).limit(10);
        let query = if balanced {
            query.balanced(Order::CUSTOMER)
        } else {
            query.select_related(Order::CUSTOMER)
        };
        let (orders, queries) = cost(&s, query.all(&s)).await;
        assert_eq!(
            (orders.unwrap().len(), queries),
            (3, 1),
            "balanced: {balanced}"
        );
        let again = order(&s, 2).await;
        let (customer, queries) = cost(&s, again.fetch(&s, Order::CUSTOMER)).await;
        assert_eq!(customer.unwrap().unwrap().name, "Ann");
        assert_eq!(
            queries, 0,
            "recorded by the joined load (balanced: {balanced})"
        );
    }
}

#[tokio::test]
async fn a_joined_to_many_load_answers_later_lazy_loads_empty_lists_included() {
    let (_t, db) = fixture("sc_joined_many", false).await;
    let s = db.session();
    Customer {
        id: 3,
        name: "Cy".into(),
        orders: Many::default(),
    }
    .insert(&s)
    .await
    .unwrap();
    let customers = Customer::query()
        .select_related(Customer::ORDERS)
        .all(&s)
        .await
        .unwrap();
    assert_eq!(customers.len(), 3);
    for (id, expect) in [(1i64, vec![1i64, 2]), (2, vec![3]), (3, vec![])] {
        let fresh = Customer::query()
            .filter(Customer::ID.eq(id))
            .one(&s)
            .await
            .unwrap();
        let (orders, queries) = cost(&s, fresh.fetch(&s, Customer::ORDERS)).await;
        let ids: Vec<i64> = orders.unwrap().iter().map(|o| o.id).collect();
        assert_eq!(ids, expect, "customer {id}");
        assert_eq!(queries, 0, "customer {id}: recorded by the joined load");
    }
}

#[tokio::test]
async fn a_batched_edge_with_joined_children_records_its_entries() {
    let (_t, db) = fixture("sc_batched_joined", false).await;
    let s = db.session();
    let customers = Customer::query()
        .select_related(Customer::ORDERS.with(Order::CUSTOMER.joined()).batched())
        .all(&s)
        .await
        .unwrap();
    assert_eq!(customers.len(), 2);
    let fresh = Customer::query()
        .filter(Customer::ID.eq(1i64))
        .one(&s)
        .await
        .unwrap();
    let (orders, queries) = cost(&s, fresh.fetch(&s, Customer::ORDERS)).await;
    assert_eq!(orders.unwrap().len(), 2);
    assert_eq!(queries, 0);
    let third = order(&s, 3).await;
    let (owner, queries) = cost(&s, third.fetch(&s, Order::CUSTOMER)).await;
    assert_eq!(owner.unwrap().unwrap().name, "Bob");
    assert_eq!(queries, 0, "the joined child recorded its entries too");
}

#[tokio::test]
async fn a_write_keeps_what_it_cannot_reach_and_evicts_what_it_can() {
    let (_t, db) = fixture("sc_targeted", false).await;
    let s = db.session();
    Order::query()
        .prefetch(Order::CUSTOMER.with(Customer::ORDERS))
        .all(&s)
        .await
        .unwrap();
    // A tag is reached by no relation: the order and customer entries survive.
    let mut gift = Tag::get(&s, &1).await.unwrap();
    gift.name = "present".into();
    gift.update(&s).await.unwrap();
    let fresh = order(&s, 1).await;
    let (customer, queries) = cost(&s, fresh.fetch(&s, Order::CUSTOMER)).await;
    let customer = customer.unwrap().unwrap();
    assert_eq!(queries, 0, "a tag write left the customer entries alone");
    assert_eq!(customer.orders.get().map(|o| o.len()), Some(2));
    // An order is held inside customers' order lists: a write to one evicts them.
    Order::query()
        .filter(Order::ID.eq(2i64))
        .update()
        .set(Order::STATUS, "shipped")
        .exec(&s)
        .await
        .unwrap();
    let fresh = order(&s, 1).await;
    let (customer, queries) = cost(&s, fresh.fetch(&s, Order::CUSTOMER)).await;
    assert_eq!(queries, 1, "the customer entry went with the order write");
    let customer = customer.unwrap().unwrap();
    let (orders, queries) = cost(&s, customer.fetch(&s, Customer::ORDERS)).await;
    let statuses: Vec<String> = orders.unwrap().iter().map(|o| o.status.clone()).collect();
    assert_eq!(
        statuses,
        ["paid", "shipped"],
        "the written row, never the held one"
    );
    assert_eq!(queries, 1);
}

#[tokio::test]
async fn entries_a_write_evicted_are_loaded_again_and_held() {
    let (_t, db) = fixture("sc_reload", false).await;
    let s = db.session();
    Order::query()
        .prefetch(Order::CUSTOMER)
        .all(&s)
        .await
        .unwrap();
    // Writing a customer evicts the orders' customer entries.
    Customer::query()
        .filter(Customer::ID.eq(2i64))
        .update()
        .set(Customer::NAME, "Bo")
        .exec(&s)
        .await
        .unwrap();
    let fresh = order(&s, 3).await;
    let (customer, queries) = cost(&s, fresh.fetch(&s, Order::CUSTOMER)).await;
    assert_eq!(
        (customer.unwrap().unwrap().name.as_str(), queries),
        ("Bo", 1)
    );
    let again = order(&s, 3).await;
    let (customer, queries) = cost(&s, again.fetch(&s, Order::CUSTOMER)).await;
    assert_eq!(customer.unwrap().unwrap().name, "Bo");
    assert_eq!(queries, 0, "loaded again after the write, and held");
}
