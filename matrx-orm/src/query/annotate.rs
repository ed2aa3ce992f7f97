//! [`Annotated`]: a query whose rows come back with values computed across their
//! relations — `Customer::query().annotate(Customer::ORDERS.count())` — in the same
//! statement, one scalar subquery per aggregate.

use crate::base::error::{Error, Result};
use crate::base::sql::{SqlBuf, ROOT};
use crate::executor::Executor;
use crate::query::select::Select;
use crate::schema::model::Model;
use crate::schema::selection::{SelectList, Selection};

impl<M: Model> Select<M> {
    /// Each row comes back with `annotation` — an aggregate over one of `M`'s
    /// relations, or a tuple of them (any [`Selection`] but aggregates over the rows
    /// themselves, which need [`values`](Select::values) and `group_by`) — computed in
    /// the same statement (one scalar subquery per aggregate, never a join that
    /// repeats rows).
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64, pub total_cents: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64,
    /// #   #[orm(has_many(foreign_key = "customer_id"))] pub orders: Many<Order> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let rows: Vec<(Customer, (i64, Option<i64>))> = Customer::query()
    ///     .annotate((Customer::ORDERS.count(), Customer::ORDERS.max(Order::TOTAL_CENTS)))
    ///     .all(db)
    ///     .await?;
    /// for (customer, (orders, biggest)) in &rows {
    ///     println!("{}: {orders} orders, biggest {biggest:?}", customer.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn annotate<A: Selection<M>>(self, annotation: A) -> Annotated<M, A> {
        Annotated {
            select: self,
            annotation,
        }
    }
}

/// A query on `M` whose rows come with annotation `A`; see [`Select::annotate`].
pub struct Annotated<M, A> {
    pub(crate) select: Select<M>,
    pub(crate) annotation: A,
}

impl<M: Model, A: Selection<M>> Annotated<M, A> {
    /// The statement: the model's columns, then one scalar subquery per aggregate.
    pub fn to_sql(&self) -> Result<SqlBuf> {
        let mut sql = SqlBuf::new();
        sql.push("SELECT ").columns(ROOT, M::META);
        let mut list = SelectList::new(&mut sql, M::META.columns.len());
        self.annotation.push_selects(&mut list)?;
        if list.row_aggregates() > 0 {
            return Err(Error::InvalidInput(format!(
                "annotate on {} takes aggregates over relations; an aggregate over the \
                 rows themselves needs values(..).group_by(..)",
                M::META.name
            )));
        }
        sql.push(" FROM ").table_as(M::META, ROOT);
        self.select.push_criteria(&mut sql)?;
        Ok(sql)
    }

    /// Runs the query: every row with its annotation, in the query's order; the
    /// query's prefetch trees load on the rows (one query per edge).
    pub async fn all<E: Executor>(&self, ex: &E) -> Result<Vec<(M, A::Output)>> {
        if self.select.has_joined_trees() {
            return Err(Error::InvalidInput(format!(
                "annotate on {} cannot be combined with select_related or balanced yet; \
                 use prefetch",
                M::META.name
            )));
        }
        self.select.validate_prefetch()?;
        let sql = self.to_sql()?;
        let rows = ex
            .query_read(&sql.text, &crate::base::value::as_sql_refs(&sql.params))
            .await?;
        let width = M::META.columns.len();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let model = M::decode(row, 0)?;
            let (value, _) = self.annotation.decode(row, width)?;
            out.push((model, value));
        }
        let parents: Vec<&M> = out.iter().map(|(m, _)| m).collect();
        self.select.load_prefetch(ex, &parents).await?;
        Ok(out)
    }

    /// The first row (by the query's ordering, else by primary key) with its
    /// annotation, if any.
    pub async fn first<E: Executor>(self, ex: &E) -> Result<Option<(M, A::Output)>> {
        let select = self.select.first_only();
        let first = Annotated {
            select,
            annotation: self.annotation,
        };
        Ok(first.all(ex).await?.into_iter().next())
    }
}
