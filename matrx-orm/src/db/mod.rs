//! Layer 7, the top: [`Db`](pool::Db) (the pool), [`Session`](session::Session) (a
//! request's scope) and [`Transaction`](transaction::Transaction). The only place that
//! wires the pool, the caches and the request-scoped batches together into the
//! [`Scope`](crate::executor::Scope) every statement reports to.

pub(crate) mod coherent;
pub(crate) mod held;
pub(crate) mod listen;
pub(crate) mod pool;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
pub(crate) mod redis_options;
pub(crate) mod replica;
pub(crate) mod session;
pub(crate) mod tls;
pub(crate) mod transaction;
pub(crate) mod url;
