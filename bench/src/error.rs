//! The crate's error type: a small enum every fallible function returns, so
//! errors propagate with `?` up to `main`, which prints them and exits 1.

use std::fmt;

/// Any error of the benchmark: database, I/O, bad command line, bad data.
#[derive(Debug)]
pub enum BenchError {
    /// An error reported by the PostgreSQL client or server.
    Db(tokio_postgres::Error),
    /// An operating-system error (spawning a child process, reading /proc).
    Io(std::io::Error),
    /// A bad command line; the message says what was wrong.
    Usage(String),
    /// Anything else (unexpected data, a failed child process, ...).
    Other(String),
}

/// `Result` with [`BenchError`] as the error type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

impl From<matrx_orm::Error> for BenchError {
    fn from(e: matrx_orm::Error) -> Self {
        BenchError::Other(format!("matrx-orm: {e}"))
    }
}

impl BenchError {
    /// Shorthand for [`BenchError::Other`].
    pub fn other(msg: impl Into<String>) -> Self {
        BenchError::Other(msg.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Db(e) => {
                // tokio_postgres::Error's Display hides the server message
                // ("db error"); show it when there is one.
                if let Some(db) = e.as_db_error() {
                    return write!(f, "database error: {}: {}", db.code().code(), db.message());
                }
                write!(f, "database error: {e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            BenchError::Io(e) => write!(f, "I/O error: {e}"),
            BenchError::Usage(msg) => write!(f, "{msg}"),
            BenchError::Other(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Db(e) => Some(e),
            BenchError::Io(e) => Some(e),
            BenchError::Usage(_) | BenchError::Other(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for BenchError {
    fn from(e: tokio_postgres::Error) -> Self {
        BenchError::Db(e)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError::Io(e)
    }
}

impl From<serde_json::Error> for BenchError {
    fn from(e: serde_json::Error) -> Self {
        BenchError::Other(format!("JSON error: {e}"))
    }
}
