//! `prefetch`: the whole graph with one query per relation edge.
//!
//! ```ignore
//! Order::query().order_by(Order::ID.asc()).limit(1000)
//!     .prefetch(Order::CUSTOMER)
//!     .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
//!     .prefetch(Order::TAGS)
//!     .all(&db)
//! ```

use matrx_orm::{Db, ModelExt, RelationExt};

use crate::error::Result;
use crate::orm::graph::{Orders, Products};
use crate::orm::models::{Order, OrderItem, Product, Stock};
use crate::strategy::{BenchContext, BoxFuture, LoadedGraph, Loader, StrategyDef};

/// The registry entry.
pub const STRATEGY: StrategyDef = StrategyDef {
    name: "prefetch",
    w1: Some(setup_w1),
    w2: Some(setup_w2),
    w3: Some(setup_w3),
    w4: None,
    w5: None,
};

enum Shape {
    Orders(Option<u64>),
    Products,
}

struct PrefetchLoader {
    db: Db,
    shape: Shape,
}

impl Loader for PrefetchLoader {
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>> {
        Box::pin(async move {
            Ok(match self.shape {
                Shape::Orders(limit) => {
                    Box::new(Orders(load_orders(&self.db, limit).await?)) as Box<dyn LoadedGraph>
                }
                Shape::Products => Box::new(Products(load_products(&self.db).await?)),
            })
        })
    }

    fn client_query_count(&self) -> Option<u64> {
        Some(self.db.query_count())
    }
}

/// W1 (with a limit) or W2 (without): 5 queries.
pub async fn load_orders(db: &Db, limit: Option<u64>) -> Result<Vec<Order>> {
    let mut query = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
        .prefetch(Order::TAGS);
    if let Some(n) = limit {
        query = query.limit(n);
    }
    Ok(query.all(db).await?)
}

/// W3: 4 queries.
pub async fn load_products(db: &Db) -> Result<Vec<Product>> {
    Ok(Product::query()
        .order_by(Product::ID.asc())
        .prefetch(Product::STOCK.with(Stock::WAREHOUSE))
        .prefetch(Product::WAREHOUSES)
        .all(db)
        .await?)
}

async fn setup(ctx: &BenchContext, shape: Shape) -> Result<Box<dyn Loader>> {
    let db = super::connect(ctx, 8).await?;
    Ok(Box::new(PrefetchLoader { db, shape }))
}

fn setup_w1(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(
        ctx,
        Shape::Orders(Some(ctx.params.w1_orders.max(0) as u64)),
    ))
}

fn setup_w2(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Orders(None)))
}

fn setup_w3(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, Shape::Products))
}
