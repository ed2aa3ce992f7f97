//! Shared by the integration tests: an isolated database per test, and models that
//! read like user code.
#![allow(dead_code)]

pub mod shop;
pub mod small_shop;

use std::ops::Deref;

use matrx_orm::{Db, StatementMode};
use matrx_orm_testkit::{PgBouncer, TestSchema};

/// With `MATRX_TEST_PGBOUNCER=1`, every [`test_db`] goes through a PgBouncer of its own
/// in transaction pooling mode (2 server connections), in `StatementMode::Unnamed`:
/// the suites run unchanged behind a transaction pooler.
pub const PGBOUNCER_VAR: &str = "MATRX_TEST_PGBOUNCER";

/// A `Db` whose `search_path` is a schema of its own, dropped with the value.
pub struct TestDb {
    pub db: Db,
    pub schema: TestSchema,
    /// The PgBouncer the pool goes through, with [`PGBOUNCER_VAR`].
    pub bouncer: Option<PgBouncer>,
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
    if std::env::var(PGBOUNCER_VAR).is_ok_and(|v| !v.is_empty() && v != "0") {
        let bouncer = PgBouncer::builder(schema.url())
            .search_path(schema.name())
            .start()
            .await
            .expect("start pgbouncer");
        let db = Db::builder(bouncer.url())
            .statement_mode(StatementMode::Unnamed)
            .pool_size(8)
            .connect()
            .await
            .expect("connect through pgbouncer");
        return TestDb {
            db,
            schema,
            bouncer: Some(bouncer),
        };
    }
    let db = Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(8)
        .connect()
        .await
        .expect("connect to test server");
    TestDb {
        db,
        schema,
        bouncer: None,
    }
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
