//! Read replicas: which replica a read goes to, and when none does.
//!
//! A read (a statement the ORM sends through [`Executor::query_read`], or a stream)
//! from a `Db` outside a transaction, or from a session that has not written, goes to
//! the **first usable replica in the order they were configured** — so every edge of
//! one load reads the same replica while it stays usable — and to the primary when
//! none is. A replica is usable when:
//!
//! - a connection to it opens (a failure marks it down until the next check);
//! - it streams from the primary (`pg_stat_wal_receiver.status = 'streaming'`): a
//!   standby that lost its primary has no way to know how far behind it is;
//! - its replay lag is within the bound: zero when it has replayed everything it
//!   received, else the age of the last transaction it replayed.
//!
//! The check runs at most once per `recheck` interval per replica, over the simple
//! query protocol (no prepared statement, so it also works behind a pooler), and is
//! not counted as a statement of the caller. A read whose replica connection breaks
//! mid-statement is retried once on the primary (it only reads).
//!
//! [`Executor::query_read`]: crate::Executor::query_read

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use tokio_postgres::SimpleQueryMessage;

/// Replica lag as the replica sees it: `t` when it streams from the primary, its lag
/// in seconds (`0` when it replayed all it received; NULL when it never replayed a
/// transaction since it started and has not caught up).
const LAG_SQL: &str = "SELECT \
    EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')::text, \
    (CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() \
          THEN 0 \
          ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END)::text";

/// The replicas of one `Db`.
pub(crate) struct Replicas {
    members: Vec<Member>,
    max_lag: Duration,
    recheck: Duration,
    reads: AtomicU64,
}

struct Member {
    name: String,
    pool: Pool,
    health: Mutex<Health>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    checked: Option<Instant>,
    usable: bool,
    lag: Option<Duration>,
}

/// One replica as last checked: see [`Db::replica_status`](crate::Db::replica_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `host:port` of the replica.
    pub name: String,
    /// Whether reads go to it (as of the last check).
    pub usable: bool,
    /// Its replay lag at the last check, if it answered and streams.
    pub lag: Option<Duration>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("members", &self.status())
            .field("max_lag", &self.max_lag)
            .finish()
    }
}

impl Replicas {
    pub(crate) fn new(members: Vec<(String, Pool)>, max_lag: Duration, recheck: Duration) -> Self {
        Replicas {
            members: members
                .into_iter()
                .map(|(name, pool)| Member {
                    name,
                    pool,
                    health: Mutex::new(Health::default()),
                })
                .collect(),
            max_lag,
            recheck,
            reads: AtomicU64::new(0),
        }
    }

    /// A connection to the first usable replica, with its index; `None` sends the
    /// read to the primary.
    pub(crate) async fn pick(&self) -> Option<(usize, Object)> {
        for (i, member) in self.members.iter().enumerate() {
            let health = member.health();
            let fresh = health.checked.is_some_and(|at| at.elapsed() < self.recheck);
            if fresh && !health.usable {
                continue;
            }
            let Ok(conn) = member.pool.get().await else {
                member.set(false, None);
                continue;
            };
            if fresh {
                return Some((i, conn));
            }
            match lag(&conn).await {
                Some(lag) if lag <= self.max_lag => {
                    member.set(true, Some(lag));
                    return Some((i, conn));
                }
                Some(lag) => {
                    tracing::debug!(replica = %member.name, ?lag, "replica skipped: lagging");
                    member.set(false, Some(lag));
                }
                None => {
                    tracing::debug!(replica = %member.name, "replica skipped: not streaming");
                    member.set(false, None);
                }
            }
        }
        None
    }

    /// Counts a read a replica answered.
    pub(crate) fn answered(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks replica `i` unusable until its next check (its connection broke).
    pub(crate) fn mark_down(&self, i: usize) {
        if let Some(member) = self.members.get(i) {
            tracing::warn!(replica = %member.name, "replica connection failed; reading from the primary");
            member.set(false, None);
        }
    }

    /// Reads the replicas answered so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Each replica as last checked.
    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.members
            .iter()
            .map(|m| {
                let health = m.health();
                ReplicaStatus {
                    name: m.name.clone(),
                    usable: health.usable,
                    lag: health.lag,
                }
            })
            .collect()
    }
}

impl Member {
    fn health(&self) -> Health {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, usable: bool, lag: Option<Duration>) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = Health {
            checked: Some(Instant::now()),
            usable,
            lag,
        };
    }
}

/// The replica's lag, or `None` when it does not stream from a primary (or the check
/// failed).
async fn lag(conn: &Object) -> Option<Duration> {
    let messages = conn.simple_query(LAG_SQL).await.ok()?;
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })?;
    if row.get(0)? != "true" {
        return None;
    }
    let seconds: f64 = row.get(1)?.parse().ok()?;
    Duration::try_from_secs_f64(seconds.max(0.0)).ok()
}
