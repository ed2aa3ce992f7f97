//! Where the shared cache keeps its rows in Redis (feature `redis`), and connecting
//! it; the `DbBuilder` options that set them are `db/redis.rs`.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::base::error::{Error, Result};
use crate::cache::redis::RedisStore;
use crate::cache::shared::SharedCache;

/// Where the shared cache keeps its rows in Redis.
#[derive(Debug, Clone)]
pub(crate) struct RedisOptions {
    pub(crate) url: String,
    pub(crate) namespace: Option<String>,
}

impl RedisOptions {
    /// Connects the cache to Redis; the default namespace is read from the server
    /// through `pool`.
    pub(crate) async fn attach(
        &self,
        cache: SharedCache,
        pool: &Pool,
        timeout: Duration,
    ) -> Result<SharedCache> {
        if self.url.is_empty() {
            return Err(Error::InvalidInput(
                "redis_namespace was set without redis_cache".to_owned(),
            ));
        }
        let namespace = match &self.namespace {
            Some(namespace) => namespace.clone(),
            None => {
                let client = pool.get().await.map_err(Error::from)?;
                let row = client
                    .query_one(
                        "SELECT current_database()::text, coalesce(current_schema()::text, '')",
                        &[],
                    )
                    .await?;
                let (database, schema): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                format!("matrx_orm:{database}:{schema}")
            }
        };
        let store = RedisStore::connect(&self.url, namespace, timeout).await?;
        Ok(cache.with_remote(store))
    }
}
