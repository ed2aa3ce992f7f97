//! `matrx-orm generate` and `matrx-orm check`: model source from an existing
//! PostgreSQL schema, and drift between models and a live database.
//!
//! - [`catalog`]: reads `pg_catalog` into a plain [`Catalog`] ([`introspect`]).
//! - [`generate`]: turns a catalog into model files ([`generate()`](generate::generate)).
//! - [`check`]: compares models' metadata ([`matrx_orm::ModelMeta`]) to the database.
//! - [`migrate`]: new migration folders, and the SQL taking a database to the models
//!   ([`migrate::diff`]).
//!
//! The binary (`src/main.rs`) is [`cli::main`]: it only parses arguments and calls these.

pub mod catalog;
pub mod check;
pub mod cli;
pub mod error;
pub mod generate;
pub mod migrate;

pub use catalog::{introspect, Catalog};
pub use check::{check, Drift, Report};
pub use error::{Error, Result};
pub use generate::{generate, Generated, Options, Unsupported};
