//! Your data: what Enclave holds about you and what happens to it: the
//! activity log (`activity`), the export (`export`), account deletion with
//! its grace period (`deletion`) and retention (`retention`).

pub mod activity;
pub mod api;
pub mod deletion;
pub mod export;
pub mod pages;
pub mod retention;
