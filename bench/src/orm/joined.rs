//! `select_related` and `balanced`: the prefetch trees of [`super::prefetch`], loaded
//! inside the root query (every edge joined: one query) or by the balanced default
//! (to-one edges joined, to-many edges batched with their to-one edges joined in).
//! The `joined-report` binary (`src/bin/joined_report.rs`) measures them on more tree
//! shapes for docs/BENCHMARKS.md.
//!
//! ```ignore
//! Order::query().order_by(Order::ID.asc()).limit(1000)
//!     .select_related(Order::CUSTOMER)
//!     .select_related(Order::ITEMS.with(OrderItem::PRODUCT))
//!     .select_related(Order::TAGS)
//!     .all(&db)
//! ```

use matrx_orm::{Db, JoinedShape, Model, ModelExt, RelationExt, Select};

use crate::error::Result;
use crate::orm::graph::{Orders, Products};
use crate::orm::models::{Order, OrderItem, Product, Stock};
use crate::strategy::{BenchContext, BoxFuture, LoadedGraph, Loader, SetupFn, StrategyDef};

/// `select_related`: the whole tree in one query.
pub const SELECT_RELATED: StrategyDef = StrategyDef {
    name: "select_related",
    w1: Some(setups::<0>()[0]),
    w2: Some(setups::<0>()[1]),
    w3: Some(setups::<0>()[2]),
    w4: None,
    w5: None,
};

/// `balanced`: to-one edges joined, to-many edges batched.
pub const BALANCED: StrategyDef = StrategyDef {
    name: "balanced",
    w1: Some(setups::<1>()[0]),
    w2: Some(setups::<1>()[1]),
    w3: Some(setups::<1>()[2]),
    w4: None,
    w5: None,
};

/// `select_related` in the shape it had before the union shape (every edge in its
/// parent's row, to-many edges as `record[]` aggregates), through the hidden
/// `Select::joined_shape`: to measure the two shapes in one build. Not a strategy of
/// its own for users.
pub const SELECT_RELATED_AGGREGATES: StrategyDef = StrategyDef {
    name: "select_related_aggregates",
    w1: Some(setups::<3>()[0]),
    w2: Some(setups::<3>()[1]),
    w3: Some(setups::<3>()[2]),
    w4: None,
    w5: None,
};

/// `select_related` in the union shape with to-one edges joined into their parent's
/// branch instead of branches of their own (hidden `Select::joined_shape`): the
/// measurement behind `policy::union_branch`.
pub const SELECT_RELATED_UNION_TO_ONE_JOINED: StrategyDef = StrategyDef {
    name: "select_related_union_to_one_joined",
    w1: Some(setups::<4>()[0]),
    w2: Some(setups::<4>()[1]),
    w3: Some(setups::<4>()[2]),
    w4: None,
    w5: None,
};

/// `select_related` in the union shape with every fitting edge a branch, to-one edges
/// included whatever the root's size (hidden `Select::joined_shape`): the other half
/// of the measurement behind `policy::union_branch`.
pub const SELECT_RELATED_UNION_TO_ONE_BRANCHED: StrategyDef = StrategyDef {
    name: "select_related_union_to_one_branched",
    w1: Some(setups::<5>()[0]),
    w2: Some(setups::<5>()[1]),
    w3: Some(setups::<5>()[2]),
    w4: None,
    w5: None,
};

/// How a tree is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `.select_related(tree)`.
    Joined,
    /// `.balanced(tree)`.
    Balanced,
    /// `.prefetch(tree)`.
    Prefetch,
    /// `.select_related(tree)` in the aggregate shape (before the union shape).
    JoinedAggregates,
    /// `.select_related(tree)`, union shape, to-one edges joined into their parent's branch.
    JoinedUnionToOneJoined,
    /// `.select_related(tree)`, union shape, to-one edges as branches.
    JoinedUnionToOneBranched,
}

impl Mode {
    const fn of(n: u8) -> Mode {
        match n {
            0 => Mode::Joined,
            1 => Mode::Balanced,
            3 => Mode::JoinedAggregates,
            4 => Mode::JoinedUnionToOneJoined,
            5 => Mode::JoinedUnionToOneBranched,
            _ => Mode::Prefetch,
        }
    }

    /// The statement shape this mode asks `select_related` for.
    fn shape(self) -> JoinedShape {
        match self {
            Mode::JoinedAggregates => JoinedShape::Aggregates,
            Mode::JoinedUnionToOneJoined => JoinedShape::UnionToOneJoined,
            Mode::JoinedUnionToOneBranched => JoinedShape::UnionToOneBranched,
            _ => JoinedShape::Auto,
        }
    }

    /// Adds `tree` to `query` the way this mode loads it.
    pub fn add<M: Model>(
        self,
        query: Select<M>,
        tree: impl matrx_orm::IntoPrefetch<M>,
    ) -> Select<M> {
        match self {
            Mode::Joined
            | Mode::JoinedAggregates
            | Mode::JoinedUnionToOneJoined
            | Mode::JoinedUnionToOneBranched => query.select_related(tree),
            Mode::Balanced => query.balanced(tree),
            Mode::Prefetch => query.prefetch(tree),
        }
    }
}

/// W1 (with a limit) or W2 (without).
pub fn orders_query(mode: Mode, limit: Option<u64>) -> Select<Order> {
    let mut query = Order::query()
        .order_by(Order::ID.asc())
        .joined_shape(mode.shape());
    query = mode.add(query, Order::CUSTOMER);
    query = mode.add(query, Order::ITEMS.with(OrderItem::PRODUCT));
    query = mode.add(query, Order::TAGS);
    if let Some(n) = limit {
        query = query.limit(n);
    }
    query
}

/// W3.
pub fn products_query(mode: Mode) -> Select<Product> {
    let query = Product::query()
        .order_by(Product::ID.asc())
        .joined_shape(mode.shape());
    let query = mode.add(query, Product::STOCK.with(Stock::WAREHOUSE));
    mode.add(query, Product::WAREHOUSES)
}

enum Shape {
    Orders(Option<u64>),
    Products,
}

struct JoinedLoader {
    db: Db,
    mode: Mode,
    shape: Shape,
}

impl Loader for JoinedLoader {
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>> {
        Box::pin(async move {
            Ok(match self.shape {
                Shape::Orders(limit) => {
                    Box::new(Orders(orders_query(self.mode, limit).all(&self.db).await?))
                        as Box<dyn LoadedGraph>
                }
                Shape::Products => {
                    Box::new(Products(products_query(self.mode).all(&self.db).await?))
                }
            })
        })
    }

    fn client_query_count(&self) -> Option<u64> {
        Some(self.db.query_count())
    }
}

async fn setup<const MODE: u8>(ctx: &BenchContext, workload: u8) -> Result<Box<dyn Loader>> {
    let db = super::connect(ctx, 8).await?;
    let shape = match workload {
        1 => Shape::Orders(Some(ctx.params.w1_orders.max(0) as u64)),
        2 => Shape::Orders(None),
        _ => Shape::Products,
    };
    Ok(Box::new(JoinedLoader {
        db,
        mode: Mode::of(MODE),
        shape,
    }))
}

fn setup_w1<const MODE: u8>(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup::<MODE>(ctx, 1))
}

fn setup_w2<const MODE: u8>(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup::<MODE>(ctx, 2))
}

fn setup_w3<const MODE: u8>(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup::<MODE>(ctx, 3))
}

const fn setups<const MODE: u8>() -> [SetupFn; 3] {
    [setup_w1::<MODE>, setup_w2::<MODE>, setup_w3::<MODE>]
}
