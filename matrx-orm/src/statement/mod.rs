//! Layer 2, statement execution: sending one statement on one connection, counting it
//! and tracing it. It knows nothing of models, caches or transactions; what happens
//! around a statement is decided by the layers above.

pub mod counter;
pub mod mode;
pub mod run;
pub mod stream;
