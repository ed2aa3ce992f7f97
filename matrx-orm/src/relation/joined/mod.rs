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

mod decode;
pub(crate) mod plan;
pub(crate) mod policy;
mod records;
mod render;

use crate::base::error::Result;
use crate::base::sql::SqlBuf;
use crate::base::value::as_sql_refs;
use crate::executor::DynExecutor;
use crate::relation::prefetch::Prefetch;
use crate::schema::criteria::Criteria;
use crate::schema::model::Model;

pub(crate) use plan::has_choice;
use plan::{Held, Ids, Plan};
use policy::{AggregateEncoding, Policy};
use records::Src;
use render::root_statement;

/// The plan of a query's relation trees, each with the policy of the call that added it.
fn build_plan<M: Model>(trees: &[(&Prefetch<M>, Policy)]) -> Result<Plan<M>> {
    let mut plan = Plan::default();
    let mut ids = Ids::default();
    for (tree, policy) in trees {
        plan.add_tree(tree, *policy, &mut ids)?;
    }
    Ok(plan)
}

/// The statement `select` runs for its joined edges, for inspection and for the
/// encoding benchmark. Batched edges are left out (they run as statements of their own).
pub(crate) fn statement<M: Model>(
    rows: &Criteria<M>,
    trees: &[(&Prefetch<M>, Policy)],
    enc: AggregateEncoding,
) -> Result<SqlBuf> {
    let mut plan = build_plan(trees)?;
    plan.settle(rows.bound());
    root_statement(rows, &plan, enc)
}

/// Runs `select` with `trees` loaded: one statement for the root and every joined
/// edge, then one per batched edge (sibling edges concurrently, pipelined on the one
/// connection the load runs on: `Executor::for_load`).
pub(crate) async fn load_root<M: Model>(
    ex: &dyn DynExecutor,
    rows: &Criteria<M>,
    trees: &[(&Prefetch<M>, Policy)],
) -> Result<Vec<M>> {
    let pinned = ex.for_load_dyn();
    let ex = pinned.as_deref().unwrap_or(ex);
    let mut plan = build_plan(trees)?;
    plan.settle(rows.bound());
    plan.prepare(Held::now(ex.scope_dyn().cache.as_ref()).as_ref());
    let sql = root_statement(rows, &plan, AggregateEncoding::Records)?;
    let found = ex
        .query_read_dyn(&sql.text, &as_sql_refs(&sql.params))
        .await?;
    let width = M::META.columns.len();
    let mut out = Vec::with_capacity(found.len());
    for row in &found {
        let src = Src::Row(row);
        let model = M::decode_fields(&src, 0)?;
        plan.decode(&model, &src, width)?;
        out.push(model);
    }
    drop(found);
    plan.record();
    if plan.batched_edges() > 0 && !out.is_empty() {
        let parents: Vec<&M> = out.iter().collect();
        plan.run_batched(ex, &parents).await?;
    }
    Ok(out)
}
