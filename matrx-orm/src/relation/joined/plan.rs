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

use crate::cache::session::SessionCache;
use crate::error::{Error, Result};
use crate::executor::DynExecutor;
use crate::key::Key;
use crate::model::{Fields, Model, ModelMeta};
use crate::relation::batch::{dedup_keys, group, load_edge, sort_by_key, sorted_in_memory};
use crate::relation::prefetch::Prefetch;
use crate::relation::sql::edge_statement;
use crate::relation::stitch::{attach, attached};
use crate::relation::{Related, Relation, RelationKind, RelationMeta, Slot};
use crate::sql::{qualified, SqlBuf};
use crate::value::{as_sql_refs, Param};

use super::records::{Record, Records, Src};
use super::{AggregateEncoding, LoadStrategy, Policy, BALANCED_JOIN_LIMIT};

/// Alias of the derived table holding a batched edge's rows (see [`BatchedEdge`]).
const BASE: &str = "b";

/// The edges of one level of a plan, on parents of type `S`.
pub(crate) struct Plan<S> {
    /// Edges loaded in the parent's statement, in select-list order.
    joined: Vec<Box<dyn JoinEdge<S>>>,
    /// Edges loaded with a statement of their own, once the parents are decoded.
    batched: Vec<Box<dyn BatchEdge<S>>>,
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
/// [`Planned`](super::Planned), reached through `Node::join_plan`.
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
    /// returns at most `parents` parent rows (`None`: not known): they stay joined when
    /// `parents` is at most [`BALANCED_JOIN_LIMIT`], else they become batched edges
    /// (their own balanced children are decided when they load). Call before rendering.
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

    /// Readies the joined edges for decoding (once the plan is complete).
    /// Readies the joined edges for decoding; `cache` is the session's identity map,
    /// which decoded targets join (one instance per row), if there is one.
    pub(crate) fn prepare(&mut self, cache: Option<&Arc<SessionCache>>) {
        for edge in &mut self.joined {
            edge.prepare(cache);
        }
    }

    /// The number of fields the joined edges add to a parent's row.
    fn width(&self) -> usize {
        self.joined.iter().map(|e| e.width()).sum()
    }

    /// Appends the select-list entries of the joined edges.
    pub(crate) fn selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        for edge in &self.joined {
            edge.selects(enc, out);
        }
    }

    /// Appends the joins of the joined edges onto `parent` (an alias).
    pub(crate) fn joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        for edge in &self.joined {
            edge.joins(enc, parent, nested, sql)?;
        }
        Ok(())
    }

    /// Decodes the joined edges of `parent` from `src`, whose field `at` is the first
    /// one after the parent's columns, and fills their slots.
    pub(crate) fn decode(&mut self, parent: &S, src: &Src<'_>, mut at: usize) -> Result<()> {
        for edge in &mut self.joined {
            edge.decode(parent, src, at)?;
            at += edge.width();
        }
        Ok(())
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
trait JoinEdge<S>: Send + Sync {
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
        sql: &mut SqlBuf,
    ) -> Result<()>;
    fn prepare(&mut self, cache: Option<&Arc<SessionCache>>);
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
}

/// A type-erased edge loaded with a statement of its own.
trait BatchEdge<S>: Send + Sync {
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

/// An edge already planned, opened for merging: its strategy, customisation, child
/// plan and child tree.
type EdgeParts<'a, T> = (
    LoadStrategy,
    &'a mut Related<T>,
    &'a mut Plan<T>,
    &'a mut Prefetch<T>,
);

fn push_list(sql: &mut SqlBuf, alias: &str, columns: &[&str], sep: &str) {
    for (i, col) in columns.iter().enumerate() {
        if i > 0 {
            sql.push(sep);
        }
        sql.column(alias, col);
    }
}

/// `"a"."x" = "p"."y" AND ...`, pairing `columns` of `alias` with `parent_columns` of
/// `parent`.
fn push_match(
    sql: &mut SqlBuf,
    alias: &str,
    columns: &[&str],
    parent: &str,
    parent_columns: &[&str],
) {
    for (i, (c, p)) in columns.iter().zip(parent_columns).enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        sql.column(alias, c).push(" = ").column(parent, p);
    }
}

/// The ordering of `related` on `alias` (default: the target's primary key).
fn push_order<T>(sql: &mut SqlBuf, alias: &str, target: &ModelMeta, related: &Related<T>) {
    if related.order.is_empty() {
        let pk: Vec<&str> = target.primary_key_columns().map(|c| c.name).collect();
        push_list(sql, alias, &pk, ", ");
        return;
    }
    for (i, term) in related.order.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        term.render(alias, sql);
    }
}

fn limit_param(n: u64) -> Result<Param> {
    i64::try_from(n)
        .map(Param::new)
        .map_err(|_| Error::InvalidInput(format!("limit per parent {n} is out of range")))
}

fn check_arity(rel: &RelationMeta, source: &ModelMeta, a: usize, b: usize) -> Result<()> {
    if a == b {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "relation {}.{}: {a} key columns on one side, {b} on the other",
        source.name, rel.name
    )))
}

// ---------------------------------------------------------------------------------
// Joined edges
// ---------------------------------------------------------------------------------

/// Relation `R` joined into the parent's statement: a `LEFT JOIN` for to-one edges, a
/// `LEFT JOIN LATERAL` aggregate for to-many edges (see the module documentation of
/// `joined`).
pub(crate) struct JoinedEdge<R: Relation> {
    id: usize,
    related: Related<R::Target>,
    children: Prefetch<R::Target>,
    plan: Plan<R::Target>,
    /// Targets decoded so far, by primary key, where rows repeat (to-one and
    /// many-to-many targets): a row under many parents is decoded once and shared.
    seen: HashMap<TargetKey<R>, Arc<R::Target>>,
    /// Every distinct target decoded, kept when batched edges run below this one.
    decoded: Vec<Arc<R::Target>>,
    /// Whether batched edges run below this one (set by `prepare`).
    keep: bool,
    /// Joined by the balanced policy, not by choice.
    auto: bool,
    /// The session's identity map, for uncustomised edges (set by `prepare`).
    cache: Option<Arc<SessionCache>>,
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
            cache: None,
        }
    }

    fn alias(&self) -> String {
        format!("r{}", self.id)
    }

    fn target() -> &'static ModelMeta {
        <R::Target as Model>::META
    }

    fn shares_rows() -> bool {
        matches!(
            R::META.kind,
            RelationKind::BelongsTo | RelationKind::ManyToMany
        )
    }

    /// The target's columns and this edge's own joined edges, qualified.
    fn row_selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        let alias = self.alias();
        for col in Self::target().columns {
            let mut sql = SqlBuf::new();
            sql.column(&alias, col.name);
            out.push(sql.text);
        }
        self.plan.selects(enc, out);
    }

    fn target_columns() -> Result<Vec<&'static str>> {
        R::META.target_columns()
    }

    /// The `FROM` item: the target, or for a many-to-many edge the junction joined to
    /// the target (no placeholders).
    fn push_from(&self, sql: &mut SqlBuf) -> Result<()> {
        let alias = self.alias();
        let target = Self::target();
        let source = <R::Source as Model>::META;
        match (&R::META.through, R::META.kind) {
            (Some(through), RelationKind::ManyToMany) => {
                let junction = format!("j{}", self.id);
                let pk: Vec<&str> = target.primary_key_columns().map(|c| c.name).collect();
                check_arity(R::META, source, pk.len(), through.target_columns.len())?;
                sql.push(&qualified(through.schema.or(source.schema), through.table));
                sql.push(" AS ")
                    .ident(&junction)
                    .push(" JOIN ")
                    .table_as(target, &alias)
                    .push(" ON ");
                push_match(sql, &alias, &pk, &junction, through.target_columns);
            }
            (None, RelationKind::ManyToMany) => {
                return Err(Error::InvalidInput(format!(
                    "relation {}.{} is many-to-many but names no junction table",
                    source.name,
                    R::META.name
                )))
            }
            _ => {
                sql.table_as(target, &alias);
            }
        }
        Ok(())
    }

    /// ` WHERE <the keys match the parent's> [AND <the edge's filter>]`.
    fn push_condition(&self, sql: &mut SqlBuf, parent: &str) -> Result<()> {
        let alias = self.alias();
        let source = <R::Source as Model>::META;
        sql.push(" WHERE ");
        match &R::META.through {
            Some(through) if R::META.kind == RelationKind::ManyToMany => {
                let junction = format!("j{}", self.id);
                check_arity(
                    R::META,
                    source,
                    through.source_columns.len(),
                    R::META.source_columns.len(),
                )?;
                push_match(
                    sql,
                    &junction,
                    through.source_columns,
                    parent,
                    R::META.source_columns,
                );
            }
            _ => {
                let columns = Self::target_columns()?;
                check_arity(R::META, source, columns.len(), R::META.source_columns.len())?;
                push_match(sql, &alias, &columns, parent, R::META.source_columns);
            }
        }
        if let Some(filter) = &self.related.filter {
            sql.push(" AND ");
            filter.render(&alias, sql);
        }
        Ok(())
    }

    fn to_one_joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        let alias = self.alias();
        let target = Self::target();
        let plain = R::META.kind == RelationKind::BelongsTo
            && R::META.target_fields.is_empty()
            && self.related.order.is_empty()
            && self.related.limit_per_parent.is_none()
            && !nested;
        if plain {
            // A foreign key to the target's primary key: at most one row, a plain join.
            let columns = Self::target_columns()?;
            check_arity(
                R::META,
                <R::Source as Model>::META,
                columns.len(),
                R::META.source_columns.len(),
            )?;
            sql.push(" LEFT JOIN ")
                .table_as(target, &alias)
                .push(" ON ");
            push_match(sql, &alias, &columns, parent, R::META.source_columns);
            if let Some(filter) = &self.related.filter {
                sql.push(" AND ");
                filter.render(&alias, sql);
            }
        } else {
            // One row at most, whatever the data: a has-one may find several, and
            // inside an aggregate the LIMIT keeps the planner on an index lookup per
            // row (a plain join there is planned as a hash join rebuilt per parent).
            sql.push(" LEFT JOIN LATERAL (SELECT ")
                .columns(&alias, target)
                .push(" FROM ");
            self.push_from(sql)?;
            self.push_condition(sql, parent)?;
            sql.push(" ORDER BY ");
            push_order(sql, &alias, target, &self.related);
            match self.related.limit_per_parent {
                // At most one row either way: a limit of 0 leaves the relation NULL.
                Some(n) => {
                    sql.push(" LIMIT ").param(limit_param(n.min(1))?);
                }
                None => {
                    sql.push(" LIMIT 1");
                }
            }
            sql.push(") AS ").ident(&alias).push(" ON TRUE");
        }
        self.plan.joins(enc, &alias, nested, sql)
    }

    fn to_many_joins(&self, enc: AggregateEncoding, parent: &str, sql: &mut SqlBuf) -> Result<()> {
        let alias = self.alias();
        let target = Self::target();
        let (agg, ctor) = match enc {
            AggregateEncoding::Records => ("array_agg", "ROW"),
            AggregateEncoding::Json => ("json_agg", "json_build_array"),
        };
        let mut fields = Vec::new();
        self.row_selects(enc, &mut fields);
        sql.push(" LEFT JOIN LATERAL (SELECT ")
            .push(agg)
            .push("(")
            .push(ctor)
            .push("(");
        sql.push(&fields.join(", ")).push(")");
        if !sorted_in_memory(R::META.kind, &self.related) {
            sql.push(" ORDER BY ");
            push_order(sql, &alias, target, &self.related);
        }
        sql.push(") AS \"v\" FROM ");
        match self.related.limit_per_parent {
            Some(n) => {
                sql.push("(SELECT ").columns(&alias, target).push(" FROM ");
                self.push_from(sql)?;
                self.push_condition(sql, parent)?;
                sql.push(" ORDER BY ");
                push_order(sql, &alias, target, &self.related);
                sql.push(" LIMIT ").param(limit_param(n)?);
                sql.push(") AS ").ident(&alias);
                self.plan.joins(enc, &alias, true, sql)?;
            }
            None => {
                // The children's joins go between the FROM item and the condition.
                self.push_from(sql)?;
                self.plan.joins(enc, &alias, true, sql)?;
                self.push_condition(sql, parent)?;
            }
        }
        sql.push(") AS ")
            .ident(&format!("l{}", self.id))
            .push(" ON TRUE");
        Ok(())
    }

    fn fill(parent: &R::Source, targets: Vec<Arc<R::Target>>) {
        R::slot(parent).fill(<R::Slot as Slot<R::Target>>::value_from(targets));
    }

    /// Decodes one target row at `at` of `src` (or takes the one decoded before).
    fn target_at(&mut self, src: &Src<'_>, at: usize) -> Result<Arc<R::Target>> {
        let key = if Self::shares_rows() {
            let key = <R::Target as Model>::decode_key_fields(src, at)?;
            if let Some(t) = self.seen.get(&key) {
                return Ok(t.clone());
            }
            Some(key)
        } else {
            None
        };
        let target = interned(
            <R::Target as Model>::decode_fields(src, at)?,
            self.cache.as_deref(),
        );
        self.plan
            .decode(&target, src, at + Self::target().columns.len())?;
        if let Some(key) = key {
            self.seen.insert(key, target.clone());
        }
        if self.keep {
            self.decoded.push(target.clone());
        }
        Ok(target)
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
            Self::target().columns.len() + self.plan.width()
        } else {
            1
        }
    }

    fn selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        if R::META.kind.is_to_one() {
            self.row_selects(enc, out);
        } else {
            let mut sql = SqlBuf::new();
            sql.column(&format!("l{}", self.id), "v");
            out.push(sql.text);
        }
    }

    fn joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        if R::META.kind.is_to_one() {
            self.to_one_joins(enc, parent, nested, sql)
        } else {
            self.to_many_joins(enc, parent, sql)
        }
    }

    fn prepare(&mut self, cache: Option<&Arc<SessionCache>>) {
        self.keep = self.plan.batched_edges() > 0;
        self.cache = cache.filter(|_| self.related.is_default()).cloned();
        self.plan.prepare(cache);
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
        let target = <R::Target as Model>::META;
        if R::META.kind.is_to_one() {
            // A missed LEFT JOIN leaves every column NULL; primary keys never are.
            let pk0 = target.primary_key.first().copied().unwrap_or(0);
            if src.is_null(at + pk0) {
                Self::fill(parent, Vec::new());
                return Ok(());
            }
            let t = self.target_at(src, at)?;
            Self::fill(parent, vec![t]);
            return Ok(());
        }
        let records: Option<Records<'_>> = src.field(at, target.name, R::META.name)?;
        let mut targets = Vec::new();
        if let Some(records) = records {
            let bad = |message: String| Error::Decode {
                model: <R::Source as Model>::META.name,
                column: R::META.name.to_owned(),
                rust_type: "record[]",
                pg_type: "record[]".to_owned(),
                message,
            };
            let mut elements = records.elements().map_err(bad)?;
            targets.reserve(elements.len());
            let mut record = Record::default();
            while elements.next_into(&mut record).map_err(bad)? {
                targets.push(self.target_at(&Src::Rec(&record), 0)?);
            }
        }
        if sorted_in_memory(R::META.kind, &self.related) {
            sort_by_key(&mut targets);
        }
        Self::fill(parent, targets);
        Ok(())
    }

    fn batched_edges(&self) -> usize {
        self.plan.batched_edges()
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
    related: Related<R::Target>,
    children: Prefetch<R::Target>,
    plan: Plan<R::Target>,
}

impl<R: Relation> BatchedEdge<R> {
    /// The statement loading the edge for `keys` with the joined children.
    fn statement(&self, keys: &[R::Key]) -> Result<SqlBuf> {
        let source = <R::Source as Model>::META;
        let target = <R::Target as Model>::META;
        let base = edge_statement(
            source,
            R::META,
            R::Key::array_params(keys),
            &R::Key::column_types(),
            &self.related,
        )?;
        let m2m = R::META.kind == RelationKind::ManyToMany;
        let mut names: Vec<String> = Vec::new();
        let mut selects: Vec<String> = Vec::new();
        if let (true, Some(through)) = (m2m, &R::META.through) {
            for i in 0..through.source_columns.len() {
                names.push(format!("__k{i}"));
                let mut s = SqlBuf::new();
                s.column(BASE, &format!("__k{i}"));
                selects.push(s.text);
            }
            names.extend((0..through.target_columns.len()).map(|i| format!("__j{i}")));
        }
        for col in target.columns {
            if col.name.starts_with("__") {
                return Err(Error::InvalidInput(format!(
                    "{}.{} cannot be joined onto a batched edge: its name starts with `__`",
                    target.name, col.name
                )));
            }
            names.push(col.name.to_owned());
            let mut s = SqlBuf::new();
            s.column(BASE, col.name);
            selects.push(s.text);
        }
        if self.related.limit_per_parent.is_some() {
            names.push("__rn".to_owned());
        }
        self.plan.selects(AggregateEncoding::Records, &mut selects);
        let mut sql = SqlBuf::new();
        sql.push("SELECT ")
            .push(&selects.join(", "))
            .push(" FROM (");
        // The select list holds no placeholder, so the edge statement's `$1..$n` keep
        // their numbers.
        sql.push(&base.text);
        sql.params.extend(base.params);
        sql.push(") AS ").ident(BASE).push("(");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.ident(name);
        }
        sql.push(")");
        self.plan
            .joins(AggregateEncoding::Records, BASE, false, &mut sql)?;
        if self.related.limit_per_parent.is_some() {
            sql.push(" ORDER BY ").column(BASE, "__rn");
        } else if !self.related.order.is_empty() {
            sql.push(" ORDER BY ");
            push_order(&mut sql, BASE, target, &self.related);
        }
        Ok(sql)
    }

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
        let cache = ex
            .scope_dyn()
            .cache
            .clone()
            .filter(|_| self.related.is_default());
        self.plan.prepare(cache.as_ref());
        let rows = ex.query_dyn(&sql.text, &as_sql_refs(&sql.params)).await?;
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
                        let t = self.decode_target(&src, at, cache.as_deref())?;
                        seen.insert(tk, t.clone());
                        decoded.push(t.clone());
                        t
                    }
                }
            } else {
                let t = self.decode_target(&src, at, cache.as_deref())?;
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
        // The grouping and the stitching every strategy shares.
        let groups = group::<R>(pairs, decoded, &self.related);
        attach::<R>(fresh.iter().copied(), &groups);
        Ok(groups.targets().to_vec())
    }

    /// Decodes a target (joining the session's identity map), then its joined edges.
    fn decode_target(
        &mut self,
        src: &Src<'_>,
        at: usize,
        cache: Option<&SessionCache>,
    ) -> Result<Arc<R::Target>> {
        let t = interned(<R::Target as Model>::decode_fields(src, at)?, cache);
        self.plan
            .decode(&t, src, at + <R::Target as Model>::META.columns.len())?;
        Ok(t)
    }
}

/// `row` as the session's instance of it: the one already held for its key, or `row`
/// now held. Its joined edges are decoded after, onto whichever instance this is
/// (relation fields are set once, so an instance's earlier loads are kept).
fn interned<T: Model>(row: T, cache: Option<&SessionCache>) -> Arc<T> {
    let mut row = Arc::new(row);
    if let Some(cache) = cache {
        cache.intern(std::slice::from_mut(&mut row));
    }
    row
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
            self.plan.settle(Some(keys.len()));
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
