//! The one place that attaches loaded targets to their parents.

use crate::relation::batch::Groups;
use crate::relation::{Relation, Slot};

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
            Some(key) => groups.get(&key).to_vec(),
            None => Vec::new(),
        };
        slot.fill(<R::Slot as Slot<R::Target>>::value_from(targets));
    }
}
