//! `POST /knowledge/{id}/upload`: files for a knowledge base, as a
//! multipart form (a plain HTML form works without JavaScript; the page's
//! script sends the same form and asks for JSON). Each file becomes a
//! document: queued for ingestion, or listed as failed with the reason
//! (too large, not a supported kind). The route has its own body limit;
//! every other route keeps the 1 MiB one.

use app::{auth::server::AuthSession, error::AppError, knowledge, state::AppState};
use axum::{
    Extension, Json,
    extract::{Multipart, Path, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Redirect, Response},
};

/// The most one upload request may carry.
pub const MAX_UPLOAD_BYTES: usize = 110 * 1024 * 1024;
/// The most files in one upload.
pub const MAX_FILES: usize = 50;

pub async fn upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Option<Extension<AuthSession>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let wants_json = wants_json(&headers);
    let session = match signed_in(session, wants_json, "/knowledge") {
        Ok(session) => session,
        Err(res) => return res,
    };
    let Ok(base) = app::platform::request::parse_id(&id) else {
        return error(AppError::NotFound);
    };
    let mut added = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => {
                return error(AppError::invalid(
                    "files",
                    "The upload was cut off or is larger than 110 MiB in all: send fewer files at once.",
                ));
            }
        };
        if field.name() != Some("files") {
            continue;
        }
        let name = field.file_name().unwrap_or("").to_owned();
        let Ok(bytes) = field.bytes().await else {
            return error(AppError::invalid(
                "files",
                "The upload was cut off or is larger than 110 MiB in all: send fewer files at once.",
            ));
        };
        // A form sent with no file chosen has one empty, nameless part.
        if name.is_empty() && bytes.is_empty() {
            continue;
        }
        if added.len() == MAX_FILES {
            return error(AppError::invalid(
                "files",
                format!("At most {MAX_FILES} files can be added at once."),
            ));
        }
        match knowledge::server::add_document(
            &state,
            session.user_id,
            &session.key,
            base,
            &name,
            &bytes,
        )
        .await
        {
            Ok(doc) => added.push(doc.to_string()),
            Err(err) => return error(err),
        }
    }
    if wants_json {
        Json(added).into_response()
    } else {
        Redirect::to(&format!("/knowledge/{base}")).into_response()
    }
}

/// Whether the page's script sent the form (it asks for JSON).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The session, or the answer for a visitor who is not signed in: 401 for
/// the script, the sign-in page (then `next`) for a plain form.
#[allow(clippy::result_large_err)]
fn signed_in(
    session: Option<Extension<AuthSession>>,
    wants_json: bool,
    next: &str,
) -> Result<AuthSession, Response> {
    match session {
        Some(Extension(session)) => Ok(session),
        None if wants_json => Err(error(AppError::Unauthorized)),
        None => Err(Redirect::to(&format!("/sign-in?next={next}")).into_response()),
    }
}

fn error(err: AppError) -> Response {
    crate::plain_error(&err)
}

/// `POST /chat/files`: files for the next message in a chat, as a multipart
/// form: `agent_id`, `conversation_id` (empty for a new chat), `files[]`
/// (the ids already attached) and the new files as `upload`. Each file is
/// read to text first; one that cannot be used refuses them all, with its
/// reason, and nothing is kept. Answers the files now attached (JSON), or
/// goes back to the chat with them (a plain form).
pub async fn chat_files(
    State(state): State<AppState>,
    session: Option<Extension<AuthSession>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    use app::chat::files::{self, MAX_FILES_PER_MESSAGE};
    let wants_json = wants_json(&headers);
    let session = match signed_in(session, wants_json, "/agents") {
        Ok(session) => session,
        Err(res) => return res,
    };
    let cut_off = || {
        error(AppError::invalid(
            "files",
            "The upload was cut off or is too large: attach at most 5 files of up to 20 MiB each.",
        ))
    };
    let (mut agent, mut conversation) = (String::new(), String::new());
    let mut attached = Vec::new();
    let mut read = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return cut_off(),
        };
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "agent_id" | "conversation_id" | "files[]" => {
                let Ok(value) = field.text().await else {
                    return cut_off();
                };
                match name.as_str() {
                    "agent_id" => agent = value,
                    "conversation_id" => conversation = value,
                    _ => attached.push(value),
                }
            }
            "upload" => {
                let file_name = field.file_name().unwrap_or("").to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return cut_off();
                };
                // A form sent with no file chosen has one empty, nameless part.
                if file_name.is_empty() && bytes.is_empty() {
                    continue;
                }
                if attached.len() + read.len() >= MAX_FILES_PER_MESSAGE {
                    return error(AppError::invalid(
                        "files",
                        format!("A message can carry at most {MAX_FILES_PER_MESSAGE} files."),
                    ));
                }
                match files::read(&file_name, bytes.to_vec()).await {
                    Ok(file) => read.push(file),
                    Err(err) => return error(err),
                }
            }
            _ => {}
        }
    }
    let result = async {
        let agent = app::platform::request::parse_id(&agent)?;
        let conversation = app::platform::request::optional_id(Some(&conversation))?;
        let ids = app::chat::api::file_ids(attached.iter().map(String::as_str))?;
        let mut all = files::unsent(&state.db, session.user_id, &session.key, &ids).await?;
        all.extend(files::keep(&state.db, session.user_id, &session.key, read).await?);
        Ok::<_, AppError>((agent, conversation, all))
    }
    .await;
    let (agent, conversation, all) = match result {
        Ok(done) => done,
        Err(err) => return error(err),
    };
    if wants_json {
        return Json(all).into_response();
    }
    let ids: Vec<&str> = all.iter().map(|f| f.id.as_str()).collect();
    let mut to = format!("/agents/{agent}/chat?files={}", ids.join(","));
    if let Some(conversation) = conversation {
        to.push_str(&format!("&c={conversation}"));
    }
    Redirect::to(&to).into_response()
}
