//! Resolving the server once per process.

use std::env::{self, VarError};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::cluster;
use crate::db::{connect_within, query_text, redact_password};
use crate::TestkitError;

/// The local server tried when `DATABASE_URL` is not set.
const LOCAL_DEFAULT_URL: &str = "postgres://root@localhost:5432/test";
/// How long the local default gets to answer.
const LOCAL_DEFAULT_LIMIT: Duration = Duration::from_secs(2);
/// How long a configured or freshly started server gets to answer.
const CONFIGURED_LIMIT: Duration = Duration::from_secs(10);
/// Forces the throwaway cluster when set to anything but empty or `0`.
const FORCE_THROWAWAY_VAR: &str = "MATRX_TEST_THROWAWAY";

static SERVER: OnceCell<Result<Server, TestkitError>> = OnceCell::const_new();

/// Where the server returned by [`server`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerSource {
    /// The `DATABASE_URL` environment variable.
    EnvVar,
    /// The local default `postgres://root@localhost:5432/test`.
    LocalDefault,
    /// A throwaway cluster this process started; it is removed when the process ends.
    Throwaway,
}

/// A PostgreSQL server that answered, as resolved by [`server`].
#[derive(Debug, Clone)]
pub struct Server {
    url: String,
    source: ServerSource,
    major_version: u32,
    pg_stat_statements: bool,
}

impl Server {
    /// The connection URL, e.g. `postgres://root@localhost:5432/test`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the server came from.
    pub fn source(&self) -> ServerSource {
        self.source
    }

    /// The server's major version, e.g. `15`.
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// Whether `pg_stat_statements` is in the server's `shared_preload_libraries`,
    /// i.e. whether `CREATE EXTENSION pg_stat_statements` will give a working view.
    pub fn has_pg_stat_statements(&self) -> bool {
        self.pg_stat_statements
    }
}

/// The server for this process, resolved on first use and cached afterwards.
///
/// See the [crate documentation](crate) for the resolution order. A failure is
/// cached too, so every caller gets the same error without retrying.
///
/// ```no_run
/// # async fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
/// let server = matrx_orm_testkit::server().await?;
/// println!("testing against {} ({:?})", server.url(), server.source());
/// # Ok(()) }
/// ```
pub async fn server() -> Result<&'static Server, TestkitError> {
    SERVER
        .get_or_init(resolve)
        .await
        .as_ref()
        .map_err(Clone::clone)
}

/// Stops the throwaway cluster if this process started one, and waits until its
/// files are removed. A no-op otherwise, and when called again.
///
/// Without this call the cluster is removed anyway once the process ends; call it
/// to stop earlier. Afterwards [`server`] still returns the same, now dead, server.
pub async fn shutdown() {
    match tokio::runtime::Handle::try_current() {
        // A failed join only means the watchdog could not be awaited; it still cleans up.
        Ok(runtime) => drop(runtime.spawn_blocking(cluster::stop).await),
        Err(_) => cluster::stop(),
    }
}

async fn resolve() -> Result<Server, TestkitError> {
    if throwaway_forced() {
        let skipped = format!(
            "{FORCE_THROWAWAY_VAR} is set, so DATABASE_URL and {LOCAL_DEFAULT_URL} were skipped"
        );
        return start_throwaway(vec![skipped]).await;
    }
    match env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => return from_database_url(&url).await,
        Err(VarError::NotUnicode(_)) => {
            return Err(TestkitError::DatabaseUrlUnreachable {
                url: String::from("<not valid UTF-8>"),
                reason: String::from("the value is not valid UTF-8"),
            })
        }
        _ => {}
    }
    let local = describe(
        LOCAL_DEFAULT_URL,
        ServerSource::LocalDefault,
        LOCAL_DEFAULT_LIMIT,
    );
    if let Ok(server) = local.await {
        return Ok(server);
    }
    start_throwaway(vec![
        String::from("DATABASE_URL is not set"),
        format!("nothing answers at {LOCAL_DEFAULT_URL}"),
    ])
    .await
}

fn throwaway_forced() -> bool {
    env::var(FORCE_THROWAWAY_VAR).is_ok_and(|value| !value.is_empty() && value != "0")
}

async fn from_database_url(url: &str) -> Result<Server, TestkitError> {
    describe(url, ServerSource::EnvVar, CONFIGURED_LIMIT)
        .await
        .map_err(|err| TestkitError::DatabaseUrlUnreachable {
            url: redact_password(url),
            reason: err.to_string(),
        })
}

/// Starts a throwaway cluster; `tried` lists the steps that came before, for the error.
async fn start_throwaway(mut tried: Vec<String>) -> Result<Server, TestkitError> {
    let Some(binaries) = cluster::find_binaries() else {
        tried.push(format!(
            "no initdb/pg_ctl were found on PATH or under {}/*/bin",
            cluster::VERSIONED_ROOT
        ));
        return Err(TestkitError::NoServer { tried });
    };
    let started = tokio::task::spawn_blocking(move || cluster::start(binaries))
        .await
        .map_err(|err| TestkitError::throwaway("the start-up task", err))??;
    let server = match describe(&started.url, ServerSource::Throwaway, CONFIGURED_LIMIT).await {
        Ok(server) => server,
        Err(err) => {
            shutdown().await;
            return Err(TestkitError::throwaway(
                "connecting to the new cluster",
                err,
            ));
        }
    };
    eprintln!(
        "started a throwaway PostgreSQL {} cluster on 127.0.0.1:{}",
        server.major_version, started.port
    );
    Ok(server)
}

/// Connects to `url` and asks the server about itself, all within `limit`.
async fn describe(
    url: &str,
    source: ServerSource,
    limit: Duration,
) -> Result<Server, TestkitError> {
    let started = tokio::time::Instant::now();
    let client = connect_within(url, limit).await?;
    let remaining = limit.saturating_sub(started.elapsed());
    let answers = async {
        query_text(&client, "SELECT 1").await?;
        let version = query_text(&client, "SHOW server_version_num").await?;
        let preload = query_text(&client, "SHOW shared_preload_libraries").await?;
        Ok::<_, TestkitError>((version, preload))
    };
    let (version, preload) = tokio::time::timeout(remaining, answers)
        .await
        .map_err(|_| TestkitError::Connect {
            url: redact_password(url),
            reason: format!("the server did not answer queries within {limit:?}"),
        })??;
    Ok(Server {
        url: url.to_owned(),
        source,
        major_version: major_version(&version),
        pg_stat_statements: preloads_pg_stat_statements(&preload),
    })
}

/// `150020` → `15`, `90624` → `9`.
fn major_version(server_version_num: &str) -> u32 {
    server_version_num
        .trim()
        .parse::<u32>()
        .map_or(0, |num| num / 10_000)
}

fn preloads_pg_stat_statements(shared_preload_libraries: &str) -> bool {
    shared_preload_libraries
        .split(',')
        .map(|library| library.trim().trim_matches('"'))
        .any(|library| library == "pg_stat_statements")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_version_from_version_num() {
        assert_eq!(major_version("150020"), 15);
        assert_eq!(major_version("90624"), 9);
        assert_eq!(major_version("garbage"), 0);
    }

    #[test]
    fn finds_pg_stat_statements_in_preload_list() {
        assert!(preloads_pg_stat_statements("pg_stat_statements"));
        assert!(preloads_pg_stat_statements(
            "auto_explain, \"pg_stat_statements\""
        ));
        assert!(!preloads_pg_stat_statements(""));
        assert!(!preloads_pg_stat_statements("pg_stat_statements_extra"));
    }
}
