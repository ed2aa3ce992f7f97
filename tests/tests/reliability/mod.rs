//! Helpers of the reliability tests (`faults_*`, `hostile_*`, `fuzz_*`): a seeded
//! random source, a `tracing` subscriber that records the SQL text of every statement
//! the library sends, pools tagged with an application name (so their backends can be
//! found in `pg_stat_activity`), and a private PostgreSQL cluster a test may restart.
#![allow(dead_code)]

pub mod cluster;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use matrx_orm::Db;

use crate::common::TestDb;

// ----- randomness ---------------------------------------------------------------------

/// A small deterministic generator (xorshift64*): reproducible runs without a
/// dependency. Seeded by [`seed`].
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An independent generator for a worker.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// The seed of a randomised test: `MATRX_FAULT_SEED` if set, else a fixed value per
/// test (runs are reproducible). Printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("MATRX_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            test.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        });
    eprintln!("{test}: seed {seed} (set MATRX_FAULT_SEED to replay)");
    seed
}

// ----- SQL capture ----------------------------------------------------------------------

/// The SQL texts of the statements run while a [`SqlLog::install`] guard is alive on
/// this thread. The library traces every statement in a span (`matrx_orm.query`,
/// `matrx_orm.execute`, `matrx_orm.batch`) whose `sql` field is the statement's text.
#[derive(Clone, Default)]
pub struct SqlLog(Arc<Mutex<Vec<String>>>);

impl SqlLog {
    /// Records statements run on this thread (a current-thread runtime: everything the
    /// test awaits) until the guard is dropped.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(Capture {
            log: self.clone(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The statements recorded so far, emptying the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, sql: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sql);
    }
}

struct Capture {
    log: SqlLog,
    next_id: AtomicU64,
}

struct SqlField(Option<String>);

impl tracing::field::Visit for SqlField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "sql" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "sql" && self.0.is_none() {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if span.metadata().name().starts_with("matrx_orm.") {
            let mut sql = SqlField(None);
            span.record(&mut sql);
            if let Some(sql) = sql.0 {
                self.log.push(sql);
            }
        }
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The distinct placeholder numbers (`$n`) of an SQL text, sorted.
pub fn placeholders(sql: &str) -> Vec<usize> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if end > start {
                out.push(sql[start..end].parse().unwrap_or(usize::MAX));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Asserts the placeholders of `sql` are exactly `$1..$n` for some n, returns n.
pub fn assert_contiguous_placeholders(sql: &str) -> usize {
    let seen = placeholders(sql);
    let expected: Vec<usize> = (1..=seen.len()).collect();
    assert_eq!(seen, expected, "placeholders are $1..$n: {sql}");
    seen.len()
}

// ----- pools and backends ----------------------------------------------------------------

/// `url` with `application_name` set, in URL or key-value form.
pub fn with_app_name(url: &str, app: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={app}")
    } else {
        format!("{url} application_name={app}")
    }
}

/// A pool on `tdb`'s schema whose backends show `application_name = app`.
pub async fn tagged_pool(tdb: &TestDb, app: &str, size: usize, wait: Duration) -> Db {
    Db::builder(with_app_name(tdb.schema.url(), app))
        .search_path(tdb.schema.name())
        .pool_size(size)
        .pool_wait(wait)
        .connect()
        .await
        .expect("connect a tagged pool")
}

/// The backends of application `app` by state (`active`, `idle`, `idle in transaction`
/// ...), as seen from another connection.
pub async fn backend_states(observer: &Db, app: &str) -> Vec<String> {
    let rows = observer
        .query_sql(
            "SELECT coalesce(state, '') FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid() ORDER BY pid",
            &[&app],
        )
        .await
        .expect("read pg_stat_activity");
    rows.iter().map(|r| r.get(0)).collect()
}

/// Whether the next statements on `db` run inside a transaction left open: two
/// statements in autocommit mode get two transaction ids, inside a transaction one.
/// Meaningful on a pool of one connection.
pub async fn runs_in_open_transaction(db: &Db) -> bool {
    let xid = || async {
        let rows = db
            .query_sql("SELECT pg_current_xact_id()::text", &[])
            .await
            .expect("read the transaction id");
        rows[0].get::<_, String>(0)
    };
    let a = xid().await;
    let b = xid().await;
    a == b
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- hostile values --------------------------------------------------------------------

/// The marker every hostile value carries: if any value reached the SQL text, the
/// marker would be found there.
pub const MARKER: char = '☠';

/// Strings that break naive SQL building, naive escaping or naive encodings, each
/// ending in [`MARKER`] and its index (so they are distinct and traceable).
pub fn hostile() -> Vec<String> {
    let long = "'".repeat(5_000) + &"\\".repeat(5_000);
    [
        "'",
        "''",
        "\"",
        "\\",
        "\\'",
        "'; DROP TABLE authors; --",
        "\"; DROP TABLE \"authors\"; --",
        "' OR '1'='1",
        "1 OR 1=1",
        "') OR ('x'='x",
        "'||pg_sleep(10)||'",
        "$1",
        "$$",
        "$tag$ body $tag$",
        "E'\\x41'",
        "U&\"\\0041\"",
        "/* unterminated",
        "*/",
        "-- comment",
        ";",
        "%",
        "_",
        "%_\\%",
        "[a-z]*",
        "NULL",
        "DEFAULT",
        "{a,b}",
        "{\"a\",\"b\"}",
        "(1,2)",
        "\\x0001",
        "line\nbreak\r\ttab",
        "👩‍👩‍👧‍👦 family",
        "مرحبا",
        "שלום \u{202E}reversed\u{202C}",
        "e\u{0301}\u{0327} combining",
        "zero\u{200B}width",
        "\u{FEFF}bom",
        "\u{10FFFF}",
        "  padded  ",
        "",
        &long,
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| format!("{s}{MARKER}{i}"))
    .collect()
}

/// Asserts statements were captured and none carries a hostile value.
pub fn assert_no_value_in_sql(statements: &[String]) {
    assert!(!statements.is_empty(), "no statement was captured");
    for sql in statements {
        assert!(
            !sql.contains(MARKER),
            "a value reached the SQL text: {}",
            &sql[..sql.len().min(500)]
        );
    }
}
