//! Running a statement that returns rows of a model.

use crate::base::error::{Error, Result};
use crate::base::sql::SqlBuf;
use crate::base::value::as_sql_refs;
use crate::executor::Executor;
use crate::schema::model::Model;

/// Runs a statement that returns rows of `M` in `META` column order and decodes them.
pub(crate) async fn fetch_models<M: Model, E: Executor>(ex: &E, sql: &SqlBuf) -> Result<Vec<M>> {
    let rows = ex.query(&sql.text, &as_sql_refs(&sql.params)).await?;
    rows.iter().map(|row| M::decode(row, 0)).collect()
}

/// [`fetch_models`] for a statement that only reads (a replica may answer it).
pub(crate) async fn read_models<M: Model, E: Executor>(ex: &E, sql: &SqlBuf) -> Result<Vec<M>> {
    let rows = ex.query_read(&sql.text, &as_sql_refs(&sql.params)).await?;
    rows.iter().map(|row| M::decode(row, 0)).collect()
}

/// The one row a write by key returned: [`Error::NotFound`] if none,
/// [`Error::MultipleRows`] if more.
pub(crate) fn single<M: Model>(mut rows: Vec<M>) -> Result<M> {
    match rows.len() {
        1 => rows.pop().ok_or(Error::NotFound {
            model: M::META.name,
        }),
        0 => Err(Error::NotFound {
            model: M::META.name,
        }),
        count => Err(Error::MultipleRows {
            model: M::META.name,
            count,
        }),
    }
}
