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
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::Row;

use crate::base::error::Result;
#[cfg(feature = "redis")]
use crate::base::key::Key;
use crate::cache::clock::Clock;
use crate::cache::coherence::Invalidation;
#[cfg(feature = "redis")]
use crate::cache::redis::RedisStore;
#[cfg(feature = "redis")]
use crate::cache::stored::{self, StoredRow};
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
    evict_named: fn(&SharedCache, &Invalidation) -> RemoteEviction,
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
fn evict_named<M: Model>(cache: &SharedCache, invalidation: &Invalidation) -> RemoteEviction {
    match invalidation.keys_as::<M::Key>() {
        Some(keys) => cache.evict::<M>(Some(&keys)),
        None => cache.evict::<M>(None),
    }
}

/// The part of an eviction that must reach a cache outside the process (Redis): to be
/// awaited by a write before it returns ([`wait`](Self::wait)), or left to run on its
/// own when nothing can wait ([`detach`](Self::detach): a dropped write). Empty for
/// the in-process cache.
#[must_use = "an eviction from an external cache must be awaited or detached"]
#[derive(Default)]
pub(crate) struct RemoteEviction(Vec<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl std::fmt::Debug for RemoteEviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteEviction({} pending)", self.0.len())
    }
}

impl RemoteEviction {
    /// Adds the evictions of `other`.
    pub(crate) fn and(mut self, other: RemoteEviction) -> RemoteEviction {
        self.0.extend(other.0);
        self
    }

    /// Runs the evictions to their end.
    pub(crate) async fn wait(self) {
        for eviction in self.0 {
            eviction.await;
        }
    }

    /// Runs the evictions on the current Tokio runtime without waiting for them (or
    /// drops them when there is none: the external store is then flushed before its
    /// next use, see `RedisStore::evict`).
    pub(crate) fn detach(self) {
        if self.0.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.wait());
        }
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

/// A cached row: one the server sent, the model's columns starting at `offset`; or,
/// from an external store, the model's columns read back from their bytes.
#[derive(Clone)]
pub(crate) enum CachedRow {
    Row {
        row: Arc<Row>,
        offset: usize,
    },
    #[cfg(feature = "redis")]
    Stored(Arc<StoredRow>),
}

impl CachedRow {
    /// A row the server sent, the model's columns starting at `offset`.
    pub(crate) fn new(row: Arc<Row>, offset: usize) -> Self {
        CachedRow::Row { row, offset }
    }

    /// Decodes a fresh instance of `M`.
    pub(crate) fn decode<M: Model>(&self) -> Result<M> {
        match self {
            CachedRow::Row { row, offset } => M::decode(row, *offset),
            #[cfg(feature = "redis")]
            CachedRow::Stored(stored) => M::decode_fields(&**stored, 0),
        }
    }
}

/// What a lookup found, and the generation the rows a miss then reads are stored
/// under ([`SharedCache::put`]).
pub(crate) struct Lookup {
    pub(crate) generation: Generation,
    /// Per key asked for, its row if cached.
    pub(crate) rows: Vec<Option<CachedRow>>,
}

/// The generations a read started under: the model's in this process, and (with an
/// external store) the table's there; rows read are stored only if neither moved.
#[derive(Debug, Clone)]
pub(crate) struct Generation {
    local: u64,
    #[cfg(feature = "redis")]
    remote: Option<String>,
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
    evict_named: fn(&SharedCache, &Invalidation) -> RemoteEviction,
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
    /// Where rows are kept when not in this process's memory (Redis).
    #[cfg(feature = "redis")]
    remote: Option<Arc<RedisStore>>,
    /// The table of every cached model (what a flush of the external store evicts).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    tables: Vec<&'static str>,
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
        let mut tables: Vec<&'static str> = models.iter().map(|m| m.table).collect();
        tables.sort_unstable();
        tables.dedup();
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
            #[cfg(feature = "redis")]
            remote: None,
            tables,
        }
    }

    /// Keeps rows in `store` instead of this process's memory.
    #[cfg(feature = "redis")]
    pub(crate) fn with_remote(mut self, store: RedisStore) -> Self {
        self.remote = Some(Arc::new(store));
        self
    }

    /// Runs a pending flush of the external store now (see
    /// [`resume_serving`](Self::resume_serving)); if it cannot, it stays pending.
    #[cfg(feature = "redis")]
    pub(crate) async fn settle_remote(&self) {
        if let Some(remote) = &self.remote {
            if let Err(err) = remote.settle(&self.tables).await {
                tracing::warn!(error = %err, "matrx_orm: flushing the Redis cache failed");
            }
        }
    }

    /// The external store's namespace, when rows are kept outside the process.
    #[cfg(feature = "redis")]
    pub(crate) fn remote_namespace(&self) -> Option<&str> {
        self.remote.as_deref().map(RedisStore::namespace)
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
        // Writes nobody heard may have left rows in the external store: every cached
        // table there is evicted before this process reads or stores again.
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            remote.flush_before_use();
        }
        self.serving.store(true, Ordering::SeqCst);
    }

    /// Evicts what an invalidation from another process names: the rows of every
    /// model whose table it names.
    pub(crate) fn invalidate(&self, invalidation: &Invalidation) -> RemoteEviction {
        let evictions: Vec<_> = self
            .lock()
            .values()
            .filter(|state| state.table == invalidation.table)
            .map(|state| state.evict_named)
            .collect();
        evictions
            .into_iter()
            .fold(RemoteEviction::default(), |all, evict| {
                all.and(evict(self, invalidation))
            })
    }

    /// Drops every row of every model (an invalidation that could not be read); an
    /// external store is flushed before its next use.
    pub(crate) fn evict_everything(&self) {
        flush(&mut self.lock());
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            remote.flush_before_use();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, ModelState>> {
        self.models.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether rows of `M` are cached.
    pub(crate) fn caches<M: Model>(&self) -> bool {
        self.local_generation::<M>().is_some()
    }

    /// `M`'s generation in this process, if it is cached.
    fn local_generation<M: Model>(&self) -> Option<u64> {
        let models = self.lock();
        let state = models.get(&TypeId::of::<M>())?;
        state.policy.ttl().map(|_| state.generation)
    }

    /// The cached rows of `keys` (each if present and fresh), and the generation to
    /// [`put`](Self::put) the rows of the misses under, once read. Taken before the
    /// statement that reads them is sent.
    pub(crate) async fn lookup<M: Model>(&self, keys: &[M::Key]) -> Lookup {
        let local = self.local_generation::<M>().unwrap_or_default();
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            return self.lookup_remote::<M>(remote, local, keys).await;
        }
        Lookup {
            generation: Generation {
                local,
                #[cfg(feature = "redis")]
                remote: None,
            },
            rows: keys.iter().map(|key| self.get::<M>(key)).collect(),
        }
    }

    /// [`lookup`](Self::lookup) in the external store. A store that cannot answer
    /// answers nothing: every key is a miss, and nothing read now is stored.
    #[cfg(feature = "redis")]
    async fn lookup_remote<M: Model>(
        &self,
        remote: &RedisStore,
        local: u64,
        keys: &[M::Key],
    ) -> Lookup {
        let misses = |generation| Lookup {
            generation,
            rows: keys.iter().map(|_| None).collect(),
        };
        let unstored = Generation {
            local,
            remote: None,
        };
        if !self.serving.load(Ordering::SeqCst) {
            self.count::<M>(0, keys.len(), true);
            return misses(unstored);
        }
        let Some(wire) = keys.iter().map(Key::to_wire).collect::<Option<Vec<_>>>() else {
            self.count::<M>(0, keys.len(), false);
            return misses(unstored);
        };
        match remote.lookup(&self.tables, M::META.table, &wire).await {
            Ok(found) => {
                let rows: Vec<Option<CachedRow>> = found
                    .rows
                    .into_iter()
                    .map(|bytes| {
                        let stored = StoredRow::decode(bytes?, &remote.types)?;
                        Some(CachedRow::Stored(Arc::new(stored)))
                    })
                    .collect();
                let hits = rows.iter().filter(|row| row.is_some()).count();
                self.count::<M>(hits, rows.len() - hits, false);
                Lookup {
                    generation: Generation {
                        local,
                        remote: Some(found.generation),
                    },
                    rows,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "matrx_orm: the Redis cache did not answer");
                self.count::<M>(0, keys.len(), false);
                misses(unstored)
            }
        }
    }

    /// Counts lookups of `M` answered from an external store.
    #[cfg(feature = "redis")]
    fn count<M: Model>(&self, hits: usize, misses: usize, refused: bool) {
        if let Some(state) = self.lock().get_mut(&TypeId::of::<M>()) {
            state.stats.hits += hits as u64;
            state.stats.misses += misses as u64;
            if refused {
                state.stats.refusals += misses as u64;
            }
        }
    }

    /// The cached row of `key`, if present and fresh.
    fn get<M: Model>(&self, key: &M::Key) -> Option<CachedRow> {
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

    /// Stores rows read under `generation` (from [`lookup`](Self::lookup)); skipped
    /// if a write happened since (the rows may predate it).
    pub(crate) async fn put<M: Model>(
        &self,
        generation: &Generation,
        rows: Vec<(M::Key, CachedRow)>,
    ) {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            return self.put_remote::<M>(remote, generation, rows).await;
        }
        self.put_local::<M>(generation.local, rows);
    }

    /// [`put`](Self::put) into the external store, under its generation.
    #[cfg(feature = "redis")]
    async fn put_remote<M: Model>(
        &self,
        remote: &RedisStore,
        generation: &Generation,
        rows: Vec<(M::Key, CachedRow)>,
    ) {
        let Some(remote_generation) = &generation.remote else {
            return;
        };
        let ttl = {
            let models = self.lock();
            let Some(state) = models.get(&TypeId::of::<M>()) else {
                return;
            };
            match state.policy.ttl() {
                Some(ttl)
                    if state.generation == generation.local
                        && self.serving.load(Ordering::SeqCst) =>
                {
                    ttl
                }
                _ => return,
            }
        };
        let columns = M::META.columns.len();
        let encoded: Vec<_> = rows
            .iter()
            .filter_map(|(key, row)| match row {
                CachedRow::Row { row, offset } => Some((
                    key.to_wire()?,
                    stored::encode(row, *offset, columns, &remote.types)?,
                )),
                CachedRow::Stored(_) => None,
            })
            .collect();
        let stored = remote
            .store(&self.tables, M::META.table, remote_generation, ttl, encoded)
            .await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "matrx_orm: storing into the Redis cache failed");
        }
    }

    /// [`put`](Self::put) into this process's memory.
    fn put_local<M: Model>(&self, generation: u64, rows: Vec<(M::Key, CachedRow)>) {
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
    /// model's generation; with an external store, returns its part of the eviction.
    pub(crate) fn evict<M: Model>(&self, keys: Option<&[M::Key]>) -> RemoteEviction {
        self.evict_local::<M>(keys);
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            // Rows are kept per table there: a model sharing a cached model's table
            // evicts its rows too.
            if self.tables.contains(&M::META.table) {
                if let Some(keys) = keys {
                    self.count_invalidations::<M>(keys.len());
                }
                // A key that does not encode evicts the whole table.
                let wire =
                    keys.and_then(|keys| keys.iter().map(Key::to_wire).collect::<Option<Vec<_>>>());
                let remote = remote.clone();
                return RemoteEviction(vec![Box::pin(async move {
                    remote.evict(M::META.table, wire.as_deref()).await;
                })]);
            }
        }
        RemoteEviction::default()
    }

    /// Counts rows of `M` invalidated in an external store.
    #[cfg(feature = "redis")]
    fn count_invalidations<M: Model>(&self, rows: usize) {
        if let Some(state) = self.lock().get_mut(&TypeId::of::<M>()) {
            state.stats.invalidations += rows as u64;
        }
    }

    fn evict_local<M: Model>(&self, keys: Option<&[M::Key]>) {
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
