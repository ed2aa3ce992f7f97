//! Pagination: keyset pages ([`Select::page_after`], a [`Cursor`] per page) and
//! offset pages with a total ([`Select::page`]).
//!
//! **Keyset.** The ordering is the query's, with the primary-key columns appended
//! when missing, so every row has a unique position. A page reads the rows after the
//! cursor's position (`WHERE <filter> AND <after cursor> ORDER BY ... LIMIT size + 1`;
//! the extra row only says whether a next page exists). The cursor holds the last
//! row's values of the ordering columns exactly as the server sent them (type and
//! binary value), so every column type round-trips, and binds them back as
//! parameters. NULLs in ordering columns are supported: the comparison follows the
//! term's `NULLS FIRST` / `NULLS LAST` (PostgreSQL's default: last when ascending,
//! first when descending). With non-nullable columns in one direction the condition
//! is a row comparison `("a", "id") > ($1, $2)` an index on the ordering can answer.
//!
//! **Offset.** `page(number, size)` runs the page and `count(*)` as two statements,
//! concurrently (pipelined inside a transaction): `count(*) OVER ()` in the page
//! itself makes the server read and keep every matching row before it can cut the
//! page, and gives no total at all for a page past the end (docs/BENCHMARKS.md).

use std::marker::PhantomData;

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, ToSql, Type};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use crate::base::error::{Error, Result};
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::{as_sql_refs, Param};
use crate::executor::Executor;
use crate::query::select::{primary_key_order, Select};
use crate::schema::column::OrderBy;
use crate::schema::model::Model;

/// One page of a keyset-paged query: its rows and the cursor of the next page
/// (`None` on the last page). See [`Select::page_after`].
#[derive(Debug)]
pub struct KeysetPage<M> {
    /// The rows of the page, in the query's order.
    pub items: Vec<M>,
    /// Where the next page starts; `None` when no row follows.
    pub next: Option<Cursor<M>>,
}

/// A page of an offset-paged query with the total number of rows. See
/// [`Select::page`].
#[derive(Debug)]
pub struct Page<M> {
    /// The rows of the page, in the query's order.
    pub items: Vec<M>,
    /// How many rows the query matches in all.
    pub total: u64,
    /// The page number, from 1.
    pub number: u64,
    /// The page size asked for.
    pub size: u64,
}

impl<M> Page<M> {
    /// How many pages of `size` rows the total makes (0 when there are no rows).
    pub fn pages(&self) -> u64 {
        self.total.div_ceil(self.size.max(1))
    }

    /// Whether a page follows this one.
    pub fn has_next(&self) -> bool {
        self.number < self.pages()
    }
}

/// The position after one row of a keyset-paged query of `M`: the row's values of
/// the ordering columns (primary key included), and the ordering they belong to.
///
/// Serialises as one opaque, URL-safe string ([`to_token`](Self::to_token)), for an
/// API's `next` link. A cursor is not a secret and not signed: its values are bound
/// parameters, so an altered cursor can only move the position within the same
/// query (its filter still applies); one from another ordering, or one that does not
/// parse, is refused with [`Error::InvalidInput`].
///
/// ```
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64 }
/// use matrx_orm::Cursor;
/// let bad = Cursor::<Order>::from_token("not a cursor");
/// assert!(matches!(bad, Err(matrx_orm::Error::InvalidInput(_))));
/// ```
pub struct Cursor<M> {
    order: String,
    values: Vec<Value>,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Cursor<M> {
    fn clone(&self) -> Self {
        Cursor {
            order: self.order.clone(),
            values: self.values.clone(),
            _marker: PhantomData,
        }
    }
}

impl<M> PartialEq for Cursor<M> {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && self.values == other.values
    }
}

impl<M> std::fmt::Debug for Cursor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("order", &self.order)
            .field("values", &self.values)
            .finish()
    }
}

/// One ordering value as the server sent it: its type and binary encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Value {
    /// The type's OID.
    t: u32,
    /// The binary value, hex; `None` for NULL.
    v: Option<String>,
}

/// What a token carries.
#[derive(Serialize, Deserialize)]
struct Wire {
    o: String,
    v: Vec<Value>,
}

impl<M> Cursor<M> {
    /// The cursor as one URL-safe string (hex).
    pub fn to_token(&self) -> String {
        let wire = Wire {
            o: self.order.clone(),
            v: self.values.clone(),
        };
        // Serialising plain strings and numbers cannot fail.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        to_hex(&json)
    }

    /// Reads a cursor written by [`to_token`](Self::to_token).
    pub fn from_token(token: &str) -> Result<Self> {
        let invalid = || Error::InvalidInput("a malformed page cursor".to_owned());
        let json = from_hex(token).ok_or_else(invalid)?;
        let wire: Wire = serde_json::from_slice(&json).map_err(|_| invalid())?;
        for value in &wire.v {
            if let Some(hex) = &value.v {
                from_hex(hex).ok_or_else(invalid)?;
            }
        }
        Ok(Cursor {
            order: wire.o,
            values: wire.v,
            _marker: PhantomData,
        })
    }
}

impl<M> Serialize for Cursor<M> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_token())
    }
}

impl<'de, M> Deserialize<'de> for Cursor<M> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let token = String::deserialize(d)?;
        Cursor::from_token(&token).map_err(serde::de::Error::custom)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Reads a column's type and binary value, whatever its type.
struct RawColumn(Value);

impl<'a> FromSql<'a> for RawColumn {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawColumn(Value {
            t: ty.oid(),
            v: Some(to_hex(raw)),
        }))
    }

    fn from_sql_null(
        ty: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawColumn(Value {
            t: ty.oid(),
            v: None,
        }))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A cursor value bound back as a parameter: its binary value, checked against the
/// parameter's type (the text types share one encoding).
#[derive(Debug)]
struct RawParam {
    oid: u32,
    bytes: Vec<u8>,
}

fn is_text(oid: u32) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME]
        .iter()
        .any(|t| t.oid() == oid)
}

impl ToSql for RawParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if ty.oid() != self.oid && !(is_text(ty.oid()) && is_text(self.oid)) {
            return Err(format!(
                "a page cursor holds a value of type OID {} for a column of type {}",
                self.oid,
                ty.name()
            )
            .into());
        }
        out.extend_from_slice(&self.bytes);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// The ordering a keyset walks: the query's terms, then the primary-key columns it
/// does not name (ascending).
fn keyset_order<M: Model>(order: &[OrderBy<M>]) -> Vec<OrderBy<M>> {
    let mut terms = if order.is_empty() {
        primary_key_order::<M>()
    } else {
        order.to_vec()
    };
    for pk in primary_key_order::<M>() {
        if !terms.iter().any(|t| t.column == pk.column) {
            terms.push(pk);
        }
    }
    terms
}

/// Where NULLs sort for a term: PostgreSQL puts them last ascending, first descending.
fn nulls_first<M>(term: &OrderBy<M>) -> bool {
    term.nulls_first.unwrap_or(term.descending)
}

/// The ordering's signature, kept in the cursor to refuse one from another ordering.
fn signature<M>(terms: &[OrderBy<M>]) -> String {
    terms
        .iter()
        .map(|t| {
            format!(
                "{}:{}:{}",
                t.column,
                if t.descending { "d" } else { "a" },
                if nulls_first(t) { "nf" } else { "nl" }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The position of `terms[index]` in `M::META.columns`: where the row holds it.
fn column_index<M: Model>(term: &OrderBy<M>) -> Result<usize> {
    M::META
        .columns
        .iter()
        .position(|c| c.name == term.column)
        .ok_or_else(|| {
            Error::InvalidInput(format!("{} has no column {}", M::META.name, term.column))
        })
}

/// The cursor after `row`.
fn cursor_of<M: Model>(row: &Row, terms: &[OrderBy<M>]) -> Result<Cursor<M>> {
    let values = terms
        .iter()
        .map(|term| {
            let index = column_index(term)?;
            let raw: RawColumn = row.try_get(index).map_err(Error::from)?;
            Ok(raw.0)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Cursor {
        order: signature(terms),
        values,
        _marker: PhantomData,
    })
}

/// Binds a non-NULL cursor value.
fn bind(value: &Value) -> Result<Param> {
    let bytes = value
        .v
        .as_deref()
        .and_then(from_hex)
        .ok_or_else(|| Error::InvalidInput("a malformed page cursor".to_owned()))?;
    Ok(Param::new(RawParam {
        oid: value.t,
        bytes,
    }))
}

/// Writes "the row comes after `cursor`" for the ordering `terms`.
fn render_after<M: Model>(
    terms: &[OrderBy<M>],
    cursor: &Cursor<M>,
    sql: &mut SqlBuf,
) -> Result<()> {
    let values = &cursor.values;
    let Some(first) = terms.first() else {
        return Err(Error::InvalidInput("a keyset over no columns".to_owned()));
    };
    if values.len() != terms.len() {
        return Err(Error::InvalidInput("a malformed page cursor".to_owned()));
    }
    let same_direction = terms.iter().all(|t| t.descending == first.descending);
    let not_null = terms
        .iter()
        .zip(values)
        .all(|(t, v)| v.v.is_some() && M::META.column(t.column).is_some_and(|c| !c.nullable));
    if same_direction && not_null {
        // One row comparison, which an index on the ordering answers.
        sql.push("(");
        for (i, t) in terms.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.column(ROOT, t.column);
        }
        sql.push(if terms[0].descending {
            ") < ("
        } else {
            ") > ("
        });
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.param(bind(v)?);
        }
        sql.push(")");
        return Ok(());
    }
    // Term by term: equal on the terms before, after on this one.
    let mut any = false;
    sql.push("(");
    for (i, (term, value)) in terms.iter().zip(values).enumerate() {
        let nf = nulls_first(term);
        if value.v.is_none() && !nf {
            // NULL sorts last here: nothing follows it on this term.
            continue;
        }
        if any {
            sql.push(" OR ");
        }
        any = true;
        sql.push("(");
        for (t, v) in terms[..i].iter().zip(values) {
            sql.column(ROOT, t.column);
            if v.v.is_none() {
                sql.push(" IS NULL AND ");
            } else {
                sql.push(" = ").param(bind(v)?).push(" AND ");
            }
        }
        match &value.v {
            None => {
                sql.column(ROOT, term.column).push(" IS NOT NULL");
            }
            Some(_) => {
                sql.push("(");
                sql.column(ROOT, term.column)
                    .push(if term.descending { " < " } else { " > " })
                    .param(bind(value)?);
                if !nf {
                    sql.push(" OR ").column(ROOT, term.column).push(" IS NULL");
                }
                sql.push(")");
            }
        }
        sql.push(")");
    }
    if !any {
        sql.push("FALSE");
    }
    sql.push(")");
    Ok(())
}

impl<M: Model> Select<M> {
    /// One page of `size` rows in keyset (cursor) order: the first page with
    /// `after = None`, then each next page with the cursor the previous one returned.
    ///
    /// Works over any ordering: the primary key is appended as the tiebreak when the
    /// ordering does not name it, so pages never repeat or skip a row, composite keys
    /// included. A row inserted or deleted between two pages shifts nothing already
    /// read (unlike offsets): the next page starts strictly after the last row seen.
    /// NULLs in ordering columns are walked in their `NULLS FIRST` / `NULLS LAST`
    /// place. One statement per page, plus one per [`prefetch`](Self::prefetch) edge.
    ///
    /// Refused with [`Error::InvalidInput`]: a query with a limit or offset of its own,
    /// `size` 0, a cursor from another ordering, and joined trees
    /// ([`select_related`](Self::select_related), [`balanced`](Self::balanced)): a
    /// page loads relations with `prefetch`.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub total_cents: i64 }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let by_total = Order::query().order_by(Order::TOTAL_CENTS.desc());
    /// let mut after = None;
    /// loop {
    ///     let page = by_total.page_after(db, after.as_ref(), 100).await?;
    ///     for order in &page.items { /* ... */ }
    ///     match page.next {
    ///         // A token for an API's `next` link: matrx_orm::Cursor::from_token reads it.
    ///         Some(cursor) => after = Some(cursor),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn page_after<E: Executor>(
        &self,
        ex: &E,
        after: Option<&Cursor<M>>,
        size: u64,
    ) -> Result<KeysetPage<M>> {
        if size == 0 {
            return Err(Error::InvalidInput(format!(
                "a page of {} of size 0",
                M::META.name
            )));
        }
        if self.criteria.is_paged() {
            return Err(Error::InvalidInput(format!(
                "keyset pages of {} take no limit or offset of their own",
                M::META.name
            )));
        }
        if self.has_joined_trees() {
            return Err(Error::InvalidInput(format!(
                "keyset pages of {} load relations with prefetch, not joined trees",
                M::META.name
            )));
        }
        if M::META.primary_key.is_empty() {
            return Err(Error::InvalidInput(format!(
                "keyset pages of {} need a primary key as the ordering's tiebreak",
                M::META.name
            )));
        }
        self.prefetch.validate()?;
        let terms = keyset_order(&self.criteria.order);
        let mut sql = SqlBuf::new();
        sql.push("SELECT ")
            .columns(ROOT, M::META)
            .push(" FROM ")
            .table_as(M::META, ROOT)
            .push(" WHERE (");
        self.criteria.check()?;
        self.criteria.render_where(ROOT, &mut sql);
        sql.push(")");
        if let Some(cursor) = after {
            if cursor.order != signature(&terms) || cursor.values.len() != terms.len() {
                return Err(Error::InvalidInput(format!(
                    "a page cursor of another ordering than this query of {} ({})",
                    M::META.name,
                    signature(&terms)
                )));
            }
            sql.push(" AND ");
            render_after(&terms, cursor, &mut sql)?;
        }
        sql.push(" ORDER BY ");
        for (i, term) in terms.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            term.render(ROOT, &mut sql);
        }
        let limit = i64::try_from(size.saturating_add(1)).unwrap_or(i64::MAX);
        sql.push(" LIMIT ").param(Param::new(limit));
        let rows = ex.query_read(&sql.text, &as_sql_refs(&sql.params)).await?;
        let more = rows.len() as u64 > size;
        let kept = &rows[..rows.len().min(usize::try_from(size).unwrap_or(usize::MAX))];
        let next = match (more, kept.last()) {
            (true, Some(last)) => Some(cursor_of(last, &terms)?),
            _ => None,
        };
        let items = kept
            .iter()
            .map(|row| M::decode(row, 0))
            .collect::<Result<Vec<M>>>()?;
        let parents: Vec<&M> = items.iter().collect();
        self.load_prefetch(ex, &parents).await?;
        Ok(KeysetPage { items, next })
    }

    /// Page `number` (from 1) of `size` rows, with the total number of matching rows:
    /// two statements (the page and its `count(*)`, sent concurrently), plus the
    /// query's relation loads. The ordering gets the primary key as its tiebreak (the
    /// primary key alone when unordered), so pages do not overlap. A page past the end
    /// is empty with the right total.
    ///
    /// Offsets are simple but cost the server every skipped row and shift when rows
    /// are inserted before the page; [`page_after`](Self::page_after) does neither.
    /// On a `Db` the two statements may see different snapshots; in a transaction
    /// they are pipelined on its connection.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let page = Order::query()
    ///     .filter(Order::STATUS.eq("paid"))
    ///     .page(db, 3, 25)
    ///     .await?;
    /// println!("page {} of {} ({} orders)", page.number, page.pages(), page.total);
    /// # Ok(()) }
    /// ```
    pub async fn page<E: Executor>(&self, ex: &E, number: u64, size: u64) -> Result<Page<M>> {
        if number == 0 || size == 0 {
            return Err(Error::InvalidInput(format!(
                "page {number} of size {size} of {}: pages count from 1 and hold at least one row",
                M::META.name
            )));
        }
        if self.criteria.is_paged() {
            return Err(Error::InvalidInput(format!(
                "pages of {} take no limit or offset of their own",
                M::META.name
            )));
        }
        let offset = (number - 1).checked_mul(size).ok_or_else(|| {
            Error::InvalidInput(format!("page {number} of size {size} is out of range"))
        })?;
        let mut query = self.clone().limit(size).offset(offset);
        query.criteria.order = keyset_order(&self.criteria.order);
        let (items, total) = futures_util::future::try_join(query.all(ex), self.count(ex)).await?;
        Ok(Page {
            items,
            total,
            number,
            size,
        })
    }
}
