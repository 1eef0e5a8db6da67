//! litellm-exporter: exact, cheap Prometheus metrics for LiteLLM, read from its PostgreSQL database.
pub mod seed;
