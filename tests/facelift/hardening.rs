//! Issue 14's attacks, each answered as it should be: small hostile images, connections,
//! headers, device replays across restarts, errors in one shape, secrets at rest.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::hostile_images;
use crate::http::spawn_app;

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
