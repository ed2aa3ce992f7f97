//! The matrx-orm strategies: the same workloads written as users of the ORM write
//! them, on models declared with `#[derive(Model)]`.
//!
//! * [`models`]: the shop models (found through the `search_path` of the bench schema).
//! * [`graph`]: the checksums of loaded ORM graphs.
//! * [`prefetch`]: `prefetch` — one query per relation edge.
//! * [`lazy`]: `lazy_serial` and `lazy_concurrent` — the seed's per-instance loads.
//! * [`dataloader`]: the same per-object code in a session per request — batched.
//! * [`joined`]: `select_related` (the whole tree in one query) and `balanced`.

pub mod dataloader;
pub mod graph;
pub mod joined;
pub mod lazy;
pub mod models;
pub mod prefetch;

use matrx_orm::Db;

use crate::error::Result;
use crate::strategy::BenchContext;

/// A pool on the bench schema (through the PgBouncer of `--pgbouncer`, in the
/// unnamed statement mode, when there is one: its server connections are on the
/// schema already). Plaintext unless the URL names an `sslmode`, as the hand-written
/// baseline's connection (the library's default, `prefer`, would encrypt where the
/// server offers TLS and measure that instead).
pub async fn connect(ctx: &BenchContext, pool_size: usize) -> Result<Db> {
    if let Some(pooler) = &ctx.pooler_url {
        return Ok(Db::builder(pooler.as_str())
            .statement_mode(matrx_orm::StatementMode::Unnamed)
            .pool_size(pool_size)
            .connect()
            .await?);
    }
    let url = if ctx.database_url.contains("sslmode=") {
        ctx.database_url.clone()
    } else {
        let sep = if ctx.database_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}sslmode=disable", ctx.database_url)
    };
    Ok(Db::builder(url.as_str())
        .search_path(ctx.schema.as_str())
        .pool_size(pool_size)
        .connect()
        .await?)
}
