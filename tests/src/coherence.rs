//! The models of the cache-coherence tests, and the writer that
//! `tests/coherence.rs` runs in a second OS process (`src/bin/coherence_writer.rs`).

use matrx_orm::prelude::*;
use matrx_orm::Db;

/// A row whose version only grows: a read older than a committed version is stale.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "counters")]
pub struct Counter {
    #[orm(primary_key)]
    pub id: i64,
    pub version: i64,
    #[orm(many_to_many(through = "counter_labels", source = "counter_id", target = "label_id"))]
    pub labels: Many<Label>,
}

/// The target of `Counter.labels`.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "labels")]
pub struct Label {
    #[orm(primary_key)]
    pub id: i64,
    pub name: String,
}

/// A composite key of text and integer.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "shelves")]
pub struct Shelf {
    #[orm(primary_key)]
    pub region: String,
    #[orm(primary_key)]
    pub code: i32,
    pub label: String,
}

/// A counter at `version`.
pub fn counter(id: i64, version: i64) -> Counter {
    Counter {
        id,
        version,
        labels: Many::default(),
    }
}

/// Writes versions `from..=to` of counter `id` through a `Db` that announces its
/// writes (and, given `redis`, caches counters there), printing `committed <v>` once
/// each commit is acknowledged.
pub async fn write_versions(
    url: &str,
    schema: &str,
    channel: &str,
    id: i64,
    from: i64,
    to: i64,
    redis: Option<&str>,
) -> matrx_orm::Result<()> {
    use std::io::Write as _;
    let mut builder = Db::builder(url)
        .search_path(schema)
        .pool_size(1)
        .notify_writes(true)
        .coherence_channel(channel);
    if let Some(redis) = redis {
        builder = builder
            .cache::<Counter>(matrx_orm::cache::CachePolicy::Permanent)
            .redis_cache(redis);
    }
    let db = builder.connect().await?;
    let mut row = Counter::get(&db, &id).await?;
    for version in from..=to {
        row.version = version;
        row.update(&db).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "committed {version}")
            .and_then(|()| out.flush())
            .map_err(|e| matrx_orm::Error::InvalidInput(format!("stdout: {e}")))?;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}
