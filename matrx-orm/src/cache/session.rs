//! The session cache: an identity map (one instance per row) and relation entries
//! (`Order.customer_id:42 -> Customer 42`, `Order.items:7 -> [items]`).
//!
//! It lives in a session (and, separately, in each transaction begun from it) and is
//! consulted by the batch primitive and filled by every loading path — lazy, prefetch,
//! batched, joined — so they all share it.
//!
//! What a write evicts (nothing held may be stale, and nothing else goes):
//!
//! - the written model's instances: the written keys, or all of them when the keys are
//!   not known or when the model's own relations lead back to it (a held instance may
//!   hold a written row in a relation field);
//! - every instance of a model whose relations lead to the written table, directly or
//!   through other models (a customer holding orders holding the written item): relation
//!   fields are set once, so such an instance cannot be refreshed in place;
//! - every relation entry whose targets are such a model (a written row may now belong
//!   to another parent, and the entries hold the stale instances).
//!
//! Models are compared by table (two models over one table are one table's rows). A
//! many-to-many link write evicts as a write of every row of both sides, and the
//! entries of every relation through its junction table.
//!
//! A generation, bumped by every eviction, makes a load that started before a write
//! drop its rows instead of storing them after it: a result read before the write is
//! never held after it.

use std::any::{Any, TypeId};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::base::hash::KeyMap;
use crate::base::meta::ModelMeta;
use crate::schema::model::{Model, Relation};

/// One model's instances by primary key.
struct Instances<M: Model>(KeyMap<M::Key, Arc<M>>);

/// One relation's loaded targets by parent key.
struct Entries<R: Relation>(KeyMap<R::Key, Targets<R::Target>>);

/// The targets held for one parent key. Most keys of a to-one relation have exactly
/// one, held without a vector of its own.
pub(crate) enum Targets<T> {
    /// Exactly one target.
    One(Arc<T>),
    /// None, or more than one.
    Many(Vec<Arc<T>>),
}

impl<T> Targets<T> {
    /// The targets of `targets`, in order.
    pub(crate) fn from_slice(targets: &[Arc<T>]) -> Self {
        match targets {
            [one] => Targets::One(one.clone()),
            many => Targets::Many(many.to_vec()),
        }
    }

    /// The targets, in order.
    pub(crate) fn as_slice(&self) -> &[Arc<T>] {
        match self {
            Targets::One(one) => std::slice::from_ref(one),
            Targets::Many(many) => many,
        }
    }
}

impl<T> From<Vec<Arc<T>>> for Targets<T> {
    fn from(mut targets: Vec<Arc<T>>) -> Self {
        match targets.len() {
            1 => match targets.pop() {
                Some(one) => Targets::One(one),
                None => Targets::Many(targets),
            },
            _ => Targets::Many(targets),
        }
    }
}

impl<T> Clone for Targets<T> {
    fn clone(&self) -> Self {
        match self {
            Targets::One(one) => Targets::One(one.clone()),
            Targets::Many(many) => Targets::Many(many.clone()),
        }
    }
}

/// Keys answered from the cache (with their targets), and keys still to load.
pub(crate) type Split<R> = (
    Vec<(<R as Relation>::Key, Targets<<R as Relation>::Target>)>,
    Vec<<R as Relation>::Key>,
);

/// The instances of one model.
struct ModelSlot {
    meta: &'static ModelMeta,
    /// `Instances<M>`.
    instances: Box<dyn Any + Send + Sync>,
}

/// The entries of one relation.
struct RelationSlot {
    /// The model whose rows the entries hold.
    target: &'static ModelMeta,
    /// The junction table of a many-to-many relation.
    through: Option<Table>,
    /// `Entries<R>`.
    entries: Box<dyn Any + Send + Sync>,
}

/// A table, by schema (`None`: the connection's `search_path`) and name.
type Table = (Option<&'static str>, &'static str);

fn table_of(meta: &ModelMeta) -> Table {
    (meta.schema, meta.table)
}

#[derive(Default)]
struct Inner {
    models: KeyMap<TypeId, ModelSlot>,
    relations: KeyMap<TypeId, RelationSlot>,
    /// Bumped by every eviction.
    generation: u64,
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
            .field("models", &inner.models.len())
            .field("relations", &inner.relations.len())
            .field("generation", &inner.generation)
            .finish()
    }
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current generation: take it before a load's statement is sent, and hand it
    /// to [`intern`](Self::intern) and [`store`](Self::store) after.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Replaces each row by the instance already held for its key, or holds it — unless
    /// a write evicted since `generation` was taken: the rows may predate it, so they
    /// are returned as they are and not held.
    pub(crate) fn intern<M: Model>(&self, generation: u64, rows: &mut [Arc<M>]) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let slot = inner
            .models
            .entry(TypeId::of::<M>())
            .or_insert_with(|| ModelSlot {
                meta: M::META,
                instances: Box::new(Instances::<M>(KeyMap::default())),
            });
        let Some(held) = slot.instances.downcast_mut::<Instances<M>>() else {
            return;
        };
        held.0.reserve(rows.len());
        for row in rows {
            match held.0.entry(row.key()) {
                Entry::Occupied(existing) => *row = existing.get().clone(),
                Entry::Vacant(vacant) => {
                    vacant.insert(row.clone());
                }
            }
        }
    }

    /// The targets held for one key of `R`, if the session holds them.
    pub(crate) fn lookup<R: Relation>(&self, key: &R::Key) -> Option<Targets<R::Target>> {
        let inner = self.lock();
        inner
            .relations
            .get(&TypeId::of::<R>())
            .and_then(|slot| slot.entries.downcast_ref::<Entries<R>>())
            .and_then(|entries| entries.0.get(key).cloned())
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

    /// Records the targets loaded for each key (an empty list for a key with none),
    /// unless a write evicted since `generation` was taken.
    pub(crate) fn store<R: Relation>(
        &self,
        generation: u64,
        loaded: impl IntoIterator<Item = (R::Key, Targets<R::Target>)>,
    ) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let slot = inner
            .relations
            .entry(TypeId::of::<R>())
            .or_insert_with(|| RelationSlot {
                target: <R::Target as Model>::META,
                through: R::META
                    .through
                    .as_ref()
                    .map(|t| (t.schema.or(<R::Source as Model>::META.schema), t.table)),
                entries: Box::new(Entries::<R>(KeyMap::default())),
            });
        if let Some(entries) = slot.entries.downcast_mut::<Entries<R>>() {
            entries.0.extend(loaded);
        }
    }

    /// A write to `M` (these keys, or any): evicts what it can make stale (see the
    /// module documentation).
    pub(crate) fn evict<M: Model>(&self, keys: Option<&[M::Key]>) {
        let mut inner = self.lock();
        inner.generation += 1;
        let written = table_of(M::META);
        let mut reach = Reach::new(written);
        let self_reaching = reach.leads_to_written(M::META);
        inner.models.retain(|type_id, slot| {
            if *type_id == TypeId::of::<M>() && !self_reaching {
                if let (Some(keys), Some(held)) =
                    (keys, slot.instances.downcast_mut::<Instances<M>>())
                {
                    for key in keys {
                        held.0.remove(key);
                    }
                    return true;
                }
                return false;
            }
            let same_table = table_of(slot.meta) == written;
            !same_table && !reach.leads_to_written(slot.meta)
        });
        inner.relations.retain(|_, slot| {
            table_of(slot.target) != written && !reach.leads_to_written(slot.target)
        });
    }

    /// A many-to-many link write through `R`: evicts as a write of every row of both
    /// sides, and the entries of every relation through the same junction table.
    pub(crate) fn evict_links<R: Relation>(&self) {
        self.evict::<R::Source>(None);
        self.evict::<R::Target>(None);
        let Some(through) = &R::META.through else {
            return;
        };
        let junction = (
            through.schema.or(<R::Source as Model>::META.schema),
            through.table,
        );
        let mut inner = self.lock();
        inner
            .relations
            .retain(|_, slot| slot.through != Some(junction));
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.models.clear();
        inner.relations.clear();
    }
}

/// Which models lead to the written table through their relations (memoised over one
/// eviction; relation graphs may have cycles).
struct Reach {
    written: Table,
    known: HashMap<Table, bool>,
}

impl Reach {
    fn new(written: Table) -> Self {
        Reach {
            written,
            known: HashMap::new(),
        }
    }

    /// Whether some relation of `meta` leads to the written table, directly or through
    /// other models.
    fn leads_to_written(&mut self, meta: &'static ModelMeta) -> bool {
        let mut stack = vec![meta];
        let mut seen: Vec<Table> = vec![table_of(meta)];
        // Depth-first over targets; `seen` also guards cycles.
        while let Some(model) = stack.pop() {
            if let Some(&known) = self.known.get(&table_of(model)) {
                if known {
                    self.remember(&seen);
                    return true;
                }
                continue;
            }
            for relation in model.relations {
                let target = (relation.target)();
                let table = table_of(target);
                if table == self.written {
                    self.remember(&seen);
                    return true;
                }
                if !seen.contains(&table) {
                    seen.push(table);
                    stack.push(target);
                }
            }
        }
        // Nothing reachable from `meta` leads there.
        for table in seen {
            self.known.entry(table).or_insert(false);
        }
        false
    }

    /// Marks `meta` (the first of `path`) as leading to the written table.
    fn remember(&mut self, path: &[Table]) {
        if let Some(first) = path.first() {
            self.known.insert(*first, true);
        }
    }
}
