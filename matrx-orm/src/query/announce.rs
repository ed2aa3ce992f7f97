//! Writes that announce what they changed: the statement of a write is wrapped so the
//! same statement sends the cache invalidation (`pg_notify`), when the scope's `Db`
//! announces writes (`DbBuilder::coherent_cache`, `DbBuilder::notify_writes`).
//!
//! ```sql
//! WITH "written" AS (UPDATE .. RETURNING ..),
//!      "announced" AS (SELECT pg_notify($c::text, '1 <keys> <table>') FROM .. "written" ..)
//! SELECT "written".* FROM "written" WHERE (SELECT count(*) FROM "announced") >= 0
//! ```
//!
//! One statement, so one round trip and one implicit transaction: a write that fails
//! or rolls back (with its transaction) sends nothing; one that commits is never
//! without its notification, which PostgreSQL delivers at commit. The condition is
//! always true but cannot be evaluated without the `announced` CTE (an uncorrelated
//! subquery, run once before the first row): a `SELECT` in `WITH` runs only when the
//! statement reads it. The payload (`cache/coherence.rs`) is written by the server
//! from the rows the write returned, so writes by filter name exactly the rows they
//! touched; a write that touched no row sends nothing.

use crate::base::decode::decode_column;
use crate::base::error::Result;
use crate::base::key::Key;
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::{as_sql_refs, Param};
use crate::cache::coherence::push_notify_rows;
use crate::executor::{Executor, Scope};
use crate::schema::model::Model;

/// The CTE holding the written rows.
const WRITTEN: &str = "written";
/// The CTE sending the notification.
const ANNOUNCED: &str = "announced";

/// What the invalidation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// The primary keys of the returned rows (the write returns the key columns).
    Keys,
    /// The whole table (a write that may have changed primary keys, a junction).
    Table,
}

/// What the wrapped statement returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The written rows, as the write's `RETURNING` gave them.
    Rows,
    /// One row: the number of written rows (`bigint`).
    Count,
}

/// Wraps the text of a data-modifying statement with `bound` parameters so that it
/// also announces its rows of table `table` (keys of type `K` in `key_columns`);
/// returns the parameters to bind after the statement's own, or `None` (text
/// untouched) when the scope announces nothing.
pub(crate) fn wrap<K: Key>(
    scope: &Scope,
    text: &mut String,
    bound: usize,
    table: &str,
    key_columns: &[&str],
    names: Names,
    output: Output,
) -> Option<[Param; 2]> {
    let channel = scope.notify.as_ref()?;
    let mut sql = SqlBuf::new();
    sql.push("WITH ")
        .ident(WRITTEN)
        .push(" AS (")
        .push(text)
        .push("), ")
        .ident(ANNOUNCED)
        .push(" AS (");
    let keys = (names == Names::Keys).then_some(key_columns);
    let (channel_ref, table_ref) = (format!("${}", bound + 1), format!("${}", bound + 2));
    push_notify_rows::<K>(&mut sql, &channel_ref, &table_ref, WRITTEN, keys);
    sql.push(") SELECT ");
    match output {
        Output::Rows => sql.ident(WRITTEN).push(".*"),
        Output::Count => sql.push("count(*)"),
    };
    sql.push(" FROM ")
        .ident(WRITTEN)
        .push(" WHERE (SELECT count(*) FROM ")
        .ident(ANNOUNCED)
        .push(") >= 0");
    *text = sql.text;
    Some([
        Param::new(channel.to_string()),
        Param::new(table.to_owned()),
    ])
}

/// [`wrap`] for a write of model `M` held in a [`SqlBuf`].
pub(crate) fn wrap_model<M: Model>(scope: &Scope, sql: &mut SqlBuf, names: Names, output: Output) {
    let keys: Vec<&str> = M::META.primary_key_columns().map(|c| c.name).collect();
    let bound = sql.params.len();
    if let Some(extra) = wrap::<M::Key>(
        scope,
        &mut sql.text,
        bound,
        M::META.table,
        &keys,
        names,
        output,
    ) {
        sql.params.extend(extra);
    }
}

/// Runs a write of `M` that returns no rows (`DELETE ... WHERE pk = $1`) and returns
/// how many rows it wrote; announced (its key columns added to a `RETURNING`) when the
/// scope announces writes.
pub(crate) async fn execute_announced<M: Model, E: Executor>(
    ex: &E,
    mut sql: SqlBuf,
) -> Result<u64> {
    if ex.scope().notify.is_none() {
        return ex.execute(&sql.text, &as_sql_refs(&sql.params)).await;
    }
    sql.push(" RETURNING ");
    for (i, column) in M::META.primary_key_columns().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.column(ROOT, column.name);
    }
    wrap_model::<M>(ex.scope(), &mut sql, Names::Keys, Output::Count);
    count(ex, &sql, M::META.name).await
}

/// Runs a statement wrapped with [`Output::Count`] and reads its count.
pub(crate) async fn count<E: Executor>(ex: &E, sql: &SqlBuf, model: &'static str) -> Result<u64> {
    let rows = ex.query(&sql.text, &as_sql_refs(&sql.params)).await?;
    let n: i64 = match rows.first() {
        Some(row) => decode_column(row, 0, model)?,
        None => 0,
    };
    Ok(n.max(0) as u64)
}
