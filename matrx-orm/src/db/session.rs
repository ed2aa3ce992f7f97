//! [`Session`]: one request's scope over a [`Db`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::base::error::{Error, Result};
use crate::db::held::{HeldConn, Route};
use crate::db::pool::Db;
use crate::db::transaction::Transaction;
use crate::executor::batching::{Loaders, DEFAULT_MAX_BATCH};
use crate::executor::{Executor, RowStream, Scope, StreamExecutor};
use crate::statement::counter::QueryCounter;

/// One request's scope over a shared [`Db`]: its own query counter and strict-mode
/// switch, and request-scoped batching: lazy loads (`fetch`, `fetch_fk`, ...) and gets
/// by primary key that are pending at the same time — futures joined with `join_all`,
/// resolvers of one request — are sent as one query per relation edge (or per model).
/// Cheap to create; drop it at the end of the request.
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "customers")]
/// # pub struct Customer { #[orm(primary_key)] pub id: i64 }
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64,
/// #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer> }
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let session = db.session();
/// // Plain per-object code: 25 gets and 25 customer loads...
/// let customers = futures_util::future::try_join_all((1..=25).map(|id| {
///     let session = &session;
///     async move {
///         let order = Order::get(session, &id).await?;
///         order.fetch(session, Order::CUSTOMER).await
///     }
/// }))
/// .await?;
/// // ...cost two queries: one for the orders, one for their customers.
/// assert_eq!(session.query_count(), 2);
/// # Ok(()) }
/// ```
///
/// # Spawned tasks
///
/// Futures joined inside one task (`join_all`, `try_join_all`, `join!`, the resolvers
/// of one GraphQL request) meet in one batch per edge exactly. Tasks spawned onto a
/// multi-thread runtime that share a session (or its clones) usually meet too, but a
/// wave can close before a task the runtime has not scheduled yet asks: a batch
/// closes without a timer, and a task not yet running cannot be waited for. Measured
/// (`dataloader::spawned_tasks_sharing_a_session_are_batched`: 60 requests, each a
/// handler spawning its 25 per-order tasks on 4 worker threads): 3 to 11 statements
/// per request, median 5, 25 of 60 at the exact 3 of joined futures; never one per
/// call (75). Where exact counts matter, join the per-object futures inside one task.
///
/// # Its statements share a connection
///
/// Statements of a session that run at the same time — the batches of one wave, the
/// sibling edges of a prefetch, spawned tasks sharing the session (clones share it
/// too) — share one pooled connection and are pipelined on it, as a hand-written
/// request on one connection sends them. The connection is taken when a statement
/// finds none and goes back to the pool when the session's last running statement
/// ends: an idle session holds no connection, so the pool is sized as without
/// sessions (one connection per request that is running statements, plus one per
/// open transaction or stream). Keeping one connection for the session's whole life
/// was measured and dropped: no faster on the benchmark's request workloads, and a
/// live idle session would hold a connection others wait for (docs/BENCHMARKS.md).
///
/// With [read replicas](crate::DbBuilder::replica), a session reads from a replica
/// until it first writes (any statement that is not an ORM read, or a transaction),
/// and from the primary after that, so it always reads its own writes. Reads running
/// together share one replica connection (the first usable replica when they take
/// it); a read whose replica connection breaks runs again on the primary.
///
/// ```no_run
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let session = db.session();
/// session.execute_sql("SELECT 1", &[]).await?;
/// assert_eq!(session.query_count(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    db: Db,
    scope: Scope,
    /// Whether this session (or a clone of it) has written: its reads then go to
    /// the primary.
    wrote: Arc<AtomicBool>,
    /// The connection its running statements share (and its clones'), taken when a
    /// statement finds none and returned to the pool when the last running one ends.
    held: Arc<HeldConn>,
}

impl Db {
    /// A new request scope. See [`Session`].
    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }
}

impl Session {
    fn new(db: Db) -> Session {
        let mut scope = db.scope().clone();
        scope.counters.session = Some(Arc::new(QueryCounter::default()));
        scope.loaders = Some(Arc::new(Loaders::new(DEFAULT_MAX_BATCH)));
        scope.cache = Some(Arc::default());
        Session {
            db,
            scope,
            wrote: Arc::default(),
            held: Arc::new(HeldConn::released_when_idle()),
        }
    }

    /// The pool this session runs on.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Statements run through this session so far.
    pub fn query_count(&self) -> u64 {
        self.scope.counters.session.as_ref().map_or(0, |c| c.get())
    }

    /// Turns strict mode on or off: in strict mode every lazy relation load fails with
    /// [`Error::StrictLoad`], to prove a code path has no hidden per-instance queries.
    pub fn set_strict(&mut self, strict: bool) {
        self.scope.strict = strict;
    }

    /// Sets the largest number of keys one batched load may carry (default 10,000);
    /// a fuller batch closes and later loads start a new one. `1` turns batching off.
    pub fn set_max_batch(&mut self, max: usize) {
        self.scope.loaders = Some(Arc::new(Loaders::new(max)));
    }

    /// Forgets every instance and relation entry this session holds (after writes
    /// made outside the ORM, for example).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.scope.cache {
            cache.clear();
        }
    }

    /// Begins a transaction that reports to this session.
    pub async fn begin(&self) -> Result<Transaction<'static>> {
        self.wrote();
        self.db.begin_in(&self.scope).await
    }

    /// Where this session's reads may run.
    fn read_route(&self) -> Route {
        if self.reads_anywhere() {
            Route::Read
        } else {
            Route::Primary
        }
    }

    /// Notes that this session wrote (or may have): from now on it reads from the
    /// primary.
    fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// Whether reads may go to a replica.
    fn reads_anywhere(&self) -> bool {
        !self.wrote.load(Ordering::Relaxed)
    }

    /// Runs `f` in a transaction; see [`Db::transaction`].
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'s, 't> AsyncFnOnce(&'s mut Transaction<'t>) -> Result<T, E>,
        E: From<Error>,
    {
        let tx = self.begin().await?;
        tx.run(f).await
    }

    /// Runs one statement and returns its rows.
    pub async fn query_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.query(sql, params).await
    }

    /// Runs one statement and returns the number of rows it affected.
    pub async fn execute_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.execute(sql, params).await
    }
}

impl Executor for Session {
    type Atomic<'a> = Transaction<'static>;

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.wrote();
        self.held
            .query(&self.db, &self.scope, Route::Primary, sql, params)
            .await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.wrote();
        self.held.execute(&self.db, &self.scope, sql, params).await
    }

    async fn query_read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.held
            .query(&self.db, &self.scope, self.read_route(), sql, params)
            .await
    }

    async fn atomic(&self) -> Result<Transaction<'static>> {
        self.begin().await
    }

    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl StreamExecutor for Session {
    async fn query_stream<'a>(
        &'a self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        _batch: usize,
    ) -> Result<RowStream<'a>> {
        if self.reads_anywhere() {
            self.db.pooled_read_stream(&self.scope, sql, params).await
        } else {
            self.db.pooled_stream(&self.scope, sql, params).await
        }
    }
}
