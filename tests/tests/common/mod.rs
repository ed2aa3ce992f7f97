//! Shared by the integration tests: an isolated database per test, and models that
//! read like user code.
#![allow(dead_code)]

pub mod shop;
pub mod small_shop;

use std::ops::Deref;

use matrx_orm::Db;
use matrx_orm_testkit::TestSchema;

/// A `Db` whose `search_path` is a schema of its own, dropped with the value.
pub struct TestDb {
    pub db: Db,
    pub schema: TestSchema,
}

impl Deref for TestDb {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

/// A fresh, empty schema and a pool bound to it.
pub async fn test_db(prefix: &str) -> TestDb {
    let schema = TestSchema::create(prefix)
        .await
        .expect("create test schema");
    let db = Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(8)
        .connect()
        .await
        .expect("connect to test server");
    TestDb { db, schema }
}

/// Runs `f` and returns how many statements it ran on `db`.
pub async fn count_queries<F, T>(db: &Db, f: F) -> (T, u64)
where
    F: std::future::Future<Output = T>,
{
    let before = db.query_count();
    let out = f.await;
    (out, db.query_count() - before)
}
