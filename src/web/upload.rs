//! Images uploaded as multipart form fields.

use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;

use super::WebError;

/// A multipart upload; a body that is not one is refused in the API's error shape.
pub struct Upload(Multipart);

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, WebError> {
        Ok(Upload(Multipart::from_request(request, state).await?))
    }
}

/// Reads the named multipart fields, in the order of `names`; every one is required.
pub async fn read_files<const N: usize>(
    Upload(mut multipart): Upload,
    names: [&str; N],
    limit: usize,
) -> Result<[Vec<u8>; N], WebError> {
    let mut found: [Option<Vec<u8>>; N] = [const { None }; N];
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e, limit)),
        };
        let Some(index) = field
            .name()
            .and_then(|n| names.iter().position(|x| *x == n))
        else {
            continue;
        };
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(&e, limit))?;
        found[index] = Some(bytes.to_vec());
    }
    let mut files = [const { Vec::new() }; N];
    for ((file, slot), name) in files.iter_mut().zip(found).zip(names) {
        *file = slot.ok_or_else(|| {
            WebError::BadRequest(format!("the multipart field {name:?} is missing"))
        })?;
    }
    Ok(files)
}

fn multipart_error(error: &MultipartError, limit: usize) -> WebError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::TooLarge(limit)
    } else {
        WebError::BadRequest(format!("unreadable multipart body: {}", error.body_text()))
    }
}
