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
//! - The shared cache is per `Db`, so per process: another process's writes (or
//!   another `Db`'s) are seen only when the row's time to live runs out. Coherence
//!   across processes (PostgreSQL `LISTEN`/`NOTIFY`) is not built; choose a policy
//!   whose TTL bounds the staleness you accept, or `Disabled`.
//! - Writes made outside the ORM (raw SQL, other programs) are not seen: call
//!   [`Session::clear_cache`](crate::Session::clear_cache), or rely on the shared
//!   cache's time to live.

mod clock;
pub(crate) mod coherence;
pub(crate) mod session;
pub(crate) mod shared;

pub use clock::{Clock, ManualClock, SystemClock};
pub use coherence::DEFAULT_CHANNEL;
pub use shared::{CachePolicy, CacheStats};
