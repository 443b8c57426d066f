//! The lift end to end: the server, the signed device protocol and the simulated controller,
//! over real HTTP on port 0 (push and pull) and a pseudo-terminal pair (serial).

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::Arc;

use facelift::lift::protocol::{self, DEVICE_HEADER, Secret};
use facelift::lift::{Condition, Device, Link};
use facelift::store::{AuditKind, AuditOutcome, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::unix_now;
use crate::http::{AppOptions, DEVICE, DeviceLink, DeviceOptions, TestApp, spawn_app_with};

const SOON: Duration = Duration::from_secs(10);

async fn app_with(link: Option<DeviceLink>, change: impl FnOnce(&mut AppOptions)) -> TestApp {
    let mut options = AppOptions {
        device: link.map(DeviceOptions::new),
        ..AppOptions::default()
    };
    change(&mut options);
    spawn_app_with(options).await
}

/// Logs person01 in; answers the CSRF token.
async fn log_in(app: &TestApp) -> String {
    let (status, body, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["csrf_token"].as_str().expect("token").to_string()
}

async fn press(app: &TestApp, token: &str, request: Value) -> (StatusCode, Value) {
    app.post_json("/api/v1/lift/move", Some(token), request)
        .await
}

#[tokio::test]
async fn push_pull_and_serial_each_take_a_person_to_floor_2_on_the_devices_reports() {
    for link in [DeviceLink::Push, DeviceLink::Pull, DeviceLink::Serial] {
        let app = app_with(Some(link), |o| {
            if let Some(device) = &mut o.device {
                device.travel_ms_per_floor = 300;
            }
        })
        .await;
        let token = log_in(&app).await;
        let ready = app.lift_ready().await;
        assert_eq!(ready.floor, Some(1), "{link:?}: starts at floor 1");

        let (status, body) =
            press(&app, &token, json!({"floor": 2, "request_id": "press-1"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{link:?}: {body}");
        assert_eq!(body["request_id"], "press-1");
        let moving = app.lift_becomes(SOON, |s| s.state == "moving").await;
        assert_eq!(moving.target, Some(2), "{link:?}");
        let arrived = app
            .lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(2))
            .await;
        assert_eq!(arrived.floor_name.as_deref(), Some("2"));

        // the panel retrying the same press does not move the lift again
        let (status, body) =
            press(&app, &token, json!({"floor": 2, "request_id": "press-1"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{link:?}: {body}");
        assert_eq!(body["duplicate"], true);
        let device = app.device.as_ref().expect("device");
        assert_eq!(
            device.commands_received.load(Ordering::Relaxed),
            1,
            "{link:?}"
        );

        app.audit_shows(AuditKind::Lift, |e| {
            e.outcome == AuditOutcome::Accepted && e.person.as_deref() == Some("person01")
        })
        .await;
        app.audit_shows(AuditKind::Lift, |e| e.outcome == AuditOutcome::Arrived)
            .await;
        app.audit_shows(AuditKind::Device, |e| {
            e.client == DEVICE
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with("floor 2 idle"))
        })
        .await;
    }
}

#[tokio::test]
async fn one_move_at_a_time_real_floors_only_and_no_moves_while_offline() {
    let app = app_with(Some(DeviceLink::Push), |o| {
        o.settings.lift.offline_after_ms = 1_500;
        if let Some(device) = &mut o.device {
            device.travel_ms_per_floor = 2_000;
        }
    })
    .await;
    let token = log_in(&app).await;
    app.lift_ready().await;
    let (status, body) = press(&app, &token, json!({"floor": 2})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = press(&app, &token, json!({"floor": 1})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("busy"))
    );
    let (status, body) = press(&app, &token, json!({"floor": 3})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_such_floor"))
    );
    let (status, body) = press(&app, &token, json!({"floor": 1, "request_id": "bad id!"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    app.lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(2))
        .await;
    let (status, body) = press(&app, &token, json!({"floor": 2})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_there"))
    );

    // the controller goes silent: after offline_after the lift is offline and refuses moves
    app.device
        .as_ref()
        .expect("device")
        .faults
        .silent
        .store(true, Ordering::Relaxed);
    let offline = app.lift_becomes(SOON, |s| s.state == "offline").await;
    assert!(!offline.online);
    let (status, body) = press(&app, &token, json!({"floor": 1})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("offline"))
    );
    app.audit_shows(AuditKind::Lift, |e| e.outcome == AuditOutcome::Offline)
        .await;
    // it speaks again: back online
    app.device
        .as_ref()
        .expect("device")
        .faults
        .silent
        .store(false, Ordering::Relaxed);
    app.lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(2))
        .await;

    // with no device registered at all the lift is offline from the start
    let lonely = app_with(None, |_| {}).await;
    let token = log_in(&lonely).await;
    let (status, body) = press(&lonely, &token, json!({"floor": 2})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("offline"))
    );
}

#[tokio::test]
async fn a_move_the_device_never_finishes_faults_and_the_panel_says_so() {
    let app = app_with(Some(DeviceLink::Push), |o| {
        o.settings.lift.move_timeout_ms = 1_000;
    })
    .await;
    let token = log_in(&app).await;
    app.lift_ready().await;
    let device = app.device.as_ref().expect("device");
    device.faults.drop_commands.store(true, Ordering::Relaxed);
    let (status, _) = press(&app, &token, json!({"floor": 2})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let fault = app.lift_becomes(SOON, |s| s.state == "fault").await;
    assert!(
        fault
            .fault
            .as_deref()
            .is_some_and(|f| f.contains("not confirmed")),
        "{fault:?}"
    );
    let (status, body) = press(&app, &token, json!({"floor": 2})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("fault"))
    );
    let panel = app
        .client
        .get(format!("{}/lift", app.base))
        .send()
        .await
        .expect("panel")
        .text()
        .await
        .expect("html");
    assert!(
        panel.contains("not confirmed within"),
        "the panel shows the fault"
    );
    app.audit_shows(AuditKind::Lift, |e| e.outcome == AuditOutcome::Fault)
        .await;

    // the controller idling at floor 1 does not clear it; an administrator does
    device.faults.drop_commands.store(false, Ordering::Relaxed);
    app.reports_heard(2).await;
    assert_eq!(
        app.lift.status().state,
        "fault",
        "a fault the server found stays"
    );
    let (status, _) = app
        .post_json("/api/v1/admin/lifts/A/reset", Some(&token), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "person01 is not an administrator"
    );
    let admin_token = app.log_in_admin().await;
    let (status, body) = app
        .post_json("/api/v1/admin/lifts/A/reset", Some(&admin_token), json!({}))
        .await;
    assert_eq!(
        (status, body["cleared"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    app.lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(1))
        .await;
    app.audit_shows(AuditKind::Lift, |e| {
        e.outcome == AuditOutcome::FaultCleared && e.person.as_deref() == Some("person05")
    })
    .await;
    let token = admin_token;

    // a device that stops answering altogether: one retry, then a fault
    let mut app = app;
    app.device.take();
    let (status, _) = press(&app, &token, json!({"floor": 2})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let fault = app.lift_becomes(SOON, |s| s.state == "fault").await;
    assert!(
        fault
            .fault
            .as_deref()
            .is_some_and(|f| f.contains("did not answer")),
        "{fault:?}"
    );
}

/// A device message as the firmware would send it, signed with `secret` at `timestamp`.
pub struct Message {
    method: &'static str,
    path: String,
    body: Vec<u8>,
    device: String,
    timestamp: i64,
    nonce: String,
    signature: String,
}

impl Message {
    pub fn report(secret: &Secret, floor: i32, seq: u64, timestamp: i64) -> Self {
        let body = serde_json::to_vec(&json!({
            "device_id": DEVICE, "floor": floor, "state": "idle", "seq": seq
        }))
        .expect("json");
        Self::signed(secret, "POST", "/api/v1/device/status", body, timestamp)
    }

    /// A long poll for the next command, waiting up to `wait_secs`.
    pub fn poll(secret: &Secret, wait_secs: u64, timestamp: i64) -> Self {
        let path = format!("/api/v1/device/commands?wait={wait_secs}");
        Self::signed(secret, "GET", &path, Vec::new(), timestamp)
    }

    fn signed(
        secret: &Secret,
        method: &'static str,
        path: &str,
        body: Vec<u8>,
        timestamp: i64,
    ) -> Self {
        let signed = protocol::sign_request(secret, method, path, &body, timestamp);
        Self {
            method,
            path: path.to_string(),
            body,
            device: DEVICE.into(),
            timestamp,
            nonce: signed.nonce,
            signature: signed.signature,
        }
    }

    pub async fn send(&self, app: &TestApp) -> (StatusCode, Value) {
        self.send_to(&app.base).await
    }

    /// Sent to the server at `base`.
    pub async fn send_to(&self, base: &str) -> (StatusCode, Value) {
        let url = format!("{base}{}", self.path);
        let request = if self.method == "GET" {
            reqwest::Client::new().get(url)
        } else {
            reqwest::Client::new().post(url).body(self.body.clone())
        };
        let signed = protocol::Signed {
            timestamp: self.timestamp,
            nonce: self.nonce.clone(),
            signature: self.signature.clone(),
        };
        let response = request
            .header(DEVICE_HEADER, &self.device)
            .headers(signed.headers())
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn forged_stale_and_replayed_device_messages_are_refused_and_change_nothing() {
    let device_options = DeviceOptions::new(DeviceLink::Push);
    let secret = device_options.secret.clone();
    let app = spawn_app_with(AppOptions {
        device: Some(device_options),
        ..AppOptions::default()
    })
    .await;
    app.lift_ready().await;
    let device = app.device.as_ref().expect("device");
    // from here on only our hand-made messages speak for the device
    // (a report still on its way carries a lower seq than ours, and is ignored)
    device.faults.silent.store(true, Ordering::Relaxed);
    let seq = unix_now() as u64 * 1000 + 500_000;
    let now = unix_now();

    let first = Message::report(&secret, 1, seq, now);
    assert_eq!(first.send(&app).await.0, StatusCode::OK);
    let second = Message::report(&secret, 2, seq + 1, now);
    assert_eq!(second.send(&app).await.0, StatusCode::OK);
    app.lift_becomes(SOON, |s| s.floor == Some(2)).await;

    let refused = [
        ("replayed", first, "replayed"),
        (
            "forged",
            Message::report(&Secret::new("guessed"), 1, seq + 2, now),
            "bad_signature",
        ),
        (
            "stale",
            Message::report(&secret, 1, seq + 3, now - 120),
            "stale",
        ),
        (
            "from the future",
            Message::report(&secret, 1, seq + 4, now + 120),
            "stale",
        ),
        (
            "tampered",
            Message {
                body: br#"{"device_id":"lift-test","floor":1,"state":"idle","seq":1}"#.to_vec(),
                ..Message::report(&secret, 2, seq + 5, now)
            },
            "bad_signature",
        ),
        (
            "unknown device",
            Message {
                device: "intruder".into(),
                ..Message::report(&secret, 1, seq + 6, now)
            },
            "bad_signature",
        ),
        (
            "unsigned",
            Message {
                signature: String::new(),
                ..Message::report(&secret, 1, seq + 7, now)
            },
            "bad_signature",
        ),
        (
            "forged command poll",
            Message::signed(
                &Secret::new("guessed"),
                "GET",
                "/api/v1/device/commands?wait=0",
                Vec::new(),
                now,
            ),
            "bad_signature",
        ),
    ];
    for (what, message, code) in refused {
        let (status, body) = message.send(&app).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"], code, "{what}");
    }
    // signed, but not a report: a clear 422, and the empty body too
    for body in [b"not json".to_vec(), Vec::new()] {
        let message = Message::signed(&secret, "POST", "/api/v1/device/status", body, now);
        let (status, reply) = message.send(&app).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    }
    let status = app.lift.status();
    assert_eq!(
        (status.state, status.floor),
        (Condition::Idle, Some(2)),
        "nothing changed"
    );

    // and the device refuses a forged command the same way, without moving
    let url = device.push_url.clone().expect("push URL");
    let body = br#"{"request_id":"evil","floor":2}"#.to_vec();
    let forged = protocol::sign_request(&Secret::new("guessed"), "POST", "/lift/move", &body, now);
    let response = reqwest::Client::new()
        .post(format!("{url}/lift/move"))
        .headers(forged.headers())
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(device.commands_received.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_lift_that_stops_short_or_reports_late_is_judged_on_its_reports() {
    let app = app_with(Some(DeviceLink::Pull), |o| {
        o.settings.lift.move_timeout_ms = 5_000;
    })
    .await;
    let token = log_in(&app).await;
    app.lift_ready().await;
    let device = app.device.as_ref().expect("device");

    // late reports still arrive in order and finish the move
    device.faults.delay_reports_ms.store(300, Ordering::Relaxed);
    let (status, _) = press(&app, &token, json!({"floor": 2})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(2))
        .await;
    device.faults.delay_reports_ms.store(0, Ordering::Relaxed);

    // stopping one floor short is a fault, not an arrival
    device.faults.wrong_floor.store(true, Ordering::Relaxed);
    let (status, _) = press(&app, &token, json!({"floor": 1})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let fault = app.lift_becomes(SOON, |s| s.state == "fault").await;
    assert!(
        fault
            .fault
            .as_deref()
            .is_some_and(|f| f.contains("on its way to floor 1")),
        "{fault:?}"
    );
}

/// Ctrl-C with a panel open: the event stream never ends by itself, and used to hold the plain
/// HTTP server forever. Now requests get the grace period, then the server stops.
#[tokio::test]
async fn a_stop_does_not_wait_forever_for_an_open_event_stream() {
    let app = app_with(None, |options| options.settings.web.shutdown_grace_secs = 1).await;
    let _token = log_in(&app).await;
    let mut events = app
        .client
        .get(format!("{}/api/v1/lift/events", app.base))
        .send()
        .await
        .expect("the event stream");
    assert_eq!(events.status(), StatusCode::OK);
    let first = events.chunk().await.expect("an event").expect("a chunk");
    assert!(String::from_utf8_lossy(&first).contains("event: lift"));
    assert!(
        app.shut_down(SOON).await,
        "the server was still serving {SOON:?} after the stop, with a 1 s grace"
    );
}

/// A device message is a few hundred bytes; a body of 8 KiB is refused before anything reads
/// it, with the status that says so, and the lift is untouched.
#[tokio::test]
async fn an_oversized_device_message_is_refused_as_too_large() {
    let app = app_with(Some(DeviceLink::Push), |_| {}).await;
    let before = app.lift_ready().await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/device/status", app.base))
        .header(DEVICE_HEADER, DEVICE)
        .body(vec![b'{'; 8 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "too_large");
    assert_eq!(app.lift.status().floor, before.floor);
}

#[tokio::test]
async fn captured_device_messages_and_a_repeated_move_are_refused_after_a_restart() {
    let secret = Secret::generate();
    let store = Arc::new(Store::open_in_memory().expect("store"));
    let device = Device {
        name: DEVICE.into(),
        secret: secret.clone(),
        link: Link::Pull,
    };
    store.put_device(&device.to_row()).expect("register");
    // no simulator: only hand-made messages speak for the device
    let options = || AppOptions {
        store: Some(Arc::clone(&store)),
        device: None,
        ..AppOptions::default()
    };
    let app = spawn_app_with(options()).await;
    let (now, seq) = (unix_now(), unix_now() as u64 * 1000);
    let report = Message::report(&secret, 1, seq, now);
    let (status, body) = report.send(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let poll = Message::signed(
        &secret,
        "GET",
        "/api/v1/device/commands?wait=0",
        Vec::new(),
        now,
    );
    assert_eq!(poll.send(&app).await.0, StatusCode::NO_CONTENT);
    app.lift_becomes(SOON, |s| s.state == "idle" && s.floor == Some(1))
        .await;
    let token = log_in(&app).await;
    let request = json!({"floor": 2, "request_id": "morning-1"});
    let (status, body) = press(&app, &token, request.clone()).await;
    assert_eq!(
        (status, &body["duplicate"]),
        (StatusCode::ACCEPTED, &json!(false)),
        "{body}"
    );
    assert!(app.shut_down(SOON).await, "stopped");

    let restarted = spawn_app_with(options()).await;
    for (what, message) in [("the report", &report), ("the long poll", &poll)] {
        let (status, body) = message.send(&restarted).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("replayed")),
            "{what} replayed after the restart"
        );
    }
    // the device, freshly heard, is still at floor 1, and the move accepted before the stop
    // goes on from the store: its command still waits for the device
    let fresh = Message::report(&secret, 1, seq + 10, unix_now());
    assert_eq!(fresh.send(&restarted).await.0, StatusCode::OK);
    restarted
        .lift_becomes(SOON, |s| {
            s.state == "moving" && s.floor == Some(1) && s.target == Some(2)
        })
        .await;
    let token = log_in(&restarted).await;
    let (status, body) = press(&restarted, &token, request).await;
    assert_eq!(
        (status, &body["duplicate"]),
        (StatusCode::ACCEPTED, &json!(true)),
        "the same request id is the same move: {body}"
    );
    // and it does not move the lift again: one command, fetched once
    for expected in [StatusCode::OK, StatusCode::NO_CONTENT] {
        let poll = Message::signed(
            &secret,
            "GET",
            "/api/v1/device/commands?wait=0",
            Vec::new(),
            unix_now(),
        );
        let (status, body) = poll.send(&restarted).await;
        assert_eq!(status, expected, "{body}");
        if status == StatusCode::OK {
            assert_eq!(body["request_id"], "morning-1", "{body}");
        }
    }

    // a timestamp at the end of i64 is stale, however often it is sent
    for timestamp in [i64::MIN, i64::MAX] {
        let edge = Message::report(&secret, 2, seq + 20, timestamp);
        for _ in 0..2 {
            let (status, body) = edge.send(&restarted).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("stale")),
                "timestamp {timestamp}"
            );
        }
    }
}
