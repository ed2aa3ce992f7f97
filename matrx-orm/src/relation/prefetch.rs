//! Prefetch trees: batch-load relations over a collection, one query per edge, nested
//! to any depth.
//!
//! A tree is built from typed relation constants (`Order::ITEMS.with(OrderItem::PRODUCT)`)
//! or parsed from a string path (`"items__product"`). Loading an edge calls the batch
//! primitive once with the keys of every parent, loads the edge's children on the
//! distinct targets (sibling edges run concurrently), then attaches the targets to the
//! parents.

use std::any::Any;
use std::sync::Arc;

use futures_util::future::{try_join_all, BoxFuture};

use crate::base::error::{Error, Result};
use crate::executor::{DynExecutor, Executor};
use crate::relation::batch::load_edge;
use crate::relation::joined::plan::{Ids, JoinPlan, Plan};
use crate::relation::joined::policy::{LoadStrategy, Policy};
use crate::relation::stitch::{attach, attached};
use crate::schema::column::OrderBy;
use crate::schema::filter::Filter;
use crate::schema::model::{Model, Relation, RelationVisitor};
use crate::schema::related::Related;
use crate::schema::slot::Slot;

/// A type-erased edge of a prefetch tree whose parents are `S`.
pub(crate) trait Node<S>: Send + Sync + 'static {
    /// Loads the edge and its subtree for `parents`.
    fn load<'a>(
        &'a self,
        ex: &'a dyn DynExecutor,
        parents: &'a [&'a S],
    ) -> BoxFuture<'a, Result<()>>;
    /// For merging equal edges.
    fn as_any(&self) -> &dyn Any;
    /// A new node holding both subtrees, if `other` loads the same rows.
    fn merged(&self, other: &dyn Node<S>) -> Option<Arc<dyn Node<S>>>;
    /// `Model.relation`, for messages.
    fn describe(&self) -> String;
    /// A conflict somewhere in this edge's subtree.
    fn conflict(&self) -> Option<String>;
    /// The edge as `select_related` plans it (joined.rs).
    fn join_plan(&self) -> &dyn JoinPlan<S>;
    /// Whether this edge or one below it is customised (filter, ordering, limit).
    fn customised(&self) -> bool;
}

/// A set of relation trees to load on parents of type `S`. Equal edges are merged, so
/// `"items"` and `"items__product"` load items once.
pub struct Prefetch<S> {
    pub(crate) nodes: Vec<Arc<dyn Node<S>>>,
    /// Set when one relation was added twice with different customisations: the
    /// two would race for the same field, so loading refuses the tree.
    conflict: Option<String>,
}

impl<S> Clone for Prefetch<S> {
    fn clone(&self) -> Self {
        Prefetch {
            nodes: self.nodes.clone(),
            conflict: self.conflict.clone(),
        }
    }
}

impl<S> Default for Prefetch<S> {
    fn default() -> Self {
        Prefetch {
            nodes: Vec::new(),
            conflict: None,
        }
    }
}

impl<S> std::fmt::Debug for Prefetch<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prefetch({} edges)", self.nodes.len())
    }
}

impl<S: Model> Prefetch<S> {
    /// Whether there is nothing to load.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a tree, merging it with an equal edge already present.
    pub fn add(&mut self, tree: impl IntoPrefetch<S>) {
        for node in tree.into_prefetch().nodes {
            self.add_node(node);
        }
    }

    fn add_node(&mut self, node: Arc<dyn Node<S>>) {
        for existing in &mut self.nodes {
            if let Some(merged) = existing.merged(&*node) {
                *existing = merged;
                return;
            }
            if Any::type_id(existing.as_any()) == Any::type_id(node.as_any()) {
                self.conflict.get_or_insert_with(|| {
                    format!(
                        "{} is prefetched twice with different filters, orderings or limits; \
                         the two would fill the same field",
                        node.describe()
                    )
                });
            }
        }
        self.nodes.push(node);
    }

    /// Whether some edge of the tree is customised (filter, ordering, limit).
    pub(crate) fn is_customised(&self) -> bool {
        self.nodes.iter().any(|n| n.customised())
    }

    /// After loading this tree in a session: a customised edge put a subset of its
    /// targets into relation fields of instances the session may hold (fields are set
    /// once), so the session forgets what it holds.
    pub(crate) fn settle_cache(&self, ex: &dyn DynExecutor) {
        if let Some(cache) = &ex.scope_dyn().cache {
            if self.is_customised() {
                cache.clear();
            }
        }
    }

    /// Refuses a tree that prefetches one relation twice with different
    /// customisations (checked before any query runs).
    pub(crate) fn validate(&self) -> Result<()> {
        match self.first_conflict() {
            Some(conflict) => Err(Error::InvalidInput(conflict)),
            None => Ok(()),
        }
    }

    /// The first conflict in the tree, if any.
    fn first_conflict(&self) -> Option<String> {
        self.conflict
            .clone()
            .or_else(|| self.nodes.iter().find_map(|n| n.conflict()))
    }

    /// Parses a string path of relation names joined by `__` (`"items__product"`).
    /// An unknown name gives [`Error::InvalidInput`] naming it and the valid ones.
    pub fn parse(path: &str) -> Result<Prefetch<S>> {
        let segments: Vec<&str> = path.split("__").collect();
        Self::parse_segments(&segments)
    }

    /// Parses an already split path.
    #[doc(hidden)]
    pub fn parse_segments(segments: &[&str]) -> Result<Prefetch<S>> {
        let Some((first, rest)) = segments.split_first() else {
            return Ok(Prefetch::default());
        };
        let mut find = FindEdge {
            name: first,
            rest,
            found: None,
            names: Vec::new(),
        };
        S::visit_relations(&mut find);
        match find.found {
            Some(edge) => edge,
            None => {
                let valid = find.names;
                Err(Error::InvalidInput(format!(
                    "{} has no relation `{first}`; its relations are: {}",
                    S::META.name,
                    if valid.is_empty() {
                        "(none)".to_owned()
                    } else {
                        valid.join(", ")
                    }
                )))
            }
        }
    }

    /// [`load`](Self::load), then [`settle_cache`](Self::settle_cache) whatever the
    /// outcome: how every caller loads a tree on parents it has already read. The
    /// tree's statements share one connection (`Executor::for_load`), so sibling
    /// edges are pipelined on it.
    pub(crate) async fn load_settled(&self, ex: &dyn DynExecutor, parents: &[&S]) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let pinned = ex.for_load_dyn();
        let loaded = self.load(pinned.as_deref().unwrap_or(ex), parents).await;
        drop(pinned);
        self.settle_cache(ex);
        loaded
    }

    /// Loads every tree on `parents`: one query per edge, sibling edges concurrently.
    pub(crate) async fn load(&self, ex: &dyn DynExecutor, parents: &[&S]) -> Result<()> {
        self.validate()?;
        if parents.is_empty() {
            return Ok(());
        }
        try_join_all(self.nodes.iter().map(|n| n.load(ex, parents))).await?;
        Ok(())
    }
}

/// Anything that can be turned into a prefetch tree on `S`: a relation constant
/// (`Order::CUSTOMER`), a customised [`Path`], or a [`Prefetch`].
pub trait IntoPrefetch<S> {
    /// The tree.
    fn into_prefetch(self) -> Prefetch<S>;
}

impl<S> IntoPrefetch<S> for Prefetch<S> {
    fn into_prefetch(self) -> Prefetch<S> {
        self
    }
}

impl<R: Relation> IntoPrefetch<R::Source> for R {
    fn into_prefetch(self) -> Prefetch<R::Source> {
        Path::<R>::new().into_prefetch()
    }
}

impl<R: Relation> IntoPrefetch<R::Source> for Path<R> {
    fn into_prefetch(self) -> Prefetch<R::Source> {
        Prefetch {
            nodes: vec![Arc::new(self)],
            conflict: None,
        }
    }
}

/// One relation edge with its customisation and nested edges. Build it from a
/// relation constant:
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "products")]
/// # pub struct Product { #[orm(primary_key)] pub id: i64 }
/// # #[derive(Model, Debug)] #[orm(table = "order_items")]
/// # pub struct OrderItem { #[orm(primary_key)] pub id: i64, pub order_id: i64, pub product_id: i64,
/// #   #[orm(belongs_to(key = "product_id"))] pub product: One<Product> }
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64,
/// #   #[orm(has_many(foreign_key = "order_id"))] pub items: Many<OrderItem> }
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// // Each order with its three most expensive items and their products: 3 queries.
/// let orders = Order::query()
///     .prefetch(
///         Order::ITEMS
///             .order_by(OrderItem::ID.desc())
///             .limit_per_parent(3)
///             .with(OrderItem::PRODUCT),
///     )
///     .all(db)
///     .await?;
/// # Ok(()) }
/// ```
pub struct Path<R: Relation> {
    pub(crate) related: Related<R::Target>,
    pub(crate) children: Prefetch<R::Target>,
}

impl<R: Relation> Clone for Path<R> {
    fn clone(&self) -> Self {
        Path {
            related: self.related.clone(),
            children: self.children.clone(),
        }
    }
}

impl<R: Relation> Default for Path<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Relation> Path<R> {
    /// The plain edge.
    pub fn new() -> Self {
        Path {
            related: Related::default(),
            children: Prefetch::default(),
        }
    }

    /// Also loads `child` on the targets of this edge.
    pub fn with(mut self, child: impl IntoPrefetch<R::Target>) -> Self {
        self.children.add(child);
        self
    }

    /// Keeps only targets matching `filter`. The relation then holds that subset.
    pub fn filter(mut self, filter: Filter<R::Target>) -> Self {
        self.related.add_filter(filter);
        self
    }

    /// Orders each parent's targets (default: by primary key).
    pub fn order_by(mut self, order: OrderBy<R::Target>) -> Self {
        self.related.order.push(order);
        self
    }

    /// Keeps at most `n` targets per parent (top-N per parent, still one query).
    pub fn limit_per_parent(mut self, n: u64) -> Self {
        self.related.limit_per_parent = Some(n);
        self
    }

    /// Builds the edge from a parsed path's remaining segments.
    #[doc(hidden)]
    pub fn from_segments(rest: &[&str]) -> Result<Prefetch<R::Source>> {
        let mut path = Path::<R>::new();
        if !rest.is_empty() {
            path.children = Prefetch::<R::Target>::parse_segments(rest)?;
        }
        Ok(path.into_prefetch())
    }
}

impl<R: Relation> Node<R::Source> for Path<R> {
    fn load<'a>(
        &'a self,
        ex: &'a dyn DynExecutor,
        parents: &'a [&'a R::Source],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let fresh: Vec<&R::Source> = parents
                .iter()
                .copied()
                .filter(|p| !R::slot(p).is_loaded())
                .collect();
            let keys = fresh.iter().filter_map(|p| R::source_key(p));
            let groups = load_edge::<R>(ex, keys.collect::<Vec<_>>(), &self.related).await?;
            attach::<R>(fresh.iter().copied(), &groups);
            if self.children.is_empty() {
                return Ok(());
            }
            if fresh.len() == parents.len() {
                // Every parent was filled from this load: its distinct rows are the targets.
                let refs: Vec<&R::Target> = groups.targets().iter().map(|t| &**t).collect();
                return self.children.load(ex, &refs).await;
            }
            // Some parents were loaded before: children load on every attached target.
            let targets = attached::<R>(parents.iter().copied());
            let refs: Vec<&R::Target> = targets.iter().map(|t| &**t).collect();
            self.children.load(ex, &refs).await
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn merged(&self, other: &dyn Node<R::Source>) -> Option<Arc<dyn Node<R::Source>>> {
        let other = other.as_any().downcast_ref::<Path<R>>()?;
        if !self.related.is_default() || !other.related.is_default() {
            return None;
        }
        let mut merged = self.clone();
        for node in &other.children.nodes {
            merged.children.add_node(node.clone());
        }
        if merged.children.conflict.is_none() {
            merged.children.conflict = other.children.conflict.clone();
        }
        Some(Arc::new(merged))
    }

    fn describe(&self) -> String {
        format!("{}.{}", <R::Source as Model>::META.name, R::META.name)
    }

    fn conflict(&self) -> Option<String> {
        self.children.first_conflict()
    }

    fn customised(&self) -> bool {
        !self.related.is_default() || self.children.is_customised()
    }

    fn join_plan(&self) -> &dyn JoinPlan<R::Source> {
        self
    }
}

/// A tree edge with a chosen strategy; build it with [`EdgeStrategy::joined`] or
/// [`EdgeStrategy::batched`]. The choice covers this edge only; its children follow
/// their own choice, else the call's default (`select_related`: joined, `balanced`:
/// [`balanced_strategy`](crate::balanced_strategy), `prefetch`: batched).
///
/// An edge whose parents are loaded already (the top edges of a `prefetch` tree or of
/// [`prefetch_related`](crate::prefetch_related)) cannot join into their statement: it
/// runs as a batched edge, and its joined children join into its statement.
pub struct Planned<R: Relation> {
    pub(crate) path: Path<R>,
    pub(crate) strategy: LoadStrategy,
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

/// Finds the relation named `name` among a model's relations and builds its edge
/// with the path's remaining segments.
struct FindEdge<'p, S> {
    name: &'p str,
    rest: &'p [&'p str],
    found: Option<Result<Prefetch<S>>>,
    /// Every relation name, for the error when none matches.
    names: Vec<&'static str>,
}

impl<S: Model> RelationVisitor<S> for FindEdge<'_, S> {
    fn visit<R: Relation<Source = S>>(&mut self, name: &'static str) {
        self.names.push(name);
        if self.found.is_none() && name == self.name {
            self.found = Some(Path::<R>::from_segments(self.rest));
        }
    }
}

/// Building an edge from a relation constant: `Order::ITEMS.with(OrderItem::PRODUCT)`,
/// `Order::ITEMS.order_by(OrderItem::ID.desc()).limit_per_parent(3)`. Implemented for
/// every relation; in the [prelude](crate::prelude).
pub trait RelationExt: Relation {
    /// This edge, also loading `child` on its targets.
    fn with(self, child: impl IntoPrefetch<Self::Target>) -> Path<Self> {
        Path::new().with(child)
    }

    /// This edge, keeping only targets matching `filter`.
    fn filter(self, filter: Filter<Self::Target>) -> Path<Self> {
        Path::new().filter(filter)
    }

    /// This edge, ordering each parent's targets.
    fn order_by(self, order: OrderBy<Self::Target>) -> Path<Self> {
        Path::new().order_by(order)
    }

    /// This edge, keeping at most `n` targets per parent.
    fn limit_per_parent(self, n: u64) -> Path<Self> {
        Path::new().limit_per_parent(n)
    }
}

impl<R: Relation> RelationExt for R {}

/// Loads relation trees on an existing collection: one query per edge, whatever the
/// collection's size; no query at all for an empty collection.
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "customers")]
/// # pub struct Customer { #[orm(primary_key)] pub id: i64 }
/// # #[derive(Model, Debug)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64,
/// #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer> }
/// # async fn demo(db: &matrx_orm::Db, orders: Vec<Order>) -> matrx_orm::Result<()> {
/// matrx_orm::prefetch_related(db, &orders, Order::CUSTOMER).await?;
/// let first_customer = orders[0].customer.get();
/// # Ok(()) }
/// ```
pub async fn prefetch_related<'p, S, E, I>(
    ex: &E,
    parents: I,
    tree: impl IntoPrefetch<S>,
) -> Result<()>
where
    S: Model,
    E: Executor,
    I: IntoIterator<Item = &'p S>,
{
    let parents: Vec<&S> = parents.into_iter().collect();
    tree.into_prefetch().load_settled(ex, &parents).await
}
