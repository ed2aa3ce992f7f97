//! The one place a statement is sent: prepare (cached per connection) or describe
//! (the unnamed mode, `statement/mode.rs`), run, count, trace (`tracing` spans
//! `matrx_orm.query`, `matrx_orm.execute`, `matrx_orm.batch`).

use std::time::Instant;

use deadpool_postgres::ClientWrapper;
use postgres_types::ToSql;
use tokio_postgres::Row;
use tracing::Instrument;

use crate::base::error::{Error, Result};
use crate::statement::counter::Counters;
use crate::statement::mode::{typed, StatementMode, Statements};

/// Where one statement reports and how it is sent: the counters it bumps and the
/// statement mode of its `Db`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Via<'a> {
    pub(crate) counters: &'a Counters,
    pub(crate) statements: &'a Statements,
}

impl Via<'_> {
    pub(crate) fn unnamed(&self) -> bool {
        self.statements.mode == StatementMode::Unnamed
    }
}

/// PostgreSQL's limit on the parameters of one statement.
pub(crate) const MAX_PARAMS: usize = 65_535;

/// Refuses a statement with more parameters than the protocol can carry (the server
/// would reject it and the connection would be lost).
pub(crate) fn check_params(params: &[&(dyn ToSql + Sync)]) -> Result<()> {
    if params.len() > MAX_PARAMS {
        return Err(Error::InvalidInput(format!(
            "a statement with {} parameters; PostgreSQL allows {MAX_PARAMS} \
             (pass many values as one array, e.g. Column::is_in)",
            params.len()
        )));
    }
    Ok(())
}

/// Closes a pooled connection whose statement failed with a connection error,
/// instead of returning it to the pool (it may look open and fail the next caller).
pub(crate) fn discard_if_broken<T>(conn: deadpool_postgres::Object, result: &Result<T>) {
    if matches!(result, Err(Error::Connection(_))) {
        drop(deadpool_postgres::Object::take(conn));
    }
}

/// Runs one statement on one connection: prepare (cached), execute, count, trace.
pub(crate) async fn run_query(
    client: &ClientWrapper,
    via: Via<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    check_params(params)?;
    let span = tracing::debug_span!("matrx_orm.query", sql, rows = tracing::field::Empty);
    async {
        let started = Instant::now();
        via.counters.count();
        let rows = if via.unnamed() {
            let types = via
                .statements
                .param_types(client, sql, params.len())
                .await?;
            let sent = client.query_typed(sql, &typed(params, &types)?).await;
            forget_on_error(via, sql, sent)?
        } else {
            let stmt = client.prepare_cached(sql).await?;
            client.query(&stmt, params).await?
        };
        tracing::Span::current().record("rows", rows.len());
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            rows = rows.len(),
            "query done"
        );
        Ok(rows)
    }
    .instrument(span)
    .await
}

/// Like [`run_query`], for statements whose rows are not needed.
pub(crate) async fn run_execute(
    client: &ClientWrapper,
    via: Via<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    check_params(params)?;
    let span = tracing::debug_span!("matrx_orm.execute", sql, rows = tracing::field::Empty);
    async {
        let started = Instant::now();
        via.counters.count();
        let n = if via.unnamed() {
            let types = via
                .statements
                .param_types(client, sql, params.len())
                .await?;
            let sent = client.execute_typed(sql, &typed(params, &types)?).await;
            forget_on_error(via, sql, sent)?
        } else {
            let stmt = client.prepare_cached(sql).await?;
            client.execute(&stmt, params).await?
        };
        tracing::Span::current().record("rows", n);
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            rows = n,
            "execute done"
        );
        Ok(n)
    }
    .instrument(span)
    .await
}

/// In the unnamed mode, a statement the server refused forgets its described types:
/// the schema may have changed under them, and the next run describes it again.
pub(crate) fn forget_on_error<T>(
    via: Via<'_>,
    sql: &str,
    sent: std::result::Result<T, tokio_postgres::Error>,
) -> Result<T> {
    sent.map_err(|err| {
        if err.as_db_error().is_some() {
            via.statements.forget(sql);
        }
        Error::from(err)
    })
}

/// Runs unprepared, parameterless statements (transaction control, DDL).
pub(crate) async fn run_batch(
    client: &ClientWrapper,
    counters: &Counters,
    sql: &str,
) -> Result<()> {
    let span = tracing::debug_span!("matrx_orm.batch", sql);
    async {
        counters.count();
        client.batch_execute(sql).await?;
        Ok(())
    }
    .instrument(span)
    .await
}
