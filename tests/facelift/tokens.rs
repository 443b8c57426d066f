//! Bearer tokens over real HTTP: issued from a session or to a kiosk, used without cookies or
//! CSRF, limited by scopes, refused once expired, revoked or signed by a withdrawn key, and a
//! rotation that logs no one out. Time is a manual clock, so expiry is exact.

use std::sync::Arc;
use std::time::Duration;

use facelift::clock::ManualClock;
use facelift::store::AuditKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::unix_now;
use crate::http::{AppOptions, TestApp, spawn_app_with};

async fn app_with_clock(clock: &Arc<ManualClock>, cleanup_every_secs: u64) -> TestApp {
    let mut options = AppOptions::default();
    // the simulator signs with the real time; the tests move the server's clock on
    options.settings.lift.signature_window_secs = 6 * 3600;
    options.settings.tokens.cleanup_every_secs = cleanup_every_secs;
    options.clock = Some(Arc::clone(clock) as Arc<dyn facelift::clock::Clock>);
    spawn_app_with(options).await
}

/// A request as a script makes it: no cookies, the token in `Authorization`. Answers the
/// status, the body and the `WWW-Authenticate` header.
async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        challenge,
    )
}

/// What `GET /api/v1/lifts` answers a token pair's access token: the status, and the error
/// code of a refusal.
async fn reads_lifts(app: &TestApp, pair: &Value) -> (StatusCode, Option<String>) {
    let token = text(pair, "access_token");
    let (status, body, _) = with_token(app, Method::GET, "/api/v1/lifts", &token, None).await;
    (status, body["error"].as_str().map(str::to_string))
}

/// `POST /api/v1/tokens/revoke` with `token`; answers whether it was ours.
async fn revoke(app: &TestApp, token: &str) -> Option<bool> {
    let (status, body) = app
        .send_json(
            Method::POST,
            "/api/v1/tokens/revoke",
            None,
            json!({"token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["revoked"].as_bool()
}

/// `POST /api/v1/tokens` with the app's session (and `csrf` when given).
async fn ask_tokens(app: &TestApp, csrf: Option<&str>, body: Value) -> (StatusCode, Value) {
    app.send_json(Method::POST, "/api/v1/tokens", csrf, body)
        .await
}

/// `POST /api/v1/tokens` without a session, as a machine refreshing.
async fn refresh(app: &TestApp, refresh_token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/tokens", app.base))
        .json(&json!({"grant_type": "refresh_token", "refresh_token": refresh_token}))
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
        .to_string()
}

/// The `kid` in a JWT's header.
fn key_id(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&bytes).expect("JSON header");
    text(&header, "kid")
}

#[tokio::test]
async fn a_token_from_a_session_works_without_cookies_within_its_scopes_until_it_expires() {
    let clock = Arc::new(ManualClock::starting_at(unix_now()));
    let app = app_with_clock(&clock, 60).await;
    app.lift_ready().await;
    let (status, body, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let csrf = text(&body, "csrf_token");

    // the session's own rules hold: a change needs its CSRF token
    let (status, body) = ask_tokens(&app, None, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = ask_tokens(&app, Some(&csrf), json!({"scope": "admin"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("scope_not_allowed")),
        "person01 is no administrator: {body}"
    );
    let (status, body) = ask_tokens(&app, Some(&csrf), json!({"scope": "lift:fly"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    let (status, pair) = ask_tokens(&app, Some(&csrf), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{pair}");
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 600, "ten minutes by default");
    assert_eq!(pair["scope"], "lift:read lift:move");
    let access = text(&pair, "access_token");
    assert!(!text(&pair, "refresh_token").is_empty());

    // a script with the token alone: no cookie, no CSRF token
    let (status, me, _) = with_token(&app, Method::GET, "/api/v1/me", &access, None).await;
    assert_eq!(
        (status, me["person"].as_str()),
        (StatusCode::OK, Some("person01"))
    );
    let (status, lifts, _) = with_token(&app, Method::GET, "/api/v1/lifts", &access, None).await;
    assert_eq!(status, StatusCode::OK, "{lifts}");
    let (status, moved, _) = with_token(
        &app,
        Method::POST,
        "/api/v1/lift/move",
        &access,
        Some(json!({"floor": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{moved}");
    assert_eq!(moved["lift"], "A");

    // a read-only token cannot move the lift; a person's token is no admin's
    let (_, reader) = ask_tokens(&app, Some(&csrf), json!({"scope": "lift:read"})).await;
    let reader = text(&reader, "access_token");
    let (status, body, challenge) = with_token(
        &app,
        Method::POST,
        "/api/v1/lift/move",
        &reader,
        Some(json!({"floor": 3})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer error=\"insufficient_scope\"")
    );
    let (status, _, _) = with_token(&app, Method::GET, "/api/v1/people", &access, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // a forged or altered token is nobody's
    // one character of the signature changed (not the last, whose low bits are padding)
    let mut altered = access.clone().into_bytes();
    let at = altered.len() - 10;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ASCII");
    for forged in [altered.as_str(), "not.a.token", "garbage"] {
        let (status, body, challenge) =
            with_token(&app, Method::GET, "/api/v1/lifts", forged, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{forged}"
        );
        assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));
    }

    // ten minutes on, it has expired; its refresh token gives the next pair, once
    clock.advance(601);
    let (status, body, _) = with_token(&app, Method::GET, "/api/v1/lifts", &access, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );
    let (status, next) = refresh(&app, &text(&pair, "refresh_token")).await;
    assert_eq!(status, StatusCode::CREATED, "{next}");
    assert_eq!(next["scope"], "lift:read lift:move");
    let next_access = text(&next, "access_token");
    let (status, _, _) = with_token(&app, Method::GET, "/api/v1/me", &next_access, None).await;
    assert_eq!(status, StatusCode::OK);
    // the same refresh token again means it was copied: the whole grant is revoked
    let (status, body) = refresh(&app, &text(&pair, "refresh_token")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked")),
        "{body}"
    );
    let (status, body, _) = with_token(&app, Method::GET, "/api/v1/me", &next_access, None).await;
    assert_eq!(body["error"], "token_revoked", "{status}");
    let (status, body) = refresh(&app, &text(&next, "refresh_token")).await;
    assert_eq!(body["error"], "token_revoked", "{status}");
    let (status, body) = refresh(&app, "0123456789abcdef").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // the audit log has each pair issued, and the copied refresh token
    let issued = app
        .audit_shows(AuditKind::Access, |e| e.outcome.as_str() == "token_issued")
        .await;
    assert_eq!(issued.person.as_deref(), Some("person01"));
    assert!(
        issued
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("scope=lift:read")),
        "{:?}",
        issued.detail
    );
    app.audit_shows(AuditKind::Access, |e| {
        e.outcome.as_str() == "token_revoked"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("refresh token used twice"))
    })
    .await;
}

#[tokio::test]
async fn revoked_tokens_and_withdrawn_keys_are_refused_rotation_logs_no_one_out_and_the_list_is_cleaned()
 {
    let clock = Arc::new(ManualClock::starting_at(unix_now()));
    let app = app_with_clock(&clock, 1).await;
    let csrf = app.log_in_admin().await;
    let pair = |scope: &'static str| {
        let (app, csrf) = (&app, csrf.clone());
        async move {
            let (status, pair) = ask_tokens(app, Some(&csrf), json!({"scope": scope})).await;
            assert_eq!(status, StatusCode::CREATED, "{pair}");
            pair
        }
    };
    let admin = pair("admin lift:read").await;
    let admin_token = text(&admin, "access_token");
    assert_eq!(admin["scope"], "lift:read admin");

    // revoking an access token refuses that token alone
    let (first, second) = (pair("lift:read").await, pair("lift:read").await);
    assert_eq!(
        revoke(&app, &text(&first, "access_token")).await,
        Some(true)
    );
    assert_eq!(
        reads_lifts(&app, &first).await,
        (StatusCode::UNAUTHORIZED, Some("token_revoked".into()))
    );
    assert_eq!(
        reads_lifts(&app, &second).await,
        (StatusCode::OK, None),
        "another token is untouched"
    );
    // revoking a refresh token ends its grant: the access token from it too
    assert_eq!(
        revoke(&app, &text(&second, "refresh_token")).await,
        Some(true)
    );
    assert_eq!(
        reads_lifts(&app, &second).await,
        (StatusCode::UNAUTHORIZED, Some("token_revoked".into()))
    );
    let (status, _) = refresh(&app, &text(&second, "refresh_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoke(&app, "not one of ours").await, Some(false));

    // rotation: a new key signs, and tokens signed before keep working
    let before = pair("lift:read").await;
    let old_kid = key_id(&text(&before, "access_token"));
    let (status, rotated, _) = with_token(
        &app,
        Method::POST,
        "/api/v1/admin/token-keys",
        &admin_token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_kid = text(&rotated, "kid");
    assert_ne!(new_kid, old_kid);
    let after = pair("lift:read").await;
    assert_eq!(key_id(&text(&after, "access_token")), new_kid);
    for token in [&before, &after, &admin] {
        assert_eq!(reads_lifts(&app, token).await, (StatusCode::OK, None));
    }
    let (_, keys, _) = with_token(
        &app,
        Method::GET,
        "/api/v1/admin/token-keys",
        &admin_token,
        None,
    )
    .await;
    assert_eq!(keys[0]["kid"], new_kid.as_str());
    assert_eq!(keys[0]["signing"], true);
    assert_eq!(keys[1]["kid"], old_kid.as_str());
    assert_eq!(keys[1]["signing"], false);
    // a read-only token may not rotate keys
    let (status, _, _) = with_token(
        &app,
        Method::POST,
        "/api/v1/admin/token-keys",
        &text(&after, "access_token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // withdrawing the old key (it leaked) refuses its tokens at once
    let (status, _, _) = with_token(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/token-keys/{old_kid}"),
        &text(&after, "access_token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not with a read-only token");
    // the admin's own token was signed by the old key: a fresh one signs with the new
    let admin_token = text(&pair("admin lift:read").await, "access_token");
    let (status, _, _) = with_token(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/token-keys/{old_kid}"),
        &admin_token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        reads_lifts(&app, &before).await,
        (StatusCode::UNAUTHORIZED, Some("invalid_token".into()))
    );
    assert_eq!(reads_lifts(&app, &after).await, (StatusCode::OK, None));

    // who rotated and withdrew which key is in the audit log
    let rotated = app
        .audit_shows(AuditKind::Access, |e| e.outcome.as_str() == "key_rotated")
        .await;
    assert_eq!(rotated.client, "person05");
    assert_eq!(rotated.detail, Some(format!("kid={new_kid}")));
    let withdrawn = app
        .audit_shows(AuditKind::Access, |e| e.outcome.as_str() == "key_withdrawn")
        .await;
    assert_eq!(withdrawn.detail, Some(format!("kid={old_kid}")));

    // the revocation list forgets what has expired anyway, in the background
    assert!(app.store.revoked_token_count().expect("count") >= 2);
    clock.advance(601);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.store.revoked_token_count().expect("count") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation list was not cleaned in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
