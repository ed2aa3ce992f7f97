//! [`Selection`]: what a statement reads per row besides (or instead of) whole models —
//! a column, an aggregate over the rows, an aggregate over a relation of each row, a
//! plain struct's columns, or a tuple of these — and how each is read back, typed.
//!
//! A selection writes its select-list entries into a [`SelectList`], which also
//! records what kind of entry each is, so a grouped query can check that every plain
//! column it reads is one it groups by before anything is sent.

use std::marker::PhantomData;

use postgres_types::FromSql;
use tokio_postgres::Row;

use crate::base::decode::{decode_column, FromRow};
use crate::base::error::{Error, Result};
use crate::base::sql::{SqlBuf, ROOT};
use crate::schema::aggregate::{Aggregate, ColumnAggregate};
use crate::schema::column::Column;
use crate::schema::model::{Model, Relation};

/// The select list of one statement being written: its entries, separated by commas,
/// and what kind each one is.
#[doc(hidden)]
pub struct SelectList<'a> {
    sql: &'a mut SqlBuf,
    entries: usize,
    columns: Vec<&'static str>,
    row_aggregates: usize,
    subqueries: usize,
}

impl<'a> SelectList<'a> {
    /// A list written into `sql`; `after` entries are already there (the model's own
    /// columns, say), so the next entry starts with a comma.
    pub(crate) fn new(sql: &'a mut SqlBuf, after: usize) -> Self {
        SelectList {
            sql,
            entries: after,
            columns: Vec::new(),
            row_aggregates: 0,
            subqueries: 0,
        }
    }

    /// Starts one entry (writing the separator) and returns where to write it.
    fn entry(&mut self) -> &mut SqlBuf {
        if self.entries > 0 {
            self.sql.push(", ");
        }
        self.entries += 1;
        &mut *self.sql
    }

    /// Starts one subquery entry and returns where to write it and the subquery's
    /// alias stem (`a0`, `a1`, ...), unique within the statement.
    fn subquery(&mut self) -> (&mut SqlBuf, String) {
        let stem = format!("a{}", self.subqueries);
        self.subqueries += 1;
        (self.entry(), stem)
    }

    /// Writes the plain column `column` of the root row.
    fn column(&mut self, column: &'static str) {
        self.entry().column(ROOT, column);
        self.columns.push(column);
    }

    /// The plain columns written so far, in order.
    pub(crate) fn columns(&self) -> &[&'static str] {
        &self.columns
    }

    /// How many aggregates over the statement's own rows were written.
    pub(crate) fn row_aggregates(&self) -> usize {
        self.row_aggregates
    }
}

/// Something a query on `M` reads per row: a [`Column`] of `M` (read as its type), an
/// aggregate over `M`'s rows ([`ColumnAggregate`], for grouped queries), an aggregate
/// over a relation of each row ([`Aggregate`]: one scalar subquery), a plain struct's
/// columns ([`Struct`], from [`Select::select_as`](crate::Select::select_as)), or a tuple of up to eight of these,
/// read as the tuple of their outputs.
///
/// Used by [`Select::values`](crate::Select::values) and
/// [`Select::annotate`](crate::Select::annotate).
pub trait Selection<M>: Send + Sync {
    /// What each row's selection is read as.
    type Output;

    /// Appends the select-list entries.
    #[doc(hidden)]
    fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()>;

    /// Reads the selection from `row` starting at field `at`; returns it and the
    /// next field.
    #[doc(hidden)]
    fn decode(&self, row: &Row, at: usize) -> Result<(Self::Output, usize)>;
}

impl<M: Model, T> Selection<M> for Column<M, T>
where
    T: for<'a> FromSql<'a> + Send + Sync,
{
    type Output = T;

    fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()> {
        list.column(self.name());
        Ok(())
    }

    fn decode(&self, row: &Row, at: usize) -> Result<(T, usize)> {
        Ok((decode_column(row, at, M::META.name)?, at + 1))
    }
}

/// A column that may be NULL, read as `Option<T>`; see [`Column::nullable`].
pub struct Nullable<M, T>(Column<M, T>);

impl<M: Model, T> Column<M, T> {
    /// This column read as `Option<T>`, for a [`Selection`] of a column that may be
    /// NULL (a plain column selection reads `T`, and a NULL is then a decode error
    /// naming the column).
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64, pub referred_by: Option<i64> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let referrers: Vec<(i64, Option<i64>)> = Customer::query()
    ///     .values((Customer::ID, Customer::REFERRED_BY.nullable()))
    ///     .all(db)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn nullable(self) -> Nullable<M, T> {
        Nullable(self)
    }
}

impl<M: Model, T> Selection<M> for Nullable<M, T>
where
    T: for<'a> FromSql<'a> + Send + Sync,
{
    type Output = Option<T>;

    fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()> {
        list.column(self.0.name());
        Ok(())
    }

    fn decode(&self, row: &Row, at: usize) -> Result<(Option<T>, usize)> {
        Ok((decode_column(row, at, M::META.name)?, at + 1))
    }
}

impl<R, T> Selection<R::Source> for Aggregate<R, T>
where
    R: Relation,
    T: for<'a> FromSql<'a> + Send + Sync,
{
    type Output = T;

    fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()> {
        let (sql, stem) = list.subquery();
        self.push_subquery(sql, ROOT, &stem)
    }

    fn decode(&self, row: &Row, at: usize) -> Result<(T, usize)> {
        Ok((
            decode_column(row, at, <R::Source as Model>::META.name)?,
            at + 1,
        ))
    }
}

impl<M: Model, T> Selection<M> for ColumnAggregate<M, T>
where
    T: for<'a> FromSql<'a> + Send + Sync,
{
    type Output = T;

    fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()> {
        self.expr.push(list.entry())?;
        list.row_aggregates += 1;
        Ok(())
    }

    fn decode(&self, row: &Row, at: usize) -> Result<(T, usize)> {
        Ok((decode_column(row, at, M::META.name)?, at + 1))
    }
}

/// The columns of plain struct `T` (a [`FromRow`]), read from a query on `M`; see
/// [`Select::select_as`](crate::Select::select_as).
pub struct Struct<M, T> {
    _marker: PhantomData<fn() -> (M, T)>,
}

impl<M, T> Struct<M, T> {
    pub(crate) fn new() -> Self {
        Struct {
            _marker: PhantomData,
        }
    }
}

impl<M: Model, T: FromRow> Selection<M> for Struct<M, T> {
    type Output = T;

    fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()> {
        for name in T::COLUMNS {
            let column = M::META
                .columns
                .iter()
                .find(|c| c.name == *name)
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{} reads column `{name}`, which model {} does not have (its columns: {})",
                        std::any::type_name::<T>(),
                        M::META.name,
                        M::META
                            .columns
                            .iter()
                            .map(|c| c.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            list.column(column.name);
        }
        Ok(())
    }

    fn decode(&self, row: &Row, at: usize) -> Result<(T, usize)> {
        Ok((T::from_row(row, at)?, at + T::COLUMNS.len()))
    }
}

macro_rules! tuple_selection {
    ($($name:ident),+) => {
        impl<M, $($name: Selection<M>),+> Selection<M> for ($($name,)+) {
            type Output = ($($name::Output,)+);

            #[allow(non_snake_case)]
            fn push_selects(&self, list: &mut SelectList<'_>) -> Result<()> {
                let ($($name,)+) = self;
                $($name.push_selects(list)?;)+
                Ok(())
            }

            #[allow(non_snake_case)]
            fn decode(&self, row: &Row, at: usize) -> Result<(Self::Output, usize)> {
                let ($($name,)+) = self;
                $(let ($name, at) = $name.decode(row, at)?;)+
                Ok((($($name,)+), at))
            }
        }
    };
}

tuple_selection!(A);
tuple_selection!(A, B);
tuple_selection!(A, B, C);
tuple_selection!(A, B, C, D);
tuple_selection!(A, B, C, D, E);
tuple_selection!(A, B, C, D, E, F);
tuple_selection!(A, B, C, D, E, F, G);
tuple_selection!(A, B, C, D, E, F, G, H);
