//! `joined-report`: the measurements behind docs/BENCHMARKS.md, section
//! "select_related": JSON against `record[]` aggregates, the load strategies on two
//! more tree shapes (deep and narrow, wide and shallow) against hand-written
//! tokio-postgres, per-edge policy variants, the server's JIT, and a simulated
//! network round trip (`report`); and the page-size sweep behind
//! `BALANCED_JOIN_LIMIT` (`sweep`).
//!
//! ```text
//! cargo run --release -p matrx-orm-bench --bin joined-report -- [report|sweep] [--rounds N]
//! ```
//!
//! Runs on the full dataset (schema `matrx_bench`, built first when missing). Every
//! contender's walked graph must equal the first contender's; the command exits 1
//! when one differs or a load fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use matrx_orm::executor::Scope;
use matrx_orm::{
    AggregateEncoding, Db, EdgeStrategy, Executor, Many, Model, ModelExt, One, RelationExt, Select,
    Slot,
};
use matrx_orm_bench::checksum::Checksums;
use matrx_orm_bench::error::{BenchError, Result};
use matrx_orm_bench::orm::graph::{Orders, Products};
use matrx_orm_bench::orm::joined::{orders_query, products_query, Mode};
use matrx_orm_bench::orm::models::{Customer, Order, OrderItem, Product, Stock, Tag, Warehouse};
use matrx_orm_bench::registry::find;
use matrx_orm_bench::strategy::{BenchContext, BoxFuture, LoadedGraph, Loader};
use matrx_orm_bench::workload::{Scale, Workload};
use tokio_postgres::types::{FromSql, Json, ToSql};
use tokio_postgres::Row;

const USAGE: &str = "\
usage: joined-report [report|sweep|pipeline] [--rounds N]

  report      every strategy on five tree shapes, JSON aggregates, per-edge policy
              variants, server JIT on and off, a simulated 1 ms round trip (default)
  sweep       W1's tree on the first 10 .. 20,000 orders: to-one edges joined against
              prefetch and balanced, on the local socket and with 1 ms per statement
  pipeline    W1 and W2 by prefetch and balanced with every statement of a load on one
              connection (sibling edges pipelined: Db::one_connection) against a
              pooled connection per statement (the default)
  --rounds N  timed rounds after one warm-up round (default 7 for report, 9 for sweep
              and pipeline)

The server is found like the tests' (DATABASE_URL, the local default, or a throwaway
cluster); the full dataset is built in schema matrx_bench when missing.";

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Report,
    Sweep,
    Pipeline,
}

/// The command line: `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<(Which, usize)>> {
    let mut which = None;
    let mut rounds = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "report" | "sweep" | "pipeline" if which.is_none() => {
                which = Some(match arg.as_str() {
                    "report" => Which::Report,
                    "sweep" => Which::Sweep,
                    _ => Which::Pipeline,
                });
            }
            "--rounds" => {
                let value = it
                    .next()
                    .ok_or_else(|| BenchError::Usage("--rounds needs a value".into()))?;
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        BenchError::Usage(format!("--rounds: {value:?} is not a positive number"))
                    })?;
                rounds = Some(n);
            }
            other => return Err(BenchError::Usage(format!("unexpected argument {other:?}"))),
        }
    }
    let which = which.unwrap_or(Which::Report);
    let rounds = rounds.unwrap_or(match which {
        Which::Report => 7,
        Which::Sweep | Which::Pipeline => 9,
    });
    Ok(Some((which, rounds)))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (which, rounds) = match parse_args(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("joined-report: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(which, rounds) {
        eprintln!("joined-report: error: {e}");
        std::process::exit(1);
    }
}

fn run(which: Which, rounds: usize) -> Result<()> {
    // Two workers, as the measurements in docs/BENCHMARKS.md were taken.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let ctx = matrx_orm_bench::setup::prepared(Scale::Full).await?;
        match which {
            Which::Report => report(&ctx, rounds).await,
            Which::Sweep => sweep(&ctx, rounds).await,
            Which::Pipeline => pipeline(&ctx, rounds).await,
        }
    })
}

/// Customers with their orders (the bench models have no such relation).
#[derive(Model, Debug)]
#[orm(table = "customers")]
pub struct DeepCustomer {
    #[orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub referred_by: Option<i64>,
    #[orm(has_many(foreign_key = "customer_id"))]
    pub orders: Many<Order>,
}

/// Products with every item that sold them.
#[derive(Model, Debug)]
#[orm(table = "products")]
pub struct WideProduct {
    #[orm(primary_key)]
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price_cents: i32,
    #[orm(has_many(foreign_key = "product_id"))]
    pub items: Many<OrderItem>,
}

/// Deep and narrow: 20 customers, their orders, items, products, stock rows and
/// warehouses (five edges deep).
const DEEP_CUSTOMERS: i64 = 20;

fn missing() -> BenchError {
    BenchError::other("relation not loaded")
}

type Sums = Vec<i64>;

fn deep_walk(customers: &[DeepCustomer]) -> Result<Sums> {
    let mut v = vec![0i64; 10];
    for c in customers {
        v[0] += 1;
        v[1] += c.id;
        for (pos, o) in (1..).zip(c.orders.get().ok_or_else(missing)?) {
            v[2] += 1;
            v[3] += pos * o.id;
            for (pos, i) in (1..).zip(o.items.get().ok_or_else(missing)?) {
                v[4] += 1;
                v[5] += pos * i.id;
                let p = i.product.get().ok_or_else(missing)?;
                v[6] += i64::from(p.price_cents);
                for (pos, s) in (1..).zip(p.stock.get().ok_or_else(missing)?) {
                    v[7] += 1;
                    v[8] += pos * i64::from(s.qty);
                    v[9] += s.warehouse.get().ok_or_else(missing)?.name.chars().count() as i64;
                }
            }
        }
    }
    Ok(v)
}

fn wide_walk(products: &[WideProduct]) -> Result<Sums> {
    let mut v = vec![0i64; 5];
    for p in products {
        v[0] += 1;
        v[1] += p.id;
        for (pos, i) in (1..).zip(p.items.get().ok_or_else(missing)?) {
            v[2] += 1;
            v[3] += pos * i.id;
            v[4] += i64::from(i.quantity);
        }
    }
    Ok(v)
}

fn deep_query(mode: Mode) -> Select<DeepCustomer> {
    let tree = DeepCustomer::ORDERS
        .with(Order::ITEMS.with(OrderItem::PRODUCT.with(Product::STOCK.with(Stock::WAREHOUSE))));
    mode.add(
        DeepCustomer::query()
            .filter(DeepCustomer::ID.lte(DEEP_CUSTOMERS))
            .order_by(DeepCustomer::ID.asc()),
        tree,
    )
}

fn wide_query(mode: Mode) -> Select<WideProduct> {
    mode.add(
        WideProduct::query().order_by(WideProduct::ID.asc()),
        WideProduct::ITEMS,
    )
}

// ---- hand-written tokio-postgres for the two extra shapes ------------------------

async fn q(c: &tokio_postgres::Client, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
    Ok(c.query(sql, p).await?)
}

/// Column `i` of every row.
fn column<T: for<'r> FromSql<'r>>(rows: &[Row], i: usize) -> Result<Vec<T>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(i))
        .collect::<Result<_, _>>()?)
}

fn group(rows: &[Row], key: usize) -> Result<HashMap<i64, Vec<usize>>> {
    let mut out: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        out.entry(r.try_get(key)?).or_default().push(i);
    }
    Ok(out)
}

/// Six statements, one per level, assembled by hand.
async fn deep_handwritten(c: &tokio_postgres::Client) -> Result<Sums> {
    let customers = q(
        c,
        "SELECT id, name, email, created_at, referred_by FROM customers WHERE id <= $1 ORDER BY id",
        &[&DEEP_CUSTOMERS],
    )
    .await?;
    let cids = column::<i64>(&customers, 0)?;
    let orders = q(c, "SELECT id, customer_id, status, placed_at, total_cents FROM orders WHERE customer_id = ANY($1) ORDER BY id", &[&cids]).await?;
    let oids = column::<i64>(&orders, 0)?;
    let items = q(c, "SELECT id, order_id, product_id, quantity, unit_price_cents FROM order_items WHERE order_id = ANY($1) ORDER BY id", &[&oids]).await?;
    let mut pids = column::<i64>(&items, 2)?;
    pids.sort_unstable();
    pids.dedup();
    let products = q(
        c,
        "SELECT id, sku, name, price_cents FROM products WHERE id = ANY($1)",
        &[&pids],
    )
    .await?;
    let stock = q(c, "SELECT product_id, region, code, qty FROM stock WHERE product_id = ANY($1) ORDER BY product_id, region, code", &[&pids]).await?;
    let mut wkeys = stock
        .iter()
        .map(|r| Ok((r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<(String, i32)>>>()?;
    wkeys.sort();
    wkeys.dedup();
    let (regions, codes): (Vec<String>, Vec<i32>) = wkeys.into_iter().unzip();
    let warehouses = q(c, "SELECT w.region, w.code, w.name FROM warehouses w JOIN unnest($1::text[], $2::int4[]) AS k(region, code) ON (w.region, w.code) = (k.region, k.code)", &[&regions, &codes]).await?;
    // Decode every column, index by key, then walk.
    struct P {
        price: i32,
        _sku: String,
        _name: String,
    }
    let mut prods: HashMap<i64, P> = HashMap::new();
    for r in &products {
        prods.insert(
            r.try_get(0)?,
            P {
                _sku: r.try_get(1)?,
                _name: r.try_get(2)?,
                price: r.try_get(3)?,
            },
        );
    }
    let mut whs: HashMap<(String, i32), String> = HashMap::new();
    for r in &warehouses {
        whs.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    let orders_by = group(&orders, 1)?;
    let items_by = group(&items, 1)?;
    let stock_by = group(&stock, 0)?;
    let mut v = vec![0i64; 10];
    for cr in &customers {
        let (id, _n, _e, _t, _r): (i64, String, String, DateTime<Utc>, Option<i64>) = (
            cr.try_get(0)?,
            cr.try_get(1)?,
            cr.try_get(2)?,
            cr.try_get(3)?,
            cr.try_get(4)?,
        );
        v[0] += 1;
        v[1] += id;
        for (pos, &oi) in (1..).zip(orders_by.get(&id).map(Vec::as_slice).unwrap_or(&[])) {
            let o = &orders[oi];
            let (oid, _s, _p, _t): (i64, String, DateTime<Utc>, i64) =
                (o.try_get(0)?, o.try_get(2)?, o.try_get(3)?, o.try_get(4)?);
            v[2] += 1;
            v[3] += pos * oid;
            for (pos, &ii) in (1..).zip(items_by.get(&oid).map(Vec::as_slice).unwrap_or(&[])) {
                let it = &items[ii];
                let (iid, pid, _q, _u): (i64, i64, i32, i32) = (
                    it.try_get(0)?,
                    it.try_get(2)?,
                    it.try_get(3)?,
                    it.try_get(4)?,
                );
                v[4] += 1;
                v[5] += pos * iid;
                v[6] += i64::from(prods.get(&pid).ok_or_else(missing)?.price);
                for (pos, &si) in (1..).zip(stock_by.get(&pid).map(Vec::as_slice).unwrap_or(&[])) {
                    let s = &stock[si];
                    let (region, code, qty): (String, i32, i32) =
                        (s.try_get(1)?, s.try_get(2)?, s.try_get(3)?);
                    v[7] += 1;
                    v[8] += pos * i64::from(qty);
                    v[9] += whs
                        .get(&(region, code))
                        .ok_or_else(missing)?
                        .chars()
                        .count() as i64;
                }
            }
        }
    }
    Ok(v)
}

/// Two statements: the products, then every item of theirs.
async fn wide_handwritten(c: &tokio_postgres::Client) -> Result<Sums> {
    let products = q(
        c,
        "SELECT id, sku, name, price_cents FROM products ORDER BY id",
        &[],
    )
    .await?;
    let pids = column::<i64>(&products, 0)?;
    let items = q(c, "SELECT id, order_id, product_id, quantity, unit_price_cents FROM order_items WHERE product_id = ANY($1) ORDER BY id", &[&pids]).await?;
    let by = group(&items, 2)?;
    let mut v = vec![0i64; 5];
    for p in &products {
        let (id, _s, _n, _c): (i64, String, String, i32) =
            (p.try_get(0)?, p.try_get(1)?, p.try_get(2)?, p.try_get(3)?);
        v[0] += 1;
        v[1] += id;
        for (pos, &ii) in (1..).zip(by.get(&id).map(Vec::as_slice).unwrap_or(&[])) {
            let it = &items[ii];
            let (iid, _o, _p, qty, _u): (i64, i64, i64, i32, i32) = (
                it.try_get(0)?,
                it.try_get(1)?,
                it.try_get(2)?,
                it.try_get(3)?,
                it.try_get(4)?,
            );
            v[2] += 1;
            v[3] += pos * iid;
            v[4] += i64::from(qty);
        }
    }
    Ok(v)
}

// ---- select_related with JSON aggregates, decoded by hand ------------------------

type ItemJ = (
    i64,
    i64,
    i64,
    i32,
    i32,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i32>,
);
type StockJ = (
    i64,
    String,
    i32,
    i32,
    Option<String>,
    Option<i32>,
    Option<String>,
);

fn sort_by_id<T: Model>(v: &mut [Arc<T>]) {
    v.sort_by_key(|t| t.key());
}

async fn orders_json(db: &Db, limit: Option<u64>) -> Result<Vec<Order>> {
    let sql = orders_query(Mode::Joined, limit).joined_statement(AggregateEncoding::Json)?;
    let params: Vec<&(dyn ToSql + Sync)> = sql.params.iter().map(|p| p.as_sql()).collect();
    let rows = db.query(&sql.text, &params).await?;
    let mut customers: HashMap<i64, Arc<Customer>> = HashMap::new();
    let mut products: HashMap<i64, Arc<Product>> = HashMap::new();
    let mut tags: HashMap<i64, Arc<Tag>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let order = Order::decode(row, 0)?;
        let cid: i64 = row.try_get(5)?;
        let customer = match customers.get(&cid) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(Customer::decode(row, 5)?);
                customers.insert(cid, c.clone());
                c
            }
        };
        order.customer.fill(Some(customer));
        let items: Option<Json<Vec<ItemJ>>> = row.try_get(10)?;
        let mut list = Vec::new();
        for (id, order_id, product_id, quantity, unit_price_cents, pid, sku, name, price) in
            items.map(|j| j.0).unwrap_or_default()
        {
            let product = pid.map(|pid| {
                products
                    .entry(pid)
                    .or_insert_with(|| {
                        Arc::new(Product {
                            id: pid,
                            sku: sku.unwrap_or_default(),
                            name: name.unwrap_or_default(),
                            price_cents: price.unwrap_or_default(),
                            stock: Many::default(),
                            warehouses: Many::default(),
                        })
                    })
                    .clone()
            });
            list.push(Arc::new(OrderItem {
                id,
                order_id,
                product_id,
                quantity,
                unit_price_cents,
                product: One::loaded(product),
            }));
        }
        sort_by_id(&mut list);
        order.items.fill(list);
        let tag_rows: Option<Json<Vec<(i64, String)>>> = row.try_get(11)?;
        let mut list = Vec::new();
        for (id, name) in tag_rows.map(|j| j.0).unwrap_or_default() {
            list.push(
                tags.entry(id)
                    .or_insert_with(|| Arc::new(Tag { id, name }))
                    .clone(),
            );
        }
        sort_by_id(&mut list);
        order.tags.fill(list);
        out.push(order);
    }
    Ok(out)
}

async fn products_json(db: &Db) -> Result<Vec<Product>> {
    let sql = products_query(Mode::Joined).joined_statement(AggregateEncoding::Json)?;
    let params: Vec<&(dyn ToSql + Sync)> = sql.params.iter().map(|p| p.as_sql()).collect();
    let rows = db.query(&sql.text, &params).await?;
    let mut whs: HashMap<(String, i32), Arc<Warehouse>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let product = Product::decode(row, 0)?;
        let stock: Option<Json<Vec<StockJ>>> = row.try_get(4)?;
        let mut list = Vec::new();
        for (product_id, region, code, qty, wr, wc, wn) in stock.map(|j| j.0).unwrap_or_default() {
            let wh = match (wr, wc, wn) {
                (Some(r), Some(c), Some(n)) => Some(
                    whs.entry((r.clone(), c))
                        .or_insert_with(|| {
                            Arc::new(Warehouse {
                                region: r,
                                code: c,
                                name: n,
                            })
                        })
                        .clone(),
                ),
                _ => None,
            };
            list.push(Arc::new(Stock {
                product_id,
                region,
                code,
                qty,
                warehouse: One::loaded(wh),
            }));
        }
        sort_by_id(&mut list);
        product.stock.fill(list);
        let links: Option<Json<Vec<(String, i32, String)>>> = row.try_get(5)?;
        let mut list = Vec::new();
        for (region, code, name) in links.map(|j| j.0).unwrap_or_default() {
            list.push(
                whs.entry((region.clone(), code))
                    .or_insert_with(|| Arc::new(Warehouse { region, code, name }))
                    .clone(),
            );
        }
        sort_by_id(&mut list);
        product.warehouses.fill(list);
        out.push(product);
    }
    Ok(out)
}

// ---- a network round trip, simulated --------------------------------------------

/// A `Db` whose every statement waits `rtt` first (a tokio timer: at least 1 ms).
struct Delayed<'a> {
    db: &'a Db,
    rtt: Duration,
}

impl Executor for Delayed<'_> {
    type Atomic<'t>
        = matrx_orm::Transaction<'static>
    where
        Self: 't;

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> matrx_orm::Result<Vec<Row>> {
        tokio::time::sleep(self.rtt).await;
        self.db.query(sql, params).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> matrx_orm::Result<u64> {
        tokio::time::sleep(self.rtt).await;
        self.db.execute(sql, params).await
    }

    fn scope(&self) -> &Scope {
        self.db.scope()
    }

    async fn atomic(&self) -> matrx_orm::Result<matrx_orm::Transaction<'static>> {
        self.db.atomic().await
    }
}

/// A load whose statements all run on one connection (`Db::one_connection`).
fn orm_one_connection<'a, M: Model, F>(db: &'a Db, query: Select<M>, walk: F) -> Run<'a>
where
    F: Fn(&[M]) -> Result<Sums> + Copy + Send + Sync + 'a,
{
    Box::new(move || {
        let query = query.clone();
        Box::pin(async move { walk(&query.all(&db.one_connection()).await?) })
    })
}

/// W1 and W2 by prefetch and balanced, a load's statements on one connection
/// (`Db::one_connection`) against a pooled connection per statement (a plain `Db`),
/// interleaved with the hand-written baseline.
async fn pipeline(ctx: &BenchContext, rounds: usize) -> Result<()> {
    let db = &matrx_orm_bench::orm::connect(ctx, 8).await?;
    let w1 = Some(ctx.params.w1_orders.max(0) as u64);
    for (w, limit) in [(Workload::W1, w1), (Workload::W2, None)] {
        let loader = handwritten_loader(ctx, w).await?;
        measure(
            &format!("{w}: one connection per load against one per statement"),
            &[db],
            rounds,
            vec![
                ("handwritten", handwritten(&loader)),
                (
                    "prefetch, one connection",
                    orm_one_connection(db, orders_query(Mode::Prefetch, limit), orders_sums),
                ),
                (
                    "prefetch, pooled per statement",
                    orm(db, orders_query(Mode::Prefetch, limit), orders_sums),
                ),
                (
                    "balanced, one connection",
                    orm_one_connection(db, orders_query(Mode::Balanced, limit), orders_sums),
                ),
                (
                    "balanced, pooled per statement",
                    orm(db, orders_query(Mode::Balanced, limit), orders_sums),
                ),
            ],
        )
        .await?;
    }
    Ok(())
}

// ---- measuring ------------------------------------------------------------------

type Run<'a> = Box<dyn Fn() -> BoxFuture<'a, Result<Sums>> + 'a>;

struct Measured {
    name: &'static str,
    times: Vec<f64>,
    sums: Sums,
    queries: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sums_of(c: Checksums) -> Sums {
    c.iter().map(|(_, v)| v).collect()
}

/// Interleaved rounds (one warm-up), so drift on a shared machine hits all alike.
async fn measure<'a>(
    title: &str,
    dbs: &[&Db],
    rounds: usize,
    runs: Vec<(&'static str, Run<'a>)>,
) -> Result<()> {
    let count = || dbs.iter().map(|d| d.query_count()).sum::<u64>();
    let mut rows: Vec<Measured> = runs
        .iter()
        .map(|(n, _)| Measured {
            name: n,
            times: Vec::new(),
            sums: Vec::new(),
            queries: 0,
        })
        .collect();
    for round in 0..=rounds {
        for (i, (_, run)) in runs.iter().enumerate() {
            let before = count();
            let started = Instant::now();
            let sums = run()
                .await
                .map_err(|e| BenchError::other(format!("{title} {}: {e}", rows[i].name)))?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if round == 0 {
                rows[i].sums = sums;
                rows[i].queries = count() - before;
            } else {
                if rows[i].sums != sums {
                    return Err(BenchError::other(format!(
                        "{title} {}: the graph changed between rounds",
                        rows[i].name
                    )));
                }
                rows[i].times.push(ms);
            }
        }
    }
    let base = median(&rows[0].times);
    println!(
        "\n{title} ({rounds} interleaved rounds; median ms, ratio to {})",
        rows[0].name
    );
    for r in &rows {
        let same = if r.sums == rows[0].sums {
            "same graph"
        } else {
            "GRAPH DIFFERS"
        };
        let queries = if r.name.starts_with("handwritten") {
            String::from("-")
        } else {
            r.queries.to_string()
        };
        println!(
            "  {:<34} {:>9.2} ms  {:>5.2}x  queries {:>2}  {same}",
            r.name,
            median(&r.times),
            median(&r.times) / base,
            queries
        );
    }
    let differ: Vec<&str> = rows
        .iter()
        .filter(|r| r.sums != rows[0].sums)
        .map(|r| r.name)
        .collect();
    if !differ.is_empty() {
        return Err(BenchError::other(format!(
            "{title}: the graph of {} differs from {}'s",
            differ.join(", "),
            rows[0].name
        )));
    }
    Ok(())
}

fn orm<'a, M: Model, F>(db: &'a Db, query: Select<M>, walk: F) -> Run<'a>
where
    F: Fn(&[M]) -> Result<Sums> + Copy + Send + Sync + 'a,
{
    Box::new(move || {
        let query = query.clone();
        Box::pin(async move { walk(&query.all(db).await?) })
    })
}

fn orm_delayed<'a, M: Model, F>(db: &'a Db, rtt: Duration, query: Select<M>, walk: F) -> Run<'a>
where
    F: Fn(&[M]) -> Result<Sums> + Copy + Send + Sync + 'a,
{
    Box::new(move || {
        let query = query.clone();
        Box::pin(async move { walk(&query.all(&Delayed { db, rtt }).await?) })
    })
}

fn orders_sums(o: &[Order]) -> Result<Sums> {
    Ok(sums_of(Orders(o.to_vec_shallow()).checksums()))
}

/// A `LoadedGraph` wants owned orders; the walk only reads, so move them through
/// a cheap shell (the loaded relations are `Arc`s).
trait Shallow<T> {
    fn to_vec_shallow(&self) -> Vec<T>;
}

impl Shallow<Order> for [Order] {
    fn to_vec_shallow(&self) -> Vec<Order> {
        self.iter()
            .map(|o| Order {
                id: o.id,
                customer_id: o.customer_id,
                status: String::new(),
                placed_at: o.placed_at,
                total_cents: o.total_cents,
                customer: o.customer.clone(),
                items: o.items.clone(),
                tags: o.tags.clone(),
            })
            .collect()
    }
}

impl Shallow<Product> for [Product] {
    fn to_vec_shallow(&self) -> Vec<Product> {
        self.iter()
            .map(|p| Product {
                id: p.id,
                sku: String::new(),
                name: String::new(),
                price_cents: p.price_cents,
                stock: p.stock.clone(),
                warehouses: p.warehouses.clone(),
            })
            .collect()
    }
}

fn products_sums(p: &[Product]) -> Result<Sums> {
    Ok(sums_of(Products(p.to_vec_shallow()).checksums()))
}

/// The benchmark's own hand-written loader for `w`, set up once.
async fn handwritten_loader(
    ctx: &BenchContext,
    w: Workload,
) -> Result<tokio::sync::Mutex<Box<dyn Loader>>> {
    let setup = find("handwritten")
        .and_then(|s| s.setup_for(w))
        .ok_or_else(|| BenchError::other(format!("no hand-written loader for {w}")))?;
    Ok(tokio::sync::Mutex::new(setup(ctx).await?))
}

fn handwritten(loader: &tokio::sync::Mutex<Box<dyn Loader>>) -> Run<'_> {
    Box::new(move || {
        Box::pin(async move {
            let mut l = loader.lock().await;
            Ok(sums_of(l.load().await?.checksums()))
        })
    })
}

/// W1's tree on the first `n` orders with every to-one edge joined (forced) and
/// every to-many edge batched.
fn to_one_joined(n: u64) -> Select<Order> {
    Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER.joined())
        .prefetch(Order::ITEMS.with(OrderItem::PRODUCT.joined()))
        .prefetch(Order::TAGS)
        .limit(n)
}

/// Where joining to-one edges stops paying: W1's tree on growing pages, on the local
/// socket and with every statement delayed 1 ms (what sets `BALANCED_JOIN_LIMIT`).
async fn sweep(ctx: &BenchContext, rounds: usize) -> Result<()> {
    let db = &matrx_orm_bench::orm::connect(ctx, 8).await?;
    for rtt in [0u64, 1] {
        for n in [10u64, 100, 300, 1_000, 3_000, 20_000] {
            let rtt = Duration::from_millis(rtt);
            let runs: Vec<(&'static str, Run<'_>)> = if rtt.is_zero() {
                vec![
                    (
                        "prefetch",
                        orm(db, orders_query(Mode::Prefetch, Some(n)), orders_sums),
                    ),
                    ("to-one joined", orm(db, to_one_joined(n), orders_sums)),
                    (
                        "balanced",
                        orm(db, orders_query(Mode::Balanced, Some(n)), orders_sums),
                    ),
                ]
            } else {
                vec![
                    (
                        "prefetch",
                        orm_delayed(db, rtt, orders_query(Mode::Prefetch, Some(n)), orders_sums),
                    ),
                    (
                        "to-one joined",
                        orm_delayed(db, rtt, to_one_joined(n), orders_sums),
                    ),
                    (
                        "balanced",
                        orm_delayed(db, rtt, orders_query(Mode::Balanced, Some(n)), orders_sums),
                    ),
                ]
            };
            measure(
                &format!("W1 tree, first {n} orders, statements delayed {rtt:?}"),
                &[db],
                rounds,
                runs,
            )
            .await?;
        }
    }
    Ok(())
}

/// Every strategy on five tree shapes, the JSON encoding, the policy variants, the
/// server's JIT and a simulated round trip.
async fn report(ctx: &BenchContext, rounds: usize) -> Result<()> {
    let url = ctx.database_url.as_str();
    let db = matrx_orm_bench::orm::connect(ctx, 8).await?;
    let client = matrx_orm_bench::db::connect(url).await?;
    client
        .batch_execute(&format!("SET search_path = {}", ctx.schema))
        .await?;
    let w1 = Some(ctx.params.w1_orders.max(0) as u64);
    let client = &client;
    let db = &db;

    // W1, W2: every strategy, both encodings, and the policy variants.
    for (w, limit) in [(Workload::W1, w1), (Workload::W2, None)] {
        let paged = |q: Select<Order>| match limit {
            Some(n) => q.limit(n),
            None => q,
        };
        // Forced: every to-one edge joined (the customer into the orders, the
        // product into the items' statement), every to-many edge batched.
        let to_one_joined = paged(
            Order::query()
                .order_by(Order::ID.asc())
                .prefetch(Order::CUSTOMER.joined())
                .prefetch(Order::ITEMS.with(OrderItem::PRODUCT.joined()))
                .prefetch(Order::TAGS),
        );
        // Forced: to-many edges joined, to-one edges batched.
        let to_many_joined = paged(
            Order::query()
                .order_by(Order::ID.asc())
                .select_related(Order::CUSTOMER.batched())
                .select_related(Order::ITEMS.with(OrderItem::PRODUCT.batched()))
                .select_related(Order::TAGS),
        );
        let loader = handwritten_loader(ctx, w).await?;
        measure(
            &format!("{w}"),
            &[db],
            rounds,
            vec![
                ("handwritten", handwritten(&loader)),
                (
                    "prefetch (all batched)",
                    orm(db, orders_query(Mode::Prefetch, limit), orders_sums),
                ),
                (
                    "select_related (record[])",
                    orm(db, orders_query(Mode::Joined, limit), orders_sums),
                ),
                (
                    "select_related (JSON)",
                    Box::new(move || {
                        Box::pin(async move { orders_sums(&orders_json(db, limit).await?) })
                    }),
                ),
                (
                    "balanced (the default rule)",
                    orm(db, orders_query(Mode::Balanced, limit), orders_sums),
                ),
                (
                    "forced: to-one joined, to-many batched",
                    orm(db, to_one_joined, orders_sums),
                ),
                (
                    "forced: to-many joined, to-one batched",
                    orm(db, to_many_joined, orders_sums),
                ),
            ],
        )
        .await?;
    }
    let loader = handwritten_loader(ctx, Workload::W3).await?;
    measure(
        "W3",
        &[db],
        rounds,
        vec![
            ("handwritten", handwritten(&loader)),
            (
                "prefetch (all batched)",
                orm(db, products_query(Mode::Prefetch), products_sums),
            ),
            (
                "select_related (record[])",
                orm(db, products_query(Mode::Joined), products_sums),
            ),
            (
                "select_related (JSON)",
                Box::new(move || Box::pin(async move { products_sums(&products_json(db).await?) })),
            ),
            (
                "balanced (the default rule)",
                orm(db, products_query(Mode::Balanced), products_sums),
            ),
            (
                "forced: to-one joined, to-many batched",
                orm(
                    db,
                    Product::query()
                        .order_by(Product::ID.asc())
                        .prefetch(Product::STOCK.with(Stock::WAREHOUSE.joined()))
                        .prefetch(Product::WAREHOUSES),
                    products_sums,
                ),
            ),
            (
                "forced: to-many joined, to-one batched",
                orm(
                    db,
                    Product::query()
                        .order_by(Product::ID.asc())
                        .select_related(Product::STOCK.with(Stock::WAREHOUSE.batched()))
                        .select_related(Product::WAREHOUSES),
                    products_sums,
                ),
            ),
        ],
    )
    .await?;
    measure(
        "deep and narrow: 20 customers > orders > items > product > stock > warehouse",
        &[db],
        rounds,
        vec![
            (
                "handwritten",
                Box::new(move || Box::pin(deep_handwritten(client))),
            ),
            (
                "prefetch (all batched)",
                orm(db, deep_query(Mode::Prefetch), deep_walk),
            ),
            (
                "select_related",
                orm(db, deep_query(Mode::Joined), deep_walk),
            ),
            ("balanced", orm(db, deep_query(Mode::Balanced), deep_walk)),
        ],
    )
    .await?;
    measure(
        "wide and shallow: 1,000 products > their 100,261 items",
        &[db],
        rounds,
        vec![
            (
                "handwritten",
                Box::new(move || Box::pin(wide_handwritten(client))),
            ),
            (
                "prefetch (all batched)",
                orm(db, wide_query(Mode::Prefetch), wide_walk),
            ),
            (
                "select_related",
                orm(db, wide_query(Mode::Joined), wide_walk),
            ),
            ("balanced", orm(db, wide_query(Mode::Balanced), wide_walk)),
        ],
    )
    .await?;

    // PostgreSQL's JIT fires on the estimated cost of the lateral aggregates.
    let no_jit_ctx = BenchContext {
        database_url: format!(
            "{url}{}options=-c%20jit%3Doff",
            if url.contains('?') { '&' } else { '?' }
        ),
        ..ctx.clone()
    };
    let no_jit = &matrx_orm_bench::orm::connect(&no_jit_ctx, 8).await?;
    measure(
        "W2 select_related, server JIT on (default) and off",
        &[db, no_jit],
        rounds,
        vec![
            (
                "jit on",
                orm(db, orders_query(Mode::Joined, None), orders_sums),
            ),
            (
                "jit off (options=-c jit=off)",
                orm(no_jit, orders_query(Mode::Joined, None), orders_sums),
            ),
            (
                "prefetch, jit off",
                orm(no_jit, orders_query(Mode::Prefetch, None), orders_sums),
            ),
        ],
    )
    .await?;

    // A network between client and server: every statement waits 1 ms first.
    let rtt = Duration::from_millis(1);
    measure(
        "W1 with every statement delayed 1 ms (simulated round trip)",
        &[db],
        rounds,
        vec![
            (
                "prefetch (all batched)",
                orm_delayed(db, rtt, orders_query(Mode::Prefetch, w1), orders_sums),
            ),
            (
                "select_related",
                orm_delayed(db, rtt, orders_query(Mode::Joined, w1), orders_sums),
            ),
            (
                "balanced",
                orm_delayed(db, rtt, orders_query(Mode::Balanced, w1), orders_sums),
            ),
        ],
    )
    .await?;
    measure(
        "deep and narrow, every statement delayed 1 ms",
        &[db],
        rounds,
        vec![
            (
                "prefetch (all batched)",
                orm_delayed(db, rtt, deep_query(Mode::Prefetch), deep_walk),
            ),
            (
                "select_related",
                orm_delayed(db, rtt, deep_query(Mode::Joined), deep_walk),
            ),
            (
                "balanced",
                orm_delayed(db, rtt, deep_query(Mode::Balanced), deep_walk),
            ),
        ],
    )
    .await?;
    Ok(())
}
