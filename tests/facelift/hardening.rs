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
    // a raw client sending a 2 MB upload that a non-admin may not make: (1) all of it, then
    // reading the answer only afterwards, as a slow phone would; (2) the headers, a pause in
    // which the server could answer and close, then the body. Either way the answer must
    // reach the client: if the server closed with the upload unread, the reset would fail
    // the client's writes or wipe the answer from its buffer before it is read.
    for pause_before_body in [false, true] {
        let (read, text) = send_refused_upload(&app.base, &cookie, &token, pause_before_body).await;
        assert!(
            read.is_ok(),
            "pause {pause_before_body}: the connection was reset: {read:?}, read so far {text:?}"
        );
        assert!(text.starts_with("HTTP/1.1 403"), "{text}");
        assert!(text.contains("not_admin"), "{text}");
    }
}

async fn send_refused_upload(
    base: &str,
    cookie: &str,
    token: &str,
    pause_before_body: bool,
) -> (Result<usize, String>, String) {
    let address = base.trim_start_matches("http://").to_string();
    let (base, cookie, token) = (base.to_string(), cookie.to_string(), token.to_string());
    tokio::task::spawn_blocking(move || {
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
        if pause_before_body {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let sent = stream.write_all(&upload);
        if !pause_before_body {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let mut answer = Vec::new();
        let read = sent
            .and_then(|()| stream.read_to_end(&mut answer))
            .map_err(|e| e.to_string());
        (read, String::from_utf8_lossy(&answer).to_string())
    })
    .await
    .expect("client")
}

/// A raw connection to the app from 127.0.0.`host`, so that the test client's own pooled
/// connections (from 127.0.0.1) do not count against the limits under test.
fn connect_from(app: &crate::http::TestApp, host: u8) -> std::net::TcpStream {
    let server: std::net::SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let local = std::net::SocketAddr::from(([127, 0, 0, host], 0));
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&local.into()).expect("bind");
    socket.connect(&server.into()).expect("connect");
    socket.into()
}

/// True when the server has ended the connection (end of stream or reset) by `within`;
/// meanwhile sends `drip` every 200 ms if given.
fn ended_by_server(
    stream: &mut std::net::TcpStream,
    within: std::time::Duration,
    drip: Option<&[u8]>,
) -> (bool, String) {
    use std::io::{Read, Write};
    let start = std::time::Instant::now();
    let mut answer = Vec::new();
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    while start.elapsed() < within {
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => return (true, String::from_utf8_lossy(&answer).into()),
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(drip) = drip
                    && stream.write_all(drip).is_err()
                {
                    return (true, String::from_utf8_lossy(&answer).into());
                }
            }
            Err(_) => return (true, String::from_utf8_lossy(&answer).into()),
        }
    }
    (false, String::from_utf8_lossy(&answer).into())
}

/// `GET /healthz` on `stream`; the status line.
fn healthz_on(stream: &mut std::net::TcpStream) -> String {
    use std::io::{BufRead, Write};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut line);
    line.trim().to_string()
}

async fn spawn_app_with_web(
    change: impl FnOnce(&mut facelift::config::WebSettings),
) -> crate::http::TestApp {
    let mut settings = facelift::Settings::default();
    change(&mut settings.web);
    spawn_app_with(AppOptions {
        settings,
        device: None,
        ..AppOptions::default()
    })
    .await
}

#[tokio::test]
async fn connections_over_one_addresses_share_are_closed_at_once_and_others_still_get_in() {
    let app = spawn_app_with_web(|web| web.max_connections_per_address = 4).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut allowed: Vec<_> = (0..4).map(|_| connect_from(&app, 2)).collect();
        let mut fifth = connect_from(&app, 2);
        let fifth_ended = ended_by_server(&mut fifth, std::time::Duration::from_secs(5), None).0;
        let first_status = healthz_on(&mut allowed[0]);
        let other_address = healthz_on(&mut connect_from(&app, 3));
        drop(allowed.pop());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let after_one_left = healthz_on(&mut connect_from(&app, 2));
        (fifth_ended, first_status, other_address, after_one_left)
    })
    .await
    .expect("client");
    let (fifth_ended, first, other, after) = outcome;
    assert!(
        fifth_ended,
        "the fifth connection from one address was kept"
    );
    assert_eq!(first, "HTTP/1.1 200 OK", "an admitted connection is served");
    assert_eq!(other, "HTTP/1.1 200 OK", "another address still gets in");
    assert_eq!(after, "HTTP/1.1 200 OK", "a place freed is given again");
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room_for_a_new_client() {
    let app = spawn_app_with_web(|web| web.max_connections = Some(6)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(connect_from(&app, 2));
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        let newcomer = healthz_on(&mut connect_from(&app, 4));
        let short = std::time::Duration::from_millis(500);
        let oldest_ended = ended_by_server(&mut idle[0], short, None).0;
        let newest_ended = ended_by_server(&mut idle[7], short, None).0;
        (newcomer, oldest_ended, newest_ended)
    })
    .await
    .expect("client");
    let (newcomer, oldest_ended, newest_ended) = outcome;
    assert_eq!(newcomer, "HTTP/1.1 200 OK", "a new client is locked out");
    assert!(
        oldest_ended,
        "the oldest idle connection was kept at the cap"
    );
    assert!(
        !newest_ended,
        "the newest idle connection was closed before older ones"
    );
}

#[tokio::test]
async fn headers_that_never_finish_and_an_idle_keep_alive_are_cut_off() {
    let app = spawn_app_with_web(|web| web.header_timeout_secs = 1).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let within = std::time::Duration::from_secs(15);
        let mut slow = connect_from(&app, 2);
        use std::io::Write;
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").expect("send");
        let slow_ended = ended_by_server(&mut slow, within, Some(b"X")).0;
        let mut kept = connect_from(&app, 2);
        let served = healthz_on(&mut kept);
        let kept_ended = ended_by_server(&mut kept, within, None).0;
        (slow_ended, served, kept_ended)
    })
    .await
    .expect("client");
    let (slow_ended, served, kept_ended) = outcome;
    assert!(
        slow_ended,
        "headers sent a byte at a time kept the connection"
    );
    assert_eq!(served, "HTTP/1.1 200 OK");
    assert!(kept_ended, "an idle keep-alive connection was kept");
}

#[tokio::test]
async fn a_connection_that_says_nothing_is_closed_as_idle() {
    let app = spawn_app_with_web(|web| {
        web.idle_timeout_secs = 1;
        web.header_timeout_secs = 600;
    })
    .await;
    let ended = tokio::task::spawn_blocking(move || {
        let mut silent = connect_from(&app, 2);
        ended_by_server(&mut silent, std::time::Duration::from_secs(15), None).0
    })
    .await
    .expect("client");
    assert!(ended, "a silent connection was kept");
}

#[tokio::test]
async fn a_device_body_sent_a_byte_at_a_time_is_answered_408_and_closed() {
    let app = spawn_app_with_web(|web| web.body_timeout_secs = 1).await;
    let (ended, answer) = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut slow = connect_from(&app, 2);
        slow.write_all(
            b"POST /api/v1/device/status HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{",
        )
        .expect("send");
        ended_by_server(&mut slow, std::time::Duration::from_secs(15), Some(b" "))
    })
    .await
    .expect("client");
    assert!(
        ended,
        "a body sent a byte at a time kept the connection: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_too_slow"), "{answer}");
}

#[tokio::test]
async fn the_server_raises_its_open_file_limit_at_start() {
    let server = crate::child_server::ChildServer::start_with(&[], Some(1024))
        .await
        .expect("the server starts");
    let (soft, hard) = server.open_file_limit().expect("its limits");
    // the hard limit may read "unlimited", which the kernel caps at nr_open
    let raised = soft == hard || soft.parse::<u64>().is_ok_and(|soft| soft > 1024);
    assert!(
        raised,
        "the soft open-file limit was left at {soft} (hard {hard})"
    );
}
