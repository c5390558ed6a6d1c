//! Unit tests of the pure parts of `check`.
