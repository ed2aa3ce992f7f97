//! The shop schema of the benchmark, as user code declares it: the same models the
//! examples use (`matrx_orm_examples::shop`), so they are declared once.

#[allow(unused_imports)]
pub use matrx_orm_examples::shop::*;
