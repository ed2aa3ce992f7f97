//! Cache coherence across processes, as `DbBuilder` options and `Db` methods: which
//! writes announce themselves, whether a listener keeps the shared cache coherent
//! (the settings and the listener are `db/listen.rs`).

use std::time::Duration;

use crate::db::listen::Listener;
use crate::db::pool::{Db, DbBuilder};

impl DbBuilder {
    /// Keeps the shared cache coherent with other processes (and other `Db`s) writing
    /// to the same database: every write through this `Db` sends an invalidation in
    /// its own statement (as [`notify_writes`](Self::notify_writes)), and, when some
    /// model is cached, a dedicated connection `LISTEN`s for the invalidations of
    /// every writer and evicts the rows they name. While that connection is down the
    /// cache holds nothing and answers nothing; see [`crate::cache`] for the rules.
    ///
    /// Every process that writes to cached tables must announce its writes (this
    /// option or [`notify_writes`](Self::notify_writes)); writes made outside the ORM
    /// are announced by the opt-in triggers of
    /// [`CoherenceTriggers`](crate::CoherenceTriggers).
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "tags")]
    /// # pub struct Tag { #[orm(primary_key)] pub id: i64, pub name: String }
    /// # async fn demo() -> matrx_orm::Result<()> {
    /// use matrx_orm::cache::CachePolicy;
    /// let db = matrx_orm::Db::builder("postgres://root@localhost:5432/test")
    ///     .cache::<Tag>(CachePolicy::LongTerm)
    ///     .coherent_cache(true)
    ///     .connect()
    ///     .await?;
    /// assert!(db.cache_listening());
    /// # Ok(()) }
    /// ```
    pub fn coherent_cache(mut self, coherent: bool) -> Self {
        self.coherence.listen = coherent;
        self
    }

    /// Sends a cache invalidation with every write through this `Db` (in the write's
    /// own statement: a rolled-back write sends nothing), without listening: for a
    /// process that caches nothing but writes to tables other processes cache.
    pub fn notify_writes(mut self, notify: bool) -> Self {
        self.coherence.notify = notify;
        self
    }

    /// The channel invalidations are sent and heard on (default
    /// [`DEFAULT_CHANNEL`](crate::cache::DEFAULT_CHANNEL)): ASCII letters, digits and
    /// `_`. Processes that must stay coherent use the same channel.
    pub fn coherence_channel(mut self, channel: impl Into<String>) -> Self {
        self.coherence.channel = channel.into();
        self
    }

    /// How often an idle invalidation listener checks its connection answers (default
    /// 5 s); one unanswered within the connect timeout counts as lost (the cache is
    /// flushed and refuses until the listener is back). Bounds how long a connection
    /// lost without a word (no reset from the network) goes unnoticed.
    pub fn coherence_heartbeat(mut self, every: Duration) -> Self {
        self.coherence.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// Where the invalidation listener connects, when not where the pool does: a
    /// direct connection to the server while the pool goes through a pooler in
    /// transaction mode (`LISTEN` needs a session of its own). Same database.
    pub fn coherence_listen_url(mut self, url: impl Into<String>) -> Self {
        self.coherence.listen_url = Some(url.into());
        self
    }
}

impl Db {
    /// Whether the shared cache hears other processes' writes now: `true` while the
    /// listener of a [coherent](DbBuilder::coherent_cache) cache is connected and
    /// listening; `false` while it reconnects (the cache then answers nothing) and
    /// without coherence.
    pub fn cache_listening(&self) -> bool {
        self.listener().is_some_and(Listener::is_listening)
    }

    /// Returns once this `Db`'s shared cache has heard every invalidation committed
    /// before the call (one round trip on the listener's connection), so the next
    /// read does not serve a row another process changed before: read-your-writes
    /// across processes, once you know the other process committed. Returns at once
    /// without a coherent cache, or while its listener is down (the cache then serves
    /// nothing).
    ///
    /// ```no_run
    /// # async fn demo(db: &matrx_orm::Db) {
    /// // Another process said it committed: make sure this cache heard it.
    /// db.cache_sync().await;
    /// # }
    /// ```
    pub async fn cache_sync(&self) {
        if let Some(listener) = self.listener() {
            listener.sync().await;
        }
    }
}
