//! Traffic generator (placeholder, being written).
