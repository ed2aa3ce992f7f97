//! The process-wide row cache: opt-in per model, with the seed's policies (permanent,
//! long term 4 h, short term 10 min, instant 1 min), bounded per model (least recently
//! used rows go first), with hit/miss statistics.
//!
//! It stores rows as the server sent them, not instances: every hit decodes a fresh
//! instance whose relation fields start not loaded, so nothing one session attaches is
//! ever seen by another. Writes through the ORM evict the rows they touch and bump the
//! model's generation; a read that started before a write does not store its (possibly
//! older) rows afterwards.
//!
//! With coherence across processes (`DbBuilder::coherent_cache`), a listener evicts
//! the rows other processes' writes name ([`SharedCache::invalidate`]); while it cannot
//! hear them the cache is empty and refuses to serve or store
//! ([`SharedCache::stop_serving`]), so a missed invalidation never yields a stale hit.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::Row;

use crate::cache::clock::Clock;
use crate::cache::coherence::Invalidation;
use crate::schema::model::Model;

/// How long a model's rows stay in the shared cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Not cached (the default).
    #[default]
    Disabled,
    /// Until evicted by a write or by the size bound.
    Permanent,
    /// Four hours.
    LongTerm,
    /// Ten minutes.
    ShortTerm,
    /// One minute.
    Instant,
    /// A custom time to live.
    Ttl(Duration),
}

impl CachePolicy {
    /// `None`: not cached; `Some(None)`: no expiry; `Some(Some(ttl))`.
    fn ttl(self) -> Option<Option<Duration>> {
        match self {
            CachePolicy::Disabled => None,
            CachePolicy::Permanent => Some(None),
            CachePolicy::LongTerm => Some(Some(Duration::from_secs(4 * 3600))),
            CachePolicy::ShortTerm => Some(Some(Duration::from_secs(600))),
            CachePolicy::Instant => Some(Some(Duration::from_secs(60))),
            CachePolicy::Ttl(ttl) => Some(Some(ttl)),
        }
    }
}

/// Counters of one model's shared cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the database.
    pub misses: u64,
    /// Rows dropped by the size bound.
    pub evictions: u64,
    /// Rows dropped because they expired.
    pub expirations: u64,
    /// Rows dropped because a write touched them.
    pub invalidations: u64,
    /// Rows held now.
    pub len: usize,
    /// Lookups refused because the cache could not hear other processes' writes (its
    /// listener was down); counted in `misses` too.
    pub refusals: u64,
}

/// A model the shared cache holds rows of, and how an invalidation that names its
/// table by text evicts it.
#[derive(Clone, Copy)]
pub(crate) struct CachedModel {
    pub(crate) id: TypeId,
    pub(crate) policy: CachePolicy,
    table: &'static str,
    evict_named: fn(&SharedCache, &Invalidation),
}

impl std::fmt::Debug for CachedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedModel")
            .field("table", &self.table)
            .field("policy", &self.policy)
            .finish()
    }
}

impl CachedModel {
    /// Model `M` under `policy`.
    pub(crate) fn of<M: Model>(policy: CachePolicy) -> Self {
        CachedModel {
            id: TypeId::of::<M>(),
            policy,
            table: M::META.table,
            evict_named: evict_named::<M>,
        }
    }
}

/// Evicts the rows of `M` an invalidation names: its keys, or every row when it names
/// the whole table or a key that does not decode as `M`'s.
fn evict_named<M: Model>(cache: &SharedCache, invalidation: &Invalidation) {
    match invalidation.keys_as::<M::Key>() {
        Some(keys) => cache.evict::<M>(Some(&keys)),
        None => cache.evict::<M>(None),
    }
}

/// Drops every row of every model and bumps every generation.
fn flush(models: &mut HashMap<TypeId, ModelState>) {
    for state in models.values_mut() {
        state.generation += 1;
        if state.rows.take().is_some() {
            state.stats.invalidations += state.stats.len as u64;
        }
        state.stats.len = 0;
    }
}

/// A cached row and where the model's columns start in it.
#[derive(Clone)]
pub(crate) struct CachedRow {
    pub(crate) row: Arc<Row>,
    pub(crate) offset: usize,
}

struct Entry {
    row: CachedRow,
    stored_at: Duration,
    tick: u64,
}

struct ModelCache<M: Model> {
    entries: HashMap<M::Key, Entry>,
    recency: BTreeMap<u64, M::Key>,
}

struct ModelState {
    policy: CachePolicy,
    table: &'static str,
    evict_named: fn(&SharedCache, &Invalidation),
    capacity: usize,
    generation: u64,
    tick: u64,
    stats: CacheStats,
    rows: Option<Box<dyn Any + Send + Sync>>,
}

/// The shared cache of one [`Db`](crate::Db).
pub(crate) struct SharedCache {
    clock: Arc<dyn Clock>,
    capacity: usize,
    models: Mutex<HashMap<TypeId, ModelState>>,
    /// Whether lookups may be answered and rows stored; read and written under the
    /// `models` lock, so a refusal and the flush that comes with it are one step.
    serving: AtomicBool,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SharedCache {
    /// A cache of `models`; one that is `coherent` refuses to serve until its listener
    /// calls [`resume_serving`](Self::resume_serving).
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        capacity: usize,
        models: &[CachedModel],
        coherent: bool,
    ) -> Self {
        let models = models
            .iter()
            .map(|model| {
                let state = ModelState {
                    policy: model.policy,
                    table: model.table,
                    evict_named: model.evict_named,
                    capacity: capacity.max(1),
                    generation: 0,
                    tick: 0,
                    stats: CacheStats::default(),
                    rows: None,
                };
                (model.id, state)
            })
            .collect();
        SharedCache {
            clock,
            capacity,
            models: Mutex::new(models),
            serving: AtomicBool::new(!coherent),
        }
    }

    /// The listener can no longer hear other processes' writes: drops every row, and
    /// refuses to serve or store until [`resume_serving`](Self::resume_serving). Bumps
    /// every generation, so a read that started before does not store its rows.
    pub(crate) fn stop_serving(&self) {
        let mut models = self.lock();
        self.serving.store(false, Ordering::SeqCst);
        flush(&mut models);
    }

    /// The listener hears writes again: serve and store from now on. Bumps every
    /// generation: a read that started while the cache could not hear writes does not
    /// store its rows.
    pub(crate) fn resume_serving(&self) {
        let mut models = self.lock();
        for state in models.values_mut() {
            state.generation += 1;
        }
        self.serving.store(true, Ordering::SeqCst);
    }

    /// Evicts what an invalidation from another process names: the rows of every
    /// model whose table it names.
    pub(crate) fn invalidate(&self, invalidation: &Invalidation) {
        let evictions: Vec<_> = self
            .lock()
            .values()
            .filter(|state| state.table == invalidation.table)
            .map(|state| state.evict_named)
            .collect();
        for evict in evictions {
            evict(self, invalidation);
        }
    }

    /// Drops every row of every model (an invalidation that could not be read).
    pub(crate) fn evict_everything(&self) {
        flush(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, ModelState>> {
        self.models.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether rows of `M` are cached; and its generation (see [`put`](Self::put)).
    pub(crate) fn generation<M: Model>(&self) -> Option<u64> {
        let models = self.lock();
        let state = models.get(&TypeId::of::<M>())?;
        state.policy.ttl().map(|_| state.generation)
    }

    /// The cached row of `key`, if present and fresh.
    pub(crate) fn get<M: Model>(&self, key: &M::Key) -> Option<CachedRow> {
        let now = self.clock.now();
        let mut models = self.lock();
        let state = models.get_mut(&TypeId::of::<M>())?;
        let ttl = state.policy.ttl()?;
        if !self.serving.load(Ordering::SeqCst) {
            state.stats.misses += 1;
            state.stats.refusals += 1;
            return None;
        }
        state.tick += 1;
        let tick = state.tick;
        let Some(cache) = state
            .rows
            .as_mut()
            .and_then(|r| r.downcast_mut::<ModelCache<M>>())
        else {
            state.stats.misses += 1;
            return None;
        };
        let expired = match (cache.entries.get(key), ttl) {
            (None, _) => {
                state.stats.misses += 1;
                return None;
            }
            (Some(entry), Some(ttl)) => now.saturating_sub(entry.stored_at) >= ttl,
            (Some(_), None) => false,
        };
        if expired {
            if let Some(entry) = cache.entries.remove(key) {
                cache.recency.remove(&entry.tick);
            }
            state.stats.expirations += 1;
            state.stats.misses += 1;
            state.stats.len = cache.entries.len();
            return None;
        }
        let entry = cache.entries.get_mut(key)?;
        cache.recency.remove(&entry.tick);
        entry.tick = tick;
        cache.recency.insert(tick, key.clone());
        state.stats.hits += 1;
        Some(entry.row.clone())
    }

    /// Stores rows read while the model's generation was `generation`; skipped if a
    /// write happened since (the rows may predate it).
    pub(crate) fn put<M: Model>(
        &self,
        generation: u64,
        rows: impl IntoIterator<Item = (M::Key, CachedRow)>,
    ) {
        let now = self.clock.now();
        let mut models = self.lock();
        let Some(state) = models.get_mut(&TypeId::of::<M>()) else {
            return;
        };
        if state.policy.ttl().is_none()
            || state.generation != generation
            || !self.serving.load(Ordering::SeqCst)
        {
            return;
        }
        let capacity = state.capacity;
        let rows_box = state.rows.get_or_insert_with(|| {
            Box::new(ModelCache::<M> {
                entries: HashMap::new(),
                recency: BTreeMap::new(),
            })
        });
        let Some(cache) = rows_box.downcast_mut::<ModelCache<M>>() else {
            return;
        };
        for (key, row) in rows {
            state.tick += 1;
            let tick = state.tick;
            if let Some(old) = cache.entries.insert(
                key.clone(),
                Entry {
                    row,
                    stored_at: now,
                    tick,
                },
            ) {
                cache.recency.remove(&old.tick);
            }
            cache.recency.insert(tick, key);
            while cache.entries.len() > capacity {
                let Some((_, oldest)) = cache.recency.pop_first() else {
                    break;
                };
                cache.entries.remove(&oldest);
                state.stats.evictions += 1;
            }
        }
        state.stats.len = cache.entries.len();
    }

    /// Drops the rows of `M` with these keys (all rows for `None`) and bumps the
    /// model's generation.
    pub(crate) fn evict<M: Model>(&self, keys: Option<&[M::Key]>) {
        let mut models = self.lock();
        let Some(state) = models.get_mut(&TypeId::of::<M>()) else {
            return;
        };
        state.generation += 1;
        let Some(cache) = state
            .rows
            .as_mut()
            .and_then(|r| r.downcast_mut::<ModelCache<M>>())
        else {
            return;
        };
        match keys {
            Some(keys) => {
                for key in keys {
                    if let Some(entry) = cache.entries.remove(key) {
                        cache.recency.remove(&entry.tick);
                        state.stats.invalidations += 1;
                    }
                }
            }
            None => {
                state.stats.invalidations += cache.entries.len() as u64;
                cache.entries.clear();
                cache.recency.clear();
            }
        }
        state.stats.len = cache.entries.len();
    }

    /// The counters of `M`.
    pub(crate) fn stats<M: Model>(&self) -> CacheStats {
        self.lock()
            .get(&TypeId::of::<M>())
            .map(|s| s.stats)
            .unwrap_or_default()
    }
}
