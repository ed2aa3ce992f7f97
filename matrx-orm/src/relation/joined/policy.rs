//! Choosing how each edge loads: [`LoadStrategy`] (joined or batched), the policy of
//! the call that added a tree (`select_related`, `balanced`, `prefetch`), the measured
//! `balanced` rule, and how aggregated relations travel.

use crate::base::meta::RelationKind;
use crate::schema::related::Related;

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
/// A to-one edge `balanced` joins is a per-row index probe (`LEFT JOIN LATERAL (...
/// LIMIT 1)`), so its cost grows with the rows it is joined to, while batching it
/// costs one statement more (a round trip, when it is on the load's longest chain).
/// Measured on W1's tree on the `full` and `x10` datasets (docs/BENCHMARKS.md,
/// "balanced on small pages"): a probe costs 1-2 µs per row on the server, a
/// round trip on a local socket 0.1-0.2 ms, so joining pays up to about 100 rows.
/// It was 1,000 when joined edges were plain `LEFT JOIN`s, chosen with a 1 ms round
/// trip per statement; on a local socket that join was 1.2-1.5x prefetch at 1,000
/// orders, and PostgreSQL planned it as a hash of the whole target table (10,000
/// products for the 46 items of 10 orders on `x10`: 4-10x prefetch on small pages).
pub const BALANCED_JOIN_LIMIT: usize = 100;

/// The most keys a batched to-many edge may send for `balanced` to join to-one edges
/// into its statement.
///
/// Such a statement returns any number of rows per key, known only once it has run,
/// while each joined to-one edge costs a probe per row. 20 keys were about 100 rows
/// on W1 (4.6 items per order): joining the products into the items of 10 orders
/// saves the round trip of their own statement (0.05 ms of probes on the server);
/// for the 457 items of 100 orders the probes cost more than that statement.
pub const BALANCED_JOIN_LIMIT_TO_MANY: usize = 20;

/// The strategy `balanced` picks for an edge of kind `kind` whose parents come from a
/// statement returning at most `parents` rows (`None`: unbounded, e.g. a root query
/// without a limit):
///
/// - to-many edges: batched, always. Joined as a `LATERAL` aggregate they cost one
///   subquery per parent and a record per child: 1.8-5.8x the hand-written batch
///   queries on W1, W2 and the wide shape.
/// - to-one edges: joined as a per-row index probe when `parents` is at most
///   [`BALANCED_JOIN_LIMIT`] (one round trip less, a probe per row), batched
///   otherwise (one index scan for the distinct keys, in a statement of its own).
///
/// ```
/// use matrx_orm::{balanced_strategy, LoadStrategy, RelationKind};
/// assert_eq!(balanced_strategy(RelationKind::BelongsTo, Some(20)), LoadStrategy::Joined);
/// assert_eq!(balanced_strategy(RelationKind::BelongsTo, Some(101)), LoadStrategy::Batched);
/// assert_eq!(balanced_strategy(RelationKind::BelongsTo, None), LoadStrategy::Batched);
/// assert_eq!(balanced_strategy(RelationKind::HasMany, Some(1)), LoadStrategy::Batched);
/// ```
pub fn balanced_strategy(kind: RelationKind, parents: Option<usize>) -> LoadStrategy {
    match parents {
        Some(n) if kind.is_to_one() && n <= BALANCED_JOIN_LIMIT => LoadStrategy::Joined,
        _ => LoadStrategy::Batched,
    }
}

/// The parent count `balanced` decides the to-one edges joined into the statement of
/// a batched edge of kind `kind` by, for `keys` distinct parent keys (`None`: too many
/// to join): the keys for a to-one edge (at most one row each); for a to-many edge the
/// keys when they are at most [`BALANCED_JOIN_LIMIT_TO_MANY`], else none (its rows are
/// not known before it runs).
pub(crate) fn batched_parents(kind: RelationKind, keys: usize) -> Option<usize> {
    (kind.is_to_one() || keys <= BALANCED_JOIN_LIMIT_TO_MANY).then_some(keys)
}

/// How a joined to-many edge is written into its parent's statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToManyShape {
    /// Aggregated once for the whole set of parents: `GROUP BY` the parent key over
    /// the children of every parent (restricted to the parents' keys by a semi-join or
    /// one array), joined back to each parent row by key. One scan of the children,
    /// one aggregate per parent key, no subquery per parent.
    Grouped,
    /// A `LEFT JOIN LATERAL` subquery run once per parent row.
    Lateral,
}

/// The shape of a joined to-many edge customised by `related`.
///
/// Grouped whenever it can express the edge, which is every edge without a limit per
/// parent: on the benchmark's trees it ran in 0.4-0.6x the server time of `LATERAL`
/// (docs/BENCHMARKS.md, "The set-oriented shape"). A filter goes into the grouped
/// query's `WHERE`, an ordering into the aggregate's `ORDER BY`. A limit per parent
/// (the first *n* children of each parent) keeps the `LATERAL` subquery with its
/// `ORDER BY .. LIMIT`, and the edges below it stay inside that subquery. Where the
/// edge's parents are the rows of a grouped to-many edge, the statement has no set
/// of parents to group over and the edge is `LATERAL` whatever this says (see
/// `render`: grouped again, the deep and narrow tree spent longer planning than
/// running).
pub(crate) fn to_many_shape<T>(related: &Related<T>) -> ToManyShape {
    if related.limit_per_parent.is_some() {
        ToManyShape::Lateral
    } else {
        ToManyShape::Grouped
    }
}

/// Whether the grouped shape matches its parents' keys as one array
/// (`key = ANY(ARRAY(SELECT ...))`) rather than as a semi-join (`key IN (SELECT ...)`),
/// for parents that are (or descend from) the root rows of a `paged` statement or not.
/// Composite keys always go as a semi-join.
///
/// Measured on the benchmark's orders and products (server time, docs/BENCHMARKS.md,
/// "The set-oriented shape"): a page's rows are a materialized CTE (see `render`),
/// whose row estimates are guesses; the semi-join on them was planned for far more
/// keys than the page has (the first 1,000 orders: 8.8 ms against 7.8 ms for the
/// array) and, from 5,000 orders, crossed the JIT threshold (78-153 ms against 43 ms;
/// 20,000 orders: 409-427 against 168 ms). Unpaged, the root is inlined and the
/// semi-join is planned from the table's statistics: 105 ms against 140-195 ms for the
/// array on all 20,000 orders, 5 against 16 ms on all 1,000 products. Below a page
/// (its orders' items, their products' stock), the semi-join on a materialized page
/// was planned as scans of the whole child tables: the deep and narrow tree (20
/// customers, five levels) took 2.8x the hand-written statements, against 2.1x with
/// `LATERAL`.
pub(crate) fn parent_keys_as_array(paged: bool) -> bool {
    paged
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

/// Which statement shape `select_related` writes. Loads use [`JoinedShape::Auto`];
/// the others exist so the benchmark can measure the shapes against each other in
/// one build (docs/BENCHMARKS.md, "The union shape").
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinedShape {
    /// The measured choice per edge (`policy::union_branch`).
    #[default]
    Auto,
    /// `UNION ALL` branches for the to-many edges that fit; to-one edges joined into
    /// their parent's branch.
    UnionToOneJoined,
    /// `UNION ALL` branches for every edge that fits, to-one edges included.
    UnionToOneBranched,
    /// No union: every edge in its parent's row (to-one joins, `record[]` aggregates).
    Aggregates,
}

/// Whether a joined edge of kind `kind` customised by `related`, whose parent rows are
/// a branch of the union statement (the root's or another edge's), is a branch of its
/// own (its plain rows, stitched as prefetch stitches them) rather than joined into
/// its parent's row (see `joined::union`). `parents` bounds the root rows (the root's
/// limit), if anything does.
///
/// - An edge with a limit per parent or an ordering of its own needs its rows ordered
///   per parent: it keeps the aggregate shapes (`LATERAL` for a limit, an ordered
///   aggregate otherwise), inside its parent's branch.
/// - Every other to-many edge is a branch: each child is a plain row instead of a
///   record built, encoded and parsed, and no aggregate per parent is computed.
/// - A to-one edge is joined into its parent's branch under a root of at most
///   [`BALANCED_JOIN_LIMIT`] rows, and a branch of its own otherwise (its distinct
///   targets sent once instead of repeated on every parent row). Measured
///   (docs/BENCHMARKS.md, "The union shape"): on W1's page of 1,000 orders, joined
///   was 9.6-11.6 ms by minimum against 12.2-13.2 as branches (the items' rows
///   become a common table expression their products' branch reads); on all 20,000
///   orders (W2) and all 1,000 products (W3) branches were as fast or faster.
pub(crate) fn union_branch<T>(
    kind: RelationKind,
    related: &Related<T>,
    shape: JoinedShape,
    parents: Option<usize>,
) -> bool {
    let fits = related.limit_per_parent.is_none() && related.order.is_empty();
    let to_one_branched = match shape {
        JoinedShape::Aggregates => return false,
        JoinedShape::UnionToOneJoined => false,
        JoinedShape::UnionToOneBranched => true,
        JoinedShape::Auto => parents.is_none_or(|n| n > BALANCED_JOIN_LIMIT),
    };
    fits && (!kind.is_to_one() || to_one_branched)
}
