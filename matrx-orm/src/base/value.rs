//! Values bound to statements, and the PostgreSQL type of each supported Rust type.
//!
//! Every value reaches the server as a bound parameter ([`Param`]); nothing a caller
//! passes is ever written into SQL text.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use postgres_types::ToSql;

/// A value bound to a statement parameter: shared, thread-safe and cheap to clone, so
/// a query builder can be cloned and re-run.
#[derive(Clone)]
pub struct Param(pub(crate) Arc<dyn ToSql + Send + Sync>);

impl Param {
    /// Wraps any value the driver can encode.
    pub fn new<T: ToSql + Send + Sync + 'static>(value: T) -> Self {
        Param(Arc::new(value))
    }

    /// The value as the driver's parameter type.
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        &*self.0
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Borrows a list of params as the slice tokio-postgres expects.
pub(crate) fn as_sql_refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(Param::as_sql).collect()
}

/// A Rust type with a PostgreSQL column type: used by DDL and by the typed casts of
/// key arrays (`unnest($1::text[], $2::int4[])`).
///
/// Implemented for the common scalar types, `Option<T>` (the same type, nullable), and
/// arrays of scalars as `Vec<T>`. `Vec<u8>` is `bytea`.
pub trait SqlType {
    /// The PostgreSQL type name, e.g. `bigint` or `text[]`.
    fn pg_type() -> Cow<'static, str>;
}

macro_rules! scalar_sql_types {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl SqlType for $t {
            fn pg_type() -> Cow<'static, str> { Cow::Borrowed($name) }
        }
        impl SqlType for Vec<$t> {
            fn pg_type() -> Cow<'static, str> { Cow::Borrowed(concat!($name, "[]")) }
        }
    )*};
}

scalar_sql_types! {
    bool => "boolean",
    i16 => "smallint",
    i32 => "integer",
    i64 => "bigint",
    f32 => "real",
    f64 => "double precision",
    String => "text",
    rust_decimal::Decimal => "numeric",
    uuid::Uuid => "uuid",
    chrono::DateTime<chrono::Utc> => "timestamptz",
    chrono::NaiveDateTime => "timestamp",
    chrono::NaiveDate => "date",
    chrono::NaiveTime => "time",
    serde_json::Value => "jsonb",
}

impl SqlType for Vec<u8> {
    fn pg_type() -> Cow<'static, str> {
        Cow::Borrowed("bytea")
    }
}

impl<T: SqlType> SqlType for Option<T> {
    fn pg_type() -> Cow<'static, str> {
        T::pg_type()
    }
}
