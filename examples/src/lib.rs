//! Runnable examples of matrx-orm; see `examples/`.
