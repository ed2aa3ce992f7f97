//! The session cache: an identity map (one instance per row) and relation entries
//! (`Order.customer_id:42 -> Customer 42`, `Order.items:7 -> [items]`).
//!
//! It lives in a session (and, separately, in each transaction begun from it) and is
//! consulted by the batch primitive, so every loading path — lazy, prefetch, batched —
//! shares it. Writes through the ORM evict what they touch.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::schema::model::{Model, Relation};

/// One model's instances by primary key.
struct Instances<M: Model>(HashMap<M::Key, Arc<M>>);

/// One relation's loaded targets by parent key.
struct Entries<R: Relation>(HashMap<R::Key, Vec<Arc<R::Target>>>);

/// Keys answered from the cache (with their targets), and keys still to load.
pub(crate) type Split<R> = (
    Vec<(<R as Relation>::Key, Vec<Arc<<R as Relation>::Target>>)>,
    Vec<<R as Relation>::Key>,
);

/// A relation's entries.
struct RelationSlot {
    entries: Box<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct Inner {
    instances: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    relations: HashMap<TypeId, RelationSlot>,
}

/// A session's identity map and relation entries.
#[derive(Default)]
pub(crate) struct SessionCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SessionCache")
            .field("models", &inner.instances.len())
            .field("relations", &inner.relations.len())
            .finish()
    }
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces each row by the instance already held for its key, or holds it.
    pub(crate) fn intern<M: Model>(&self, rows: &mut [Arc<M>]) {
        let mut inner = self.lock();
        let held = inner
            .instances
            .entry(TypeId::of::<M>())
            .or_insert_with(|| Box::new(Instances::<M>(HashMap::new())));
        let Some(held) = held.downcast_mut::<Instances<M>>() else {
            return;
        };
        for row in rows {
            match held.0.get(&row.key()) {
                Some(existing) => *row = existing.clone(),
                None => {
                    held.0.insert(row.key(), row.clone());
                }
            }
        }
    }

    /// Splits `keys` into those with cached targets (returned with them) and the rest.
    pub(crate) fn split<R: Relation>(&self, keys: Vec<R::Key>) -> Split<R> {
        let inner = self.lock();
        let Some(entries) = inner
            .relations
            .get(&TypeId::of::<R>())
            .and_then(|slot| slot.entries.downcast_ref::<Entries<R>>())
        else {
            return (Vec::new(), keys);
        };
        let mut hits = Vec::new();
        let mut missing = Vec::new();
        for key in keys {
            match entries.0.get(&key) {
                Some(targets) => hits.push((key, targets.clone())),
                None => missing.push(key),
            }
        }
        (hits, missing)
    }

    /// Records the targets loaded for each key (an empty list for a key with none).
    pub(crate) fn store<R: Relation>(
        &self,
        loaded: impl IntoIterator<Item = (R::Key, Vec<Arc<R::Target>>)>,
    ) {
        let mut inner = self.lock();
        let slot = inner
            .relations
            .entry(TypeId::of::<R>())
            .or_insert_with(|| RelationSlot {
                entries: Box::new(Entries::<R>(HashMap::new())),
            });
        if let Some(entries) = slot.entries.downcast_mut::<Entries<R>>() {
            entries.0.extend(loaded);
        }
    }

    /// A write to `M` (these keys, or any): forgets every instance and relation entry.
    ///
    /// Not only `M`'s: instances of other models hold `M` rows in relation fields that
    /// are set once (a customer's loaded orders), so any held instance may now be
    /// stale. Session caches live for one request; a write empties them.
    pub(crate) fn evict<M: Model>(&self, _keys: Option<&[M::Key]>) {
        self.clear();
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.instances.clear();
        inner.relations.clear();
    }
}
