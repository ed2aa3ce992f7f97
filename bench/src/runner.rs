//! The parent process: prepares the dataset, runs each (workload, strategy)
//! pair in its own child process and prints the results.

use std::io::Write as _;
use std::process::{Command as Process, Stdio};

use serde::Serialize;

use crate::checksum;
use crate::child::ChildReport;
use crate::cli::RunArgs;
use crate::dataset;
use crate::error::{BenchError, Result};
use crate::registry;
use crate::strategy::BASELINE;
use crate::workload::{Scale, Workload};
use crate::{db, sysinfo};

/// One output row; with `--json` it is printed as one JSON object per line
/// with exactly these keys.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultRow {
    /// `"W1"` .. `"W5"`.
    pub workload: String,
    /// Strategy name.
    pub strategy: String,
    /// Median wall time of the timed runs, ms.
    pub wall_ms_median: f64,
    /// Fastest timed run, ms.
    pub wall_ms_min: f64,
    /// Queries of one run (null when not countable).
    pub queries: Option<u64>,
    /// `wall_ms_median / handwritten's wall_ms_median` for the same workload.
    pub ratio_vs_handwritten: Option<f64>,
    /// Peak RSS of the strategy's child process, kB.
    pub peak_rss_kb: Option<u64>,
    /// Whether the walked graph matched the expected checksums in every run.
    pub checksum_ok: bool,
    /// `"pg_stat_statements"` or `"client_counter"` (or `"unavailable"`).
    pub query_count_source: String,
    /// The server's execution time per timed run, ms (pg_stat_statements'
    /// `total_exec_time`; null when the server does not preload it).
    pub server_ms: Option<f64>,
}

impl ResultRow {
    fn from_report(r: ChildReport, baseline_median: Option<f64>) -> Self {
        let ratio = baseline_median
            .filter(|&b| b > 0.0)
            .map(|b| (r.wall_ms_median / b * 1000.0).round() / 1000.0);
        ResultRow {
            workload: r.workload,
            strategy: r.strategy,
            wall_ms_median: r.wall_ms_median,
            wall_ms_min: r.wall_ms_min,
            queries: r.queries,
            ratio_vs_handwritten: ratio,
            peak_rss_kb: r.peak_rss_kb,
            checksum_ok: r.checksum_ok,
            query_count_source: r.query_count_source,
            server_ms: r.server_ms,
        }
    }
}

/// The (workload, strategies) plan: per workload the baseline first, then
/// every other selected strategy that applies to it.
pub fn plan(args: &RunArgs) -> Vec<(Workload, Vec<&'static str>)> {
    let registered = registry::registry();
    args.workloads
        .iter()
        .map(|&w| {
            let mut names = vec![BASELINE];
            names.extend(
                registered
                    .iter()
                    .filter(|s| s.name != BASELINE)
                    .filter(|s| args.strategies.iter().any(|n| n == s.name))
                    .filter(|s| s.setup_for(w).is_some())
                    .map(|s| s.name),
            );
            (w, names)
        })
        .collect()
}

/// Runs the whole benchmark; returns the process exit status (0: every
/// pair ran and every checksum matched).
pub fn run(args: &RunArgs) -> Result<i32> {
    for name in &args.not_implemented {
        eprintln!("matrx-orm-bench: strategy {name} is not implemented yet; left out");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let url = runtime.block_on(db::database_url())?;
    let server = runtime.block_on(prepare(args.scale, &url))?;
    // Kept running (with the runtime its readiness check used) until the children end.
    let bouncer = match args.pgbouncer {
        Some(size) => Some(
            runtime
                .block_on(
                    matrx_orm_testkit::PgBouncer::builder(&url)
                        .pool_size(size)
                        .search_path(args.scale.schema())
                        .start(),
                )
                .map_err(|e| BenchError::other(e.to_string()))?,
        ),
        None => None,
    };
    let pooler_url = bouncer.as_ref().map(|b| b.url().to_owned());

    let mut out = std::io::stdout().lock();
    let widths = table_widths(args);
    if !args.json {
        writeln!(
            out,
            "# machine: {}, {} cores; PostgreSQL {}; scale {} (schema {}); timed runs: {}",
            sysinfo::cpu_model(),
            sysinfo::cores(),
            server.version,
            args.scale.name(),
            args.scale.schema(),
            args.runs
        )?;
        if let Some(orders) = args.orders {
            writeln!(out, "# W1 loads the {orders} orders with the smallest ids")?;
        }
        if let Some(size) = args.pgbouncer {
            writeln!(
                out,
                "# through PgBouncer (transaction pooling, {size} server connections); \
                 the ORM in StatementMode::Unnamed"
            )?;
        }
        writeln!(
            out,
            "{}",
            table_line(&TABLE_HEADER.map(String::from), &widths)
        )?;
        out.flush()?;
    }

    let mut failed = false;
    for (workload, names) in plan(args) {
        let mut baseline_median = None;
        for name in names {
            let report = match run_child_process(
                &url,
                pooler_url.as_deref(),
                workload,
                name,
                args.runs,
                args.scale,
                args.orders,
            ) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("matrx-orm-bench: {workload} {name} failed: {e}");
                    failed = true;
                    continue;
                }
            };
            if name == BASELINE {
                baseline_median = Some(report.wall_ms_median);
            }
            if !report.checksum_ok {
                failed = true;
                eprintln!(
                    "matrx-orm-bench: {workload} {name}: CHECKSUM MISMATCH: {}",
                    report.mismatches.join("; ")
                );
            }
            let row = ResultRow::from_report(report, baseline_median);
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&row)?)?;
            } else {
                writeln!(out, "{}", table_line(&table_cells(&row), &widths))?;
            }
            out.flush()?;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// What the parent learns from the server before the runs.
struct ServerInfo {
    version: String,
}

/// Builds or verifies the dataset of `scale` and reads the server version.
async fn prepare(scale: Scale, url: &str) -> Result<ServerInfo> {
    let mut client = db::connect(url).await?;
    let expected = match scale {
        Scale::Full => Some(checksum::expected_full()),
        Scale::Tiny | Scale::X10 => None,
    };
    dataset::ensure_dataset(
        &mut client,
        scale.schema(),
        scale.dataset_size(),
        &scale.workload_params(),
        expected.as_ref(),
    )
    .await?;
    let row = client.query_one("SHOW server_version", &[]).await?;
    Ok(ServerInfo {
        version: row.try_get(0)?,
    })
}

/// Re-executes this binary with `--child` and parses its last stdout line.
/// The child gets the parent's resolved server as `DATABASE_URL`.
fn run_child_process(
    url: &str,
    pooler_url: Option<&str>,
    workload: Workload,
    strategy: &str,
    runs: usize,
    scale: Scale,
    orders: Option<i64>,
) -> Result<ChildReport> {
    let exe = std::env::current_exe()?;
    let mut command = Process::new(exe);
    match pooler_url {
        Some(pooler) => command.env(crate::strategy::POOLER_URL_VAR, pooler),
        None => command.env_remove(crate::strategy::POOLER_URL_VAR),
    };
    let output = command
        .args(["--child", workload.name(), strategy])
        .args(["--runs", &runs.to_string(), "--scale", scale.name()])
        .args(
            orders
                .map(|n| ["--orders".to_owned(), n.to_string()])
                .into_iter()
                .flatten(),
        )
        .env("DATABASE_URL", url)
        // The children use the server the parent resolved, never one of their own.
        .env_remove("MATRX_TEST_THROWAWAY")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(BenchError::other(format!(
            "child process exited with {}",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| BenchError::other("child process printed no result"))?;
    serde_json::from_str(line).map_err(|e| {
        BenchError::other(format!("bad result line from child process: {e}: {line:?}"))
    })
}

const TABLE_HEADER: [&str; 10] = [
    "workload",
    "strategy",
    "wall_ms_median",
    "wall_ms_min",
    "server_ms",
    "queries",
    "ratio_vs_handwritten",
    "peak_rss_kb",
    "checksum_ok",
    "query_count_source",
];

/// Column widths (the strategy column widens to the longest name planned); text
/// columns are left-aligned, numbers right-aligned.
const TABLE_WIDTHS: [usize; 10] = [8, 16, 14, 11, 9, 7, 20, 11, 11, 18];
const TABLE_LEFT: [bool; 10] = [
    true, true, false, false, false, false, false, false, false, true,
];

fn table_cells(row: &ResultRow) -> [String; 10] {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    [
        row.workload.clone(),
        row.strategy.clone(),
        format!("{:.2}", row.wall_ms_median),
        format!("{:.2}", row.wall_ms_min),
        opt(row.server_ms.map(|ms| format!("{ms:.2}"))),
        opt(row.queries.map(|q| q.to_string())),
        opt(row.ratio_vs_handwritten.map(|r| format!("{r:.2}"))),
        opt(row.peak_rss_kb.map(|k| k.to_string())),
        (if row.checksum_ok { "ok" } else { "MISMATCH" }).to_string(),
        row.query_count_source.clone(),
    ]
}

/// The widths of the table's columns for the strategies planned in `args`.
fn table_widths(args: &RunArgs) -> [usize; 10] {
    let mut widths = TABLE_WIDTHS;
    for (_, names) in plan(args) {
        for name in names {
            widths[1] = widths[1].max(name.len());
        }
    }
    widths
}

fn table_line(cells: &[String; 10], widths: &[usize; 10]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let w = widths[i];
        if TABLE_LEFT[i] {
            line.push_str(&format!("{cell:<w$}"));
        } else {
            line.push_str(&format!("{cell:>w$}"));
        }
    }
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(strategy: &str, median: f64) -> ChildReport {
        ChildReport {
            workload: "W1".into(),
            strategy: strategy.into(),
            wall_ms_median: median,
            wall_ms_min: median - 1.0,
            queries: Some(5),
            query_count_source: "client_counter".into(),
            peak_rss_kb: Some(12345),
            checksum_ok: true,
            mismatches: vec![],
            server_ms: Some(4.0),
        }
    }

    #[test]
    fn json_row_has_exactly_the_keys() {
        let row = ResultRow::from_report(report("x", 30.0), Some(20.0));
        let v: serde_json::Value = serde_json::to_value(&row).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = TABLE_HEADER.to_vec();
        let mut got = keys.clone();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(row.ratio_vs_handwritten, Some(1.5));
        let line = serde_json::to_string(&row).unwrap();
        assert!(line.starts_with("{\"workload\":\"W1\",\"strategy\":\"x\",\"wall_ms_median\":30.0"));
    }

    #[test]
    fn table_is_aligned() {
        let row = ResultRow::from_report(report("handwritten", 19.123), Some(19.123));
        let header = table_line(&TABLE_HEADER.map(String::from), &TABLE_WIDTHS);
        let line = table_line(&table_cells(&row), &TABLE_WIDTHS);
        let col = |s: &str, what: &str| s.find(what).unwrap() + what.len();
        assert_eq!(col(&header, "wall_ms_median"), col(&line, "19.12"));
        assert_eq!(col(&header, "ratio_vs_handwritten"), col(&line, "1.00"));
    }

    #[test]
    fn plan_puts_baseline_first() {
        let args = RunArgs {
            workloads: vec![Workload::W1, Workload::W4],
            strategies: vec![],
            not_implemented: vec![],
            runs: 1,
            json: false,
            scale: Scale::Tiny,
            pgbouncer: None,
            orders: None,
        };
        let p = plan(&args);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|(_, names)| names.first() == Some(&BASELINE)));
    }
}
