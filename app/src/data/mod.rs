//! Your data: what Enclave holds about you and what happens to it: the
//! activity log (`activity`), the export (`export`), account deletion with
//! its grace period (`deletion`), retention (`retention`), what is held
//! (`summary`), and the policy pages with consent records (`policies`).

pub mod activity;
pub mod api;
pub mod deletion;
pub mod export;
pub mod pages;
pub mod policies;
pub mod retention;
pub mod summary;
