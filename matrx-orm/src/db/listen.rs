//! The listener of a coherent shared cache: a dedicated connection (not pooled) that
//! `LISTEN`s on the invalidation channel and evicts what other processes' writes name.
//!
//! While it cannot hear them (not connected yet, connection lost, the server
//! restarted, a heartbeat unanswered) the cache is empty and refuses to serve or store
//! ([`SharedCache::stop_serving`]); it serves again only once a new `LISTEN` has
//! taken effect ([`SharedCache::resume_serving`]), reconnecting with a backoff
//! (50 ms doubling to 5 s). A gap therefore costs misses, never a stale hit.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::base::error::{Error, Result};
use crate::base::sql::quote_ident;
use crate::cache::coherence::{parse_sync, sync_payload, valid_channel, Invalidation};
use crate::cache::shared::SharedCache;
use crate::cache::DEFAULT_CHANNEL;
use crate::db::tls::RustlsConnect;
use crate::db::url::ConnectUrl;

/// The first wait before reconnecting; doubled after each failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The coherence settings of a [`DbBuilder`](crate::DbBuilder) (set in `db/coherent.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Coherence {
    /// Listen and evict (`coherent_cache`).
    pub(crate) listen: bool,
    /// Announce this `Db`'s writes even without listening (`notify_writes`).
    pub(crate) notify: bool,
    pub(crate) channel: String,
    pub(crate) listen_url: Option<String>,
    pub(crate) heartbeat: Duration,
}

impl Default for Coherence {
    fn default() -> Self {
        Coherence {
            listen: false,
            notify: false,
            channel: DEFAULT_CHANNEL.to_owned(),
            listen_url: None,
            heartbeat: Duration::from_secs(5),
        }
    }
}

impl Coherence {
    /// Checks the settings and, for a coherent `cache`, starts its listener
    /// (connecting like `pool` unless given a URL of its own). Returns the channel this
    /// `Db`'s writes announce on (none when they do not) and the listener.
    pub(crate) async fn start(
        &self,
        pool: &tokio_postgres::Config,
        pool_tls: &RustlsConnect,
        cache: Option<&Arc<SharedCache>>,
        connect_timeout: Duration,
    ) -> Result<(Option<Arc<str>>, Option<Listener>)> {
        let announce = self.notify || self.listen;
        if !announce {
            return Ok((None, None));
        }
        if !valid_channel(&self.channel) {
            return Err(Error::InvalidInput(format!(
                "invalid cache invalidation channel {:?}: use ASCII letters, digits and _",
                self.channel
            )));
        }
        let channel: Arc<str> = Arc::from(self.channel.as_str());
        let notify = Some(channel.clone());
        let Some(cache) = cache.filter(|_| self.listen) else {
            return Ok((notify, None));
        };
        let (mut pg, tls) = match &self.listen_url {
            Some(url) => {
                let url = ConnectUrl::parse(url)?;
                let mut pg: tokio_postgres::Config = url
                    .driver
                    .parse()
                    .map_err(|e| Error::InvalidInput(format!("invalid cache listener URL: {e}")))?;
                pg.connect_timeout(connect_timeout);
                let (tls, ssl_mode) = RustlsConnect::for_url(&url)?;
                pg.ssl_mode(ssl_mode);
                (pg, tls)
            }
            None => (pool.clone(), pool_tls.clone()),
        };
        pg.application_name(format!("matrx-orm listener {channel}"));
        let config = ListenConfig {
            pg,
            tls,
            channel,
            heartbeat: self.heartbeat,
            heartbeat_timeout: connect_timeout,
        };
        let listener = Listener::start(config, cache.clone(), connect_timeout).await;
        Ok((notify, Some(listener)))
    }
}

/// How the listener connects and checks its connection.
#[derive(Debug, Clone)]
pub(crate) struct ListenConfig {
    /// The connection settings (the pool's, with the listener's application name).
    pub(crate) pg: tokio_postgres::Config,
    /// The TLS connector (the pool's, or the listener URL's `sslmode`).
    pub(crate) tls: RustlsConnect,
    /// The channel (a plain name, checked by the builder).
    pub(crate) channel: Arc<str>,
    /// How often an idle listener checks its connection answers.
    pub(crate) heartbeat: Duration,
    /// How long a heartbeat may take before the connection counts as lost.
    pub(crate) heartbeat_timeout: Duration,
}

/// Told when the listener has heard its own sync notification.
type SyncWaiter = oneshot::Sender<()>;

/// A running listener; stopped when dropped (with the `Db`).
#[derive(Debug)]
pub(crate) struct Listener {
    task: JoinHandle<()>,
    listening: watch::Receiver<bool>,
    syncs: mpsc::UnboundedSender<SyncWaiter>,
}

impl Listener {
    /// Starts listening for `cache`, waiting up to `wait` for the first `LISTEN` to
    /// take effect (past that the cache refuses until it does).
    pub(crate) async fn start(
        config: ListenConfig,
        cache: Arc<SharedCache>,
        wait: Duration,
    ) -> Listener {
        let (state, listening) = watch::channel(false);
        let (syncs, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(config, cache, state, requests));
        let mut first = listening.clone();
        let _ = tokio::time::timeout(wait, first.wait_for(|&on| on)).await;
        Listener {
            task,
            listening,
            syncs,
        }
    }

    /// Returns once the listener has heard every invalidation committed before the
    /// call: it notifies itself on its channel and waits to hear that (PostgreSQL
    /// delivers notifications in commit order). When the listener is down, or lost
    /// while waiting, returns at once: the cache then holds nothing and serves nothing
    /// until a new `LISTEN` took effect, after every write committed before the call.
    pub(crate) async fn sync(&self) {
        if !self.is_listening() {
            return;
        }
        let (waiter, heard) = oneshot::channel();
        if self.syncs.send(waiter).is_ok() {
            let _ = heard.await;
        }
    }

    /// Whether the listener hears invalidations now.
    pub(crate) fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens, and on every loss flushes the cache and reconnects with a backoff.
async fn run(
    config: ListenConfig,
    cache: Arc<SharedCache>,
    state: watch::Sender<bool>,
    mut syncs: mpsc::UnboundedReceiver<SyncWaiter>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let (listened, reason) = listen_once(&config, &cache, &state, &mut syncs).await;
        // Flush and refuse before anything else: a row cached now could miss a write.
        cache.stop_serving();
        state.send_replace(false);
        if listened {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!(
            channel = %config.channel,
            %reason,
            retry_in = ?backoff,
            "cache invalidation listener lost; the shared cache refuses to serve until it is back"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: connect, `LISTEN`, serve, evict until the connection ends.
/// Returns whether `LISTEN` took effect, and why it ended.
async fn listen_once(
    config: &ListenConfig,
    cache: &Arc<SharedCache>,
    state: &watch::Sender<bool>,
    syncs: &mut mpsc::UnboundedReceiver<SyncWaiter>,
) -> (bool, String) {
    let (client, mut connection) = match config.pg.connect(config.tls.clone()).await {
        Ok(pair) => pair,
        Err(e) => return (false, format!("connect: {e}")),
    };
    // Dropped with this connection: a waiter left then learns the listener was lost.
    let pending: Arc<Mutex<HashMap<u64, SyncWaiter>>> = Arc::default();
    let token = RandomState::new().hash_one(Arc::as_ptr(cache));
    let (evicting, heard) = (cache.clone(), pending.clone());
    let drive = async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => match parse_sync(n.payload()) {
                    Some((from, n)) if from == token => {
                        let waiter = heard
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&n);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(());
                        }
                    }
                    Some(_) => {}
                    None => receive(&evicting, n.payload()).await,
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("connection: {e}"),
                None => return "connection closed".to_owned(),
            }
        }
    };
    tokio::pin!(drive);
    let listen = format!("LISTEN {}", quote_ident(&config.channel));
    tokio::select! {
        done = client.batch_execute(&listen) => {
            if let Err(e) = done {
                return (false, format!("LISTEN: {e}"));
            }
        }
        reason = &mut drive => return (false, reason),
    }
    // LISTEN has committed: every write committing from now on is heard.
    cache.resume_serving();
    state.send_replace(true);
    tracing::debug!(channel = %config.channel, "cache invalidation listener up");
    let mut sent = 0u64;
    loop {
        let beat = async {
            tokio::time::sleep(config.heartbeat).await;
            tokio::time::timeout(config.heartbeat_timeout, client.batch_execute("")).await
        };
        tokio::select! {
            reason = &mut drive => return (true, reason),
            request = syncs.recv() => {
                let Some(waiter) = request else {
                    return (true, "the Db was dropped".to_owned());
                };
                sent += 1;
                pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(sent, waiter);
                let (channel, payload) = (config.channel.to_string(), sync_payload(token, sent));
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&channel, &payload];
                let notify = client.execute("SELECT pg_notify($1::text, $2::text)", &params);
                tokio::select! {
                    reason = &mut drive => return (true, reason),
                    done = notify => {
                        if let Err(e) = done {
                            return (true, format!("sync: {e}"));
                        }
                    }
                }
            }
            answered = beat => match answered {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return (true, format!("heartbeat: {e}")),
                Err(_) => return (true, "heartbeat unanswered".to_owned()),
            },
        }
    }
}

/// Evicts what one notification names; a payload it cannot read drops every row.
/// An eviction in an external store (Redis) ends before the next notification is
/// read, so a [`Db::cache_sync`](crate::Db::cache_sync) answered after it has seen it
/// through.
async fn receive(cache: &SharedCache, payload: &str) {
    match Invalidation::parse(payload) {
        Some(invalidation) => {
            tracing::trace!(table = %invalidation.table, "cache invalidation");
            cache.invalidate(&invalidation).wait().await;
        }
        None => {
            tracing::warn!(
                payload,
                "unreadable cache invalidation: every cached row dropped"
            );
            cache.evict_everything();
        }
    }
}
