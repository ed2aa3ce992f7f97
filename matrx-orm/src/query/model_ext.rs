//! [`ModelExt`]: what users do with a model — queries, writes, lazy relation loads,
//! many-to-many links, raw SQL. Implemented for every [`Model`]; in the
//! [prelude](crate::prelude).

use std::future::Future;

use crate::base::error::{Error, Result};
use crate::base::meta::RelationKind;
use crate::executor::Executor;
use crate::query::m2m::{self, SetOutcome, TargetKey};
use crate::query::select::Select;
use crate::query::write::{self, Create, InsertRows};
use crate::relation::fetch::{fetch, fetch_all_related, get, Loaded};
use crate::schema::column::ColumnRef;
use crate::schema::filter::Filter;
use crate::schema::model::{Model, Relation};
use crate::schema::slot::Slot;

/// Queries, writes and relation loads on a model, implemented for every [`Model`]:
/// `Order::query()`, `Order::get(&db, &1)`, `order.fetch(&db, Order::CUSTOMER)`.
///
/// ```no_run
/// use matrx_orm::prelude::*;
///
/// #[derive(Model, Debug)]
/// #[orm(table = "customers")]
/// pub struct Customer {
///     #[orm(primary_key, auto)]
///     pub id: i64,
///     pub email: String,
/// }
///
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let ada = Customer { id: 0, email: "ada@example.com".into() }.insert(db).await?;
/// let again = Customer::get(db, &ada.id).await?;
/// let all = Customer::query().filter(Customer::EMAIL.ilike("%@example.com")).all(db).await?;
/// # Ok(()) }
/// ```
pub trait ModelExt: Model {
    /// A query on every row of the model.
    fn query() -> Select<Self> {
        Select::new()
    }

    /// A query on the rows matching `filter`.
    fn filter(filter: Filter<Self>) -> Select<Self> {
        Select::new().filter(filter)
    }

    /// The row with primary key `key`, or [`Error::NotFound`]. In a
    /// [`Session`](crate::Session), concurrent gets of one model share one query.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "warehouses")]
    /// # pub struct Warehouse { #[orm(primary_key)] pub region: String, #[orm(primary_key)] pub code: i32, pub name: String }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let lagos = Warehouse::get(db, &("af".to_string(), 1)).await?;
    /// # Ok(()) }
    /// ```
    fn get<E: Executor>(ex: &E, key: &Self::Key) -> impl Future<Output = Result<Self>> + Send {
        async move {
            get::<Self>(ex, key).await?.ok_or(Error::NotFound {
                model: Self::META.name,
            })
        }
    }

    /// The row with primary key `key`, if there is one.
    fn get_or_none<E: Executor>(
        ex: &E,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Option<Self>>> + Send {
        get::<Self>(ex, key)
    }

    /// Inserts this instance (leaving `auto` columns to the database) and returns the
    /// row as stored, defaults filled.
    fn insert<E: Executor>(&self, ex: &E) -> impl Future<Output = Result<Self>> + Send {
        async move {
            let mut rows = InsertRows::new(std::slice::from_ref(self)).exec(ex).await?;
            rows.pop().ok_or(Error::NotFound {
                model: Self::META.name,
            })
        }
    }

    /// Inserts many instances in one statement, whatever their number (see
    /// [`InsertRows::exec`]); returns them as stored, in order.
    fn insert_many<E: Executor>(
        ex: &E,
        rows: &[Self],
    ) -> impl Future<Output = Result<Vec<Self>>> + Send {
        async move { InsertRows::new(rows).exec(ex).await }
    }

    /// An insert of `rows` with options: explicit `auto` columns, `ON CONFLICT`.
    fn insert_rows(rows: &[Self]) -> InsertRows<'_, Self> {
        InsertRows::new(rows)
    }

    /// Inserts this instance, or updates the row it conflicts with on `target`
    /// (`ON CONFLICT (target) DO UPDATE`); returns the row as stored.
    fn upsert<'a, E: Executor>(
        &'a self,
        ex: &'a E,
        target: &'a [ColumnRef<Self>],
    ) -> impl Future<Output = Result<Self>> + Send + 'a {
        async move {
            let mut rows = InsertRows::new(std::slice::from_ref(self))
                .on_conflict_update(target, &[])
                .exec(ex)
                .await?;
            rows.pop().ok_or(Error::NotFound {
                model: Self::META.name,
            })
        }
    }

    /// An insert of one row from chosen columns; the database fills the rest.
    fn create() -> Create<Self> {
        Create::new()
    }

    /// Writes every non-key column of this instance to its row, then refreshes the
    /// instance from the stored row (relations become not loaded). [`Error::NotFound`]
    /// if no row has this key.
    fn update<E: Executor>(&mut self, ex: &E) -> impl Future<Output = Result<()>> + Send {
        async move {
            *self = write::update_instance(ex, &*self).await?;
            Ok(())
        }
    }

    /// Deletes this instance's row; [`Error::NotFound`] if no row has this key.
    fn delete<E: Executor>(&self, ex: &E) -> impl Future<Output = Result<()>> + Send {
        async move { write::delete_by_key::<Self, E>(ex, &self.key()).await }
    }

    /// Loads relation `rel` of this instance and attaches it (see
    /// [`fetch`]): no query if it is loaded already or its key
    /// is NULL, one query otherwise.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64,
    /// #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer> }
    /// # async fn demo(db: &matrx_orm::Db, order: Order) -> matrx_orm::Result<()> {
    /// let customer = order.fetch(db, Order::CUSTOMER).await?; // Option<Arc<Customer>>
    /// assert!(order.customer.state().is_some()); // now attached
    /// # Ok(()) }
    /// ```
    fn fetch<R, E>(&self, ex: &E, rel: R) -> impl Future<Output = Result<Loaded<R>>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        let _ = rel;
        fetch::<R>(ex, self)
    }

    /// [`fetch`](Self::fetch) for a `belongs_to` relation (the seed's name).
    fn fetch_fk<R, E>(&self, ex: &E, rel: R) -> impl Future<Output = Result<Loaded<R>>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        self.fetch_kind(ex, rel, &[RelationKind::BelongsTo], "fetch_fk")
    }

    /// [`fetch`](Self::fetch) for a `has_many` or `has_one` relation (the seed's name).
    fn fetch_ifk<R, E>(&self, ex: &E, rel: R) -> impl Future<Output = Result<Loaded<R>>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        self.fetch_kind(
            ex,
            rel,
            &[RelationKind::HasMany, RelationKind::HasOne],
            "fetch_ifk",
        )
    }

    /// [`fetch`](Self::fetch) for a `many_to_many` relation (the seed's name).
    fn fetch_m2m<R, E>(&self, ex: &E, rel: R) -> impl Future<Output = Result<Loaded<R>>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        self.fetch_kind(ex, rel, &[RelationKind::ManyToMany], "fetch_m2m")
    }

    #[doc(hidden)]
    fn fetch_kind<R, E>(
        &self,
        ex: &E,
        _rel: R,
        kinds: &'static [RelationKind],
        call: &'static str,
    ) -> impl Future<Output = Result<Loaded<R>>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        async move {
            if !kinds.contains(&R::META.kind) {
                return Err(Error::InvalidInput(format!(
                    "{call} on {}.{}, a {:?} relation; use fetch",
                    Self::META.name,
                    R::META.name,
                    R::META.kind
                )));
            }
            fetch::<R>(ex, self).await
        }
    }

    /// Loads every relation of this instance concurrently (one query per relation not
    /// loaded yet). Errors are returned, not logged.
    fn fetch_all_related<E: Executor>(&self, ex: &E) -> impl Future<Output = Result<()>> + Send {
        fetch_all_related(ex, self)
    }

    /// Links this instance to the targets with keys `targets` through many-to-many
    /// relation `rel`, skipping existing links; returns how many links were created.
    /// One statement. The relation's field on this instance becomes not loaded.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "tags")]
    /// # pub struct Tag { #[orm(primary_key)] pub id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64,
    /// #   #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))] pub tags: Many<Tag> }
    /// # async fn demo(db: &matrx_orm::Db, mut order: Order) -> matrx_orm::Result<()> {
    /// let created = order.m2m_add(db, Order::TAGS, [1, 2, 3]).await?;
    /// let outcome = order.m2m_set(db, Order::TAGS, [2, 4]).await?; // removes 1 and 3, adds 4
    /// # Ok(()) }
    /// ```
    fn m2m_add<R, E>(
        &mut self,
        ex: &E,
        rel: R,
        targets: impl IntoIterator<Item = TargetKey<R>>,
    ) -> impl Future<Output = Result<u64>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        let _ = rel;
        let targets: Vec<TargetKey<R>> = targets.into_iter().collect();
        R::slot_mut(self).reset();
        m2m::add::<R, E>(ex, self, targets)
    }

    /// Unlinks this instance from the targets with keys `targets`; returns how many
    /// links were deleted. One statement.
    fn m2m_remove<R, E>(
        &mut self,
        ex: &E,
        rel: R,
        targets: impl IntoIterator<Item = TargetKey<R>>,
    ) -> impl Future<Output = Result<u64>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        let _ = rel;
        let targets: Vec<TargetKey<R>> = targets.into_iter().collect();
        R::slot_mut(self).reset();
        m2m::remove::<R, E>(ex, self, targets)
    }

    /// Makes `targets` exactly this instance's links: deletes the others, adds the
    /// missing, in one atomic statement.
    fn m2m_set<R, E>(
        &mut self,
        ex: &E,
        rel: R,
        targets: impl IntoIterator<Item = TargetKey<R>>,
    ) -> impl Future<Output = Result<SetOutcome>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        let _ = rel;
        let targets: Vec<TargetKey<R>> = targets.into_iter().collect();
        R::slot_mut(self).reset();
        m2m::set::<R, E>(ex, self, targets)
    }

    /// Deletes every link of this instance through `rel`; returns how many.
    fn m2m_clear<R, E>(&mut self, ex: &E, rel: R) -> impl Future<Output = Result<u64>> + Send
    where
        R: Relation<Source = Self>,
        E: Executor,
    {
        let _ = rel;
        R::slot_mut(self).reset();
        m2m::clear::<R, E>(ex, self)
    }

    /// Runs raw SQL and decodes each row by column name. Values go in `params`
    /// (`$1`, `$2`, ...), never into the SQL text.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64, pub email: String }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let found = Customer::raw(db, "SELECT * FROM customers WHERE email LIKE $1", &[&"%@example.com"]).await?;
    /// # Ok(()) }
    /// ```
    fn raw<E: Executor>(
        ex: &E,
        sql: &str,
        params: &[&(dyn postgres_types::ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Self>>> + Send {
        async move {
            let rows = ex.query(sql, params).await?;
            rows.iter().map(Self::decode_named).collect()
        }
    }
}

impl<M: Model> ModelExt for M {}
