//! [`Scope`]: what an executor reports to and consults — its counters, strict mode,
//! the caches it can see, its request-scoped batches — and the fan-out of a write's
//! evictions to every cache in reach.
//!
//! A scope is assembled by `Db`, `Session` and `Transaction` (the only place that
//! wires the pool, the caches and the batches together); the layers above only read it.

use std::sync::{Arc, Mutex};

use crate::cache::session::SessionCache;
use crate::cache::shared::{RemoteEviction, SharedCache};
use crate::executor::batching::Loaders;
use crate::schema::model::{Model, Relation};
use crate::statement::counter::Counters;
use crate::statement::mode::Statements;
use crate::statement::run::Via;

/// Where an executor reports: the `Db`'s counter, a session's counter, strict mode.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Scope {
    /// The counters every statement bumps.
    pub(crate) counters: Counters,
    /// The `Db`'s statement mode (and described statements in the unnamed mode).
    pub(crate) statements: Arc<Statements>,
    pub(crate) strict: bool,
    /// The request-scoped batches of a session (none outside sessions).
    pub(crate) loaders: Option<Arc<Loaders>>,
    /// The identity map and relation entries of a session or of a transaction.
    pub(crate) cache: Option<Arc<SessionCache>>,
    /// For a transaction begun from a session: the session's cache (writes evict there too).
    pub(crate) outer_cache: Option<Arc<SessionCache>>,
    /// The `Db`'s process-wide row cache, when some model has a policy.
    pub(crate) shared: Option<Arc<SharedCache>>,
    /// The channel every write announces what it changed on, in its own statement
    /// (`pg_notify`), when other processes' caches listen (`DbBuilder::coherent_cache`).
    pub(crate) notify: Option<Arc<str>>,
    /// Whether statements run inside a transaction (it neither reads nor fills the
    /// shared cache).
    pub(crate) in_transaction: bool,
    /// Whether reads may be answered by a read replica (a `Db` with replicas, and its
    /// sessions): rows read then may be older than what the primary holds, so they
    /// never fill the shared cache.
    pub(crate) replica_reads: bool,
    /// In a transaction: evictions to repeat once it commits (a read outside it may
    /// have cached the old row again in between).
    pub(crate) after_commit: Option<Arc<Mutex<Vec<Eviction>>>>,
}

/// An eviction deferred to a transaction's commit.
pub(crate) struct Eviction(Box<dyn FnOnce() -> RemoteEviction + Send>);

impl std::fmt::Debug for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Eviction")
    }
}

impl Scope {
    /// Whether rows this scope reads may be stored in the shared cache: not inside a
    /// transaction (its rows may never commit), not when a replica may have answered.
    pub(crate) fn fills_shared_cache(&self) -> bool {
        !self.in_transaction && !self.replica_reads
    }

    /// How this scope's statements are sent and counted.
    pub(crate) fn via(&self) -> Via<'_> {
        Via {
            counters: &self.counters,
            statements: &self.statements,
        }
    }

    /// Whether lazy loads are refused.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Runs the evictions deferred to this transaction's commit; returns their part
    /// in an external cache, for the commit to await.
    pub(crate) fn committed(&self) -> RemoteEviction {
        let Some(list) = &self.after_commit else {
            return RemoteEviction::default();
        };
        let deferred = match list.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(_) => return RemoteEviction::default(),
        };
        deferred
            .into_iter()
            .fold(RemoteEviction::default(), |all, Eviction(eviction)| {
                all.and(eviction())
            })
    }

    fn defer(&self, eviction: Eviction) {
        if let Some(Ok(mut list)) = self.after_commit.as_ref().map(|l| l.lock()) {
            list.push(eviction);
        }
    }

    /// Evicts rows of `M` (these keys, or all) and the relation entries that lead from
    /// or to `M`, from every cache this scope can see. Called by every write path,
    /// which awaits the returned part of the eviction in an external cache before it
    /// returns (or detaches it, when dropped).
    pub(crate) fn evict<M: Model>(&self, keys: Option<&[M::Key]>) -> RemoteEviction {
        for cache in [&self.cache, &self.outer_cache].into_iter().flatten() {
            cache.evict::<M>(keys);
        }
        let remote = match &self.shared {
            Some(shared) => shared.evict::<M>(keys),
            None => RemoteEviction::default(),
        };
        if self.after_commit.is_some() {
            let (outer, shared) = (self.outer_cache.clone(), self.shared.clone());
            let keys: Option<Vec<M::Key>> = keys.map(<[M::Key]>::to_vec);
            self.defer(Eviction(Box::new(move || {
                if let Some(cache) = outer {
                    cache.evict::<M>(keys.as_deref());
                }
                match shared {
                    Some(shared) => shared.evict::<M>(keys.as_deref()),
                    None => RemoteEviction::default(),
                }
            })));
        }
        remote
    }

    /// A many-to-many link of `R` changed: evicts it from the session caches (now and
    /// after commit). The shared cache holds rows, not links: nothing to evict there.
    pub(crate) fn evict_links<R: Relation>(&self) {
        for cache in [&self.cache, &self.outer_cache].into_iter().flatten() {
            cache.evict_links::<R>();
        }
        if let Some(outer) = self
            .outer_cache
            .clone()
            .filter(|_| self.after_commit.is_some())
        {
            self.defer(Eviction(Box::new(move || {
                outer.evict_links::<R>();
                RemoteEviction::default()
            })));
        }
    }
}
