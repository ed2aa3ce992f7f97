//! Integration tests of matrx-orm live in `tests/`; this library holds what a test
//! shares with the helper binaries it spawns as other processes.

pub mod coherence;
