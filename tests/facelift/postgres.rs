//! The store on PostgreSQL (`database_url`): a server started again with nothing but the
//! database finds every kind of state the first one left.

use std::sync::Arc;
use std::time::Duration;

use facelift::config::DatabaseUrl;
use facelift::lift::protocol::Secret;
use facelift::lift::{Device, Link};
use facelift::store::{AuditKind, AuditOutcome};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::{postgres_url, read_photo, unix_now};
use crate::http::{AppOptions, DEVICE, DeviceLink, DeviceOptions, TestApp, spawn_app_with};
use crate::lift::Message;

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
        assert_eq!(
            who_logs_in(&first, "img38.jpg").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        who_logs_in(&first, "img38.jpg").await.0,
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
        who_logs_in(&second, "img38.jpg").await.0,
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

/// How many people an instance matches against, from its `/healthz`.
async fn people(app: &TestApp) -> u64 {
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", app.base))
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    health["people"].as_u64().expect("people")
}

/// Waits (at most 5 s) until `app` matches against `count` people; answers how long it took.
async fn people_become(app: &TestApp, count: u64) -> Duration {
    let started = std::time::Instant::now();
    while people(app).await != count {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} still matches against {} people",
            app.base,
            people(app).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// A login from a fresh client (no cookies) with `photo`: the status and the person
/// recognised.
async fn who_logs_in(app: &TestApp, photo: &str) -> (StatusCode, Option<String>) {
    let form = Form::new().part("frame", Part::bytes(read_photo(photo)).file_name("f.jpg"));
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["person"].as_str().map(str::to_string))
}

#[tokio::test]
async fn an_enrolment_or_a_removal_on_one_instance_reaches_the_other_within_a_second() {
    let Some(url) = postgres_url("gallery shared by instances") else {
        return;
    };
    let (one, two) = (server_on(&url).await, server_on(&url).await);
    assert_eq!((people(&one).await, people(&two).await), (2, 2));
    let (_, login, _) = one.login("img14.jpg").await; // person05, an admin
    let token = login["csrf_token"].as_str().expect("token").to_string();
    for photo in ["img26.jpg", "img28.jpg"] {
        let form = Form::new().part("photo", Part::bytes(read_photo(photo)).file_name("f.jpg"));
        let response = one
            .client
            .post(format!("{}/api/v1/admin/people/newcomer/photos", one.base))
            .header(facelift::web::CSRF_HEADER, &token)
            .multipart(form)
            .send()
            .await
            .expect("enrol");
        assert_eq!(response.status(), StatusCode::CREATED);
        let enrolled: serde_json::Value = response.json().await.expect("json");
        assert_eq!(enrolled["duplicate"], false, "{enrolled}");
    }
    let reached = people_become(&two, 3).await;
    eprintln!("gallery: an enrolment reached the other instance in {reached:?}");
    assert!(reached < Duration::from_secs(1), "{reached:?}");
    assert_eq!(
        who_logs_in(&two, "img27.jpg").await,
        (StatusCode::OK, Some("newcomer".into())),
        "enrolled through the first instance, recognised by the second"
    );

    // removed through the second instance (whose folder never held the photos)
    let (_, login, _) = two.login("img14.jpg").await;
    let token = login["csrf_token"].as_str().expect("token").to_string();
    let response = two
        .client
        .delete(format!("{}/api/v1/admin/people/newcomer", two.base))
        .header(facelift::web::CSRF_HEADER, &token)
        .send()
        .await
        .expect("remove");
    assert_eq!(response.status(), StatusCode::OK);
    let reached = people_become(&one, 2).await;
    eprintln!("gallery: a removal reached the other instance in {reached:?}");
    assert!(reached < Duration::from_secs(1), "{reached:?}");
    assert_eq!(
        who_logs_in(&one, "img27.jpg").await.0,
        StatusCode::UNAUTHORIZED
    );

    // an instance whose folder still holds an old photo of theirs does not bring them back
    let third = {
        let mut options = AppOptions {
            device: None,
            ..AppOptions::default()
        };
        options.settings.database_url = Some(DatabaseUrl(url.clone()));
        options.store = Some(Arc::new(
            facelift::app::open_store(&options.settings).expect("the database"),
        ));
        let folder = tempfile::tempdir().expect("tempdir");
        let newcomer = folder.path().join("newcomer");
        std::fs::create_dir_all(&newcomer).expect("folder");
        let photo = newcomer.join("old.jpg");
        std::fs::write(&photo, read_photo("img26.jpg")).expect("photo");
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&photo)
            .and_then(|f| f.set_modified(an_hour_ago))
            .expect("mtime");
        options.gallery = Some(folder);
        spawn_app_with(options).await
    };
    assert_eq!(people(&third).await, 2, "the removed person stays removed");
    assert_eq!(
        who_logs_in(&third, "img27.jpg").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_recall_started_on_one_instance_holds_on_the_other() {
    let Some(url) = postgres_url("recall shared by instances") else {
        return;
    };
    let on = |url: &str| {
        let mut options = AppOptions {
            device: None,
            ..AppOptions::default()
        };
        options.settings.database_url = Some(DatabaseUrl(url.to_string()));
        options.store = Some(Arc::new(
            facelift::app::open_store(&options.settings).expect("the database"),
        ));
        spawn_app_with(options)
    };
    let (one, two) = (on(&url).await, on(&url).await);
    let (_, login, _) = one.login("img14.jpg").await; // person05, an admin
    let token = login["csrf_token"].as_str().expect("token").to_string();
    let (status, body) = one
        .post_json("/api/v1/admin/recall", Some(&token), json!({}))
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let started = std::time::Instant::now();
    while two.lifts.recall().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the other instance takes the recall up within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, login, _) = two.login("img4.jpg").await;
    let token = login["csrf_token"].as_str().expect("token").to_string();
    let (status, body) = two
        .post_json("/api/v1/lift/move", Some(&token), json!({"floor": 2}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("recall")),
        "{body}"
    );
}

/// A device's long poll held open on one instance (its connection to it lost, say) while it
/// polls again through the other: the move goes to the newer poll, and the older one ends
/// without it. Before, the instance that took the move handed it to the poll it held, and
/// the device never saw it.
#[tokio::test]
async fn only_the_devices_newest_poll_takes_a_move_whichever_instance_holds_it() {
    let Some(url) = postgres_url("newest poll across instances") else {
        return;
    };
    let secret = Secret::generate();
    let on = |url: &str| {
        let mut options = AppOptions {
            device: None,
            ..AppOptions::default()
        };
        options.settings.database_url = Some(DatabaseUrl(url.to_string()));
        let store = facelift::app::open_store(&options.settings).expect("the database");
        let device = Device {
            name: DEVICE.into(),
            secret: secret.clone(),
            link: Link::Pull,
        };
        store
            .put_device(&device.to_row())
            .expect("register the device");
        options.store = Some(Arc::new(store));
        spawn_app_with(options)
    };
    let (one, two) = (on(&url).await, on(&url).await);
    let (status, body) = Message::report(&secret, 1, 1, unix_now()).send(&one).await;
    assert!(status.is_success(), "{status}: {body}");
    let (_, login, _) = one.login("img4.jpg").await;
    let token = login["csrf_token"].as_str().expect("token").to_string();

    let poll_on = |app: &TestApp| {
        let (base, poll) = (app.base.clone(), Message::poll(&secret, 20, unix_now()));
        tokio::spawn(async move { poll.send_to(&base).await })
    };
    let older = poll_on(&one);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let newer = poll_on(&two);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = one
        .post_json("/api/v1/lift/move", Some(&token), json!({"floor": 2}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (status, body) = tokio::time::timeout(SOON, newer)
        .await
        .expect("the newer poll answers")
        .expect("task");
    assert_eq!(
        (status, body["floor"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{body}"
    );
    let (status, body) = tokio::time::timeout(SOON, older)
        .await
        .expect("the older poll ends, long before its 20 s")
        .expect("task");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// A database that stalls (here a long transaction elsewhere holding the car's row) stalls
/// the requests that need it, not the server: with more moves waiting on the row than the
/// runtime has workers, the server still answers what does not need it. Before, each
/// waiting request held its worker, and the server stopped answering anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_waiting_on_a_locked_database_row_do_not_stall_the_rest_of_the_server() {
    let Some(url) = postgres_url("a stalled database") else {
        return;
    };
    let app = server_on(&url).await;
    app.lift_becomes(SOON, |s| s.state == "idle").await;
    let (_, login, _) = app.login("img4.jpg").await;
    let token = login["csrf_token"].as_str().expect("token").to_string();

    // the lock and the look at the server come from a thread of their own, which a stalled
    // server runtime cannot hold up: the test fails, it does not hang
    let (to_elsewhere, orders) = std::sync::mpsc::channel::<()>();
    let (reports, from_elsewhere) = std::sync::mpsc::channel::<Result<StatusCode, String>>();
    let health_url = format!("{}/healthz", app.base);
    let elsewhere = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("a second connection");
            tokio::spawn(connection);
            holder
                .batch_execute("BEGIN; SELECT 1 FROM lift_cars FOR UPDATE")
                .await
                .expect("the car's row locked");
            reports.send(Ok(StatusCode::OK)).expect("locked");
            orders.recv().expect("look");
            let health = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client")
                .get(health_url)
                .send()
                .await
                .map(|r| r.status())
                .map_err(|e| e.to_string());
            reports.send(health).expect("health");
            holder.batch_execute("ROLLBACK").await.expect("unlocked");
        });
    });
    let locked = from_elsewhere.recv().expect("locked");
    assert!(locked.is_ok());
    let moves: Vec<_> = (0..4)
        .map(|_| {
            let request = app
                .client
                .post(format!("{}/api/v1/lift/move", app.base))
                .header(facelift::web::CSRF_HEADER, &token)
                .json(&json!({"floor": 2}));
            tokio::spawn(async move { request.send().await.map(|r| r.status()) })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        moves.iter().all(|m| !m.is_finished()),
        "the moves wait on the row"
    );
    to_elsewhere.send(()).expect("look");
    let health = from_elsewhere
        .recv_timeout(Duration::from_secs(10))
        .expect("an answer");
    elsewhere.join().expect("the lock released");
    assert_eq!(
        health,
        Ok(StatusCode::OK),
        "the server answers while moves wait on the database"
    );

    let mut answers = Vec::new();
    for waiting in moves {
        let status = tokio::time::timeout(SOON, waiting)
            .await
            .expect("the move answers once the row is free")
            .expect("task")
            .expect("request");
        answers.push(status);
    }
    // one move is taken; the others find the car moving (or, late, already there)
    assert!(answers.contains(&StatusCode::ACCEPTED), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|s| [StatusCode::ACCEPTED, StatusCode::CONFLICT].contains(s)),
        "{answers:?}"
    );
    app.lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(2))
        .await;
}
