//! Huge key sets: a million parent instances still cost one query per relation edge,
//! keys travel as one array parameter (never a parameter per key, so there is no
//! 65,535 limit), and memory follows the result and the distinct keys, not the
//! number of parents.
//!
//! One test per binary, run alone: it reads the process's peak RSS (`VmHWM`, reset
//! through `/proc/self/clear_refs`), which concurrent tests would disturb.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use matrx_orm::prelude::*;

#[derive(Model, Debug)]
#[orm(table = "groups")]
pub struct Group {
    #[orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[orm(has_many(foreign_key = "group_id"))]
    pub leaves: Many<Leaf>,
}

#[derive(Model, Debug)]
#[orm(table = "leaves")]
pub struct Leaf {
    #[orm(primary_key)]
    pub id: i64,
    pub group_id: i64,
    #[orm(belongs_to(key = "group_id"))]
    pub group: One<Group>,
}

const PARENTS: i64 = 1_000_000;

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Resets the peak RSS to the current RSS; false where the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs `f` and returns its output with the peak RSS growth (MiB) while it ran, if
/// the peak can be measured.
async fn peak_growth<F: std::future::Future>(f: F) -> (F::Output, Option<f64>) {
    let measurable = reset_peak();
    let before = status_kb("VmRSS");
    let out = f.await;
    let after = status_kb("VmHWM");
    let growth = match (measurable, before, after) {
        (true, Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / 1024.0),
        _ => None,
    };
    (out, growth)
}

#[tokio::test]
async fn a_million_parents_cost_one_query_per_edge_and_bounded_memory() {
    let tdb = common::test_db("huge_keys").await;
    matrx_orm::ddl::create_tables(&*tdb, &[Group::META, Leaf::META])
        .await
        .unwrap();
    tdb.batch_execute(
        "INSERT INTO groups SELECT g, 'g' || g FROM generate_series(1, 10) g; \
         INSERT INTO leaves SELECT g, (g % 10) + 1 FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let db = &tdb.db;

    // 1. A million parents (in memory, never inserted) pointing at ten targets.
    let leaves: Vec<Leaf> = (0..PARENTS)
        .map(|i| Leaf {
            id: i,
            group_id: i % 10 + 1,
            group: One::default(),
        })
        .collect();
    let started = Instant::now();
    let before = db.query_count();
    let (result, growth) = peak_growth(matrx_orm::prefetch_related(db, &leaves, Leaf::GROUP)).await;
    result.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(db.query_count() - before, 1, "one query for the edge");
    let mut distinct = HashSet::new();
    for l in &leaves {
        let g = l.group.state().unwrap().unwrap();
        assert_eq!(g.id, l.group_id);
        distinct.insert(Arc::as_ptr(g) as usize);
    }
    assert_eq!(
        distinct.len(),
        10,
        "ten targets, each one Arc shared by its parents"
    );
    eprintln!(
        "1,000,000 parents -> 10 targets: {elapsed:?}, peak RSS growth {growth:?} MiB \
         (the parents themselves: {} MiB)",
        std::mem::size_of::<Leaf>() * PARENTS as usize / (1 << 20)
    );
    if let Some(mib) = growth {
        // References to the parents and their keys (24 bytes a parent), not a
        // parameter per key nor a copy of the parents.
        assert!(mib < 64.0, "peak RSS grew by {mib:.1} MiB");
    }
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    drop(leaves);

    // 2. A million distinct parent keys, few of which exist: still one statement, one
    //    array parameter of a million keys (past any bind-parameter limit).
    let groups: Vec<Group> = (1..=PARENTS)
        .map(|id| Group {
            id,
            name: String::new(),
            leaves: Many::default(),
        })
        .collect();
    let started = Instant::now();
    let before = db.query_count();
    let (result, growth) =
        peak_growth(matrx_orm::prefetch_related(db, &groups, Group::LEAVES)).await;
    result.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(db.query_count() - before, 1, "one query for a million keys");
    let mut attached = 0;
    for g in &groups {
        let leaves = g.leaves.get().expect("every parent is loaded");
        assert!(leaves.iter().all(|l| l.group_id == g.id));
        attached += leaves.len();
        if g.id > 10 {
            assert!(leaves.is_empty());
        }
    }
    assert_eq!(attached, 100);
    eprintln!(
        "1,000,000 distinct keys -> 100 targets: {elapsed:?}, peak RSS growth {growth:?} MiB"
    );
    if let Some(mib) = growth {
        // The distinct keys, their de-duplication set and one encoded array (about
        // 60 bytes a key), nothing per row of a parameter list.
        assert!(mib < 256.0, "peak RSS grew by {mib:.1} MiB");
    }
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}
