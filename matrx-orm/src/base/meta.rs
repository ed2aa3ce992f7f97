//! The static description of models and relations: [`ModelMeta`], [`ColumnMeta`],
//! [`RelationMeta`]. `#[derive(Model)]` emits them as constants; SQL rendering, DDL and
//! relation loading all work from them.

use std::borrow::Cow;

use crate::base::error::{Error, Result};

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

/// The kind of a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// This row holds the key of one target row (`orders.customer_id -> customers`).
    BelongsTo,
    /// Target rows hold this row's key; many of them (`customers <- orders`).
    HasMany,
    /// Target rows hold this row's key; at most one of them.
    HasOne,
    /// Pairs of keys in a junction table (`orders <- order_tags -> tags`).
    ManyToMany,
}

impl RelationKind {
    /// Whether the relation holds at most one target.
    pub fn is_to_one(self) -> bool {
        matches!(self, RelationKind::BelongsTo | RelationKind::HasOne)
    }
}

/// The junction table of a many-to-many relation.
#[derive(Debug)]
pub struct Through {
    /// The junction table's schema; `None` means the source model's schema.
    pub schema: Option<&'static str>,
    /// The junction table.
    pub table: &'static str,
    /// Junction columns holding the source key.
    pub source_columns: &'static [&'static str],
    /// Junction columns holding the target key.
    pub target_columns: &'static [&'static str],
}

/// Static description of one relation.
///
/// Key lists pair up position by position:
///
/// | kind | `source_columns` (columns of the source table) | `target_fields` (fields of the target model) |
/// |---|---|---|
/// | `BelongsTo` | the foreign-key columns | the referenced fields (empty: the target's primary key) |
/// | `HasMany` / `HasOne` | the referenced columns (the source PK unless declared) | the foreign-key fields |
/// | `ManyToMany` | the source PK | empty: the target's primary key |
///
/// Target keys are named by field because the source model cannot see the target's
/// column renames; they are resolved to columns through the target's [`ModelMeta`].
#[derive(Debug)]
pub struct RelationMeta {
    /// The field name of the relation on the source model.
    pub name: &'static str,
    /// The kind.
    pub kind: RelationKind,
    /// The target model (a function, so a model may refer to itself).
    pub target: fn() -> &'static ModelMeta,
    /// Key columns of the source table (see the table above).
    pub source_columns: &'static [&'static str],
    /// Key fields of the target model (see the table above).
    pub target_fields: &'static [&'static str],
    /// The junction table of a many-to-many relation.
    pub through: Option<Through>,
}

impl RelationMeta {
    /// The target table's key columns: `target_fields` resolved through the target's
    /// metadata, or the target's primary key when none are declared.
    pub fn target_columns(&self) -> Result<Vec<&'static str>> {
        let target = (self.target)();
        if self.target_fields.is_empty() {
            return Ok(target.primary_key_columns().map(|c| c.name).collect());
        }
        self.target_fields
            .iter()
            .map(|field| {
                target
                    .columns
                    .iter()
                    .find(|c| c.field == *field)
                    .map(|c| c.name)
                    .ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "relation {}: {} has no field `{field}`",
                            self.name, target.name
                        ))
                    })
            })
            .collect()
    }
}
