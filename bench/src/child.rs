//! The measuring child process: one (workload, strategy) pair per process,
//! so that its peak RSS belongs to that strategy alone.
//!
//! Sequence: connect and set up (not timed), one warm-up run, one counted
//! run (query count), then N timed runs.  Every run's graph is checked
//! against the expected checksums after its timing stopped.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::checksum::{self, Checksums};
use crate::error::{BenchError, Result};
use crate::registry;
use crate::strategy::{BenchContext, LoadedGraph, Loader};
use crate::workload::{Scale, Workload};
use crate::{db, sysinfo};

/// `query_count_source` when pg_stat_statements counted the queries.
pub const SOURCE_PG_STAT_STATEMENTS: &str = "pg_stat_statements";
/// `query_count_source` when the strategy counted its own queries.
pub const SOURCE_CLIENT_COUNTER: &str = "client_counter";
/// `query_count_source` when neither was available (`queries` is null).
pub const SOURCE_UNAVAILABLE: &str = "unavailable";

/// What a child prints on its last stdout line, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChildReport {
    /// `"W1"` .. `"W5"`.
    pub workload: String,
    /// Strategy name.
    pub strategy: String,
    /// Median wall time of the timed runs, in milliseconds.
    pub wall_ms_median: f64,
    /// Fastest timed run, in milliseconds.
    pub wall_ms_min: f64,
    /// Queries of one run.
    pub queries: Option<u64>,
    /// Where `queries` comes from (see the `SOURCE_*` constants).
    pub query_count_source: String,
    /// The server's execution time per timed run, in milliseconds: the sum of
    /// `total_exec_time` in pg_stat_statements over the timed runs, divided by
    /// their number (planning, parsing and the wire are not in it). `None` when the
    /// server does not preload pg_stat_statements.
    #[serde(default)]
    pub server_ms: Option<f64>,
    /// Peak resident set size of the child (VmHWM), in kB.
    pub peak_rss_kb: Option<u64>,
    /// Whether every run's walked checksums equalled the expected ones.
    pub checksum_ok: bool,
    /// The mismatches of the first failing run (`"key: expected x, got y"`).
    pub mismatches: Vec<String>,
}

/// Runs the measurement of `workload` × `strategy_name` in this process.
pub async fn run_child(
    workload: Workload,
    strategy_name: &str,
    runs: usize,
    scale: Scale,
    orders: Option<i64>,
) -> Result<ChildReport> {
    let strategy = registry::find(strategy_name)
        .ok_or_else(|| BenchError::other(format!("unknown strategy {strategy_name:?}")))?;
    let setup = strategy.setup_for(workload).ok_or_else(|| {
        BenchError::other(format!(
            "strategy {strategy_name} does not apply to {workload}"
        ))
    })?;
    let mut params = scale.workload_params();
    if let Some(orders) = orders {
        params.w1_orders = orders;
    }
    let ctx = BenchContext {
        database_url: db::database_url().await?,
        schema: scale.schema().to_string(),
        params,
        pooler_url: std::env::var(crate::strategy::POOLER_URL_VAR).ok(),
    };

    let admin = db::connect(&ctx.database_url).await?;
    let published = scale == Scale::Full && orders.is_none();
    let expected = expected_checksums(&admin, &ctx, published, workload).await?;
    let pgss = pg_stat_statements_available(&admin).await;

    let mut loader = setup(&ctx).await?;
    let mut checker = Checker::new(expected);

    // Warm-up.
    checker.check(&*loader.load().await?);

    // One counted run.
    let client_before = loader.client_query_count();
    if pgss {
        admin
            .execute("SELECT pg_stat_statements_reset()", &[])
            .await?;
    }
    checker.check(&*loader.load().await?);
    let (queries, query_count_source) = if pgss {
        (
            Some(pg_stat_statements_totals(&admin).await?.0),
            SOURCE_PG_STAT_STATEMENTS,
        )
    } else {
        match (client_before, loader.client_query_count()) {
            (Some(before), Some(after)) => (Some(after - before), SOURCE_CLIENT_COUNTER),
            _ => (None, SOURCE_UNAVAILABLE),
        }
    };

    if pgss {
        admin
            .execute("SELECT pg_stat_statements_reset()", &[])
            .await?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(timed_run(&mut *loader, &mut checker).await?);
    }
    drop(loader);
    let server_ms = match (pgss, runs) {
        (true, 1..) => Some(round_ms(
            pg_stat_statements_totals(&admin).await?.1 / runs as f64,
        )),
        _ => None,
    };

    let (median, min) = median_and_min(&mut times);
    Ok(ChildReport {
        workload: workload.name().to_string(),
        strategy: strategy_name.to_string(),
        wall_ms_median: round_ms(median),
        wall_ms_min: round_ms(min),
        queries,
        query_count_source: query_count_source.to_string(),
        server_ms,
        peak_rss_kb: sysinfo::peak_rss_kb(),
        checksum_ok: checker.first_failure.is_none(),
        mismatches: checker.first_failure.unwrap_or_default(),
    })
}

/// One timed load; the graph's checksum walk and drop happen after the
/// clock stopped.
async fn timed_run(loader: &mut dyn Loader, checker: &mut Checker) -> Result<Duration> {
    let started = Instant::now();
    let graph = loader.load().await?;
    let elapsed = started.elapsed();
    checker.check(&*graph);
    drop(graph);
    Ok(elapsed)
}

/// Compares every run's walked checksums with the expected ones and keeps
/// the mismatches of the first failing run.
struct Checker {
    expected: Checksums,
    first_failure: Option<Vec<String>>,
}

impl Checker {
    fn new(expected: Checksums) -> Self {
        Checker {
            expected,
            first_failure: None,
        }
    }

    fn check(&mut self, graph: &dyn LoadedGraph) {
        let mismatches = checksum::compare(&self.expected, &graph.checksums());
        if !mismatches.is_empty() && self.first_failure.is_none() {
            self.first_failure = Some(mismatches.iter().map(ToString::to_string).collect());
        }
    }
}

/// The checksums a correct load of `workload` must produce: the published
/// values (full scale, the workloads' own parameters), else the database's own
/// computation.
async fn expected_checksums(
    admin: &Client,
    ctx: &BenchContext,
    published: bool,
    workload: Workload,
) -> Result<Checksums> {
    let all = if published {
        checksum::expected_full()
    } else {
        checksum::checksums_from_db(admin, &ctx.schema, &ctx.params).await?
    };
    all.get(&workload)
        .cloned()
        .ok_or_else(|| BenchError::other(format!("no expected checksums for {workload}")))
}

/// Whether the server preloads pg_stat_statements; if so, makes sure the
/// extension exists in this database.  Any failure means "not available".
async fn pg_stat_statements_available(admin: &Client) -> bool {
    let preloaded = match admin.query_one("SHOW shared_preload_libraries", &[]).await {
        Ok(row) => row
            .try_get::<_, String>(0)
            .map(|libs| libs.contains("pg_stat_statements"))
            .unwrap_or(false),
        Err(_) => false,
    };
    if !preloaded {
        return false;
    }
    match admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
    {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "matrx-orm-bench: pg_stat_statements is preloaded but the extension \
                 cannot be created ({}); using the client counter",
                BenchError::from(e)
            );
            false
        }
    }
}

/// Σ calls and Σ total_exec_time (ms) in pg_stat_statements for this database,
/// excluding statements that mention pg_stat_statements (the reset and this query).
async fn pg_stat_statements_totals(admin: &Client) -> Result<(u64, f64)> {
    let row = admin
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(total_exec_time), 0)::float8 \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT ILIKE '%pg_stat_statements%'",
            &[],
        )
        .await?;
    let (calls, ms): (i64, f64) = (row.try_get(0)?, row.try_get(1)?);
    Ok((calls.max(0) as u64, ms.max(0.0)))
}

/// Median (mean of the middle two for an even count) and minimum, in ms.
fn median_and_min(times: &mut [Duration]) -> (f64, f64) {
    if times.is_empty() {
        return (0.0, 0.0);
    }
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = times.len();
    let median = if n % 2 == 1 {
        ms(times[n / 2])
    } else {
        (ms(times[n / 2 - 1]) + ms(times[n / 2])) / 2.0
    };
    (median, ms(times[0]))
}

/// Rounds to microsecond precision.
fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median() {
        let ms = Duration::from_millis;
        assert_eq!(median_and_min(&mut [ms(5), ms(1), ms(3)]), (3.0, 1.0));
        assert_eq!(
            median_and_min(&mut [ms(4), ms(1), ms(2), ms(3)]),
            (2.5, 1.0)
        );
        assert_eq!(median_and_min(&mut []), (0.0, 0.0));
    }

    #[test]
    fn report_roundtrips_as_json() {
        let r = ChildReport {
            workload: "W1".into(),
            strategy: "handwritten".into(),
            wall_ms_median: 1.5,
            wall_ms_min: 1.25,
            queries: Some(5),
            query_count_source: SOURCE_CLIENT_COUNTER.into(),
            server_ms: Some(0.5),
            peak_rss_kb: Some(1000),
            checksum_ok: true,
            mismatches: vec![],
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ChildReport>(&line).unwrap(), r);
    }
}
