//! Layer 6, queries and writes: [`Select`](select::Select) and updates by filter,
//! inserts and writes of instances, many-to-many link writes, DDL from metadata, and
//! [`ModelExt`](model_ext::ModelExt), the methods users call on their models.

pub(crate) mod annotate;
pub mod ddl;
mod evict;
pub(crate) mod m2m;
pub(crate) mod model_ext;
pub(crate) mod page;
mod rows;
pub(crate) mod select;
pub(crate) mod stream;
pub(crate) mod values;
pub(crate) mod write;
