//! [`Aggregate`]: a count, sum, minimum, maximum or average over a relation's targets,
//! per parent — `Customer::ORDERS.count()`, `Customer::ORDERS.sum(Order::TOTAL_CENTS)`.
//!
//! An aggregate is a description; it is read either inside the parents' own statement
//! ([`Select::annotate`](crate::Select::annotate): one scalar subquery per aggregate)
//! or for a collection already loaded ([`Aggregate::load`]: one `GROUP BY` statement
//! over the parents' keys).

use std::marker::PhantomData;

use crate::base::error::Result;
use crate::base::sql::SqlBuf;
use crate::schema::column::Column;
use crate::schema::correlated::Correlated;
use crate::schema::filter::Filter;
use crate::schema::model::{Model, Relation};

/// The aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// An aggregate over the targets of relation `R`, per parent, read as `T`: `i64` for
/// a count (0 for a parent with no targets), an `Option` for the others (`None` for a
/// parent with no targets, or only NULLs).
///
/// ```
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64, pub status: String, pub total_cents: i64 }
/// # #[derive(Model, Debug)] #[orm(table = "customers")]
/// # pub struct Customer { #[orm(primary_key)] pub id: i64,
/// #   #[orm(has_many(foreign_key = "customer_id"))] pub orders: Many<Order> }
/// // Each customer with its number of paid orders and what they spent.
/// let query = Customer::query().annotate((
///     Customer::ORDERS.count().filter(Order::STATUS.eq("paid")),
///     Customer::ORDERS.sum(Order::TOTAL_CENTS),
/// ));
/// ```
pub struct Aggregate<R: Relation, T> {
    pub(crate) func: Func,
    /// The target's column (none for a count).
    pub(crate) column: Option<&'static str>,
    /// The type the result is cast to (`int8` for sums of integers, ...).
    pub(crate) cast: Option<&'static str>,
    /// Only targets matching this are aggregated.
    pub(crate) filter: Option<Filter<R::Target>>,
    _marker: PhantomData<fn() -> T>,
}

impl<R: Relation, T> Clone for Aggregate<R, T> {
    fn clone(&self) -> Self {
        Aggregate {
            func: self.func,
            column: self.column,
            cast: self.cast,
            filter: self.filter.clone(),
            _marker: PhantomData,
        }
    }
}

impl<R: Relation, T> std::fmt::Debug for Aggregate<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}({}.{}{})",
            self.func,
            <R::Source as Model>::META.name,
            R::META.name,
            self.column.map(|c| format!(".{c}")).unwrap_or_default()
        )
    }
}

impl<R: Relation, T> Aggregate<R, T> {
    pub(crate) fn new(
        func: Func,
        column: Option<&'static str>,
        cast: Option<&'static str>,
    ) -> Self {
        Aggregate {
            func,
            column,
            cast,
            filter: None,
            _marker: PhantomData,
        }
    }

    /// Aggregates only the targets matching `filter` (combined with an earlier filter
    /// by AND).
    pub fn filter(mut self, filter: Filter<R::Target>) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(prev) => prev.and(filter),
            None => filter,
        });
        self
    }

    /// `count(*)`, `sum("a"."c")::int8`, ... over the target rows aliased `alias`.
    pub(crate) fn push_expr(&self, sql: &mut SqlBuf, alias: &str) {
        let name = match self.func {
            Func::Count => "count",
            Func::Sum => "sum",
            Func::Min => "min",
            Func::Max => "max",
            Func::Avg => "avg",
        };
        sql.push(name).push("(");
        match self.column {
            Some(column) => {
                sql.column(alias, column);
            }
            None => {
                sql.push("*");
            }
        }
        sql.push(")");
        if let Some(cast) = self.cast {
            sql.push("::").push(cast);
        }
    }

    /// `(SELECT <expr> FROM <targets of the parent row aliased parent>)`; the
    /// subquery's aliases derive from `name`, unique within the statement.
    pub(crate) fn push_subquery(&self, sql: &mut SqlBuf, parent: &str, name: &str) -> Result<()> {
        let relation = Correlated::new(<R::Source as Model>::META, R::META)?;
        let alias = format!("{parent}_{name}");
        let junction = format!("{parent}_{name}j");
        sql.push("(SELECT ");
        self.push_expr(sql, &alias);
        sql.push(" FROM ");
        relation.push_from(sql, &alias, &junction);
        sql.push(" WHERE ");
        relation.push_match(sql, &alias, &junction, parent);
        if let Some(filter) = &self.filter {
            filter.check()?;
            sql.push(" AND ");
            filter.render(&alias, sql);
        }
        sql.push(")");
        Ok(())
    }
}

/// A numeric column type: what its sum and average are read as, and the casts that
/// make PostgreSQL return exactly that (`sum(integer)` is `bigint`, `sum(bigint)` is
/// `numeric` unless cast, `avg` of an integer is `numeric`).
pub trait Numeric {
    /// The type a sum is read as.
    type Sum;
    /// The type an average is read as.
    type Avg;
    /// The cast of a sum.
    const SUM_CAST: &'static str;
    /// The cast of an average.
    const AVG_CAST: &'static str;
}

macro_rules! numeric {
    ($($t:ty => $sum:ty, $sum_cast:literal, $avg:ty, $avg_cast:literal;)*) => {$(
        impl Numeric for $t {
            type Sum = $sum;
            type Avg = $avg;
            const SUM_CAST: &'static str = $sum_cast;
            const AVG_CAST: &'static str = $avg_cast;
        }
    )*};
}

numeric! {
    i16 => i64, "int8", f64, "float8";
    i32 => i64, "int8", f64, "float8";
    i64 => i64, "int8", f64, "float8";
    f32 => f64, "float8", f64, "float8";
    f64 => f64, "float8", f64, "float8";
    rust_decimal::Decimal => rust_decimal::Decimal, "numeric", rust_decimal::Decimal, "numeric";
}

/// Aggregates of a relation, built from its constant: `Customer::ORDERS.count()`.
/// Implemented for every relation; in the [prelude](crate::prelude).
pub trait RelationAggregates: Relation {
    /// The number of targets per parent (0 when none).
    fn count(self) -> Aggregate<Self, i64> {
        Aggregate::new(Func::Count, None, None)
    }

    /// The sum of `column` over the targets (`None` when none). Integer sums are read
    /// as `i64` (a sum past its range is an error from the server, never a wrapped
    /// value).
    fn sum<V: Numeric>(self, column: Column<Self::Target, V>) -> Aggregate<Self, Option<V::Sum>> {
        Aggregate::new(Func::Sum, Some(column.name()), Some(V::SUM_CAST))
    }

    /// The average of `column` over the targets (`None` when none).
    fn avg<V: Numeric>(self, column: Column<Self::Target, V>) -> Aggregate<Self, Option<V::Avg>> {
        Aggregate::new(Func::Avg, Some(column.name()), Some(V::AVG_CAST))
    }

    /// The smallest value of `column` over the targets (`None` when none).
    fn min<V>(self, column: Column<Self::Target, V>) -> Aggregate<Self, Option<V>> {
        Aggregate::new(Func::Min, Some(column.name()), None)
    }

    /// The largest value of `column` over the targets (`None` when none).
    fn max<V>(self, column: Column<Self::Target, V>) -> Aggregate<Self, Option<V>> {
        Aggregate::new(Func::Max, Some(column.name()), None)
    }
}

impl<R: Relation> RelationAggregates for R {}
