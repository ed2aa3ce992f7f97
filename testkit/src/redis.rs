//! A Redis server of a test's own.
//!
//! [`RedisServer::start`] starts the machine's `redis-server` on a free port of
//! 127.0.0.1, keeping nothing on disk, under a watchdog shell that stops it and removes
//! its directory when the handle is dropped or the process ends, however it ends.
//!
//! ```no_run
//! # async fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
//! use matrx_orm_testkit::RedisServer;
//! let redis = RedisServer::start().await?;
//! println!("redis at {}", redis.url()); // redis://127.0.0.1:<port>/
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::cluster::{
    create_temp_dir, find_service_program, free_port, read_from, spawn_watchdog, RunAs,
};
use crate::TestkitError;

/// Where `redis-server` is looked for besides `PATH`.
const PROGRAM_DIRS: [&str; 2] = ["/usr/bin", "/usr/local/bin"];
/// How long the server gets to accept connections.
const READY_LIMIT: Duration = Duration::from_secs(15);
/// Waits for the pipe to close, then stops the server and removes the directory.
/// Arguments: `$0` redis-server, `$1` its port, `$2` the directory.
const WATCHDOG_SCRIPT: &str = r#""$0" --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$2" --logfile "$2/redis.log" --daemonize no & pid=$!; read -r _line; kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$2""#;

/// A running `redis-server`; stopped and its directory removed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    watchdog: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port; fails with
    /// [`TestkitError::ServiceUnavailable`] when it is not installed or does not start.
    pub async fn start() -> Result<RedisServer, TestkitError> {
        let unavailable = |reason: String| TestkitError::unavailable("redis-server", reason);
        let program = find_service_program("redis-server", &PROGRAM_DIRS).ok_or_else(|| {
            unavailable("no redis-server program on PATH (apt-get install redis-server)".into())
        })?;
        let run_as = RunAs::Myself;
        let dir = create_temp_dir(run_as)?;
        let port = free_port()?;
        let port_arg = port.to_string();
        let args = [
            program.as_os_str(),
            std::ffi::OsStr::new(&port_arg),
            dir.as_os_str(),
        ];
        let watchdog = spawn_watchdog(run_as, &dir, WATCHDOG_SCRIPT, &args)
            .map_err(|err| unavailable(format!("running {}: {err}", program.display())))?;
        let server = RedisServer {
            watchdog: Some(watchdog),
            dir,
            port,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The URL clients connect to: `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        read_from(&self.dir.join("redis.log"), 0)
    }

    /// Stops the server now (its clients see their connections close).
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }

    /// Waits until the server answers a `PING`.
    async fn wait_ready(&self) -> Result<(), TestkitError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = tokio::time::Instant::now();
        while started.elapsed() < READY_LIMIT {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut reply = [0u8; 7];
                let pinged = async {
                    stream.write_all(b"PING\r\n").await?;
                    stream.read_exact(&mut reply).await
                };
                if pinged.await.is_ok() && &reply == b"+PONG\r\n" {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(TestkitError::unavailable(
            "redis-server",
            format!(
                "it did not answer on port {} (waited up to {READY_LIMIT:?}); its log:\n{}",
                self.port,
                self.log()
            ),
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
