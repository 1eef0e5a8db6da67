//! Integration tests: each module drives the real binary against a throwaway PostgreSQL that the
//! harness in `tests/support` starts itself, with LiteLLM's real schema.

#[path = "../support/mod.rs"]
mod support;

// The traffic generator's code (the `litellm-seed` binary's), compiled into the tests too: the
// tests that seed in-process call it here, since the exporter's library has no writer. Each test
// uses a part of it, hence the allowance.
#[path = "../../tools/seed/seed.rs"]
#[allow(dead_code)]
mod seed;

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
mod sources;
mod tls;
mod truth;
mod web;
mod windows;
