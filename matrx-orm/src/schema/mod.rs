//! Layer 1, models as types: the [`Model`](model::Model) and
//! [`Relation`](model::Relation) traits the derive implements, the fields that hold
//! loaded relations ([`One`](slot::One), [`Many`](slot::Many)), typed column handles,
//! filters, and the customisation of one relation edge.

pub mod aggregate;
pub mod column;
pub(crate) mod correlated;
pub(crate) mod criteria;
pub mod filter;
pub mod model;
pub mod related;
pub mod selection;
pub mod slot;
