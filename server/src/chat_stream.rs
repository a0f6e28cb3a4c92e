//! `GET /api/chat/stream/{message_id}`: a reply as server-sent events.
//!
//! The message must be the signed-in user's (checked in the query, and
//! again by the run registry): another user's id is 404 whether or not its
//! run is live. A live run sends a `snapshot` of everything so far, then
//! `delta`s, then `done`; a finished one sends its stored text and `done`.
//! Closing the stream does not stop the run.

use std::convert::Infallible;

use app::{
    auth::server::AuthSession,
    chat::{MessageStatus, StreamUpdate},
    platform::AppState,
};
use axum::{
    Extension,
    extract::{Path, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt as _, stream};
use tokio::sync::broadcast::error::RecvError;

fn event(update: &StreamUpdate) -> Event {
    let name = match update {
        StreamUpdate::Snapshot { .. } => "snapshot",
        StreamUpdate::Delta { .. } => "delta",
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
    let Ok(id) = app::agents::server::parse_id(&id) else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    // Ownership first, in the query: a live run of someone else is not found.
    let stored = match app::chat::server::stored_reply(&state, session.user_id, id).await {
        Ok(stored) => stored,
        Err(err) => {
            let status =
                StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, err.to_string()).into_response();
        }
    };
    let updates: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        match state.runs.subscribe(id, session.user_id) {
            Some((so_far, rx)) => {
                let first =
                    stream::once(
                        async move { Ok(event(&StreamUpdate::Snapshot { text: so_far })) },
                    );
                let rest = stream::unfold((rx, false), move |(mut rx, done)| async move {
                    if done {
                        return None;
                    }
                    loop {
                        match rx.recv().await {
                            Ok(update) => {
                                let finished = matches!(update, StreamUpdate::Done { .. });
                                return Some((Ok(event(&update)), (rx, finished)));
                            }
                            // A slow reader missed pieces: it gets them again whole.
                            Err(RecvError::Lagged(_)) => continue,
                            Err(RecvError::Closed) => return None,
                        }
                    }
                });
                Box::pin(first.chain(rest))
            }
            None => {
                let done = StreamUpdate::Done {
                    status: if stored.status == MessageStatus::Streaming {
                        // Not live on this server: another replica may be writing it.
                        MessageStatus::Streaming
                    } else {
                        stored.status
                    },
                    error: stored.error.clone(),
                    input_tokens: stored.input_tokens,
                    output_tokens: stored.output_tokens,
                };
                let events = vec![
                    Ok(event(&StreamUpdate::Snapshot { text: stored.body })),
                    Ok(event(&done)),
                ];
                Box::pin(stream::iter(events))
            }
        };
    Sse::new(updates)
        .keep_alive(KeepAlive::default())
        .into_response()
}
