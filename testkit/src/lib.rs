//! Finds or starts a PostgreSQL server for matrx-orm's tests, examples and
//! benchmark, and gives each test an isolated schema.
//!
//! [`server`] resolves a server once per process, trying in order:
//!
//! 1. the `DATABASE_URL` environment variable, if set (an error if it does not answer);
//! 2. the local default `postgres://root@localhost:5432/test`, if it answers within 2 s;
//! 3. a throwaway cluster started with the machine's own `initdb` and `pg_ctl`
//!    (found on `PATH` or under `/usr/lib/postgresql/*/bin`), listening on a free
//!    port of 127.0.0.1 and removed when the process ends.
//!
//! Setting `MATRX_TEST_THROWAWAY=1` skips the first two steps.
//!
//! The async functions need a Tokio runtime with IO and time enabled, as
//! `#[tokio::test]` provides; dropping a [`TestSchema`] works with or without one.
//!
//! [`TestSchema`] creates a uniquely named schema on that server and drops it
//! again, either explicitly with [`TestSchema::drop_now`] or when it goes out of
//! scope.
//!
//! ```no_run
//! use matrx_orm_testkit::{connect, quote_ident, TestSchema};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let schema = TestSchema::create("users_roundtrip").await?;
//! let client = connect(schema.url()).await?;
//! client
//!     .batch_execute(&format!("SET search_path TO {}", quote_ident(schema.name())))
//!     .await?;
//! client.batch_execute("CREATE TABLE users (id int PRIMARY KEY)").await?;
//! schema.drop_now().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod cluster;
mod db;
mod error;
mod pgbouncer;
mod redis;
mod replica;
mod schema;
mod server;
mod tls;

pub use db::connect;
pub use error::TestkitError;
pub use pgbouncer::{PgBouncer, PgBouncerBuilder};
pub use redis::RedisServer;
pub use replica::StreamingPair;
pub use schema::{quote_ident, TestSchema};
pub use server::{server, shutdown, Server, ServerSource};
pub use tls::{TlsCluster, TlsClusterBuilder};

/// The sub-second part of the current time, used to make names unique across processes.
pub(crate) fn clock_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default()
}
