//! [`Values`]: a query that reads chosen columns and aggregates instead of whole
//! models — typed tuples ([`Select::values`]) or a plain struct
//! ([`Select::select_as`]) — optionally grouped (`GROUP BY`, `HAVING`, ordered by an
//! aggregate). One statement; the query's filter, ordering and paging apply.

use crate::base::decode::FromRow;
use crate::base::error::{Error, Result};
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::as_sql_refs;
use crate::executor::Executor;
use crate::query::select::Select;
use crate::schema::aggregate::{GroupOrder, Having};
use crate::schema::column::Column;
use crate::schema::model::Model;
use crate::schema::selection::{SelectList, Selection, Struct};

impl<M: Model> Select<M> {
    /// Reads `selection` per row instead of the model: a column (read as its type),
    /// a [`nullable`](Column::nullable) column, an aggregate over the rows
    /// ([`ColumnAggregate`](crate::ColumnAggregate), with
    /// [`group_by`](Values::group_by)), an aggregate over a relation of each row, or a
    /// tuple of these, read as the tuple of their types. Only those columns are sent.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String, pub total_cents: i64 }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// use matrx_orm::count;
    ///
    /// // Two columns of the paid orders, no model built.
    /// let paid: Vec<(i64, i64)> = Order::query()
    ///     .filter(Order::STATUS.eq("paid"))
    ///     .values((Order::ID, Order::TOTAL_CENTS))
    ///     .all(db)
    ///     .await?;
    ///
    /// // Orders and revenue per status, the busiest first.
    /// let per_status: Vec<(String, i64, Option<i64>)> = Order::query()
    ///     .values((Order::STATUS, count(), Order::TOTAL_CENTS.sum()))
    ///     .group_by(Order::STATUS)
    ///     .order_by(count().desc())
    ///     .all(db)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn values<S: Selection<M>>(self, selection: S) -> Values<M, S> {
        Values {
            select: self,
            selection,
            group: Vec::new(),
            having: None,
            order: Vec::new(),
        }
    }

    /// Reads each row as the plain struct `T` (`#[derive(FromRow)]`) instead of the
    /// model: only `T`'s columns are selected, each of which must be a column of `M`
    /// (else [`Error::InvalidInput`] naming it, before anything is sent).
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String, pub total_cents: i64, pub note: Option<String> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// #[derive(matrx_orm::FromRow, Debug)]
    /// struct OrderLine {
    ///     id: i64,
    ///     total_cents: i64,
    /// }
    ///
    /// let lines: Vec<OrderLine> = Order::query()
    ///     .order_by(Order::ID.asc())
    ///     .select_as::<OrderLine>()
    ///     .all(db)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn select_as<T: FromRow>(self) -> Values<M, Struct<M, T>> {
        self.values(Struct::new())
    }
}

/// A query on `M` reading selection `S` per row; see [`Select::values`].
pub struct Values<M, S> {
    select: Select<M>,
    selection: S,
    group: Vec<&'static str>,
    having: Option<Having<M>>,
    order: Vec<GroupOrder<M>>,
}

/// Columns to group by: a [`Column`] or a tuple of them.
pub trait GroupKey<M> {
    /// Appends the SQL column names.
    #[doc(hidden)]
    fn push_names(&self, out: &mut Vec<&'static str>);
}

impl<M: Model, T> GroupKey<M> for Column<M, T> {
    fn push_names(&self, out: &mut Vec<&'static str>) {
        out.push(self.name());
    }
}

macro_rules! tuple_group_key {
    ($($name:ident),+) => {
        impl<M, $($name: GroupKey<M>),+> GroupKey<M> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn push_names(&self, out: &mut Vec<&'static str>) {
                let ($($name,)+) = self;
                $($name.push_names(out);)+
            }
        }
    };
}

tuple_group_key!(A);
tuple_group_key!(A, B);
tuple_group_key!(A, B, C);
tuple_group_key!(A, B, C, D);
tuple_group_key!(A, B, C, D, E);
tuple_group_key!(A, B, C, D, E, F);

impl<M: Model, S: Selection<M>> Values<M, S> {
    /// Groups the rows by `keys` (a column or a tuple of columns): one result row per
    /// group. Every plain column the selection reads must be one of the keys; the
    /// others are aggregates.
    pub fn group_by(mut self, keys: impl GroupKey<M>) -> Self {
        keys.push_names(&mut self.group);
        self
    }

    /// Keeps only the groups matching `condition` (`HAVING`), e.g. `count().gt(10)`;
    /// combined with an earlier condition by AND.
    pub fn having(mut self, condition: Having<M>) -> Self {
        self.having = Some(match self.having.take() {
            Some(prev) => prev.and(condition),
            None => condition,
        });
        self
    }

    /// Orders the result by a column or an aggregate (`count().desc()`); the first
    /// call replaces the query's own ordering, later calls add terms.
    pub fn order_by(mut self, order: impl Into<GroupOrder<M>>) -> Self {
        self.order.push(order.into());
        self
    }

    /// The statement, checked: `SELECT <selection> FROM ... WHERE ... GROUP BY ...
    /// HAVING ... ORDER BY ... LIMIT ... OFFSET ...`.
    pub fn to_sql(&self) -> Result<SqlBuf> {
        if !self.select.prefetch.is_empty() || self.select.has_joined_trees() {
            return Err(Error::InvalidInput(format!(
                "values on {} reads no models, so it cannot load relation trees; \
                 select an aggregate over the relation instead",
                M::META.name
            )));
        }
        let mut sql = SqlBuf::new();
        sql.push("SELECT ");
        let mut list = SelectList::new(&mut sql, 0);
        self.selection.push_selects(&mut list)?;
        let grouped = !self.group.is_empty() || self.having.is_some();
        if grouped || list.row_aggregates() > 0 {
            if let Some(column) = list.columns().iter().find(|c| !self.group.contains(c)) {
                return Err(Error::InvalidInput(format!(
                    "values on {} reads column `{column}` next to aggregates without grouping \
                     by it; add it to group_by",
                    M::META.name
                )));
            }
        }
        sql.push(" FROM ").table_as(M::META, ROOT).push(" WHERE ");
        let criteria = &self.select.criteria;
        criteria.check()?;
        criteria.render_where(ROOT, &mut sql);
        for (i, column) in self.group.iter().enumerate() {
            sql.push(if i == 0 { " GROUP BY " } else { ", " });
            sql.column(ROOT, column);
        }
        if let Some(having) = &self.having {
            sql.push(" HAVING ");
            having.render(&mut sql)?;
        }
        if self.order.is_empty() {
            criteria.render_order(ROOT, &mut sql);
        } else {
            for (i, term) in self.order.iter().enumerate() {
                sql.push(if i == 0 { " ORDER BY " } else { ", " });
                term.render(&mut sql)?;
            }
        }
        criteria.render_paging(&mut sql)?;
        Ok(sql)
    }

    /// Runs the query: every row's selection, in the query's order.
    pub async fn all<E: Executor>(&self, ex: &E) -> Result<Vec<S::Output>> {
        let sql = self.to_sql()?;
        let rows = ex.query_read(&sql.text, &as_sql_refs(&sql.params)).await?;
        rows.iter()
            .map(|row| self.selection.decode(row, 0).map(|(value, _)| value))
            .collect()
    }

    /// The first row's selection (by the query's ordering), if any.
    pub async fn first<E: Executor>(mut self, ex: &E) -> Result<Option<S::Output>> {
        let limit = self.select.criteria.limit.map_or(1, |n| n.min(1));
        self.select = self.select.limit(limit);
        Ok(self.all(ex).await?.into_iter().next())
    }

    /// Exactly one row's selection — an aggregate over all rows, say:
    /// [`Error::NotFound`] if none, [`Error::MultipleRows`] if more.
    pub async fn one<E: Executor>(mut self, ex: &E) -> Result<S::Output> {
        let limit = self.select.criteria.limit.map_or(2, |n| n.min(2));
        self.select = self.select.limit(limit);
        let mut rows = self.all(ex).await?;
        match rows.len() {
            1 => rows.pop().ok_or(Error::NotFound {
                model: M::META.name,
            }),
            0 => Err(Error::NotFound {
                model: M::META.name,
            }),
            count => Err(Error::MultipleRows {
                model: M::META.name,
                count,
            }),
        }
    }
}
