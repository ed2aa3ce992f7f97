//! The shared cache in Redis (feature `redis`), as `DbBuilder` options and a `Db`
//! method; the settings are `db/redis_options.rs`, the store `cache/redis.rs`.

use crate::db::pool::{Db, DbBuilder};
use crate::db::redis_options::RedisOptions;

impl DbBuilder {
    /// Keeps the shared cache's rows in Redis at `url` (`redis://host:port/db`)
    /// instead of this process's memory, so every process of a fleet reads one warm
    /// cache. The models cached and their policies are still set with
    /// [`cache`](Self::cache); the rules are those of the in-process cache (see
    /// [`crate::cache`]), kept across processes:
    ///
    /// - every write through the ORM evicts the rows it touched from Redis before it
    ///   returns (a transaction's writes again when it commits); a read that started
    ///   before a write anywhere in the fleet does not store its rows after it (a
    ///   generation per table, checked by Redis itself when the rows are stored);
    /// - with [`coherent_cache`](Self::coherent_cache), the writes other programs
    ///   announce (the opt-in triggers) are evicted by every listening process, and a
    ///   process whose listener (re)connects evicts every cached table once, before
    ///   it reads from Redis: it cannot know what was written while it was not
    ///   listening;
    /// - Redis that does not answer costs misses, never an error or a stale row: a
    ///   process whose eviction did not reach Redis evicts every cached table there
    ///   before it uses Redis again.
    ///
    /// Rows expire by the policy's time to live (Redis's own expiry; a
    /// [`cache_clock`](Self::cache_clock) does not apply) and are bounded by Redis's
    /// `maxmemory`, not by [`cache_capacity`](Self::cache_capacity); `len` in
    /// [`CacheStats`](crate::cache::CacheStats) stays 0. `connect` fails with
    /// [`Error::Cache`] if Redis does not answer at start.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "tags")]
    /// # pub struct Tag { #[orm(primary_key)] pub id: i64, pub name: String }
    /// # async fn demo() -> matrx_orm::Result<()> {
    /// use matrx_orm::cache::CachePolicy;
    /// let db = matrx_orm::Db::builder("postgres://root@localhost:5432/test")
    ///     .cache::<Tag>(CachePolicy::LongTerm)
    ///     .redis_cache("redis://127.0.0.1:6379/")
    ///     .coherent_cache(true)
    ///     .connect()
    ///     .await?;
    /// assert!(db.redis_namespace().is_some());
    /// # Ok(()) }
    /// ```
    pub fn redis_cache(mut self, url: impl Into<String>) -> Self {
        let namespace = self.redis.take().and_then(|r| r.namespace);
        self.redis = Some(RedisOptions {
            url: url.into(),
            namespace,
        });
        self
    }

    /// The prefix of every Redis key this `Db` writes (default:
    /// `matrx_orm:<database>:<schema>`, the database's name and the connection's
    /// `current_schema()`). Processes sharing a cache use the same namespace; give
    /// distinct ones to databases that share a Redis and a database name (two
    /// servers), or tables of one name reached through different schemas.
    pub fn redis_namespace(mut self, namespace: impl Into<String>) -> Self {
        let url = self.redis.take().map(|r| r.url).unwrap_or_default();
        self.redis = Some(RedisOptions {
            url,
            namespace: Some(namespace.into()),
        });
        self
    }
}

impl Db {
    /// The namespace of the shared cache's Redis keys, when it keeps them in Redis
    /// ([`DbBuilder::redis_cache`]).
    pub fn redis_namespace(&self) -> Option<&str> {
        self.shared_cache()?.remote_namespace()
    }
}
