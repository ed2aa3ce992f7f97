//! The load plan of one `select_related` / `balanced` call: a tree of edges, each
//! joined into its parent's statement ([`JoinedEdge`]) or loaded with a statement of
//! its own over the parents' keys ([`BatchedEdge`]).
//!
//! A plan is built fresh for every load, so edges keep their decoding state (rows seen
//! so far, by primary key) in place.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{try_join, try_join_all, BoxFuture};

use crate::base::error::{Error, Result};
use crate::base::key::{dedup_keys, Key};
use crate::base::meta::{ModelMeta, RelationKind, RelationMeta};
use crate::base::sql::SqlBuf;
use crate::base::value::as_sql_refs;
use crate::cache::session::{SessionCache, Targets};
use crate::executor::DynExecutor;
use crate::relation::batch::{counts_matches, group, load_edge};
use crate::relation::joined::policy::{
    batched_parents, AggregateEncoding, JoinedShape, LoadStrategy, Policy, BALANCED_JOIN_LIMIT,
};
use crate::relation::joined::records::Src;
use crate::relation::joined::slots::Slots;
use crate::relation::prefetch::{Path, Planned, Prefetch};
use crate::relation::stitch::{attach, attached};
use crate::schema::model::{Model, Relation};
use crate::schema::related::Related;
use crate::schema::slot::Slot;

/// The rows of a joined edge's parents, as the set-oriented to-many shape reads them:
/// a `FROM` item holding every column of the parent model (the root's common table
/// expression, or a subquery over the parent edge's target restricted to its own
/// parents' keys) and how their keys are best matched.
///
/// The set may hold more rows than the parents (an edge's filter is not repeated in
/// it, and a many-to-many target appears once per link): the aggregates are joined
/// back to the parent rows by key, so extra groups are never read.
pub(crate) struct Parents {
    /// A `FROM` item (no placeholders).
    pub(super) from: String,
    /// Whether the keys travel as one array (`= ANY(ARRAY(...))`) rather than as a
    /// semi-join; see `policy::parent_keys_as_array`.
    pub(super) as_array: bool,
}

/// The edges of one level of a plan, on parents of type `S`.
pub(crate) struct Plan<S> {
    /// Edges loaded in the parent's statement, in select-list order.
    pub(super) joined: Vec<Box<dyn JoinEdge<S>>>,
    /// Edges loaded with a statement of their own, once the parents are decoded.
    pub(super) batched: Vec<Box<dyn BatchEdge<S>>>,
}

impl<S> Default for Plan<S> {
    fn default() -> Self {
        Plan {
            joined: Vec::new(),
            batched: Vec::new(),
        }
    }
}

/// Numbers the joined edges of one statement tree, for unique table aliases.
#[derive(Default)]
pub(crate) struct Ids(usize);

impl Ids {
    fn next(&mut self) -> usize {
        self.0 += 1;
        self.0
    }
}

/// How a tree edge adds itself to a plan; implemented by [`Path`](crate::Path) and
/// [`Planned`](crate::Planned), reached through `Node::join_plan`.
pub(crate) trait JoinPlan<S> {
    /// Adds this edge and its subtree to `plan`. `policy` decides the edges that do
    /// not choose; `forced` overrides every choice on this edge only.
    fn add_to(
        &self,
        plan: &mut Plan<S>,
        policy: Policy,
        forced: Option<LoadStrategy>,
        ids: &mut Ids,
    ) -> Result<()>;

    /// Whether this edge or one below it chose a strategy.
    fn has_choice(&self) -> bool;
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

/// Whether an edge of `tree` chose a strategy (then a `prefetch` tree is planned too).
pub(crate) fn has_choice<S: 'static>(tree: &Prefetch<S>) -> bool {
    tree.nodes.iter().any(|n| n.join_plan().has_choice())
}

impl<S: Model> Plan<S> {
    /// Adds every edge of `tree`; `policy` decides the edges that do not choose.
    pub(crate) fn add_tree(
        &mut self,
        tree: &Prefetch<S>,
        policy: Policy,
        ids: &mut Ids,
    ) -> Result<()> {
        tree.validate()?;
        for node in &tree.nodes {
            node.join_plan().add_to(self, policy, None, ids)?;
        }
        Ok(())
    }

    /// Adds edge `R` with its customisation and subtree. An edge for a relation already
    /// in the plan merges into it when both are plain (their subtrees are united);
    /// otherwise the two would fill the same field, which is refused.
    pub(crate) fn add_edge<R: Relation<Source = S>>(
        &mut self,
        related: &Related<R::Target>,
        children: &Prefetch<R::Target>,
        chosen: Option<LoadStrategy>,
        policy: Policy,
        ids: &mut Ids,
    ) -> Result<()> {
        let strategy = chosen.unwrap_or_else(|| policy.resolve(R::META.kind));
        // A balanced to-one edge joins only into a statement with few enough parents,
        // known when the statement is built (`settle`).
        let auto = chosen.is_none() && policy == Policy::Balanced && R::META.kind.is_to_one();
        let same = |meta: &'static RelationMeta| std::ptr::eq(meta, R::META);
        let existing: Option<EdgeParts<'_, R::Target>> =
            if let Some(e) = self.joined.iter_mut().find(|e| same(e.meta())) {
                e.as_any_mut().downcast_mut::<JoinedEdge<R>>().map(|e| {
                    (
                        LoadStrategy::Joined,
                        &mut e.related,
                        &mut e.plan,
                        &mut e.children,
                    )
                })
            } else if let Some(e) = self.batched.iter_mut().find(|e| same(e.meta())) {
                e.as_any_mut().downcast_mut::<BatchedEdge<R>>().map(|e| {
                    (
                        LoadStrategy::Batched,
                        &mut e.related,
                        &mut e.plan,
                        &mut e.children,
                    )
                })
            } else {
                None
            };
        if let Some((had, had_related, had_plan, had_children)) = existing {
            let edge = format!("{}.{}", S::META.name, R::META.name);
            if !had_related.is_default() || !related.is_default() {
                return Err(Error::InvalidInput(format!(
                    "{edge} is loaded twice with different filters, orderings or limits; \
                     the two would fill the same field"
                )));
            }
            if chosen.is_some_and(|c| c != had) {
                return Err(Error::InvalidInput(format!(
                    "{edge} is asked to load both joined and batched"
                )));
            }
            had_plan.add_tree(children, policy, ids)?;
            had_children.add(children.clone());
            return Ok(());
        }
        let mut plan = Plan::default();
        match strategy {
            LoadStrategy::Joined => {
                let id = ids.next();
                plan.add_tree(children, policy, ids)?;
                let mut edge = JoinedEdge::<R>::new(id, related.clone(), children.clone(), plan);
                edge.auto = auto;
                self.joined.push(Box::new(edge));
            }
            LoadStrategy::Batched => {
                plan.add_tree(children, policy, ids)?;
                self.batched.push(Box::new(BatchedEdge::<R> {
                    related: related.clone(),
                    children: children.clone(),
                    plan,
                }));
            }
        }
        Ok(())
    }

    /// Whether nothing is planned.
    pub(crate) fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.batched.is_empty()
    }

    /// How many statements the plan runs below a parent statement, counting batched
    /// edges (each is one statement for a non-empty key set).
    pub(crate) fn batched_edges(&self) -> usize {
        self.batched
            .iter()
            .map(|e| 1 + e.plan_ref_batched())
            .sum::<usize>()
            + self.joined.iter().map(|e| e.batched_edges()).sum::<usize>()
    }

    /// Decides the balanced to-one edges of the statement this level joins into, which
    /// has `parents` parents as `balanced` counts them (the root's limit, or
    /// `batched_parents` of a batched edge's keys; `None`: not known): they stay
    /// joined (as per-row probes) when `parents` is at most [`BALANCED_JOIN_LIMIT`],
    /// else they become batched edges (their own balanced children are decided when
    /// they load). Call before rendering.
    pub(crate) fn settle(&mut self, parents: Option<usize>) {
        let joins = parents.is_some_and(|n| n <= BALANCED_JOIN_LIMIT);
        let mut kept = Vec::with_capacity(self.joined.len());
        for mut edge in std::mem::take(&mut self.joined) {
            if edge.is_auto() && !joins {
                self.batched.push(edge.into_batched());
                continue;
            }
            // A joined to-one adds columns to the same rows: same bound below it.
            if edge.is_to_one() {
                edge.settle(parents);
            }
            kept.push(edge);
        }
        self.joined = kept;
    }

    /// Readies the joined edges for decoding (once the plan is complete); `held` is
    /// the session's cache, which decoded targets join (one instance per row) and
    /// uncustomised edges record their entries in, if there is one.
    pub(crate) fn prepare(&mut self, held: Option<&Held>) {
        for edge in &mut self.joined {
            edge.prepare(held);
        }
    }

    /// Records the relation entries the joined edges decoded in the session's cache
    /// (call once every row is decoded), as the batch primitive does for its edges.
    pub(crate) fn record(&mut self) {
        for edge in &mut self.joined {
            edge.record();
        }
    }

    /// The number of fields the joined edges add to a parent's row.
    pub(super) fn width(&self) -> usize {
        self.joined
            .iter()
            .filter(|e| !e.is_branch())
            .map(|e| e.width())
            .sum()
    }

    /// Runs the statements left once `parents` are decoded: the batched edges of this
    /// level, and those below the joined edges (on the rows they decoded). Siblings run
    /// concurrently.
    pub(crate) fn run_batched<'a>(
        &'a mut self,
        ex: &'a dyn DynExecutor,
        parents: &'a [&'a S],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Plan { joined, batched } = self;
            let own = try_join_all(batched.iter_mut().map(|e| e.load(ex, parents)));
            let below = try_join_all(
                joined
                    .iter_mut()
                    .filter(|e| e.batched_edges() > 0)
                    .map(|e| e.load_batched(ex)),
            );
            try_join(own, below).await?;
            Ok(())
        })
    }
}

/// A type-erased edge joined into its parent's statement.
pub(super) trait JoinEdge<S>: Send + Sync {
    fn meta(&self) -> &'static RelationMeta;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Fields this edge adds to the parent's row: the target's columns and its own
    /// joined edges' for a to-one edge, one aggregate for a to-many edge.
    fn width(&self) -> usize;
    fn selects(&self, enc: AggregateEncoding, out: &mut Vec<String>);
    fn joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        parents: Option<&Parents>,
        sql: &mut SqlBuf,
    ) -> Result<()>;
    /// Whether this edge or a to-one chain below it aggregates a to-many edge over
    /// its parents' rows (the grouped shape).
    fn reads_parent_rows(&self) -> bool;
    fn prepare(&mut self, held: Option<&Held>);
    /// Records the entries decoded so far in the session's cache.
    fn record(&mut self);
    /// Whether the edge was joined by the balanced policy (not by choice).
    fn is_auto(&self) -> bool;
    fn is_to_one(&self) -> bool;
    fn settle(&mut self, parents: Option<usize>);
    /// The same edge, batched.
    fn into_batched(self: Box<Self>) -> Box<dyn BatchEdge<S>>;
    fn decode(&mut self, parent: &S, src: &Src<'_>, at: usize) -> Result<()>;
    fn batched_edges(&self) -> usize;
    /// Runs the batched edges below this one on the rows it decoded.
    fn load_batched<'a>(&'a mut self, ex: &'a dyn DynExecutor) -> BoxFuture<'a, Result<()>>;
    /// Whether this edge is a branch of the union statement (see `union`).
    fn is_branch(&self) -> bool;
    /// Makes this edge, and the edges below it, union branches where they fit.
    fn choose_branch(&mut self, shape: JoinedShape, parents: Option<usize>);
    /// Undoes `choose_branch` here and below.
    fn clear_branch(&mut self);
    /// Whether this branch is to-many or has a to-many branch below it.
    fn has_to_many_branch(&self) -> bool;
    /// Places this branch's fields in `slots`, then its branches'.
    fn layout(&mut self, slots: &mut Slots);
    /// Typed NULLs for the fields this joined edge adds to its parent's row.
    fn null_selects(&self, out: &mut Vec<String>);
    fn union_cte(&self, parents: &Parents, sql: &mut SqlBuf) -> Result<()>;
    fn union_branch(&self, parents: &Parents, width: usize, sql: &mut SqlBuf) -> Result<()>;
    /// Decodes a row of branch `n` if it is this edge's or one below it.
    fn union_row(&mut self, n: usize, row: &tokio_postgres::Row) -> Result<bool>;
    /// Attaches this branch's rows to `parents`, then its branches' to its targets.
    fn union_attach(&mut self, parents: &[&S]) -> Result<()>;
}

/// A type-erased edge loaded with a statement of its own.
pub(super) trait BatchEdge<S>: Send + Sync {
    fn meta(&self) -> &'static RelationMeta;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn plan_ref_batched(&self) -> usize;
    fn load<'a>(
        &'a mut self,
        ex: &'a dyn DynExecutor,
        parents: &'a [&'a S],
    ) -> BoxFuture<'a, Result<()>>;
}

type TargetKey<R> = <<R as Relation>::Target as Model>::Key;

/// One parent's key and the targets loaded for it: a relation entry of the session.
type Entry<R> = (<R as Relation>::Key, Vec<Arc<<R as Relation>::Target>>);

/// An edge already planned, opened for merging: its strategy, customisation, child
/// plan and child tree.
type EdgeParts<'a, T> = (
    LoadStrategy,
    &'a mut Related<T>,
    &'a mut Plan<T>,
    &'a mut Prefetch<T>,
);

// ---------------------------------------------------------------------------------
// Joined edges
// ---------------------------------------------------------------------------------

/// Relation `R` joined into the parent's statement: a `LEFT JOIN` for to-one edges, a
/// `LEFT JOIN LATERAL` aggregate for to-many edges (see the module documentation of
/// `joined`).
pub(crate) struct JoinedEdge<R: Relation> {
    pub(super) id: usize,
    pub(super) related: Related<R::Target>,
    pub(super) children: Prefetch<R::Target>,
    pub(super) plan: Plan<R::Target>,
    /// Targets decoded so far, by primary key, where rows repeat (to-one and
    /// many-to-many targets): a row under many parents is decoded once and shared.
    pub(super) seen: HashMap<TargetKey<R>, Arc<R::Target>>,
    /// Every distinct target decoded, kept when batched edges run below this one.
    pub(super) decoded: Vec<Arc<R::Target>>,
    /// Whether batched edges run below this one (set by `prepare`).
    pub(super) keep: bool,
    /// Joined by the balanced policy, not by choice.
    pub(super) auto: bool,
    /// The session's cache, for uncustomised edges (set by `prepare`).
    pub(super) held: Option<Held>,
    /// Each parent's key and targets, to record in the session's cache.
    pub(super) loaded: Vec<Entry<R>>,
    /// A branch of the union statement rather than joined into its parent's row.
    pub(super) branch: bool,
    /// As a branch: the field of the union's rows holding each of its own (the
    /// junction's parent key, the target's columns, its joined edges').
    pub(super) slots: Vec<usize>,
    /// As a branch: (parent key, target) for every row read, grouped once all are.
    pub(super) pairs: Vec<(<R as Relation>::Key, Arc<R::Target>)>,
}

/// The session cache a load fills, with its generation when the load began (so rows
/// read before a write in the session are not held after it).
#[derive(Clone)]
pub(crate) struct Held {
    pub(super) cache: Arc<SessionCache>,
    pub(super) generation: u64,
}

impl Held {
    /// The cache of a load starting now, if the executor has one.
    pub(crate) fn now(cache: Option<&Arc<SessionCache>>) -> Option<Held> {
        cache.map(|cache| Held {
            generation: cache.generation(),
            cache: cache.clone(),
        })
    }
}

impl<R: Relation> JoinedEdge<R> {
    fn new(
        id: usize,
        related: Related<R::Target>,
        children: Prefetch<R::Target>,
        plan: Plan<R::Target>,
    ) -> Self {
        JoinedEdge {
            id,
            related,
            children,
            plan,
            seen: HashMap::new(),
            decoded: Vec::new(),
            keep: false,
            auto: false,
            held: None,
            loaded: Vec::new(),
            branch: false,
            slots: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Whether the statement counts this to-one edge's matches (see
    /// [`counts_matches`]): one more field, `"__n"`, after the target's columns.
    pub(super) fn counts_matches(&self) -> bool {
        counts_matches(R::META, &self.related)
    }

    /// The fields the match count adds: 1 or 0.
    pub(super) fn match_count_width(&self) -> usize {
        usize::from(self.counts_matches())
    }

    pub(super) fn alias(&self) -> String {
        format!("r{}", self.id)
    }

    pub(super) fn target() -> &'static ModelMeta {
        <R::Target as Model>::META
    }

    pub(super) fn shares_rows() -> bool {
        matches!(
            R::META.kind,
            RelationKind::BelongsTo | RelationKind::ManyToMany
        )
    }
}

impl<R: Relation> JoinEdge<R::Source> for JoinedEdge<R> {
    fn meta(&self) -> &'static RelationMeta {
        R::META
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn width(&self) -> usize {
        if R::META.kind.is_to_one() {
            Self::target().columns.len() + self.match_count_width() + self.plan.width()
        } else {
            1
        }
    }

    fn selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        JoinedEdge::selects(self, enc, out);
    }

    fn joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        parents: Option<&Parents>,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        JoinedEdge::joins(self, enc, parent, nested, parents, sql)
    }

    fn reads_parent_rows(&self) -> bool {
        JoinedEdge::reads_parent_rows(self)
    }

    fn prepare(&mut self, held: Option<&Held>) {
        // A branch keeps its distinct targets: the parents of its own branches.
        self.keep = self.branch || self.plan.batched_edges() > 0;
        self.held = held.filter(|_| self.related.is_default()).cloned();
        self.plan.prepare(held);
    }

    fn record(&mut self) {
        if let Some(held) = &self.held {
            held.cache.store::<R>(
                held.generation,
                std::mem::take(&mut self.loaded)
                    .into_iter()
                    .map(|(key, targets)| (key, Targets::from(targets))),
            );
        }
        self.plan.record();
    }

    fn is_auto(&self) -> bool {
        self.auto
    }

    fn is_to_one(&self) -> bool {
        R::META.kind.is_to_one()
    }

    fn settle(&mut self, parents: Option<usize>) {
        self.plan.settle(parents);
    }

    fn into_batched(self: Box<Self>) -> Box<dyn BatchEdge<R::Source>> {
        let JoinedEdge {
            related,
            children,
            plan,
            ..
        } = *self;
        Box::new(BatchedEdge::<R> {
            related,
            children,
            plan,
        })
    }

    fn decode(&mut self, parent: &R::Source, src: &Src<'_>, at: usize) -> Result<()> {
        JoinedEdge::decode(self, parent, src, at)
    }

    fn batched_edges(&self) -> usize {
        self.plan.batched_edges()
    }

    fn is_branch(&self) -> bool {
        self.branch
    }

    fn choose_branch(&mut self, shape: JoinedShape, parents: Option<usize>) {
        JoinedEdge::choose_branch(self, shape, parents);
    }

    fn clear_branch(&mut self) {
        JoinedEdge::clear_branch(self);
    }

    fn has_to_many_branch(&self) -> bool {
        JoinedEdge::has_to_many_branch(self)
    }

    fn layout(&mut self, slots: &mut Slots) {
        JoinedEdge::layout(self, slots);
    }

    fn null_selects(&self, out: &mut Vec<String>) {
        JoinedEdge::null_selects(self, out);
    }

    fn union_cte(&self, parents: &Parents, sql: &mut SqlBuf) -> Result<()> {
        JoinedEdge::union_cte(self, parents, sql)
    }

    fn union_branch(&self, parents: &Parents, width: usize, sql: &mut SqlBuf) -> Result<()> {
        JoinedEdge::union_branch(self, parents, width, sql)
    }

    fn union_row(&mut self, n: usize, row: &tokio_postgres::Row) -> Result<bool> {
        JoinedEdge::union_row(self, n, row)
    }

    fn union_attach(&mut self, parents: &[&R::Source]) -> Result<()> {
        JoinedEdge::union_attach(self, parents)
    }

    fn load_batched<'a>(&'a mut self, ex: &'a dyn DynExecutor) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let JoinedEdge { plan, decoded, .. } = self;
            let parents: Vec<&R::Target> = decoded.iter().map(|t| &**t).collect();
            if parents.is_empty() {
                return Ok(());
            }
            plan.run_batched(ex, &parents).await
        })
    }
}

// ---------------------------------------------------------------------------------
// Batched edges
// ---------------------------------------------------------------------------------

/// Relation `R` loaded with a statement of its own for its parents' keys. Without
/// joined children it is exactly a prefetch edge (`load_edge` + `attach`); with them,
/// the batch statement of `relation/sql.rs` becomes a derived table the children join
/// onto:
///
/// ```text
/// SELECT "b"."__k0", "b".<target columns>, <children> FROM (<edge statement>)
///   AS "b"("__k0", "__j0", <target columns>) <children's joins> ORDER BY ...
/// ```
pub(crate) struct BatchedEdge<R: Relation> {
    pub(super) related: Related<R::Target>,
    pub(super) children: Prefetch<R::Target>,
    pub(super) plan: Plan<R::Target>,
}

impl<R: Relation> BatchedEdge<R> {
    /// Loads the edge with its joined children for the `fresh` parents, fills their
    /// slots, and returns the targets decoded.
    async fn load_joined(
        &mut self,
        ex: &dyn DynExecutor,
        fresh: &[&R::Source],
        keys: Vec<R::Key>,
    ) -> Result<Vec<Arc<R::Target>>> {
        if keys.is_empty() {
            for parent in fresh {
                R::slot(parent).fill(<R::Slot as Slot<R::Target>>::value_from(Vec::new()));
            }
            return Ok(Vec::new());
        }
        let sql = self.statement(&keys)?;
        let all = Held::now(ex.scope_dyn().cache.as_ref());
        let held = all.clone().filter(|_| self.related.is_default());
        self.plan.prepare(all.as_ref());
        let rows = ex
            .query_read_dyn(&sql.text, &as_sql_refs(&sql.params))
            .await?;
        let target = <R::Target as Model>::META;
        let m2m = R::META.kind == RelationKind::ManyToMany;
        let at = if m2m { R::Key::ARITY } else { 0 };
        let mut pairs: Vec<(R::Key, Arc<R::Target>)> = Vec::with_capacity(rows.len());
        let mut seen: HashMap<TargetKey<R>, Arc<R::Target>> = HashMap::new();
        let mut decoded = Vec::new();
        for row in &rows {
            let src = Src::Row(row);
            let t = if m2m {
                let tk = <R::Target as Model>::decode_key_fields(&src, at)?;
                match seen.get(&tk) {
                    Some(t) => t.clone(),
                    None => {
                        let t = self.decode_target(&src, at, held.as_ref())?;
                        seen.insert(tk, t.clone());
                        decoded.push(t.clone());
                        t
                    }
                }
            } else {
                let t = self.decode_target(&src, at, held.as_ref())?;
                decoded.push(t.clone());
                t
            };
            let key = if m2m {
                Some(R::Key::decode(row, 0, target.name)?)
            } else {
                R::target_key(&t)
            };
            if let Some(key) = key {
                pairs.push((key, t));
            }
        }
        drop(rows);
        self.plan.record();
        // The grouping and the stitching every strategy shares.
        let groups = group::<R>(pairs, decoded, &self.related)?;
        attach::<R>(fresh.iter().copied(), &groups);
        if let Some(held) = &held {
            let entries = keys.into_iter().map(|key| {
                let targets = Targets::from_slice(groups.get(&key));
                (key, targets)
            });
            held.cache.store::<R>(held.generation, entries);
        }
        Ok(groups.targets().to_vec())
    }
}

impl<R: Relation> BatchEdge<R::Source> for BatchedEdge<R> {
    fn meta(&self) -> &'static RelationMeta {
        R::META
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn plan_ref_batched(&self) -> usize {
        self.plan.batched_edges()
    }

    fn load<'a>(
        &'a mut self,
        ex: &'a dyn DynExecutor,
        parents: &'a [&'a R::Source],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (fresh, before): (Vec<&R::Source>, Vec<&R::Source>) = parents
                .iter()
                .copied()
                .partition(|p| !R::slot(p).is_loaded());
            let preloaded = !before.is_empty();
            let keys = dedup_keys(fresh.iter().filter_map(|p| R::source_key(p)));
            self.plan.settle(batched_parents(R::META.kind, keys.len()));
            if self.plan.joined.is_empty() {
                // A prefetch edge: the batch primitive and the one stitcher.
                let groups = load_edge::<R>(ex, keys, &self.related).await?;
                attach::<R>(fresh.iter().copied(), &groups);
                if self.plan.is_empty() {
                    return Ok(());
                }
                let targets = if preloaded {
                    attached::<R>(parents.iter().copied())
                } else {
                    groups.targets().to_vec()
                };
                let refs: Vec<&R::Target> = targets.iter().map(|t| &**t).collect();
                if refs.is_empty() {
                    return Ok(());
                }
                return self.plan.run_batched(ex, &refs).await;
            }
            let decoded = self.load_joined(ex, &fresh, keys).await?;
            let refs: Vec<&R::Target> = decoded.iter().map(|t| &**t).collect();
            if !refs.is_empty() {
                self.plan.run_batched(ex, &refs).await?;
            }
            if preloaded && !self.children.is_empty() {
                // Targets attached before this load missed the joined children: they
                // get the subtree the prefetch way.
                let targets = attached::<R>(before);
                let refs: Vec<&R::Target> = targets.iter().map(|t| &**t).collect();
                self.children.load(ex, &refs).await?;
            }
            Ok(())
        })
    }
}
