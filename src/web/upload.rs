//! Images uploaded as multipart form fields (public for the fuzzer, `fuzz/`).

use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;

use super::WebError;
use crate::access::Presentation;
use crate::access::pad::MAX_BURST_FRAMES;

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

/// Reads a login upload: a `nonce` field and the `frame` fields of a burst, in order, or one
/// `frame` alone.
pub async fn read_presentation(
    Upload(mut multipart): Upload,
    limit: usize,
) -> Result<Presentation, WebError> {
    let (mut nonce, mut frames) = (None, Vec::new());
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e, limit)),
        };
        let name = field.name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(&e, limit))?;
        match name.as_deref() {
            Some("frame") if frames.len() >= MAX_BURST_FRAMES => {
                return Err(WebError::BadRequest(format!(
                    "at most {MAX_BURST_FRAMES} frames"
                )));
            }
            Some("frame") => frames.push(bytes.to_vec()),
            Some("nonce") => {
                let text = std::str::from_utf8(&bytes)
                    .ok()
                    .filter(|t| t.len() <= 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| WebError::BadRequest("the nonce is not one we issue".into()))?;
                nonce = Some(text.to_string());
            }
            _ => {}
        }
    }
    match (nonce, frames.len()) {
        (_, 0) => Err(WebError::BadRequest(
            "the multipart field \"frame\" is missing".into(),
        )),
        (Some(nonce), _) => Ok(Presentation::Burst { nonce, frames }),
        (None, 1) => Ok(Presentation::Frame(frames.remove(0))),
        (None, _) => Err(WebError::BadRequest(
            "several frames need the nonce of a challenge".into(),
        )),
    }
}

fn multipart_error(error: &MultipartError, limit: usize) -> WebError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::TooLarge(limit)
    } else {
        WebError::BadRequest(format!("unreadable multipart body: {}", error.body_text()))
    }
}
