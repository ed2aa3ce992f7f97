//! Request-scoped batching (the DataLoader pattern): inside one session, lazy loads
//! that are pending at the same time collapse into one query per relation edge (or per
//! model, for gets by primary key).
//!
//! How a batch closes without a timer: the first caller of a batch leads it. It yields
//! to the scheduler (`tokio::task::yield_now`) and looks again.
//!
//! - While only one task has loaded through the session (a request's futures joined
//!   with `join_all`, `try_join_all`, `join!`), one yield is enough: when the leader
//!   runs again its task has been polled through, and every other future of the task
//!   that could ask has asked.
//! - Once a second task has used the session (spawned tasks sharing it), the leader
//!   yields while a round still brings new keys, and closes after a round that adds
//!   nothing (three in a row on a multi-thread runtime, where tasks woken on other
//!   workers need a moment; one on a current-thread runtime).
//!
//! Either way, rounds only count once every waiter of the session's earlier batches
//! has resumed: a wave of waiters woken by one batch's result (the items of every
//! order, say) is still being polled — a `join_all` polls a few futures per turn when
//! some yield — and each of them may be about to ask for the next edge (their
//! products). A batch also closes when it holds the maximum of distinct keys; later
//! callers start a new one. The leader then runs the batch through the batch primitive
//! and publishes the shared result to every waiter. No fixed sleep is added to latency.
//!
//! Waiting is cheap, because every poll of a task polls all its pending futures: a
//! waiter registers its task's waker once (the waiters of one task share it, so a
//! published batch wakes each task once) and is polled again without a lock.
//!
//! Cancellation: if the leader is dropped before publishing, the batch is published as
//! abandoned and each waiter retries on its own, so one cancelled caller never blocks
//! or fails the others. An error reaches every waiter of that batch and no other.

use std::any::{Any, TypeId};
use std::future::poll_fn;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Poll, Waker};

use crate::base::error::Result;
use crate::base::hash::{key_set, KeyMap, KeySet};

/// How many yield rounds a leader waits at most for a batch to stop growing.
const MAX_ROUNDS: usize = 16;

/// The default largest number of keys in one batch.
pub const DEFAULT_MAX_BATCH: usize = 10_000;

/// The open batches of one session (or one transaction of a session).
#[derive(Debug)]
pub(crate) struct Loaders {
    open: Mutex<KeyMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    max_batch: usize,
    /// Waiters of published batches that have not resumed yet (nor been dropped).
    resuming: AtomicUsize,
    /// The task that first loaded through these batches (`None` inside: outside any
    /// task, as under `block_on`).
    first_task: OnceLock<Option<tokio::task::Id>>,
    /// Whether a second task has loaded through them: its calls may come a scheduler
    /// round later, so batches wait for more quiet rounds.
    shared: AtomicBool,
}

impl Loaders {
    pub(crate) fn new(max_batch: usize) -> Self {
        Loaders {
            open: Mutex::new(KeyMap::default()),
            max_batch: max_batch.max(1),
            resuming: AtomicUsize::new(0),
            first_task: OnceLock::new(),
            shared: AtomicBool::new(false),
        }
    }

    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Notes which task is calling; once two different tasks have called, the
    /// batches are shared between tasks for good.
    fn note_task(&self) {
        if self.shared.load(Ordering::Relaxed) {
            return;
        }
        let current = tokio::task::try_id();
        if *self.first_task.get_or_init(|| current) != current {
            self.shared.store(true, Ordering::Relaxed);
        }
    }

    /// Whether only one task has loaded through these batches so far.
    fn single_task(&self) -> bool {
        !self.shared.load(Ordering::Relaxed)
    }

    /// How many consecutive yield rounds without a new key close a batch shared by
    /// several tasks: one on a current-thread runtime (every other task has had its
    /// turn), a few on a multi-thread runtime, where tasks woken on other workers need
    /// a moment to run.
    fn quiet_rounds(&self) -> usize {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => 1,
            _ => 3,
        }
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
    /// Its keys and waiters.
    wave: Mutex<Wave<K>>,
    /// Set once, by [`Batch::publish`] (under the `wave` lock).
    outcome: OnceLock<Outcome<O>>,
}

/// The keys of one batch and its waiters (callers that joined it; the leader is not
/// one): for the session's count of waiters still to resume, and the wakers to call
/// when it publishes.
struct Wave<K> {
    /// The distinct keys of the batch, in arrival order.
    keys: Distinct<K>,
    joined: usize,
    /// Waiters dropped before the batch published.
    left: usize,
    published: bool,
    /// One waker per waiting task: the waiters of one task share its waker, so a
    /// published batch wakes each task once.
    wakers: Vec<Waker>,
}

impl<K, O> Batch<K, O> {
    /// Publishes `outcome`; the waiters still there now have to resume.
    fn publish(&self, loaders: &Loaders, outcome: Outcome<O>) {
        let wakers = {
            let mut wave = self.wave.lock().unwrap_or_else(PoisonError::into_inner);
            wave.published = true;
            loaders
                .resuming
                .fetch_add(wave.joined - wave.left, Ordering::AcqRel);
            // Set under the lock, so a waiter that finds no outcome there has its
            // waker in the list this takes.
            let _ = self.outcome.set(outcome);
            std::mem::take(&mut wave.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Waits for the published outcome. Polled again with the waker it registered
    /// (every poll of a task polls all its pending futures), it takes no lock.
    async fn outcome(&self) -> &Outcome<O> {
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            if let Some(outcome) = self.outcome.get() {
                return Poll::Ready(outcome);
            }
            if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            let mut wave = self.wave.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(outcome) = self.outcome.get() {
                return Poll::Ready(outcome);
            }
            if !wave.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wave.wakers.push(cx.waker().clone());
            }
            registered = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
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
    seen: KeySet<K>,
}

impl<K: Clone + Eq + Hash> Distinct<K> {
    /// Room for a typical wave (a request's per-object calls) from the start, so a
    /// batch does not grow its set and list key by key.
    const ROOM: usize = 32;

    fn new(first: K) -> Self {
        let mut order = Vec::with_capacity(Self::ROOM);
        order.push(first.clone());
        let mut seen = key_set(Self::ROOM);
        seen.insert(first);
        Distinct { order, seen }
    }

    fn add(&mut self, key: K) {
        if self.seen.insert(key.clone()) {
            self.order.push(key);
        }
    }
}

impl<K, O> Batch<K, O> {
    fn len(&self) -> usize {
        self.wave
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
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
    loaders.note_task();
    loop {
        let (batch, leader) = join_or_open::<K, O>(loaders, kind, key.clone());
        if !leader {
            let mut waiter = Waiter {
                loaders,
                batch,
                resumed: false,
            };
            let outcome = waiter.batch.outcome().await.clone();
            waiter.resume();
            match outcome {
                Outcome::Done(result) => return result,
                Outcome::Abandoned => continue,
            }
        }
        let mut guard = LeaderGuard {
            loaders,
            kind,
            batch,
            published: false,
        };
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
            } else if loaders.single_task() {
                // The task was polled through since this batch opened: each of its
                // futures that could ask has asked.
                break;
            } else if now == seen {
                quiet += 1;
                // Read each round: a second task may have joined meanwhile.
                if quiet >= loaders.quiet_rounds() {
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
                .wave
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys
                .order,
        );
        let result = run(keys).await;
        guard.published = true;
        guard.batch.publish(loaders, Outcome::Done(result.clone()));
        return result;
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
            let mut wave = batch.wave.lock().unwrap_or_else(PoisonError::into_inner);
            wave.keys.add(key);
            wave.joined += 1;
            wave.keys.order.len() >= loaders.max_batch
        };
        if full {
            open.remove(&kind);
        }
        return (batch, false);
    }
    let batch = Arc::new(Batch {
        wave: Mutex::new(Wave {
            keys: Distinct::new(key),
            joined: 0,
            left: 0,
            published: false,
            wakers: Vec::new(),
        }),
        outcome: OnceLock::new(),
    });
    if loaders.max_batch > 1 {
        open.insert(kind, batch.clone());
    }
    (batch, true)
}
