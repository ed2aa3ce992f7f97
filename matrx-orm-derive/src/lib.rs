//! The `#[derive(Model)]` macro of matrx-orm. Use it through `matrx_orm::Model`; the
//! attributes are documented on [`macro@Model`].
//!
//! Layout: `attrs` parses `#[orm(...)]`, `model` checks the fields against each other
//! and builds a `ModelDef`, and `expand` turns that into code (`columns`, `relations`,
//! `model_impl`). Generated code names the runtime as `::matrx_orm`.

extern crate proc_macro;

mod attrs;
mod expand;
mod from_row;
mod migrations;
mod model;
mod names;
mod types;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `matrx_orm::Model` for a struct with named fields, mapping it to a table.
///
/// Every field is a **column** unless it carries a **relation** attribute; relation
/// fields have type `One<Target>` or `Many<Target>` and start "not loaded".
///
/// ```
/// use chrono::{DateTime, Utc};
/// use matrx_orm::{Many, Model, One, Relation};
///
/// #[derive(Model, Debug)]
/// #[orm(schema = "shop", table = "customers")]
/// pub struct Customer {
///     #[orm(primary_key, auto)]
///     pub id: i64,
///     #[orm(unique)]
///     pub email: String,
///     #[orm(index)]
///     pub referred_by: Option<i64>,
///     #[orm(belongs_to(key = "referred_by"))]
///     pub referrer: One<Customer>,
///     #[orm(has_many(foreign_key = "customer_id"))]
///     pub orders: Many<Order>,
/// }
///
/// #[derive(Model, Debug)]
/// #[orm(schema = "shop", table = "orders")]
/// pub struct Order {
///     #[orm(primary_key, auto)]
///     pub id: i64,
///     pub customer_id: i64,
///     #[orm(column = "state", sql_type = "varchar(20)")]
///     pub status: String,
///     #[orm(default = "now()")]
///     pub placed_at: DateTime<Utc>,
///     #[orm(belongs_to(key = "customer_id"))]
///     pub customer: One<Customer>,
///     #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
///     pub tags: Many<Tag>,
/// }
///
/// #[derive(Model, Debug)]
/// #[orm(schema = "shop", table = "tags")]
/// pub struct Tag {
///     #[orm(primary_key, auto)]
///     pub id: i64,
///     pub name: String,
/// }
///
/// assert_eq!(Order::META.table, "orders");
/// assert_eq!(Order::STATUS.name(), "state");
/// assert_eq!(Order::META.primary_key, [0]);
/// assert_eq!(Order::CUSTOMER_ID.meta().field, "customer_id");
/// assert_eq!(<Order as Model>::META.relations.len(), 2);
///
/// fn relation_meta<R: Relation>(_: R) -> &'static matrx_orm::RelationMeta {
///     R::META
/// }
/// assert_eq!(relation_meta(Order::CUSTOMER).source_columns, ["customer_id"]);
/// assert_eq!(relation_meta(Order::TAGS).through.as_ref().unwrap().table, "order_tags");
/// assert_eq!(relation_meta(Customer::ORDERS).target_fields, ["customer_id"]);
/// ```
///
/// # Struct attributes
///
/// | attribute | meaning | default |
/// |---|---|---|
/// | `table = "orders"` | the table name | the struct name in snake_case (`OrderItem` → `order_item`) |
/// | `schema = "shop"` | the schema | none: the connection's `search_path` |
///
/// The struct must have named fields and no generic parameters.
///
/// # Column attributes
///
/// | attribute | meaning |
/// |---|---|
/// | `primary_key` | part of the primary key; several fields make a composite key, in field order (at most 4). Required on at least one field; not on an `Option` |
/// | `auto` | the database fills the column when an insert leaves it out (identity, default) |
/// | `default = "now()"` | the DDL default expression (implies `auto`) |
/// | `column = "sql_name"` | the SQL column name (default: the field name, without `r#`) |
/// | `unique` | DDL adds a `UNIQUE` constraint |
/// | `index` | DDL adds an index |
/// | `sql_type = "varchar(200)"` | the DDL type (default: the field type's `SqlType`; with this, the field type need not implement `SqlType`) |
///
/// A column is nullable when its type is `Option<_>` (by its last path segment). The
/// column constant `Order::STATUS` is a `Column<Order, T>` where `T` is the field type
/// with one outer `Option` removed.
///
/// # Relation attributes
///
/// Names in `key`, `references` and `foreign_key` are **field** names (comma-separated
/// for composite keys); `source` and `target` are junction-table **column** names. Lists
/// that pair up must have the same length.
///
/// | attribute | field type | keys |
/// |---|---|---|
/// | `belongs_to(key = "customer_id")` | `One<T>` | `key`: column fields of this struct holding the foreign key; `references = "..."`: fields of `T` (default: `T`'s primary key) |
/// | `has_many(foreign_key = "order_id")` | `Many<T>` | `foreign_key`: fields of `T` holding our key; `references = "..."`: column fields of this struct (default: our primary key) |
/// | `has_one(foreign_key = "customer_id")` | `One<T>` | as `has_many` |
/// | `many_to_many(through = "order_tags", source = "order_id", target = "tag_id")` | `Many<T>` | `through`: the junction table, `through_schema = "..."` its schema (default: this model's); `source`: junction columns holding our primary key; `target`: junction columns holding `T`'s primary key |
///
/// A composite foreign key: `#[orm(belongs_to(key = "region, code"))] warehouse:
/// One<Warehouse>`. The key types must match the other side's (a belongs_to key of
/// `Option<i64>` matches an `i64` primary key; NULL means "no target"): a mismatch is a
/// type error in the generated `Relation` impl. Fields of `T` named by `foreign_key`
/// or `references` are read directly, so they must be visible where this struct is
/// declared (e.g. `pub`).
///
/// # What is generated
///
/// For `struct Order`:
///
/// * `impl matrx_orm::Model for Order`: `META` (columns in field order, primary-key
///   indexes, relations in field order), `Key` (the primary-key field type, or a tuple of
///   them), `decode` / `decode_named`, `key`, `value`.
/// * One constant per column: `Order::CUSTOMER_ID: Column<Order, i64>` (the field name
///   in SCREAMING_SNAKE_CASE, the struct's visibility).
/// * One constant per relation: `Order::CUSTOMER`, of a hidden zero-sized type
///   `__OrderRel_customer` implementing `matrx_orm::Relation` (with `Source`, `Target`,
///   `Key`, `Slot` and key accessors).
/// * For each many-to-many relation, a compile-time check that the target's primary key
///   has as many columns as `target` lists.
///
/// A field named `meta` gets the constant `Order::META`, which hides the trait's
/// `META` in `Order::META` paths; write `<Order as Model>::META` then.
///
/// # Errors
///
/// Mistakes are compile errors pointing at the attribute. A model needs a primary key:
///
/// ```compile_fail
/// use matrx_orm::Model;
///
/// #[derive(Model)]
/// struct Tag {
///     id: i64, // error: `Tag` has no primary key: mark a field #[orm(primary_key)]
///     name: String,
/// }
/// ```
///
/// `key` names column fields of this struct:
///
/// ```compile_fail
/// # use matrx_orm::{Model, One};
/// # #[derive(Model)] struct Customer { #[orm(primary_key)] id: i64 }
/// #[derive(Model)]
/// struct Order {
///     #[orm(primary_key)]
///     id: i64,
///     customer_id: i64,
///     // error: `customer` is not a column field of `Order`; its column fields are: id, customer_id
///     #[orm(belongs_to(key = "customer"))]
///     customer: One<Customer>,
/// }
/// ```
///
/// Key lists that pair up must have the same length:
///
/// ```compile_fail
/// # use matrx_orm::{Model, One};
/// # #[derive(Model)] struct Warehouse { #[orm(primary_key)] region: String, #[orm(primary_key)] code: i32 }
/// #[derive(Model)]
/// struct Stock {
///     #[orm(primary_key)]
///     id: i64,
///     region: String,
///     code: i32,
///     // error: `references` lists 2 name(s) but `key` lists 1
///     #[orm(belongs_to(key = "code", references = "region, code"))]
///     warehouse: One<Warehouse>,
/// }
/// ```
///
/// A many-to-many `source` lists one junction column per primary-key column:
///
/// ```compile_fail
/// # use matrx_orm::{Many, Model};
/// # #[derive(Model)] struct Tag { #[orm(primary_key)] id: i64 }
/// #[derive(Model)]
/// struct Order {
///     #[orm(primary_key)]
///     id: i64,
///     // error: many_to_many `source` lists 2 name(s) but `Order`'s primary key (id) has 1
///     #[orm(many_to_many(through = "order_tags", source = "order_id, extra", target = "tag_id"))]
///     tags: Many<Tag>,
/// }
/// ```
///
/// ... and its `target` one per column of the target's primary key (checked when the
/// constant is evaluated):
///
/// ```compile_fail,E0080
/// # use matrx_orm::{Many, Model};
/// # #[derive(Model)] struct Warehouse { #[orm(primary_key)] region: String, #[orm(primary_key)] code: i32 }
/// #[derive(Model)]
/// struct Product {
///     #[orm(primary_key)]
///     id: i64,
///     // error: Product.warehouses: many_to_many target lists 1 column(s) but Warehouse's
///     // primary key has a different number
///     #[orm(many_to_many(through = "product_warehouses", source = "product_id", target = "code"))]
///     warehouses: Many<Warehouse>,
/// }
/// ```
///
/// The field type must match the relation kind:
///
/// ```compile_fail
/// # use matrx_orm::{Many, Model};
/// # #[derive(Model)] struct Customer { #[orm(primary_key)] id: i64 }
/// #[derive(Model)]
/// struct Order {
///     #[orm(primary_key)]
///     id: i64,
///     customer_id: i64,
///     // error: a belongs_to field must be of type `One<Target>` (matrx_orm::One), ...
///     #[orm(belongs_to(key = "customer_id"))]
///     customer: Many<Customer>,
/// }
/// ```
///
/// A foreign key must match the referenced key's arity and types (here a one-column key
/// for a two-column primary key: mismatched types in `target_key`):
///
/// ```compile_fail,E0308
/// # use matrx_orm::{Model, One};
/// # #[derive(Model)] struct Warehouse { #[orm(primary_key)] region: String, #[orm(primary_key)] code: i32 }
/// #[derive(Model)]
/// struct Stock {
///     #[orm(primary_key)]
///     id: i64,
///     code: i32,
///     #[orm(belongs_to(key = "code"))]
///     warehouse: One<Warehouse>,
/// }
/// ```
///
/// A `foreign_key` names fields of the target:
///
/// ```compile_fail,E0609
/// # use matrx_orm::{Many, Model};
/// # #[derive(Model)] struct Order { #[orm(primary_key)] id: i64, customer_id: i64 }
/// #[derive(Model)]
/// struct Customer {
///     #[orm(primary_key)]
///     id: i64,
///     // error[E0609]: no field `customer` on type `&Order`
///     #[orm(has_many(foreign_key = "customer"))]
///     orders: Many<Order>,
/// }
/// ```
///
/// Unknown attributes are refused with the list of valid ones:
///
/// ```compile_fail
/// # use matrx_orm::Model;
/// #[derive(Model)]
/// struct Tag {
///     // error: unknown field attribute `primary`; expected one of: primary_key, auto, ...
///     #[orm(primary)]
///     id: i64,
/// }
/// ```
///
/// Generic structs are not supported:
///
/// ```compile_fail
/// # use matrx_orm::Model;
/// #[derive(Model)]
/// struct Wrapper<T> {
///     // error: #[derive(Model)] does not support generic structs
///     #[orm(primary_key)]
///     id: i64,
///     value: T,
/// }
/// ```
#[proc_macro_derive(Model, attributes(orm))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `matrx_orm::FromRow` for a plain struct with named fields: each field is
/// read from the column of its name (`#[orm(column = "sql_name")]` to name another),
/// as its type (`Option<T>` for a column that may be NULL).
///
/// ```
/// use matrx_orm::FromRow;
///
/// #[derive(FromRow)]
/// struct Line {
///     id: i64,
///     #[orm(column = "total_cents")]
///     total: i64,
/// }
/// assert_eq!(Line::COLUMNS, ["id", "total_cents"]);
/// ```
///
/// Only `column` is accepted:
///
/// ```compile_fail
/// #[derive(matrx_orm::FromRow)]
/// struct Line {
///     #[orm(primary_key)] // error: unknown FromRow field attribute `primary_key`
///     id: i64,
/// }
/// ```
#[proc_macro_derive(FromRow, attributes(orm))]
pub fn derive_from_row(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    from_row::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Embeds a migrations directory in the binary: every `<version>_<name>` folder of
/// `dir` (default `"migrations"`, relative to the crate's `Cargo.toml`) with its
/// `up.sql` and, if present, `down.sql`, sorted by version. Expands to a
/// `matrx_orm::migrate::Migrations` constant expression.
///
/// Each file is included with `include_str!`, so a changed file rebuilds the crate.
/// A new folder is picked up on the next rebuild; add a `build.rs` containing
/// `println!("cargo:rerun-if-changed=migrations");` to make that automatic.
///
/// ```no_run
/// use matrx_orm::migrate::Migrations;
///
/// # /* (the doctest embeds the test suite's folder instead)
/// static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("migrations");
/// # */
/// # static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("../tests/migrations");
///
/// # async fn demo(db: &matrx_orm::Db) -> Result<(), matrx_orm::migrate::MigrateError> {
/// db.migrate(&MIGRATIONS).await?;
/// # Ok(()) }
/// ```
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let dir = if input.is_empty() {
        None
    } else {
        Some(parse_macro_input!(input as syn::LitStr))
    };
    migrations::expand(dir)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
