//! `stream-report`: the measurements behind docs/BENCHMARKS.md, section "Streaming":
//! W2's orders (all of them, or the first N) with their customer and items, loaded
//! with `Select::all` (prefetch) against `Select::stream_chunks` (the same prefetch
//! per chunk), each (mode, row count) in a child process of its own so its peak RSS
//! is its own.
//!
//! ```text
//! cargo run --release -p matrx-orm-bench --bin stream-report -- [--scale x10|full] [--rounds N] [--chunk N]
//! ```
//!
//! The dataset is built first when missing (`x10`: 200,000 orders in schema
//! `matrx_bench_x10`). Both modes must walk the same checksum; the command exits 1
//! when they differ or a load fails.

use std::process::Command;
use std::time::Instant;

use futures_util::TryStreamExt;
use matrx_orm::{Db, ModelExt, Select};
use matrx_orm_bench::dataset::ensure_dataset;
use matrx_orm_bench::error::{BenchError, Result};
use matrx_orm_bench::orm::models::Order;
use matrx_orm_bench::sysinfo::peak_rss_kb;
use matrx_orm_bench::workload::Scale;

const USAGE: &str = "\
usage: stream-report [--scale x10|full] [--rounds N] [--chunk N]

  --scale   x10: 200,000 orders (default); full: 20,000
  --rounds  timed loads per child after one warm-up (default 3; the median is shown)
  --chunk   stream_chunks size (default 1000)";

struct Args {
    scale: Scale,
    rounds: usize,
    chunk: usize,
    /// Set in a child: (mode, rows).
    child: Option<(String, u64)>,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        scale: Scale::X10,
        rounds: 3,
        chunk: 1000,
        child: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    let value = |v: Option<&String>, flag: &str| {
        v.cloned()
            .ok_or_else(|| BenchError::Usage(format!("{flag} needs a value")))
    };
    let number = |v: String, flag: &str| {
        v.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| BenchError::Usage(format!("{flag}: a positive number, got {v:?}")))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--scale" => {
                let v = value(it.next(), "--scale")?;
                args.scale =
                    Scale::parse(&v).ok_or_else(|| BenchError::Usage(format!("--scale: {v:?}")))?;
            }
            "--rounds" => args.rounds = number(value(it.next(), "--rounds")?, "--rounds")?,
            "--chunk" => args.chunk = number(value(it.next(), "--chunk")?, "--chunk")?,
            "--child" => {
                let mode = value(it.next(), "--child")?;
                let rows = number(value(it.next(), "--child")?, "--child")? as u64;
                args.child = Some((mode, rows));
            }
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    Ok(Some(args))
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("stream-report: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match &args.child {
        Some((mode, rows)) => child(&args, mode, *rows),
        None => parent(&args),
    };
    if let Err(e) = result {
        eprintln!("stream-report: error: {e}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// One child's result line: `mode rows median_ms peak_kb queries checksum`.
struct Measured {
    mode: String,
    rows: u64,
    median_ms: f64,
    peak_kb: u64,
    queries: u64,
    checksum: i64,
}

fn parent(args: &Args) -> Result<()> {
    let total = runtime()?.block_on(async {
        let url = matrx_orm_bench::db::database_url().await?;
        let mut admin = matrx_orm_bench::db::connect(&url).await?;
        let params = args.scale.workload_params();
        ensure_dataset(
            &mut admin,
            args.scale.schema(),
            args.scale.dataset_size(),
            &params,
            None,
        )
        .await?;
        Ok::<_, BenchError>(args.scale.dataset_size().orders as u64)
    })?;
    let exe = std::env::current_exe()?;
    let counts: Vec<u64> = [total / 8, total / 4, total / 2, total]
        .into_iter()
        .filter(|n| *n > 0)
        .collect();
    let mut results = Vec::new();
    for &rows in &counts {
        for mode in ["all", "stream_chunks"] {
            let out = Command::new(&exe)
                .args([
                    "--scale",
                    args.scale.name(),
                    "--rounds",
                    &args.rounds.to_string(),
                    "--chunk",
                    &args.chunk.to_string(),
                    "--child",
                    mode,
                    &rows.to_string(),
                ])
                .output()?;
            if !out.status.success() {
                return Err(BenchError::other(format!(
                    "child {mode} {rows} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let line = String::from_utf8_lossy(&out.stdout);
            let f: Vec<&str> = line.split_whitespace().collect();
            let parse = |i: usize| -> Result<f64> {
                f.get(i)
                    .and_then(|s| s.parse::<f64>().ok())
                    .ok_or_else(|| BenchError::other(format!("bad child output {line:?}")))
            };
            results.push(Measured {
                mode: mode.to_owned(),
                rows,
                median_ms: parse(0)?,
                peak_kb: parse(1)? as u64,
                queries: parse(2)? as u64,
                checksum: parse(3)? as i64,
            });
        }
    }
    println!(
        "W2 orders with customer and items, scale {}, chunk {}, median of {} rounds, {} \
         (2 worker threads)\n",
        args.scale.name(),
        args.chunk,
        args.rounds,
        matrx_orm_bench::sysinfo::cpu_model()
    );
    println!("| orders | mode | wall ms | µs/order | stream / all | peak RSS MB | statements |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut failed = false;
    for pair in results.chunks(2) {
        let [all, stream] = pair else { continue };
        if all.checksum != stream.checksum {
            eprintln!(
                "stream-report: checksums differ at {} rows: all {} stream {}",
                all.rows, all.checksum, stream.checksum
            );
            failed = true;
        }
        for m in pair {
            println!(
                "| {} | {} | {:.0} | {:.2} | {} | {:.1} | {} |",
                m.rows,
                m.mode,
                m.median_ms,
                m.median_ms * 1000.0 / m.rows as f64,
                if m.mode == "all" {
                    "".to_owned()
                } else {
                    format!("{:.2}", stream.median_ms / all.median_ms)
                },
                m.peak_kb as f64 / 1024.0,
                m.queries
            );
        }
    }
    if failed {
        return Err(BenchError::other("checksum mismatch"));
    }
    Ok(())
}

/// Walks an order: id, customer id, and each item's id and quantity.
fn walk(order: &Order, sum: &mut i64) -> Result<()> {
    let missing = || BenchError::other("relation not loaded");
    *sum = sum.wrapping_add(order.id);
    *sum = sum.wrapping_add(order.customer.get().ok_or_else(missing)?.id * 3);
    for item in order.items.get().ok_or_else(missing)? {
        *sum = sum.wrapping_add(item.id * 7 + i64::from(item.quantity));
    }
    Ok(())
}

fn child(args: &Args, mode: &str, rows: u64) -> Result<()> {
    runtime()?.block_on(async {
        let url = matrx_orm_bench::db::database_url().await?;
        let db = Db::builder(url)
            .search_path(args.scale.schema())
            .pool_size(4)
            .connect()
            .await?;
        let query: Select<Order> = Order::query()
            .order_by(Order::ID.asc())
            .limit(rows)
            .prefetch(Order::CUSTOMER)
            .prefetch(Order::ITEMS);
        let mut times = Vec::new();
        let mut checksum = 0i64;
        let mut queries = 0;
        for round in 0..=args.rounds {
            let before = db.query_count();
            let started = Instant::now();
            let mut sum = 0i64;
            match mode {
                "all" => {
                    let orders = query.all(&db).await?;
                    for o in &orders {
                        walk(o, &mut sum)?;
                    }
                }
                "stream_chunks" => {
                    let mut chunks = query.stream_chunks(&db, args.chunk);
                    while let Some(chunk) = chunks.try_next().await? {
                        for o in &chunk {
                            walk(o, &mut sum)?;
                        }
                    }
                }
                other => return Err(BenchError::Usage(format!("unknown mode {other:?}"))),
            }
            if round > 0 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            checksum = sum;
            queries = db.query_count() - before;
        }
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        println!(
            "{median:.1} {} {queries} {checksum}",
            peak_rss_kb().unwrap_or(0)
        );
        Ok(())
    })
}
