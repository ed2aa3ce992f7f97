//! Relations between models: their declaration ([`RelationMeta`], [`Relation`]) and
//! the fields that hold loaded relations ([`One`], [`Many`]).

pub(crate) mod batch;
pub(crate) mod fetch;
pub(crate) mod joined;
pub(crate) mod loader;
pub(crate) mod m2m;
pub(crate) mod prefetch;
mod related;
mod slot;
mod sql;
mod stitch;

pub use batch::{load_by_keys, load_edge, Groups, Keyed};
pub use fetch::{fetch, fetch_all_related, Loaded};
#[doc(hidden)]
pub use joined::AggregateEncoding;
pub use joined::{balanced_strategy, EdgeStrategy, LoadStrategy, Planned, BALANCED_JOIN_LIMIT};
pub use m2m::{SetOutcome, TargetKey};
pub use prefetch::{prefetch_related, DynRelation, IntoPrefetch, Path, Prefetch};
pub use related::Related;
pub use slot::{Many, One, Slot};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::model::{Model, ModelMeta};

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

/// A typed relation from `Source` to `Target`, emitted by `#[derive(Model)]` for each
/// relation field as an associated constant (`Order::CUSTOMER`, `Order::ITEMS`).
pub trait Relation: Copy + Send + Sync + 'static {
    /// The model the relation is declared on.
    type Source: Model;
    /// The model it leads to.
    type Target: Model;
    /// The join key (a scalar, or a tuple for composite keys).
    type Key: Key;
    /// The field type: [`One<Target>`] or [`Many<Target>`].
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

    /// This edge, also loading `child` on its targets.
    fn with(self, child: impl IntoPrefetch<Self::Target>) -> Path<Self> {
        Path::new().with(child)
    }

    /// This edge, keeping only targets matching `filter`.
    fn filter(self, filter: crate::filter::Filter<Self::Target>) -> Path<Self> {
        Path::new().filter(filter)
    }

    /// This edge, ordering each parent's targets.
    fn order_by(self, order: crate::column::OrderBy<Self::Target>) -> Path<Self> {
        Path::new().order_by(order)
    }

    /// This edge, keeping at most `n` targets per parent.
    fn limit_per_parent(self, n: u64) -> Path<Self> {
        Path::new().limit_per_parent(n)
    }
}
