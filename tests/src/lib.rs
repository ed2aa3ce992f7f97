//! Integration tests of matrx-orm live in `tests/`.
