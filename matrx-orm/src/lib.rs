//! # matrx-orm
//!
//! An async ORM for PostgreSQL whose relation loading is never N+1.
//!
//! The crate is built in layers whose imports point one way, ground first (see
//! `docs/ARCHITECTURE.md`): `base` (values, keys, metadata, SQL text) → `schema`
//! (the `Model` and `Relation` traits, columns, filters) → `statement` (sending one
//! statement) → `cache` → `executor` (what loads run on) → `relation` (the relation
//! engine) → `query` (queries and writes) → `db` (`Db`, `Session`, `Transaction`) → `migrate` (versioned migrations).

#![warn(missing_docs)]

mod base;
pub mod cache;
mod db;
pub mod executor;
pub mod migrate;
mod query;
pub mod relation;
mod schema;
mod statement;

pub use base::{error, key, sql, value};
pub use query::ddl;
pub use schema::{column, filter};

pub use base::decode::FromRow;
pub use base::error::{Error, Result};
pub use base::key::{Key, KeyField, KeyPart};
pub use base::meta::{ColumnMeta, ModelMeta, RelationKind, RelationMeta, Through};
pub use base::value::{Param, SqlType};
#[doc(hidden)]
pub use db::held::OneConnection;
pub use db::pool::{Db, DbBuilder, PoolStatus};
pub use db::replica::ReplicaStatus;
pub use db::session::Session;
pub use db::transaction::Transaction;
pub use db::url::SslMode;
pub use executor::{Executor, QueryCounter, StreamExecutor};
pub use query::annotate::Annotated;
pub use query::m2m::{SetOutcome, TargetKey};
pub use query::model_ext::ModelExt;
pub use query::page::{Cursor, KeysetPage, Page};
pub use query::select::{Select, Update};
pub use query::triggers::CoherenceTriggers;
pub use query::values::{GroupKey, Values};
pub use query::write::{Create, InsertRows};
pub use relation::{
    balanced_strategy, EdgeStrategy, LoadStrategy, Planned, BALANCED_JOIN_LIMIT,
    BALANCED_JOIN_LIMIT_TO_MANY,
};
pub use relation::{
    fetch, fetch_all_related, load_edge, prefetch_related, Groups, IntoPrefetch, Loaded, Path,
    PerParent, Prefetch, RelationExt,
};
#[doc(hidden)]
pub use relation::{AggregateEncoding, JoinedShape};
pub use schema::aggregate::{
    count, Aggregate, ColumnAggregate, Compared, GroupOrder, Having, Numeric, RelationAggregates,
};
pub use schema::column::{Column, ColumnRef, OrderBy};
pub use schema::filter::Filter;
pub use schema::model::{Model, Relation, RelationVisitor};
pub use schema::related::Related;
pub use schema::selection::{Nullable, Selection, Struct};
pub use schema::slot::{Many, One, Slot};
pub use statement::mode::StatementMode;

pub use matrx_orm_derive::{embed_migrations, FromRow, Model};

/// The traits and types most code needs: `use matrx_orm::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Db, EdgeStrategy, Executor, Filter, Many, Model, ModelExt, One, Relation,
        RelationAggregates, RelationExt, Session, Slot, StreamExecutor, Transaction,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::base::decode::{decode_column, decode_column_named, Fields};
    pub use postgres_types::ToSql;
    pub use tokio_postgres::Row;
}
