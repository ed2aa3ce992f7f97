//! Where statements run: the [`Executor`] trait and the one function that sends a
//! statement, counts it and traces it.
//!
//! [`Db`](crate::Db), [`Session`](crate::Session) and
//! [`Transaction`] are executors, so every query and write runs
//! the same way on each of them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deadpool_postgres::ClientWrapper;
use postgres_types::ToSql;
use tokio_postgres::Row;
use tracing::Instrument;

use crate::cache::session::SessionCache;
use crate::cache::shared::SharedCache;
use crate::error::Result;
use crate::relation::loader::Loaders;
use crate::transaction::Transaction;

/// Something that runs statements: a [`Db`](crate::Db) (a pooled connection per
/// statement), a [`Session`](crate::Session), or a [`Transaction`]
/// (its one connection; concurrent statements are pipelined on it).
///
/// The methods are the low-level escape hatch; models and query builders call them.
pub trait Executor: Send + Sync {
    /// Runs a statement and returns its rows. The statement is prepared once per
    /// connection and cached.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// Runs a statement and returns the number of rows it affected.
    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The counters and flags this executor reports to.
    #[doc(hidden)]
    fn scope(&self) -> &Scope;

    /// A transaction for a multi-statement write: a new transaction on a `Db` or
    /// session, a savepoint inside a transaction.
    #[doc(hidden)]
    fn atomic(&self) -> impl Future<Output = Result<Transaction<'_>>> + Send;
}

/// A query counter, shared by clones of the `Db` or session that owns it.
#[derive(Debug, Default)]
pub struct QueryCounter(AtomicU64);

impl QueryCounter {
    /// Statements run so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where an executor reports: the `Db`'s counter, a session's counter, strict mode.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Scope {
    pub(crate) db_counter: Arc<QueryCounter>,
    pub(crate) session_counter: Option<Arc<QueryCounter>>,
    pub(crate) strict: bool,
    /// The request-scoped batches of a session (none outside sessions).
    pub(crate) loaders: Option<Arc<Loaders>>,
    /// The identity map and relation entries of a session or of a transaction.
    pub(crate) cache: Option<Arc<SessionCache>>,
    /// For a transaction begun from a session: the session's cache (writes evict there too).
    pub(crate) outer_cache: Option<Arc<SessionCache>>,
    /// The `Db`'s process-wide row cache, when some model has a policy.
    pub(crate) shared: Option<Arc<SharedCache>>,
    /// Whether statements run inside a transaction (it neither reads nor fills the
    /// shared cache).
    pub(crate) in_transaction: bool,
    /// In a transaction: evictions to repeat once it commits (a read outside it may
    /// have cached the old row again in between).
    pub(crate) after_commit: Option<Arc<Mutex<Vec<Eviction>>>>,
}

/// An eviction deferred to a transaction's commit.
pub(crate) struct Eviction(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Eviction")
    }
}

impl Scope {
    fn count(&self) {
        self.db_counter.bump();
        if let Some(c) = &self.session_counter {
            c.bump();
        }
    }

    /// Whether lazy loads are refused.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// The same scope for a transaction begun from it: its batches are its own, so a
    /// batch never mixes keys read inside and outside the transaction.
    pub(crate) fn for_transaction(&self) -> Scope {
        let mut scope = self.clone();
        if let Some(loaders) = &self.loaders {
            scope.loaders = Some(Arc::new(Loaders::new(loaders.max_batch())));
        }
        if let Some(cache) = &self.cache {
            scope.outer_cache = Some(cache.clone());
            scope.cache = Some(Arc::default());
        }
        scope.in_transaction = true;
        scope.after_commit = Some(Arc::default());
        scope
    }

    /// Runs the evictions deferred to this transaction's commit.
    pub(crate) fn committed(&self) {
        let Some(list) = &self.after_commit else {
            return;
        };
        let deferred = match list.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(_) => return,
        };
        for Eviction(eviction) in deferred {
            eviction();
        }
    }

    fn defer(&self, eviction: Eviction) {
        if let Some(Ok(mut list)) = self.after_commit.as_ref().map(|l| l.lock()) {
            list.push(eviction);
        }
    }

    /// Evicts rows of `M` (these keys, or all) and the relation entries that lead from
    /// or to `M`, from every cache this scope can see. Called by every write path.
    pub(crate) fn evict<M: crate::Model>(&self, keys: Option<&[M::Key]>) {
        for cache in [&self.cache, &self.outer_cache].into_iter().flatten() {
            cache.evict::<M>(keys);
        }
        if let Some(shared) = &self.shared {
            shared.evict::<M>(keys);
        }
        if self.after_commit.is_some() {
            let (outer, shared) = (self.outer_cache.clone(), self.shared.clone());
            let keys: Option<Vec<M::Key>> = keys.map(<[M::Key]>::to_vec);
            self.defer(Eviction(Box::new(move || {
                if let Some(cache) = outer {
                    cache.evict::<M>(keys.as_deref());
                }
                if let Some(shared) = shared {
                    shared.evict::<M>(keys.as_deref());
                }
            })));
        }
    }

    /// A many-to-many link changed: empties the session caches (now and after commit).
    pub(crate) fn evict_links(&self) {
        for cache in [&self.cache, &self.outer_cache].into_iter().flatten() {
            cache.clear();
        }
        if let Some(outer) = self
            .outer_cache
            .clone()
            .filter(|_| self.after_commit.is_some())
        {
            self.defer(Eviction(Box::new(move || outer.clear())));
        }
    }
}

/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMS: usize = 65_535;

/// Refuses a statement with more parameters than the protocol can carry (the server
/// would reject it and the connection would be lost).
fn check_params(params: &[&(dyn ToSql + Sync)]) -> Result<()> {
    if params.len() > MAX_PARAMS {
        return Err(crate::Error::InvalidInput(format!(
            "a statement with {} parameters; PostgreSQL allows {MAX_PARAMS} \
             (pass many values as one array, e.g. Column::is_in)",
            params.len()
        )));
    }
    Ok(())
}

/// Closes a pooled connection whose statement failed with a connection error,
/// instead of returning it to the pool (it may look open and fail the next caller).
pub(crate) fn discard_if_broken<T>(conn: deadpool_postgres::Object, result: &Result<T>) {
    if matches!(result, Err(crate::Error::Connection(_))) {
        drop(deadpool_postgres::Object::take(conn));
    }
}

/// Runs one statement on one connection: prepare (cached), execute, count, trace.
pub(crate) async fn run_query(
    client: &ClientWrapper,
    scope: &Scope,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    check_params(params)?;
    let span = tracing::debug_span!("matrx_orm.query", sql, rows = tracing::field::Empty);
    async {
        let started = Instant::now();
        scope.count();
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, params).await?;
        tracing::Span::current().record("rows", rows.len());
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            rows = rows.len(),
            "query done"
        );
        Ok(rows)
    }
    .instrument(span)
    .await
}

/// Like [`run_query`], for statements whose rows are not needed.
pub(crate) async fn run_execute(
    client: &ClientWrapper,
    scope: &Scope,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    check_params(params)?;
    let span = tracing::debug_span!("matrx_orm.execute", sql, rows = tracing::field::Empty);
    async {
        let started = Instant::now();
        scope.count();
        let stmt = client.prepare_cached(sql).await?;
        let n = client.execute(&stmt, params).await?;
        tracing::Span::current().record("rows", n);
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            rows = n,
            "execute done"
        );
        Ok(n)
    }
    .instrument(span)
    .await
}

/// Runs unprepared, parameterless statements (transaction control, DDL).
pub(crate) async fn run_batch(client: &ClientWrapper, scope: &Scope, sql: &str) -> Result<()> {
    let span = tracing::debug_span!("matrx_orm.batch", sql);
    async {
        scope.count();
        client.batch_execute(sql).await?;
        Ok(())
    }
    .instrument(span)
    .await
}

/// An object-safe view of an [`Executor`], used by type-erased relation trees.
#[doc(hidden)]
pub trait DynExecutor: Send + Sync {
    /// [`Executor::query`], boxed.
    fn query_dyn<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Row>>>;

    /// [`Executor::scope`].
    fn scope_dyn(&self) -> &Scope;
}

impl<E: Executor> DynExecutor for E {
    fn query_dyn<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(self.query(sql, params))
    }

    fn scope_dyn(&self) -> &Scope {
        self.scope()
    }
}
