//! [`Db`]: the connection pool, configured from a `postgres://` URL.

use std::any::TypeId;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::base::error::{Error, Result};

use crate::cache::shared::{CachedModel, SharedCache};
use crate::cache::{CachePolicy, CacheStats, Clock, SystemClock};
use crate::db::listen::{Coherence, Listener};
use crate::db::replica::{ReplicaStatus, Replicas};
use crate::db::tls::RustlsConnect;
use crate::db::transaction::{transaction_scope, Transaction};
use crate::db::url::ConnectUrl;
use crate::executor::{Executor, RowStream, Scope, StreamExecutor};
use crate::schema::model::Model;
use crate::statement::counter::Counters;
use crate::statement::mode::{StatementMode, Statements};
use crate::statement::run::{discard_if_broken, run_batch, run_execute, run_query};
use crate::statement::stream::stream_pooled;

/// How to build a [`Db`]. Start with [`Db::builder`].
///
/// The URL is libpq's (`postgres://user@host:port/db?...`), plus `sslmode`
/// (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`; see [`SslMode`](crate::SslMode)),
/// `sslrootcert` (a PEM file of trusted CAs) and `statement_mode` (`prepared` or
/// `unnamed`; see [`StatementMode`]).
///
/// ```no_run
/// # async fn demo() -> matrx_orm::Result<()> {
/// use std::time::Duration;
/// let db = matrx_orm::Db::builder("postgres://root@localhost:5432/test")
///     .pool_size(16)
///     .connect_timeout(Duration::from_secs(3))
///     .statement_timeout(Duration::from_secs(30))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DbBuilder {
    url: String,
    pool_size: usize,
    connect_timeout: Duration,
    pool_wait: Duration,
    statement_timeout: Option<Duration>,
    search_path: Option<String>,
    strict: bool,
    cache_policies: Vec<CachedModel>,
    cache_capacity: usize,
    cache_clock: Option<Arc<dyn Clock>>,
    statement_mode: Option<StatementMode>,
    replicas: Vec<String>,
    replica_max_lag: Duration,
    replica_recheck: Duration,
    /// Cache coherence across processes (options in `db/coherent.rs`).
    pub(crate) coherence: Coherence,
    /// The shared cache in Redis (options in `db/redis.rs`).
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::db::redis_options::RedisOptions>,
}

impl DbBuilder {
    /// Maximum number of pooled connections (default: 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long opening a connection may take (default: 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for a free pooled connection before
    /// [`Error::PoolTimeout`] (default: 30 s).
    pub fn pool_wait(mut self, timeout: Duration) -> Self {
        self.pool_wait = timeout;
        self
    }

    /// The server-side `statement_timeout` of every connection; a statement running
    /// longer fails with [`Error::StatementTimeout`]. Default: none.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// The `search_path` of every connection: where models without a schema live.
    pub fn search_path(mut self, schema: impl Into<String>) -> Self {
        self.search_path = Some(schema.into());
        self
    }

    /// Strict mode: every lazy relation load fails with [`Error::StrictLoad`].
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Caches rows of `M` process-wide (shared by every session of this `Db`) under
    /// `policy`: gets by primary key and belongs-to loads are answered from it. Writes
    /// through the ORM evict what they touch; see [`crate::cache`] for the rules.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "tags")]
    /// # pub struct Tag { #[orm(primary_key)] pub id: i64, pub name: String }
    /// # async fn demo() -> matrx_orm::Result<()> {
    /// use matrx_orm::cache::CachePolicy;
    /// let db = matrx_orm::Db::builder("postgres://root@localhost:5432/test")
    ///     .cache::<Tag>(CachePolicy::LongTerm)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cache<M: Model>(mut self, policy: CachePolicy) -> Self {
        self.cache_policies
            .retain(|model| model.id != TypeId::of::<M>());
        self.cache_policies.push(CachedModel::of::<M>(policy));
        self
    }

    /// The most rows the shared cache holds per model (default 10,000); the least
    /// recently used go first.
    pub fn cache_capacity(mut self, rows: usize) -> Self {
        self.cache_capacity = rows.max(1);
        self
    }

    /// The clock of the shared cache's expiry (tests inject a
    /// [`ManualClock`](crate::cache::ManualClock)).
    pub fn cache_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.cache_clock = Some(clock);
        self
    }

    /// How statements are sent (default: the URL's `statement_mode`, else
    /// [`StatementMode::Prepared`]). Behind a transaction pooler (PgBouncer
    /// `pool_mode = transaction`) choose [`StatementMode::Unnamed`]; it refuses the
    /// session state [`search_path`](Self::search_path) and
    /// [`statement_timeout`](Self::statement_timeout) with [`Error::Unsupported`].
    ///
    /// ```no_run
    /// # async fn demo() -> matrx_orm::Result<()> {
    /// use matrx_orm::StatementMode;
    /// // PgBouncer in transaction mode on port 6432:
    /// let db = matrx_orm::Db::builder("postgres://app@127.0.0.1:6432/shop")
    ///     .statement_mode(StatementMode::Unnamed)
    ///     .connect()
    ///     .await?;
    /// // or: Db::connect("postgres://app@127.0.0.1:6432/shop?statement_mode=unnamed")
    /// # Ok(()) }
    /// ```
    pub fn statement_mode(mut self, mode: StatementMode) -> Self {
        self.statement_mode = Some(mode);
        self
    }

    /// Adds a read replica (a streaming standby of the primary): reads outside
    /// transactions go to the first usable replica in the order they were added,
    /// writes and transactions to the primary; a [`Session`](crate::Session) that
    /// wrote reads from the primary from then on. A replica that cannot be reached,
    /// does not stream from its primary, or lags past
    /// [`replica_max_lag`](Self::replica_max_lag) is skipped. It gets its own pool
    /// with the same settings (its URL may set its own `sslmode`).
    ///
    /// ```no_run
    /// # async fn demo() -> matrx_orm::Result<()> {
    /// use std::time::Duration;
    /// let db = matrx_orm::Db::builder("postgres://app@primary:5432/shop")
    ///     .replica("postgres://app@replica-a:5432/shop")
    ///     .replica("postgres://app@replica-b:5432/shop")
    ///     .replica_max_lag(Duration::from_secs(2))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.replicas.push(url.into());
        self
    }

    /// The largest replay lag a replica may have and still serve reads (default:
    /// 5 s). Zero reads only from replicas that replayed everything they received.
    pub fn replica_max_lag(mut self, lag: Duration) -> Self {
        self.replica_max_lag = lag;
        self
    }

    /// How often a replica's health and lag are checked, at most (default: 1 s);
    /// between checks the last verdict holds, except that a broken connection
    /// takes a replica out at once.
    pub fn replica_recheck(mut self, every: Duration) -> Self {
        self.replica_recheck = every;
        self
    }

    /// The statement mode, refusing the session state it cannot keep.
    fn checked_statement_mode(&self, url: &ConnectUrl) -> Result<StatementMode> {
        let mode = self
            .statement_mode
            .or(url.statement_mode)
            .unwrap_or_default();
        if mode == StatementMode::Unnamed {
            let refused = [
                self.search_path.as_ref().map(|_| "search_path"),
                self.statement_timeout.map(|_| "statement_timeout"),
            ];
            if let Some(setting) = refused.into_iter().flatten().next() {
                return Err(Error::Unsupported(format!(
                    "{setting} is session state, which a transaction pooler does not keep \
                     (StatementMode::Unnamed): set it on the role or database \
                     (ALTER ROLE .. SET {setting} = ..) or in the pooler"
                )));
            }
        }
        Ok(mode)
    }

    /// Builds the pool and opens one connection to check the server answers.
    pub async fn connect(self) -> Result<Db> {
        let mode = self.checked_statement_mode(&ConnectUrl::parse(&self.url)?)?;
        let (primary, tls) = self.driver_config(&self.url)?;
        let pool = self.pool_of(primary.clone(), tls.clone())?;
        let replicas = if self.replicas.is_empty() {
            None
        } else {
            let mut members = Vec::with_capacity(self.replicas.len());
            for url in &self.replicas {
                let (config, tls) = self.driver_config(url)?;
                members.push((replica_name(url), self.pool_of(config, tls)?));
            }
            Some(Replicas::new(
                members,
                self.replica_max_lag,
                self.replica_recheck,
            ))
        };
        let shared = (!self.cache_policies.is_empty()).then(|| {
            let clock = self
                .cache_clock
                .clone()
                .unwrap_or_else(|| Arc::new(SystemClock::default()));
            SharedCache::new(
                clock,
                self.cache_capacity,
                &self.cache_policies,
                self.coherence.listen,
            )
        });
        #[cfg(feature = "redis")]
        let shared = match (shared, &self.redis) {
            (Some(cache), Some(redis)) => {
                Some(redis.attach(cache, &pool, self.connect_timeout).await?)
            }
            (shared, _) => shared,
        };
        let shared = shared.map(Arc::new);
        // The invalidation listener connects as the pool does, unless told otherwise.
        let (notify, listener) = (self.coherence)
            .start(&primary, &tls, shared.as_ref(), self.connect_timeout)
            .await?;
        // A listener that started flushes Redis: do it before the first read.
        #[cfg(feature = "redis")]
        if let Some(shared) = &shared {
            shared.settle_remote().await;
        }
        let db = Db {
            inner: Arc::new(DbInner {
                pool,
                replicas,
                scope: Scope {
                    counters: Counters::default(),
                    statements: Arc::new(Statements::new(mode)),
                    strict: self.strict,
                    loaders: None,
                    cache: None,
                    outer_cache: None,
                    shared,
                    notify,
                    in_transaction: false,
                    replica_reads: !self.replicas.is_empty(),
                    after_commit: None,
                },
                pool_wait: self.pool_wait,
                connect_timeout: self.connect_timeout,
                listener,
            }),
        };
        drop(db.conn().await?);
        Ok(db)
    }

    /// The driver's settings for `url` with this builder's, and its TLS connector.
    fn driver_config(&self, url: &str) -> Result<(tokio_postgres::Config, RustlsConnect)> {
        let url = ConnectUrl::parse(url)?;
        let mut pg: tokio_postgres::Config = url
            .driver
            .parse()
            .map_err(|e| Error::InvalidInput(format!("invalid database URL: {e}")))?;
        if pg.get_hosts().is_empty() {
            return Err(Error::InvalidInput(
                "invalid database URL: it names no host".to_owned(),
            ));
        }
        pg.connect_timeout(self.connect_timeout);
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        if let Some(t) = self.statement_timeout {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        }
        if let Some(path) = &self.search_path {
            options.push_str(" -c search_path=");
            options.push_str(&escape_option(&crate::base::sql::quote_ident(path)));
        }
        // Only when there are some: an empty `options` is still sent, and poolers
        // refuse the parameter.
        if !options.trim().is_empty() {
            pg.options(options.trim());
        }
        let (tls, ssl_mode) = RustlsConnect::for_url(&url)?;
        pg.ssl_mode(ssl_mode);
        Ok((pg, tls))
    }

    /// A pool of connections with `pg` and `tls`, sized and timed by this builder.
    fn pool_of(&self, pg: tokio_postgres::Config, tls: RustlsConnect) -> Result<Pool> {
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(self.pool_size)
            // Reuse the most recently used connection: its prepared statements are
            // cached and warm, and idle connections stay idle.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.pool_wait))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| Error::InvalidInput(format!("invalid pool configuration: {e}")))
    }
}

/// `host:port` of a URL, for logs and [`ReplicaStatus`] (the URL itself may hold a
/// password).
fn replica_name(url: &str) -> String {
    let driver = ConnectUrl::parse(url).map(|u| u.driver);
    match driver.as_deref().map(str::parse::<tokio_postgres::Config>) {
        Ok(Ok(config)) => {
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                #[cfg(unix)]
                Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
                None => String::new(),
            };
            let port = config.get_ports().first().copied().unwrap_or(5432);
            format!("{host}:{port}")
        }
        _ => "<invalid url>".to_owned(),
    }
}

/// Escapes a value for libpq's `options` (backslash and whitespace).
fn escape_option(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        if ch == '\\' || ch.is_whitespace() {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[derive(Debug)]
struct DbInner {
    pool: Pool,
    replicas: Option<Replicas>,
    scope: Scope,
    pool_wait: Duration,
    connect_timeout: Duration,
    /// The invalidation listener of a coherent shared cache.
    listener: Option<Listener>,
}

/// A pool of connections to one PostgreSQL database. Cheap to clone.
///
/// Every statement run through a `Db` (directly, or through its sessions and
/// transactions) is counted: see [`query_count`](Db::query_count).
///
/// ```no_run
/// # async fn demo() -> matrx_orm::Result<()> {
/// let db = matrx_orm::Db::connect("postgres://root@localhost:5432/test").await?;
/// let before = db.query_count();
/// db.execute_sql("SELECT 1", &[]).await?;
/// assert_eq!(db.query_count() - before, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

impl Db {
    /// Starts configuring a pool for `url` (`postgres://user@host:port/db?...`).
    pub fn builder(url: impl Into<String>) -> DbBuilder {
        DbBuilder {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            pool_wait: Duration::from_secs(30),
            statement_timeout: None,
            search_path: None,
            strict: false,
            cache_policies: Vec::new(),
            cache_capacity: 10_000,
            cache_clock: None,
            statement_mode: None,
            replicas: Vec::new(),
            replica_max_lag: Duration::from_secs(5),
            replica_recheck: Duration::from_secs(1),
            coherence: Coherence::default(),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// A pool with default settings; fails if the server does not answer.
    pub async fn connect(url: &str) -> Result<Db> {
        Db::builder(url).connect().await
    }

    /// Statements run through this pool so far (all sessions and transactions).
    pub fn query_count(&self) -> u64 {
        self.inner.scope.counters.db.get()
    }

    /// Reads the replicas answered so far (0 without replicas).
    pub fn replica_reads(&self) -> u64 {
        self.inner.replicas.as_ref().map_or(0, Replicas::reads)
    }

    /// Each replica as last checked, in the order they were added.
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        self.inner
            .replicas
            .as_ref()
            .map(Replicas::status)
            .unwrap_or_default()
    }

    /// The shared-cache counters of model `M` (zeros when it is not cached).
    pub fn cache_stats<M: Model>(&self) -> CacheStats {
        self.inner
            .scope
            .shared
            .as_ref()
            .map(|s| s.stats::<M>())
            .unwrap_or_default()
    }

    /// The shared cache, when some model is cached.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn shared_cache(&self) -> Option<&SharedCache> {
        self.inner.scope.shared.as_deref()
    }

    /// The read replicas, if any.
    pub(crate) fn replicas(&self) -> Option<&Replicas> {
        self.inner.replicas.as_ref()
    }

    /// The invalidation listener of a coherent shared cache.
    pub(crate) fn listener(&self) -> Option<&Listener> {
        self.inner.listener.as_ref()
    }

    /// Begins a transaction on a connection of its own.
    pub async fn begin(&self) -> Result<Transaction<'static>> {
        self.begin_in(&self.inner.scope).await
    }

    /// Runs `f` in a transaction: committed if `f` returns `Ok`, rolled back if it
    /// returns `Err` (or panics, or is cancelled).
    ///
    /// ```no_run
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let n: u64 = db
    ///     .transaction(async |tx| tx.execute_sql("DELETE FROM audit_log", &[]).await)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'s, 't> AsyncFnOnce(&'s mut Transaction<'t>) -> Result<T, E>,
        E: From<Error>,
    {
        let tx = self.begin().await?;
        tx.run(f).await
    }

    /// Runs one statement and returns its rows (parameters bound, never spliced).
    pub async fn query_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.query(sql, params).await
    }

    /// Runs one statement and returns the number of rows it affected.
    pub async fn execute_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.execute(sql, params).await
    }

    /// Runs several parameterless statements separated by `;` (DDL, scripts).
    pub async fn batch_execute(&self, sql: &str) -> Result<()> {
        let conn = self.conn().await?;
        run_batch(&conn, &self.inner.scope.counters, sql).await
    }

    /// The pool's current size and idle connections.
    pub fn pool_status(&self) -> PoolStatus {
        let s = self.inner.pool.status();
        PoolStatus {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }

    /// Takes a connection from the pool, with typed errors for timeouts.
    pub(crate) async fn conn(&self) -> Result<Object> {
        use deadpool_postgres::{PoolError, TimeoutType};
        match self.inner.pool.get().await {
            Ok(conn) => Ok(conn),
            Err(PoolError::Timeout(TimeoutType::Wait)) => {
                Err(Error::PoolTimeout(self.inner.pool_wait))
            }
            Err(PoolError::Timeout(_)) => Err(Error::Connection(format!(
                "could not connect within {:?}",
                self.inner.connect_timeout
            ))),
            Err(other) => Err(other.into()),
        }
    }
}

/// A snapshot of the pool: see [`Db::pool_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The configured maximum.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl Db {
    /// Runs a statement on a pooled connection, reporting to `scope` (the `Db`'s or a
    /// session's); a connection that failed with a connection error is closed.
    pub(crate) async fn pooled_query(
        &self,
        scope: &Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let conn = self.conn().await?;
        let result = run_query(&conn, scope.via(), sql, params).await;
        discard_if_broken(conn, &result);
        result
    }

    /// [`pooled_query`](Self::pooled_query) for statements whose rows are not needed.
    pub(crate) async fn pooled_execute(
        &self,
        scope: &Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let conn = self.conn().await?;
        let result = run_execute(&conn, scope.via(), sql, params).await;
        discard_if_broken(conn, &result);
        result
    }

    /// Runs a read on the first usable replica, else (or when its connection breaks)
    /// on the primary, reporting to `scope`.
    pub(crate) async fn pooled_read(
        &self,
        scope: &Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        if let Some(replicas) = &self.inner.replicas {
            if let Some((i, conn)) = replicas.pick().await {
                let result = run_query(&conn, scope.via(), sql, params).await;
                if matches!(result, Err(Error::Connection(_))) {
                    replicas.mark_down(i);
                    discard_if_broken(conn, &result);
                } else {
                    replicas.answered();
                    return result;
                }
            }
        }
        self.pooled_query(scope, sql, params).await
    }

    /// [`pooled_stream`](Self::pooled_stream) on the first usable replica, else on
    /// the primary.
    pub(crate) async fn pooled_read_stream(
        &self,
        scope: &Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream<'static>> {
        if let Some(replicas) = &self.inner.replicas {
            if let Some((_, conn)) = replicas.pick().await {
                replicas.answered();
                return Ok(Box::pin(
                    stream_pooled(conn, scope.via(), sql, params).await?,
                ));
            }
        }
        self.pooled_stream(scope, sql, params).await
    }

    /// Sends a statement on a pooled connection held by the returned stream until it
    /// ends or is dropped, reporting to `scope`.
    pub(crate) async fn pooled_stream(
        &self,
        scope: &Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream<'static>> {
        let conn = self.conn().await?;
        Ok(Box::pin(
            stream_pooled(conn, scope.via(), sql, params).await?,
        ))
    }

    /// Begins a transaction reporting to `scope`.
    pub(crate) async fn begin_in(&self, scope: &Scope) -> Result<Transaction<'static>> {
        Transaction::begin(self.conn().await?, transaction_scope(scope)).await
    }
}

impl Executor for Db {
    type Atomic<'a> = Transaction<'static>;

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.pooled_query(&self.inner.scope, sql, params).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.pooled_execute(&self.inner.scope, sql, params).await
    }

    async fn query_read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.pooled_read(&self.inner.scope, sql, params).await
    }

    async fn atomic(&self) -> Result<Transaction<'static>> {
        self.begin_in(&self.inner.scope).await
    }

    fn scope(&self) -> &Scope {
        &self.inner.scope
    }
}

impl StreamExecutor for Db {
    async fn query_stream<'a>(
        &'a self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        _batch: usize,
    ) -> Result<RowStream<'a>> {
        self.pooled_read_stream(&self.inner.scope, sql, params)
            .await
    }
}
