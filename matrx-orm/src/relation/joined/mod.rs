//! `select_related`: relation trees loaded inside the root query — in one statement
//! whose result is the plain rows prefetch would read, one `UNION ALL` branch per edge
//! (the union shape), with the edges that need their rows ordered or limited per
//! parent (and, under a page of at most 1,000 rows, to-one edges) joined into their
//! parent's branch: to-one edges by `LEFT JOIN`, to-many edges aggregated into one
//! `record[]` value per parent (once for the whole set of parents, `GROUP BY` the
//! parent key, joined back by key; or by a `LEFT JOIN LATERAL` subquery per parent
//! where an edge has a limit per parent) — and `balanced`, which picks per edge between
//! that and the batch statement of prefetch.
//!
//! # The union shape
//!
//! For `Order::query().select_related(Order::CUSTOMER).select_related(Order::ITEMS.with(OrderItem::PRODUCT)).select_related(Order::TAGS)`
//! (all orders; `r<n>` is edge *n*'s target, `j<n>` its junction, `e<n>` its rows when
//! branches below read them):
//!
//! ```text
//! WITH "__root" AS NOT MATERIALIZED (SELECT "t"."id", ... FROM "orders" AS "t" WHERE TRUE),
//!   "e2" AS (SELECT "r2"."id", ... FROM "order_items" AS "r2"
//!     WHERE ("r2"."order_id") IN (SELECT "p2"."id" FROM "__root" AS "p2"))
//! SELECT 0 AS "__edge", row_number() OVER ( ORDER BY "t"."id" ASC) AS "__pos", "t"."id", ...,
//!     (NULL::"customers")."id", ..., (NULL::"order_tags")."order_id", (NULL::"tags")."id", ...
//!   FROM "__root" AS "t"
//! UNION ALL SELECT 1, NULL, NULL, ..., "r1"."id", ..., NULL FROM "customers" AS "r1"
//!   WHERE ("r1"."id") IN (SELECT "p1"."customer_id" FROM "__root" AS "p1")
//! UNION ALL SELECT 2, NULL, ..., "r2"."id", ..., NULL FROM "e2" AS "r2"
//! UNION ALL SELECT 3, NULL, ..., "r3"."id", ..., NULL FROM "products" AS "r3"
//!   WHERE ("r3"."id") IN (SELECT "p3"."product_id" FROM "e2" AS "p3")
//! UNION ALL SELECT 4, NULL, ..., "j4"."order_id", "r4"."id", "r4"."name" FROM "order_tags" AS "j4"
//!   JOIN "tags" AS "r4" ON "r4"."id" = "j4"."tag_id"
//!   WHERE ("j4"."order_id") IN (SELECT "p4"."id" FROM "__root" AS "p4")
//! ```
//!
//! - **Fields.** A row starts with its branch (`"__edge"`: 0 for the root, else the
//!   edge's number) and, for a root row, its position in the query's order
//!   (`"__pos"`); then the root's columns (and the edges joined into the root's
//!   rows), then the branch edges' fields: a many-to-many edge's junction parent key,
//!   the target's columns, the edges joined into the target's rows. Branches share
//!   fields where their columns have the same declared type (`slots.rs`: a row is
//!   about as wide as the widest branch, not the sum of them); a branch fills its own
//!   fields, NULL elsewhere. The root branch comes first and types its NULLs as a
//!   field of a NULL of the table's row type (`(NULL::"customers")."email"`): the
//!   `UNION`'s column types resolve to the columns' own (resolved pairwise, left to
//!   right, untyped NULLs in the first two branches would resolve to `text`), and no
//!   type name is spelled.
//! - **Parents restrict children** by a semi-join on their rows: the root's common
//!   table expression (a page `MATERIALIZED`, so every branch reads the page's rows
//!   even when its order has ties; unpaged, inlined, as in the aggregate shape below),
//!   or the parent branch's rows, a common table expression of their own when a branch
//!   below reads them (referenced twice, PostgreSQL materializes it). Keys are matched
//!   as in the grouped aggregate (`policy::parent_keys_as_array`): one array below a
//!   page, a semi-join otherwise, composite keys row-valued (`("r1"."region",
//!   "r1"."code") IN (SELECT ...)`). An edge's filter goes into its branch's `WHERE`
//!   (and its common table expression's), so the branches below read its filtered rows.
//! - **Decoded as prefetch decodes.** Each row is read at its branch's offset with
//!   the model's decoder; root rows are put back in `"__pos"` order (rows of a
//!   `UNION ALL` come in no promised order); each edge's rows are grouped by parent key
//!   and attached by the one stitcher (`relation::stitch::attach`), level by level,
//!   children in primary-key order (in memory, as the batch loader); a many-to-many
//!   target linked to several parents is decoded once.
//! - **Which edges are branches** (`policy::union_branch`): every to-many edge
//!   without a limit or an ordering of its own, reached from the root through branch
//!   edges; to-one edges too, except under a root of at most
//!   `BALANCED_JOIN_LIMIT` (1,000) rows, where they are joined
//!   into their parent's branch (measured, docs/BENCHMARKS.md "The union shape"). An
//!   edge that is not a branch is joined into its parent's branch in the aggregate
//!   shape below, with everything under it. A tree with no to-many branch keeps the
//!   aggregate shape (a tree of to-one joins is one row per parent already).
//!
//! `Select::joined_shape` (hidden) forces a shape, for the benchmark and the tests that
//! compare them.
//!
//! # The aggregate shape
//!
//! Edges joined into their parent's row (every edge, in a tree the union shape does not
//! take). Every joined edge gets an alias numbered in plan order (`r1`, `r2`, ...; `l2` for
//! the derived table holding edge 2's aggregate, `j2` for its junction, `p2` for its
//! parents' rows). Columns are always qualified, values always bound. For
//! `Order::query().select_related(Order::CUSTOMER).select_related(Order::ITEMS.with(OrderItem::PRODUCT)).select_related(Order::TAGS).limit(10)`:
//!
//! ```text
//! WITH "__root" AS MATERIALIZED (SELECT "t"."id", ... FROM "orders" AS "t"
//!     WHERE TRUE ORDER BY "t"."id" LIMIT $1)
//! SELECT "t"."id", ..., "r1"."id", ..., "l2"."v", "l4"."v"
//! FROM "__root" AS "t"
//! LEFT JOIN "customers" AS "r1" ON "r1"."id" = "t"."customer_id"
//! LEFT JOIN (SELECT "r2"."order_id" AS "k0", array_agg(ROW("r2"."id", ..., "r3"."id", ...)) AS "v"
//!     FROM "order_items" AS "r2"
//!     LEFT JOIN "products" AS "r3" ON "r3"."id" = "r2"."product_id"
//!     WHERE "r2"."order_id" = ANY(ARRAY(SELECT "p2"."id" FROM "__root" AS "p2"))
//!     GROUP BY "r2"."order_id") AS "l2" ON "l2"."k0" = "t"."id"
//! LEFT JOIN (SELECT "j4"."order_id" AS "k0", array_agg(ROW("r4"."id", "r4"."name")) AS "v"
//!     FROM "order_tags" AS "j4" JOIN "tags" AS "r4" ON "r4"."id" = "j4"."tag_id"
//!     WHERE "j4"."order_id" = ANY(ARRAY(SELECT "p4"."id" FROM "__root" AS "p4"))
//!     GROUP BY "j4"."order_id") AS "l4" ON "l4"."k0" = "t"."id"
//! ORDER BY "t"."id"
//! ```
//!
//! - **Root paging applies to parents.** The root rows (filter, order, paging) are a
//!   common table expression the joins hang off; to-one joins never multiply rows and
//!   to-many edges are one aggregate per parent key, so `LIMIT 10` is 10 orders however
//!   many items each has. The order is re-applied outside. A page's CTE is
//!   `MATERIALIZED` (every aggregate reads the same rows, even when the order has
//!   ties); an unpaged root's is `NOT MATERIALIZED`, so the planner estimates from
//!   the table's statistics (a materialized CTE's estimates pushed W2's statement over
//!   the JIT threshold). A tree without a to-many edge in the grouped shape needs no
//!   CTE: the root is a derived table with a limit or offset, the table itself
//!   otherwise.
//! - **To-one** (`belongs_to` to the target's primary key): a plain `LEFT JOIN`; a
//!   filter goes into its `ON`. Every other to-one (a `has_one`, a `belongs_to` to other
//!   columns, one with an ordering or a limit, any to-one inside a `LATERAL`
//!   aggregate, and any to-one `balanced` joined) is a `LEFT JOIN LATERAL (... LIMIT
//!   1)`: at most one row whatever the data, and one index lookup per row. Inside a
//!   per-parent subquery a plain join was planned as a hash join rebuilt for every
//!   parent (3x slower on W2); under the few rows `balanced` joins into, as a hash of
//!   the whole target table (all 10,000 products for the 46 items of 10 orders: 1.2 ms
//!   against 0.05 ms for the probes). Its columns are flattened into the parent's row
//!   (or record); a NULL primary key means "no row".
//! - **To-many** (`has_many`, `many_to_many`): `array_agg(ROW(<target columns>,
//!   <its to-one columns>, <its own aggregates>))` over the target (joined to the
//!   junction for many-to-many), nested to any depth. The shape is chosen per edge
//!   (`policy::to_many_shape`):
//!   - *grouped* (an edge without a limit per parent, reached from the root through
//!     to-one edges only): the children of all parents at once, restricted to the
//!     parents' keys and grouped by them, joined back to the parent row by key. The
//!     parents' keys come from their rows: the root's CTE, or under a to-one edge a
//!     subquery over its target restricted to the keys above (`render::Parents`).
//!     The keys are matched as one array for the rows of a root page and a single key
//!     column, as a semi-join (`IN (SELECT ...)`) otherwise
//!     (`policy::parent_keys_as_array`). A filter goes into the grouped query's
//!     `WHERE`. The edges below join inside the aggregate, once for all its rows:
//!     to-one edges as plain joins, to-many edges as *lateral* subqueries per row
//!     (grouped again, each level's key restriction would repeat every level above
//!     it, and planning the deep and narrow tree took longer than running it).
//!   - *lateral* (an edge with a limit per parent, or below a grouped edge): a `LEFT
//!     JOIN LATERAL` subquery restricted to the parent's key, with a limit in a derived
//!     table `(SELECT ... ORDER BY ... LIMIT $n)`; the edges below it stay inside it.
//!
//!   The default order (target primary key) is applied per parent in memory, as the
//!   batch loader does; a custom order is an `ORDER BY` inside the aggregate. No child
//!   rows: the aggregate is NULL, read as an empty list.
//! - **Composite keys** pair up column by column (`"r1"."region" = "t"."region" AND
//!   "r1"."code" = "t"."code"`; grouped: `("r1"."region", "r1"."code") IN (SELECT ...)`
//!   and `GROUP BY` both columns).
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
//! parent's statement, as a per-row index probe (`LATERAL ... LIMIT 1`), when it has
//! at most [`BALANCED_JOIN_LIMIT`] parents (the root's `LIMIT`; the number of keys a
//! batched to-one edge sends; for a batched to-many edge, whose rows are known only
//! once it runs, its keys when there are at most [`BALANCED_JOIN_LIMIT_TO_MANY`]),
//! batched otherwise. The plan keeps such edges joined until the statement is built
//! (`Plan::settle`), when the bound is known. Every edge can choose for itself
//! ([`EdgeStrategy`]).
//!
//! [`BALANCED_JOIN_LIMIT_TO_MANY`]: crate::BALANCED_JOIN_LIMIT_TO_MANY
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
//! `select_related` alone: one statement, whatever the tree and the shape. Each batched
//! edge adds one statement when its parents have a non-NULL key, none otherwise.
//! `balanced` on W1's tree (customer, items with their product, tags): 3 statements up
//! to 20 orders, 4 up to 100 (the products batched), 5 beyond (the customers too).

mod decode;
pub(crate) mod plan;
pub(crate) mod policy;
mod records;
mod render;
mod slots;
mod union;

use crate::base::error::Result;
use crate::base::sql::SqlBuf;
use crate::base::value::as_sql_refs;
use crate::executor::DynExecutor;
use crate::relation::prefetch::Prefetch;
use crate::schema::criteria::Criteria;
use crate::schema::model::Model;

pub(crate) use plan::has_choice;
use plan::{Held, Ids, Plan};
use policy::{AggregateEncoding, JoinedShape, Policy};
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
    shape: JoinedShape,
) -> Result<SqlBuf> {
    let mut plan = build_plan(trees)?;
    plan.settle(rows.bound());
    if enc == AggregateEncoding::Records && plan.choose_union(shape, rows.bound()) {
        return union::prepare_statement(rows, &mut plan).map(|(sql, _)| sql);
    }
    root_statement(rows, &plan, enc)
}

/// Runs `select` with `trees` loaded: one statement for the root and every joined
/// edge, then one per batched edge (sibling edges concurrently, pipelined on the one
/// connection the load runs on: `Executor::for_load`).
pub(crate) async fn load_root<M: Model>(
    ex: &dyn DynExecutor,
    rows: &Criteria<M>,
    trees: &[(&Prefetch<M>, Policy)],
    shape: JoinedShape,
) -> Result<Vec<M>> {
    let pinned = ex.for_load_dyn();
    let ex = pinned.as_deref().unwrap_or(ex);
    let mut plan = build_plan(trees)?;
    plan.settle(rows.bound());
    let union = plan.choose_union(shape, rows.bound());
    plan.prepare(Held::now(ex.scope_dyn().cache.as_ref()).as_ref());
    let out = if union {
        let (sql, _) = union::prepare_statement(rows, &mut plan)?;
        let found = ex
            .query_read_dyn(&sql.text, &as_sql_refs(&sql.params))
            .await?;
        union::decode_rows(&mut plan, &found)?
    } else {
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
        out
    };
    plan.record();
    if plan.batched_edges() > 0 && !out.is_empty() {
        let parents: Vec<&M> = out.iter().collect();
        plan.run_batched(ex, &parents).await?;
    }
    Ok(out)
}
