//! Your data: what Enclave holds about you and what happens to it. The
//! activity log (`activity`), and, as they land, the export, account
//! deletion with its grace period, retention and the policy pages.

pub mod activity;
pub mod api;
pub mod deletion;
pub mod pages;
pub mod retention;
