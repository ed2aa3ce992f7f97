//! Values bound to statements, and the PostgreSQL type of each supported Rust type.
//!
//! Every value reaches the server as a bound parameter ([`Param`]); nothing a caller
//! passes is ever written into SQL text.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, Format, IsNull, Kind, ToSql, Type};

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

/// One column of many rows, bound as one parameter: a one-dimensional PostgreSQL array
/// whose element `i` is `element(&rows[i], column)`.
///
/// The values are type-erased (`&dyn ToSql`), so the array is written here in the
/// binary array format rather than by `postgres-types`: a header (one dimension, a
/// has-NULL flag, the element type's OID, the length, lower bound 1), then each element
/// as its byte length (-1 for NULL) followed by the bytes its own `to_sql_checked`
/// writes for the element type. The array type is the one the statement gives the
/// parameter (a cast such as `$1::text[]`); each value is checked against its element
/// type exactly as a parameter of that type would be, so a value the element type does
/// not accept is the driver's usual type error, before anything is sent.
pub(crate) struct ArrayParam<'a, R> {
    rows: &'a [R],
    column: usize,
    element: fn(&R, usize) -> &(dyn ToSql + Sync),
}

impl<'a, R> ArrayParam<'a, R> {
    /// The array of `element(row, column)` over `rows`.
    pub(crate) fn new(
        rows: &'a [R],
        column: usize,
        element: fn(&R, usize) -> &(dyn ToSql + Sync),
    ) -> Self {
        ArrayParam {
            rows,
            column,
            element,
        }
    }
}

impl<R> fmt::Debug for ArrayParam<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayParam")
            .field("column", &self.column)
            .field("len", &self.rows.len())
            .finish()
    }
}

type EncodeResult = Result<IsNull, Box<dyn StdError + Sync + Send>>;

impl<R> ToSql for ArrayParam<'_, R> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> EncodeResult {
        let Kind::Array(member) = ty.kind() else {
            return Err(format!("a column of values needs an array type, not {ty}").into());
        };
        let len = i32::try_from(self.rows.len())
            .map_err(|_| format!("{} values do not fit in one array", self.rows.len()))?;
        out.put_i32(1); // dimensions
        let flags_at = out.len();
        out.put_i32(0); // has NULLs: set below
        out.put_u32(member.oid());
        out.put_i32(len);
        out.put_i32(1); // lower bound
        let mut has_nulls = false;
        for row in self.rows {
            let value = (self.element)(row, self.column);
            if !matches!(value.encode_format(member), Format::Binary) {
                return Err(format!(
                    "a value sent as text for {member} cannot be an array element (binary only)"
                )
                .into());
            }
            let len_at = out.len();
            out.put_i32(0);
            let written = match value.to_sql_checked(member, out)? {
                IsNull::Yes => {
                    has_nulls = true;
                    out.truncate(len_at + 4);
                    -1
                }
                IsNull::No => i32::try_from(out.len() - len_at - 4).map_err(|_| {
                    format!("a value of {member} longer than an array element may be")
                })?,
            };
            out[len_at..len_at + 4].copy_from_slice(&written.to_be_bytes());
        }
        if has_nulls {
            out[flags_at..flags_at + 4].copy_from_slice(&1i32.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Array(_))
    }

    to_sql_checked!();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &dyn ToSql, ty: &Type) -> Vec<u8> {
        let mut out = BytesMut::new();
        let is_null = value.to_sql_checked(ty, &mut out).unwrap();
        assert!(matches!(is_null, IsNull::No));
        out.to_vec()
    }

    fn element<T: ToSql + Sync>(row: &T, _column: usize) -> &(dyn ToSql + Sync) {
        row
    }

    /// The bytes are those `postgres-types` writes for the same values as a `Vec`.
    #[test]
    fn an_array_param_encodes_like_a_vec() {
        let ints = [Some(1i32), None, Some(-7)];
        assert_eq!(
            encode(&ArrayParam::new(&ints, 0, element), &Type::INT4_ARRAY),
            encode(&ints.to_vec(), &Type::INT4_ARRAY)
        );
        let texts = ["a".to_owned(), String::new(), "é\"{,}".to_owned()];
        assert_eq!(
            encode(&ArrayParam::new(&texts, 0, element), &Type::TEXT_ARRAY),
            encode(&texts.to_vec(), &Type::TEXT_ARRAY)
        );
        let empty: [i64; 0] = [];
        assert_eq!(
            encode(&ArrayParam::new(&empty, 0, element), &Type::INT8_ARRAY),
            encode(&empty.to_vec(), &Type::INT8_ARRAY)
        );
    }

    #[test]
    fn an_array_param_refuses_what_its_elements_refuse() {
        let mut out = BytesMut::new();
        let ints = [1i32];
        let param = ArrayParam::new(&ints, 0, element);
        assert!(param.to_sql_checked(&Type::TEXT_ARRAY, &mut out).is_err());
        assert!(param.to_sql_checked(&Type::INT4, &mut out).is_err());
    }
}
