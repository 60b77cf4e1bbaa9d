//! harness (being written).
