//! [`Transaction`]: a connection of its own between `BEGIN` and `COMMIT`/`ROLLBACK`,
//! with nested savepoints.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{ClientWrapper, Object};
use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::executor::{run_batch, run_execute, run_query, Executor, Scope};

enum Conn<'a> {
    Owned(Option<Box<Object>>),
    Nested(&'a ClientWrapper),
}

/// A transaction, or a savepoint inside one.
///
/// Queries and writes run on it like on a [`Db`](crate::Db) (pass `&tx`). Concurrent
/// statements on one transaction are pipelined on its connection.
///
/// Ends with [`commit`](Self::commit) or [`rollback`](Self::rollback). A transaction
/// dropped without either is rolled back: the root transaction's connection rolls back
/// before it returns to the pool (or is closed if no runtime is there to do it); a
/// dropped savepoint is rolled back before the enclosing transaction's next statement.
///
/// ```no_run
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let mut tx = db.begin().await?;
/// tx.execute_sql("UPDATE accounts SET balance = balance - 10 WHERE id = $1", &[&1i64]).await?;
/// {
///     let sp = tx.savepoint().await?;
///     sp.execute_sql("UPDATE accounts SET frozen = true WHERE id = $1", &[&1i64]).await?;
///     sp.rollback().await?; // only the savepoint's work is undone
/// }
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct Transaction<'a> {
    conn: Conn<'a>,
    scope: Scope,
    /// The savepoint's number; 0 for the root transaction.
    savepoint: u32,
    shared: Arc<Shared>,
    finished: bool,
    /// Held by a savepoint opened for an atomic write (`Executor::atomic`), so such
    /// savepoints on one connection never interleave.
    _atomic: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// State shared by a transaction and its savepoints.
#[derive(Default)]
struct Shared {
    /// Savepoint rollbacks owed by dropped nested transactions, run before the next
    /// statement of any transaction sharing the connection.
    pending: Mutex<Vec<String>>,
    /// The last savepoint number handed out.
    last_savepoint: AtomicU32,
    /// Serialises the savepoints of concurrent atomic writes on this connection.
    atomic: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("savepoint", &self.savepoint)
            .finish_non_exhaustive()
    }
}

impl Transaction<'static> {
    pub(crate) async fn begin(conn: Object, scope: Scope) -> Result<Transaction<'static>> {
        run_batch(&conn, &scope, "BEGIN").await?;
        Ok(Transaction {
            conn: Conn::Owned(Some(Box::new(conn))),
            scope,
            savepoint: 0,
            shared: Arc::default(),
            finished: false,
            _atomic: None,
        })
    }
}

impl<'a> Transaction<'a> {
    fn client(&self) -> Result<&ClientWrapper> {
        match &self.conn {
            Conn::Owned(Some(conn)) => Ok(conn),
            Conn::Owned(None) => Err(Error::Connection("the transaction has ended".into())),
            Conn::Nested(client) => Ok(client),
        }
    }

    /// Runs the savepoint rollbacks owed by dropped nested transactions.
    async fn settle(&self) -> Result<()> {
        let owed: Vec<String> = match self.shared.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return Ok(()),
        };
        run_batch(self.client()?, &self.scope, &owed.join("; ")).await
    }

    /// Opens a savepoint: a nested transaction that can be rolled back alone.
    pub async fn savepoint(&mut self) -> Result<Transaction<'_>> {
        self.nested().await
    }

    /// Opens a savepoint through a shared reference (for atomic multi-statement
    /// writes issued by this crate on a caller's transaction).
    pub(crate) async fn nested(&self) -> Result<Transaction<'_>> {
        self.settle().await?;
        let client = self.client()?;
        let number = self.shared.last_savepoint.fetch_add(1, Ordering::Relaxed) + 1;
        let child = Transaction {
            conn: Conn::Nested(client),
            scope: self.scope.clone(),
            savepoint: number,
            shared: self.shared.clone(),
            finished: false,
            _atomic: None,
        };
        let sql = format!("SAVEPOINT matrx_sp_{number}");
        run_batch(client, &self.scope, &sql).await?;
        Ok(child)
    }

    /// Commits (or releases the savepoint).
    pub async fn commit(mut self) -> Result<()> {
        self.settle().await?;
        let sql = match self.savepoint {
            0 => "COMMIT".to_owned(),
            n => format!("RELEASE SAVEPOINT matrx_sp_{n}"),
        };
        let result = run_batch(self.client()?, &self.scope, &sql).await;
        self.finished = true;
        if result.is_err() {
            self.discard_connection();
        }
        result
    }

    /// Rolls back (to the savepoint, for a nested transaction).
    pub async fn rollback(mut self) -> Result<()> {
        let sql = match self.savepoint {
            0 => "ROLLBACK".to_owned(),
            n => format!("ROLLBACK TO SAVEPOINT matrx_sp_{n}; RELEASE SAVEPOINT matrx_sp_{n}"),
        };
        let result = match self.settle().await {
            Ok(()) => run_batch(self.client()?, &self.scope, &sql).await,
            Err(e) => Err(e),
        };
        self.finished = true;
        if result.is_err() {
            self.discard_connection();
        }
        result
    }

    /// Runs `f` in a savepoint: released if `f` returns `Ok`, rolled back otherwise.
    pub async fn transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: for<'s, 't> AsyncFnOnce(&'s mut Transaction<'t>) -> Result<T, E>,
        E: From<Error>,
    {
        let sp = self.savepoint().await?;
        sp.run(f).await
    }

    pub(crate) async fn run<T, E, F>(mut self, f: F) -> Result<T, E>
    where
        F: for<'s, 't> AsyncFnOnce(&'s mut Transaction<'t>) -> Result<T, E>,
        E: From<Error>,
    {
        match f(&mut self).await {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(err) => {
                // The caller's error matters more than a failed rollback, whose
                // connection is discarded anyway.
                let _ = self.rollback().await;
                Err(err)
            }
        }
    }

    /// Runs one statement and returns its rows.
    pub async fn query_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.query(sql, params).await
    }

    /// Runs one statement and returns the number of rows it affected.
    pub async fn execute_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.execute(sql, params).await
    }

    /// Runs several parameterless statements separated by `;`.
    pub async fn batch_execute(&self, sql: &str) -> Result<()> {
        self.settle().await?;
        run_batch(self.client()?, &self.scope, sql).await
    }

    /// Closes a root connection whose state is unknown instead of pooling it.
    fn discard_connection(&mut self) {
        if let Conn::Owned(conn) = &mut self.conn {
            if let Some(conn) = conn.take() {
                drop(Object::take(*conn));
            }
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match &mut self.conn {
            Conn::Nested(_) => {
                let n = self.savepoint;
                if let Ok(mut pending) = self.shared.pending.lock() {
                    pending.push(format!(
                        "ROLLBACK TO SAVEPOINT matrx_sp_{n}; RELEASE SAVEPOINT matrx_sp_{n}"
                    ));
                }
            }
            Conn::Owned(conn) => {
                let Some(conn) = conn.take() else { return };
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(rollback_then_release(*conn));
                    }
                    Err(_) => drop(Object::take(*conn)),
                }
            }
        }
    }
}

/// Rolls back a dropped transaction's connection, then returns it to the pool; if the
/// rollback fails or is itself cancelled, the connection is closed instead.
async fn rollback_then_release(conn: Object) {
    struct CloseUnlessReleased(Option<Object>);
    impl Drop for CloseUnlessReleased {
        fn drop(&mut self) {
            if let Some(conn) = self.0.take() {
                drop(Object::take(conn));
            }
        }
    }
    let mut guard = CloseUnlessReleased(Some(conn));
    let ok = match &guard.0 {
        Some(conn) => conn.batch_execute("ROLLBACK").await.is_ok(),
        None => false,
    };
    if ok {
        drop(guard.0.take());
    }
}

impl Executor for Transaction<'_> {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.settle().await?;
        run_query(self.client()?, &self.scope, sql, params).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.settle().await?;
        run_execute(self.client()?, &self.scope, sql, params).await
    }

    fn scope(&self) -> &Scope {
        &self.scope
    }

    async fn atomic(&self) -> Result<Transaction<'_>> {
        let guard = self.shared.atomic.clone().lock_owned().await;
        let mut child = self.nested().await?;
        child._atomic = Some(guard);
        Ok(child)
    }
}
