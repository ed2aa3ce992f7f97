//! # matrx-orm
//!
//! An async ORM for PostgreSQL whose relation loading is never N+1.

#![warn(missing_docs)]

pub mod cache;
pub mod column;
mod db;
pub mod ddl;
pub mod error;
pub mod executor;
pub mod filter;
pub mod key;
pub mod model;
mod query;
pub mod relation;
mod session;
pub mod sql;
mod transaction;
pub mod value;
mod write;

pub use column::{Column, ColumnRef, OrderBy};
pub use db::{Db, DbBuilder, PoolStatus};
pub use error::{Error, Result};
pub use executor::{Executor, QueryCounter};
pub use filter::Filter;
pub use key::{Key, KeyField, KeyPart};
pub use model::{ColumnMeta, Model, ModelMeta};
pub use query::{Select, Update};
#[doc(hidden)]
pub use relation::AggregateEncoding;
pub use relation::{balanced_strategy, EdgeStrategy, LoadStrategy, Planned, BALANCED_JOIN_LIMIT};
pub use relation::{
    fetch, fetch_all_related, load_edge, prefetch_related, DynRelation, Groups, IntoPrefetch,
    Loaded, Many, One, Path, Prefetch, Related, Relation, RelationKind, RelationMeta, Slot,
    Through,
};
pub use session::Session;
pub use transaction::Transaction;
pub use value::{Param, SqlType};
pub use write::{Create, InsertRows};

pub use matrx_orm_derive::Model;

/// The traits and types most code needs: `use matrx_orm::prelude::*;`.
pub mod prelude {
    pub use crate::EdgeStrategy;
    pub use crate::{Db, Executor, Filter, Many, Model, One, Relation, Session, Slot, Transaction};
}

#[doc(hidden)]
pub mod __private {
    pub use postgres_types::ToSql;
    pub use tokio_postgres::Row;
}
