//! Cache eviction around writes: every write path evicts what it touched, through a
//! guard armed before the statement is sent, so a write that fails, or is cancelled
//! after it left (the server still runs it), evicts too.

use std::future::Future;
use std::marker::PhantomData;

use crate::base::error::Result;
use crate::executor::Scope;
use crate::schema::model::Model;

/// Runs a write to `M` and evicts what it touched from every cache of `scope`: the
/// written rows' keys, or every row of `M` when the write failed or changed a primary
/// key (`all_rows`), or when the caller stopped waiting (a write cancelled after it was
/// sent still runs on the server; an error can hide a write that happened).
pub(crate) async fn evicting<M: Model>(
    scope: &Scope,
    all_rows: bool,
    write: impl Future<Output = Result<Vec<M>>>,
) -> Result<Vec<M>> {
    let guard = EvictOnDrop::<M>::new(scope);
    let result = write.await;
    guard.disarm();
    let remote = match &result {
        Ok(rows) if !all_rows => {
            let keys: Vec<M::Key> = rows.iter().map(Model::key).collect();
            scope.evict::<M>(Some(&keys))
        }
        _ => scope.evict::<M>(None),
    };
    remote.wait().await;
    result
}

/// Evicts every row of `M` if dropped before [`disarm`](Self::disarm).
pub(crate) struct EvictOnDrop<'s, M: Model> {
    scope: Option<&'s Scope>,
    _model: PhantomData<fn() -> M>,
}

impl<'s, M: Model> EvictOnDrop<'s, M> {
    pub(crate) fn new(scope: &'s Scope) -> Self {
        EvictOnDrop {
            scope: Some(scope),
            _model: PhantomData,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.scope = None;
    }
}

impl<M: Model> Drop for EvictOnDrop<'_, M> {
    fn drop(&mut self) {
        if let Some(scope) = self.scope {
            scope.evict::<M>(None).detach();
        }
    }
}
