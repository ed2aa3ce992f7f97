//! Keys: primary keys and relation join keys, single-column or composite.
//!
//! A [`Key`] knows how to travel to the server as a set: one array parameter per key
//! column (`= ANY($1)`, or `unnest($1::text[], $2::int4[])` for composite keys), so the
//! SQL text never depends on how many keys there are.

use std::any::Any;
use std::borrow::Cow;
use std::fmt::Debug;
use std::hash::Hash;

use postgres_types::{FromSql, ToSql, Type};
use tokio_postgres::Row;

use crate::base::decode::decode_column;
use crate::base::error::{Error, Result};
use crate::base::hash::key_set;
use crate::base::value::{Param, SqlType};

/// One column of a key: a scalar type that can be hashed and sent as an array.
pub trait KeyPart:
    Clone + Eq + Ord + Hash + Debug + ToSql + for<'a> FromSql<'a> + SqlType + Send + Sync + 'static
{
    /// The server function writing a value of this type in the binary format
    /// (`int8send`): how a cache invalidation names a key exactly, whatever the
    /// session's `DateStyle` or `TimeZone`.
    const SEND_FUNCTION: &'static str;
    /// The type the binary form is decoded as.
    fn wire_type() -> Type;
    /// The value from the bytes its send function wrote; `None` if they do not decode.
    fn from_wire(raw: &[u8]) -> Option<Self> {
        Self::from_sql(&Self::wire_type(), raw).ok()
    }
    /// The binary form of the value, canonical: two values the server holds equal
    /// have one form (a numeric loses its trailing zeros). `None` if it does not
    /// encode.
    fn to_wire(&self) -> Option<Vec<u8>> {
        let mut out = bytes::BytesMut::new();
        let canonical = (self as &dyn Any)
            .downcast_ref::<rust_decimal::Decimal>()
            .map(rust_decimal::Decimal::normalize);
        let encoded = match &canonical {
            Some(decimal) => decimal.to_sql_checked(&Self::wire_type(), &mut out),
            None => self.to_sql_checked(&Self::wire_type(), &mut out),
        };
        matches!(encoded, Ok(postgres_types::IsNull::No)).then(|| out.to_vec())
    }
}

macro_rules! key_parts {
    ($($t:ty => $send:literal $wire:ident),* $(,)?) => {$(
        impl KeyPart for $t {
            const SEND_FUNCTION: &'static str = $send;
            fn wire_type() -> Type { Type::$wire }
        }
        impl Key for $t {
            const ARITY: usize = 1;
            fn params(&self) -> Vec<Param> { vec![Param::new(self.clone())] }
            fn array_params(keys: &[Self]) -> Vec<Param> { vec![Param::new(keys.to_vec())] }
            fn column_types() -> Vec<Cow<'static, str>> { vec![<$t as SqlType>::pg_type()] }
            fn decode(row: &Row, offset: usize, model: &'static str) -> Result<Self> {
                decode_column(row, offset, model)
            }
            fn validate(&self) -> Result<()> {
                validate_part(self)
            }
            fn send_functions() -> Vec<&'static str> { vec![$send] }
            fn from_wire(parts: &[&[u8]]) -> Option<Self> {
                match parts {
                    [raw] => <$t as KeyPart>::from_wire(raw),
                    _ => None,
                }
            }
            fn to_wire(&self) -> Option<Vec<Vec<u8>>> {
                Some(vec![<$t as KeyPart>::to_wire(self)?])
            }
        }
        impl KeyField for $t {
            type Part = $t;
            fn key_part(&self) -> Option<$t> { Some(self.clone()) }
        }
        impl KeyField for Option<$t> {
            type Part = $t;
            fn key_part(&self) -> Option<$t> { self.clone() }
        }
    )*};
}

key_parts!(
    i16 => "int2send" INT2,
    i32 => "int4send" INT4,
    i64 => "int8send" INT8,
    bool => "boolsend" BOOL,
    String => "textsend" TEXT,
    uuid::Uuid => "uuid_send" UUID,
    rust_decimal::Decimal => "numeric_send" NUMERIC,
    chrono::NaiveDate => "date_send" DATE,
    chrono::NaiveDateTime => "timestamp_send" TIMESTAMP,
    chrono::DateTime<chrono::Utc> => "timestamptz_send" TIMESTAMPTZ,
);

/// A primary key or relation key: a [`KeyPart`] or a tuple of up to four of them.
pub trait Key: Clone + Eq + Ord + Hash + Debug + Send + Sync + 'static {
    /// The number of columns.
    const ARITY: usize;
    /// One parameter per column, for `WHERE (a, b) = ($1, $2)`.
    fn params(&self) -> Vec<Param>;
    /// One array parameter per column holding that column of every key.
    fn array_params(keys: &[Self]) -> Vec<Param>;
    /// The PostgreSQL type of each column, for the casts of `unnest($1::T[], ...)`.
    fn column_types() -> Vec<Cow<'static, str>>;
    /// Decodes the key from `ARITY` columns of `row` starting at `offset`.
    fn decode(row: &Row, offset: usize, model: &'static str) -> Result<Self>;

    /// Refuses a key the server would refuse (a NUL byte in text), before it joins a
    /// statement shared with other keys.
    fn validate(&self) -> Result<()>;

    /// The binary send function of each column ([`KeyPart::SEND_FUNCTION`]).
    fn send_functions() -> Vec<&'static str>;
    /// The key from the binary form of each column; `None` if the count or a part
    /// does not decode.
    fn from_wire(parts: &[&[u8]]) -> Option<Self>;
    /// The canonical binary form of each column ([`KeyPart::to_wire`]): keys the
    /// server holds equal have equal forms. `None` if a part does not encode.
    fn to_wire(&self) -> Option<Vec<Vec<u8>>>;
}

/// A key part the server would refuse.
pub(crate) fn validate_part(part: &dyn Any) -> Result<()> {
    match part.downcast_ref::<String>() {
        Some(text) if text.contains('\0') => Err(Error::InvalidInput(format!(
            "a key contains a NUL byte, which PostgreSQL text cannot hold: {text:?}"
        ))),
        _ => Ok(()),
    }
}

/// A model field that holds one part of a key; `Option` fields give `None` for NULL.
///
/// Used by the code `#[derive(Model)]` emits to read relation keys off instances.
pub trait KeyField {
    /// The key part type.
    type Part: KeyPart;
    /// The value, or `None` when the field is NULL.
    fn key_part(&self) -> Option<Self::Part>;
}

macro_rules! tuple_keys {
    ($arity:literal: $($t:ident $i:tt),*) => {
        impl<$($t: KeyPart),*> Key for ($($t,)*) {
            const ARITY: usize = $arity;
            fn params(&self) -> Vec<Param> { vec![$(Param::new(self.$i.clone())),*] }
            fn array_params(keys: &[Self]) -> Vec<Param> {
                vec![$(Param::new(keys.iter().map(|k| k.$i.clone()).collect::<Vec<$t>>())),*]
            }
            fn column_types() -> Vec<Cow<'static, str>> { vec![$(<$t as SqlType>::pg_type()),*] }
            fn decode(row: &Row, offset: usize, model: &'static str) -> Result<Self> {
                Ok(($(decode_column::<$t>(row, offset + $i, model)?,)*))
            }
            fn validate(&self) -> Result<()> {
                $(validate_part(&self.$i)?;)*
                Ok(())
            }
            fn send_functions() -> Vec<&'static str> { vec![$($t::SEND_FUNCTION),*] }
            fn from_wire(parts: &[&[u8]]) -> Option<Self> {
                if parts.len() != $arity {
                    return None;
                }
                Some(($($t::from_wire(parts[$i])?,)*))
            }
            fn to_wire(&self) -> Option<Vec<Vec<u8>>> {
                Some(vec![$(KeyPart::to_wire(&self.$i)?),*])
            }
        }
    };
}

tuple_keys!(2: A 0, B 1);
tuple_keys!(3: A 0, B 1, C 2);
tuple_keys!(4: A 0, B 1, C 2, D 3);

/// Removes duplicates, keeping first occurrences in order.
pub(crate) fn dedup_keys<K: Key>(keys: impl IntoIterator<Item = K>) -> Vec<K> {
    let keys = keys.into_iter();
    let mut seen = key_set(keys.size_hint().0);
    keys.filter(|k| seen.insert(k.clone())).collect()
}
