//! `notify-report`: what announcing writes for cache coherence costs
//! (`DbBuilder::notify_writes`: each write's statement wrapped in a CTE that calls
//! `pg_notify` with the written keys), against the same writes unannounced. The
//! measurements behind docs/BENCHMARKS.md, section "Announcing writes".
//!
//! ```text
//! cargo run --release -p matrx-orm-bench --bin notify-report -- [--rounds N]
//! ```
//!
//! Works in a schema of its own (`matrx_bench_notify`, dropped first and at the end).
//! A coherent `Db` listens on the channel while the announced writes run, as in a
//! deployment. Each write's result is checked; the command exits 1 when one is wrong.

use std::time::Instant;

use matrx_orm::cache::CachePolicy;
use matrx_orm::{Db, Model, ModelExt};
use matrx_orm_bench::error::{BenchError, Result};

const SCHEMA: &str = "matrx_bench_notify";
const CHANNEL: &str = "matrx_bench_notify";

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "notify_rows")]
pub struct Row {
    #[orm(primary_key)]
    pub id: i64,
    pub version: i64,
    pub status: String,
}

fn row(id: i64, version: i64) -> Row {
    Row {
        id,
        version,
        status: "paid".to_owned(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = match args.as_slice() {
        [] => 7,
        [flag, n] if flag == "--rounds" => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("notify-report: --rounds takes a positive number");
                std::process::exit(2);
            }
        },
        _ => {
            println!("usage: notify-report [--rounds N]   (timed rounds, median; default 7)");
            return;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("notify-report: error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(rounds)) {
        eprintln!("notify-report: error: {e}");
        std::process::exit(1);
    }
}

async fn run(rounds: usize) -> Result<()> {
    let url = matrx_orm_bench::db::database_url().await?;
    let admin = matrx_orm_bench::db::connect(&url).await?;
    let reset = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}");
    admin.batch_execute(&reset).await?;
    let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    let result = report(&url, rounds, &version).await;
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await?;
    result
}

/// A pool of one connection on the schema, commits not waiting for the WAL flush
/// (as the insert report: the flush's jitter on a shared disk drowns small writes).
async fn connect(url: &str, announce: bool) -> Result<Db> {
    let db = Db::builder(url)
        .search_path(SCHEMA)
        .pool_size(1)
        .notify_writes(announce)
        .coherence_channel(CHANNEL)
        .connect()
        .await?;
    db.execute_sql("SET synchronous_commit = off", &[]).await?;
    Ok(db)
}

/// A coherent `Db` caching rows and listening on the channel.
async fn listen(url: &str) -> Result<Db> {
    let db = Db::builder(url)
        .search_path(SCHEMA)
        .pool_size(1)
        .cache::<Row>(CachePolicy::Permanent)
        .coherent_cache(true)
        .coherence_channel(CHANNEL)
        .connect()
        .await?;
    if !db.cache_listening() {
        return Err(BenchError::other("the listener did not start"));
    }
    Ok(db)
}

const WRITES: [&str; 4] = [
    "update 1 row by key",
    "insert 1 row",
    "update 100 rows by filter",
    "insert 100 rows",
];

/// Runs write `w` `ops` times from id `base`; checks each result.
async fn write(db: &Db, w: usize, ops: i64, base: i64) -> Result<()> {
    let wrong = |what: &str| Err(BenchError::other(format!("{}: {what}", WRITES[w])));
    for op in 0..ops {
        match w {
            0 => {
                let mut r = row(1 + op % 100, base + op);
                r.update(db).await?;
                if r.version != base + op {
                    return wrong("the row did not come back");
                }
            }
            1 => {
                let stored = row(base + op, 0).insert(db).await?;
                if stored.id != base + op {
                    return wrong("the row did not come back");
                }
            }
            2 => {
                let updated = Row::query()
                    .filter(Row::ID.between(1i64, 100i64))
                    .update()
                    .set(Row::VERSION, base + op)
                    .exec(db)
                    .await?;
                if updated.len() != 100 {
                    return wrong("not 100 rows");
                }
            }
            _ => {
                let rows: Vec<Row> = (0..100).map(|i| row(base + op * 100 + i, 0)).collect();
                if Row::insert_many(db, &rows).await?.len() != 100 {
                    return wrong("not 100 rows");
                }
            }
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn report(url: &str, rounds: usize, version: &str) -> Result<()> {
    let quiet = connect(url, false).await?;
    let announcing = connect(url, true).await?;
    matrx_orm::ddl::create_tables(&quiet, &[Row::META]).await?;
    quiet
        .execute_sql(
            "INSERT INTO notify_rows SELECT g, 0, 'paid' FROM generate_series(1, 100) AS g",
            &[],
        )
        .await?;
    println!(
        "# machine: {}, {} cores; PostgreSQL {version}; {rounds} timed rounds (median), \
         one warm-up, quiet, announced unheard and announced heard by a listener interleaved; one connection, synchronous_commit off",
        matrx_orm_bench::sysinfo::cpu_model(),
        matrx_orm_bench::sysinfo::cores()
    );
    println!(
        "{:<26}  {:>5}  {:>9}  {:>9}  {:>6}  {:>9}  {:>6}",
        "write", "ops", "quiet_us", "unheard", "ratio", "heard", "ratio"
    );
    let mut next_id = 1_000i64;
    for (w, name) in WRITES.iter().enumerate() {
        let ops: i64 = if w < 2 { 500 } else { 50 };
        let mut times: [Vec<f64>; 3] = Default::default();
        for round in 0..=rounds {
            for (mode, samples) in times.iter_mut().enumerate() {
                // Announced writes heard by a coherent Db, as another process would.
                let listener = match mode {
                    2 => Some(listen(url).await?),
                    _ => None,
                };
                let db = if mode == 0 { &quiet } else { &announcing };
                let started = Instant::now();
                write(db, w, ops, next_id).await?;
                let us = started.elapsed().as_secs_f64() * 1e6 / ops as f64;
                next_id += ops * 100;
                drop(listener);
                if round > 0 {
                    samples.push(us);
                }
            }
        }
        let [q, u, h] = times.map(|mut t| median(&mut t));
        println!(
            "{name:<26}  {ops:>5}  {q:>9.1}  {u:>9.1}  {:>6.2}  {h:>9.1}  {:>6.2}",
            u / q,
            h / q
        );
    }
    Ok(())
}
