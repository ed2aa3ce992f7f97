//! The one place that attaches loaded targets to their parents.

use std::sync::Arc;

use crate::base::hash::key_set;
use crate::relation::batch::Groups;
use crate::schema::model::Relation;
use crate::schema::slot::Slot;

/// Fills `R`'s slot on every parent not loaded yet: its key's targets, or empty /
/// NULL when its key is NULL or has no targets. Already-loaded slots are left alone.
pub(crate) fn attach<'p, R: Relation>(
    parents: impl IntoIterator<Item = &'p R::Source>,
    groups: &Groups<R::Key, R::Target>,
) {
    for parent in parents {
        let slot = R::slot(parent);
        if slot.is_loaded() {
            continue;
        }
        let targets = match R::source_key(parent) {
            Some(key) => groups.get(&key),
            None => &[],
        };
        slot.fill(<R::Slot as Slot<R::Target>>::value_from_slice(targets));
    }
}

/// The distinct targets attached to `parents` by `R`, loaded now or before (a row
/// shared by several parents counts once): where nested edges load next.
pub(crate) fn attached<'p, R: Relation>(
    parents: impl IntoIterator<Item = &'p R::Source>,
) -> Vec<Arc<R::Target>> {
    let mut targets = Vec::new();
    for parent in parents {
        R::slot(parent).loaded_targets(&mut targets);
    }
    let mut seen = key_set(targets.len());
    targets.retain(|t| seen.insert(Arc::as_ptr(t) as usize));
    targets
}
