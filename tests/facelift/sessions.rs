//! Login, sessions, the lift API and cross-site protection, over real HTTP.

use facelift::store::{AuditKind, AuditOutcome};
use std::sync::Arc;

use facelift::clock::ManualClock;
use facelift::store::Store;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::read_photo;
use crate::http::{AppOptions, TestApp, spawn_app, spawn_app_with};

impl TestApp {
    pub(crate) async fn login(&self, photo: &str) -> (StatusCode, Value, Option<String>) {
        self.login_with(photo, &[]).await
    }

    async fn login_with(
        &self,
        photo: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, Option<String>) {
        let form = Form::new().part(
            "frame",
            Part::bytes(read_photo(photo)).file_name("frame.jpg"),
        );
        let mut request = self
            .client
            .post(format!("{}/api/v1/login", self.base))
            .multipart(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(facelift::web::SESSION_COOKIE))
            .map(str::to_string);
        (status, response.json().await.expect("json"), cookie)
    }

    async fn me(&self) -> StatusCode {
        self.client
            .get(format!("{}/api/v1/me", self.base))
            .send()
            .await
            .expect("request")
            .status()
    }

    pub(crate) async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::POST, path, token, body)
            .await
    }

    /// A JSON request with the CSRF token when given; answers the status and the JSON body
    /// (null when there is none).
    pub(crate) async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.header(facelift::web::CSRF_HEADER, token);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn a_recognised_face_logs_in_with_a_safe_cookie_and_others_get_their_codes() {
    let app = spawn_app().await;
    assert_eq!(
        app.me().await,
        StatusCode::UNAUTHORIZED,
        "not logged in yet"
    );

    let (status, body, _) = app.login("img38.jpg").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("not_recognized"))
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let (status, body, cookie) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["person"], "person01");
    assert!(body["similarity"].as_f64() >= Some(0.5));
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP from a direct client: {cookie}"
    );
    assert_eq!(app.me().await, StatusCode::OK);

    let log = app.store.recent_audit(AuditKind::Login, 10).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::Recognized);
    assert_eq!(log[0].person.as_deref(), Some("person01"));
    assert_eq!(log[1].outcome, AuditOutcome::NotRecognized);
    assert!(log[1].similarity.is_some_and(|s| s < 0.5));
}

#[tokio::test]
async fn five_failures_in_a_row_make_the_client_wait_and_the_wait_doubles() {
    // the app's own clock, moved by hand: a loaded machine cannot tick a second in between
    let clock = ManualClock::starting_at(1_800_000_000);
    let app = spawn_app_with(AppOptions {
        clock: Some(Arc::new(clock.clone())),
        ..AppOptions::default()
    })
    .await;
    for _ in 0..5 {
        let (status, _, _) = app.login("img38.jpg").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let attempt = || async {
        let form = Form::new().part("frame", Part::bytes(read_photo("img4.jpg")));
        app.client
            .post(format!("{}/api/v1/login", app.base))
            .multipart(form)
            .send()
            .await
            .expect("request")
    };
    let retry_after = |response: &reqwest::Response| -> u64 {
        response.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds")
    };
    let response = attempt().await;
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even a good face waits now"
    );
    assert_eq!(retry_after(&response), 30);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "too_many_attempts");
    let log = app.store.recent_audit(AuditKind::Login, 1).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::RateLimited);

    // after the wait, one more failure: the next wait is twice as long
    clock.advance(30);
    let (status, _, _) = app.login("img38.jpg").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = attempt().await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&response), 60);
}

#[tokio::test]
async fn the_lift_needs_a_session_and_the_csrf_token() {
    let app = spawn_app().await;
    app.lift_ready().await;
    let (status, _) = app
        .post_json("/api/v1/lift/move", None, json!({"floor": 2}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, login, _) = app.login("img4.jpg").await;
    let token = login["csrf_token"].as_str().expect("token").to_string();
    let (status, body) = app
        .post_json("/api/v1/lift/move", None, json!({"floor": 2}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("cross_site"))
    );
    let (status, body) = app
        .post_json("/api/v1/lift/move", Some("wrong"), json!({"floor": 2}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // a request from another site's page carries its Origin
    let response = app
        .client
        .post(format!("{}/api/v1/lift/move", app.base))
        .header(facelift::web::CSRF_HEADER, &token)
        .header("origin", "https://evil.example")
        .json(&json!({"floor": 2}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let (status, body) = app
        .post_json("/api/v1/lift/move", Some(&token), json!({"floor": 9}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_such_floor"))
    );
    let (status, body) = app
        .post_json("/api/v1/lift/move", Some(&token), json!({"floor": 2}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["request_id"].as_str().is_some());
    let (status, body) = app
        .post_json("/api/v1/lift/move", Some(&token), json!({"floor": 1}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("busy"))
    );

    app.audit_shows(AuditKind::Lift, |e| {
        e.outcome == AuditOutcome::Accepted && e.person.as_deref() == Some("person01")
    })
    .await;
}

#[tokio::test]
async fn a_session_expires_after_inactivity_on_the_apps_clock() {
    let clock = ManualClock::starting_at(1_800_000_000);
    let app = spawn_app_with(AppOptions {
        clock: Some(Arc::new(clock.clone())),
        ..AppOptions::default()
    })
    .await;
    app.login("img4.jpg").await;
    clock.advance(14 * 60);
    assert_eq!(app.me().await, StatusCode::OK, "14 minutes idle: still in");
    clock.advance(14 * 60);
    assert_eq!(
        app.me().await,
        StatusCode::OK,
        "activity restarted the idle timer"
    );
    clock.advance(16 * 60);
    assert_eq!(
        app.me().await,
        StatusCode::UNAUTHORIZED,
        "16 minutes idle: out"
    );
}

#[tokio::test]
async fn a_restart_keeps_the_session_and_logout_ends_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(data.path()).expect("store"));
    let first = spawn_app_with(AppOptions {
        store: Some(Arc::clone(&store)),
        ..AppOptions::default()
    })
    .await;
    let (_, login, cookie) = first.login("img4.jpg").await;
    let cookie = cookie.expect("cookie");
    let session = cookie.split(';').next().expect("name=value").to_string();
    drop(first);
    drop(store);

    // a new server process on the same database
    let second = spawn_app_with(AppOptions {
        store: Some(Arc::new(Store::open(data.path()).expect("reopen"))),
        ..AppOptions::default()
    })
    .await;
    let me = |app: &TestApp| {
        app.client
            .get(format!("{}/api/v1/me", app.base))
            .header("cookie", &session)
            .send()
    };
    let response = me(&second).await.expect("request");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "still logged in after the restart"
    );

    let token = login["csrf_token"].as_str().expect("token");
    let response = second
        .client
        .post(format!("{}/api/v1/logout", second.base))
        .header("cookie", &session)
        .header(facelift::web::CSRF_HEADER, token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        me(&second).await.expect("request").status(),
        StatusCode::UNAUTHORIZED,
        "logged out"
    );
}

#[tokio::test]
async fn forwarded_https_marks_the_cookie_secure_only_from_a_trusted_proxy() {
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.5"),
    ];
    let untrusted = spawn_app().await;
    let (_, _, cookie) = untrusted.login_with("img4.jpg", &forwarded).await;
    assert!(
        !cookie.expect("cookie").contains("Secure"),
        "headers from anyone are not believed"
    );

    let mut options = AppOptions::default();
    options.settings.web.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    let behind_tunnel = spawn_app_with(options).await;
    let (_, _, cookie) = behind_tunnel.login_with("img4.jpg", &forwarded).await;
    assert!(cookie.expect("cookie").contains("Secure"));
    let log = behind_tunnel
        .store
        .recent_audit(AuditKind::Login, 1)
        .expect("audit");
    assert_eq!(
        log[0].client, "203.0.113.5",
        "the real client, as the proxy says"
    );
}

#[tokio::test]
async fn pages_redirect_strangers_and_refuse_non_admins() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects
        .get(format!("{}/lift", app.base))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/");

    let login_page = app
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(login_page.status(), StatusCode::OK);
    let html = login_page.text().await.expect("html");
    assert!(html.contains("src=\"/static/login.js\""), "{html}");
    let script = app
        .client
        .get(format!("{}/static/login.js", app.base))
        .send()
        .await
        .expect("request");
    let script = script.text().await.expect("js");
    assert!(script.contains("isSecureContext") && script.contains("getUserMedia"));

    // person01 is not an admin
    app.login("img4.jpg").await;
    let lift = app
        .client
        .get(format!("{}/lift", app.base))
        .send()
        .await
        .expect("request");
    let html = lift.text().await.expect("html");
    assert!(
        html.contains("data-floor=\"2\"") && html.contains("name=\"csrf-token\""),
        "{html}"
    );
    let admin = app
        .client
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(admin.status(), StatusCode::FORBIDDEN);

    // person05 is
    let admin_app = spawn_app().await;
    admin_app.login("img38.jpg").await; // a stranger's failed attempt, for the log
    admin_app.login("img14.jpg").await;
    let page = admin_app
        .client
        .get(format!("{}/admin", admin_app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("person01")
            && html.contains("<strong>Face not recognised</strong>")
            && html.contains("<strong>Logged in</strong>")
            && html.contains("<span class=\"detail\">pad=off frames=1")
            && !html.contains("not_recognized"),
        "{html}"
    );
}

#[tokio::test]
async fn over_direct_tls_the_cookie_is_secure_and_the_self_signed_certificate_is_kept() {
    let data = tempfile::tempdir().expect("tempdir");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let files = facelift::web::self_signed(&data.path().join("tls"), &names).expect("certificate");
    let first_cert = std::fs::read(&files.cert).expect("cert");
    let again = facelift::web::self_signed(&data.path().join("tls"), &names).expect("certificate");
    assert_eq!(
        std::fs::read(&again.cert).expect("cert"),
        first_cert,
        "made once, then kept"
    );

    let app = spawn_app_with(AppOptions {
        device: None,
        tls: true,
        ..AppOptions::default()
    })
    .await;
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("HTTPS with our certificate");
    assert_eq!(health.status(), StatusCode::OK);
    let (status, _, cookie) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test]
async fn an_admin_enrolls_a_person_from_photos_and_removes_them() {
    let app = spawn_app().await;
    let (_, login, _) = app.login("img14.jpg").await; // person05, an admin
    let token = login["csrf_token"].as_str().expect("token").to_string();
    let upload = |name: &str, photo: &str| {
        let form = Form::new().part(
            "photo",
            Part::bytes(read_photo(photo)).file_name("shot.jpg"),
        );
        app.client
            .post(format!("{}/api/v1/admin/people/{name}/photos", app.base))
            .header(facelift::web::CSRF_HEADER, &token)
            .multipart(form)
            .send()
    };
    let response = upload("newcomer", "couple.jpg").await.expect("request");
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "two faces are not kept"
    );
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "several_faces"
    );
    let response = upload("../etc", "img26.jpg").await.expect("request");
    assert!(
        response.status().is_client_error(),
        "no path tricks in names"
    );
    for photo in ["img26.jpg", "img28.jpg"] {
        let response = upload("newcomer", photo).await.expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let saved = std::fs::read_dir(app.gallery.path().join("newcomer"))
        .expect("folder")
        .count();
    assert_eq!(saved, 2, "the photos are in the gallery folder");
    let thumbnail = app
        .client
        .get(format!(
            "{}/api/v1/admin/people/newcomer/thumbnail",
            app.base
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(thumbnail.headers()["content-type"], "image/jpeg");
    let thumb = image::load_from_memory(&thumbnail.bytes().await.expect("bytes")).expect("a JPEG");
    assert_eq!(thumb.height(), 96);

    // the newcomer can log in at once
    let newcomer_client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let form = Form::new().part("frame", Part::bytes(read_photo("img27.jpg")));
    let body: Value = newcomer_client
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["person"], "newcomer", "{body}");

    let response = app
        .client
        .delete(format!("{}/api/v1/admin/people/newcomer", app.base))
        .header(facelift::web::CSRF_HEADER, &token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!app.gallery.path().join("newcomer").exists());
    let form = Form::new().part("frame", Part::bytes(read_photo("img27.jpg")));
    let response = newcomer_client
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "removed people are not recognised"
    );
}

#[tokio::test]
async fn non_admins_cannot_enroll() {
    let app = spawn_app().await;
    let (_, login, _) = app.login("img4.jpg").await; // person01, not an admin
    let token = login["csrf_token"].as_str().expect("token");
    let form = Form::new().part("photo", Part::bytes(read_photo("img26.jpg")));
    let response = app
        .client
        .post(format!("{}/api/v1/admin/people/intruder/photos", app.base))
        .header(facelift::web::CSRF_HEADER, token)
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!app.gallery.path().join("intruder").exists());
}

#[tokio::test]
async fn login_answers_each_bad_frame_with_its_code_and_does_not_count_it_as_a_failure() {
    let app = spawn_app().await;
    let jpeg = read_photo("img1.jpg");
    let wall = {
        let image = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x / 3) as u8, (y / 2) as u8, 90])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encode");
        out.into_inner()
    };
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("a wall", wall, StatusCode::UNPROCESSABLE_ENTITY, "no_face"),
        (
            "text",
            b"not a picture".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
        ),
        (
            "truncated",
            jpeg[..jpeg.len() / 2].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
        ),
        (
            "9 MiB",
            vec![0xFF; 9 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let form = Form::new().part("frame", Part::bytes(body).file_name("frame.jpg"));
        let response = app
            .client
            .post(format!("{}/api/v1/login", app.base))
            .multipart(form)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], code, "{what}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // none of those locked the client out
    let (status, _, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_limit_however_active() {
    let clock = ManualClock::starting_at(1_800_000_000);
    let mut options = AppOptions {
        clock: Some(Arc::new(clock.clone())),
        ..AppOptions::default()
    };
    options.settings.web.session_absolute_secs = 3600;
    let app = spawn_app_with(options).await;
    app.login("img4.jpg").await;
    for _ in 0..5 {
        clock.advance(10 * 60);
        assert_eq!(app.me().await, StatusCode::OK, "active, within the hour");
    }
    clock.advance(11 * 60);
    assert_eq!(
        app.me().await,
        StatusCode::UNAUTHORIZED,
        "past the absolute limit"
    );
}

impl TestApp {
    async fn move_from(&self, origin: &str, token: &str, floor: i32) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/lift/move", self.base))
            .header(facelift::web::CSRF_HEADER, token)
            .header("origin", origin)
            .json(&json!({ "floor": floor }))
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// What Chromium does on a phone: HTTPS straight to the server (self-signed), HTTP/2 by ALPN,
/// which carries the authority in `:authority` and no `Host` header, and an `Origin` on every
/// POST. Before the origin check read HTTP/2's authority, every such login was 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_direct_tls_with_http2_a_login_and_a_lift_move_from_our_own_page_pass() {
    let app = spawn_app_with(AppOptions {
        tls: true,
        ..AppOptions::default()
    })
    .await;
    app.lift_ready().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("HTTPS");
    assert_eq!(
        health.version(),
        reqwest::Version::HTTP_2,
        "HTTP/2 over TLS"
    );

    let ours = app.base.clone();
    let (status, body, cookie) = app.login_with("img4.jpg", &[("origin", &ours)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["person"], "person01");
    assert!(cookie.is_some_and(|c| c.contains("Secure")));
    let token = body["csrf_token"].as_str().expect("token").to_string();

    let port = ours.rsplit(':').next().expect("port");
    for other in [
        format!("http://127.0.0.1:{port}"),
        "https://127.0.0.1".to_string(),
        format!("https://evil.example:{port}"),
        "null".to_string(),
    ] {
        let (status, body) = app.move_from(&other, &token, 2).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("cross_site")),
            "{other}"
        );
    }
    let (status, body) = app.move_from(&ours, &token, 2).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.lift_becomes(std::time::Duration::from_secs(10), |s| {
        s.floor == Some(2) && s.state == "idle"
    })
    .await;
}

#[tokio::test]
async fn on_plain_http_a_page_served_over_https_is_another_site() {
    let app = spawn_app().await;
    app.lift_ready().await;
    let https_twin = app.base.replace("http://", "https://");
    let (status, body, _) = app.login_with("img4.jpg", &[("origin", &https_twin)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("cross_site")),
        "the scheme is part of the origin"
    );
    let ours = app.base.clone();
    let (status, body, _) = app.login_with("img4.jpg", &[("origin", &ours)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["csrf_token"].as_str().expect("token").to_string();
    let (status, _) = app.move_from(&https_twin, &token, 2).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app.move_from(&ours, &token, 2).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// `facelift person add NAME --admin` marks the administrator in the database: their next
/// login is an administrator's, with no change to the configuration.
#[tokio::test]
async fn an_administrator_marked_in_the_database_gets_the_admin_page() {
    let store = Arc::new(Store::open_in_memory().expect("store"));
    store.set_admin("person01", true).expect("admin");
    let app = spawn_app_with(AppOptions {
        store: Some(Arc::clone(&store)),
        ..AppOptions::default()
    })
    .await;
    let (status, body, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["admin"], true, "{body}");
    let page = app
        .client
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .expect("admin page");
    assert_eq!(page.status(), StatusCode::OK);
}
