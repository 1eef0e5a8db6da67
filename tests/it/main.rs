//! Integration tests: each module drives the real binary against a throwaway PostgreSQL that the
//! harness in `tests/support` starts itself, with LiteLLM's real schema.

#[path = "../support/mod.rs"]
mod support;

mod accounting;
mod backfill;
mod cardinality;
mod cli;
mod config;
mod data;
mod entities;
mod exporter;
mod faults;
mod fuzz;
mod harness;
mod litellm_config;
mod locks;
mod memory;
mod outage;
mod partitions;
mod plan;
mod projection;
mod readiness;
mod replica;
mod role;
mod secrets;
mod tls;
mod truth;
mod web;
mod windows;
