//! The integration tests, one binary: linking one test executable instead of
//! a dozen keeps `make test` quicker and target/ a tenth of the size (each
//! executable is about 550 MB with line tables). `canary.rs` stays its own
//! binary because it captures the process-wide log.

mod common;

mod accounts;
mod admin;
mod agents;
mod api_fuzz;
mod api_keys;
mod api_v1;
mod auth;
mod chat;
mod chat_files;
mod cluster;
mod connections;
mod data;
mod jobs;
mod keys;
mod knowledge;
mod llm;
mod mcp;
mod oidc;
mod openai_sdk;
mod ops;
mod passkeys;
mod replicas;
mod schedules;
mod schema;
mod sessions;
mod teams;
mod telegram;
mod tools;
mod two_factor;
mod usage;
mod v1;
