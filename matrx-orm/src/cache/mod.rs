//! Caching: the session's identity map and relation entries, and the optional
//! process-wide row cache of a [`Db`](crate::Db).
//!
//! Rules the cache keeps (it is never allowed to give a wrong answer):
//!
//! - A filtered lookup never comes from a cache: queries with filters always run; only
//!   loads by key (relations, gets by primary key) are answered from a cache.
//! - Every write through the ORM (insert, update, delete — of instances or by filter —,
//!   upsert, many-to-many add/remove/set/clear) evicts, even when it fails or is
//!   cancelled after it was sent: from the shared cache the rows it touched (the whole
//!   model when it failed, was cancelled or changed a primary key); from the session,
//!   and the session behind a transaction, whatever it can make stale: the written
//!   instances, every instance of a model whose relations lead to the written table
//!   (they may hold written rows in set-once relation fields), and every relation
//!   entry holding such instances. Models no relation path connects to the written
//!   one are kept.
//! - A load that started before a write in the same session holds none of its rows
//!   after it (a generation, as in the shared cache).
//! - A load with a customised edge (filter, ordering, limit) empties the session's
//!   cache afterwards: it filled relation fields of instances the session may hold
//!   with a subset.
//! - A transaction has a cache of its own, dropped with it and emptied when a
//!   savepoint rolls back: nothing read or written inside a transaction that rolls
//!   back survives it. A transaction neither reads nor fills the shared cache, and its
//!   writes evict again when it commits.
//! - Instances always hold every column, so a partial row can never overwrite a full one.
//! - The shared cache is per `Db`. Without coherence, another process's writes (or
//!   another `Db`'s) are seen only when the row's time to live runs out.
//! - With coherence ([`DbBuilder::coherent_cache`](crate::DbBuilder::coherent_cache)):
//!   - every write through the ORM announces what it wrote **in its own statement**
//!     (a data-modifying CTE calling `pg_notify`): the written rows' primary keys, or
//!     the whole table when they do not fit the 8000-byte payload, when the write may
//!     have changed a primary key, or for a many-to-many link write (its junction
//!     table: caches hold links per relation, not per row). A write that fails or
//!     rolls back announces nothing; one that commits is announced at its commit.
//!     Writes that touched no row announce nothing.
//!   - a dedicated connection per `Db` `LISTEN`s and evicts what every writer names,
//!     by the same rule as a local write: the named rows of every cached model with
//!     that table name (the shared cache holds rows, not relation entries: belongs-to
//!     loads read it by the target's key, so evicting the row is evicting the entry).
//!     An eviction bumps the model's generation, so a read that started before it does
//!     not store its older rows after it.
//!   - while that connection is down (not yet up, lost, a heartbeat unanswered) the
//!     cache is empty and refuses to serve or store ([`CacheStats::refusals`]); it
//!     serves again once a new `LISTEN` has taken effect. A gap costs misses, never a
//!     stale hit.
//!   - the bound: a row another process changed can be served until its notification
//!     reaches this `Db` (commit order, about a millisecond on one host); after
//!     [`Db::cache_sync`](crate::Db::cache_sync) returns, nothing committed before the
//!     call is served stale.
//! - In Redis (`DbBuilder::redis_cache`, feature
//!   `redis`), the same rules hold across every process sharing it:
//!   - every write through the ORM evicts the rows it touched (the whole table when
//!     it failed or changed a key) from Redis **before it returns**, and a
//!     transaction's writes again when it commits; a write dropped before its end
//!     evicts in the background;
//!   - a read takes the table's generation in Redis with its lookup, before its
//!     statement; Redis stores its rows only if no eviction moved the generation
//!     since (one atomic script): a read that raced a write never stores older rows;
//!   - with coherence, every listener evicts in Redis what the notifications name,
//!     and a listener that (re)connects evicts every cached table there once before
//!     its process reads: it cannot know what it did not hear;
//!   - Redis that does not answer is a miss, never an error; an eviction that did not
//!     reach it makes the process evict every cached table there before it uses
//!     Redis again.
//! - Writes made outside the ORM (raw SQL, other programs) are not seen by a session
//!   (call [`Session::clear_cache`](crate::Session::clear_cache)), nor by the shared
//!   cache unless the opt-in triggers of [`CoherenceTriggers`](crate::CoherenceTriggers)
//!   announce them, or the row's time to live runs out.

mod clock;
pub(crate) mod coherence;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod session;
pub(crate) mod shared;
#[cfg(feature = "redis")]
pub(crate) mod stored;

pub use clock::{Clock, ManualClock, SystemClock};
pub use coherence::DEFAULT_CHANNEL;
pub use shared::{CachePolicy, CacheStats};
