//! [`Transaction`]: a connection of its own between `BEGIN` and `COMMIT`/`ROLLBACK`,
//! with nested savepoints.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use deadpool_postgres::{ClientWrapper, Object};
use futures_util::future::BoxFuture;
use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::base::error::{Error, Result};
use crate::executor::batching::Loaders;
use crate::executor::{Atomic, Executor, RowStream, Scope, StreamExecutor};
use crate::statement::run::{run_batch, run_execute, run_query};
use crate::statement::stream::{close_cursor, declare_cursor, fetch_cursor};

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
    /// Whether nothing is owed on drop: set once a commit or rollback has left for the
    /// server (and, for a savepoint, until its `SAVEPOINT` has).
    finished: AtomicBool,
    /// Held by a savepoint opened for an atomic write (`Executor::atomic`), so such
    /// savepoints on one connection never interleave.
    _atomic: Option<tokio::sync::OwnedRwLockWriteGuard<()>>,
    /// Whether the answer to the ending statement (commit or rollback) has arrived:
    /// until then a root transaction's connection is in an unknown state.
    confirmed: AtomicBool,
    /// Whether the server has accepted this savepoint's `SAVEPOINT` (always true for
    /// the root): only a savepoint that exists ends an abort when rolled back.
    established: bool,
}

/// State shared by a transaction and its savepoints.
///
/// The abort is kept the way the server keeps it. A statement the server refuses
/// aborts the whole transaction, whatever savepoint it ran in; from then on the server
/// refuses everything (`SAVEPOINT` and `RELEASE` included, which then change nothing)
/// except `ROLLBACK TO SAVEPOINT s` for any savepoint `s` still open — which ends the
/// abort, however deep the failure was — and the ending `ROLLBACK` (a `COMMIT` rolls
/// back). A savepoint that is still open was necessarily established before the
/// failure, since no `SAVEPOINT` is accepted while aborted.
#[derive(Default)]
struct Shared {
    /// The savepoints (by number) owed a rollback by dropped nested transactions, run
    /// before the next statement of any transaction sharing the connection.
    pending: Mutex<Vec<u32>>,
    /// The last savepoint number handed out.
    last_savepoint: AtomicU32,
    /// The last cursor number handed out (streams).
    last_cursor: AtomicU32,
    /// Held for writing by a savepoint opened for an atomic write, for reading by every
    /// other statement: while such a savepoint is open, nothing else runs on the
    /// connection (a rollback of the savepoint would undo it too), and such savepoints
    /// never interleave.
    atomic: Arc<tokio::sync::RwLock<()>>,
    /// Whether a statement failed on the server since the last rollback to a savepoint
    /// (sent, or owed before any later statement): the server has aborted the
    /// transaction.
    aborted: AtomicBool,
}

impl Shared {
    fn mark_aborted(&self) {
        self.aborted.store(true, Ordering::Relaxed);
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// A rollback to a savepoint that exists has left (or will leave before any later
    /// statement): the abort is over, wherever the failure happened.
    fn rolled_back(&self) {
        self.aborted.store(false, Ordering::Relaxed);
    }

    /// Forgets the owed rollbacks of savepoints opened after savepoint `number` (0: the
    /// root), which a rollback of `number` undoes with it. They were opened while
    /// `number` was open, so inside it; one of them may never have existed (its
    /// `SAVEPOINT` cancelled in flight and refused), and its own rollback would fail.
    fn forget_rollbacks_inside(&self, number: u32) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|&n| n <= number);
        }
    }

    /// Owes a rollback of savepoint `number` (dropped) before the next statement.
    fn owe_rollback(&self, number: u32) {
        self.forget_rollbacks_inside(number);
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(number);
        }
    }
}

/// Undoes savepoint `n` and ends it.
fn rollback_savepoint_sql(n: u32) -> String {
    format!("ROLLBACK TO SAVEPOINT matrx_sp_{n}; RELEASE SAVEPOINT matrx_sp_{n}")
}

/// Whether `err` is a statement the server refused (which aborts a transaction), as
/// opposed to a fault of the connection or a refusal before sending.
fn aborts_transaction(err: &Error) -> bool {
    err.sqlstate().is_some()
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
        // Built before BEGIN is sent, so a cancelled begin is rolled back on drop
        // instead of returning the connection to the pool inside a transaction.
        let mut tx = Transaction {
            conn: Conn::Owned(Some(Box::new(conn))),
            scope,
            savepoint: 0,
            shared: Arc::default(),
            finished: AtomicBool::new(false),
            _atomic: None,
            confirmed: AtomicBool::new(false),
            established: true,
        };
        if let Err(err) = tx.send(Some("BEGIN"), || {}).await {
            tx.finished.store(true, Ordering::Relaxed);
            tx.discard_connection();
            return Err(err);
        }
        Ok(tx)
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
        self.send(None, || {}).await
    }

    /// Sends the owed savepoint rollbacks and then `last` as one batch, built and sent
    /// in a single poll so a cancelled caller never loses owed work; `on_sent` runs as
    /// soon as the batch has left for the server (which then runs it whether or not
    /// the answer is awaited).
    async fn send(&self, last: Option<&str>, on_sent: impl FnOnce()) -> Result<()> {
        let client = self.client()?;
        let scope = &self.scope;
        let mut on_sent = Some(on_sent);
        let mut batch: Option<BoxFuture<'_, Result<()>>> = None;
        std::future::poll_fn(|cx| {
            if batch.is_none() {
                let mut statements: Vec<String> = match self.shared.pending.lock() {
                    Ok(mut pending) => pending.drain(..).map(rollback_savepoint_sql).collect(),
                    Err(_) => Vec::new(),
                };
                statements.extend(last.map(str::to_owned));
                if statements.is_empty() {
                    if let Some(f) = on_sent.take() {
                        f();
                    }
                    return Poll::Ready(Ok(()));
                }
                let text = statements.join("; ");
                batch = Some(Box::pin(async move {
                    run_batch(client, &scope.counters, &text).await
                }));
            }
            let Some(fut) = batch.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let polled = fut.as_mut().poll(cx);
            if let Some(f) = on_sent.take() {
                f();
            }
            polled
        })
        .await
    }

    /// Opens a savepoint: a nested transaction that can be rolled back alone.
    pub async fn savepoint(&mut self) -> Result<Transaction<'_>> {
        let _gate = self.gate().await;
        self.nested().await
    }

    /// Waits while an atomic write's savepoint is open on this connection (unless this
    /// is that savepoint), and holds it off while the caller's statement runs.
    async fn gate(&self) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
        match self._atomic {
            Some(_) => None,
            None => Some(self.shared.atomic.clone().read_owned().await),
        }
    }

    /// Forgets what this transaction's cache read: a rolled-back savepoint may have
    /// read its own writes.
    fn forget_reads(&self) {
        if let Some(cache) = &self.scope.cache {
            cache.clear();
        }
    }

    /// Opens a savepoint through a shared reference (for atomic multi-statement
    /// writes issued by this crate on a caller's transaction).
    pub(crate) async fn nested(&self) -> Result<Transaction<'_>> {
        let client = self.client()?;
        let number = self.shared.last_savepoint.fetch_add(1, Ordering::Relaxed) + 1;
        // Owes nothing on drop until its SAVEPOINT has been sent; if cancelled after
        // that, owes a rollback (the savepoint may exist) but, not known to exist,
        // cannot end an abort.
        let mut child = Transaction {
            conn: Conn::Nested(client),
            scope: self.scope.clone(),
            savepoint: number,
            shared: self.shared.clone(),
            finished: AtomicBool::new(true),
            _atomic: None,
            confirmed: AtomicBool::new(false),
            established: false,
        };
        let sql = format!("SAVEPOINT matrx_sp_{number}");
        let sent = self
            .send(Some(&sql), || {
                child.finished.store(false, Ordering::Relaxed)
            })
            .await;
        if let Err(err) = sent {
            // Refused (the transaction is aborted, or an owed rollback before it
            // failed): there is no savepoint to roll back.
            child.finished.store(true, Ordering::Relaxed);
            self.note_failure(&err);
            return Err(err);
        }
        child.established = true;
        Ok(child)
    }

    /// Records that a statement failed on the server: the transaction is aborted until
    /// a rollback to a savepoint that exists, or its end.
    fn note_failure(&self, err: &Error) {
        if aborts_transaction(err) {
            self.shared.mark_aborted();
        }
    }

    /// Commits (or releases the savepoint). A transaction that a failed statement
    /// aborted cannot commit: it is rolled back and the error says so (the server
    /// would silently roll it back on `COMMIT`).
    ///
    /// A savepoint's release in an aborted transaction is refused by the server: it
    /// returns that error, and the transaction stays aborted until an enclosing
    /// savepoint or the transaction rolls back.
    pub async fn commit(mut self) -> Result<()> {
        if self.savepoint == 0 && self.shared.is_aborted() {
            self.shared.forget_rollbacks_inside(0);
            let _ = self.finish("ROLLBACK", false).await;
            return Err(Error::Database {
                code: "25P02".to_owned(),
                message: "the transaction was aborted by a failed statement; it has been \
                          rolled back, not committed"
                    .to_owned(),
            });
        }
        let sql = match self.savepoint {
            // The probe fails (25P02) if a statement the caller never saw fail — one it
            // cancelled after sending — aborted the transaction; the batch then stops
            // before COMMIT and the connection is closed, which rolls back.
            0 => "SELECT 1; COMMIT".to_owned(),
            n => format!("RELEASE SAVEPOINT matrx_sp_{n}"),
        };
        let result = self.finish(&sql, false).await;
        if result.is_ok() && self.savepoint == 0 {
            self.scope.committed().wait().await;
        }
        result
    }

    /// Rolls back (to the savepoint, for a nested transaction).
    ///
    /// Rolling a savepoint back ends an abort of the transaction, wherever the failed
    /// statement ran (in this savepoint or one inside it), as on the server.
    pub async fn rollback(mut self) -> Result<()> {
        let sql = match self.savepoint {
            0 => "ROLLBACK".to_owned(),
            n => rollback_savepoint_sql(n),
        };
        // The rollback undoes the savepoints opened inside this one with it.
        self.shared.forget_rollbacks_inside(self.savepoint);
        let result = self.finish(&sql, self.savepoint > 0).await;
        if self.savepoint > 0 {
            self.forget_reads();
        }
        result
    }

    /// Sends the ending statement; nothing is owed on drop once it has left. With
    /// `ends_abort` (a savepoint's rollback: the savepoint exists, so the server
    /// accepts it) the transaction is no longer aborted once it has left.
    async fn finish(&mut self, sql: &str, ends_abort: bool) -> Result<()> {
        let finished = &self.finished;
        let shared = &self.shared;
        let result = self
            .send(Some(sql), || {
                finished.store(true, Ordering::Relaxed);
                if ends_abort {
                    shared.rolled_back();
                }
            })
            .await;
        self.finished.store(true, Ordering::Relaxed);
        self.confirmed.store(true, Ordering::Relaxed);
        if result.is_err() {
            self.note_failure_on_end(&result);
            self.discard_connection();
        }
        result
    }

    fn note_failure_on_end(&self, result: &Result<()>) {
        if let Err(err) = result {
            self.note_failure(err);
        }
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
        let _gate = self.gate().await;
        self.send(Some(sql), || {})
            .await
            .inspect_err(|e| self.note_failure(e))
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
        match &mut self.conn {
            Conn::Nested(_) if self.finished.load(Ordering::Relaxed) => {}
            Conn::Nested(_) => {
                self.forget_reads();
                self.shared.owe_rollback(self.savepoint);
                // The rollback is sent before any later statement, so from that
                // statement's view an abort is over — if the savepoint exists, which
                // is unknown for one whose SAVEPOINT got no answer.
                if self.established {
                    self.shared.rolled_back();
                }
            }
            // Committed or rolled back, and the server said so.
            Conn::Owned(_) if self.confirmed.load(Ordering::Relaxed) => {}
            // Not ended, or ended without an answer (a cancelled commit may have
            // failed, leaving the transaction aborted): roll back before pooling; a
            // ROLLBACK after a COMMIT only draws a warning.
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

impl<'t> Executor for Transaction<'t> {
    type Atomic<'a>
        = Transaction<'a>
    where
        Self: 'a;

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let _gate = self.gate().await;
        self.settle().await.inspect_err(|e| self.note_failure(e))?;
        run_query(self.client()?, self.scope.via(), sql, params)
            .await
            .inspect_err(|e| self.note_failure(e))
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let _gate = self.gate().await;
        self.settle().await.inspect_err(|e| self.note_failure(e))?;
        run_execute(self.client()?, self.scope.via(), sql, params)
            .await
            .inspect_err(|e| self.note_failure(e))
    }

    fn scope(&self) -> &Scope {
        &self.scope
    }

    async fn atomic(&self) -> Result<Transaction<'_>> {
        let guard = self.shared.atomic.clone().write_owned().await;
        let mut child = self.nested().await?;
        child._atomic = Some(guard);
        Ok(child)
    }
}

/// Streams on a transaction read a cursor in batches, so the transaction's other
/// statements (a stream's prefetch edges among them) run between two batches; a
/// `query_raw` stream left unread would block them on the shared connection.
impl<'t> StreamExecutor for Transaction<'t> {
    async fn query_stream<'a>(
        &'a self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        batch: usize,
    ) -> Result<RowStream<'a>> {
        use futures_util::{stream, StreamExt, TryStreamExt};
        let number = self.shared.last_cursor.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("matrx_cursor_{number}");
        {
            let _gate = self.gate().await;
            self.settle().await.inspect_err(|e| self.note_failure(e))?;
            declare_cursor(self.client()?, self.scope.via(), &name, sql, params)
                .await
                .inspect_err(|e| self.note_failure(e))?;
        }
        let batch = batch.max(1);
        let batches = stream::try_unfold(Some(name), move |cursor| async move {
            let Some(name) = cursor else {
                return Ok::<_, Error>(None);
            };
            let _gate = self.gate().await;
            self.settle().await.inspect_err(|e| self.note_failure(e))?;
            let client = self.client()?;
            let rows = fetch_cursor(client, self.scope.via(), &name, batch)
                .await
                .inspect_err(|e| self.note_failure(e))?;
            if rows.len() < batch {
                close_cursor(client, &name)
                    .await
                    .inspect_err(|e| self.note_failure(e))?;
                return Ok(Some((rows, None)));
            }
            Ok(Some((rows, Some(name))))
        });
        Ok(batches
            .map_ok(|rows| stream::iter(rows.into_iter().map(Ok)))
            .try_flatten()
            .boxed())
    }
}

impl Atomic for Transaction<'_> {
    async fn batch_execute(&self, sql: &str) -> Result<()> {
        Transaction::batch_execute(self, sql).await
    }

    async fn commit(self) -> Result<()> {
        Transaction::commit(self).await
    }
}

/// The scope of a transaction begun from `outer` (a `Db`'s or a session's): its
/// batches and its cache layer are its own, so a batch never mixes keys read inside
/// and outside it, and nothing it read survives a rollback; its writes also evict in
/// the session behind it, again once it commits.
pub(crate) fn transaction_scope(outer: &Scope) -> Scope {
    let mut scope = outer.clone();
    if let Some(loaders) = &outer.loaders {
        scope.loaders = Some(Arc::new(Loaders::new(loaders.max_batch())));
    }
    if let Some(cache) = &outer.cache {
        scope.outer_cache = Some(cache.clone());
        scope.cache = Some(Arc::default());
    }
    scope.in_transaction = true;
    scope.after_commit = Some(Arc::default());
    scope
}
