//! Request-scoped batching (the DataLoader pattern): inside one session, lazy loads
//! that are pending at the same time collapse into one query per relation edge (or per
//! model, for gets by primary key).
//!
//! How a batch closes without a timer: the first caller of a batch leads it. It yields
//! to the scheduler (`tokio::task::yield_now`) and looks again; while a yield round
//! still brings new keys (the other futures of the same `join_all`, or tasks queued
//! on the runtime, taking their turn), it yields once more. When a round adds nothing
//! (three rounds in a row on a multi-thread runtime, where tasks woken on other workers
//! need a moment), or the batch holds the maximum of distinct keys, the batch closes:
//! later callers start a new one. Rounds only count as quiet once every waiter of the
//! session's earlier batches has resumed: a wave of waiters woken by one batch's result
//! (the items of every order, say) is still being polled — a `join_all` polls a few
//! futures per turn when some yield — and each of them may be about to ask for the
//! next edge (their products). The leader
//! then runs the batch through the batch primitive and publishes the shared result to
//! every waiter. No fixed sleep is added to latency.
//!
//! Cancellation: if the leader is dropped before publishing, the batch is published as
//! abandoned and each waiter retries on its own, so one cancelled caller never blocks
//! or fails the others. An error reaches every waiter of that batch and no other.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::base::error::Result;

/// How many yield rounds a leader waits at most for a batch to stop growing.
const MAX_ROUNDS: usize = 16;

/// The default largest number of keys in one batch.
pub const DEFAULT_MAX_BATCH: usize = 10_000;

/// The open batches of one session (or one transaction of a session).
#[derive(Debug)]
pub(crate) struct Loaders {
    open: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    max_batch: usize,
    /// Waiters of published batches that have not resumed yet (nor been dropped).
    resuming: AtomicUsize,
}

impl Loaders {
    pub(crate) fn new(max_batch: usize) -> Self {
        Loaders {
            open: Mutex::new(HashMap::new()),
            max_batch: max_batch.max(1),
            resuming: AtomicUsize::new(0),
        }
    }

    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// What a batch publishes.
enum Outcome<O> {
    Done(Result<O>),
    Abandoned,
}

impl<O: Clone> Clone for Outcome<O> {
    fn clone(&self) -> Self {
        match self {
            Outcome::Done(r) => Outcome::Done(r.clone()),
            Outcome::Abandoned => Outcome::Abandoned,
        }
    }
}

struct Batch<K, O> {
    /// The distinct keys of the batch, in arrival order.
    keys: Mutex<Distinct<K>>,
    outcome: watch::Sender<Option<Outcome<O>>>,
    /// Its waiters, for the session's count of waiters still to resume.
    wave: Mutex<Wave>,
}

/// The waiters of one batch (callers that joined it; the leader is not one).
#[derive(Default)]
struct Wave {
    joined: usize,
    /// Waiters dropped before the batch published.
    left: usize,
    published: bool,
}

impl<K, O> Batch<K, O> {
    /// Publishes `outcome`; the waiters still there now have to resume.
    fn publish(&self, loaders: &Loaders, outcome: Outcome<O>) {
        {
            let mut wave = self.wave.lock().unwrap_or_else(PoisonError::into_inner);
            wave.published = true;
            loaders
                .resuming
                .fetch_add(wave.joined - wave.left, Ordering::AcqRel);
        }
        self.outcome.send_replace(Some(outcome));
    }
}

/// A caller waiting for a batch it joined: resumed when it has seen the outcome, or
/// when it is dropped, whichever comes first.
struct Waiter<'a, K, O> {
    loaders: &'a Loaders,
    batch: Arc<Batch<K, O>>,
    resumed: bool,
}

impl<K, O> Waiter<'_, K, O> {
    /// Counts this waiter as resumed (it saw the published outcome).
    fn resume(&mut self) {
        if !self.resumed {
            self.resumed = true;
            self.loaders.resuming.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<K, O> Drop for Waiter<'_, K, O> {
    fn drop(&mut self) {
        if self.resumed {
            return;
        }
        let mut wave = self
            .batch
            .wave
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if wave.published {
            self.loaders.resuming.fetch_sub(1, Ordering::AcqRel);
        } else {
            wave.left += 1;
        }
    }
}

/// Keys in arrival order, each once (the batch size counts distinct keys).
struct Distinct<K> {
    order: Vec<K>,
    seen: HashSet<K>,
}

impl<K: Clone + Eq + Hash> Distinct<K> {
    fn new(first: K) -> Self {
        Distinct {
            order: vec![first.clone()],
            seen: HashSet::from([first]),
        }
    }

    fn add(&mut self, key: K) {
        if self.seen.insert(key.clone()) {
            self.order.push(key);
        }
    }
}

impl<K, O> Batch<K, O> {
    fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len()
    }
}

/// Publishes `Abandoned` if the leader is dropped before it published a result.
struct LeaderGuard<'a, K: Send + 'static, O: Send + Sync + 'static> {
    loaders: &'a Loaders,
    kind: TypeId,
    batch: Arc<Batch<K, O>>,
    published: bool,
}

impl<K: Send + 'static, O: Send + Sync + 'static> Drop for LeaderGuard<'_, K, O> {
    fn drop(&mut self) {
        if !self.published {
            close(self.loaders, self.kind, &self.batch);
            self.batch.publish(self.loaders, Outcome::Abandoned);
        }
    }
}

/// Removes `batch` from the open batches if it is still the open one.
fn close<K: Send + 'static, O: Send + Sync + 'static>(
    loaders: &Loaders,
    kind: TypeId,
    batch: &Arc<Batch<K, O>>,
) {
    let mut open = loaders.open.lock().unwrap_or_else(PoisonError::into_inner);
    let is_current = open
        .get(&kind)
        .and_then(|b| b.clone().downcast::<Batch<K, O>>().ok())
        .is_some_and(|b| Arc::ptr_eq(&b, batch));
    if is_current {
        open.remove(&kind);
    }
}

/// Adds `key` to the open batch of `kind` (opening one if needed) and returns the
/// batch's shared result once it has run. `run` executes a closed batch's keys (it is
/// called by whichever caller leads the batch).
pub(crate) async fn load<K, O, F, Fut>(loaders: &Loaders, kind: TypeId, key: K, run: F) -> Result<O>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + Sync + 'static,
    F: Fn(Vec<K>) -> Fut,
    Fut: std::future::Future<Output = Result<O>>,
{
    loop {
        let (batch, leader) = join_or_open::<K, O>(loaders, kind, key.clone());
        if !leader {
            let mut rx = batch.outcome.subscribe();
            let mut waiter = Waiter {
                loaders,
                batch,
                resumed: false,
            };
            let outcome = match rx.wait_for(Option::is_some).await {
                Ok(seen) => (*seen).clone(),
                Err(_) => Some(Outcome::Abandoned),
            };
            waiter.resume();
            match outcome {
                Some(Outcome::Done(result)) => return result,
                _ => continue,
            }
        }
        let mut guard = LeaderGuard {
            loaders,
            kind,
            batch,
            published: false,
        };
        let quiet_needed = quiet_rounds();
        let mut seen = guard.batch.len();
        let mut quiet = 0;
        for _ in 0..MAX_ROUNDS {
            if seen >= loaders.max_batch {
                break;
            }
            tokio::task::yield_now().await;
            let now = guard.batch.len();
            if loaders.resuming.load(Ordering::Acquire) > 0 {
                // Earlier waiters are still resuming: this round proves nothing.
                quiet = 0;
                seen = now;
            } else if now == seen {
                quiet += 1;
                if quiet >= quiet_needed {
                    break;
                }
            } else {
                quiet = 0;
                seen = now;
            }
        }
        close(loaders, kind, &guard.batch);
        let keys = std::mem::take(
            &mut guard
                .batch
                .keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .order,
        );
        let result = run(keys).await;
        guard.published = true;
        guard.batch.publish(loaders, Outcome::Done(result.clone()));
        return result;
    }
}

/// How many consecutive yield rounds without a new key close a batch: one on a
/// current-thread runtime (every other future of the task has had its turn); a few on a
/// multi-thread runtime, where tasks woken on other workers need a moment to run.
fn quiet_rounds() -> usize {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => 1,
        _ => 3,
    }
}

/// Joins the open batch of `kind`, or opens one; returns it and whether we lead it.
fn join_or_open<K, O>(loaders: &Loaders, kind: TypeId, key: K) -> (Arc<Batch<K, O>>, bool)
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    let mut open = loaders.open.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(batch) = open
        .get(&kind)
        .and_then(|b| b.clone().downcast::<Batch<K, O>>().ok())
    {
        let full = {
            let mut keys = batch.keys.lock().unwrap_or_else(PoisonError::into_inner);
            keys.add(key);
            keys.order.len() >= loaders.max_batch
        };
        batch
            .wave
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .joined += 1;
        if full {
            open.remove(&kind);
        }
        return (batch, false);
    }
    let (outcome, _) = watch::channel(None);
    let batch = Arc::new(Batch {
        keys: Mutex::new(Distinct::new(key)),
        outcome,
        wave: Mutex::new(Wave::default()),
    });
    if loaders.max_batch > 1 {
        open.insert(kind, batch.clone());
    }
    (batch, true)
}
