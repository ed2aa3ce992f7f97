//! A row as bytes, for a cache outside the process: the model's columns as the server
//! sent them (binary values and their type oids), read back through [`Fields`] by the
//! same code that decodes a result row.
//!
//! Layout: a version byte, the column count (`u16`), then per column its type oid
//! (`u32`), its length (`i32`, `-1` for NULL) and its bytes; big-endian throughout.
//! A column whose type is not built in (an enum, a domain, a composite) is read with
//! the type this process last saw under that oid in a row from the server; a stored
//! row with a type this process has not seen yet does not decode, and the lookup
//! counts as a miss.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use postgres_types::{FromSql, Type};
use tokio_postgres::Row;

use crate::base::decode::{decode_raw, missing_field, Fields};
use crate::base::error::Result;

/// The layout's version byte.
const VERSION: u8 = 1;

/// The types of columns that are not built in, by oid, as this process saw them.
#[derive(Debug, Default)]
pub(crate) struct TypeRegistry {
    types: Mutex<HashMap<u32, Type>>,
}

impl TypeRegistry {
    fn remember(&self, ty: &Type) {
        if Type::from_oid(ty.oid()).is_none() {
            self.types
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(ty.oid())
                .or_insert_with(|| ty.clone());
        }
    }

    fn resolve(&self, oid: u32) -> Option<Type> {
        Type::from_oid(oid).or_else(|| {
            self.types
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&oid)
                .cloned()
        })
    }
}

/// Reads any value as its raw bytes.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Writes columns `offset..offset + count` of `row`; `None` if the row has fewer.
pub(crate) fn encode(
    row: &Row,
    offset: usize,
    count: usize,
    registry: &TypeRegistry,
) -> Option<Vec<u8>> {
    let columns = row.columns().get(offset..offset + count)?;
    let mut out = Vec::with_capacity(3 + count * 16);
    out.push(VERSION);
    out.extend_from_slice(&u16::try_from(count).ok()?.to_be_bytes());
    for (i, column) in columns.iter().enumerate() {
        registry.remember(column.type_());
        out.extend_from_slice(&column.type_().oid().to_be_bytes());
        match row.try_get::<_, Raw<'_>>(offset + i).ok()?.0 {
            Some(bytes) => {
                out.extend_from_slice(&i32::try_from(bytes.len()).ok()?.to_be_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    Some(out)
}

/// A row read back from its bytes.
#[derive(Debug)]
pub(crate) struct StoredRow {
    bytes: Vec<u8>,
    /// Per column: its type and where its value is in `bytes` (`None`: NULL).
    columns: Vec<(Type, Option<(usize, usize)>)>,
}

impl StoredRow {
    /// Reads `bytes`; `None` if they are not a row of this layout, or hold a type
    /// this process cannot name.
    pub(crate) fn decode(bytes: Vec<u8>, registry: &TypeRegistry) -> Option<StoredRow> {
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
            let slice = bytes.get(*at..at.checked_add(n)?)?;
            *at += n;
            Some(slice)
        };
        if take(&mut at, 1)? != [VERSION] {
            return None;
        }
        let count = u16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
        let mut layout = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let oid = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
            let len = i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
            let value = match usize::try_from(len) {
                Ok(len) => {
                    let start = at;
                    take(&mut at, len)?;
                    Some((start, len))
                }
                Err(_) if len == -1 => None,
                Err(_) => return None,
            };
            layout.push((oid, value));
        }
        if at != bytes.len() {
            return None;
        }
        let columns = layout
            .into_iter()
            .map(|(oid, value)| Some((registry.resolve(oid)?, value)))
            .collect::<Option<Vec<_>>>()?;
        Some(StoredRow { bytes, columns })
    }
}

impl Fields for StoredRow {
    fn field<'a, T: FromSql<'a>>(
        &'a self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T> {
        let Some((ty, value)) = self.columns.get(index) else {
            return Err(missing_field::<T>(
                model,
                column,
                "the cached row has no such column".to_owned(),
            ));
        };
        let raw = value.map(|(start, len)| &self.bytes[start..start + len]);
        decode_raw(ty, raw, true, model, column)
    }

    fn is_null(&self, index: usize) -> bool {
        matches!(self.columns.get(index), Some((_, None)))
    }
}

#[cfg(test)]
mod tests {
    use postgres_types::Kind;

    use super::*;
    use crate::base::error::Error;

    /// A row of one column of type `oid` holding `value`.
    fn bytes(oid: u32, value: Option<&[u8]>) -> Vec<u8> {
        let mut out = vec![VERSION, 0, 1];
        out.extend_from_slice(&oid.to_be_bytes());
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        out
    }

    #[test]
    fn stored_rows_decode_by_the_driver_types_and_refuse_garbage() {
        let registry = TypeRegistry::default();
        let row = StoredRow::decode(
            bytes(Type::INT8.oid(), Some(&42i64.to_be_bytes())),
            &registry,
        )
        .expect("an int8 column");
        assert_eq!(row.field::<i64>(0, "M", "c").unwrap(), 42);
        assert!(!row.is_null(0));
        // A type that does not accept the column's is a decode error, not a panic.
        assert!(matches!(
            row.field::<String>(0, "M", "c"),
            Err(Error::Decode { .. })
        ));
        assert!(row.field::<i64>(1, "M", "c").is_err(), "no such column");

        let null = StoredRow::decode(bytes(Type::TEXT.oid(), None), &registry).unwrap();
        assert!(null.is_null(0));
        assert_eq!(null.field::<Option<String>>(0, "M", "c").unwrap(), None);

        let good = bytes(Type::INT8.oid(), Some(&42i64.to_be_bytes()));
        for bad in [
            Vec::new(),
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            [vec![VERSION + 1], good[1..].to_vec()].concat(),
        ] {
            assert!(
                StoredRow::decode(bad.clone(), &registry).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_type_this_process_has_not_seen_is_a_miss_until_it_has() {
        let registry = TypeRegistry::default();
        let mood = Type::new(
            "mood".to_owned(),
            91_234,
            Kind::Enum(vec!["ok".to_owned(), "sad".to_owned()]),
            "public".to_owned(),
        );
        let stored = bytes(mood.oid(), Some(b"ok"));
        assert!(StoredRow::decode(stored.clone(), &registry).is_none());
        registry.remember(&mood);
        let row = StoredRow::decode(stored, &registry).expect("a known type");
        assert_eq!(row.columns[0].0.name(), "mood");
    }
}
