//! The [`Model`] trait and the static description of a table ([`ModelMeta`]).
//!
//! `#[derive(Model)]` implements the trait; everything else in the crate (SQL
//! rendering, DDL, relation loading) works from the metadata it emits.

use std::borrow::Cow;
use std::future::Future;

use tokio_postgres::Row;

use crate::column::ColumnRef;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::filter::Filter;
use crate::key::Key;
use crate::query::Select;
use crate::relation::m2m::{self, SetOutcome, TargetKey};
use crate::relation::{
    fetch, fetch_all_related, DynRelation, Loaded, Relation, RelationKind, RelationMeta, Slot,
};
use crate::write::{self, Create, InsertRows};

/// Static description of one column.
#[derive(Debug)]
pub struct ColumnMeta {
    /// The SQL column name.
    pub name: &'static str,
    /// The Rust field name.
    pub field: &'static str,
    /// The PostgreSQL type used by DDL (e.g. `bigint`, `text[]`).
    pub sql_type: fn() -> Cow<'static, str>,
    /// Whether the column accepts NULL (the field is an `Option`).
    pub nullable: bool,
    /// Whether the column is part of the primary key.
    pub primary_key: bool,
    /// Whether the database fills the column when an insert leaves it out
    /// (an identity column, or a column with a default).
    pub auto: bool,
    /// A default expression for DDL, written by the model's author.
    pub default_sql: Option<&'static str>,
    /// Whether DDL adds a `UNIQUE` constraint.
    pub unique: bool,
    /// Whether DDL adds an index.
    pub indexed: bool,
}

/// Static description of one model: its table, columns and relations.
#[derive(Debug)]
pub struct ModelMeta {
    /// The Rust type name, used in errors.
    pub name: &'static str,
    /// The schema, or `None` for the connection's `search_path`.
    pub schema: Option<&'static str>,
    /// The table name.
    pub table: &'static str,
    /// Every column, in field order.
    pub columns: &'static [ColumnMeta],
    /// Indexes into `columns` of the primary-key columns, in key order.
    pub primary_key: &'static [usize],
    /// The relations declared on the model.
    pub relations: &'static [RelationMeta],
}

impl ModelMeta {
    /// The column with this SQL name.
    pub fn column(&self, name: &str) -> Option<&'static ColumnMeta> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary-key columns, in key order.
    pub fn primary_key_columns(&self) -> impl Iterator<Item = &'static ColumnMeta> + '_ {
        self.primary_key.iter().map(|&i| &self.columns[i])
    }

    /// The relation with this field name.
    pub fn relation(&self, name: &str) -> Option<&'static RelationMeta> {
        self.relations.iter().find(|r| r.name == name)
    }
}

/// A Rust struct mapped to a table. Implement it with `#[derive(Model)]`.
///
/// ```
/// use matrx_orm::Model;
///
/// #[derive(Model, Debug, Clone)]
/// #[orm(table = "customers")]
/// pub struct Customer {
///     #[orm(primary_key, auto)]
///     pub id: i64,
///     pub name: String,
///     #[orm(unique)]
///     pub email: String,
///     pub referred_by: Option<i64>,
/// }
///
/// assert_eq!(Customer::META.table, "customers");
/// assert_eq!(Customer::EMAIL.name(), "email");
/// ```
pub trait Model: Sized + Send + Sync + 'static {
    /// The table description.
    const META: &'static ModelMeta;

    /// The primary key: a scalar, or a tuple for a composite key.
    type Key: Key;

    /// Decodes the model from `row`, whose columns `offset..offset + META.columns.len()`
    /// are this model's columns in `META` order. Relation fields start not loaded.
    fn decode(row: &Row, offset: usize) -> Result<Self>;

    /// Decodes the model from `row` by column name (for raw SQL, whatever the order).
    fn decode_named(row: &Row) -> Result<Self>;

    /// The primary key of this instance.
    fn key(&self) -> Self::Key;

    /// Decodes the model from `src`, whose fields `offset..offset + META.columns.len()`
    /// are this model's columns in `META` order: a result row, or a record inside an
    /// aggregated relation (`select_related`). Relation fields start not loaded.
    ///
    /// Emitted by `#[derive(Model)]`; the default refuses.
    #[doc(hidden)]
    fn decode_fields<F: Fields>(src: &F, offset: usize) -> Result<Self> {
        let _ = (src, offset);
        Err(no_field_decoding(Self::META.name))
    }

    /// Decodes only the primary key from `src`, laid out as for
    /// [`decode_fields`](Self::decode_fields) (to share rows already decoded).
    ///
    /// Emitted by `#[derive(Model)]`; the default refuses.
    #[doc(hidden)]
    fn decode_key_fields<F: Fields>(src: &F, offset: usize) -> Result<Self::Key> {
        let _ = (src, offset);
        Err(no_field_decoding(Self::META.name))
    }

    /// The value of column `index` (in `META.columns` order), to bind as a parameter.
    fn value(&self, index: usize) -> &(dyn postgres_types::ToSql + Sync);

    /// The model's relations, by name (emitted by the derive; none by default).
    fn relations() -> &'static [DynRelation<Self>] {
        &[]
    }

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
    /// # use matrx_orm::Model;
    /// # #[derive(Model, Debug)] #[orm(table = "warehouses")]
    /// # pub struct Warehouse { #[orm(primary_key)] pub region: String, #[orm(primary_key)] pub code: i32, pub name: String }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let lagos = Warehouse::get(db, &("af".to_string(), 1)).await?;
    /// # Ok(()) }
    /// ```
    fn get<E: Executor>(ex: &E, key: &Self::Key) -> impl Future<Output = Result<Self>> + Send {
        async move {
            crate::relation::fetch::get::<Self>(ex, key)
                .await?
                .ok_or(Error::NotFound {
                    model: Self::META.name,
                })
        }
    }

    /// The row with primary key `key`, if there is one.
    fn get_or_none<E: Executor>(
        ex: &E,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Option<Self>>> + Send {
        crate::relation::fetch::get::<Self>(ex, key)
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

    /// Inserts many instances in one statement; returns them as stored, in order.
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
    /// # use matrx_orm::Model;
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

fn no_field_decoding(model: &'static str) -> Error {
    Error::InvalidInput(format!(
        "{model} cannot be decoded from an aggregated relation: its Model impl has no \
         decode_fields (use #[derive(Model)])"
    ))
}

/// A source of column values by position: a result [`Row`], or one record of an
/// aggregated relation (`select_related`).
///
/// Used by the code `#[derive(Model)]` emits ([`Model::decode_fields`]).
#[doc(hidden)]
pub trait Fields {
    /// Decodes field `index` as `T`; on failure the error names `model` and `column`.
    fn field<'a, T: postgres_types::FromSql<'a>>(
        &'a self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T>;

    /// Whether field `index` is NULL (false when there is no such field).
    fn is_null(&self, index: usize) -> bool;
}

impl Fields for Row {
    #[inline]
    fn field<'a, T: postgres_types::FromSql<'a>>(
        &'a self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T> {
        self.try_get(index).map_err(|err| {
            let mut e = decode_error::<T>(self, index, model, err);
            if let Error::Decode { column: c, .. } = &mut e {
                column.clone_into(c);
            }
            e
        })
    }

    #[inline]
    fn is_null(&self, index: usize) -> bool {
        matches!(self.try_get::<_, IsNull>(index), Ok(IsNull(true)))
    }
}

/// Reads only whether a value is NULL, whatever its type.
struct IsNull(bool);

impl<'a> postgres_types::FromSql<'a> for IsNull {
    fn from_sql(
        _: &postgres_types::Type,
        _: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull(false))
    }

    fn from_sql_null(
        _: &postgres_types::Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull(true))
    }

    fn accepts(_: &postgres_types::Type) -> bool {
        true
    }
}

/// Decodes one column of a row; on failure the error names model, column and types.
///
/// Used by the code `#[derive(Model)]` emits.
#[doc(hidden)]
pub fn decode_column<'r, T: postgres_types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
    model: &'static str,
) -> Result<T> {
    row.try_get(index)
        .map_err(|err| decode_error::<T>(row, index, model, err))
}

/// Decodes one column of a row by name; on failure the error names model, column and types.
#[doc(hidden)]
pub fn decode_column_named<'r, T: postgres_types::FromSql<'r>>(
    row: &'r Row,
    name: &'static str,
    model: &'static str,
) -> Result<T> {
    match row.columns().iter().position(|c| c.name() == name) {
        Some(index) => decode_column(row, index, model),
        None => Err(Error::Decode {
            model,
            column: name.to_owned(),
            rust_type: std::any::type_name::<T>(),
            pg_type: "<missing>".to_owned(),
            message: "the row has no column of that name".to_owned(),
        }),
    }
}

fn decode_error<T>(
    row: &Row,
    index: usize,
    model: &'static str,
    err: tokio_postgres::Error,
) -> Error {
    let (column, pg_type) = match row.columns().get(index) {
        Some(c) => (c.name().to_owned(), c.type_().name().to_owned()),
        None => (format!("#{index}"), "<missing>".to_owned()),
    };
    let message = match std::error::Error::source(&err) {
        Some(source) => source.to_string(),
        None => err.to_string(),
    };
    Error::Decode {
        model,
        column,
        rust_type: std::any::type_name::<T>(),
        pg_type,
        message,
    }
}
