//! Layer 4, what loads and writes run on: the [`Executor`] trait (implemented by
//! [`Db`](crate::Db), [`Session`](crate::Session) and
//! [`Transaction`](crate::Transaction)), the [`Scope`] an executor reports to (counters,
//! strict mode, caches, request-scoped batches), and the batching those share.
//!
//! Everything above — the relation engine, queries, writes — is written against these
//! traits, never against the concrete executors.

pub(crate) mod batching;
mod scope;

use std::future::Future;

use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::base::error::Result;

pub use crate::statement::counter::QueryCounter;
pub use scope::Scope;

/// Something that runs statements: a [`Db`](crate::Db) (a pooled connection per
/// statement), a [`Session`](crate::Session) (its statements running at the same time
/// share one pooled connection), or a [`Transaction`](crate::Transaction) (its one
/// connection). Concurrent statements on one connection are pipelined on it.
///
/// The methods are the low-level escape hatch; models and query builders call them.
///
/// ```no_run
/// use matrx_orm::Executor;
///
/// async fn table_count<E: Executor>(ex: &E) -> matrx_orm::Result<i64> {
///     let rows = ex
///         .query("SELECT count(*) FROM pg_tables WHERE schemaname = $1", &[&"public"])
///         .await?;
///     Ok(rows[0].get(0))
/// }
/// ```
pub trait Executor: Send + Sync {
    /// What [`atomic`](Self::atomic) opens: a transaction, or a savepoint inside one.
    #[doc(hidden)]
    type Atomic<'a>: Atomic
    where
        Self: 'a;

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

    /// Runs a statement that only reads and returns its rows: the loads, queries,
    /// counts and pages of the ORM. An executor with read replicas may send it to one
    /// (a `Db` outside a transaction, or a session that has not written); the others
    /// run it as [`query`](Self::query).
    fn query_read(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>>> + Send {
        self.query(sql, params)
    }

    /// The counters and flags this executor reports to.
    #[doc(hidden)]
    fn scope(&self) -> &Scope;

    /// A transaction for a multi-statement write: a new transaction on a `Db` or
    /// session, a savepoint inside a transaction.
    #[doc(hidden)]
    fn atomic(&self) -> impl Future<Output = Result<Self::Atomic<'_>>> + Send;

    /// What one load (a query with its relation tree) runs on so that all its
    /// statements share one connection, and sibling edges sent together are pipelined
    /// on it: for `Db::one_connection`, an executor that takes one connection (or one
    /// replica's) when the load's first statement runs and returns it when dropped.
    /// `None` (the default) runs the load on this executor: a session or a transaction
    /// (whose concurrent statements share one connection already), or a `Db` (a pooled connection per statement, so
    /// sibling edges run on several server processes at once).
    #[doc(hidden)]
    fn for_load(&self) -> Option<Box<dyn DynExecutor + '_>> {
        None
    }
}

/// A transaction opened by [`Executor::atomic`] for a multi-statement write: an
/// executor that is committed at the end (and rolled back if dropped before).
#[doc(hidden)]
pub trait Atomic: Executor + Sized {
    /// Runs several parameterless statements separated by `;`.
    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<()>> + Send;

    /// Commits (or releases the savepoint).
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// The rows of one statement, read as they arrive: what
/// [`StreamExecutor::query_stream`] returns.
pub type RowStream<'a> = futures_util::stream::BoxStream<'a, Result<Row>>;

/// The rows a stream asks for at a time where it fetches in batches (a cursor inside a
/// transaction), unless told otherwise.
pub const DEFAULT_STREAM_BATCH: usize = 1000;

/// An [`Executor`] that can stream a statement's rows as they arrive, holding a
/// bounded number of them: [`Db`](crate::Db) and [`Session`](crate::Session) (a pooled
/// connection held for the stream's life) and [`Transaction`](crate::Transaction) (a
/// cursor on its connection, fetched in batches). Used by
/// [`Select::stream`](crate::Select::stream); the stream counts as one statement.
///
/// ```no_run
/// use futures_util::TryStreamExt;
/// use matrx_orm::executor::StreamExecutor;
///
/// async fn names<E: StreamExecutor>(ex: &E) -> matrx_orm::Result<Vec<String>> {
///     let rows = ex.query_stream("SELECT tablename::text FROM pg_tables", &[], 500).await?;
///     rows.map_ok(|row| row.get::<_, String>(0)).try_collect().await
/// }
/// ```
pub trait StreamExecutor: Executor {
    /// Sends one statement and returns its rows as they arrive. `batch` is how many
    /// rows to fetch at a time where rows are fetched in batches (a transaction's
    /// cursor); a pooled connection streams them continuously.
    ///
    /// Dropping the stream before its end is safe: a pooled connection is closed
    /// rather than returned with a result in flight (kept if every row had already
    /// arrived); a transaction's cursor stays open, unread, until the transaction ends.
    fn query_stream<'a>(
        &'a self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        batch: usize,
    ) -> impl Future<Output = Result<RowStream<'a>>> + Send;
}

/// An object-safe view of an [`Executor`], used by type-erased relation trees.
#[doc(hidden)]
pub trait DynExecutor: Send + Sync {
    /// [`Executor::query_read`], boxed.
    fn query_read_dyn<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Row>>>;

    /// [`Executor::scope`].
    fn scope_dyn(&self) -> &Scope;

    /// [`Executor::for_load`].
    fn for_load_dyn(&self) -> Option<Box<dyn DynExecutor + '_>>;
}

impl<E: Executor> DynExecutor for E {
    fn query_read_dyn<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(self.query_read(sql, params))
    }

    fn scope_dyn(&self) -> &Scope {
        self.scope()
    }

    fn for_load_dyn(&self) -> Option<Box<dyn DynExecutor + '_>> {
        self.for_load()
    }
}
