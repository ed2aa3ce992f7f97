//! [`Aggregate`]: a count, sum, minimum, maximum or average over a relation's targets,
//! per parent — `Customer::ORDERS.count()`, `Customer::ORDERS.sum(Order::TOTAL_CENTS)`.
//!
//! An aggregate is a description; it is read either inside the parents' own statement
//! ([`Select::annotate`](crate::Select::annotate): one scalar subquery per aggregate)
//! or for a collection already loaded ([`Aggregate::load`]: one `GROUP BY` statement
//! over the parents' keys).

use std::marker::PhantomData;

use postgres_types::ToSql;

use crate::base::error::Result;
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::Param;
use crate::schema::column::{Column, OrderBy};
use crate::schema::correlated::Correlated;
use crate::schema::filter::{CmpOp, Filter, Node};
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

/// Writes `count(*)`, `sum("alias"."column")`, ...: the call, without cast or filter.
fn push_call(
    sql: &mut SqlBuf,
    func: Func,
    column: Option<&'static str>,
    distinct: bool,
    alias: &str,
) {
    let name = match func {
        Func::Count => "count",
        Func::Sum => "sum",
        Func::Min => "min",
        Func::Max => "max",
        Func::Avg => "avg",
    };
    sql.push(name).push("(");
    if distinct {
        sql.push("DISTINCT ");
    }
    match column {
        Some(column) => {
            sql.column(alias, column);
        }
        None => {
            sql.push("*");
        }
    }
    sql.push(")");
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
        push_call(sql, self.func, self.column, false, alias);
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

/// An aggregate over the rows a query reads — `count()`, `Order::TOTAL_CENTS.sum()` —
/// read as `T`: `i64` for counts, an `Option` for the others (`None` over no rows, or
/// only NULLs). Used in [`Select::values`](crate::Select::values), usually with
/// [`group_by`](crate::Values::group_by); compared in
/// [`having`](crate::Values::having) and ordered by in
/// [`order_by`](crate::Values::order_by).
///
/// ```
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String, pub total_cents: i64 }
/// use matrx_orm::count;
///
/// // Per status: the number of orders, how many are large, and their total.
/// let query = Order::query()
///     .values((
///         Order::STATUS,
///         count(),
///         count().filter(Order::TOTAL_CENTS.gte(10_000)),
///         Order::TOTAL_CENTS.sum(),
///     ))
///     .group_by(Order::STATUS)
///     .having(count().gt(10))
///     .order_by(count().desc());
/// let sql = query.to_sql().unwrap();
/// assert!(sql.text.contains(r#"count(*) FILTER (WHERE "t"."total_cents" >= $1)"#));
/// assert!(sql.text.contains(r#"GROUP BY "t"."status" HAVING count(*) > $2"#));
/// ```
pub struct ColumnAggregate<M, T> {
    pub(crate) expr: RowAggregate,
    _marker: PhantomData<fn() -> (M, T)>,
}

/// The untyped aggregate of a [`ColumnAggregate`].
#[derive(Debug, Clone)]
pub(crate) struct RowAggregate {
    func: Func,
    column: Option<&'static str>,
    cast: Option<&'static str>,
    distinct: bool,
    filter: Option<Node>,
}

impl RowAggregate {
    /// `count(*)`, `(sum("t"."c") FILTER (WHERE ...))::int8`, ... over the root rows.
    pub(crate) fn push(&self, sql: &mut SqlBuf) -> Result<()> {
        if self.cast.is_some() {
            sql.push("(");
        }
        push_call(sql, self.func, self.column, self.distinct, ROOT);
        if let Some(filter) = &self.filter {
            filter.check()?;
            sql.push(" FILTER (WHERE ");
            filter.render(ROOT, sql);
            sql.push(")");
        }
        if let Some(cast) = self.cast {
            sql.push(")::").push(cast);
        }
        Ok(())
    }
}

impl<M, T> Clone for ColumnAggregate<M, T> {
    fn clone(&self) -> Self {
        ColumnAggregate {
            expr: self.expr.clone(),
            _marker: PhantomData,
        }
    }
}

impl<M, T> std::fmt::Debug for ColumnAggregate<M, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}({}{})",
            self.expr.func,
            if self.expr.distinct { "DISTINCT " } else { "" },
            self.expr.column.unwrap_or("*")
        )
    }
}

impl<M, T> ColumnAggregate<M, T> {
    fn new(func: Func, column: Option<&'static str>, cast: Option<&'static str>) -> Self {
        ColumnAggregate {
            expr: RowAggregate {
                func,
                column,
                cast,
                distinct: false,
                filter: None,
            },
            _marker: PhantomData,
        }
    }

    /// Aggregates only the rows matching `filter` (`FILTER (WHERE ...)`; combined
    /// with an earlier filter by AND).
    pub fn filter(mut self, filter: Filter<M>) -> Self {
        self.expr.filter = Some(match self.expr.filter.take() {
            Some(prev) => Node::And(vec![prev, filter.node]),
            None => filter.node,
        });
        self
    }

    /// Ascending order on this aggregate, for a grouped query.
    pub fn asc(&self) -> GroupOrder<M> {
        GroupOrder::aggregate(self.expr.clone(), false)
    }

    /// Descending order on this aggregate, for a grouped query.
    pub fn desc(&self) -> GroupOrder<M> {
        GroupOrder::aggregate(self.expr.clone(), true)
    }
}

/// The number of rows: `count(*)` over the rows a query reads (per group, when it
/// groups). See [`ColumnAggregate`].
pub fn count<M>() -> ColumnAggregate<M, i64> {
    ColumnAggregate::new(Func::Count, None, None)
}

impl<M: Model, V> Column<M, V> {
    /// The number of rows where this column is not NULL.
    pub fn count(self) -> ColumnAggregate<M, i64> {
        ColumnAggregate::new(Func::Count, Some(self.name()), None)
    }

    /// The number of distinct non-NULL values of this column.
    pub fn count_distinct(self) -> ColumnAggregate<M, i64> {
        let mut aggregate = ColumnAggregate::new(Func::Count, Some(self.name()), None);
        aggregate.expr.distinct = true;
        aggregate
    }

    /// The sum of this column over the rows (`None` over none). Integer sums are read
    /// as `i64`; a sum past its range is an error from the server, never a wrapped value.
    pub fn sum(self) -> ColumnAggregate<M, Option<V::Sum>>
    where
        V: Numeric,
    {
        ColumnAggregate::new(Func::Sum, Some(self.name()), Some(V::SUM_CAST))
    }

    /// The average of this column over the rows (`None` over none).
    pub fn avg(self) -> ColumnAggregate<M, Option<V::Avg>>
    where
        V: Numeric,
    {
        ColumnAggregate::new(Func::Avg, Some(self.name()), Some(V::AVG_CAST))
    }

    /// The smallest value of this column over the rows (`None` over none).
    pub fn min(self) -> ColumnAggregate<M, Option<V>> {
        ColumnAggregate::new(Func::Min, Some(self.name()), None)
    }

    /// The largest value of this column over the rows (`None` over none).
    pub fn max(self) -> ColumnAggregate<M, Option<V>> {
        ColumnAggregate::new(Func::Max, Some(self.name()), None)
    }
}

/// The type an aggregate read as `Self` is compared with: `i64` for a count, `T` for
/// an `Option<T>` result.
pub trait Compared {
    /// The value type of comparisons.
    type Value: ToSql + Send + Sync + 'static;
}

impl Compared for i64 {
    type Value = i64;
}

impl<T: ToSql + Send + Sync + 'static> Compared for Option<T> {
    type Value = T;
}

impl<M, T: Compared> ColumnAggregate<M, T> {
    fn cmp(&self, op: CmpOp, value: T::Value) -> Having<M> {
        Having::new(HavingNode::Cmp {
            aggregate: self.expr.clone(),
            op,
            value: Param::new(value),
        })
    }

    /// `aggregate = value`.
    pub fn eq(&self, value: impl Into<T::Value>) -> Having<M> {
        self.cmp(CmpOp::Eq, value.into())
    }

    /// `aggregate <> value`.
    pub fn ne(&self, value: impl Into<T::Value>) -> Having<M> {
        self.cmp(CmpOp::Ne, value.into())
    }

    /// `aggregate > value`.
    pub fn gt(&self, value: impl Into<T::Value>) -> Having<M> {
        self.cmp(CmpOp::Gt, value.into())
    }

    /// `aggregate >= value`.
    pub fn gte(&self, value: impl Into<T::Value>) -> Having<M> {
        self.cmp(CmpOp::Gte, value.into())
    }

    /// `aggregate < value`.
    pub fn lt(&self, value: impl Into<T::Value>) -> Having<M> {
        self.cmp(CmpOp::Lt, value.into())
    }

    /// `aggregate <= value`.
    pub fn lte(&self, value: impl Into<T::Value>) -> Having<M> {
        self.cmp(CmpOp::Lte, value.into())
    }
}

/// A condition on the groups of a grouped query (`HAVING`), built by comparing
/// [`ColumnAggregate`]s and combined with `&`, `|` and `!`.
pub struct Having<M> {
    node: HavingNode,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Having<M> {
    fn clone(&self) -> Self {
        Having::new(self.node.clone())
    }
}

impl<M> std::fmt::Debug for Having<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.node.fmt(f)
    }
}

#[derive(Debug, Clone)]
enum HavingNode {
    Cmp {
        aggregate: RowAggregate,
        op: CmpOp,
        value: Param,
    },
    And(Box<HavingNode>, Box<HavingNode>),
    Or(Box<HavingNode>, Box<HavingNode>),
    Not(Box<HavingNode>),
}

impl HavingNode {
    fn render(&self, sql: &mut SqlBuf) -> Result<()> {
        match self {
            HavingNode::Cmp {
                aggregate,
                op,
                value,
            } => {
                aggregate.push(sql)?;
                sql.push(op.sql()).param(value.clone());
            }
            HavingNode::And(a, b) | HavingNode::Or(a, b) => {
                sql.push("(");
                a.render(sql)?;
                sql.push(if matches!(self, HavingNode::And(..)) {
                    " AND "
                } else {
                    " OR "
                });
                b.render(sql)?;
                sql.push(")");
            }
            HavingNode::Not(inner) => {
                sql.push("NOT (");
                inner.render(sql)?;
                sql.push(")");
            }
        }
        Ok(())
    }
}

impl<M> Having<M> {
    fn new(node: HavingNode) -> Self {
        Having {
            node,
            _marker: PhantomData,
        }
    }

    /// Both conditions.
    pub fn and(self, other: Having<M>) -> Having<M> {
        Having::new(HavingNode::And(Box::new(self.node), Box::new(other.node)))
    }

    /// Either condition.
    pub fn or(self, other: Having<M>) -> Having<M> {
        Having::new(HavingNode::Or(Box::new(self.node), Box::new(other.node)))
    }

    /// The negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Having<M> {
        Having::new(HavingNode::Not(Box::new(self.node)))
    }

    /// Writes the condition (on the root rows' aggregates).
    pub(crate) fn render(&self, sql: &mut SqlBuf) -> Result<()> {
        self.node.render(sql)
    }
}

impl<M> std::ops::BitAnd for Having<M> {
    type Output = Having<M>;
    fn bitand(self, rhs: Having<M>) -> Having<M> {
        self.and(rhs)
    }
}

impl<M> std::ops::BitOr for Having<M> {
    type Output = Having<M>;
    fn bitor(self, rhs: Having<M>) -> Having<M> {
        self.or(rhs)
    }
}

impl<M> std::ops::Not for Having<M> {
    type Output = Having<M>;
    fn not(self) -> Having<M> {
        Having::not(self)
    }
}

/// One term of the ordering of a grouped query: a column (`Order::STATUS.asc()`, any
/// [`OrderBy`]) or an aggregate (`count().desc()`).
pub struct GroupOrder<M> {
    term: GroupTerm<M>,
}

enum GroupTerm<M> {
    Column(OrderBy<M>),
    Aggregate {
        aggregate: RowAggregate,
        descending: bool,
    },
}

impl<M> Clone for GroupOrder<M> {
    fn clone(&self) -> Self {
        GroupOrder {
            term: match &self.term {
                GroupTerm::Column(order) => GroupTerm::Column(*order),
                GroupTerm::Aggregate {
                    aggregate,
                    descending,
                } => GroupTerm::Aggregate {
                    aggregate: aggregate.clone(),
                    descending: *descending,
                },
            },
        }
    }
}

impl<M> GroupOrder<M> {
    fn aggregate(aggregate: RowAggregate, descending: bool) -> Self {
        GroupOrder {
            term: GroupTerm::Aggregate {
                aggregate,
                descending,
            },
        }
    }

    /// Writes the term on the root rows.
    pub(crate) fn render(&self, sql: &mut SqlBuf) -> Result<()> {
        match &self.term {
            GroupTerm::Column(order) => order.render(ROOT, sql),
            GroupTerm::Aggregate {
                aggregate,
                descending,
            } => {
                aggregate.push(sql)?;
                sql.push(if *descending { " DESC" } else { " ASC" });
            }
        }
        Ok(())
    }
}

impl<M> From<OrderBy<M>> for GroupOrder<M> {
    fn from(order: OrderBy<M>) -> Self {
        GroupOrder {
            term: GroupTerm::Column(order),
        }
    }
}
