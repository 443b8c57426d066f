//! A lobby kiosk and its camera board: the kiosk asks, the simulated camera uploads a signed
//! photo over real HTTP, the login decision runs on it, and the result (a car booked to the
//! person's home floor) reaches the kiosk's event stream live.

use std::sync::Arc;
use std::time::Duration;

use facelift::camera_sim::{self, CameraConfig};
use facelift::config::{CarSettings, KioskSettings};
use facelift::lift::{Device, Link, Secret};
use facelift::store::{AuditKind, DeviceRole, Profile, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{photo, unix_now};
use crate::http::{AppOptions, DeviceLink, DeviceOptions, TestApp, spawn_app_with};

const READY: Duration = Duration::from_secs(10);

fn register(store: &Store, name: &str, role: DeviceRole) -> Secret {
    let secret = Secret::generate();
    let mut row = Device {
        name: name.into(),
        secret: secret.clone(),
        link: Link::Pull,
    }
    .to_row();
    row.role = role;
    store.put_device(&row).expect("register");
    secret
}

pub(crate) struct Lobby {
    pub(crate) app: TestApp,
    pub(crate) kiosk_key: Secret,
    camera_secret: Secret,
    _photos: tempfile::TempDir,
    camera: Option<camera_sim::CameraHandle>,
}

/// Floors G to 9, cars A (at 5) and B (at G), the lobby kiosk on G dispatching, its camera
/// showing person01 first, then a stranger; person01's home is floor 7.
pub(crate) async fn lobby() -> Lobby {
    lobby_with(facelift::config::PadMode::Off).await
}

async fn lobby_with(pad: facelift::config::PadMode) -> Lobby {
    let store = Arc::new(Store::open_in_memory().expect("store"));
    let kiosk_key = register(&store, "lobby", DeviceRole::Kiosk);
    let camera_secret = register(&store, "lobby-cam", DeviceRole::Camera);
    store
        .set_profile(
            "person01",
            &Profile {
                display_name: Some("Ada".into()),
                home_floor: Some(7),
                ..Profile::default()
            },
        )
        .expect("profile");
    let mut options = AppOptions {
        store: Some(store),
        ..AppOptions::default()
    };
    options.settings.pad = pad;
    options.settings.lift.lowest_floor = 0;
    options.settings.lift.highest_floor = 9;
    options.settings.lift.floor_names = vec!["G".into()];
    options.settings.lifts = ["A", "B"]
        .iter()
        .map(|name| CarSettings {
            name: name.to_string(),
            device: Some(format!("lift-{}", name.to_lowercase())),
            floors: None,
        })
        .collect();
    options.start_floors = vec![("A".into(), 5), ("B".into(), 0)];
    options.settings.kiosks = vec![KioskSettings {
        name: "lobby".into(),
        camera: "lobby-cam".into(),
        floor: 0,
        dispatch: true,
        return_after_secs: 8,
    }];
    let mut device = DeviceOptions::new(DeviceLink::Pull);
    device.travel_ms_per_floor = 60;
    options.device = Some(device);
    let app = spawn_app_with(options).await;
    app.car_becomes("A", READY, |s| s.floor == Some(5)).await;
    app.car_becomes("B", READY, |s| s.floor == Some(0)).await;

    let photos = tempfile::tempdir().expect("tempdir");
    std::fs::copy(photo("img4.jpg"), photos.path().join("1-person01.jpg")).expect("copy");
    std::fs::copy(photo("img38.jpg"), photos.path().join("2-stranger.jpg")).expect("copy");
    let camera = camera_sim::start(CameraConfig {
        name: "lobby-cam".into(),
        secret: camera_secret.clone(),
        server: app.base.clone(),
        photos: camera_sim::photos_in(photos.path()).expect("photos"),
        poll_wait_secs: 5,
        server_certificate: None,
    })
    .expect("camera");
    Lobby {
        app,
        kiosk_key,
        camera_secret,
        _photos: photos,
        camera: Some(camera),
    }
}

impl Lobby {
    fn kiosk_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.app.base))
            .header(
                reqwest::header::COOKIE,
                format!("facelift_kiosk_lobby={}", self.kiosk_key.expose()),
            )
    }

    /// The kiosk's event stream, as its page reads it: each event's JSON on a channel.
    async fn events(&self) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let response = self
            .kiosk_request(reqwest::Method::GET, "/api/v1/kiosks/lobby/events")
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), StatusCode::OK);
        let (send, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut response = response;
            let mut text = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let event: String = text.drain(..end + 2).collect();
                    if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                        && let Ok(value) = serde_json::from_str(data)
                        && send.send(value).is_err()
                    {
                        return;
                    }
                }
            }
        });
        heard
    }

    async fn start(&self) -> Value {
        let response = self
            .kiosk_request(reqwest::Method::POST, "/api/v1/kiosks/lobby/attempts")
            .send()
            .await
            .expect("start");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json().await.expect("json")
    }
}

/// The next event of `stage`, skipping others (at most 20 s).
async fn next_stage(heard: &mut tokio::sync::mpsc::UnboundedReceiver<Value>, stage: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = heard.recv().await.expect("the stream goes on");
            if event["stage"] == stage || event["stage"] == "refused" && stage != "refused" {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {stage} event"))
}

#[tokio::test]
async fn a_resident_at_the_kiosk_is_recognised_from_the_camera_and_sent_home_in_the_nearest_car() {
    let mut lobby = lobby().await;
    let mut heard = lobby.events().await;

    let started = lobby.start().await;
    assert_eq!(started["stage"], "capturing", "{started}");
    next_stage(&mut heard, "checking").await;
    let booked = next_stage(&mut heard, "booked").await;
    assert_eq!(booked["stage"], "booked", "{booked}");
    assert_eq!(
        (
            booked["name"].clone(),
            booked["lift"].clone(),
            booked["floor_name"].clone()
        ),
        (json!("Ada"), json!("B"), json!("7")),
        "B waits at the lobby, A is five floors up: {booked}"
    );
    lobby
        .app
        .car_becomes("B", READY, |s| s.state == "idle" && s.floor == Some(7))
        .await;
    let entry = lobby
        .app
        .audit_shows(AuditKind::Login, |e| e.outcome.as_str() == "recognized")
        .await;
    assert_eq!(entry.client, "camera:lobby-cam", "the sensor is named");
    assert_eq!(entry.person.as_deref(), Some("person01"));
    let camera = lobby.camera.as_ref().expect("camera");
    assert_eq!(
        camera
            .last_result
            .lock()
            .expect("result")
            .as_ref()
            .map(|r| r["stage"].clone()),
        Some(json!("booked")),
        "the camera hears the result too"
    );

    // the next person is a stranger: refused, and nobody may book a ride on their attempt
    let started = lobby.start().await;
    let next = tokio::time::timeout(Duration::from_secs(20), heard.recv())
        .await
        .expect("an event")
        .expect("the stream goes on");
    assert_eq!(
        next["stage"], "capturing",
        "the booking is told once, then the next attempt: {next}"
    );
    let refused = next_stage(&mut heard, "refused").await;
    assert_eq!(refused["code"], "not_recognized", "{refused}");
    let response = lobby
        .kiosk_request(reqwest::Method::POST, "/api/v1/kiosks/lobby/rides")
        .json(&json!({"attempt_id": started["attempt_id"], "floor": 3}))
        .send()
        .await
        .expect("ride");
    assert_eq!(response.status(), StatusCode::CONFLICT);

    // an answered attempt cannot be answered again, even by the real camera
    lobby.camera = None;
    let upload = format!(
        "/api/v1/device/frames?attempt={}",
        started["attempt_id"].as_str().expect("id")
    );
    let jpeg = std::fs::read(photo("img4.jpg")).expect("photo");
    let signature = facelift::lift::protocol::sign_request(
        &lobby.camera_secret,
        "POST",
        &upload,
        &jpeg,
        unix_now(),
    );
    let response = reqwest::Client::new()
        .post(format!("{}{upload}", lobby.app.base))
        .header(facelift::lift::protocol::DEVICE_HEADER, "lobby-cam")
        .headers(signature.headers())
        .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
        .body(jpeg.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    // a forged upload (the wrong key) is refused before anything else
    let forged = facelift::lift::protocol::sign_request(
        &Secret::generate(),
        "POST",
        &upload,
        &jpeg,
        unix_now(),
    );
    let response = reqwest::Client::new()
        .post(format!("{}{upload}", lobby.app.base))
        .header(facelift::lift::protocol::DEVICE_HEADER, "lobby-cam")
        .headers(forged.headers())
        .body(jpeg)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_kiosk_that_is_not_paired_gets_nothing() {
    let lobby = lobby().await;
    let base = &lobby.app.base;
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/kiosks/lobby/attempts"),
        (reqwest::Method::GET, "/api/v1/kiosks/lobby/events"),
    ] {
        let response = reqwest::Client::new()
            .request(method.clone(), format!("{base}{path}"))
            .header(reqwest::header::COOKIE, "facelift_kiosk_lobby=guessed")
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "kiosk_not_paired");
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/kiosks/nowhere/attempts"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // pairing: the link's key becomes an HTTP-only cookie, and leaves the address bar
    let tablet = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = |path: String| tablet.get(format!("{base}{path}")).send();
    let unpaired = page("/kiosk/lobby".into()).await.expect("page");
    assert_eq!(unpaired.status(), StatusCode::UNAUTHORIZED);
    let wrong = page("/kiosk/lobby?key=guessed".into()).await.expect("page");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let paired = page(format!("/kiosk/lobby?key={}", lobby.kiosk_key.expose()))
        .await
        .expect("page");
    assert_eq!(paired.status(), StatusCode::SEE_OTHER);
    assert_eq!(paired.headers()["location"], "/kiosk/lobby");
    let cookie = paired.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let key_cookie = cookie.split(';').next().expect("cookie").to_string();
    let shown = tablet
        .get(format!("{base}/kiosk/lobby"))
        .header(reqwest::header::COOKIE, key_cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(shown.status(), StatusCode::OK);
    let html = shown.text().await.expect("html");
    assert!(
        html.contains("Look at the camera") && html.contains("kiosk.js"),
        "{html}"
    );
}

/// "Start" pressed twice while the camera has not answered is one attempt, and the second
/// answer still says which way to turn (it said nothing before).
#[tokio::test]
async fn start_pressed_twice_is_one_attempt_with_its_turns() {
    let mut lobby = lobby_with(facelift::config::PadMode::Challenge).await;
    lobby.camera = None; // the camera is slow today
    let first = lobby.start().await;
    let second = lobby.start().await;
    assert_eq!(first["attempt_id"], second["attempt_id"]);
    assert!(
        first["turns"].as_array().is_some_and(|t| !t.is_empty()),
        "a live login asks for turns: {first}"
    );
    assert_eq!(first["turns"], second["turns"]);
}

/// A kiosk program (not the paired page) gets a token with the kiosk's key: it reads the
/// lifts and starts logins, but is nobody, so it cannot act as a person.
#[tokio::test]
async fn a_kiosk_program_gets_a_token_with_its_key_and_is_no_person() {
    let lobby = lobby().await;
    let base = &lobby.app.base;
    let ask = |secret: String, scope: Option<&'static str>| {
        let mut body = json!({
            "grant_type": "client_credentials",
            "client_id": "kiosk:lobby",
            "client_secret": secret,
        });
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        reqwest::Client::new()
            .post(format!("{base}/api/v1/tokens"))
            .json(&body)
            .send()
    };
    let wrong = ask("guessed".into(), None).await.expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let admin = ask(lobby.kiosk_key.expose().to_string(), Some("admin"))
        .await
        .expect("request");
    assert_eq!(admin.status(), StatusCode::FORBIDDEN);
    let issued = ask(lobby.kiosk_key.expose().to_string(), None)
        .await
        .expect("request");
    assert_eq!(issued.status(), StatusCode::CREATED);
    let issued: Value = issued.json().await.expect("json");
    assert_eq!(issued["scope"], "lift:read lift:move");
    let token = issued["access_token"].as_str().expect("token").to_string();
    let call = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
    };
    let lifts = call(reqwest::Method::GET, "/api/v1/lifts")
        .await
        .expect("lifts");
    assert_eq!(lifts.status(), StatusCode::OK);
    let lifts: Value = lifts.json().await.expect("json");
    assert_eq!(lifts["lifts"].as_array().map(Vec::len), Some(2));
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/me"),
        (reqwest::Method::POST, "/api/v1/lift/move"),
    ] {
        let response = call(method.clone(), path).await.expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "not_a_person");
    }
    let started = call(reqwest::Method::POST, "/api/v1/kiosks/lobby/attempts")
        .await
        .expect("attempt");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let started: Value = started.json().await.expect("json");
    assert_eq!(started["stage"], "capturing");
}
