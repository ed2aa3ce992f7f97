//! The batch primitive: load relation `R` for a set of parent keys in one query and
//! return the target rows grouped by parent key. Lazy fetch calls it with one key,
//! prefetch once per edge, the request-scoped loader once per batch.

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use crate::base::error::{Error, Result};
use crate::base::hash::{key_map, KeyMap};
use crate::base::key::{dedup_keys, Key};
use crate::base::meta::{RelationKind, RelationMeta};
use crate::base::value::as_sql_refs;
use crate::cache::session::Targets;
use crate::cache::shared::{CachedRow, Generation, SharedCache};
use crate::executor::{DynExecutor, Scope};
use crate::relation::sql::{default_edge_statement, edge_statement, model_keys_statement};
use crate::schema::model::{Model, Relation};
use crate::schema::related::Related;

/// Target rows of one edge, grouped by the parent key they belong to.
///
/// Rows are kept in one vector sorted by parent key (a stable sort, so each parent's
/// rows keep their order), with an index from key to its run: one hash entry per
/// parent, not per row.
pub struct Groups<K, T> {
    /// Every (parent key, target) pair, sorted by parent key.
    rows: Vec<Arc<T>>,
    /// Parent key -> the range of `rows` holding its targets.
    index: KeyMap<K, Range<usize>>,
    /// Every distinct target row, each held once.
    targets: Vec<Arc<T>>,
}

impl<K, T> Default for Groups<K, T> {
    fn default() -> Self {
        Groups {
            rows: Vec::new(),
            index: KeyMap::default(),
            targets: Vec::new(),
        }
    }
}

impl<K: Key, T> Groups<K, T> {
    /// Groups `(parent key, target)` pairs; `targets` lists each distinct row once.
    fn new(mut pairs: Vec<(K, Arc<T>)>, targets: Vec<Arc<T>>) -> Self {
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut index = key_map(pairs.len().min(1024));
        let mut rows = Vec::with_capacity(pairs.len());
        let mut start = 0;
        let mut current: Option<K> = None;
        for (key, target) in pairs {
            if current.as_ref() != Some(&key) {
                if let Some(prev) = current.replace(key) {
                    index.insert(prev, start..rows.len());
                }
                start = rows.len();
            }
            rows.push(target);
        }
        if let Some(last) = current {
            index.insert(last, start..rows.len());
        }
        Groups {
            rows,
            index,
            targets,
        }
    }

    /// The targets of one parent key (empty if it has none).
    pub fn get(&self, key: &K) -> &[Arc<T>] {
        match self.index.get(key) {
            Some(range) => &self.rows[range.clone()],
            None => &[],
        }
    }

    /// Every distinct target row.
    pub fn targets(&self) -> &[Arc<T>] {
        &self.targets
    }

    /// Applies `f` to each parent's run of targets.
    fn for_each_group(&mut self, mut f: impl FnMut(&mut [Arc<T>])) {
        for range in self.index.values() {
            f(&mut self.rows[range.clone()]);
        }
    }
}

/// Loads `R` for `keys` (de-duplicated here; an empty set costs no query).
///
/// In a session, keys whose targets the session already holds are answered from its
/// relation entries, targets are interned in its identity map (one instance per row),
/// and the loaded entries are recorded — for uncustomised edges only. Belongs-to loads
/// of a model with a shared-cache policy take rows from the `Db`'s row cache first.
pub async fn load_edge<R: Relation>(
    ex: &dyn DynExecutor,
    keys: impl IntoIterator<Item = R::Key>,
    related: &Related<R::Target>,
) -> Result<Groups<R::Key, R::Target>> {
    load_distinct_edge::<R>(ex, dedup_keys(keys), related).await
}

/// [`load_edge`] for keys known to be distinct.
pub(crate) async fn load_distinct_edge<R: Relation>(
    ex: &dyn DynExecutor,
    keys: Vec<R::Key>,
    related: &Related<R::Target>,
) -> Result<Groups<R::Key, R::Target>> {
    if keys.is_empty() {
        return Ok(Groups::default());
    }
    let scope = ex.scope_dyn();
    let cache = scope.cache.as_deref().filter(|_| related.is_default());
    // Taken before the statement: rows read before a write in this session are not
    // held after it.
    let generation = cache.map(|c| c.generation());
    let (hits, keys) = match cache {
        Some(cache) => cache.split::<R>(keys),
        None => (Vec::new(), keys),
    };
    let mut fresh = Fresh::default();
    let shared = shared_target_cache::<R>(scope, related);
    let (keys, shared) = match shared {
        Some(shared) => {
            let (missing, generation) = from_shared_cache::<R>(shared, keys, &mut fresh).await?;
            (missing, Some((shared, generation)))
        }
        None => (keys, None),
    };
    if !keys.is_empty() {
        let (text, params) = if related.is_default() {
            default_edge_statement::<R>(&keys)?
        } else {
            let sql = edge_statement(
                <R::Source as Model>::META,
                R::META,
                R::Key::array_params(&keys),
                &R::Key::column_types(),
                related,
            )?;
            (sql.text.into(), sql.params)
        };
        let rows = ex.query_read_dyn(&text, &as_sql_refs(&params)).await?;
        match shared.filter(|_| scope.fills_shared_cache()) {
            Some((shared, generation)) => {
                let stored = decode_rows::<R>(rows, &mut fresh, true)?;
                shared.put::<R::Target>(&generation, stored).await;
            }
            _ => {
                decode_rows::<R>(rows, &mut fresh, false)?;
            }
        }
    }
    if let (Some(cache), Some(generation)) = (cache, generation) {
        cache.intern(generation, &mut fresh.targets);
    }
    let mut pairs: Vec<(R::Key, Arc<R::Target>)> = fresh
        .links
        .into_iter()
        .map(|(key, i)| (key, fresh.targets[i].clone()))
        .collect();
    let mut targets = fresh.targets;
    for (key, cached) in &hits {
        targets.extend(cached.as_slice().iter().cloned());
        pairs.extend(cached.as_slice().iter().map(|t| (key.clone(), t.clone())));
    }
    let groups = group::<R>(pairs, targets, related)?;
    if let (Some(cache), Some(generation)) = (cache, generation) {
        cache.store::<R>(
            generation,
            keys.into_iter().map(|key| {
                let targets = Targets::from_slice(groups.get(&key));
                (key, targets)
            }),
        );
    }
    Ok(groups)
}

/// Rows decoded by one edge load: distinct targets, and (parent key, target index) links.
struct Fresh<K, T> {
    targets: Vec<Arc<T>>,
    links: Vec<(K, usize)>,
}

impl<K, T> Default for Fresh<K, T> {
    fn default() -> Self {
        Fresh {
            targets: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// Decodes an edge's rows into `fresh`; with `keep`, also returns the rows (for the
/// shared cache) keyed by target primary key.
fn decode_rows<R: Relation>(
    rows: Vec<tokio_postgres::Row>,
    fresh: &mut Fresh<R::Key, R::Target>,
    keep: bool,
) -> Result<Vec<(<R::Target as Model>::Key, CachedRow)>> {
    let target_name = <R::Target as Model>::META.name;
    let mut kept = Vec::new();
    if R::META.kind == RelationKind::ManyToMany {
        // Each link row repeats its target: decode a target once, share it.
        let arity = R::Key::ARITY;
        let target_arity = <<R::Target as Model>::Key as Key>::ARITY;
        let mut seen: KeyMap<<R::Target as Model>::Key, usize> = key_map(rows.len());
        for row in &rows {
            let key = R::Key::decode(row, 0, target_name)?;
            let target_key = <R::Target as Model>::Key::decode(row, arity, target_name)?;
            let index = match seen.get(&target_key) {
                Some(&i) => i,
                None => {
                    let t = Arc::new(R::Target::decode(row, arity + target_arity)?);
                    fresh.targets.push(t);
                    seen.insert(target_key, fresh.targets.len() - 1);
                    fresh.targets.len() - 1
                }
            };
            fresh.links.push((key, index));
        }
        return Ok(kept);
    }
    fresh.targets.reserve(rows.len());
    fresh.links.reserve(rows.len());
    for row in rows {
        let target = Arc::new(R::Target::decode(&row, 0)?);
        if let Some(key) = R::target_key(&target) {
            fresh.links.push((key, fresh.targets.len()));
        }
        if keep {
            kept.push((target.key(), CachedRow::new(Arc::new(row), 0)));
        }
        fresh.targets.push(target);
    }
    Ok(kept)
}

/// The shared row cache, when `R` is a plain belongs-to edge to the primary key of a
/// model the `Db` caches.
fn shared_target_cache<'s, R: Relation>(
    scope: &'s Scope,
    related: &Related<R::Target>,
) -> Option<&'s SharedCache> {
    let plain_fk = R::META.kind == RelationKind::BelongsTo
        && R::META.target_fields.is_empty()
        && related.is_default();
    let shared = scope
        .shared
        .as_deref()
        .filter(|_| plain_fk && !scope.in_transaction)?;
    shared.caches::<R::Target>().then_some(shared)
}

/// Takes the targets of `keys` found in the shared cache into `fresh`; returns the
/// keys still to load, and the generation to store their rows under.
async fn from_shared_cache<R: Relation>(
    shared: &SharedCache,
    keys: Vec<R::Key>,
    fresh: &mut Fresh<R::Key, R::Target>,
) -> Result<(Vec<R::Key>, Generation)> {
    // The edge's key is the target's primary key (a plain belongs-to edge).
    let target_keys: Vec<<R::Target as Model>::Key> = keys
        .iter()
        .filter_map(|key| {
            (key as &dyn Any)
                .downcast_ref::<<R::Target as Model>::Key>()
                .cloned()
        })
        .collect();
    let found = shared.lookup::<R::Target>(&target_keys).await;
    if target_keys.len() != keys.len() {
        return Ok((keys, found.generation));
    }
    let mut missing = Vec::with_capacity(keys.len());
    for (key, cached) in keys.into_iter().zip(found.rows) {
        match cached {
            Some(cached) => {
                let target = Arc::new(cached.decode::<R::Target>()?);
                fresh.links.push((key, fresh.targets.len()));
                fresh.targets.push(target);
            }
            None => missing.push(key),
        }
    }
    Ok((missing, found.generation))
}

/// Groups an edge's `(parent key, target)` pairs, each parent's targets in the edge's
/// order: the statement's when customised, else primary-key order applied here.
/// Every strategy that loads an edge groups through this, and attaches the result
/// with [`attach`](crate::relation::stitch::attach).
///
/// A to-one edge that matched several rows for one key is refused
/// ([`Error::AmbiguousToOne`]) unless its ordering or limit picks the first.
pub(crate) fn group<R: Relation>(
    pairs: Vec<(R::Key, Arc<R::Target>)>,
    targets: Vec<Arc<R::Target>>,
    related: &Related<R::Target>,
) -> Result<Groups<R::Key, R::Target>> {
    let mut groups = Groups::new(pairs, targets);
    if sorted_in_memory(R::META.kind, related) {
        groups.for_each_group(sort_by_key);
    }
    if counts_matches(R::META, related) {
        if let Some((key, range)) = groups.index.iter().find(|(_, r)| r.len() > 1) {
            return Err(ambiguous::<R>(key, range.len()));
        }
    }
    Ok(groups)
}

/// Whether a to-one edge could match several rows per key and names no ordering or
/// limit to pick one: its loads then check that each key matched at most one row.
/// (A `belongs_to` on the target's primary key matches at most one by construction.)
pub(crate) fn counts_matches<T>(rel: &RelationMeta, related: &Related<T>) -> bool {
    let to_primary_key = rel.kind == RelationKind::BelongsTo && rel.target_fields.is_empty();
    rel.kind.is_to_one()
        && !to_primary_key
        && related.order.is_empty()
        && related.limit_per_parent.is_none()
}

/// The error of a to-one edge that matched `count` rows for `key`.
pub(crate) fn ambiguous<R: Relation>(key: &R::Key, count: usize) -> Error {
    Error::AmbiguousToOne {
        model: <R::Source as Model>::META.name,
        relation: R::META.name,
        key: format!("{key:?}"),
        count,
    }
}

/// Whether a to-many edge's targets are put in the default order (primary key) in
/// memory, rather than ordered by the statement.
pub(crate) fn sorted_in_memory<T>(kind: RelationKind, related: &Related<T>) -> bool {
    !kind.is_to_one() && related.order.is_empty() && related.limit_per_parent.is_none()
}

/// Orders one parent's targets by primary key (the default order), unless they
/// arrived in order already.
pub(crate) fn sort_by_key<T: Model>(group: &mut [Arc<T>]) {
    if group.len() > 1 && !group.is_sorted_by(|a, b| a.key() <= b.key()) {
        group.sort_by_key(|t| t.key());
    }
}

/// Rows of `M` fetched by primary key, indexed by key.
pub struct Keyed<M: Model> {
    rows: Vec<Arc<tokio_postgres::Row>>,
    index: KeyMap<M::Key, usize>,
}

impl<M: Model> Keyed<M> {
    /// Decodes the row with primary key `key`, if it was found.
    pub fn decode(&self, key: &M::Key) -> Result<Option<M>> {
        match self.index.get(key) {
            Some(&i) => M::decode(&self.rows[i], <M::Key as Key>::ARITY).map(Some),
            None => Ok(None),
        }
    }

    /// The row of `key`, for the shared cache.
    pub(crate) fn cached_row(&self, key: &M::Key) -> Option<CachedRow> {
        let &i = self.index.get(key)?;
        Some(CachedRow::new(self.rows[i].clone(), <M::Key as Key>::ARITY))
    }
}

/// Loads the rows of `M` with the given primary keys in one query (keys de-duplicated
/// here; an empty set costs no query).
pub async fn load_by_keys<M: Model>(
    ex: &dyn DynExecutor,
    keys: impl IntoIterator<Item = M::Key>,
) -> Result<Keyed<M>> {
    let keys = dedup_keys(keys);
    if keys.is_empty() {
        return Ok(Keyed {
            rows: Vec::new(),
            index: KeyMap::default(),
        });
    }
    let (text, params) = model_keys_statement::<M>(&keys)?;
    let rows = ex.query_read_dyn(&text, &as_sql_refs(&params)).await?;
    let mut index = key_map(rows.len());
    for (i, row) in rows.iter().enumerate() {
        index.insert(M::Key::decode(row, 0, M::META.name)?, i);
    }
    let rows = rows.into_iter().map(Arc::new).collect();
    Ok(Keyed { rows, index })
}
