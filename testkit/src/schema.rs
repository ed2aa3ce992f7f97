//! One uniquely named schema per test.

use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::db::{connect, execute};
use crate::{server, TestkitError};

/// Longest sanitized prefix kept in a schema name.
const MAX_PREFIX_LEN: usize = 40;
/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
const MAX_IDENT_LEN: usize = 63;
/// How long the drop in [`Drop`] may take before the schema is left behind.
const DROP_LIMIT: Duration = Duration::from_secs(15);

/// Numbers the schemas of this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A schema created for one test on the [`server`](crate::server) and dropped
/// (with everything in it) by [`drop_now`](Self::drop_now) or, failing that, when
/// the value is dropped.
///
/// The name is `<prefix>_<pid>_<counter>_<nanos>`, unique across parallel tests
/// and processes sharing one server.
///
/// ```no_run
/// # async fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
/// let schema = matrx_orm_testkit::TestSchema::create("orders").await?;
/// assert!(schema.name().starts_with("orders_"));
/// // ... use it ...
/// schema.drop_now().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestSchema {
    name: String,
    url: String,
    dropped: bool,
}

impl TestSchema {
    /// Creates a fresh schema whose name starts with `prefix`, lowercased and
    /// reduced to `[a-z0-9_]` (at most 40 characters).
    pub async fn create(prefix: &str) -> Result<TestSchema, TestkitError> {
        let server = server().await?;
        let name = unique_name(prefix);
        let client = connect(server.url()).await?;
        execute(&client, &format!("CREATE SCHEMA {}", quote_ident(&name))).await?;
        Ok(TestSchema {
            name,
            url: server.url().to_owned(),
            dropped: false,
        })
    }

    /// The schema's name, unquoted; see [`quote_ident`] for use in SQL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the server the schema lives on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the schema and everything in it now, reporting any failure.
    ///
    /// Either way the schema is not dropped again when the value goes away.
    pub async fn drop_now(mut self) -> Result<(), TestkitError> {
        self.dropped = true;
        let client = connect(&self.url).await?;
        execute(
            &client,
            &format!("DROP SCHEMA {} CASCADE", quote_ident(&self.name)),
        )
        .await
    }

    /// The statements [`Drop`] runs: never wait forever on a lock still held by
    /// a session of the test that cannot make progress while we block.
    fn best_effort_drop_sql(&self) -> String {
        format!(
            "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&self.name)
        )
    }
}

impl Drop for TestSchema {
    /// Drops the schema unless [`TestSchema::drop_now`] ran, ignoring failures.
    ///
    /// Works inside and outside a Tokio runtime: the work happens on a separate
    /// thread with its own single-threaded runtime, which this joins.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.dropped = true;
        let url = self.url.clone();
        let sql = self.best_effort_drop_sql();
        let worker = std::thread::Builder::new()
            .name(String::from("matrx-orm-testkit-drop"))
            .spawn(move || run_detached(&url, &sql));
        if let Ok(worker) = worker {
            let _ = worker.join();
        }
    }
}

/// Runs `sql` on `url` on a runtime of its own, giving up after [`DROP_LIMIT`].
fn run_detached(url: &str, sql: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let attempt = async {
            let client = connect(url).await?;
            execute(&client, sql).await
        };
        let _ = tokio::time::timeout(DROP_LIMIT, attempt).await;
    });
}

/// Quotes `ident` as a PostgreSQL identifier: `a"b` → `"a""b"`.
///
/// ```
/// assert_eq!(matrx_orm_testkit::quote_ident(r#"my "schema""#), r#""my ""schema""""#);
/// ```
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `<prefix>_<pid>_<counter>_<nanos>`, at most [`MAX_IDENT_LEN`] bytes.
fn unique_name(prefix: &str) -> String {
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{}_{counter}_{}", process::id(), crate::clock_nanos());
    let mut prefix = sanitize_prefix(prefix);
    prefix.truncate(MAX_IDENT_LEN.saturating_sub(suffix.len()));
    prefix + &suffix
}

/// Lowercase `[a-z0-9_]`, starting with a letter or `_`, at most [`MAX_PREFIX_LEN`] long.
fn sanitize_prefix(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect();
    if clean.is_empty() {
        clean.push_str("test");
    } else if clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, 't');
    }
    clean.truncate(MAX_PREFIX_LEN);
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_sanitized() {
        assert_eq!(sanitize_prefix("Users-Roundtrip"), "users_roundtrip");
        assert_eq!(sanitize_prefix("ünï code"), "_n__code");
        assert_eq!(sanitize_prefix(""), "test");
        assert_eq!(sanitize_prefix("1st"), "t1st");
        assert_eq!(sanitize_prefix(&"x".repeat(100)).len(), MAX_PREFIX_LEN);
    }

    #[test]
    fn names_are_unique_and_fit_an_identifier() {
        let first = unique_name(&"long".repeat(30));
        let second = unique_name(&"long".repeat(30));
        assert_ne!(first, second);
        assert!(first.len() <= MAX_IDENT_LEN, "{first} is too long");
        assert!(first.starts_with("longlong"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
