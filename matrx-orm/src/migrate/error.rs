//! The errors of a migration run, each naming the migration at fault.

use std::path::PathBuf;

/// Everything that can go wrong reading, checking or running migrations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A statement outside any one migration failed (connecting, the lock, the
    /// migrations table).
    #[error("migrations: {0}")]
    Database(#[from] crate::base::error::Error),
    /// A migration's SQL failed. A migration run in a transaction left nothing behind;
    /// one marked `no-transaction` keeps the statements before `statement`.
    #[error("migration {version} ({name}) failed{}: {source}",
        .statement.map(|n| format!(" at statement {n}")).unwrap_or_default())]
    Failed {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
        /// The failing statement (1-based) of a migration run outside a transaction.
        statement: Option<usize>,
        /// What the server said.
        source: Box<crate::base::error::Error>,
    },
    /// An applied migration's `up.sql` differs from the one that was applied.
    #[error(
        "migration {version} ({name}) was changed after it was applied \
         (checksum {applied} when applied, {current} now); restore it and write a new migration instead"
    )]
    Changed {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of the file now.
        current: String,
    },
    /// The database records a migration that the migrations at hand do not have, and
    /// it must be reverted.
    #[error("migration {version} ({name}) is applied but missing from the migrations")]
    Missing {
        /// The applied version.
        version: i64,
        /// Its recorded name.
        name: String,
    },
    /// A migration without `down.sql` was asked to revert.
    #[error("migration {version} ({name}) has no down.sql and cannot be reverted")]
    Irreversible {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
    },
    /// Two migrations share a version.
    #[error("two migrations have version {version}: {first} and {second}")]
    DuplicateVersion {
        /// The shared version.
        version: i64,
        /// The first name.
        first: String,
        /// The second name.
        second: String,
    },
    /// A folder in the migrations directory is not named `<version>_<name>` or lacks
    /// `up.sql`.
    #[error("{}: {reason}", .path.display())]
    BadFolder {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the migrations directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}
