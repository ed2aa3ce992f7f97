//! The two traits `#[derive(Model)]` implements: [`Model`] for the struct (its table,
//! key and row decoding) and [`Relation`] for each relation field (its key and slot).
//! They name each other — a model visits its relations, a relation joins two models —
//! so they live together.
//!
//! What users do with a model (queries, writes, relation loads) is
//! [`ModelExt`](crate::ModelExt), implemented for every model, higher up.

use tokio_postgres::Row;

use crate::base::decode::Fields;
use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::meta::{ModelMeta, RelationMeta};
use crate::schema::filter::Filter;
use crate::schema::slot::Slot;

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

    /// Calls `visitor` once per relation field, with its name (emitted by the derive;
    /// none by default). String paths (`"items__product"`) and
    /// [`fetch_all_related`](crate::ModelExt::fetch_all_related) find relations this way.
    fn visit_relations<V: RelationVisitor<Self>>(visitor: &mut V) {
        let _ = visitor;
    }
}

fn no_field_decoding(model: &'static str) -> Error {
    Error::InvalidInput(format!(
        "{model} cannot be decoded from an aggregated relation: its Model impl has no \
         decode_fields (use #[derive(Model)])"
    ))
}

/// Receives a model's relations from [`Model::visit_relations`], each as its type.
pub trait RelationVisitor<S: Model> {
    /// Called once per relation field of `S`, with the field name.
    fn visit<R: Relation<Source = S>>(&mut self, name: &'static str);
}

/// A typed relation from `Source` to `Target`, emitted by `#[derive(Model)]` for each
/// relation field as an associated constant (`Order::CUSTOMER`, `Order::ITEMS`).
pub trait Relation: Copy + Send + Sync + 'static {
    /// The model the relation is declared on.
    type Source: Model;
    /// The model it leads to.
    type Target: Model;
    /// The join key (a scalar, or a tuple for composite keys).
    type Key: Key;
    /// The field type: [`One<Target>`](crate::One) or [`Many<Target>`](crate::Many).
    type Slot: Slot<Self::Target>;

    /// The relation's description.
    const META: &'static RelationMeta;

    /// The field of `source` that holds the loaded relation.
    fn slot(source: &Self::Source) -> &Self::Slot;

    /// The mutable field of `source` that holds the loaded relation.
    fn slot_mut(source: &mut Self::Source) -> &mut Self::Slot;

    /// The key `source` joins on: its foreign key for `BelongsTo`, its own referenced
    /// key otherwise. `None` when a key column is NULL (no query is owed for it).
    fn source_key(source: &Self::Source) -> Option<Self::Key>;

    /// The key a loaded `target` row answers to: its referenced columns for
    /// `BelongsTo`, its foreign key for `HasMany`/`HasOne`. Not used for `ManyToMany`,
    /// whose rows carry the source key from the junction table.
    fn target_key(target: &Self::Target) -> Option<Self::Key>;

    /// Rows with at least one target matching `filter`: an `EXISTS` semi-join (never a
    /// join that repeats the parent), composite keys and many-to-many included, nested
    /// to any depth. A NULL key has no target.
    ///
    /// ```
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "tags")]
    /// # pub struct Tag { #[orm(primary_key)] pub id: i64, pub name: String }
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String,
    /// #   #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
    /// #   pub tags: Many<Tag> }
    /// let b2b = Order::query().filter(Order::TAGS.any(Tag::NAME.eq("b2b")));
    /// let sql = b2b.to_sql().unwrap();
    /// assert_eq!(
    ///     sql.text,
    ///     r#"SELECT "t"."id", "t"."status" FROM "orders" AS "t" WHERE EXISTS (SELECT 1 FROM "order_tags" AS "t_j" JOIN "tags" AS "t_x" ON "t_x"."id" = "t_j"."tag_id" WHERE "t_j"."order_id" = "t"."id" AND "t_x"."name" = $1)"#
    /// );
    /// ```
    fn any(self, filter: Filter<Self::Target>) -> Filter<Self::Source> {
        Filter::related(<Self::Source as Model>::META, Self::META, filter, false)
    }

    /// [`any`](Self::any), read for a to-one relation:
    /// `Order::CUSTOMER.has(Customer::EMAIL.ilike("%@example.com"))`.
    fn has(self, filter: Filter<Self::Target>) -> Filter<Self::Source> {
        self.any(filter)
    }

    /// Rows with no target matching `filter` (`NOT EXISTS`); rows whose key is NULL
    /// have none.
    fn none(self, filter: Filter<Self::Target>) -> Filter<Self::Source> {
        Filter::related(<Self::Source as Model>::META, Self::META, filter, true)
    }

    /// Rows with at least one target.
    fn exists(self) -> Filter<Self::Source> {
        self.any(Filter::all([]))
    }

    /// Rows with no target.
    fn not_exists(self) -> Filter<Self::Source> {
        self.none(Filter::all([]))
    }
}
