//! `insert-report`: the measurements behind docs/BENCHMARKS.md, section "Inserting
//! many rows": `InsertRows::exec` as one statement with one array per column
//! (`INSERT .. SELECT unnest($1::T1[]), ..`, forced with `arrays_only`; the default
//! from 10 rows) against `VALUES` lists (forced with `values_only`: one placeholder per
//! value, several statements in a transaction past the 65,535-parameter limit; the
//! default below 10 rows), for 1 to 100,000 rows, and a run of inserts of every size
//! from 1 to 200 rows on fresh connections (what each statement text costs to prepare).
//!
//! ```text
//! cargo run --release -p matrx-orm-bench --bin insert-report -- [--rounds N] [--sizes A,B,..]
//! ```
//!
//! Works in a schema of its own (`matrx_bench_insert`, dropped first and at the end).
//! Every insert's returned rows are checked against its input; the command exits 1
//! when one differs or an insert fails.

use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use matrx_orm::{Db, Model, ModelExt};
use matrx_orm_bench::error::{BenchError, Result};

const USAGE: &str = "\
usage: insert-report [--rounds N] [--sizes A,B,..]

  --rounds N      timed rounds per size and path, after one warm-up (default 7)
  --sizes A,B,..  the row counts to insert (default 1,10,100,1000,10000,100000);
                  the run of 1..200-row inserts comes with the default sizes only

The server is found like the tests' (DATABASE_URL, the local default, or a throwaway
cluster); the rows go to schema matrx_bench_insert, dropped afterwards.";

const SCHEMA: &str = "matrx_bench_insert";

/// Six written columns of the usual kinds (the id is left to the database).
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "insert_rows")]
pub struct Row {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub customer_id: i64,
    pub status: String,
    pub total_cents: i32,
    pub note: Option<String>,
    pub amount: rust_decimal::Decimal,
    pub created_at: DateTime<Utc>,
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            id: 0,
            customer_id: (i % 5_000) as i64,
            status: ["paid", "shipped", "pending"][i % 3].to_owned(),
            total_cents: (i * 37 % 100_000) as i32,
            note: (i % 2 == 0).then(|| format!("note {i}")),
            amount: rust_decimal::Decimal::new(i as i64 * 125, 2),
            created_at: Utc
                .timestamp_opt(1_700_000_000 + i as i64, 0)
                .single()
                .unwrap_or_default(),
        })
        .collect()
}

/// The default row counts.
const SIZES: [usize; 6] = [1, 10, 100, 1_000, 10_000, 100_000];

/// The command line: rounds and sizes, or `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<(usize, Vec<usize>)>> {
    let positive = |name: &str, value: &str| -> Result<usize> {
        value
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| BenchError::Usage(format!("{name}: {value:?} is not a positive number")))
    };
    let mut rounds = 7;
    let mut sizes = SIZES.to_vec();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| BenchError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--rounds" => rounds = positive("--rounds", value("--rounds")?)?,
            "--sizes" => {
                sizes = value("--sizes")?
                    .split(',')
                    .map(|n| positive("--sizes", n.trim()))
                    .collect::<Result<_>>()?;
            }
            other => return Err(BenchError::Usage(format!("unexpected argument {other:?}"))),
        }
    }
    Ok(Some((rounds, sizes)))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rounds, sizes) = match parse_args(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("insert-report: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(rounds, &sizes) {
        eprintln!("insert-report: error: {e}");
        std::process::exit(1);
    }
}

fn run(rounds: usize, sizes: &[usize]) -> Result<()> {
    // Two workers, as the other measurements in docs/BENCHMARKS.md were taken.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let url = matrx_orm_bench::db::database_url().await?;
        let admin = matrx_orm_bench::db::connect(&url).await?;
        let reset = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}");
        admin.batch_execute(&reset).await?;
        let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
        let db = connect(&url).await?;
        matrx_orm::ddl::create_tables(&db, &[Row::META]).await?;
        let result = report(&db, &url, rounds, sizes, &version).await;
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            .await?;
        result
    })
}

/// A pool of one connection on the schema. Commits do not wait for the WAL flush
/// (`synchronous_commit = off`, set on that connection): both paths commit once per
/// insert, and on a shared disk the flush's jitter would drown small inserts.
async fn connect(url: &str) -> Result<Db> {
    let db = Db::builder(url)
        .search_path(SCHEMA)
        .pool_size(1)
        .connect()
        .await?;
    db.execute_sql("SET synchronous_commit = off", &[]).await?;
    Ok(db)
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Arrays,
    Values,
}

impl Path {
    const ALL: [Path; 2] = [Path::Arrays, Path::Values];

    fn name(self) -> &'static str {
        match self {
            Path::Arrays => "arrays",
            Path::Values => "values",
        }
    }
}

/// Inserts `input` by `path` and checks what came back; returns the statements run
/// and the time the insert took (the check is not timed).
async fn insert(db: &Db, input: &[Row], path: Path) -> Result<(u64, f64)> {
    let before = db.query_count();
    let insert = Row::insert_rows(input);
    let started = Instant::now();
    let stored = match path {
        Path::Arrays => insert.arrays_only().exec(db).await?,
        Path::Values => insert.values_only().exec(db).await?,
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let same = stored.len() == input.len()
        && stored
            .iter()
            .zip(input)
            .all(|(s, i)| Row { id: 0, ..s.clone() } == *i);
    if !same {
        return Err(BenchError::other(format!(
            "{} rows by {}: the returned rows differ from the input",
            input.len(),
            path.name()
        )));
    }
    Ok((db.query_count() - before, ms))
}

async fn truncate(db: &Db) -> Result<()> {
    db.execute_sql("TRUNCATE insert_rows", &[]).await?;
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn report(db: &Db, url: &str, rounds: usize, sizes: &[usize], version: &str) -> Result<()> {
    println!(
        "# machine: {}, {} cores; PostgreSQL {version}; timed rounds: {rounds} (median), \
         one warm-up, paths interleaved",
        matrx_orm_bench::sysinfo::cpu_model(),
        matrx_orm_bench::sysinfo::cores()
    );
    println!(
        "{:>8}  {:>6}  {:>10}  {:>12}  {:>12}  {:>10}",
        "rows", "path", "statements", "ms_median", "us_per_row", "vs_arrays"
    );
    for &n in sizes {
        let input = rows(n);
        // Small inserts are timed as a batch of calls, so each sample is ~10 ms or more.
        let calls = (2_000 / n).max(1);
        let mut samples = [Vec::new(), Vec::new()];
        let mut statements = [0u64; 2];
        for round in 0..=rounds {
            for (p, path) in Path::ALL.into_iter().enumerate() {
                truncate(db).await?;
                let (mut count, mut ms) = (0, 0.0);
                for _ in 0..calls {
                    let (c, t) = insert(db, &input, path).await?;
                    count += c;
                    ms += t;
                }
                let ms = ms / calls as f64;
                statements[p] = count / calls as u64;
                if round > 0 {
                    samples[p].push(ms);
                }
            }
        }
        let arrays = median(&samples[0]);
        for (p, path) in Path::ALL.into_iter().enumerate() {
            let ms = median(&samples[p]);
            println!(
                "{n:>8}  {:>6}  {:>10}  {ms:>12.3}  {:>12.2}  {:>10.2}",
                path.name(),
                statements[p],
                ms * 1e3 / n as f64,
                ms / arrays
            );
        }
    }

    if sizes != SIZES {
        return truncate(db).await;
    }
    // Every size from 1 to 200 once, on a fresh connection: the VALUES text differs
    // per row count, so each size is a new statement to prepare; the arrays' is one.
    let mixed: Vec<Vec<Row>> = (1..=200).map(rows).collect();
    let mut samples = [Vec::new(), Vec::new()];
    for round in 0..=rounds {
        for (p, path) in Path::ALL.into_iter().enumerate() {
            truncate(db).await?;
            let fresh = connect(url).await?;
            let mut ms = 0.0;
            for input in &mixed {
                ms += insert(&fresh, input, path).await?.1;
            }
            if round > 0 {
                samples[p].push(ms);
            }
        }
    }
    let arrays = median(&samples[0]);
    println!(
        "# 200 inserts of 1, 2, .., 200 rows on a fresh connection (statements not yet prepared)"
    );
    for (p, path) in Path::ALL.into_iter().enumerate() {
        let ms = median(&samples[p]);
        println!(
            "{:>8}  {:>6}  {:>10}  {ms:>12.3}  {:>12.2}  {:>10.2}",
            "1..200",
            path.name(),
            200,
            ms * 1e3 / 20_100.0,
            ms / arrays
        );
    }
    truncate(db).await?;
    Ok(())
}
