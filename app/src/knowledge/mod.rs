//! Knowledge bases: documents uploaded by a user, split into passages,
//! embedded, and searched (sealed like everything else) so agents can
//! answer from them with citations. Built in parts; so far the search
//! core (`vectors`) and the embeddings client (`embeddings`).

#[cfg(feature = "ssr")]
pub mod embeddings;
#[cfg(feature = "ssr")]
pub mod vectors;
