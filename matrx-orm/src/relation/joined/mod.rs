//! `select_related`: relation trees loaded inside the root query — to-one edges by
//! `LEFT JOIN`, to-many edges by a `LEFT JOIN LATERAL` subquery that aggregates the
//! children into one `record[]` value per parent — and `balanced`, which picks per
//! edge between that and the batch statement of prefetch.
//!
//! # The SQL shape
//!
//! Every joined edge gets an alias numbered in plan order (`r1`, `r2`, ...; `l2` for
//! the lateral holding edge 2's aggregate, `j2` for its junction). Columns are always
//! qualified, values always bound. For
//! `Order::query().select_related(Order::CUSTOMER).select_related(Order::ITEMS.with(OrderItem::PRODUCT)).select_related(Order::TAGS).limit(10)`:
//!
//! ```text
//! SELECT "t"."id", ..., "r1"."id", ..., "l2"."v", "l4"."v"
//! FROM (SELECT "t"."id", ... FROM "orders" AS "t" WHERE TRUE ORDER BY "t"."id" LIMIT $1) AS "t"
//! LEFT JOIN "customers" AS "r1" ON "r1"."id" = "t"."customer_id"
//! LEFT JOIN LATERAL (SELECT array_agg(ROW("r2"."id", ..., "r3"."id", ...)) AS "v"
//!     FROM "order_items" AS "r2"
//!     LEFT JOIN LATERAL (SELECT "r3"."id", ... FROM "products" AS "r3"
//!         WHERE "r3"."id" = "r2"."product_id" ORDER BY "r3"."id" LIMIT 1) AS "r3" ON TRUE
//!     WHERE "r2"."order_id" = "t"."id") AS "l2" ON TRUE
//! LEFT JOIN LATERAL (SELECT array_agg(ROW("r4"."id", "r4"."name")) AS "v"
//!     FROM "order_tags" AS "j4" JOIN "tags" AS "r4" ON "r4"."id" = "j4"."tag_id"
//!     WHERE "j4"."order_id" = "t"."id") AS "l4" ON TRUE
//! ORDER BY "t"."id"
//! ```
//!
//! - **Root paging applies to parents.** With a limit or offset the root is a derived
//!   table carrying the filter, order and paging, and the joins hang off it; to-one
//!   joins never multiply rows and to-many edges are one aggregate per parent, so
//!   `LIMIT 10` is 10 orders however many items each has. The order is re-applied
//!   outside.
//! - **To-one** (`belongs_to` to the target's primary key): a plain `LEFT JOIN`; a
//!   filter goes into its `ON`. Every other to-one (a `has_one`, a `belongs_to` to other
//!   columns, one with an ordering or a limit, and any to-one inside an aggregate) is a
//!   `LEFT JOIN LATERAL (... LIMIT 1)`: at most one row whatever the data, and inside an
//!   aggregate it keeps PostgreSQL on one index lookup per row (a plain join there was
//!   planned as a hash join rebuilt for every parent: 3x slower on W2). Its columns are
//!   flattened into the parent's row (or record); a NULL primary key means "no row".
//! - **To-many** (`has_many`, `many_to_many`): `array_agg(ROW(<target columns>,
//!   <its to-one columns>, <its own aggregates>))` over the target (joined to the
//!   junction for many-to-many) restricted to the parent's key, nested to any depth.
//!   The default order (target primary key) is applied per parent in memory, as the
//!   batch loader does; a custom order is an `ORDER BY` inside the aggregate. A limit
//!   per parent is a derived table `(SELECT ... ORDER BY ... LIMIT $n)` inside the
//!   lateral. No child rows: the aggregate is NULL, read as an empty list.
//! - **Composite keys** pair up column by column (`"r1"."region" = "t"."region" AND
//!   "r1"."code" = "t"."code"`).
//! - **Types** survive the aggregate: each field of a binary record carries its type
//!   OID and is decoded by the same `FromSql` as a plain column (`records.rs`).
//!
//! Rows are decoded into the same shape as prefetch's: [`One`](crate::One) /
//! [`Many`](crate::Many) slots filled through [`Slot::fill`](crate::Slot::fill). A
//! target that repeats (the same customer on many orders, the same tag on many orders)
//! is decoded once per edge and shared as one `Arc`.
//!
//! # JSON, measured and dropped
//!
//! `json_agg(json_build_array(...))` was built as far as the statement
//! ([`AggregateEncoding::Json`], kept for the benchmark) and measured against `record[]`
//! (docs/BENCHMARKS.md): it was slower to build on the server and to parse on the
//! client, and it loses types (numerics become JSON numbers, `bytea` a hex string).
//!
//! # Choosing per edge: `balanced`
//!
//! [`balanced_strategy`]: to-many edges batched; to-one edges joined into their
//! parent's statement when it returns at most [`BALANCED_JOIN_LIMIT`] parents (the
//! root's `LIMIT`, or the number of keys a batched edge sends), batched otherwise. The
//! plan keeps such edges joined until the statement is built (`Plan::settle`), when
//! the bound is known. Every edge can choose for itself ([`EdgeStrategy`]).
//!
//! # Batched edges in a joined tree
//!
//! An edge marked batched (by [`EdgeStrategy::batched`], or by the `balanced` policy)
//! runs after its parents are decoded, with one statement for all their keys: the
//! prefetch primitive (`load_edge` + `attach`) when nothing is joined below it;
//! otherwise the prefetch statement of `relation/sql.rs` becomes a derived table its
//! joined children hang off:
//!
//! ```text
//! SELECT "b"."id", ..., "r5"."id", ... FROM (SELECT "t"."id", ... FROM "order_items" AS "t"
//!     WHERE "t"."order_id" = ANY($1::bigint[])) AS "b"("id", ...)
//! LEFT JOIN "products" AS "r5" ON "r5"."id" = "b"."product_id"
//! ```
//!
//! # Query counts
//!
//! `select_related` alone: one statement, whatever the tree. Each batched edge adds one
//! statement when its parents have a non-NULL key, none otherwise.

mod plan;
mod records;

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::error::{Error, Result};
use crate::executor::DynExecutor;
use crate::model::Model;
use crate::query::{Select, ROOT};
use crate::relation::prefetch::{IntoPrefetch, Node, Path, Prefetch};
use crate::relation::{Relation, RelationKind};
use crate::sql::SqlBuf;
use crate::value::as_sql_refs;

pub(crate) use plan::{has_choice, Ids, JoinPlan, Plan};
use records::Src;

/// How one relation edge is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadStrategy {
    /// In its parent's statement: a `LEFT JOIN`, or a `LATERAL` aggregate for a
    /// to-many edge.
    Joined,
    /// With a statement of its own for all its parents' keys (as prefetch).
    Batched,
}

/// What decides the strategy of the edges of a tree that do not choose one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `select_related`: every edge joined.
    Joined,
    /// `balanced`: the measured default, [`balanced_strategy`].
    Balanced,
    /// `prefetch`: every edge batched.
    Batched,
}

impl Policy {
    /// The strategy before the statement's size is known: a balanced to-one edge
    /// starts joined and is settled when its statement is built (`Plan::settle`).
    pub(crate) fn resolve(self, kind: RelationKind) -> LoadStrategy {
        match self {
            Policy::Joined => LoadStrategy::Joined,
            Policy::Batched => LoadStrategy::Batched,
            Policy::Balanced => balanced_strategy(kind, Some(0)),
        }
    }
}

/// The most parents a statement may have for `balanced` to join to-one edges into it.
///
/// Chosen from the page-size sweep in docs/BENCHMARKS.md ("select_related"): with a
/// 1 ms round trip per statement, joining W1's to-one edges (customer into the orders,
/// product into the items) is 0.69-0.87x of batching them up to 1,000 orders and
/// 1.04-1.68x from 3,000; on a local socket batching is as fast or faster at every size.
pub const BALANCED_JOIN_LIMIT: usize = 1_000;

/// The strategy `balanced` picks for an edge of kind `kind` whose parents come from a
/// statement returning at most `parents` rows (`None`: unbounded, e.g. a root query
/// without a limit):
///
/// - to-many edges: batched, always. Joined as a `LATERAL` aggregate they cost one
///   subquery per parent and a record per child: 1.8-5.8x the hand-written batch
///   queries on W1, W2 and the wide shape.
/// - to-one edges: joined when `parents` is at most [`BALANCED_JOIN_LIMIT`] (one round
///   trip less, a few columns more per row), batched otherwise (a joined target's
///   columns repeat on every parent row: products joined into W2's 100,261 items cost
///   more than their own 1,000-row statement).
///
/// ```
/// use matrx_orm::{balanced_strategy, LoadStrategy, RelationKind};
/// assert_eq!(balanced_strategy(RelationKind::BelongsTo, Some(20)), LoadStrategy::Joined);
/// assert_eq!(balanced_strategy(RelationKind::BelongsTo, None), LoadStrategy::Batched);
/// assert_eq!(balanced_strategy(RelationKind::HasMany, Some(1)), LoadStrategy::Batched);
/// ```
pub fn balanced_strategy(kind: RelationKind, parents: Option<usize>) -> LoadStrategy {
    match parents {
        Some(n) if kind.is_to_one() && n <= BALANCED_JOIN_LIMIT => LoadStrategy::Joined,
        _ => LoadStrategy::Batched,
    }
}

/// How aggregated relations travel. [`Records`](AggregateEncoding::Records) is what loads use;
/// `Json` exists to reproduce the measurement that chose it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateEncoding {
    /// `array_agg(ROW(...))`, binary `record[]`.
    Records,
    /// `json_agg(json_build_array(...))`.
    Json,
}

/// A tree edge with a chosen strategy; build it with [`EdgeStrategy::joined`] or
/// [`EdgeStrategy::batched`]. The choice covers this edge only; its children follow
/// their own choice, else the call's default (`select_related`: joined, `balanced`:
/// [`balanced_strategy`], `prefetch`: batched).
///
/// An edge whose parents are loaded already (the top edges of a `prefetch` tree or of
/// [`prefetch_related`](crate::prefetch_related)) cannot join into their statement: it
/// runs as a batched edge, and its joined children join into its statement.
pub struct Planned<R: Relation> {
    path: Path<R>,
    strategy: LoadStrategy,
}

impl<R: Relation> Clone for Planned<R> {
    fn clone(&self) -> Self {
        Planned {
            path: self.path.clone(),
            strategy: self.strategy,
        }
    }
}

impl<R: Relation> std::fmt::Debug for Planned<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} ({:?})",
            <R::Source as Model>::META.name,
            R::META.name,
            self.strategy
        )
    }
}

/// Choosing the strategy of one edge: `Order::ITEMS.with(OrderItem::PRODUCT).batched()`.
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
/// // Orders with their customer in one statement; items (each with its product
/// // joined in) in a second one: 2 queries.
/// let orders = Order::query()
///     .select_related(Order::CUSTOMER)
///     .select_related(Order::ITEMS.with(OrderItem::PRODUCT).batched())
///     .all(db)
///     .await?;
/// # Ok(()) }
/// ```
pub trait EdgeStrategy: Sized {
    /// The relation of the edge.
    type Relation: Relation;

    /// This edge with `strategy`.
    fn strategy(self, strategy: LoadStrategy) -> Planned<Self::Relation>;

    /// This edge in its parent's statement.
    fn joined(self) -> Planned<Self::Relation> {
        self.strategy(LoadStrategy::Joined)
    }

    /// This edge with a statement of its own.
    fn batched(self) -> Planned<Self::Relation> {
        self.strategy(LoadStrategy::Batched)
    }
}

impl<R: Relation> EdgeStrategy for R {
    type Relation = R;
    fn strategy(self, strategy: LoadStrategy) -> Planned<R> {
        Planned {
            path: Path::new(),
            strategy,
        }
    }
}

impl<R: Relation> EdgeStrategy for Path<R> {
    type Relation = R;
    fn strategy(self, strategy: LoadStrategy) -> Planned<R> {
        Planned {
            path: self,
            strategy,
        }
    }
}

impl<R: Relation> EdgeStrategy for Planned<R> {
    type Relation = R;
    fn strategy(self, strategy: LoadStrategy) -> Planned<R> {
        Planned {
            path: self.path,
            strategy,
        }
    }
}

impl<R: Relation> IntoPrefetch<R::Source> for Planned<R> {
    fn into_prefetch(self) -> Prefetch<R::Source> {
        let mut tree = Prefetch::default();
        tree.nodes.push(Arc::new(self));
        tree
    }
}

impl<R: Relation> JoinPlan<R::Source> for Path<R> {
    fn add_to(
        &self,
        plan: &mut Plan<R::Source>,
        policy: Policy,
        forced: Option<LoadStrategy>,
        ids: &mut Ids,
    ) -> Result<()> {
        plan.add_edge::<R>(&self.related, &self.children, forced, policy, ids)
    }

    fn has_choice(&self) -> bool {
        has_choice(&self.children)
    }
}

impl<R: Relation> JoinPlan<R::Source> for Planned<R> {
    fn add_to(
        &self,
        plan: &mut Plan<R::Source>,
        policy: Policy,
        forced: Option<LoadStrategy>,
        ids: &mut Ids,
    ) -> Result<()> {
        let chosen = forced.unwrap_or(self.strategy);
        plan.add_edge::<R>(
            &self.path.related,
            &self.path.children,
            Some(chosen),
            policy,
            ids,
        )
    }

    fn has_choice(&self) -> bool {
        true
    }
}

/// Reached from a plain prefetch tree (`prefetch`, `prefetch_related`): the parents
/// are loaded, so the edge runs batched; its subtree follows its own choices, else
/// batched.
impl<R: Relation> Node<R::Source> for Planned<R> {
    fn load<'a>(
        &'a self,
        ex: &'a dyn DynExecutor,
        parents: &'a [&'a R::Source],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut plan = Plan::default();
            let mut ids = Ids::default();
            self.add_to(
                &mut plan,
                Policy::Batched,
                Some(LoadStrategy::Batched),
                &mut ids,
            )?;
            plan.run_batched(ex, parents).await
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn merged(&self, other: &dyn Node<R::Source>) -> Option<Arc<dyn Node<R::Source>>> {
        let other = other.as_any().downcast_ref::<Planned<R>>()?;
        if other.strategy != self.strategy
            || !self.path.related.is_default()
            || !other.path.related.is_default()
        {
            return None;
        }
        let mut merged = self.clone();
        merged.path.children.add(other.path.children.clone());
        Some(Arc::new(merged))
    }

    fn describe(&self) -> String {
        format!("{}.{}", <R::Source as Model>::META.name, R::META.name)
    }

    fn customised(&self) -> bool {
        <Path<R> as Node<R::Source>>::customised(&self.path)
    }

    fn conflict(&self) -> Option<String> {
        match self.path.children.validate() {
            Ok(()) => None,
            Err(Error::InvalidInput(message)) => Some(message),
            Err(other) => Some(other.to_string()),
        }
    }

    fn join_plan(&self) -> &dyn JoinPlan<R::Source> {
        self
    }
}

/// The plan of a query's relation trees, each with the policy of the call that added it.
fn build_plan<M: Model>(trees: &[(&Prefetch<M>, Policy)]) -> Result<Plan<M>> {
    let mut plan = Plan::default();
    let mut ids = Ids::default();
    for (tree, policy) in trees {
        plan.add_tree(tree, *policy, &mut ids)?;
    }
    Ok(plan)
}

/// At most how many rows the root query returns, if it says (its limit).
fn root_bound<M: Model>(select: &Select<M>) -> Option<usize> {
    select
        .limit_value()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// The root statement: `M`'s columns and the joined edges' (see the module docs).
fn root_statement<M: Model>(
    select: &Select<M>,
    plan: &Plan<M>,
    enc: AggregateEncoding,
) -> Result<SqlBuf> {
    let mut selects: Vec<String> = Vec::with_capacity(M::META.columns.len());
    for col in M::META.columns {
        let mut s = SqlBuf::new();
        s.column(ROOT, col.name);
        selects.push(s.text);
    }
    plan.selects(enc, &mut selects);
    let mut sql = SqlBuf::new();
    // The select list holds no placeholder: everything bound comes after it, in text order.
    sql.push("SELECT ").push(&selects.join(", ")).push(" FROM ");
    if select.is_paged() {
        sql.push("(SELECT ")
            .columns(ROOT, M::META)
            .push(" FROM ")
            .table_as(M::META, ROOT)
            .push(" WHERE ");
        select.render_where(ROOT, &mut sql);
        select.render_order(ROOT, &mut sql);
        select.render_paging(&mut sql)?;
        sql.push(") AS ").ident(ROOT);
        plan.joins(enc, ROOT, false, &mut sql)?;
    } else {
        sql.table_as(M::META, ROOT);
        plan.joins(enc, ROOT, false, &mut sql)?;
        sql.push(" WHERE ");
        select.render_where(ROOT, &mut sql);
    }
    select.render_order(ROOT, &mut sql);
    Ok(sql)
}

/// The statement `select` runs for its joined edges, for inspection and for the
/// encoding benchmark. Batched edges are left out (they run as statements of their own).
pub(crate) fn statement<M: Model>(
    select: &Select<M>,
    trees: &[(&Prefetch<M>, Policy)],
    enc: AggregateEncoding,
) -> Result<SqlBuf> {
    let mut plan = build_plan(trees)?;
    plan.settle(root_bound(select));
    root_statement(select, &plan, enc)
}

/// Runs `select` with `trees` loaded: one statement for the root and every joined
/// edge, then one per batched edge (sibling edges concurrently).
pub(crate) async fn load_root<M: Model>(
    ex: &dyn DynExecutor,
    select: &Select<M>,
    trees: &[(&Prefetch<M>, Policy)],
) -> Result<Vec<M>> {
    let mut plan = build_plan(trees)?;
    plan.settle(root_bound(select));
    plan.prepare(ex.scope_dyn().cache.as_ref());
    let sql = root_statement(select, &plan, AggregateEncoding::Records)?;
    let rows = ex.query_dyn(&sql.text, &as_sql_refs(&sql.params)).await?;
    let width = M::META.columns.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let src = Src::Row(row);
        let model = M::decode_fields(&src, 0)?;
        plan.decode(&model, &src, width)?;
        out.push(model);
    }
    drop(rows);
    if plan.batched_edges() > 0 && !out.is_empty() {
        let parents: Vec<&M> = out.iter().collect();
        plan.run_batched(ex, &parents).await?;
    }
    Ok(out)
}
