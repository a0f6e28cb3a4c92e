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
    http::{HeaderMap, StatusCode, header},
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
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let Some(Extension(session)) = session else {
        return if wants_json {
            error(AppError::Unauthorized)
        } else {
            Redirect::to("/sign-in?next=/knowledge").into_response()
        };
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

fn error(err: AppError) -> Response {
    (
        StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        err.to_string(),
    )
        .into_response()
}
