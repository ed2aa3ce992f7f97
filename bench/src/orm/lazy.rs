//! `lazy_serial` and `lazy_concurrent`: the seed's per-instance pattern — load the
//! roots, then fetch each relation of each instance (`fetch_fk` / `fetch_ifk` /
//! `fetch_m2m`), one query per instance and relation. Serial awaits each load in
//! turn; concurrent fires them together (`join_all`, like the seed's `gather`),
//! which is still one query per load. W4/W5 requests run on the pool, without a
//! session: the seed's behaviour, shown for contrast with `dataloader`.

use std::sync::Arc;

use futures_util::future::{join, try_join_all};
use matrx_orm::{Db, Executor, ModelExt};

use crate::error::Result;
use crate::orm::graph::{Orders, Products, RequestOrder, Requests, WaveOrder, Waves};
use crate::orm::models::{Customer, Order, OrderItem, Product, Stock};
use crate::strategy::{BenchContext, BoxFuture, LoadedGraph, Loader, StrategyDef};
use crate::workload::WorkloadParams;

/// `lazy_serial`: every load awaited in turn (W4/W5: serial inside each request).
pub const SERIAL: StrategyDef = StrategyDef {
    name: "lazy_serial",
    w1: Some(setup_serial_w1),
    w2: Some(setup_serial_w2),
    w3: Some(setup_serial_w3),
    w4: Some(setup_serial_w4),
    w5: Some(setup_serial_w5),
};

/// `lazy_concurrent`: the loads of all instances fired together.
pub const CONCURRENT: StrategyDef = StrategyDef {
    name: "lazy_concurrent",
    w1: Some(setup_concurrent_w1),
    w2: Some(setup_concurrent_w2),
    w3: Some(setup_concurrent_w3),
    w4: Some(setup_concurrent_w4),
    w5: Some(setup_concurrent_w5),
};

#[derive(Clone, Copy)]
enum Shape {
    Orders(Option<u64>),
    Products,
    Requests,
    Waves,
}

struct LazyLoader {
    db: Db,
    shape: Shape,
    concurrent: bool,
    params: WorkloadParams,
}

impl Loader for LazyLoader {
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>> {
        Box::pin(async move {
            let db = &self.db;
            let c = self.concurrent;
            Ok(match self.shape {
                Shape::Orders(limit) => {
                    Box::new(Orders(orders(db, limit, c).await?)) as Box<dyn LoadedGraph>
                }
                Shape::Products => Box::new(Products(products(db, c).await?)),
                Shape::Requests => {
                    Box::new(Requests(requests(db, &self.params, c, Scope::Pool).await?))
                }
                Shape::Waves => Box::new(Waves(waves(db, &self.params, c, Scope::Pool).await?)),
            })
        })
    }

    fn client_query_count(&self) -> Option<u64> {
        Some(self.db.query_count())
    }
}

/// Runs `f` on every item, serially or all at once.
async fn each<'a, T: Sync + 'a, F, Fut>(items: &'a [T], concurrent: bool, f: F) -> Result<()>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + 'a,
{
    if concurrent {
        try_join_all(items.iter().map(f)).await?;
    } else {
        for item in items {
            f(item).await?;
        }
    }
    Ok(())
}

async fn order_graph<E: Executor>(ex: &E, o: &Order, concurrent: bool) -> Result<()> {
    if concurrent {
        let (c, i, t) = futures_util::join!(
            o.fetch_fk(ex, Order::CUSTOMER),
            o.fetch_ifk(ex, Order::ITEMS),
            o.fetch_m2m(ex, Order::TAGS)
        );
        let (_, items, _) = (c?, i?, t?);
        try_join_all(items.iter().map(|i| i.fetch_fk(ex, OrderItem::PRODUCT))).await?;
    } else {
        o.fetch_fk(ex, Order::CUSTOMER).await?;
        for item in o.fetch_ifk(ex, Order::ITEMS).await? {
            item.fetch_fk(ex, OrderItem::PRODUCT).await?;
        }
        o.fetch_m2m(ex, Order::TAGS).await?;
    }
    Ok(())
}

async fn orders(db: &Db, limit: Option<u64>, concurrent: bool) -> Result<Vec<Order>> {
    let mut query = Order::query().order_by(Order::ID.asc());
    if let Some(n) = limit {
        query = query.limit(n);
    }
    let orders = query.all(db).await?;
    each(&orders, concurrent, |o| order_graph(db, o, concurrent)).await?;
    Ok(orders)
}

async fn products(db: &Db, concurrent: bool) -> Result<Vec<Product>> {
    let products = Product::query().order_by(Product::ID.asc()).all(db).await?;
    each(&products, concurrent, |p| async move {
        if concurrent {
            let (stock, warehouses) = join(
                p.fetch_ifk(db, Product::STOCK),
                p.fetch_m2m(db, Product::WAREHOUSES),
            )
            .await;
            let stock = stock?;
            warehouses?;
            try_join_all(stock.iter().map(|s| s.fetch_fk(db, Stock::WAREHOUSE))).await?;
        } else {
            for s in p.fetch_ifk(db, Product::STOCK).await? {
                s.fetch_fk(db, Stock::WAREHOUSE).await?;
            }
            p.fetch_m2m(db, Product::WAREHOUSES).await?;
        }
        Ok(())
    })
    .await?;
    Ok(products)
}

/// Where a request's per-object code runs: the pool itself (the seed's behaviour: one
/// query per call) or a session of its own (request-scoped batching).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every call is its own query.
    Pool,
    /// Each request opens a session; concurrent calls are batched.
    Session,
}

/// W4: 64 concurrent requests (tasks), per-object code.
pub(crate) async fn requests(
    db: &Db,
    params: &WorkloadParams,
    concurrent: bool,
    scope: Scope,
) -> Result<Vec<Vec<RequestOrder>>> {
    let tasks = (0..params.tasks).map(|k| {
        let db = db.clone();
        let ids = params.task_order_ids(k);
        tokio::spawn(async move {
            match scope {
                Scope::Pool => request(&db, ids, concurrent).await,
                Scope::Session => request(&db.session(), ids, concurrent).await,
            }
        })
    });
    let mut out = Vec::with_capacity(params.tasks);
    for task in tasks.collect::<Vec<_>>() {
        out.push(
            task.await
                .map_err(|e| crate::error::BenchError::other(e.to_string()))??,
        );
    }
    Ok(out)
}

async fn request_order<E: Executor>(s: &E, id: i64) -> Result<RequestOrder> {
    let order = Order::get(s, &id).await?;
    let (customer, tags) = join(
        order.fetch_fk(s, Order::CUSTOMER),
        order.fetch_m2m(s, Order::TAGS),
    )
    .await;
    let (customer, tags) = (customer?, tags?);
    Ok(RequestOrder {
        order,
        customer,
        tags,
    })
}

async fn request<E: Executor>(s: &E, ids: Vec<i64>, concurrent: bool) -> Result<Vec<RequestOrder>> {
    if concurrent {
        return try_join_all(ids.into_iter().map(|id| request_order(s, id))).await;
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(request_order(s, id).await?);
    }
    Ok(out)
}

/// W5: like W4 with a second wave (referrers and products).
pub(crate) async fn waves(
    db: &Db,
    params: &WorkloadParams,
    concurrent: bool,
    scope: Scope,
) -> Result<Vec<Vec<WaveOrder>>> {
    let tasks = (0..params.tasks).map(|k| {
        let db = db.clone();
        let ids = params.task_order_ids(k);
        tokio::spawn(async move {
            match scope {
                Scope::Pool => wave(&db, ids, concurrent).await,
                Scope::Session => wave(&db.session(), ids, concurrent).await,
            }
        })
    });
    let mut out = Vec::with_capacity(params.tasks);
    for task in tasks.collect::<Vec<_>>() {
        out.push(
            task.await
                .map_err(|e| crate::error::BenchError::other(e.to_string()))??,
        );
    }
    Ok(out)
}

async fn wave_order<E: Executor>(s: &E, id: i64) -> Result<WaveOrder> {
    let order = Order::get(s, &id).await?;
    let (customer, items) = join(
        order.fetch_fk(s, Order::CUSTOMER),
        order.fetch_ifk(s, Order::ITEMS),
    )
    .await;
    let (customer, items) = (customer?, items?);
    let referrer = async {
        match &customer {
            Some(c) => c.fetch_fk(s, Customer::REFERRER).await,
            None => Ok(None),
        }
    };
    let products = try_join_all(items.iter().map(|i| async move {
        let product = i.fetch_fk(s, OrderItem::PRODUCT).await?;
        Ok::<_, matrx_orm::Error>((Arc::clone(i), product))
    }));
    let (referrer, items) = join(referrer, products).await;
    Ok(WaveOrder {
        order,
        customer,
        referrer: referrer?,
        items: items?,
    })
}

async fn wave<E: Executor>(s: &E, ids: Vec<i64>, concurrent: bool) -> Result<Vec<WaveOrder>> {
    if concurrent {
        return try_join_all(ids.into_iter().map(|id| wave_order(s, id))).await;
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(wave_order(s, id).await?);
    }
    Ok(out)
}

async fn setup(ctx: &BenchContext, shape: Shape, concurrent: bool) -> Result<Box<dyn Loader>> {
    let pool = match shape {
        Shape::Requests | Shape::Waves => 64,
        _ => 16,
    };
    let db = super::connect(ctx, pool).await?;
    Ok(Box::new(LazyLoader {
        db,
        shape,
        concurrent,
        params: ctx.params,
    }))
}

fn w1(ctx: &BenchContext) -> Shape {
    Shape::Orders(Some(ctx.params.w1_orders.max(0) as u64))
}

fn setup_serial_w1(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, w1(ctx), false))
}
fn setup_serial_w2(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Orders(None), false))
}
fn setup_serial_w3(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Products, false))
}
fn setup_serial_w4(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Requests, false))
}
fn setup_serial_w5(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Waves, false))
}
fn setup_concurrent_w1(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, w1(ctx), true))
}
fn setup_concurrent_w2(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Orders(None), true))
}
fn setup_concurrent_w3(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Products, true))
}
fn setup_concurrent_w4(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Requests, true))
}
fn setup_concurrent_w5(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Waves, true))
}
