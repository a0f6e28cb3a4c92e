//! `GET /api/chat/stream/{message_id}`: a reply as server-sent events.
//!
//! The message must be the signed-in user's: a live run is looked up in the
//! run registry by message id *and* owner, a finished reply by a query that
//! names the owner, so another user's id is 404 whether or not its run is
//! live. A live run sends a `snapshot` of everything so far, then `delta`s,
//! then `done`; a finished one sends its stored text and `done`. A reader
//! that falls behind is sent a new `snapshot` rather than losing pieces.
//! A reply another server is writing (stored as `streaming`, not live here)
//! is followed from there: that server publishes it, sealed, through
//! PostgreSQL notifications (`Runs::follow_remote`). Closing the stream
//! does not stop the run.

use std::convert::Infallible;

use app::{auth::server::AuthSession, chat::StreamUpdate, state::AppState};
use axum::{
    Extension,
    extract::{Path, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt as _;

pub(crate) fn event(update: &StreamUpdate) -> Event {
    let name = match update {
        StreamUpdate::Snapshot { .. } => "snapshot",
        StreamUpdate::Delta { .. } => "delta",
        StreamUpdate::Part { .. } => "part",
        StreamUpdate::Done { .. } => "done",
    };
    Event::default()
        .event(name)
        .data(serde_json::to_string(update).unwrap_or_default())
}

pub async fn stream_reply(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Option<Extension<AuthSession>>,
) -> Response {
    let Some(Extension(session)) = session else {
        return (StatusCode::UNAUTHORIZED, "Please sign in to continue.").into_response();
    };
    let Ok(id) = app::ctx::parse_id(&id) else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    let updates =
        match app::chat::server::reply_updates(&state, session.user_id, &session.key, id).await {
            Ok(updates) => updates,
            Err(err) => return crate::plain_error(&err),
        };
    let updates = updates.map(|update| Ok::<_, Infallible>(event(&update)));
    Sse::new(updates)
        .keep_alive(KeepAlive::default())
        .into_response()
}
