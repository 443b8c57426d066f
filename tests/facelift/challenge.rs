//! The live login over HTTP, as the page and any API client do it: ask for a challenge, send
//! a burst doing it with the nonce. PAD is on, as it is by default.

use facelift::access::pad::examine;
use facelift::access::pad_eval::{jpeg, turn_order};
use facelift::config::PadMode;
use facelift::face::attacks::{on_screen, picture_motion, warp};
use facelift::face::pad::{Turn, yaw};
use facelift::store::{AuditKind, AuditOutcome};
use image::Rgb;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{pool, read_photo};
use crate::http::{AppOptions, TestApp, spawn_app_with};

/// person01's photos whose face the enrolled ones (img1, img2) recognise well, with their yaw,
/// in order of yaw: views of one head turned differently.
pub fn person01_by_yaw() -> Vec<(String, f32)> {
    let examined = |name: &str| {
        let bytes = read_photo(name);
        pool()
            .run_blocking(move |engine| examine(engine, &bytes))
            .expect("engine")
            .expect("a face")
    };
    let enrolled = [examined("img1.jpg"), examined("img2.jpg")];
    let mut views: Vec<(String, f32)> = [
        "img1.jpg",
        "img2.jpg",
        "img4.jpg",
        "img5.jpg",
        "img6.jpg",
        "img7.jpg",
        "img10.jpg",
        "img11.jpg",
    ]
    .iter()
    .filter_map(|name| {
        let seen = examined(name);
        let best = enrolled
            .iter()
            .map(|e| facelift::face::cosine(&e.embedding, &seen.embedding))
            .fold(f32::MIN, f32::max);
        (best >= 0.6).then(|| (name.to_string(), yaw(&seen.landmarks).expect("yaw")))
    })
    .collect();
    views.sort_by(|a, b| a.1.total_cmp(&b.1));
    let span = views.last().expect("views").1 - views[0].1;
    assert!(span >= 0.3, "person01's photos turn: {views:?}");
    views
}

fn frames_form(nonce: &str, frames: Vec<Vec<u8>>) -> Form {
    frames.into_iter().enumerate().fold(
        Form::new().text("nonce", nonce.to_string()),
        |form, (i, frame)| form.part("frame", Part::bytes(frame).file_name(format!("f{i}.jpg"))),
    )
}

pub async fn ask_challenge(app: &TestApp, client: &reqwest::Client) -> Value {
    let response = client
        .post(format!("{}/api/v1/login/challenge", app.base))
        .send()
        .await
        .expect("challenge");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

pub async fn send_burst(
    app: &TestApp,
    client: &reqwest::Client,
    nonce: &str,
    frames: Vec<Vec<u8>>,
) -> (StatusCode, Value) {
    let response = client
        .post(format!("{}/api/v1/login", app.base))
        .multipart(frames_form(nonce, frames))
        .send()
        .await
        .expect("login");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// Sends `frames` again with a fresh challenge asking the same `turns` (asked for until one
/// does), as an attacker who recorded an accepted burst would.
async fn replay(
    app: &TestApp,
    client: &reqwest::Client,
    turns: &[Turn],
    frames: Vec<Vec<u8>>,
) -> (StatusCode, Value) {
    let fresh = loop {
        let again = ask_challenge(app, client).await;
        if turns_of(&again) == turns {
            break again;
        }
    };
    send_burst(app, client, fresh["nonce"].as_str().expect("nonce"), frames).await
}

pub fn turns_of(challenge: &Value) -> Vec<Turn> {
    serde_json::from_value(challenge["turns"].clone()).expect("turns")
}

pub fn cookie_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

async fn last_login(app: &TestApp) -> facelift::store::AuditEntry {
    app.store.recent_audit(AuditKind::Login, 1).expect("audit")[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_turn_logs_in_and_a_held_up_photo_a_replay_or_a_stolen_nonce_does_not() {
    let store = std::sync::Arc::new(facelift::store::Store::open_in_memory().expect("store"));
    let options = || {
        let mut options = AppOptions {
            store: Some(std::sync::Arc::clone(&store)),
            ..AppOptions::default()
        };
        options.settings.pad = PadMode::Challenge;
        options
    };
    let app = spawn_app_with(options()).await;
    let views = person01_by_yaw();
    let resident = cookie_client();

    // the reproduction: a photo of a screen, one frame; PAD wants a challenge
    let screen = on_screen(
        &image::load_from_memory(&read_photo("img4.jpg"))
            .expect("photo")
            .to_rgb8(),
    );
    let form = Form::new().part("frame", Part::bytes(jpeg(&screen, 60)).file_name("f.jpg"));
    let response = resident
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "challenge_required", "{body}");

    // a live turn (person01's own photos, in order of yaw, as the challenge asks)
    let challenge = ask_challenge(&app, &resident).await;
    let nonce = challenge["nonce"].as_str().expect("nonce").to_string();
    assert!(
        challenge["expires_in"]
            .as_i64()
            .is_some_and(|s| (1..=20).contains(&s))
    );
    assert!(
        challenge["instruction"]
            .as_str()
            .expect("words")
            .contains("Turn your head")
    );
    let order = turn_order(&views, &turns_of(&challenge), false);
    let live: Vec<Vec<u8>> = order.iter().map(|name| read_photo(name)).collect();
    let (status, body) = send_burst(&app, &resident, &nonce, live.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body} {order:?}");
    assert_eq!(body["person"], "person01");
    let entry = last_login(&app).await;
    assert_eq!(entry.outcome, AuditOutcome::Recognized);
    let detail = entry.detail.expect("signals");
    assert!(
        detail.starts_with("pad=challenge turns=") && detail.contains("planar_residual="),
        "{detail}"
    );

    // the same nonce again: gone
    let (status, body) = send_burst(&app, &resident, &nonce, live.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge_unknown"))
    );

    // the accepted burst again with a fresh nonce for the same turns: seen before
    let turns = turns_of(&challenge);
    let (status, body) = replay(&app, &resident, &turns, live.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("pad_refused")),
        "{body}"
    );
    assert!(
        last_login(&app)
            .await
            .detail
            .expect("signals")
            .contains("refused=replayed")
    );

    // and after a restart (the faces of accepted bursts are in the store)
    let restarted = spawn_app_with(options()).await;
    let (status, body) = replay(&restarted, &cookie_client(), &turns, live.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("pad_refused")),
        "replayed after a restart: {body}"
    );

    // a challenge issued to another browser's session is no good here
    let other = cookie_client();
    let theirs = ask_challenge(&app, &other).await;
    let (status, body) = send_burst(
        &app,
        &resident,
        theirs["nonce"].as_str().expect("nonce"),
        live,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge_other_client"))
    );

    // person01's photo held up and turned as a head would turn, a little more each frame
    let photo = image::load_from_memory(&read_photo("img4.jpg"))
        .expect("photo")
        .to_rgb8();
    let challenge = ask_challenge(&app, &resident).await;
    let sign = if turns_of(&challenge)[0] == Turn::Left {
        1.0
    } else {
        -1.0
    };
    let held_up: Vec<Vec<u8>> = (0..6)
        .map(|step| {
            let motion = picture_motion(
                photo.dimensions(),
                sign * 0.1 * step as f32,
                0.02,
                [3.0, -2.0],
            )
            .expect("motion");
            jpeg(&warp(&photo, &motion, Rgb([60, 60, 60])).expect("warp"), 85)
        })
        .collect();
    let (status, body) = send_burst(
        &app,
        &resident,
        challenge["nonce"].as_str().expect("nonce"),
        held_up,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("pad_refused")),
        "{body}"
    );
    let entry = last_login(&app).await;
    assert_eq!(entry.outcome, AuditOutcome::PadRefused);
    assert_eq!(
        entry.person.as_deref(),
        Some("person01"),
        "counted against the person shown"
    );

    // a burst of the wrong size is refused before any work
    let challenge = ask_challenge(&app, &resident).await;
    let (status, body) = send_burst(
        &app,
        &resident,
        challenge["nonce"].as_str().expect("nonce"),
        vec![read_photo("img4.jpg")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_burst"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_mode_takes_one_frame_and_logs_its_liveness() {
    let mut options = AppOptions::default();
    options.settings.pad = PadMode::Passive;
    let app = spawn_app_with(options).await;
    let (status, body, _) = app.login("img4.jpg").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let detail = last_login(&app).await.detail.expect("signals");
    assert!(
        detail.starts_with("pad=passive frames=1") && detail.contains("liveness_q25="),
        "{detail}"
    );

    // the reproduction, a photo of a screen, which the face alone let in: refused by
    // the liveness score alone here (0.000); another photo on the same screen passes it
    // (img2: 0.989), which is why passive is not the default
    let photo = image::load_from_memory(&read_photo("img4.jpg"))
        .expect("photo")
        .to_rgb8();
    let screen = jpeg(&on_screen(&photo), 60);
    let form = Form::new().part("frame", Part::bytes(screen).file_name("f.jpg"));
    let response = app
        .client
        .post(format!("{}/api/v1/login", app.base))
        .multipart(form)
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let detail = last_login(&app).await.detail.expect("signals");
    assert!(detail.ends_with("refused=not_live"), "{detail}");
}
