//! The one error type of the crate.
//!
//! Every fallible call returns [`Result<T>`]. Database faults are classified from their
//! SQLSTATE into typed variants that name the constraint, model or column at fault, so a
//! caller can `match` on what went wrong instead of parsing messages.

use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Shorthand for `std::result::Result<T, matrx_orm::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in matrx-orm.
///
/// ```
/// use matrx_orm::Error;
///
/// fn explain(err: &Error) -> String {
///     match err {
///         Error::NotFound { model } => format!("no such {model}"),
///         Error::UniqueViolation { constraint, .. } => format!("duplicate ({constraint})"),
///         other => other.to_string(),
///     }
/// }
/// assert_eq!(explain(&Error::NotFound { model: "Customer" }), "no such Customer");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A query that must return one row returned none.
    #[error("{model} not found")]
    NotFound {
        /// The model that was looked up.
        model: &'static str,
    },

    /// A query that must return one row returned several.
    #[error("expected one {model}, found {count}")]
    MultipleRows {
        /// The model that was looked up.
        model: &'static str,
        /// How many rows came back (at least two).
        count: usize,
    },

    /// A `UNIQUE` or primary-key constraint was violated (SQLSTATE 23505).
    #[error("unique violation on {constraint}: {message}")]
    UniqueViolation {
        /// The violated constraint's name.
        constraint: String,
        /// The table it belongs to, when the server says.
        table: Option<String>,
        /// The server's message and detail.
        message: String,
    },

    /// A foreign-key constraint was violated (SQLSTATE 23503).
    #[error("foreign key violation on {constraint}: {message}")]
    ForeignKeyViolation {
        /// The violated constraint's name.
        constraint: String,
        /// The table it belongs to, when the server says.
        table: Option<String>,
        /// The server's message and detail.
        message: String,
    },

    /// A `CHECK` constraint was violated (SQLSTATE 23514).
    #[error("check violation on {constraint}: {message}")]
    CheckViolation {
        /// The violated constraint's name.
        constraint: String,
        /// The table it belongs to, when the server says.
        table: Option<String>,
        /// The server's message and detail.
        message: String,
    },

    /// A `NOT NULL` constraint was violated (SQLSTATE 23502).
    #[error("null value in column {column}: {message}")]
    NotNullViolation {
        /// The column that refused NULL.
        column: String,
        /// The table it belongs to, when the server says.
        table: Option<String>,
        /// The server's message.
        message: String,
    },

    /// A column's value could not be decoded into the model field's Rust type.
    #[error(
        "cannot decode {model}.{column} (PostgreSQL type {pg_type}) as {rust_type}: {message}"
    )]
    Decode {
        /// The model being decoded.
        model: &'static str,
        /// The column that failed.
        column: String,
        /// The field's Rust type.
        rust_type: &'static str,
        /// The column's PostgreSQL type, as the server reported it.
        pg_type: String,
        /// Why it failed.
        message: String,
    },

    /// A value the caller passed was refused before or by the server (a NUL byte in text,
    /// an out-of-range number, a malformed relation path, a key of the wrong arity...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The server could not be reached or the connection broke.
    #[error("connection error: {0}")]
    Connection(String),

    /// No connection became free in the pool within the configured wait.
    #[error("timed out after {0:?} waiting for a pooled connection")]
    PoolTimeout(Duration),

    /// The server cancelled a statement because of `statement_timeout` (SQLSTATE 57014).
    #[error("statement timed out: {0}")]
    StatementTimeout(String),

    /// A lazy load was attempted on a session or `Db` in strict mode.
    #[error("strict mode: lazy load of {model}.{relation} would run a query")]
    StrictLoad {
        /// The model whose relation was loaded.
        model: &'static str,
        /// The relation's name.
        relation: &'static str,
    },

    /// A to-one relation (`has_one`, or `belongs_to` columns that are not the target's
    /// primary key) matched several rows for one key, and its edge names no ordering or
    /// limit to pick one. Every loading strategy refuses the same way; order the edge
    /// (`Customer::PROFILE.order_by(..)`) to take the first row instead.
    #[error(
        "{model}.{relation}: {count} rows match key {key}, but a to-one relation holds at \
         most one (order the edge to take the first)"
    )]
    AmbiguousToOne {
        /// The model the relation is declared on.
        model: &'static str,
        /// The relation's name.
        relation: &'static str,
        /// The key that matched several rows, as written by `Debug`.
        key: String,
        /// How many rows matched.
        count: usize,
    },

    /// Something this configuration cannot do, refused before it is sent: session
    /// state (`search_path`, `statement_timeout`) or a user-defined type with
    /// [`StatementMode::Unnamed`](crate::StatementMode::Unnamed), which serves
    /// transaction poolers such as PgBouncer.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// TLS could not be set up (an unreadable `sslrootcert`, no trusted CA), or
    /// the handshake failed: the server's certificate was not trusted or names another
    /// host, or the server does not offer TLS where it is required.
    #[error("TLS: {0}")]
    Tls(String),

    /// The shared cache's external store (Redis) could not be reached or answered
    /// something unexpected. Loads never fail with it (a cache that cannot answer is
    /// a miss); [`DbBuilder::connect`](crate::DbBuilder::connect) does, when the
    /// store does not answer at start.
    #[error("cache store: {0}")]
    Cache(String),

    /// Any other error the server reported.
    #[error("database error {code}: {message}")]
    Database {
        /// The SQLSTATE code.
        code: String,
        /// The server's message.
        message: String,
    },

    /// A fault in the driver or pool that fits none of the variants above.
    #[error("driver error: {0}")]
    Driver(String),
}

impl Error {
    /// The SQLSTATE code when the error came from the server.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::UniqueViolation { .. } => Some("23505"),
            Error::ForeignKeyViolation { .. } => Some("23503"),
            Error::CheckViolation { .. } => Some("23514"),
            Error::NotNullViolation { .. } => Some("23502"),
            Error::StatementTimeout(_) => Some("57014"),
            Error::Database { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            if let Some(tls) = tls_cause(&err) {
                return Error::Tls(tls);
            }
            if err.is_closed() || std::error::Error::source(&err).is_some_and(is_io) {
                return Error::Connection(with_causes(&err));
            }
            return Error::Driver(with_causes(&err));
        };
        let message = match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        };
        let constraint = db.constraint().unwrap_or("<unnamed>").to_owned();
        let table = db.table().map(str::to_owned);
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            Error::UniqueViolation {
                constraint,
                table,
                message,
            }
        } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
            Error::ForeignKeyViolation {
                constraint,
                table,
                message,
            }
        } else if *code == SqlState::CHECK_VIOLATION {
            Error::CheckViolation {
                constraint,
                table,
                message,
            }
        } else if *code == SqlState::NOT_NULL_VIOLATION {
            let column = db.column().unwrap_or("<unknown>").to_owned();
            Error::NotNullViolation {
                column,
                table,
                message,
            }
        } else if *code == SqlState::QUERY_CANCELED {
            Error::StatementTimeout(message)
        } else if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
            || *code == SqlState::UNTRANSLATABLE_CHARACTER
            || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
            || *code == SqlState::INVALID_TEXT_REPRESENTATION
            || *code == SqlState::STRING_DATA_RIGHT_TRUNCATION
        {
            Error::InvalidInput(message)
        } else if code.code().starts_with("08") || *code == SqlState::ADMIN_SHUTDOWN {
            Error::Connection(message)
        } else {
            Error::Database {
                code: code.code().to_owned(),
                message,
            }
        }
    }
}

/// The error's message followed by its chain of causes (the driver's own message is
/// often only a summary, such as "error connecting to server").
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The message of a TLS failure in the error's chain of causes: a certificate the
/// verifier refused (a `rustls::Error` inside the handshake's I/O error), or a server
/// that refused TLS where it was required.
fn tls_cause(err: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(format!("the TLS handshake failed: {tls}"));
        }
        source = cause.source();
    }
    let text = with_causes(err);
    text.contains("server does not support TLS")
        .then(|| format!("{text} (sslmode requires TLS)"))
}

fn is_io(source: &(dyn std::error::Error + 'static)) -> bool {
    source.is::<std::io::Error>()
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) => Error::PoolTimeout(Duration::ZERO),
            PoolError::Closed => Error::Connection("the pool is closed".into()),
            other => Error::Connection(with_causes(&other)),
        }
    }
}
