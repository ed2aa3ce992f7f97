//! The shared cache's rows in Redis, for a fleet of processes sharing one warm cache.
//!
//! Per cached table, under the namespace `ns` (the table name prefixed by its length,
//! so no table name can be mistaken for another's keys):
//!
//! ```text
//! <ns>:<len>:<table>:g          generation: changes with every eviction
//! <ns>:<len>:<table>:e          epoch: changes when the whole table is evicted
//! <ns>:<len>:<table>:r:<key>    one row (its key: each column's canonical binary
//!                               form in hex, joined by ','), tagged with the epoch
//!                               it was stored in; the policy's time to live
//! ```
//!
//! Three scripts keep the rules of the in-process cache across processes, each one
//! atomic on the Redis server:
//!
//! - **lookup** returns the table's generation and the rows asked for whose tag is
//!   the current epoch (a row of an older epoch was evicted with its whole table);
//! - **store** stores rows only if the generation is still the one the reader's
//!   lookup returned before it sent its statement: a write evicted in between, and
//!   its rows may predate it (the cross-process twin of the in-process generation);
//! - **evict** moves the generation on (and the epoch, for a whole table) and deletes
//!   the rows named.
//!
//! Generations and epochs are the Redis server's clock in microseconds, moved on by
//! at least one: a counter that Redis dropped (memory pressure) comes back as a newer
//! value, never as one a reader could still hold.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::base::error::{Error, Result};
use crate::cache::stored::TypeRegistry;

const LOOKUP: &str = r"
local function now()
  local t = redis.call('TIME')
  return string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
local g = redis.call('GET', KEYS[1])
if not g then g = now(); redis.call('SET', KEYS[1], g) end
local e = redis.call('GET', KEYS[2])
if not e then e = now(); redis.call('SET', KEYS[2], e) end
local tag = e .. '|'
local out = {g}
for i = 3, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and string.sub(v, 1, #tag) == tag then
    out[#out + 1] = string.sub(v, #tag + 1)
  else
    out[#out + 1] = false
  end
end
return out
";

const STORE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local e = redis.call('GET', KEYS[2])
if not e then return 0 end
for i = 3, #KEYS do
  local v = e .. '|' .. ARGV[i]
  if ARGV[2] == '0' then
    redis.call('SET', KEYS[i], v)
  else
    redis.call('SET', KEYS[i], v, 'PX', ARGV[2])
  end
end
return 1
";

const EVICT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function bump(k)
  local cur = tonumber(redis.call('GET', k) or '0') or 0
  redis.call('SET', k, string.format('%.0f', math.max(now, cur + 1)))
end
bump(KEYS[1])
if ARGV[1] == '1' then bump(KEYS[2]) end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
";

/// The Redis side of a shared cache: a reconnecting connection, the namespace, the
/// three scripts.
pub(crate) struct RedisStore {
    connection: ConnectionManager,
    namespace: String,
    lookup: Script,
    store: Script,
    evict: Script,
    /// The types of stored columns this process has seen (see `cache/stored.rs`).
    pub(crate) types: TypeRegistry,
    /// Set when an eviction could not reach Redis, or the process could not hear
    /// other processes' writes: every cached table is evicted in Redis before this
    /// process reads or stores there again.
    flush_pending: AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The rows a lookup found, and the generation to store under.
pub(crate) struct RemoteLookup {
    pub(crate) generation: String,
    pub(crate) rows: Vec<Option<Vec<u8>>>,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://` for TLS when the
    /// `redis` crate is built with it) within `timeout`.
    pub(crate) async fn connect(url: &str, namespace: String, timeout: Duration) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::InvalidInput(format!("invalid Redis URL: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1);
        let connection =
            tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config))
                .await
                .map_err(|_| Error::Cache(format!("connecting to Redis at {url} timed out")))?
                .map_err(|e| Error::Cache(format!("connecting to Redis: {e}")))?;
        Ok(RedisStore {
            connection,
            namespace,
            lookup: Script::new(LOOKUP),
            store: Script::new(STORE),
            evict: Script::new(EVICT),
            types: TypeRegistry::default(),
            flush_pending: AtomicBool::new(false),
        })
    }

    /// The namespace keys live under.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    fn table_prefix(&self, table: &str) -> String {
        format!("{}:{}:{}", self.namespace, table.len(), table)
    }

    /// The Redis key of a row: each key column's binary form in hex, joined by ','.
    pub(crate) fn row_key(prefix: &str, parts: &[Vec<u8>]) -> String {
        let mut key = format!("{prefix}:r:");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            for byte in part {
                let _ = write!(key, "{byte:02x}");
            }
        }
        key
    }

    /// Evicts every table of `tables` if an earlier eviction failed, before anything
    /// else is read or stored.
    pub(crate) async fn settle(&self, tables: &[&'static str]) -> Result<()> {
        if self.flush_pending.load(Ordering::SeqCst) {
            for table in tables {
                self.run_evict(table, None).await?;
            }
            self.flush_pending.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The generation of `table` and the rows of `keys` (each a key's binary parts).
    pub(crate) async fn lookup(
        &self,
        all_tables: &[&'static str],
        table: &str,
        keys: &[Vec<Vec<u8>>],
    ) -> Result<RemoteLookup> {
        self.settle(all_tables).await?;
        let prefix = self.table_prefix(table);
        let mut invocation = self.lookup.prepare_invoke();
        invocation
            .key(format!("{prefix}:g"))
            .key(format!("{prefix}:e"));
        for parts in keys {
            invocation.key(Self::row_key(&prefix, parts));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<Option<Vec<u8>>> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| Error::Cache(format!("reading the Redis cache: {e}")))?;
        let mut reply = reply.into_iter();
        let generation = reply
            .next()
            .flatten()
            .and_then(|g| String::from_utf8(g).ok())
            .ok_or_else(|| Error::Cache("the Redis lookup returned no generation".to_owned()))?;
        Ok(RemoteLookup {
            generation,
            rows: reply.collect(),
        })
    }

    /// Stores `rows` (key parts, encoded row) if `table`'s generation is still
    /// `generation`; whether they were stored.
    pub(crate) async fn store(
        &self,
        all_tables: &[&'static str],
        table: &str,
        generation: &str,
        ttl: Option<Duration>,
        rows: Vec<(Vec<Vec<u8>>, Vec<u8>)>,
    ) -> Result<bool> {
        if rows.is_empty() {
            return Ok(true);
        }
        self.settle(all_tables).await?;
        let prefix = self.table_prefix(table);
        let ttl_ms = ttl.map_or(0, |ttl| {
            ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64
        });
        let mut invocation = self.store.prepare_invoke();
        invocation
            .key(format!("{prefix}:g"))
            .key(format!("{prefix}:e"))
            .arg(generation)
            .arg(ttl_ms.to_string());
        for (parts, row) in rows {
            invocation.key(Self::row_key(&prefix, &parts)).arg(row);
        }
        let mut connection = self.connection.clone();
        let stored: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| Error::Cache(format!("writing the Redis cache: {e}")))?;
        Ok(stored == 1)
    }

    /// Evicts the rows of `keys` of `table`, or the whole table for `None`. When Redis
    /// cannot be reached, every table is evicted before this process uses Redis again.
    pub(crate) async fn evict(&self, table: &str, keys: Option<&[Vec<Vec<u8>>]>) {
        if let Err(err) = self.run_evict(table, keys).await {
            self.flush_pending.store(true, Ordering::SeqCst);
            tracing::warn!(table, error = %err, "matrx_orm: evicting from the Redis cache failed");
        }
    }

    /// Marks every table for eviction before this process uses Redis again: it could
    /// not hear other processes' writes for a while.
    pub(crate) fn flush_before_use(&self) {
        self.flush_pending.store(true, Ordering::SeqCst);
    }

    async fn run_evict(&self, table: &str, keys: Option<&[Vec<Vec<u8>>]>) -> Result<()> {
        let prefix = self.table_prefix(table);
        let mut invocation = self.evict.prepare_invoke();
        invocation
            .key(format!("{prefix}:g"))
            .key(format!("{prefix}:e"))
            .arg(if keys.is_none() { "1" } else { "0" });
        for parts in keys.unwrap_or_default() {
            invocation.key(Self::row_key(&prefix, parts));
        }
        let mut connection = self.connection.clone();
        let _: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| Error::Cache(format!("evicting from the Redis cache: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a `redis-server` of the test's own; `None` (the test skips, saying
    /// why) when none can be started here.
    async fn store() -> Option<(matrx_orm_testkit::RedisServer, RedisStore)> {
        let server = match matrx_orm_testkit::RedisServer::start().await {
            Ok(server) => server,
            Err(err) => {
                eprintln!("SKIPPED: no redis-server can be started here: {err}");
                return None;
            }
        };
        let store = RedisStore::connect(&server.url(), "t".to_owned(), Duration::from_secs(5))
            .await
            .expect("connect to the test's redis-server");
        Some((server, store))
    }

    fn key(n: u8) -> Vec<Vec<u8>> {
        vec![vec![0, n]]
    }

    const TABLES: &[&str] = &["books", "authors"];

    /// Stores one row of `table` under `generation`; whether it was stored.
    async fn put(store: &RedisStore, table: &str, generation: &str, n: u8, row: &[u8]) -> bool {
        let rows = vec![(key(n), row.to_vec())];
        let ttl = Some(Duration::from_secs(60));
        store
            .store(TABLES, table, generation, ttl, rows)
            .await
            .unwrap()
    }

    async fn found(store: &RedisStore, table: &str, keys: &[Vec<Vec<u8>>]) -> Vec<Option<Vec<u8>>> {
        store.lookup(TABLES, table, keys).await.unwrap().rows
    }

    #[tokio::test]
    async fn a_read_that_started_before_an_eviction_stores_nothing() {
        let Some((_server, store)) = store().await else {
            return;
        };
        let before = store.lookup(TABLES, "books", &[key(1)]).await.unwrap();
        assert_eq!(before.rows, [None]);
        let stored = put(&store, "books", &before.generation, 1, b"v1").await;
        assert!(stored, "nothing happened in between: stored");
        assert_eq!(
            found(&store, "books", &[key(1)]).await,
            [Some(b"v1".to_vec())]
        );

        // A reader looks up, a writer evicts (another key of the table), the reader
        // stores what it read before the write: refused.
        let reader = store.lookup(TABLES, "books", &[key(2)]).await.unwrap();
        store.evict("books", Some(&[key(3)])).await;
        let stored = put(&store, "books", &reader.generation, 2, b"old").await;
        assert!(!stored, "an eviction happened in between: refused");
        assert_eq!(found(&store, "books", &[key(2)]).await, [None]);
        assert_eq!(
            found(&store, "books", &[key(1)]).await,
            [Some(b"v1".to_vec())],
            "another key's eviction keeps this row"
        );

        // Evicting a key drops its row; other tables are untouched.
        let other = store.lookup(TABLES, "authors", &[key(1)]).await.unwrap();
        assert!(put(&store, "authors", &other.generation, 1, b"a").await);
        store.evict("books", Some(&[key(1)])).await;
        assert_eq!(found(&store, "books", &[key(1)]).await, [None]);
        assert_eq!(
            found(&store, "authors", &[key(1)]).await,
            [Some(b"a".to_vec())]
        );
    }

    #[tokio::test]
    async fn evicting_a_table_drops_every_row_stored_before() {
        let Some((_server, store)) = store().await else {
            return;
        };
        let keys = [key(1), key(2), key(3)];
        let lookup = store.lookup(TABLES, "books", &keys).await.unwrap();
        let rows = keys.iter().map(|k| (k.clone(), vec![k[0][1]])).collect();
        assert!(store
            .store(TABLES, "books", &lookup.generation, None, rows)
            .await
            .unwrap());
        assert!(found(&store, "books", &keys)
            .await
            .iter()
            .all(Option::is_some));
        store.evict("books", None).await;
        assert_eq!(found(&store, "books", &keys).await, [None, None, None]);
        // Rows stored after it are served.
        let lookup = store.lookup(TABLES, "books", &keys[..1]).await.unwrap();
        assert!(put(&store, "books", &lookup.generation, 1, b"new").await);
        assert_eq!(
            found(&store, "books", &keys[..1]).await,
            [Some(b"new".to_vec())]
        );
    }

    #[tokio::test]
    async fn a_generation_redis_dropped_comes_back_newer() {
        let Some((_server, store)) = store().await else {
            return;
        };
        let reader = store.lookup(TABLES, "books", &[key(1)]).await.unwrap();
        // Memory pressure (or FLUSHALL) drops the table's counters.
        let mut connection = store.connection.clone();
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut connection)
            .await
            .unwrap();
        let stored = put(&store, "books", &reader.generation, 1, b"old").await;
        assert!(!stored, "no generation to match: refused");
        let again = store.lookup(TABLES, "books", &[key(1)]).await.unwrap();
        let (old, new): (u64, u64) = (
            reader.generation.parse().unwrap(),
            again.generation.parse().unwrap(),
        );
        assert!(
            new > old,
            "the counter restarts from the clock: {old} -> {new}"
        );
    }

    #[tokio::test]
    async fn a_pending_flush_runs_before_the_next_use() {
        let Some((_server, store)) = store().await else {
            return;
        };
        for table in TABLES {
            let lookup = store.lookup(TABLES, table, &[key(1)]).await.unwrap();
            assert!(put(&store, table, &lookup.generation, 1, b"r").await);
        }
        store.flush_before_use();
        assert_eq!(found(&store, "books", &[key(1)]).await, [None]);
        assert_eq!(
            found(&store, "authors", &[key(1)]).await,
            [None],
            "every table"
        );
    }

    #[test]
    fn row_keys_are_unambiguous() {
        let prefix = "ns:5:books";
        assert_eq!(
            RedisStore::row_key(prefix, &[vec![0, 0x2a], b"ab".to_vec()]),
            "ns:5:books:r:002a,6162"
        );
    }
}
