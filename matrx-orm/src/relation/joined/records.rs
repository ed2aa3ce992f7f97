//! Reading aggregated relations: the binary `record[]` value of
//! `array_agg(ROW(...))`, one record per target row.
//!
//! Each field of a record carries its own type OID, so every value is decoded by the
//! same `FromSql` code as a plain column: timestamps, numerics, `bytea`, arrays, `jsonb`
//! and NULLs keep their types through the aggregate. Nothing is re-parsed from text.
//!
//! Wire format (PostgreSQL `array_send` / `record_send`, big-endian):
//!
//! ```text
//! array:  i32 ndim, i32 has_nulls, u32 element oid, ndim x (i32 len, i32 lower bound),
//!         then per element: i32 length (-1: NULL), the element's bytes
//! record: i32 field count, then per field: u32 oid, i32 length (-1: NULL), bytes
//! ```

use std::error::Error as StdError;

use postgres_types::{FromSql, Kind, Type};
use tokio_postgres::Row;

use crate::base::decode::{decode_raw, missing_field, Fields};
use crate::base::error::Result;

/// The raw `record[]` value of an aggregated relation (NULL when it has no rows).
pub(crate) struct Records<'a> {
    raw: &'a [u8],
}

impl<'a> FromSql<'a> for Records<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Records { raw })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::RECORD_ARRAY
    }
}

/// A cursor over the elements of a [`Records`] value.
pub(crate) struct Elements<'a> {
    rest: &'a [u8],
    remaining: usize,
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!(
            "truncated record array: wanted {n} bytes, {} left",
            buf.len()
        ));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn read_i32(buf: &mut &[u8]) -> std::result::Result<i32, String> {
    let bytes: [u8; 4] = take(buf, 4)?
        .try_into()
        .map_err(|_| "truncated record array".to_owned())?;
    Ok(i32::from_be_bytes(bytes))
}

/// A length field: `None` for -1 (NULL).
fn read_len(buf: &mut &[u8]) -> std::result::Result<Option<usize>, String> {
    match read_i32(buf)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| format!("negative length {n} in record array")),
    }
}

impl<'a> Records<'a> {
    /// Parses the array header.
    pub(crate) fn elements(&self) -> std::result::Result<Elements<'a>, String> {
        let mut buf = self.raw;
        let ndim = read_i32(&mut buf)?;
        let _has_nulls = read_i32(&mut buf)?;
        let _element_oid = read_i32(&mut buf)?;
        let remaining = match ndim {
            0 => 0,
            1 => {
                let len = read_i32(&mut buf)?;
                let _lower = read_i32(&mut buf)?;
                usize::try_from(len).map_err(|_| format!("negative array length {len}"))?
            }
            n => return Err(format!("a relation aggregate has {n} dimensions, not 1")),
        };
        Ok(Elements {
            rest: buf,
            remaining,
        })
    }
}

impl<'a> Elements<'a> {
    /// How many elements are left.
    pub(crate) fn len(&self) -> usize {
        self.remaining
    }

    /// Reads the next record into `rec` (its buffer is reused); `false` at the end.
    pub(crate) fn next_into(&mut self, rec: &mut Record<'a>) -> std::result::Result<bool, String> {
        if self.remaining == 0 {
            return Ok(false);
        }
        self.remaining -= 1;
        let Some(len) = read_len(&mut self.rest)? else {
            return Err("a NULL element in a relation aggregate".to_owned());
        };
        let mut body = take(&mut self.rest, len)?;
        let count = read_i32(&mut body)?;
        rec.fields.clear();
        for _ in 0..count {
            let oid = read_i32(&mut body)? as u32;
            let value = match read_len(&mut body)? {
                Some(n) => Some(take(&mut body, n)?),
                None => None,
            };
            rec.fields.push((oid, value));
        }
        Ok(true)
    }
}

/// One record: each field's type OID and bytes (`None`: NULL).
#[derive(Default)]
pub(crate) struct Record<'a> {
    fields: Vec<(u32, Option<&'a [u8]>)>,
}

impl Fields for Record<'_> {
    fn field<'b, T: FromSql<'b>>(
        &'b self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T> {
        let Some(&(oid, raw)) = self.fields.get(index) else {
            return Err(missing_field::<T>(
                model,
                column,
                format!("the aggregated record has no field {index}"),
            ));
        };
        match Type::from_oid(oid) {
            Some(ty) => decode_raw(&ty, raw, true, model, column),
            // A type the driver does not know statically (an enum, a domain): decode
            // by bytes, which is what derived `FromSql` impls of enums do anyway.
            None => {
                let ty = Type::new(format!("oid {oid}"), oid, Kind::Pseudo, String::new());
                decode_raw(&ty, raw, false, model, column)
            }
        }
    }

    fn is_null(&self, index: usize) -> bool {
        matches!(self.fields.get(index), Some((_, None)))
    }
}

/// Where a model's fields are read from: the statement's row, or one record of an
/// aggregated relation.
pub(crate) enum Src<'s> {
    Row(&'s Row),
    Rec(&'s Record<'s>),
    /// A row whose field `i` is the row's field `map[i]` (a branch of the union
    /// shape, whose fields share the row's with other branches).
    Map(&'s Row, &'s [usize]),
}

impl Fields for Src<'_> {
    #[inline]
    fn field<'a, T: FromSql<'a>>(
        &'a self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T> {
        match self {
            Src::Row(row) => row.field(index, model, column),
            Src::Rec(rec) => rec.field(index, model, column),
            // Past the map: a field the row has not, refused by the row.
            Src::Map(row, map) => {
                row.field(map.get(index).copied().unwrap_or(usize::MAX), model, column)
            }
        }
    }

    #[inline]
    fn is_null(&self, index: usize) -> bool {
        match self {
            Src::Row(row) => row.is_null(index),
            Src::Rec(rec) => rec.is_null(index),
            Src::Map(row, map) => map.get(index).is_none_or(|&i| row.is_null(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::Error;

    fn record(fields: &[(u32, Option<&[u8]>)]) -> Vec<u8> {
        let mut out = (fields.len() as i32).to_be_bytes().to_vec();
        for (oid, value) in fields {
            out.extend(oid.to_be_bytes());
            match value {
                Some(v) => {
                    out.extend((v.len() as i32).to_be_bytes());
                    out.extend(*v);
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
        out
    }

    fn array(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(1i32.to_be_bytes());
        out.extend(0i32.to_be_bytes());
        out.extend(2249i32.to_be_bytes());
        out.extend((records.len() as i32).to_be_bytes());
        out.extend(1i32.to_be_bytes());
        for r in records {
            out.extend((r.len() as i32).to_be_bytes());
            out.extend(r);
        }
        out
    }

    #[test]
    fn reads_records_with_typed_fields_and_nulls() {
        let seven = 7i64.to_be_bytes();
        let raw = array(&[
            record(&[(20, Some(&seven)), (25, Some(b"ann"))]),
            record(&[(20, Some(&seven)), (25, None)]),
        ]);
        let recs = Records { raw: &raw };
        let mut it = recs.elements().unwrap();
        assert_eq!(it.len(), 2);
        let mut rec = Record::default();
        assert!(it.next_into(&mut rec).unwrap());
        assert_eq!(rec.field::<i64>(0, "M", "id").unwrap(), 7);
        assert_eq!(rec.field::<String>(1, "M", "name").unwrap(), "ann");
        assert!(!rec.is_null(1));
        assert!(it.next_into(&mut rec).unwrap());
        assert!(rec.is_null(1));
        assert_eq!(rec.field::<Option<String>>(1, "M", "name").unwrap(), None);
        let err = rec.field::<String>(1, "M", "name").unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        let err = rec.field::<String>(0, "M", "id").unwrap_err();
        assert!(err.to_string().contains("does not accept"), "{err}");
        assert!(!it.next_into(&mut rec).unwrap());
    }

    #[test]
    fn empty_and_malformed_arrays() {
        let mut empty = Vec::new();
        empty.extend(0i32.to_be_bytes());
        empty.extend(0i32.to_be_bytes());
        empty.extend(2249i32.to_be_bytes());
        assert_eq!(Records { raw: &empty }.elements().unwrap().len(), 0);
        let raw = array(&[record(&[(20, Some(&7i64.to_be_bytes()))])]);
        for cut in [3, 12, raw.len() - 2] {
            let recs = Records { raw: &raw[..cut] };
            let failed = match recs.elements() {
                Err(_) => true,
                Ok(mut it) => it.next_into(&mut Record::default()).is_err(),
            };
            assert!(failed, "cut at {cut}");
        }
    }
}
