//! Query counters: every statement is counted where it was issued (the `Db`'s pool
//! and, in a session, the session), so tests can assert query counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A query counter, shared by clones of the `Db` or session that owns it.
#[derive(Debug, Default)]
pub struct QueryCounter(AtomicU64);

impl QueryCounter {
    /// Statements run so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters one statement reports to: always the pool's, and a session's when it
/// runs in one.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub(crate) db: Arc<QueryCounter>,
    pub(crate) session: Option<Arc<QueryCounter>>,
}

impl Counters {
    /// Counts one statement.
    pub(crate) fn count(&self) {
        self.db.bump();
        if let Some(c) = &self.session {
            c.bump();
        }
    }
}
