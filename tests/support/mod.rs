//! Shared integration-test support, included by each test binary with
//! `#[path = "../support/mod.rs"] mod support;`.
//!
//! Not every binary uses every helper, hence the `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod pg;
pub mod promtool;

pub use pg::{cluster, fresh_db, private_cluster, Cluster, Schema, TestDb};
