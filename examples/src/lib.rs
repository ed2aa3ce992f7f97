//! Runnable examples of matrx-orm; see `examples/` (start with `tour.rs`).
//!
//! The library part holds what the examples share: the shop models ([`shop`]) and a
//! small deterministic dataset to load them with ([`dataset`]), and the GraphQL schema
//! served by the `graphql` example ([`graphql`]).

pub mod dataset;
pub mod graphql;
pub mod shop;
