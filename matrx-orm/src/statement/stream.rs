//! Sending a statement whose rows are read as they arrive (`Select::stream`), two ways:
//!
//! - [`stream_pooled`]: on a connection the stream owns (a `Db` or a session), the
//!   statement is sent once with `query_raw` and its rows are handed over one by one.
//!   Memory stays bounded: the driver hands a response to the reader through a channel
//!   of one message and stops reading the socket while it is full, so the server
//!   blocks on a full socket instead of the client buffering the result. A stream
//!   dropped before its end closes the connection (the server then stops the query)
//!   unless every row had already arrived; it never returns a connection with an
//!   unfinished result to the pool.
//! - [`declare_cursor`] / [`fetch_cursor`]: on a connection shared with other
//!   statements (a transaction), the statement is declared as a cursor and its rows
//!   are fetched in batches, so other statements of the transaction can run between
//!   two batches (a `query_raw` stream left unread would block them).
//!
//! Either way the stream counts as one statement and is traced by one span
//! (`matrx_orm.stream`). Both work in the unnamed statement mode (`statement/mode.rs`):
//! the pooled stream is one unnamed exchange, which a transaction pooler keeps on one
//! server connection until its last row; the cursor lives inside the transaction.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use deadpool_postgres::{ClientWrapper, Object};
use futures_util::Stream;
use postgres_types::ToSql;
use tokio_postgres::Row;

use crate::base::error::{Error, Result};
use crate::statement::mode::typed;
use crate::statement::run::{check_params, forget_on_error, Via};

/// The rows of one statement on a pooled connection the stream owns; see the module.
pub(crate) struct PooledRows {
    conn: Option<Object>,
    rows: Pin<Box<tokio_postgres::RowStream>>,
    span: tracing::Span,
    started: Instant,
    count: u64,
    done: bool,
}

/// Sends `sql` on `conn` (prepared and cached per connection, or unnamed) and returns
/// its rows as they arrive. Counted once and traced by a `matrx_orm.stream` span.
pub(crate) async fn stream_pooled(
    conn: Object,
    via: Via<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<PooledRows> {
    check_params(params)?;
    let span = tracing::debug_span!("matrx_orm.stream", sql, rows = tracing::field::Empty);
    let started = Instant::now();
    via.counters.count();
    let sent = async {
        if via.unnamed() {
            let types = via.statements.param_types(&conn, sql, params.len()).await?;
            let sent = conn.query_typed_raw(sql, typed(params, &types)?).await;
            return forget_on_error(via, sql, sent);
        }
        let stmt = conn.prepare_cached(sql).await?;
        Ok::<_, Error>(conn.query_raw(&stmt, params.iter().copied()).await?)
    };
    let rows = tracing::Instrument::instrument(sent, span.clone()).await;
    match rows {
        Ok(rows) => Ok(PooledRows {
            conn: Some(conn),
            rows: Box::pin(rows),
            span,
            started,
            count: 0,
            done: false,
        }),
        Err(err) => {
            let result = Err(err);
            crate::statement::run::discard_if_broken(conn, &result);
            result
        }
    }
}

impl PooledRows {
    fn finish(&mut self) {
        self.done = true;
        self.span.record("rows", self.count);
        let _entered = self.span.enter();
        tracing::debug!(
            elapsed_us = self.started.elapsed().as_micros() as u64,
            rows = self.count,
            "stream done"
        );
    }

    /// Closes the connection instead of pooling it.
    fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }

    /// Whether the rest of the result has already arrived: reads what is buffered
    /// without waiting (a bounded number of rows), and says whether the end was seen.
    fn drain_buffered(&mut self) -> bool {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..4096 {
            match self.rows.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_))) | Poll::Pending => return false,
                Poll::Ready(None) => return true,
            }
        }
        false
    }
}

impl Stream for PooledRows {
    type Item = Result<Row>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rows.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(row))) => {
                self.count += 1;
                Poll::Ready(Some(Ok(row)))
            }
            Poll::Ready(Some(Err(err))) => {
                let err = Error::from(err);
                self.finish();
                if matches!(err, Error::Connection(_)) {
                    self.discard();
                }
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for PooledRows {
    fn drop(&mut self) {
        // Dropped before the end: the connection goes back to the pool only if the
        // result has fully arrived; otherwise it is closed (the server stops sending
        // when it sees the socket closed). Never pooled with a result in flight.
        if !self.done && !self.drain_buffered() {
            self.discard();
        }
    }
}

/// Declares `sql` as cursor `name` on `client` (inside a transaction). This is the
/// stream's one counted statement; the fetches that follow are not counted.
pub(crate) async fn declare_cursor(
    client: &ClientWrapper,
    via: Via<'_>,
    name: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<()> {
    check_params(params)?;
    let mut text = String::from("DECLARE ");
    crate::base::sql::push_ident(&mut text, name);
    text.push_str(" NO SCROLL CURSOR FOR ");
    text.push_str(sql);
    let span = tracing::debug_span!("matrx_orm.stream", sql, cursor = name);
    tracing::Instrument::instrument(
        async {
            via.counters.count();
            if via.unnamed() {
                // The cursor's query takes the same parameters (and is what a cache of
                // described texts can share with other statements).
                let types = via
                    .statements
                    .param_types(client, sql, params.len())
                    .await?;
                let sent = client.execute_typed(&text, &typed(params, &types)?).await;
                forget_on_error(via, sql, sent)?;
                return Ok(());
            }
            // Unprepared: the text names a cursor, so caching it would only fill the
            // connection's statement cache.
            client.execute(text.as_str(), params).await?;
            Ok(())
        },
        span,
    )
    .await
}

/// Fetches the next `batch` rows of cursor `name` (fewer at the end).
pub(crate) async fn fetch_cursor(
    client: &ClientWrapper,
    via: Via<'_>,
    name: &str,
    batch: usize,
) -> Result<Vec<Row>> {
    let mut text = format!("FETCH FORWARD {} FROM ", batch.max(1));
    crate::base::sql::push_ident(&mut text, name);
    let rows = if via.unnamed() {
        client.query_typed(&text, &[]).await?
    } else {
        let stmt = client.prepare_cached(&text).await?;
        client.query(&stmt, &[]).await?
    };
    tracing::debug!(cursor = name, rows = rows.len(), "cursor fetch");
    Ok(rows)
}

/// Closes cursor `name` once its rows are all read.
pub(crate) async fn close_cursor(client: &ClientWrapper, name: &str) -> Result<()> {
    let mut text = String::from("CLOSE ");
    crate::base::sql::push_ident(&mut text, name);
    client.batch_execute(&text).await?;
    Ok(())
}
