//! The batch primitive: load relation `R` for a set of parent keys in one query and
//! return the target rows grouped by parent key. Lazy fetch calls it with one key,
//! prefetch once per edge, the request-scoped loader once per batch.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use crate::error::Result;
use crate::executor::DynExecutor;
use crate::key::Key;
use crate::model::Model;
use crate::relation::sql::{edge_statement, keys_statement};
use crate::relation::{Related, Relation, RelationKind};
use crate::value::as_sql_refs;

/// Target rows of one edge, grouped by the parent key they belong to.
///
/// Rows are kept in one vector sorted by parent key (a stable sort, so each parent's
/// rows keep their order), with an index from key to its run: one hash entry per
/// parent, not per row.
pub struct Groups<K, T> {
    /// Every (parent key, target) pair, sorted by parent key.
    rows: Vec<Arc<T>>,
    /// Parent key -> the range of `rows` holding its targets.
    index: HashMap<K, Range<usize>>,
    /// Every distinct target row, each held once.
    targets: Vec<Arc<T>>,
}

impl<K, T> Default for Groups<K, T> {
    fn default() -> Self {
        Groups {
            rows: Vec::new(),
            index: HashMap::new(),
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
        let mut index = HashMap::new();
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

/// Removes duplicates, keeping first occurrences in order.
pub(crate) fn dedup_keys<K: Key>(keys: impl IntoIterator<Item = K>) -> Vec<K> {
    let mut seen = HashSet::new();
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// Loads `R` for `keys` (de-duplicated here; an empty set costs no query).
pub async fn load_edge<R: Relation>(
    ex: &dyn DynExecutor,
    keys: impl IntoIterator<Item = R::Key>,
    related: &Related<R::Target>,
) -> Result<Groups<R::Key, R::Target>> {
    let keys = dedup_keys(keys);
    if keys.is_empty() {
        return Ok(Groups::default());
    }
    let sql = edge_statement(
        <R::Source as Model>::META,
        R::META,
        R::Key::array_params(&keys),
        &R::Key::column_types(),
        related,
    )?;
    let rows = ex.query_dyn(&sql.text, &as_sql_refs(&sql.params)).await?;
    let target_name = <R::Target as Model>::META.name;
    let mut pairs = Vec::with_capacity(rows.len());
    let mut targets = Vec::new();
    if R::META.kind == RelationKind::ManyToMany {
        // Each link row repeats its target: decode a target once, share it.
        let arity = R::Key::ARITY;
        let target_arity = <<R::Target as Model>::Key as Key>::ARITY;
        let mut seen: HashMap<<R::Target as Model>::Key, Arc<R::Target>> = HashMap::new();
        for row in &rows {
            let key = R::Key::decode(row, 0, target_name)?;
            let target_key = <R::Target as Model>::Key::decode(row, arity, target_name)?;
            let target = match seen.get(&target_key) {
                Some(t) => t.clone(),
                None => {
                    let t = Arc::new(R::Target::decode(row, arity + target_arity)?);
                    targets.push(t.clone());
                    seen.insert(target_key, t.clone());
                    t
                }
            };
            pairs.push((key, target));
        }
    } else {
        targets.reserve(rows.len());
        for row in &rows {
            let target = Arc::new(R::Target::decode(row, 0)?);
            if let Some(key) = R::target_key(&target) {
                pairs.push((key, target.clone()));
            }
            targets.push(target);
        }
    }
    drop(rows);
    let mut groups = Groups::new(pairs, targets);
    if related.order.is_empty() && related.limit_per_parent.is_none() && !R::META.kind.is_to_one() {
        groups.for_each_group(sort_by_key);
    }
    Ok(groups)
}

/// Orders one parent's targets by primary key (the default order), unless they
/// arrived in order already.
fn sort_by_key<T: Model>(group: &mut [Arc<T>]) {
    if group.len() > 1 && !group.is_sorted_by(|a, b| a.key() <= b.key()) {
        group.sort_by_key(|t| t.key());
    }
}

/// Rows of `M` fetched by primary key, indexed by key.
pub struct Keyed<M: Model> {
    rows: Vec<tokio_postgres::Row>,
    index: HashMap<M::Key, usize>,
}

impl<M: Model> Keyed<M> {
    /// Decodes the row with primary key `key`, if it was found.
    pub fn decode(&self, key: &M::Key) -> Result<Option<M>> {
        match self.index.get(key) {
            Some(&i) => M::decode(&self.rows[i], <M::Key as Key>::ARITY).map(Some),
            None => Ok(None),
        }
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
            index: HashMap::new(),
        });
    }
    let sql = keys_statement(
        M::META,
        M::Key::array_params(&keys),
        &M::Key::column_types(),
    )?;
    let rows = ex.query_dyn(&sql.text, &as_sql_refs(&sql.params)).await?;
    let mut index = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        index.insert(M::Key::decode(row, 0, M::META.name)?, i);
    }
    Ok(Keyed { rows, index })
}
