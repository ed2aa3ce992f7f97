//! Layer 5, the relation engine: loading relations for a set of parents.
//!
//! - `sql.rs` writes the one statement that loads a relation for a key set;
//! - `batch.rs` is the batch primitive every strategy shares ([`load_edge`]): one
//!   query for a set of parent keys, rows grouped by parent key, the caches consulted;
//! - `stitch.rs` attaches loaded rows to their parents;
//! - `fetch.rs` is the lazy, per-instance load (through the session's batches);
//! - `prefetch.rs` holds relation trees ([`Prefetch`], [`Path`], [`Planned`]) and
//!   loads them one query per edge;
//! - `joined/` plans, renders and decodes trees loaded inside one statement
//!   (`select_related`, `balanced`).

pub(crate) mod aggregate;
pub(crate) mod batch;
pub(crate) mod fetch;
pub(crate) mod joined;
pub(crate) mod prefetch;
pub(crate) mod sql;
pub(crate) mod stitch;

pub use aggregate::PerParent;
pub use batch::{load_by_keys, load_edge, Groups, Keyed};
pub use fetch::{fetch, fetch_all_related, Loaded};
pub use joined::policy::{
    balanced_strategy, LoadStrategy, BALANCED_JOIN_LIMIT, BALANCED_JOIN_LIMIT_TO_MANY,
};
#[doc(hidden)]
pub use joined::policy::{AggregateEncoding, JoinedShape};
pub use prefetch::{
    prefetch_related, EdgeStrategy, IntoPrefetch, Path, Planned, Prefetch, RelationExt,
};
