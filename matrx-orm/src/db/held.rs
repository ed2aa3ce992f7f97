//! One connection shared by the statements that run at the same time: a
//! [`Session`](crate::Session)'s (taken when a statement finds none, returned to the
//! pool when its last running statement ends), and one load's on
//! [`Db::one_connection`] (kept from its first statement to the load's end). Statements
//! sent together are pipelined on it (tokio-postgres writes them back to back and
//! reads the answers in order) instead of each taking a pooled connection of its own.
//!
//! A read may go to a replica: the read that takes the connection picks one, and the
//! statements sharing it read there; a statement that must run on the primary
//! replaces a held replica connection by a primary one (a session that wrote reads
//! from the primary from then on). A connection that failed with a connection error
//! is never returned to the pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use deadpool_postgres::Object;
use futures_util::future::BoxFuture;
use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::base::error::{Error, Result};
use crate::db::pool::Db;
use crate::db::transaction::Transaction;
use crate::executor::{DynExecutor, Executor, Scope};
use crate::statement::run::{run_execute, run_query};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only on the primary (writes, and every statement of a session that wrote).
    Primary,
    /// On a usable replica if there is one, else on the primary.
    Read,
}

/// A connection taken from the pool when a statement finds none, shared by the
/// statements running at the same time.
#[derive(Debug, Default)]
pub(crate) struct HeldConn {
    slot: Mutex<Option<Held>>,
    /// Held while a connection is taken from the pool, so that statements starting
    /// together share the one taken.
    taking: tokio::sync::Mutex<()>,
    /// Whether the connection goes back to the pool as soon as no statement runs on
    /// it (a session's), rather than when this is dropped (a load's).
    release_when_idle: bool,
}

/// The held connection, shared by the statements running on it.
#[derive(Debug, Clone)]
struct Held {
    conn: Arc<Conn>,
    /// The replica it belongs to (`None`: the primary).
    replica: Option<usize>,
}

/// A pooled connection that is closed instead of returned if a statement found it
/// broken.
#[derive(Debug)]
struct Conn {
    object: Option<Object>,
    broken: AtomicBool,
}

impl Conn {
    fn new(object: Object) -> Arc<Conn> {
        Arc::new(Conn {
            object: Some(object),
            broken: AtomicBool::new(false),
        })
    }

    fn client(&self) -> Result<&Object> {
        self.object
            .as_ref()
            .ok_or_else(|| Error::Connection("the held connection was released".to_owned()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            if self.broken.load(Ordering::Relaxed) {
                drop(Object::take(object));
            }
        }
    }
}

/// One statement's use of the held connection; when it ends (or is cancelled), the
/// connection goes back to the pool if it is released when idle and no other
/// statement uses it.
struct Using<'h> {
    owner: &'h HeldConn,
    held: Held,
}

impl Drop for Using<'_> {
    fn drop(&mut self) {
        if !self.owner.release_when_idle {
            return;
        }
        let mut slot = self.owner.slot();
        // Statements clone the held connection under this lock: the slot and this
        // use are its only holders when the count is two.
        if slot
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(&h.conn, &self.held.conn))
            && Arc::strong_count(&self.held.conn) == 2
        {
            *slot = None;
        }
    }
}

impl HeldConn {
    /// A connection returned to the pool as soon as no statement runs on it.
    pub(crate) fn released_when_idle() -> HeldConn {
        HeldConn {
            release_when_idle: true,
            ..HeldConn::default()
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Held>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The held connection, if it suits `route`.
    fn current(&self, route: Route) -> Option<Held> {
        self.slot()
            .as_ref()
            .filter(|h| route == Route::Read || h.replica.is_none())
            .cloned()
    }

    /// The held connection if it suits `route`, else a new one (which replaces it).
    async fn acquire(&self, db: &Db, route: Route) -> Result<Using<'_>> {
        let held = match self.current(route) {
            Some(held) => held,
            None => {
                let _taking = self.taking.lock().await;
                match self.current(route) {
                    Some(held) => held,
                    None => {
                        let replica = match (route, db.replicas()) {
                            (Route::Read, Some(replicas)) => replicas.pick().await,
                            _ => None,
                        };
                        let held = match replica {
                            Some((i, object)) => Held {
                                conn: Conn::new(object),
                                replica: Some(i),
                            },
                            None => Held {
                                conn: Conn::new(db.conn().await?),
                                replica: None,
                            },
                        };
                        *self.slot() = Some(held.clone());
                        held
                    }
                }
            }
        };
        Ok(Using { owner: self, held })
    }

    /// After a statement on `held` failed with a connection error: the connection is
    /// closed once its last statement ends, and the next statement takes another.
    fn forget(&self, held: &Held) {
        held.conn.broken.store(true, Ordering::Relaxed);
        let mut slot = self.slot();
        if slot
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(&h.conn, &held.conn))
        {
            *slot = None;
        }
    }

    /// Runs a statement on the held connection (taking one first if needed). A read
    /// that fails on a replica with a connection error marks it down and runs again
    /// on the primary (it only reads).
    pub(crate) async fn query(
        &self,
        db: &Db,
        scope: &Scope,
        route: Route,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let using = self.acquire(db, route).await?;
        let result = run_query(using.held.conn.client()?, scope.via(), sql, params).await;
        let broken = matches!(result, Err(Error::Connection(_)));
        if broken {
            self.forget(&using.held);
        }
        let replica = using.held.replica;
        drop(using);
        match (replica, db.replicas()) {
            (Some(i), Some(replicas)) if broken => {
                replicas.mark_down(i);
                let using = self.acquire(db, Route::Primary).await?;
                let result = run_query(using.held.conn.client()?, scope.via(), sql, params).await;
                if matches!(result, Err(Error::Connection(_))) {
                    self.forget(&using.held);
                }
                result
            }
            (Some(_), Some(replicas)) => {
                replicas.answered();
                result
            }
            _ => result,
        }
    }

    /// Runs a statement whose rows are not needed on the held primary connection.
    pub(crate) async fn execute(
        &self,
        db: &Db,
        scope: &Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let using = self.acquire(db, Route::Primary).await?;
        let result = run_execute(using.held.conn.client()?, scope.via(), sql, params).await;
        if matches!(result, Err(Error::Connection(_))) {
            self.forget(&using.held);
        }
        result
    }
}

/// A [`Db`] whose loads run every statement on one connection (see
/// [`Db::one_connection`]); other statements run as on the `Db`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct OneConnection<'a> {
    db: &'a Db,
}

impl Db {
    /// This pool, with each load (a query with its relation tree, `prefetch_related`,
    /// the batched edges of `balanced`) running all its statements on one connection
    /// taken when its first statement runs, sibling edges pipelined on it, as a
    /// hand-written loader on one connection sends them. A plain `Db` sends each
    /// statement of a load on a pooled connection of its own, so sibling edges run on
    /// several server processes at once: measured as fast or faster
    /// (docs/BENCHMARKS.md, "One connection per load and per session"). Kept for
    /// that measurement.
    #[doc(hidden)]
    pub fn one_connection(&self) -> OneConnection<'_> {
        OneConnection { db: self }
    }
}

impl Executor for OneConnection<'_> {
    type Atomic<'t>
        = Transaction<'static>
    where
        Self: 't;

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.db.query(sql, params).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.db.execute(sql, params).await
    }

    async fn query_read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.db.query_read(sql, params).await
    }

    fn scope(&self) -> &Scope {
        self.db.scope()
    }

    async fn atomic(&self) -> Result<Transaction<'static>> {
        self.db.atomic().await
    }

    fn for_load(&self) -> Option<Box<dyn DynExecutor + '_>> {
        Some(Box::new(LoadConn::new(self.db, self.db.scope())))
    }
}

/// One load: its statements share one connection, taken when the first of them runs
/// (see [`Executor::for_load`](crate::Executor::for_load)).
pub(crate) struct LoadConn<'a> {
    db: &'a Db,
    scope: &'a Scope,
    held: HeldConn,
}

impl<'a> LoadConn<'a> {
    pub(crate) fn new(db: &'a Db, scope: &'a Scope) -> LoadConn<'a> {
        LoadConn {
            db,
            scope,
            held: HeldConn::default(),
        }
    }
}

impl DynExecutor for LoadConn<'_> {
    fn query_read_dyn<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(
            self.held
                .query(self.db, self.scope, Route::Read, sql, params),
        )
    }

    fn scope_dyn(&self) -> &Scope {
        self.scope
    }

    fn for_load_dyn(&self) -> Option<Box<dyn DynExecutor + '_>> {
        None
    }
}
