//! `dataloader`: W4 and W5 written as the same naive per-object code as
//! `lazy_concurrent` (get each order by key, then fetch its relations, pipelines
//! joined inside the request), but each request opens a `Session`, whose
//! request-scoped batching turns each wave of concurrent calls into one query per
//! relation edge: 3 queries per request for W4, 5 for W5.

use matrx_orm::Db;

use crate::error::Result;
use crate::orm::graph::{Requests, Waves};
use crate::orm::lazy::{requests, waves, Scope};
use crate::strategy::{BenchContext, BoxFuture, LoadedGraph, Loader, StrategyDef};
use crate::workload::WorkloadParams;

/// The registry entry.
pub const STRATEGY: StrategyDef = StrategyDef {
    name: "dataloader",
    w1: None,
    w2: None,
    w3: None,
    w4: Some(setup_w4),
    w5: Some(setup_w5),
};

struct SessionLoader {
    db: Db,
    params: WorkloadParams,
    nested: bool,
}

impl Loader for SessionLoader {
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>> {
        Box::pin(async move {
            Ok(if self.nested {
                Box::new(Waves(
                    waves(&self.db, &self.params, true, Scope::Session).await?,
                )) as Box<dyn LoadedGraph>
            } else {
                Box::new(Requests(
                    requests(&self.db, &self.params, true, Scope::Session).await?,
                ))
            })
        })
    }

    fn client_query_count(&self) -> Option<u64> {
        Some(self.db.query_count())
    }
}

async fn setup(ctx: &BenchContext, nested: bool) -> Result<Box<dyn Loader>> {
    let db = super::connect(ctx, 64).await?;
    Ok(Box::new(SessionLoader {
        db,
        params: ctx.params,
        nested,
    }))
}

fn setup_w4(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, false))
}

fn setup_w5(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(setup(ctx, true))
}
