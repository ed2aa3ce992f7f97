//! Customers, their orders, and tags no relation reaches: the small shop the cache and
//! consistency tests share.

use matrx_orm::cache::CachePolicy;
use matrx_orm::prelude::*;

use super::{test_db, TestDb};

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
    pub status: String,
    #[orm(belongs_to(key = "customer_id"))]
    pub customer: One<Customer>,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "tags")]
pub struct Tag {
    #[orm(primary_key)]
    pub id: i64,
    #[orm(unique)]
    pub name: String,
}

/// Customers Ann (orders 1, 2) and Bob (order 3); tags gift and rush. With `cache`,
/// a second pool caching tags and customers process-wide.
pub async fn fixture(prefix: &str, cache: bool) -> (TestDb, Db) {
    let tdb = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*tdb, &[Customer::META, Order::META, Tag::META])
        .await
        .unwrap();
    tdb.batch_execute(
        "INSERT INTO customers VALUES (1, 'Ann'), (2, 'Bob');
         INSERT INTO orders VALUES (1, 1, 'paid'), (2, 1, 'new'), (3, 2, 'paid');
         INSERT INTO tags VALUES (1, 'gift'), (2, 'rush');",
    )
    .await
    .unwrap();
    let mut builder = Db::builder(tdb.schema.url()).search_path(tdb.schema.name());
    if cache {
        builder = builder
            .cache::<Tag>(CachePolicy::Permanent)
            .cache::<Customer>(CachePolicy::Permanent);
    }
    let db = builder.connect().await.unwrap();
    (tdb, db)
}
