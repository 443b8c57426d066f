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
