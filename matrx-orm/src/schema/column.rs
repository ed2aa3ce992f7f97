//! Typed column handles: `Customer::EMAIL` is a `Column<Customer, String>`.
//!
//! `#[derive(Model)]` emits one associated constant per column. Filters and orderings
//! are built from them, so a misspelt column or a value of the wrong type is a compile
//! error.

use std::marker::PhantomData;

use postgres_types::ToSql;

use crate::base::meta::ColumnMeta;
use crate::base::sql::SqlBuf;
use crate::base::value::Param;
use crate::schema::filter::{CmpOp, Filter, Node};
use crate::schema::model::Model;

/// A column of model `M` whose (non-NULL) values are of type `T`.
pub struct Column<M, T> {
    index: usize,
    _marker: PhantomData<fn() -> (M, T)>,
}

impl<M, T> Clone for Column<M, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M, T> Copy for Column<M, T> {}

impl<M, T> std::fmt::Debug for Column<M, T>
where
    M: Model,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", M::META.name, self.name())
    }
}

impl<M: Model, T> Column<M, T> {
    /// The handle of column `index` of `M::META.columns` (emitted by the derive).
    #[doc(hidden)]
    pub const fn new(index: usize) -> Self {
        Column {
            index,
            _marker: PhantomData,
        }
    }

    /// The column's position in `M::META.columns`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The column's metadata.
    pub fn meta(&self) -> &'static ColumnMeta {
        &M::META.columns[self.index]
    }

    /// The SQL column name.
    pub fn name(&self) -> &'static str {
        self.meta().name
    }

    /// Ascending order on this column.
    pub fn asc(self) -> OrderBy<M> {
        OrderBy::new(self.name(), false)
    }

    /// Descending order on this column.
    pub fn desc(self) -> OrderBy<M> {
        OrderBy::new(self.name(), true)
    }

    /// `column IS NULL`.
    pub fn is_null(self) -> Filter<M> {
        Filter::new(Node::IsNull {
            column: self.name(),
            negated: false,
        })
    }

    /// `column IS NOT NULL`.
    pub fn is_not_null(self) -> Filter<M> {
        Filter::new(Node::IsNull {
            column: self.name(),
            negated: true,
        })
    }
}

impl<M: Model, T: ToSql + Send + Sync + 'static> Column<M, T> {
    fn cmp(self, op: CmpOp, value: T) -> Filter<M> {
        Filter::new(Node::Cmp {
            column: self.name(),
            op,
            value: Param::new(value),
        })
    }

    /// `column = value`.
    ///
    /// ```
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64, pub email: String }
    /// let f = Customer::EMAIL.eq("ann@example.com");
    /// ```
    pub fn eq(self, value: impl Into<T>) -> Filter<M> {
        self.cmp(CmpOp::Eq, value.into())
    }

    /// `column <> value` (SQL semantics: a NULL column matches neither `eq` nor `ne`).
    pub fn ne(self, value: impl Into<T>) -> Filter<M> {
        self.cmp(CmpOp::Ne, value.into())
    }

    /// `column > value`.
    pub fn gt(self, value: impl Into<T>) -> Filter<M> {
        self.cmp(CmpOp::Gt, value.into())
    }

    /// `column >= value`.
    pub fn gte(self, value: impl Into<T>) -> Filter<M> {
        self.cmp(CmpOp::Gte, value.into())
    }

    /// `column < value`.
    pub fn lt(self, value: impl Into<T>) -> Filter<M> {
        self.cmp(CmpOp::Lt, value.into())
    }

    /// `column <= value`.
    pub fn lte(self, value: impl Into<T>) -> Filter<M> {
        self.cmp(CmpOp::Lte, value.into())
    }

    /// `column BETWEEN low AND high` (both ends included).
    pub fn between(self, low: impl Into<T>, high: impl Into<T>) -> Filter<M> {
        Filter::new(Node::Between {
            column: self.name(),
            low: Param::new(low.into()),
            high: Param::new(high.into()),
        })
    }

    /// `column = ANY($n)`: one array parameter, whatever the number of values.
    pub fn is_in<V: Into<T>>(self, values: impl IntoIterator<Item = V>) -> Filter<M> {
        let values: Vec<T> = values.into_iter().map(Into::into).collect();
        Filter::new(Node::Any {
            column: self.name(),
            values: Param::new(values),
            negated: false,
        })
    }

    /// `column <> ALL($n)`: the negation of [`is_in`](Self::is_in).
    pub fn not_in<V: Into<T>>(self, values: impl IntoIterator<Item = V>) -> Filter<M> {
        let values: Vec<T> = values.into_iter().map(Into::into).collect();
        Filter::new(Node::Any {
            column: self.name(),
            values: Param::new(values),
            negated: true,
        })
    }
}

impl<M: Model> Column<M, String> {
    /// `column LIKE pattern` (the pattern is a bound value; `%` and `_` are wildcards).
    pub fn like(self, pattern: impl Into<String>) -> Filter<M> {
        self.cmp(CmpOp::Like, pattern.into())
    }

    /// `column ILIKE pattern` (case-insensitive [`like`](Self::like)).
    pub fn ilike(self, pattern: impl Into<String>) -> Filter<M> {
        self.cmp(CmpOp::ILike, pattern.into())
    }
}

/// One term of an `ORDER BY` on model `M`.
pub struct OrderBy<M> {
    pub(crate) column: &'static str,
    pub(crate) descending: bool,
    pub(crate) nulls_first: Option<bool>,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Clone for OrderBy<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for OrderBy<M> {}

impl<M> std::fmt::Debug for OrderBy<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.column,
            if self.descending { "DESC" } else { "ASC" }
        )
    }
}

impl<M> OrderBy<M> {
    fn new(column: &'static str, descending: bool) -> Self {
        OrderBy {
            column,
            descending,
            nulls_first: None,
            _marker: PhantomData,
        }
    }

    /// Puts NULLs first.
    pub fn nulls_first(mut self) -> Self {
        self.nulls_first = Some(true);
        self
    }

    /// Puts NULLs last.
    pub fn nulls_last(mut self) -> Self {
        self.nulls_first = Some(false);
        self
    }

    /// Writes `"alias"."column" DESC NULLS LAST`.
    pub(crate) fn render(&self, alias: &str, sql: &mut SqlBuf) {
        sql.column(alias, self.column);
        sql.push(if self.descending { " DESC" } else { " ASC" });
        match self.nulls_first {
            Some(true) => sql.push(" NULLS FIRST"),
            Some(false) => sql.push(" NULLS LAST"),
            None => sql,
        };
    }
}

/// A column of model `M` of any type, for lists of columns (conflict targets).
pub struct ColumnRef<M> {
    index: usize,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Clone for ColumnRef<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for ColumnRef<M> {}

impl<M: Model> ColumnRef<M> {
    /// The SQL column name.
    pub fn name(&self) -> &'static str {
        M::META.columns[self.index].name
    }

    /// The column's position in `M::META.columns`.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<M: Model> std::fmt::Debug for ColumnRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", M::META.name, self.name())
    }
}

impl<M, T> From<Column<M, T>> for ColumnRef<M> {
    fn from(column: Column<M, T>) -> Self {
        ColumnRef {
            index: column.index,
            _marker: PhantomData,
        }
    }
}
