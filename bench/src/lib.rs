//! `matrx-orm-bench`: object-graph load benchmarks of matrx-orm against a
//! hand-written `tokio-postgres` baseline, on the dataset of
//! `shared/bench/WORKLOADS.md`.
//!
//! * [`dataset`]: generates the dataset in Rust and loads it into a schema.
//! * [`checksum`]: the checksums of a loaded graph and their expected values.
//! * [`strategy`]: what a strategy implements (the types shared by the strategies).
//! * [`registry`]: the list of every strategy and lookup by name (add new
//!   strategies there).
//! * [`handwritten`]: the hand-written baseline for W1..W5.
//! * [`runner`] / [`child`]: the CLI's parent process and measuring child.

#![warn(missing_docs)]

pub mod checksum;
pub mod child;
pub mod cli;
pub mod dataset;
pub mod db;
pub mod error;
pub mod handwritten;
pub mod orm;
pub mod registry;
pub mod runner;
pub mod setup;
pub mod strategy;
pub mod sysinfo;
pub mod workload;
