//! Getting a measurement binary to its data: the server found like the tests', and
//! the dataset of a scale built first when missing.

use crate::dataset::ensure_dataset;
use crate::error::Result;
use crate::strategy::BenchContext;
use crate::workload::Scale;

/// The context of `scale` on the resolved server, its dataset present (built when
/// missing; the checksums are not re-checked here).
pub async fn prepared(scale: Scale) -> Result<BenchContext> {
    let url = crate::db::database_url().await?;
    let ctx = BenchContext {
        database_url: url.clone(),
        schema: scale.schema().to_owned(),
        params: scale.workload_params(),
        pooler_url: None,
    };
    let mut admin = crate::db::connect(&url).await?;
    ensure_dataset(
        &mut admin,
        &ctx.schema,
        scale.dataset_size(),
        &ctx.params,
        None,
    )
    .await?;
    Ok(ctx)
}
