//! Any bytes as the body of a login upload (`multipart/form-data`, the boundary taken from the
//! input's first line), read by the same code as `POST /api/v1/login`.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::Request;
use facelift::web::upload::{Upload, read_presentation};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let (boundary, body) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) if end <= 70 => (&bytes[..end], &bytes[end + 1..]),
        _ => (&b"X"[..], bytes),
    };
    let content_type = format!(
        "multipart/form-data; boundary={}",
        String::from_utf8_lossy(boundary)
    );
    let Ok(request) = Request::post("/api/v1/login")
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    runtime().block_on(async {
        let Ok(upload) = Upload::from_request(request, &()).await else {
            return;
        };
        let _ = read_presentation(upload, 64 * 1024).await;
    });
});
