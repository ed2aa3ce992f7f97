//! The errors of introspection, generation and checking.

use std::path::PathBuf;

/// Everything that can go wrong, each case naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The library could not connect or a catalog query failed.
    #[error("database: {0}")]
    Database(#[from] matrx_orm::Error),
    /// A catalog row did not have the expected shape (a server this tool does not know).
    #[error("reading the catalog: {0}")]
    Catalog(String),
    /// The schema does not exist on the server.
    #[error("schema {0:?} does not exist")]
    NoSuchSchema(String),
    /// The schema has no tables to generate models from.
    #[error("schema {0:?} has no tables")]
    EmptySchema(String),
    /// Columns whose PostgreSQL type has no Rust type in matrx-orm.
    #[error(
        "unsupported column type(s): {}; matrx-orm has no Rust type for them. \
         Pass `--unsupported skip` to leave such columns out of the models (with a comment)",
        .0.join(", ")
    )]
    UnsupportedTypes(Vec<String>),
    /// Neither `--database-url` nor `DATABASE_URL` was given.
    #[error("no database: pass --database-url postgres://... or set DATABASE_URL")]
    NoDatabaseUrl,
    /// Running or reading migrations failed.
    #[error("{0}")]
    Migrate(#[from] matrx_orm::migrate::MigrateError),
    /// `migrate diff` was run from a binary that has no models compiled in.
    #[error(
        "migrate diff needs the models' metadata, which only compiled code has: add a binary \
         to your project calling matrx_orm_cli::cli::main(&[Model::META, ...]) and run \
         `migrate diff` through it (or call matrx_orm_cli::migrate::diff from a test)"
    )]
    NoModels,
    /// A command-line argument was wrong.
    #[error("{0}\nRun `matrx-orm --help` for usage.")]
    Usage(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
