//! `soak`: a bounded load test of matrx-orm on loopback.
//!
//! `cargo run --release -p matrx-orm-bench --bin soak -- --sessions 200 --seconds 60`
//!
//! N concurrent sessions run W4-style per-object request code in a loop (each request:
//! a new `Session`, 25 orders fetched by key concurrently, each order's customer and
//! tags fetched lazily; the session batches them into one query per edge) for a fixed
//! time against the bench dataset, every answer checked. It reports requests, errors,
//! request latency percentiles, queries per request, the pool and the server's view of
//! the application's connections before and after, and the process's RSS every 5 s.
//!
//! Exits non-zero on any error or wrong answer, on a leaked connection (checked out of
//! the pool after the run, or still open on the server after the pool is dropped), or
//! on RSS growing after warm-up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{join, try_join_all};
use matrx_orm::{Db, ModelExt, Session};
use matrx_orm_bench::dataset::ensure_dataset;
use matrx_orm_bench::orm::models::{Customer, Order, Tag};
use matrx_orm_bench::workload::Scale;

const USAGE: &str = "\
usage: soak [--sessions N] [--seconds S] [--pool N] [--orders-per-request N] [--scale full|tiny]

  --sessions N            concurrent sessions (default 200)
  --seconds S             how long to run (default 60)
  --pool N                pool size (default 32)
  --orders-per-request N  orders fetched per request (default 25, as W4)
  --scale full|tiny       the bench dataset to run on (default full)

The server is found like the tests' (DATABASE_URL, the local default, or a throwaway
cluster). Exits 1 on any error, wrong answer, leaked connection or RSS growth.";

const APP: &str = "matrx_soak";
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Args {
    sessions: usize,
    seconds: u64,
    pool: usize,
    per_request: i64,
    scale: Scale,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sessions: 200,
        seconds: 60,
        pool: 32,
        per_request: 25,
        scale: Scale::Full,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: {value:?} is not a positive number"))
        };
        match flag.as_str() {
            "--sessions" => args.sessions = number()? as usize,
            "--seconds" => args.seconds = number()?,
            "--pool" => args.pool = number()? as usize,
            "--orders-per-request" => args.per_request = number()? as i64,
            "--scale" => {
                args.scale = Scale::parse(&value).ok_or_else(|| format!("--scale: {value:?}"))?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("soak: {msg}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("soak: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: error: {e}");
            std::process::exit(1);
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    matrx_orm_bench::sysinfo::parse_status_kb(&status, "VmRSS")
}

/// `url` with `application_name` set, in URL or key-value form.
fn with_app_name(url: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={APP}")
    } else {
        format!("{url} application_name={APP}")
    }
}

/// The server's count of this application's connections.
async fn server_connections(observer: &tokio_postgres::Client) -> Result<i64, BoxError> {
    let row = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&APP],
        )
        .await?;
    Ok(row.get(0))
}

/// What one session task did.
#[derive(Default)]
struct TaskReport {
    latencies_us: Vec<u32>,
    queries: Vec<u32>,
    errors: Vec<String>,
}

/// A tiny deterministic generator for the order windows.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One order of a request, W4-style: get by key, then customer and tags concurrently;
/// the answer is checked.
async fn request_order(s: &Session, id: i64) -> Result<(), String> {
    let order = Order::get(s, &id).await.map_err(|e| e.to_string())?;
    let (customer, tags) = join(
        order.fetch_fk(s, Order::CUSTOMER),
        order.fetch_m2m(s, Order::TAGS),
    )
    .await;
    let customer: Option<Arc<Customer>> = customer.map_err(|e| e.to_string())?;
    let tags: Vec<Arc<Tag>> = tags.map_err(|e| e.to_string())?;
    if order.id != id {
        return Err(format!("asked order {id}, got {}", order.id));
    }
    match customer {
        Some(c) if c.id == order.customer_id => {}
        other => {
            return Err(format!(
                "order {id}: customer {} expected, got {:?}",
                order.customer_id,
                other.map(|c| c.id)
            ))
        }
    }
    if tags.len() > 4 || tags.iter().any(|t| t.name.is_empty()) {
        return Err(format!("order {id}: unexpected tags {tags:?}"));
    }
    Ok(())
}

async fn session_loop(
    db: Db,
    seed: u64,
    per_request: i64,
    orders: i64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> TaskReport {
    let mut report = TaskReport::default();
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        let first = rng.below((orders - per_request).max(1) as u64) as i64 + 1;
        let session = db.session();
        let started = Instant::now();
        let result =
            try_join_all((first..first + per_request).map(|id| request_order(&session, id))).await;
        let elapsed = started.elapsed();
        match result {
            Ok(_) => {
                report
                    .latencies_us
                    .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                report.queries.push(session.query_count() as u32);
            }
            Err(e) => report.errors.push(e),
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    report
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(args: Args) -> Result<bool, BoxError> {
    let url = matrx_orm_bench::db::database_url().await?;
    let schema = args.scale.schema();
    let size = args.scale.dataset_size();
    let mut admin = matrx_orm_bench::db::connect(&url).await?;
    ensure_dataset(
        &mut admin,
        schema,
        size,
        &args.scale.workload_params(),
        None,
    )
    .await?;
    let observer = matrx_orm_bench::db::connect(&url).await?;
    let before_server = server_connections(&observer).await?;

    let db = Db::builder(with_app_name(&url))
        .search_path(schema)
        .pool_size(args.pool)
        .pool_wait(Duration::from_secs(30))
        .connect()
        .await?;
    let before_pool = db.pool_status();
    println!(
        "soak: {} sessions x {} s, pool {}, {} orders per request, dataset {} ({} orders)",
        args.sessions, args.seconds, args.pool, args.per_request, schema, size.orders
    );
    println!(
        "before: pool {before_pool:?}; server connections of {APP}: {before_server}; RSS {} MiB",
        rss_kb().unwrap_or(0) / 1024
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let queries_before = db.query_count();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.sessions)
        .map(|k| {
            tokio::spawn(session_loop(
                db.clone(),
                0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1),
                args.per_request,
                size.orders,
                stop.clone(),
                done.clone(),
            ))
        })
        .collect();

    // RSS and progress every 5 s.
    let samples: Arc<Mutex<Vec<(Duration, u64, u64)>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        let done = done.clone();
        let db = db.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let at = started.elapsed();
                let rss = rss_kb().unwrap_or(0);
                let n = done.load(Ordering::Relaxed);
                println!(
                    "  t={:>3.0}s requests={n:>8} RSS={:>4} MiB pool={:?}",
                    at.as_secs_f64(),
                    rss / 1024,
                    db.pool_status()
                );
                if let Ok(mut s) = samples.lock() {
                    s.push((at, rss, n));
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut queries = Vec::new();
    let mut errors = Vec::new();
    let mut panics = 0;
    for t in tasks {
        match t.await {
            Ok(r) => {
                latencies.extend(r.latencies_us);
                queries.extend(r.queries);
                errors.extend(r.errors);
            }
            Err(_) => panics += 1,
        }
    }
    let wall = started.elapsed();
    sampler.abort();
    let total_queries = db.query_count() - queries_before;

    // Connections: none checked out, the server sees exactly the pool's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_pool = db.pool_status();
    let during_server = server_connections(&observer).await?;
    drop(db);
    let mut after_server = server_connections(&observer).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while after_server != before_server && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after_server = server_connections(&observer).await?;
    }

    latencies.sort_unstable();
    queries.sort_unstable();
    let requests = latencies.len() + errors.len();
    let mean_queries = queries.iter().map(|&q| q as f64).sum::<f64>() / queries.len().max(1) as f64;
    let q_min = queries.first().copied().unwrap_or(0);
    let q_max = queries.last().copied().unwrap_or(0);
    let exactly_three = queries.iter().filter(|&&q| q == 3).count();
    println!("after {:.1} s:", wall.as_secs_f64());
    println!(
        "  requests: {requests} ({:.0}/s), orders loaded: {}, errors: {}, panics: {panics}",
        requests as f64 / wall.as_secs_f64(),
        latencies.len() as i64 * args.per_request,
        errors.len()
    );
    for e in errors.iter().take(5) {
        println!("    error: {e}");
    }
    println!(
        "  request latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  queries per request: mean {mean_queries:.3}, min {q_min}, max {q_max}, exactly 3 in {:.2}% \
         ({total_queries} statements in all)",
        100.0 * exactly_three as f64 / queries.len().max(1) as f64
    );
    println!(
        "  pool after: {after_pool:?}; server connections of {APP}: {during_server} with the pool open, \
         {after_server} after it was dropped (before: {before_server})"
    );
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let rss: Vec<String> = samples
        .iter()
        .map(|(at, kb, _)| format!("{:.0}s:{}", at.as_secs_f64(), kb / 1024))
        .collect();
    println!("  RSS (MiB) every 5 s: {}", rss.join(" "));

    let mut ok = true;
    if !errors.is_empty() || panics > 0 || latencies.is_empty() {
        println!("FAIL: {} errors, {panics} panics", errors.len());
        ok = false;
    }
    if after_pool.size > args.pool
        || after_pool.available != after_pool.size
        || after_pool.waiting != 0
    {
        println!("FAIL: connections still checked out of the pool: {after_pool:?}");
        ok = false;
    }
    if during_server != after_pool.size as i64 || after_server != before_server {
        println!(
            "FAIL: leaked server connections ({during_server} open for a pool of {}, \
             {after_server} left after dropping it)",
            after_pool.size
        );
        ok = false;
    }
    let steady: Vec<u64> = samples
        .iter()
        .filter(|(at, _, _)| *at >= WARM_UP)
        .map(|(_, kb, _)| *kb)
        .collect();
    if let (Some(&first), Some(&max)) = (steady.first(), steady.iter().max()) {
        let allowed = first + (first / 4).max(32 * 1024);
        println!(
            "  RSS after warm-up: first {} MiB, max {} MiB (limit {} MiB)",
            first / 1024,
            max / 1024,
            allowed / 1024
        );
        if max > allowed {
            println!("FAIL: RSS grew after warm-up");
            ok = false;
        }
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
