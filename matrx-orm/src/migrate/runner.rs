//! Running migrations: [`Migrator`] (`up`, `down`, `redo`, `status`) and the
//! migrations table.
//!
//! A run holds one pooled connection from start to end and takes a session-level
//! advisory lock on it first (`pg_advisory_lock`, a key derived from the schema and the
//! table name), so runners started at once in several processes apply each migration
//! exactly once: the others wait, then find it recorded. The migrations table is
//! created under the lock. Each migration runs in a transaction together with its row
//! in the table, unless its file carries `-- matrx-orm: no-transaction`; then its statements run
//! one by one and the row is written after the last. The lock is released at the end,
//! whether the run succeeded or failed; a run dropped part-way (cancelled, or a failed
//! `ROLLBACK`) closes its connection instead of pooling it, which releases the lock and
//! rolls back whatever was open. Settings a migration changes for its session are
//! reset (`RESET ALL`) after it, so they reach neither the next migration nor the pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{ClientWrapper, Object};
use sha2::{Digest, Sha256};
use tokio_postgres::Row;

use crate::base::error::Error;
use crate::base::sql::qualified;
use crate::db::pool::Db;
use crate::executor::Executor;
use crate::migrate::error::MigrateError;
use crate::migrate::source::{Migration, Migrations};
use crate::migrate::split::statements;
use crate::statement::run::{run_batch, run_execute, run_query, Via};

/// The migrations table's name unless [`Migrator::table`] says otherwise.
pub const DEFAULT_TABLE: &str = "matrx_orm_migrations";

/// Which way a migration ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `up.sql`.
    Up,
    /// `down.sql`.
    Down,
}

/// One migration a run applied or reverted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The migration's version.
    pub version: i64,
    /// The migration's name.
    pub name: String,
    /// Up or down.
    pub direction: Direction,
    /// How long its SQL took.
    pub elapsed: Duration,
}

/// Where a migration stands, as [`Migrator::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not applied yet.
    Pending,
    /// Applied, and the file is unchanged.
    Applied,
    /// Applied, but `up.sql` has changed since (a run would fail with
    /// [`MigrateError::Changed`]).
    Changed,
    /// Recorded as applied, but not among the migrations at hand.
    Missing,
}

/// One line of [`Migrator::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The version.
    pub version: i64,
    /// The name (from the file, or the table for a missing one).
    pub name: String,
    /// Where it stands.
    pub state: State,
    /// When it was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// How long its SQL took, in milliseconds, when it was applied.
    pub execution_ms: Option<i64>,
}

/// Applies and reverts [`Migrations`] on a database.
///
/// ```no_run
/// # async fn demo(db: &matrx_orm::Db) -> Result<(), matrx_orm::migrate::MigrateError> {
/// use matrx_orm::migrate::{Migrations, Migrator};
///
/// # /* (the doctest embeds the test suite's folder instead)
/// static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("migrations");
/// # */
/// # static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("../tests/migrations");
///
/// let migrator = Migrator::new(&MIGRATIONS);
/// for line in migrator.status(db).await? {
///     println!("{} {} {:?}", line.version, line.name, line.state);
/// }
/// migrator.up(db).await?; // what `db.migrate(&MIGRATIONS)` does
/// migrator.down(db, 1).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Migrator<'m> {
    migrations: &'m Migrations,
    schema: Option<String>,
    table: String,
}

impl<'m> Migrator<'m> {
    /// A migrator keeping its table ([`DEFAULT_TABLE`]) in the connection's current
    /// schema (the first of its `search_path`).
    pub fn new(migrations: &'m Migrations) -> Migrator<'m> {
        Migrator {
            migrations,
            schema: None,
            table: DEFAULT_TABLE.to_owned(),
        }
    }

    /// Keeps the migrations table in `schema` instead of the current schema. The
    /// migrations' SQL still runs with the connection's `search_path`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Names the migrations table.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Applies every pending migration, oldest first.
    pub async fn up(&self, db: &Db) -> Result<Vec<Ran>, MigrateError> {
        self.up_to(db, i64::MAX).await
    }

    /// Applies the pending migrations whose version is at most `version`.
    pub async fn up_to(&self, db: &Db, version: i64) -> Result<Vec<Ran>, MigrateError> {
        let run = Run::start(db, self).await?;
        let result = run.up(self.migrations, version).await;
        run.finish(result).await
    }

    /// Reverts the `steps` most recently applied migrations, newest first.
    pub async fn down(&self, db: &Db, steps: usize) -> Result<Vec<Ran>, MigrateError> {
        let run = Run::start(db, self).await?;
        let result = run.down(self.migrations, steps).await;
        run.finish(result).await
    }

    /// Reverts the most recently applied migration and applies it again (to try a
    /// migration being written), under one lock.
    pub async fn redo(&self, db: &Db) -> Result<Vec<Ran>, MigrateError> {
        let run = Run::start(db, self).await?;
        let result = async {
            let mut ran = run.down(self.migrations, 1).await?;
            if let Some(last) = ran.first().map(|r| r.version) {
                ran.extend(run.up(self.migrations, last).await?);
            }
            Ok(ran)
        }
        .await;
        run.finish(result).await
    }

    /// Every migration at hand and every one recorded, by version, with its state.
    /// Reads without the lock and creates nothing.
    pub async fn status(&self, db: &Db) -> Result<Vec<MigrationStatus>, MigrateError> {
        let schema = match &self.schema {
            Some(s) => s.clone(),
            None => current_schema(&db.query_sql(CURRENT_SCHEMA, &[]).await?)?,
        };
        let table = qualified(Some(&schema), &self.table);
        let exists = db.query_sql(TABLE_EXISTS, &[&table]).await?;
        let recorded = match exists.first().map(|r| r.try_get::<_, bool>(0)) {
            Some(Ok(true)) => read_recorded(&db.query_sql(&select_sql(&table), &[]).await?)?,
            _ => Vec::new(),
        };
        let mut out: Vec<MigrationStatus> = self
            .migrations
            .iter()
            .map(|m| {
                let rec = recorded.iter().find(|r| r.version == m.version);
                MigrationStatus {
                    version: m.version,
                    name: m.name.to_string(),
                    state: match rec {
                        None => State::Pending,
                        Some(r) if r.checksum == m.checksum() => State::Applied,
                        Some(_) => State::Changed,
                    },
                    applied_at: rec.map(|r| r.applied_at),
                    execution_ms: rec.map(|r| r.execution_ms),
                }
            })
            .collect();
        for r in &recorded {
            if self.migrations.get(r.version).is_none() {
                out.push(MigrationStatus {
                    version: r.version,
                    name: r.name.clone(),
                    state: State::Missing,
                    applied_at: Some(r.applied_at),
                    execution_ms: Some(r.execution_ms),
                });
            }
        }
        out.sort_by_key(|s| s.version);
        Ok(out)
    }
}

impl Db {
    /// Applies every pending migration (see [`Migrator::up`]); meant for start-up.
    /// Safe to call from many instances at once: one applies, the others wait for it.
    ///
    /// ```no_run
    /// use matrx_orm::migrate::Migrations;
    ///
    /// # /* (the doctest embeds the test suite's folder instead)
    /// static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("migrations");
    /// # */
    /// # static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("../tests/migrations");
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let db = matrx_orm::Db::connect("postgres://root@localhost:5432/app").await?;
    /// let applied = db.migrate(&MIGRATIONS).await?;
    /// println!("{} migration(s) applied", applied.len());
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self, migrations: &Migrations) -> Result<Vec<Ran>, MigrateError> {
        Migrator::new(migrations).up(self).await
    }
}

const CURRENT_SCHEMA: &str = "SELECT current_schema()::text";
const TABLE_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";
const LOCK: &str = "SELECT pg_advisory_lock($1)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

fn select_sql(table: &str) -> String {
    format!(
        "SELECT version, name, checksum, applied_at, execution_ms FROM {table} ORDER BY version"
    )
}

fn current_schema(rows: &[Row]) -> Result<String, MigrateError> {
    rows.first()
        .and_then(|r| r.try_get::<_, Option<String>>(0).ok().flatten())
        .ok_or_else(|| {
            MigrateError::Database(Error::InvalidInput(
                "no current schema: the search_path names no existing schema; \
                 set it or use Migrator::schema"
                    .to_owned(),
            ))
        })
}

/// The advisory lock key a run on the migrations table `schema.table` takes: the
/// first 8 bytes of a SHA-256 of both names, so runners on different schemas never
/// wait for each other. To watch it: `SELECT * FROM pg_locks WHERE locktype =
/// 'advisory' AND classid = ((key >> 32) & 4294967295)::oid AND objid = (key & 4294967295)::oid`.
///
/// ```
/// use matrx_orm::migrate::{lock_key, DEFAULT_TABLE};
/// assert_ne!(lock_key("app", DEFAULT_TABLE), lock_key("tenant_2", DEFAULT_TABLE));
/// ```
pub fn lock_key(schema: &str, table: &str) -> i64 {
    let digest = Sha256::digest(format!("matrx-orm migrations {schema}.{table}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// One row of the migrations table.
struct Recorded {
    version: i64,
    name: String,
    checksum: String,
    applied_at: DateTime<Utc>,
    execution_ms: i64,
}

fn read_recorded(rows: &[Row]) -> Result<Vec<Recorded>, MigrateError> {
    rows.iter()
        .map(|r| {
            Ok(Recorded {
                version: r.try_get(0).map_err(Error::from)?,
                name: r.try_get(1).map_err(Error::from)?,
                checksum: r.try_get(2).map_err(Error::from)?,
                applied_at: r.try_get(3).map_err(Error::from)?,
                execution_ms: r.try_get(4).map_err(Error::from)?,
            })
        })
        .collect()
}

/// A run: one connection holding the lock. Dropped without [`Run::finish`], it closes
/// the connection (the server then releases the lock and rolls back).
struct Run<'d> {
    conn: Option<Object>,
    /// The `Db`'s counters and statement mode (outside a transaction).
    via: Via<'d>,
    key: i64,
    table: String,
    /// Set when a `ROLLBACK` or `RESET ALL` failed: the connection's state is
    /// unknown, so it is closed rather than pooled.
    broken: AtomicBool,
}

impl<'d> Run<'d> {
    async fn start(db: &'d Db, migrator: &Migrator<'_>) -> Result<Run<'d>, MigrateError> {
        let conn = db.conn().await?;
        let via = db.scope().via();
        let schema = match &migrator.schema {
            Some(s) => s.clone(),
            None => current_schema(&run_query(&conn, via, CURRENT_SCHEMA, &[]).await?)?,
        };
        let run = Run {
            conn: Some(conn),
            via,
            key: lock_key(&schema, &migrator.table),
            table: qualified(Some(&schema), &migrator.table),
            broken: AtomicBool::new(false),
        };
        // Waiting here while another runner works; cancelled, the drop closes the
        // connection, so a lock granted meanwhile is not left on a pooled one.
        run_execute(run.client()?, via, LOCK, &[&run.key]).await?;
        tracing::debug!(table = %run.table, key = run.key, "migration lock taken");
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    \
             version bigint PRIMARY KEY,\n    \
             name text NOT NULL,\n    \
             checksum text NOT NULL,\n    \
             applied_at timestamptz NOT NULL DEFAULT now(),\n    \
             execution_ms bigint NOT NULL\n)",
            run.table
        );
        run_batch(run.client()?, via.counters, &create).await?;
        Ok(run)
    }

    fn client(&self) -> Result<&ClientWrapper, Error> {
        self.conn
            .as_deref()
            .ok_or_else(|| Error::Connection("the migration run has ended".to_owned()))
    }

    /// Releases the lock and pools the connection, then returns `result`; a failed
    /// release closes the connection (which releases the lock too).
    async fn finish<T>(mut self, result: Result<T, MigrateError>) -> Result<T, MigrateError> {
        if self.broken.load(Ordering::Relaxed) {
            // Dropped: the connection is closed, which releases the lock.
            return result;
        }
        let released = match self.client() {
            Ok(client) => run_execute(client, self.via, UNLOCK, &[&self.key]).await,
            Err(e) => Err(e),
        };
        match released {
            Ok(_) => {
                // Back to the pool: the lock is released and no transaction is open.
                drop(self.conn.take());
                tracing::debug!(table = %self.table, "migration lock released");
                result
            }
            Err(e) => result.and(Err(e.into())),
        }
    }

    async fn recorded(&self, migrations: &Migrations) -> Result<Vec<Recorded>, MigrateError> {
        let rows = run_query(self.client()?, self.via, &select_sql(&self.table), &[]).await?;
        let recorded = read_recorded(&rows)?;
        for r in &recorded {
            if let Some(m) = migrations.get(r.version) {
                let current = m.checksum();
                if current != r.checksum {
                    return Err(MigrateError::Changed {
                        version: r.version,
                        name: m.name.to_string(),
                        applied: r.checksum.clone(),
                        current,
                    });
                }
            }
        }
        Ok(recorded)
    }

    async fn up(&self, migrations: &Migrations, to: i64) -> Result<Vec<Ran>, MigrateError> {
        let recorded = self.recorded(migrations).await?;
        let mut ran = Vec::new();
        for m in migrations.iter() {
            if m.version > to || recorded.iter().any(|r| r.version == m.version) {
                continue;
            }
            let elapsed = self.apply(m, Direction::Up).await?;
            ran.push(Ran {
                version: m.version,
                name: m.name.to_string(),
                direction: Direction::Up,
                elapsed,
            });
        }
        Ok(ran)
    }

    async fn down(&self, migrations: &Migrations, steps: usize) -> Result<Vec<Ran>, MigrateError> {
        let recorded = self.recorded(migrations).await?;
        let mut ran = Vec::new();
        for r in recorded.iter().rev().take(steps) {
            let m = migrations
                .get(r.version)
                .ok_or_else(|| MigrateError::Missing {
                    version: r.version,
                    name: r.name.clone(),
                })?;
            let elapsed = self.apply(m, Direction::Down).await?;
            ran.push(Ran {
                version: m.version,
                name: m.name.to_string(),
                direction: Direction::Down,
                elapsed,
            });
        }
        Ok(ran)
    }

    /// Runs one way of migration `m`, then records it in the table (up) or removes
    /// its row (down): together in one transaction, or, for a file marked
    /// `-- matrx-orm: no-transaction`, statement by statement with the bookkeeping last.
    async fn apply(&self, m: &Migration, direction: Direction) -> Result<Duration, MigrateError> {
        let result = self.apply_script(m, direction).await;
        // Settings a migration changed for its session (`SET search_path`, `SET
        // statement_timeout`, outside a transaction or committed with it) reach
        // neither the next migration nor, through the pool, the application.
        let reset = match self.client() {
            Ok(client) => run_batch(client, self.via.counters, "RESET ALL").await,
            Err(e) => Err(e),
        };
        if reset.is_err() {
            self.broken.store(true, Ordering::Relaxed);
        }
        result
    }

    async fn apply_script(
        &self,
        m: &Migration,
        direction: Direction,
    ) -> Result<Duration, MigrateError> {
        let (sql, in_transaction) = match direction {
            Direction::Up => (&*m.up, m.up_in_transaction()),
            Direction::Down => (
                m.down
                    .as_deref()
                    .ok_or_else(|| MigrateError::Irreversible {
                        version: m.version,
                        name: m.name.to_string(),
                    })?,
                m.down_in_transaction(),
            ),
        };
        let client = self.client()?;
        let failed = |statement: Option<usize>| {
            move |source: Error| MigrateError::Failed {
                version: m.version,
                name: m.name.to_string(),
                statement,
                source: Box::new(source),
            }
        };
        let started = Instant::now();
        if in_transaction {
            run_batch(client, self.via.counters, "BEGIN").await?;
            let applied = async {
                run_batch(client, self.via.counters, sql)
                    .await
                    .map_err(failed(None))?;
                let elapsed = started.elapsed();
                self.bookkeeping(self.via, m, direction, elapsed).await?;
                Ok::<_, MigrateError>(elapsed)
            }
            .await;
            let elapsed = match applied {
                Ok(elapsed) => elapsed,
                Err(e) => {
                    if run_batch(client, self.via.counters, "ROLLBACK")
                        .await
                        .is_err()
                    {
                        self.broken.store(true, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            };
            // A failed COMMIT ends the transaction (rolled back) on the server.
            run_batch(client, self.via.counters, "COMMIT")
                .await
                .map_err(failed(None))?;
            self.log(m, direction, elapsed);
            return Ok(elapsed);
        }
        for (i, statement) in statements(sql).into_iter().enumerate() {
            run_batch(client, self.via.counters, statement)
                .await
                .map_err(failed(Some(i + 1)))?;
        }
        let elapsed = started.elapsed();
        self.bookkeeping(self.via, m, direction, elapsed).await?;
        self.log(m, direction, elapsed);
        Ok(elapsed)
    }

    async fn bookkeeping(
        &self,
        via: Via<'_>,
        m: &Migration,
        direction: Direction,
        elapsed: Duration,
    ) -> Result<(), MigrateError> {
        let client = self.client()?;
        match direction {
            Direction::Up => {
                let sql = format!(
                    "INSERT INTO {} (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)",
                    self.table
                );
                let name: &str = &m.name;
                run_execute(
                    client,
                    via,
                    &sql,
                    &[&m.version, &name, &m.checksum(), &millis(elapsed)],
                )
                .await?;
            }
            Direction::Down => {
                let sql = format!("DELETE FROM {} WHERE version = $1", self.table);
                run_execute(client, via, &sql, &[&m.version]).await?;
            }
        }
        Ok(())
    }

    fn log(&self, m: &Migration, direction: Direction, elapsed: Duration) {
        tracing::info!(
            version = m.version,
            name = %m.name,
            ?direction,
            elapsed_ms = millis(elapsed),
            "migration ran"
        );
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Drop for Run<'_> {
    /// A run dropped part-way (cancelled, or after a failed `ROLLBACK`): ask the
    /// server to cancel whatever statement is still running, then close the
    /// connection; the server ends the session, rolling back and releasing the lock.
    /// Without the cancel a long statement would hold the lock until it finished.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let token = conn.cancel_token();
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(tokio_postgres::NoTls).await {
                    tracing::debug!(error = %e, "cancelling a dropped migration run failed");
                }
            });
        }
        drop(Object::take(conn));
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_differ_per_schema_and_table() {
        assert_ne!(lock_key("a", "t"), lock_key("b", "t"));
        assert_ne!(lock_key("a", "t"), lock_key("a", "u"));
        assert_eq!(lock_key("a", "t"), lock_key("a", "t"));
    }
}
