//! Lazy, per-instance relation loads: the seed's `fetch_fk` / `fetch_ifk` /
//! `fetch_m2m`, done through the batch primitive with one key.

use std::any::TypeId;
use std::sync::Arc;

use futures_util::future::{try_join_all, BoxFuture};

use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::executor::batching;
use crate::executor::DynExecutor;
use crate::relation::batch::{load_by_keys, load_distinct_edge, load_edge};
use crate::relation::stitch::attach;
use crate::schema::model::{Model, Relation, RelationVisitor};
use crate::schema::related::Related;
use crate::schema::slot::Slot;

/// What loading relation `R` returns: `Option<Arc<Target>>` or `Vec<Arc<Target>>`.
pub type Loaded<R> = <<R as Relation>::Slot as Slot<<R as Relation>::Target>>::Value;

/// Loads relation `R` of one instance and attaches it. Costs no query when the
/// relation is already loaded or its key is NULL, one query otherwise — shared with
/// every concurrent load of the same relation when run in a [`Session`](crate::Session).
/// In strict mode a load that would run a query fails with [`Error::StrictLoad`].
pub async fn fetch<R: Relation>(ex: &dyn DynExecutor, source: &R::Source) -> Result<Loaded<R>> {
    let slot = R::slot(source);
    if let Some(value) = slot.loaded_value() {
        return Ok(value);
    }
    let scope = ex.scope_dyn();
    let key = R::source_key(source);
    if let (Some(cache), Some(key)) = (&scope.cache, &key) {
        // The session holds this relation's targets for that key: no query.
        if let Some(targets) = cache.lookup::<R>(key) {
            slot.fill(<R::Slot as Slot<R::Target>>::value_from_slice(
                targets.as_slice(),
            ));
            return slot.loaded_value().ok_or(Error::NotFound {
                model: <R::Target as Model>::META.name,
            });
        }
    }
    if let Some(key) = &key {
        if scope.strict() {
            return Err(Error::StrictLoad {
                model: <R::Source as Model>::META.name,
                relation: R::META.name,
            });
        }
        key.validate()?;
    }
    let groups = match (&scope.loaders, key) {
        (Some(loaders), Some(key)) => {
            // A batch's keys are distinct already. The statement's future is boxed:
            // only the batch's leader runs it, and every waiting call stays small.
            let run = |keys: Vec<R::Key>| -> BoxFuture<'_, Result<Arc<_>>> {
                Box::pin(async move {
                    load_distinct_edge::<R>(ex, keys, &Related::default())
                        .await
                        .map(Arc::new)
                })
            };
            batching::load(loaders, TypeId::of::<R>(), key, run).await?
        }
        (_, key) => Arc::new(load_edge::<R>(ex, key, &Related::default()).await?),
    };
    attach::<R>([source], &groups);
    slot.loaded_value().ok_or(Error::NotFound {
        model: <R::Target as Model>::META.name,
    })
}

/// Loads every relation of one instance, concurrently: one query per relation not
/// loaded yet (none for NULL keys). The first error is returned.
pub async fn fetch_all_related<S: Model>(ex: &dyn DynExecutor, source: &S) -> Result<()> {
    let mut fetches = Fetches {
        ex,
        source,
        loads: Vec::new(),
    };
    S::visit_relations(&mut fetches);
    try_join_all(fetches.loads).await?;
    Ok(())
}

/// Collects one lazy load per relation of `source`.
struct Fetches<'a, S> {
    ex: &'a dyn DynExecutor,
    source: &'a S,
    loads: Vec<BoxFuture<'a, Result<()>>>,
}

impl<'a, S: Model> RelationVisitor<S> for Fetches<'a, S> {
    fn visit<R: Relation<Source = S>>(&mut self, _name: &'static str) {
        let (ex, source) = (self.ex, self.source);
        self.loads.push(Box::pin(
            async move { fetch::<R>(ex, source).await.map(drop) },
        ));
    }
}

/// Marks the batches of gets by primary key of `M` (distinct from relation batches).
struct GetByKey<M>(std::marker::PhantomData<M>);

/// The row of `M` with primary key `key`, if any: one query, shared with every
/// concurrent get of the same model when run in a [`Session`](crate::Session).
pub(crate) async fn get<M: Model>(ex: &dyn DynExecutor, key: &M::Key) -> Result<Option<M>> {
    key.validate()?;
    let scope = ex.scope_dyn();
    // A transaction neither reads nor fills the shared cache: its own writes are not
    // committed, and rows outside it may be older than what it wrote.
    let shared = scope
        .shared
        .as_deref()
        .filter(|shared| !scope.in_transaction && shared.caches::<M>());
    let generation = match shared {
        Some(cache) => {
            let found = cache.lookup::<M>(std::slice::from_ref(key)).await;
            if let Some(cached) = found.rows.into_iter().next().flatten() {
                return cached.decode::<M>().map(Some);
            }
            Some(found.generation)
        }
        None => None,
    };
    let rows = match &scope.loaders {
        Some(loaders) => {
            let run = |keys: Vec<M::Key>| -> BoxFuture<'_, Result<Arc<_>>> {
                Box::pin(async move { load_by_keys::<M>(ex, keys).await.map(Arc::new) })
            };
            batching::load(loaders, TypeId::of::<GetByKey<M>>(), key.clone(), run).await?
        }
        None => Arc::new(load_by_keys::<M>(ex, [key.clone()]).await?),
    };
    if let (Some(cache), Some(generation)) = (shared, generation) {
        if scope.fills_shared_cache() {
            if let Some(row) = rows.cached_row(key) {
                cache.put::<M>(&generation, vec![(key.clone(), row)]).await;
            }
        }
    }
    rows.decode(key)
}
