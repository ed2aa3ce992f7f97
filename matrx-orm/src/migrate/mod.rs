//! Versioned SQL migrations: `migrations/<version>_<name>/up.sql` (and `down.sql`),
//! embedded in the binary with [`embed_migrations!`](crate::embed_migrations) or read
//! from a directory ([`Migrations::from_dir`]), applied at start-up with
//! [`Db::migrate`](crate::Db::migrate) or step by step with a [`Migrator`].
//!
//! - [`source`]: the migrations as data, checksums, the no-transaction marker.
//! - [`split`]: a script cut into statements (for files run outside a transaction).
//! - [`runner`]: the lock, the migrations table, up / down / redo / status.
//!
//! ```no_run
//! use matrx_orm::migrate::Migrations;
//!
//! # /* (the doctest embeds the test suite's folder instead)
//! static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("migrations");
//! # */
//! # static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("../tests/migrations");
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let db = matrx_orm::Db::connect("postgres://root@localhost:5432/app").await?;
//! db.migrate(&MIGRATIONS).await?;
//! # Ok(()) }
//! ```

pub mod error;
pub mod runner;
pub mod source;
pub mod split;

pub use error::MigrateError;
pub use runner::{lock_key, Direction, MigrationStatus, Migrator, Ran, State, DEFAULT_TABLE};
pub use source::{parse_folder_name, Migration, Migrations, NO_TRANSACTION};
