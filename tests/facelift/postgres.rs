//! The store on PostgreSQL (`database_url`): a server started again with nothing but the
//! database finds every kind of state the first one left.

use std::sync::Arc;
use std::time::Duration;

use facelift::config::DatabaseUrl;
use facelift::store::{AuditKind, AuditOutcome};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::{postgres_url, read_photo};
use crate::http::{AppOptions, DeviceLink, DeviceOptions, TestApp, spawn_app_with};

const SOON: Duration = Duration::from_secs(10);

/// A server on the database `url`, opened from the settings as `facelift serve` opens it,
/// with a fresh data folder and gallery folder: nothing but the database carries over.
async fn server_on(url: &str) -> TestApp {
    let mut options = AppOptions {
        device: Some(DeviceOptions::new(DeviceLink::Pull)),
        ..AppOptions::default()
    };
    options.settings.database_url = Some(DatabaseUrl(url.to_string()));
    options.settings.web.login_failures_before_wait = 2;
    options.settings.web.login_wait_secs = 600;
    let store = facelift::app::open_store(&options.settings).expect("the database");
    assert_eq!(store.dialect(), facelift::store::Dialect::Postgres);
    options.store = Some(Arc::new(store));
    spawn_app_with(options).await
}

/// A login from a client with no cookies: its status.
async fn stranger_tries(app: &TestApp) -> StatusCode {
    let form = Form::new().part(
        "frame",
        Part::bytes(read_photo("img38.jpg")).file_name("frame.jpg"),
    );
    reqwest::Client::new()
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("request")
        .status()
}

#[tokio::test]
async fn a_server_started_again_on_postgresql_finds_sessions_limits_moves_and_the_audit_chain() {
    let Some(url) = postgres_url("restart on postgresql") else {
        return;
    };
    let first = server_on(&url).await;
    let (status, login, cookie) = first.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let session = cookie
        .expect("a session cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let token = login["csrf_token"].as_str().expect("csrf").to_string();
    first.lift_ready().await;
    let press = |app: &TestApp| {
        app.client
            .post(format!("{}/api/v1/lift/move", app.base))
            .header("cookie", &session)
            .header(facelift::web::CSRF_HEADER, &token)
            .json(&json!({"floor": 2, "request_id": "press-before-restart"}))
            .send()
    };
    let moved = press(&first).await.expect("request");
    assert_eq!(moved.status(), StatusCode::ACCEPTED);
    first
        .lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(2))
        .await;
    for _ in 0..2 {
        assert_eq!(stranger_tries(&first).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        stranger_tries(&first).await,
        StatusCode::TOO_MANY_REQUESTS,
        "two failures: the address waits"
    );
    first
        .audit_shows(AuditKind::Lift, |e| e.outcome == AuditOutcome::Arrived)
        .await;
    let before = first.store.verify_audit().expect("verify");
    assert!(
        before.rows >= 5 && before.first_break.is_none(),
        "{before:?}"
    );
    assert_eq!(
        (first.enrolled.embedded, first.enrolled.from_cache),
        (3, 0),
        "a new database: every photo embedded"
    );
    drop(first);

    let second = server_on(&url).await;
    let me = second
        .client
        .get(format!("{}/api/v1/me", second.base))
        .header("cookie", &session)
        .send()
        .await
        .expect("request");
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the session is in the database"
    );
    assert_eq!(
        stranger_tries(&second).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the address still waits: its failures are in the database"
    );
    second.lift_ready().await;
    let again = press(&second).await.expect("request");
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value = again.json().await.expect("json");
    assert_eq!(
        body["duplicate"], true,
        "the request id is remembered: {body}"
    );
    assert_eq!(
        (second.enrolled.embedded, second.enrolled.from_cache),
        (0, 3),
        "the templates were found in the database, not made again"
    );
    second
        .audit_shows(AuditKind::Lift, |e| e.outcome == AuditOutcome::Duplicate)
        .await;
    let after = second.store.verify_audit().expect("verify");
    assert_eq!(after.first_break, None, "one chain across the restart");
    assert!(after.rows > before.rows, "{before:?} then {after:?}");
}
