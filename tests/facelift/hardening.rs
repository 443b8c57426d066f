//! Issue 14's attacks, each answered as it should be: small hostile images, connections,
//! headers, device replays across restarts, errors in one shape, secrets at rest.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::hostile_images;
use crate::http::{AppOptions, spawn_app, spawn_app_with};

async fn post_login_frame(app: &crate::http::TestApp, frame: Vec<u8>) -> (StatusCode, Value) {
    let form = Form::new().part("frame", Part::bytes(frame).file_name("frame"));
    let response = app
        .client
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn a_login_frame_claiming_more_than_a_camera_frame_is_refused_from_its_header() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "a 656-byte CMYK JPEG claiming 6300x6300",
            hostile_images::cmyk_jpeg_claiming(6300),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "a real progressive JPEG of 4000x4000",
            hostile_images::progressive_jpeg(4000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "a 16 KB WebP of 6000x6000",
            hostile_images::flat_webp(6000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "a 16-bit PNG of 6000x6000",
            hostile_images::flat_png16(6000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "a JPEG whose scan is repeated 70 times",
            hostile_images::jpeg_of_many_scans(70),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
        ),
    ];
    for (what, frame, status, code) in cases {
        let (got, body) = post_login_frame(&app, frame).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
    }
    // a 4K camera frame is still a camera frame, and a real photo still logs in
    let (status, body) = post_login_frame(&app, hostile_images::flat_png16_sized(3840, 2160)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_face")),
        "{body}"
    );
    let (status, _, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK);
}

/// The security headers every answer must carry.
fn assert_security_headers(what: &str, headers: &reqwest::header::HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_string()
    };
    let policy = header("content-security-policy");
    assert!(
        policy.contains("frame-ancestors 'none'"),
        "{what}: {policy}"
    );
    assert!(policy.contains("script-src 'self'"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert!(!header("referrer-policy").is_empty(), "{what}");
    let permissions = header("permissions-policy");
    assert!(
        permissions.contains("camera=(self)"),
        "{what}: {permissions}"
    );
}

/// A page's HTML runs no code of its own: every script comes from a file, no element has an
/// event-handler attribute, and no style is inline (the policy would block them all).
fn assert_no_inline_code(what: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    for (at, _) in lower.match_indices("<script") {
        let tag = &lower[at..at + lower[at..].find('>').expect("a closed tag")];
        assert!(tag.contains(" src="), "{what}: an inline script: {tag}");
    }
    assert!(!lower.contains("<style"), "{what}: a style element");
    assert!(!lower.contains(" style="), "{what}: a style attribute");
    for handler in [
        " onclick=",
        " onload=",
        " onerror=",
        " onsubmit=",
        " onchange=",
    ] {
        assert!(!lower.contains(handler), "{what}: {handler}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_pages_run_no_inline_code() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/static/login.js",
        "/static/app.css",
        "/healthz",
        "/api/v1/me",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_security_headers(path, response.headers());
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "{path}: no HSTS over plain HTTP"
        );
    }
    app.log_in_admin().await;
    for path in ["/", "/lift", "/admin"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_security_headers(path, response.headers());
        assert_no_inline_code(path, &response.text().await.expect("html"));
    }

    let tls = spawn_app_with(AppOptions {
        tls: true,
        ..AppOptions::default()
    })
    .await;
    let response = tls
        .client
        .get(format!("{}/", tls.base))
        .send()
        .await
        .expect("HTTPS");
    assert_security_headers("/ over HTTPS", response.headers());
    let hsts = response
        .headers()
        .get("strict-transport-security")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(hsts.starts_with("max-age="), "HSTS over HTTPS: {hsts:?}");
}

#[tokio::test]
async fn an_upload_that_is_no_multipart_form_is_refused_in_the_json_shape() {
    let app = spawn_app().await;
    let (status, body, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK);
    let token = body["csrf_token"].as_str().expect("token").to_string();
    let cases: [(&str, Option<&str>, &[u8]); 5] = [
        ("no body, no type", None, b""),
        ("plain text", Some("text/plain"), b"hello"),
        (
            "multipart without a boundary",
            Some("multipart/form-data"),
            b"--x--",
        ),
        (
            "multipart, empty",
            Some("multipart/form-data; boundary=x"),
            b"",
        ),
        (
            "multipart, cut",
            Some("multipart/form-data; boundary=x"),
            b"--x\r\nContent-Disp",
        ),
    ];
    for path in ["/api/v1/login", "/api/v1/verify"] {
        for (what, content_type, bytes) in cases {
            let mut request = app
                .client
                .post(format!("{}{path}", app.base))
                .header("x-csrf-token", &token)
                .header("origin", &app.base)
                .body(bytes.to_vec());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.expect("request");
            let status = response.status();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let text = response.text().await.expect("body");
            assert!(status.is_client_error(), "{path}, {what}: {status} {text}");
            assert!(
                kind.starts_with("application/json"),
                "{path}, {what}: {kind} {text}"
            );
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{path}, {what}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn a_refusal_sent_before_an_upload_is_read_is_not_lost_to_a_reset() {
    let app = spawn_app().await;
    let (status, body, cookie) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK);
    let token = body["csrf_token"].as_str().expect("token").to_string();
    let cookie = cookie.expect("a session cookie");
    let cookie = cookie.split(';').next().expect("name=value").to_string();
    let address = app.base.trim_start_matches("http://").to_string();
    let base = app.base.clone();
    // a raw client that sends a 2 MB upload and reads the answer only afterwards, as a slow
    // phone would: if the server closed with the upload unread, the reset would wipe the
    // answer from the client's buffer before it is read
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream
            .set_write_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let upload = vec![b'a'; 2 * 1024 * 1024];
        let head = format!(
            "POST /api/v1/admin/people/person01/photos HTTP/1.1\r\nHost: {address}\r\n\
             Cookie: {cookie}\r\nx-csrf-token: {token}\r\nOrigin: {base}\r\n\
             Content-Type: multipart/form-data; boundary=x\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            upload.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        // the server may stop reading; what was written is enough either way
        let _ = stream.write_all(&upload);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        (
            read.map_err(|e| e.to_string()),
            String::from_utf8_lossy(&answer).to_string(),
        )
    })
    .await
    .expect("client");
    let (read, text) = answer;
    assert!(
        read.is_ok(),
        "the connection was reset: {read:?}, read so far {text:?}"
    );
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("not_admin"), "{text}");
}
