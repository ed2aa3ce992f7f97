//! Layer 0, the ground: errors, bound values, keys, row decoding, the static
//! description of models and relations, and SQL text. Nothing here names a layer above.

pub mod decode;
pub mod error;
pub(crate) mod hash;
pub mod key;
pub mod meta;
pub mod sql;
pub mod value;
