//! Streaming a query: [`Select::stream`] and [`Select::stream_chunks`].
//!
//! The statement is the one [`Select::all`] sends, read through
//! [`StreamExecutor::query_stream`]: rows are decoded as they arrive and never held
//! all at once. `stream_chunks` loads the query's prefetch edges per chunk through
//! the same engine as `all` ([`Prefetch::load`](crate::Prefetch)): one statement per
//! edge per chunk.

use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::base::error::{Error, Result};
use crate::base::value::as_sql_refs;
use crate::executor::{StreamExecutor, DEFAULT_STREAM_BATCH};
use crate::query::select::Select;
use crate::schema::model::Model;

impl<M: Model> Select<M> {
    /// Runs the query and yields its rows as they arrive, decoded one at a time: the
    /// memory held is bounded whatever the number of rows. One statement.
    ///
    /// On a [`Db`](crate::Db) or [`Session`](crate::Session) the stream holds a pooled
    /// connection until it ends or is dropped; on a [`Transaction`](crate::Transaction)
    /// it reads a cursor in batches of 1,000 rows, and the transaction's other
    /// statements may run between batches. Dropping the stream early is safe (see
    /// [`StreamExecutor::query_stream`]).
    ///
    /// Relations cannot be loaded row by row: a query with
    /// [`prefetch`](Self::prefetch) edges is refused here (use
    /// [`stream_chunks`](Self::stream_chunks)), and so is one with
    /// [`select_related`](Self::select_related) or [`balanced`](Self::balanced)
    /// trees — both with [`Error::InvalidInput`], as the stream's first item.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub total_cents: i64 }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let mut total = 0i64;
    /// let mut orders = Order::query().order_by(Order::ID.asc()).stream(db);
    /// while let Some(order) = orders.try_next().await? {
    ///     total += order.total_cents;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream<'e, E: StreamExecutor>(&self, ex: &'e E) -> BoxStream<'e, Result<M>> {
        let checked = self.stream_check(false).and_then(|()| self.render_select());
        let rows = async move {
            let sql = checked?;
            ex.query_stream(&sql.text, &as_sql_refs(&sql.params), DEFAULT_STREAM_BATCH)
                .await
        };
        stream::once(rows)
            .try_flatten()
            .map(|row| row.and_then(|row| M::decode(&row, 0)))
            .boxed()
    }

    /// Like [`stream`](Self::stream), in chunks of `size` rows (the last may be
    /// shorter), with the query's [`prefetch`](Self::prefetch) edges loaded on each
    /// chunk before it is yielded: `1 + edges × chunks` statements. The next chunk's
    /// rows are read while a chunk's edges load, so memory is bounded by two chunks and
    /// their relations.
    ///
    /// On a `Db` or `Session` the edges run on other pooled connections while the
    /// stream holds its own (a pool of one cannot serve them); on a transaction they
    /// run on its connection between two fetches. `size` 0 is refused.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64,
    /// #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let mut chunks = Order::query()
    ///     .order_by(Order::ID.asc())
    ///     .prefetch(Order::CUSTOMER)
    ///     .stream_chunks(db, 1000);
    /// while let Some(orders) = chunks.try_next().await? {
    ///     for order in &orders {
    ///         let _customer = order.customer.get();
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream_chunks<'e, E: StreamExecutor>(
        &self,
        ex: &'e E,
        size: usize,
    ) -> BoxStream<'e, Result<Vec<M>>> {
        let checked = self
            .stream_check(true)
            .and_then(|()| {
                if size == 0 {
                    return Err(Error::InvalidInput(format!(
                        "stream_chunks of {}: a chunk size of 0",
                        M::META.name
                    )));
                }
                self.prefetch.validate()
            })
            .and_then(|()| self.render_select());
        let rows = async move {
            let sql = checked?;
            ex.query_stream(&sql.text, &as_sql_refs(&sql.params), size)
                .await
        };
        let prefetch = self.prefetch.clone();
        stream::once(rows)
            .try_flatten()
            .map(|row| row.and_then(|row| M::decode(&row, 0)))
            .try_chunks(size.max(1))
            .map_err(|e| e.1)
            .map_ok(move |chunk| {
                let prefetch = prefetch.clone();
                async move {
                    let parents: Vec<&M> = chunk.iter().collect();
                    prefetch.load_settled(ex, &parents).await?;
                    Ok(chunk)
                }
            })
            // The next chunk's rows are read while this chunk's edges load: at most
            // two chunks are held.
            .try_buffered(2)
            .boxed()
    }

    /// Refuses what a stream cannot do: joined trees, and (row by row) prefetch edges.
    fn stream_check(&self, chunks: bool) -> Result<()> {
        if self.has_joined_trees() {
            return Err(Error::InvalidInput(format!(
                "a stream of {} cannot join relations (select_related / balanced / a \
                 joined edge); load them per chunk with prefetch and stream_chunks",
                M::META.name
            )));
        }
        if !chunks && !self.prefetch.is_empty() {
            return Err(Error::InvalidInput(format!(
                "a stream of {} yields rows one at a time and cannot prefetch \
                 relations; use stream_chunks",
                M::META.name
            )));
        }
        Ok(())
    }
}
