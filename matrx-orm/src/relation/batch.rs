//! The batch primitive: load relation `R` for a set of parent keys in one query and
//! return the target rows grouped by parent key. Lazy fetch calls it with one key,
//! prefetch once per edge, the request-scoped loader once per batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::Result;
use crate::executor::DynExecutor;
use crate::key::Key;
use crate::model::Model;
use crate::relation::{sql::edge_statement, Related, Relation, RelationKind};
use crate::value::as_sql_refs;

/// Target rows of one edge, grouped by the parent key they belong to.
pub struct Groups<K, T> {
    /// Parent key -> its targets, in the edge's order.
    pub(crate) by_key: HashMap<K, Vec<Arc<T>>>,
    /// Every distinct target row, each held once.
    pub(crate) targets: Vec<Arc<T>>,
}

impl<K, T> Default for Groups<K, T> {
    fn default() -> Self {
        Groups {
            by_key: HashMap::new(),
            targets: Vec::new(),
        }
    }
}

impl<K: Key, T> Groups<K, T> {
    /// The targets of one parent key (empty if it has none).
    pub fn get(&self, key: &K) -> &[Arc<T>] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// Every distinct target row.
    pub fn targets(&self) -> &[Arc<T>] {
        &self.targets
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
    let mut groups = Groups::default();
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
                    groups.targets.push(t.clone());
                    seen.insert(target_key, t.clone());
                    t
                }
            };
            groups
                .by_key
                .entry(key)
                .or_insert_with(Vec::new)
                .push(target);
        }
    } else {
        groups.targets.reserve(rows.len());
        for row in &rows {
            let target = Arc::new(R::Target::decode(row, 0)?);
            if let Some(key) = R::target_key(&target) {
                groups
                    .by_key
                    .entry(key)
                    .or_insert_with(Vec::new)
                    .push(target.clone());
            }
            groups.targets.push(target);
        }
    }
    Ok(groups)
}
