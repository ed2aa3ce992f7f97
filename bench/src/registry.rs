//! The strategy registry: the list of every strategy the runner picks from,
//! and lookup by name.
//!
//! This is the one module that knows the strategies.  The imports point one
//! way: the strategy modules (`handwritten`, `orm::*`) implement the shared
//! types of [`crate::strategy`], this module lists them, and the CLI, the
//! runner and the child look strategies up here.  To add a strategy, write
//! its module (see [`crate::strategy`]) and add its `StrategyDef` to
//! [`registry`].

use crate::handwritten;
use crate::orm::{dataloader, joined, lazy, prefetch};
use crate::strategy::StrategyDef;

/// The ORM strategies planned for this bench.  `--strategy` accepts these
/// names even before they are registered; an unregistered one is left out of
/// the output (with a notice), never faked.
pub const PLANNED: [&str; 6] = [
    "lazy_serial",
    "lazy_concurrent",
    "prefetch",
    "select_related",
    "balanced",
    "dataloader",
];

/// Every registered strategy; the baseline comes first.
///
/// Add new strategies here.
pub fn registry() -> Vec<StrategyDef> {
    vec![
        handwritten::STRATEGY,
        lazy::SERIAL,
        lazy::CONCURRENT,
        prefetch::STRATEGY,
        dataloader::STRATEGY,
        joined::SELECT_RELATED,
        joined::BALANCED,
        joined::SELECT_RELATED_AGGREGATES,
        joined::SELECT_RELATED_UNION_TO_ONE_JOINED,
        joined::SELECT_RELATED_UNION_TO_ONE_BRANCHED,
    ]
}

/// Finds a registered strategy by name.
pub fn find(name: &str) -> Option<StrategyDef> {
    registry().into_iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::BASELINE;
    use crate::workload::Workload;

    #[test]
    fn registry_has_baseline_first_and_unique_names() {
        let r = registry();
        assert_eq!(r[0].name, BASELINE);
        for w in Workload::ALL {
            assert!(r[0].setup_for(w).is_some(), "baseline must cover {w}");
        }
        let mut names: Vec<&str> = r.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), r.len());
        assert!(find("handwritten").is_some());
        assert!(find("nope").is_none());
    }
}
