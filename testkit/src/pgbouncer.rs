//! A PgBouncer of a test's own, in front of the resolved server.
//!
//! [`PgBouncer::builder`] writes a `pgbouncer.ini` and a user list into a fresh
//! temporary directory, picks a free port, and starts the machine's `pgbouncer` (as the
//! `postgres` user when the tests run as root: PgBouncer refuses root). Like the
//! throwaway cluster, it runs under a watchdog shell that stops it and removes the
//! directory when the handle is dropped or the process ends, however it ends.
//!
//! ```no_run
//! # async fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
//! use matrx_orm_testkit::{PgBouncer, TestSchema};
//! let schema = TestSchema::create("pooled").await?;
//! let bouncer = PgBouncer::builder(schema.url())
//!     .pool_size(2)
//!     .search_path(schema.name())
//!     .start()
//!     .await?;
//! let client = matrx_orm_testkit::connect(bouncer.url()).await?;
//! client.simple_query("SELECT 1").await.ok();
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::cluster::{
    create_temp_dir, find_service_program, free_port, read_from, spawn_watchdog, RunAs,
};
use crate::TestkitError;

/// Where PgBouncer is looked for besides `PATH` (Debian installs it in `/usr/sbin`).
const PROGRAM_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];
/// How long PgBouncer gets to accept connections.
const READY_LIMIT: Duration = Duration::from_secs(15);
/// Waits for the pipe to close, then stops PgBouncer and removes the directory.
/// Arguments: `$0` pgbouncer, `$1` its ini file, `$2` the temporary directory.
const WATCHDOG_SCRIPT: &str = r#""$0" "$1" >/dev/null 2>&1 & pid=$!; read -r _line; kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$2""#;

/// How a [`PgBouncer`] pools: see [`PgBouncer::builder`].
#[derive(Debug, Clone)]
pub struct PgBouncerBuilder {
    server_url: String,
    pool_mode: &'static str,
    pool_size: u32,
    search_path: Option<String>,
}

/// A running PgBouncer; stopped and its directory removed when dropped.
#[derive(Debug)]
pub struct PgBouncer {
    watchdog: Option<Child>,
    url: String,
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// A PgBouncer in front of the server at `server_url` (its host, port, user and
    /// database), in transaction pooling mode with 2 server connections per pool.
    pub fn builder(server_url: &str) -> PgBouncerBuilder {
        PgBouncerBuilder {
            server_url: server_url.to_owned(),
            pool_mode: "transaction",
            pool_size: 2,
            search_path: None,
        }
    }

    /// The URL clients connect to: the server's user and database, PgBouncer's port.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PgBouncer's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        read_from(&self.dir.join("pgbouncer.log"), 0)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

impl PgBouncerBuilder {
    /// Server connections per database and user (`default_pool_size`; default 2).
    /// Small, so that many client connections share few server connections.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// `session` or `transaction` pooling (default `transaction`).
    pub fn session_pooling(mut self, session: bool) -> Self {
        self.pool_mode = if session { "session" } else { "transaction" };
        self
    }

    /// Sets `search_path` on each server connection PgBouncer opens (its
    /// `connect_query`): how a pooled application reaches a schema without session
    /// state of its own. `schema` must be a plain identifier.
    pub fn search_path(mut self, schema: &str) -> Self {
        self.search_path = Some(schema.to_owned());
        self
    }

    /// Writes the configuration and starts PgBouncer on a free port; fails with
    /// [`TestkitError::ServiceUnavailable`] when it is not installed or does not start.
    pub async fn start(self) -> Result<PgBouncer, TestkitError> {
        let unavailable = |reason: String| TestkitError::unavailable("pgbouncer", reason);
        let program = find_service_program("pgbouncer", &PROGRAM_DIRS).ok_or_else(|| {
            unavailable(
                "no pgbouncer program on PATH or in /usr/sbin (apt-get install pgbouncer)".into(),
            )
        })?;
        let target: tokio_postgres::Config = self
            .server_url
            .parse()
            .map_err(|e| unavailable(format!("the server URL does not parse: {e}")))?;
        let host = match target.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) if host == "localhost" => {
                "127.0.0.1".to_owned()
            }
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => return Err(unavailable("the server is not reached over TCP".into())),
        };
        let server_port = target.get_ports().first().copied().unwrap_or(5432);
        let user = target.get_user().unwrap_or("postgres").to_owned();
        let dbname = target.get_dbname().unwrap_or(&user).to_owned();
        if let Some(schema) = &self.search_path {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(unavailable(format!(
                    "search_path {schema:?} is not a plain identifier"
                )));
            }
        }
        let run_as = RunAs::detect()?;
        let dir = create_temp_dir(run_as)?;
        let port = free_port()?;
        let mut entry = format!("host={host} port={server_port} dbname={dbname} user={user}");
        if let Some(password) = target.get_password() {
            let password = String::from_utf8_lossy(password);
            let _ = write!(entry, " password='{}'", password.replace('\'', "''"));
        }
        if let Some(schema) = &self.search_path {
            let _ = write!(entry, " connect_query='SET search_path TO \"{schema}\"'");
        }
        let ini = format!(
            "[databases]\n{dbname} = {entry}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\n\
             pool_mode = {mode}\ndefault_pool_size = {size}\nmin_pool_size = 0\n\
             reserve_pool_size = 0\nmax_client_conn = 1000\n\
             server_reset_query =\nignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             log_connections = 0\nlog_disconnections = 0\n",
            dir = dir.display(),
            mode = self.pool_mode,
            size = self.pool_size,
        );
        let ini_path = dir.join("pgbouncer.ini");
        let written = fs::write(&ini_path, ini)
            .and_then(|()| fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n")))
            .and_then(|()| run_as.own(&ini_path))
            .and_then(|()| run_as.own(&dir.join("userlist.txt")));
        if let Err(err) = written {
            let _ = fs::remove_dir_all(&dir);
            return Err(unavailable(format!("writing its configuration: {err}")));
        }
        let args = [program.as_os_str(), ini_path.as_os_str(), dir.as_os_str()];
        let watchdog = spawn_watchdog(run_as, &dir, WATCHDOG_SCRIPT, &args)
            .map_err(|err| unavailable(format!("running {}: {err}", program.display())))?;
        let bouncer = PgBouncer {
            watchdog: Some(watchdog),
            url: format!("postgres://{user}@127.0.0.1:{port}/{dbname}"),
            dir,
            port,
        };
        bouncer.wait_ready().await?;
        Ok(bouncer)
    }
}

impl PgBouncer {
    /// Waits until PgBouncer accepts TCP connections.
    async fn wait_ready(&self) -> Result<(), TestkitError> {
        let started = tokio::time::Instant::now();
        while started.elapsed() < READY_LIMIT {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if self.log().contains("FATAL") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(TestkitError::unavailable(
            "pgbouncer",
            format!(
                "it did not listen on port {} (waited up to {READY_LIMIT:?}); its log:\n{}",
                self.port,
                self.log()
            ),
        ))
    }
}
