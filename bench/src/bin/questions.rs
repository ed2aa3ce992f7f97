//! `questions`: questions across relations on the full dataset — a relation filter, a
//! count annotation, and aggregates for a loaded page — through the ORM and through
//! hand-written tokio-postgres, interleaved round by round, as ratios of median wall
//! time with their query counts (docs/BENCHMARKS.md, "Questions across relations").
//!
//! ```text
//! cargo run --release -p matrx-orm-bench --bin questions -- [--rounds N]
//! ```
//!
//! The hand-written side decodes the same columns into plain structs; where two SQL
//! shapes answer a question (scalar subqueries or a grouped join), both are timed and
//! the faster one is the baseline. Every answer must equal the hand-written one, or the
//! command exits 1.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use matrx_orm::{Db, Model, ModelExt, Relation, RelationAggregates};
use matrx_orm_bench::error::{BenchError, Result};
use matrx_orm_bench::orm::models::{Customer, Order, OrderItem, Tag};
use matrx_orm_bench::workload::Scale;
use tokio_postgres::Client;

const USAGE: &str = "usage: questions [--rounds N]   (default 15 timed rounds after one warm-up)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = match args.as_slice() {
        [] => 15,
        [flag, n] if flag == "--rounds" => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("questions: --rounds takes a positive number\n{USAGE}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("questions: error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(rounds)) {
        eprintln!("questions: error: {e}");
        std::process::exit(1);
    }
}

/// One plain order row, as the hand-written side decodes it.
#[derive(Debug, PartialEq)]
struct OrderRow {
    id: i64,
    customer_id: i64,
    status: String,
    placed_at: DateTime<Utc>,
    total_cents: i64,
}

fn order_row(row: &tokio_postgres::Row) -> Result<OrderRow> {
    Ok(OrderRow {
        id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        status: row.try_get(2)?,
        placed_at: row.try_get(3)?,
        total_cents: row.try_get(4)?,
    })
}

/// The median of `times`.
fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Runs `f` once and returns its value and wall time.
async fn timed<T>(f: impl Future<Output = Result<T>>) -> Result<(T, Duration)> {
    let started = Instant::now();
    let value = f.await?;
    Ok((value, started.elapsed()))
}

fn mismatch(what: &str) -> BenchError {
    BenchError::other(format!(
        "{what}: the ORM's answer differs from the hand-written one"
    ))
}

async fn run(rounds: usize) -> Result<()> {
    let ctx = matrx_orm_bench::setup::prepared(Scale::Full).await?;
    let db = matrx_orm_bench::orm::connect(&ctx, 4).await?;
    let client = matrx_orm_bench::db::connect(&ctx.database_url).await?;
    client
        .batch_execute(&format!("SET search_path = {}", ctx.schema))
        .await?;

    println!("# questions across relations, full dataset, {rounds} timed rounds (median)");
    println!(
        "{:<44}{:>10}{:>10}{:>8}{:>9}{:>9}",
        "question", "orm_ms", "hand_ms", "ratio", "orm_q", "hand_q"
    );
    filter_question(&db, &client, rounds).await?;
    annotate_question(&db, &client, rounds).await?;
    load_question(&db, &client, rounds).await?;
    Ok(())
}

fn report(name: &str, orm: Duration, hand: Duration, orm_q: u64, hand_q: u64) {
    let ratio = orm.as_secs_f64() / hand.as_secs_f64().max(1e-9);
    println!(
        "{name:<44}{:>10.2}{:>10.2}{ratio:>8.2}{orm_q:>9}{hand_q:>9}",
        orm.as_secs_f64() * 1e3,
        hand.as_secs_f64() * 1e3
    );
}

/// Orders of customers whose email has a 7 before the `@`, tagged `tag-07`.
async fn filter_question(db: &Db, client: &Client, rounds: usize) -> Result<()> {
    let orm = || async {
        let orders = Order::query()
            .filter(Order::CUSTOMER.has(Customer::EMAIL.like("%7@%")))
            .filter(Order::TAGS.any(Tag::NAME.eq("tag-07")))
            .order_by(Order::ID.asc())
            .all(db)
            .await?;
        Ok(orders)
    };
    let sql = "SELECT o.id, o.customer_id, o.status, o.placed_at, o.total_cents FROM orders o \
               WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id AND c.email LIKE $1) \
               AND EXISTS (SELECT 1 FROM order_tags ot JOIN tags t ON t.id = ot.tag_id \
               WHERE ot.order_id = o.id AND t.name = $2) ORDER BY o.id";
    let stmt = client.prepare(sql).await?;
    let hand = || async {
        let rows = client.query(&stmt, &[&"%7@%", &"tag-07"]).await?;
        rows.iter().map(order_row).collect::<Result<Vec<_>>>()
    };
    let (got, _) = timed(orm()).await?;
    let (want, _) = timed(hand()).await?;
    let got: Vec<i64> = got.iter().map(|o| o.id).collect();
    let want_ids: Vec<i64> = want.iter().map(|o| o.id).collect();
    if got != want_ids || got.is_empty() {
        return Err(mismatch("relation filter"));
    }
    let before = db.query_count();
    let (mut orm_t, mut hand_t) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        orm_t.push(timed(orm()).await?.1);
        hand_t.push(timed(hand()).await?.1);
    }
    let queries = (db.query_count() - before) / rounds as u64;
    report(
        &format!("relation filter ({} orders)", got.len()),
        median(&mut orm_t),
        median(&mut hand_t),
        queries,
        1,
    );
    Ok(())
}

/// Paid orders with their item count and quantity sum.
async fn annotate_question(db: &Db, client: &Client, rounds: usize) -> Result<()> {
    let orm = || async {
        let rows = Order::query()
            .filter(Order::STATUS.eq("paid"))
            .order_by(Order::ID.asc())
            .annotate((Order::ITEMS.count(), Order::ITEMS.sum(OrderItem::QUANTITY)))
            .all(db)
            .await?;
        Ok(rows)
    };
    let scalar = "SELECT o.id, o.customer_id, o.status, o.placed_at, o.total_cents, \
                  (SELECT count(*) FROM order_items i WHERE i.order_id = o.id), \
                  (SELECT sum(i.quantity)::int8 FROM order_items i WHERE i.order_id = o.id) \
                  FROM orders o WHERE o.status = $1 ORDER BY o.id";
    let grouped = "SELECT o.id, o.customer_id, o.status, o.placed_at, o.total_cents, \
                   count(i.id), sum(i.quantity)::int8 FROM orders o \
                   LEFT JOIN order_items i ON i.order_id = o.id WHERE o.status = $1 \
                   GROUP BY o.id ORDER BY o.id";
    let scalar = client.prepare(scalar).await?;
    let grouped = client.prepare(grouped).await?;
    let hand = |stmt: &tokio_postgres::Statement| {
        let stmt = stmt.clone();
        async move {
            let rows = client.query(&stmt, &[&"paid"]).await?;
            rows.iter()
                .map(|r| {
                    let n: i64 = r.try_get(5)?;
                    let q: Option<i64> = r.try_get(6)?;
                    Ok((order_row(r)?, (n, q)))
                })
                .collect::<Result<Vec<_>>>()
        }
    };
    let (got, _) = timed(orm()).await?;
    let got: Vec<(i64, (i64, Option<i64>))> = got.iter().map(|(o, v)| (o.id, *v)).collect();
    for stmt in [&scalar, &grouped] {
        let want: Vec<(i64, (i64, Option<i64>))> = hand(stmt)
            .await?
            .into_iter()
            .map(|(o, v)| (o.id, v))
            .collect();
        if got != want {
            return Err(mismatch("count annotation"));
        }
    }
    let before = db.query_count();
    let (mut orm_t, mut scalar_t, mut grouped_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        orm_t.push(timed(orm()).await?.1);
        scalar_t.push(timed(hand(&scalar)).await?.1);
        grouped_t.push(timed(hand(&grouped)).await?.1);
    }
    let queries = (db.query_count() - before) / rounds as u64;
    let (scalar_m, grouped_m) = (median(&mut scalar_t), median(&mut grouped_t));
    println!(
        "  hand-written shapes: scalar subqueries {:.2} ms, grouped join {:.2} ms",
        scalar_m.as_secs_f64() * 1e3,
        grouped_m.as_secs_f64() * 1e3
    );
    report(
        &format!("count + sum annotation ({} orders)", got.len()),
        median(&mut orm_t),
        scalar_m.min(grouped_m),
        queries,
        1,
    );
    Ok(())
}

/// Item counts for a page of 1,000 orders already loaded.
async fn load_question(db: &Db, client: &Client, rounds: usize) -> Result<()> {
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .limit(1000)
        .all(db)
        .await?;
    let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let orm = || async { Ok(Order::ITEMS.count().load(db, &orders).await?) };
    let stmt = client
        .prepare(
            "SELECT i.order_id, count(*) FROM order_items i \
             WHERE i.order_id = ANY($1) GROUP BY i.order_id",
        )
        .await?;
    let hand = || async {
        let rows = client.query(&stmt, &[&ids]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?)))
            .collect::<Result<HashMap<i64, i64>>>()
    };
    let (got, _) = timed(orm()).await?;
    let (want, _) = timed(hand()).await?;
    for order in &orders {
        let key = <Order as Model>::key(order);
        let expect = want.get(&key).copied().unwrap_or(0);
        if got.get(order) != expect {
            return Err(mismatch("aggregate load"));
        }
    }
    let before = db.query_count();
    let (mut orm_t, mut hand_t) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        orm_t.push(timed(orm()).await?.1);
        hand_t.push(timed(hand()).await?.1);
    }
    let queries = (db.query_count() - before) / rounds as u64;
    report(
        "Aggregate::load, counts for 1,000 orders",
        median(&mut orm_t),
        median(&mut hand_t),
        queries,
        1,
    );
    Ok(())
}
