//! What a loading strategy implements: the types shared by the strategies,
//! the registry and the runner.
//!
//! A strategy is a [`StrategyDef`]: a name plus, per workload, an optional
//! [`SetupFn`].  The setup function connects and prepares (not timed) and
//! returns a [`Loader`]; each [`Loader::load`] call is one timed load of the
//! workload's object graph and returns it as a [`LoadedGraph`], whose
//! checksums the runner computes afterwards, outside the timing.
//!
//! This module knows no strategy: the strategies import it, and the list of
//! them is assembled in `registry.rs`.  To add a strategy, write a module with
//! one setup function per workload it applies to and add its `StrategyDef` to
//! `registry()` there:
//!
//! ```ignore
//! pub const STRATEGY: StrategyDef = StrategyDef {
//!     name: "prefetch",
//!     w1: Some(setup_w1), w2: Some(setup_w2), w3: Some(setup_w3), w4: None, w5: None,
//! };
//!
//! fn setup_w1(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
//!     Box::pin(async move { Ok(Box::new(MyLoader::connect(ctx).await?) as Box<dyn Loader>) })
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use futures_util::future::BoxFuture;

use crate::checksum::Checksums;
use crate::error::Result;
use crate::workload::{Workload, WorkloadParams};

/// What a strategy's setup gets: where the data is and the workload sizes.
#[derive(Debug, Clone)]
pub struct BenchContext {
    /// The server's connection string (see [`crate::db::database_url`]).
    pub database_url: String,
    /// The schema holding the dataset (`matrx_bench` or `matrx_bench_tiny`).
    pub schema: String,
    /// Workload sizes at the current scale (W1 order count, W4/W5 tasks).
    pub params: WorkloadParams,
    /// A PgBouncer in transaction pooling mode in front of the server, its server
    /// connections on the schema (`--pgbouncer`): the strategies connect there.
    pub pooler_url: Option<String>,
}

/// The environment variable the runner passes the PgBouncer's URL to children in.
pub const POOLER_URL_VAR: &str = "MATRX_BENCH_POOLER_URL";

/// An object graph loaded by one [`Loader::load`] call.
pub trait LoadedGraph: Send {
    /// The workload's checksums, computed by walking the loaded objects
    /// (never by asking the database); keys as in
    /// [`Workload::checksum_keys`].
    fn checksums(&self) -> Checksums;
}

/// A prepared strategy for one workload: connections are open, statements
/// may be prepared; every [`load`](Loader::load) is one timed run.
pub trait Loader: Send {
    /// Loads the workload's whole object graph once.
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>>;

    /// The number of queries this loader has sent so far, if it counts them
    /// (used when pg_stat_statements is not available on the server).
    fn client_query_count(&self) -> Option<u64> {
        None
    }
}

/// Connects and prepares a [`Loader`] for one workload (not timed).
pub type SetupFn = for<'a> fn(&'a BenchContext) -> BoxFuture<'a, Result<Box<dyn Loader>>>;

/// A named strategy with a setup function for each workload it applies to
/// (`None`: the strategy does not apply and is left out of the output).
#[derive(Clone, Copy)]
pub struct StrategyDef {
    /// The name used with `--strategy` and printed in the output.
    pub name: &'static str,
    /// Setup for W1, if the strategy applies to it.
    pub w1: Option<SetupFn>,
    /// Setup for W2, if the strategy applies to it.
    pub w2: Option<SetupFn>,
    /// Setup for W3, if the strategy applies to it.
    pub w3: Option<SetupFn>,
    /// Setup for W4, if the strategy applies to it.
    pub w4: Option<SetupFn>,
    /// Setup for W5, if the strategy applies to it.
    pub w5: Option<SetupFn>,
}

impl StrategyDef {
    /// The setup function for `workload`, if the strategy applies to it.
    pub fn setup_for(&self, workload: Workload) -> Option<SetupFn> {
        match workload {
            Workload::W1 => self.w1,
            Workload::W2 => self.w2,
            Workload::W3 => self.w3,
            Workload::W4 => self.w4,
            Workload::W5 => self.w5,
        }
    }
}

impl std::fmt::Debug for StrategyDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let applies: Vec<&str> = Workload::ALL
            .into_iter()
            .filter(|&w| self.setup_for(w).is_some())
            .map(Workload::name)
            .collect();
        f.debug_struct("StrategyDef")
            .field("name", &self.name)
            .field("workloads", &applies)
            .finish()
    }
}

/// The name of the hand-written baseline, which every ratio refers to.
pub const BASELINE: &str = "handwritten";

/// A cheap, cloneable query counter for strategies that count their own
/// queries (increment once per statement sent).
#[derive(Debug, Clone, Default)]
pub struct QueryCounter(Arc<AtomicU64>);

impl QueryCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one query.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of queries counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_counts() {
        let c = QueryCounter::new();
        let c2 = c.clone();
        c.incr();
        c2.incr();
        assert_eq!(c.get(), 2);
    }
}
