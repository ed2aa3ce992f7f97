//! [`Select`]: the query builder for reads, updates and deletes by filter.

use std::marker::PhantomData;

use crate::base::decode::decode_column;
use crate::base::error::{Error, Result};
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::{as_sql_refs, Param};
use crate::executor::{DynExecutor, Executor};
use crate::query::announce::{wrap_model, Names, Output};
use crate::query::evict::evicting;
use crate::query::rows::{exactly_one, fetch_models, read_models};
use crate::relation::joined;
use crate::relation::joined::policy::{AggregateEncoding, JoinedShape, Policy};
use crate::relation::prefetch::{IntoPrefetch, Prefetch};
use crate::schema::column::{Column, OrderBy};
use crate::schema::criteria::Criteria;
use crate::schema::filter::{Filter, Node};
use crate::schema::model::Model;

/// A query on model `M`: filters, ordering and paging, run by a terminal method
/// ([`all`](Self::all), [`first`](Self::first), [`one`](Self::one), [`count`](Self::count),
/// [`exists`](Self::exists), [`delete`](Self::delete), [`update`](Self::update)).
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String, pub total_cents: i64 }
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let big_paid: Vec<Order> = Order::query()
///     .filter(Order::STATUS.eq("paid") & Order::TOTAL_CENTS.gte(10_000))
///     .order_by(Order::TOTAL_CENTS.desc())
///     .limit(10)
///     .all(db)
///     .await?;
/// # Ok(()) }
/// ```
pub struct Select<M> {
    pub(crate) prefetch: Prefetch<M>,
    pub(crate) select_related: Prefetch<M>,
    pub(crate) balanced: Prefetch<M>,
    pub(crate) criteria: Criteria<M>,
    pub(crate) shape: JoinedShape,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Select<M> {
    fn clone(&self) -> Self {
        Select {
            prefetch: self.prefetch.clone(),
            select_related: self.select_related.clone(),
            balanced: self.balanced.clone(),
            criteria: self.criteria.clone(),
            shape: self.shape,
            _marker: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for Select<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("filter", &self.criteria.filter)
            .field("order", &self.criteria.order)
            .field("limit", &self.criteria.limit)
            .field("offset", &self.criteria.offset)
            .finish()
    }
}

impl<M: Model> Default for Select<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Model> Select<M> {
    /// All rows of `M`.
    pub fn new() -> Self {
        Select {
            prefetch: Prefetch::default(),
            select_related: Prefetch::default(),
            balanced: Prefetch::default(),
            criteria: Criteria::default(),
            shape: JoinedShape::default(),
            _marker: PhantomData,
        }
    }

    /// Loads a relation tree on the results: one query per edge, whatever the number
    /// of rows (see [`Path`](crate::Path) for nesting and customising edges).
    pub fn prefetch(mut self, tree: impl IntoPrefetch<M>) -> Self {
        self.prefetch.add(tree);
        self
    }

    /// Like [`prefetch`](Self::prefetch) with a string path (`"items__product"`); an
    /// unknown relation name is an [`Error::InvalidInput`] naming it.
    pub fn prefetch_path(mut self, path: &str) -> Result<Self> {
        self.prefetch.add(Prefetch::<M>::parse(path)?);
        Ok(self)
    }

    /// Loads a relation tree inside the query itself, so the whole tree is one
    /// statement: the plain rows of each edge as one `UNION ALL` branch (the rows
    /// prefetch would read), with edges ordered or limited per parent aggregated into
    /// their parent's rows (and to-one edges joined there on pages of at most 1,000
    /// rows). Filters, ordering, limit and offset apply to the rows of `M`, never to
    /// joined children. Edges marked [`batched`](crate::EdgeStrategy::batched) run as
    /// statements of their own. The relations are attached exactly as
    /// [`prefetch`](Self::prefetch) attaches them.
    ///
    /// Over a local socket, one statement is still slower than prefetch's batches once
    /// parents number in the thousands (docs/BENCHMARKS.md, "The union shape");
    /// [`balanced`](Self::balanced) picks per edge.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "products")]
    /// # pub struct Product { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "order_items")]
    /// # pub struct OrderItem { #[orm(primary_key)] pub id: i64, pub order_id: i64, pub product_id: i64,
    /// #   #[orm(belongs_to(key = "product_id"))] pub product: One<Product> }
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64,
    /// #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer>,
    /// #   #[orm(has_many(foreign_key = "order_id"))] pub items: Many<OrderItem> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// // Ten orders, each with its customer and its items with their products: 1 query.
    /// let orders = Order::query()
    ///     .order_by(Order::ID.desc())
    ///     .limit(10)
    ///     .select_related(Order::CUSTOMER)
    ///     .select_related(Order::ITEMS.with(OrderItem::PRODUCT))
    ///     .all(db)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn select_related(mut self, tree: impl IntoPrefetch<M>) -> Self {
        self.select_related.add(tree);
        self
    }

    /// Like [`select_related`](Self::select_related) with a string path
    /// (`"items__product"`).
    pub fn select_related_path(mut self, path: &str) -> Result<Self> {
        self.select_related.add(Prefetch::<M>::parse(path)?);
        Ok(self)
    }

    /// Loads a relation tree choosing per edge, by the measured default
    /// ([`balanced_strategy`](crate::balanced_strategy)): to-many edges batched (one
    /// statement each); to-one edges joined into their parent's statement, as a
    /// per-row index probe, when it has at most
    /// [`BALANCED_JOIN_LIMIT`](crate::BALANCED_JOIN_LIMIT) parents (the root query's
    /// limit, or the number of keys a batched edge sends; under a batched to-many edge
    /// at most [`BALANCED_JOIN_LIMIT_TO_MANY`](crate::BALANCED_JOIN_LIMIT_TO_MANY)
    /// keys), batched otherwise.
    /// An edge can override the choice with [`joined`](crate::EdgeStrategy::joined) /
    /// [`batched`](crate::EdgeStrategy::batched). The relations are attached exactly as
    /// [`prefetch`](Self::prefetch) attaches them.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "products")]
    /// # pub struct Product { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "order_items")]
    /// # pub struct OrderItem { #[orm(primary_key)] pub id: i64, pub order_id: i64, pub product_id: i64,
    /// #   #[orm(belongs_to(key = "product_id"))] pub product: One<Product> }
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64,
    /// #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer>,
    /// #   #[orm(has_many(foreign_key = "order_id"))] pub items: Many<OrderItem> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// // A page of 50: orders joined to their customer, then the items joined to
    /// // their products: 2 queries.
    /// let page = Order::query()
    ///     .order_by(Order::ID.desc())
    ///     .limit(50)
    ///     .balanced(Order::CUSTOMER)
    ///     .balanced(Order::ITEMS.with(OrderItem::PRODUCT))
    ///     .all(db)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn balanced(mut self, tree: impl IntoPrefetch<M>) -> Self {
        self.balanced.add(tree);
        self
    }

    /// Like [`balanced`](Self::balanced) with a string path (`"items__product"`).
    pub fn balanced_path(mut self, path: &str) -> Result<Self> {
        self.balanced.add(Prefetch::<M>::parse(path)?);
        Ok(self)
    }

    /// The relation trees with the policy of the call that added them.
    fn trees(&self) -> [(&Prefetch<M>, Policy); 3] {
        [
            (&self.select_related, Policy::Joined),
            (&self.balanced, Policy::Balanced),
            (&self.prefetch, Policy::Batched),
        ]
    }

    /// The statement [`all`](Self::all) runs first when relations are joined (the
    /// batched edges run after it). For inspection and benchmarks.
    #[doc(hidden)]
    pub fn joined_statement(&self, encoding: AggregateEncoding) -> Result<SqlBuf> {
        joined::statement(&self.criteria, &self.trees(), encoding, self.shape)
    }

    /// Writes the joined statement in `shape` instead of the measured choice. For
    /// the benchmark and the tests that compare the shapes.
    #[doc(hidden)]
    pub fn joined_shape(mut self, shape: JoinedShape) -> Self {
        self.shape = shape;
        self
    }

    /// Keeps rows matching `filter` (combined with earlier filters by AND).
    pub fn filter(mut self, filter: Filter<M>) -> Self {
        self.criteria.and(filter);
        self
    }

    /// Drops rows matching `filter`; rows where `filter` is NULL (a comparison with a
    /// NULL column) are kept, as in `(filter) IS NOT TRUE`.
    pub fn exclude(self, filter: Filter<M>) -> Self {
        self.filter(Filter::new(Node::NotTrue(Box::new(filter.node))))
    }

    /// Adds an ordering term (earlier terms take precedence).
    pub fn order_by(mut self, order: OrderBy<M>) -> Self {
        self.criteria.order.push(order);
        self
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.criteria.limit = Some(n);
        self
    }

    /// Skips the first `n` rows.
    pub fn offset(mut self, n: u64) -> Self {
        self.criteria.offset = Some(n);
        self
    }

    /// `SELECT <columns> FROM <table> AS "t" WHERE ... ORDER BY ... LIMIT ... OFFSET ...`
    pub(crate) fn render_select(&self) -> Result<SqlBuf> {
        let mut sql = SqlBuf::new();
        sql.push("SELECT ")
            .columns(ROOT, M::META)
            .push(" FROM ")
            .table_as(M::META, ROOT);
        self.push_criteria(&mut sql)?;
        Ok(sql)
    }

    /// ` WHERE ... ORDER BY ... LIMIT ... OFFSET ...` on the root alias.
    pub(crate) fn push_criteria(&self, sql: &mut SqlBuf) -> Result<()> {
        sql.push(" WHERE ");
        self.criteria.check()?;
        self.criteria.render_where(ROOT, sql);
        self.criteria.render_order(ROOT, sql);
        self.criteria.render_paging(sql)
    }

    /// Whether a joined tree (`select_related`, `balanced`, or a prefetch edge that
    /// chose a strategy) is part of the query.
    pub(crate) fn has_joined_trees(&self) -> bool {
        !self.select_related.is_empty()
            || !self.balanced.is_empty()
            || joined::has_choice(&self.prefetch)
    }

    /// Refuses a prefetch tree that asks one relation twice differently.
    pub(crate) fn validate_prefetch(&self) -> Result<()> {
        self.prefetch.validate()
    }

    /// Loads the query's prefetch trees on `parents` (one query per edge).
    pub(crate) async fn load_prefetch<E: Executor>(&self, ex: &E, parents: &[&M]) -> Result<()> {
        self.prefetch.load_settled(ex, parents).await
    }

    /// The query limited to its first row, ordered by primary key when unordered.
    pub(crate) fn first_only(self) -> Self {
        let limit = self.criteria.limit.map_or(1, |n| n.min(1));
        let mut query = self.limit(limit);
        if query.criteria.order.is_empty() {
            query.criteria.order = primary_key_order::<M>();
        }
        query
    }

    /// The statement this query runs: its SQL text and bound values. Values are
    /// always parameters (`$1`, `$2`, ...), never part of the text.
    ///
    /// ```
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String }
    /// let sql = Order::query().filter(Order::STATUS.eq("paid")).to_sql().unwrap();
    /// assert_eq!(
    ///     sql.text,
    ///     r#"SELECT "t"."id", "t"."status" FROM "orders" AS "t" WHERE "t"."status" = $1"#
    /// );
    /// assert_eq!(sql.params.len(), 1);
    /// ```
    pub fn to_sql(&self) -> Result<SqlBuf> {
        self.render_select()
    }

    /// Runs the query, decodes every row, and loads the prefetched relations.
    pub async fn all<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        if self.has_joined_trees() {
            let rows = joined::load_root(ex, &self.criteria, &self.trees(), self.shape).await;
            for (tree, _) in self.trees() {
                tree.settle_cache(ex);
            }
            return rows;
        }
        self.prefetch.validate()?;
        let sql = self.render_select()?;
        if self.prefetch.is_empty() {
            return read_models(ex, &sql).await;
        }
        // The root statement and the tree's share one connection.
        let pinned = ex.for_load();
        let ex: &dyn DynExecutor = pinned.as_deref().unwrap_or(ex);
        let rows = ex
            .query_read_dyn(&sql.text, &as_sql_refs(&sql.params))
            .await?;
        let rows = rows
            .iter()
            .map(|row| M::decode(row, 0))
            .collect::<Result<Vec<M>>>()?;
        let parents: Vec<&M> = rows.iter().collect();
        self.prefetch.load_settled(ex, &parents).await?;
        drop(parents);
        Ok(rows)
    }

    /// The first row (by the query's ordering, else by primary key), if any.
    pub async fn first<E: Executor>(&self, ex: &E) -> Result<Option<M>> {
        let query = self.clone().first_only();
        Ok(query.all(ex).await?.into_iter().next())
    }

    /// Exactly one row: [`Error::NotFound`] if none, [`Error::MultipleRows`] if more.
    pub async fn one<E: Executor>(&self, ex: &E) -> Result<M> {
        let rows = self
            .clone()
            .limit(self.criteria.limit.map_or(2, |n| n.min(2)))
            .all(ex)
            .await?;
        exactly_one(rows, M::META.name)
    }

    /// At most one row: `None` if none, [`Error::MultipleRows`] if more.
    pub async fn one_or_none<E: Executor>(&self, ex: &E) -> Result<Option<M>> {
        match self.one(ex).await {
            Ok(row) => Ok(Some(row)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The number of matching rows (after limit and offset, if set).
    pub async fn count<E: Executor>(&self, ex: &E) -> Result<u64> {
        let mut sql = SqlBuf::new();
        sql.push("SELECT count(*) FROM (SELECT 1 FROM ")
            .table_as(M::META, ROOT);
        sql.push(" WHERE ");
        self.criteria.check()?;
        self.criteria.render_where(ROOT, &mut sql);
        self.criteria.render_paging(&mut sql)?;
        sql.push(") AS \"c\"");
        let rows = ex.query_read(&sql.text, &as_sql_refs(&sql.params)).await?;
        let count: i64 = match rows.first() {
            Some(row) => decode_column(row, 0, M::META.name)?,
            None => 0,
        };
        Ok(count.max(0) as u64)
    }

    /// Whether any row matches.
    pub async fn exists<E: Executor>(&self, ex: &E) -> Result<bool> {
        let mut sql = SqlBuf::new();
        sql.push("SELECT EXISTS (SELECT 1 FROM ")
            .table_as(M::META, ROOT);
        sql.push(" WHERE ");
        self.criteria.check()?;
        self.criteria.render_where(ROOT, &mut sql);
        sql.push(")");
        let rows = ex.query_read(&sql.text, &as_sql_refs(&sql.params)).await?;
        match rows.first() {
            Some(row) => decode_column(row, 0, M::META.name),
            None => Ok(false),
        }
    }

    /// Deletes the matching rows and returns them. Ordering and paging are refused.
    pub async fn delete<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        self.refuse_paging("delete")?;
        let mut sql = SqlBuf::new();
        sql.push("DELETE FROM ")
            .table_as(M::META, ROOT)
            .push(" WHERE ");
        self.criteria.check()?;
        self.criteria.render_where(ROOT, &mut sql);
        sql.push(" RETURNING ").columns(ROOT, M::META);
        wrap_model::<M>(ex.scope(), &mut sql, Names::Keys, Output::Rows);
        evicting(ex.scope(), false, fetch_models(ex, &sql)).await
    }

    /// Starts an update of the matching rows: add columns with
    /// [`set`](Update::set), then run it with [`exec`](Update::exec).
    pub fn update(self) -> Update<M> {
        Update {
            query: self,
            sets: Vec::new(),
        }
    }

    fn refuse_paging(&self, what: &str) -> Result<()> {
        if self.criteria.is_paged() || !self.criteria.order.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{what} by filter on {} takes no ordering, limit or offset",
                M::META.name
            )));
        }
        Ok(())
    }
}

pub(crate) fn primary_key_order<M: Model>() -> Vec<OrderBy<M>> {
    M::META
        .primary_key
        .iter()
        .map(|&i| Column::<M, ()>::new(i).asc())
        .collect()
}

/// An update by filter: `UPDATE ... SET col = $n, ... WHERE ... RETURNING ...`.
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String }
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let shipped = Order::query()
///     .filter(Order::STATUS.eq("paid"))
///     .update()
///     .set(Order::STATUS, "shipped")
///     .exec(db)
///     .await?;
/// println!("{} orders shipped", shipped.len());
/// # Ok(()) }
/// ```
pub struct Update<M> {
    query: Select<M>,
    sets: Vec<(&'static str, Param)>,
}

impl<M: Model> Update<M> {
    /// Sets `column` to `value` on every matching row.
    pub fn set<T, V>(mut self, column: Column<M, T>, value: V) -> Self
    where
        V: Into<T>,
        T: postgres_types::ToSql + Send + Sync + 'static,
    {
        self.sets.retain(|(name, _)| *name != column.name());
        self.sets.push((column.name(), Param::new(value.into())));
        self
    }

    /// Sets a nullable `column` to NULL on every matching row.
    pub fn set_null<T>(mut self, column: Column<M, T>) -> Self
    where
        T: postgres_types::ToSql + Send + Sync + 'static,
    {
        self.sets.retain(|(name, _)| *name != column.name());
        self.sets.push((column.name(), Param::new(None::<T>)));
        self
    }

    /// Runs the update; returns the updated rows as stored.
    pub async fn exec<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        self.query.refuse_paging("update")?;
        if self.sets.is_empty() {
            return Err(Error::InvalidInput(format!(
                "update of {} sets no column",
                M::META.name
            )));
        }
        let mut sql = SqlBuf::new();
        sql.push("UPDATE ").table_as(M::META, ROOT).push(" SET ");
        for (i, (column, value)) in self.sets.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.ident(column).push(" = ").param(value.clone());
        }
        sql.push(" WHERE ");
        self.query.criteria.check()?;
        self.query.criteria.render_where(ROOT, &mut sql);
        sql.push(" RETURNING ").columns(ROOT, M::META);
        // A new primary key leaves the old one cached unless the whole model goes.
        let rewrites_keys = self
            .sets
            .iter()
            .any(|(name, _)| M::META.primary_key_columns().any(|c| c.name == *name));
        let names = if rewrites_keys {
            Names::Table
        } else {
            Names::Keys
        };
        wrap_model::<M>(ex.scope(), &mut sql, names, Output::Rows);
        evicting(ex.scope(), rewrites_keys, fetch_models(ex, &sql)).await
    }
}
