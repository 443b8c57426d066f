//! The real pages in a real headless Chromium whose fake camera shows a shared photo.
//! Needs Debian's chromium and `npm ci` in tests/e2e (scripts/setup and .ci/run do both).
//! Screenshots are kept in `test-artifacts/browser/{http,https}/`, emptied by each run.

use facelift::store::{AuditKind, AuditOutcome};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::challenge::person01_by_yaw;
use crate::helpers::{photo, repo_root};
use crate::http::{AppOptions, DeviceLink, DeviceOptions, spawn_app_with};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// A few frames of a still photo, letterboxed to 640x480, as Y4M: a photo held up to the
/// camera.
fn y4m_from_photo(name: &str, out: &Path) {
    write_y4m(&[letterboxed(name)], 10, out);
}

/// person01 turning their head to one side and back to the other, over and over: their own
/// photos whose head pose differs (see `challenge::person01_by_yaw`), five spread over the
/// span played in order of yaw and back, each held for a fifth of a second. The fake camera
/// loops the file, so whichever turns the challenge asks come within a burst.
fn y4m_turning(out: &Path) {
    let views = person01_by_yaw();
    let picked: Vec<&str> = (0..5)
        .map(|i| views[i * (views.len() - 1) / 4].0.as_str())
        .collect();
    let there_and_back = picked.iter().chain(picked.iter().rev().skip(1).take(3));
    let frames: Vec<image::RgbImage> = there_and_back
        .flat_map(|name| {
            let frame = letterboxed(name);
            [frame.clone(), frame]
        })
        .collect();
    write_y4m(&frames, 10, out);
}

/// A photo letterboxed into a 640x480 camera frame.
fn letterboxed(name: &str) -> image::RgbImage {
    let photo = image::open(photo(name)).expect("photo").into_rgb8();
    let scale = (WIDTH as f32 / photo.width() as f32).min(HEIGHT as f32 / photo.height() as f32);
    let (w, h) = (
        (photo.width() as f32 * scale) as u32,
        (photo.height() as f32 * scale) as u32,
    );
    let resized = image::imageops::resize(&photo, w, h, image::imageops::FilterType::Triangle);
    let mut frame = image::RgbImage::from_pixel(WIDTH, HEIGHT, image::Rgb([110, 110, 110]));
    image::imageops::overlay(
        &mut frame,
        &resized,
        i64::from((WIDTH - w) / 2),
        i64::from((HEIGHT - h) / 2),
    );
    frame
}

/// Frames as Y4M (4:2:0, full-range BT.601) at `fps`, the format Chromium's fake camera plays.
fn write_y4m(frames: &[image::RgbImage], fps: u32, out: &Path) {
    let mut y4m = format!("YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n").into_bytes();
    // a single still frame is repeated, so the file plays as a short clip
    let repeat = if frames.len() == 1 { 3 } else { 1 };
    for frame in frames.iter().cycle().take(frames.len() * repeat) {
        y4m.extend_from_slice(b"FRAME\n");
        y4m.extend_from_slice(&yuv420(frame));
    }
    std::fs::write(out, y4m).expect("write y4m");
}

fn yuv420(frame: &image::RgbImage) -> Vec<u8> {
    let rgb = |x: u32, y: u32| frame.get_pixel(x, y).0.map(f32::from);
    let mut planes = Vec::new();
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let [r, g, b] = rgb(x, y);
            planes.push(
                (0.299 * r + 0.587 * g + 0.114 * b)
                    .round()
                    .clamp(0.0, 255.0) as u8,
            );
        }
    }
    // Cb, then Cr, each averaged over 2x2 pixels
    for blue in [true, false] {
        for y in (0..HEIGHT).step_by(2) {
            for x in (0..WIDTH).step_by(2) {
                let mut sum = 0.0;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let [r, g, b] = rgb(x + dx, y + dy);
                    sum += if blue {
                        128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b
                    } else {
                        128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b
                    };
                }
                planes.push((sum / 4.0).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    planes
}

fn run_browser(base: &str, camera: &Path, shots: &Path, expected: &str) {
    let (camera, shots) = (
        camera.to_str().expect("utf-8"),
        shots.to_str().expect("utf-8"),
    );
    run_script("login.mjs", &[base, camera, shots, expected]);
}

/// An empty `test-artifacts/browser/<run>/`: a screenshot found there was taken by this run,
/// not left by an earlier one.
fn fresh_artifacts(run: &str) -> PathBuf {
    let shots = repo_root().join("test-artifacts/browser").join(run);
    match std::fs::remove_dir_all(&shots) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("clearing {}: {e}", shots.display()),
    }
    std::fs::create_dir_all(&shots).expect("artifacts folder");
    shots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_logs_in_through_chromium_and_drives_the_lift_live() {
    let shots = fresh_artifacts("http");
    let cameras = tempfile::tempdir().expect("tempdir");
    let (enrolled, photo_of_enrolled, stranger) = (
        cameras.path().join("person01-turning.y4m"),
        cameras.path().join("person01-photo.y4m"),
        cameras.path().join("stranger.y4m"),
    );
    y4m_turning(&enrolled);
    y4m_from_photo("img4.jpg", &photo_of_enrolled);
    y4m_from_photo("img38.jpg", &stranger);

    // the panel is driven only by the simulated controller's reports, over real HTTP
    let mut device = DeviceOptions::new(DeviceLink::Push);
    device.travel_ms_per_floor = 800;
    let mut options = AppOptions {
        device: Some(device),
        ..AppOptions::default()
    };
    // the challenge, as a server runs by default
    options.settings.pad = facelift::config::PadMode::Challenge;
    let app = spawn_app_with(options).await;
    app.lift_ready().await;
    let base = app.base.clone();

    let (b, e, s) = (base.clone(), enrolled.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "recognized"))
        .await
        .expect("browser run");
    let (b, e, s) = (base.clone(), photo_of_enrolled.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "pad_refused"))
        .await
        .expect("browser run");
    let (b, e, s) = (base.clone(), stranger.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "not_recognized"))
        .await
        .expect("browser run");

    let log = app.store.recent_audit(AuditKind::Login, 3).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::NotRecognized);
    assert_eq!(log[1].outcome, AuditOutcome::PadRefused, "the still photo");
    assert_eq!(log[1].person.as_deref(), Some("person01"));
    assert_eq!(log[2].outcome, AuditOutcome::Recognized, "the turning head");
    assert_eq!(log[2].person.as_deref(), Some("person01"));
    assert!(
        log[2]
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("pad=challenge")),
        "{:?}",
        log[2].detail
    );

    // the stranger keeps pressing "Log in" until the address must wait: a countdown
    let (b, e, s) = (base.clone(), stranger.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "wait"))
        .await
        .expect("browser run");
    let log = app.store.recent_audit(AuditKind::Login, 1).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::RateLimited);
    for shot in [
        "lift-panel.png",
        "lift-floor-2.png",
        "login-challenge.png",
        "login-photo-refused.png",
        "login-not-recognised.png",
        "login-countdown.png",
    ] {
        assert!(shots.join(shot).is_file(), "{shot} kept");
    }
}

/// The seed's main way in: a phone's browser on the same Wi-Fi, HTTPS straight to the server
/// with its self-signed certificate, so HTTP/2 (the script checks the protocol). Before the
/// origin check read HTTP/2's authority, this login was refused as cross-site every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_logs_in_over_direct_https_with_http2_and_drives_the_lift() {
    let shots = fresh_artifacts("https");
    let cameras = tempfile::tempdir().expect("tempdir");
    let enrolled = cameras.path().join("person01-turning.y4m");
    y4m_turning(&enrolled);

    let mut device = DeviceOptions::new(DeviceLink::Push);
    device.travel_ms_per_floor = 800;
    let mut options = AppOptions {
        device: Some(device),
        tls: true,
        ..AppOptions::default()
    };
    options.settings.pad = facelift::config::PadMode::Challenge;
    let app = spawn_app_with(options).await;
    app.lift_ready().await;
    assert!(app.base.starts_with("https://"), "{}", app.base);

    let (b, e, s) = (app.base.clone(), enrolled.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "recognized"))
        .await
        .expect("browser run");
    let log = app.store.recent_audit(AuditKind::Login, 1).expect("audit");
    assert_eq!(log[0].person.as_deref(), Some("person01"));
    assert!(shots.join("lift-floor-2.png").is_file(), "screenshot kept");
}

fn run_script(script: &str, args: &[&str]) {
    let output = Command::new("node")
        .arg(repo_root().join("tests/e2e").join(script))
        .args(args)
        .output()
        .expect("node runs (scripts/setup installs the e2e dependencies)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{script} failed:\n{report}");
    eprintln!("{report}");
}

/// The admin page on a 390 px phone: it fits (no sideways scrolling, 44 px targets, 16 px
/// text, times on one line, attempts in words), enrolment shows each kept shot and the people
/// list follows at once, the same shot twice counts once, and access and passes are edited in
/// place. The old page failed every one of these (512 px wide, a 21 px name field, raw codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_works_on_a_phone() {
    let shots = fresh_artifacts("admin");
    let cameras = tempfile::tempdir().expect("tempdir");
    let admin_camera = cameras.path().join("person05.y4m");
    y4m_from_photo("img14.jpg", &admin_camera);
    let app = spawn_app_with(AppOptions::default()).await;
    // a stranger tried first: the page must say so in words
    let (status, _, _) = app.login("img38.jpg").await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);

    let (base, camera, out) = (
        app.base.clone(),
        admin_camera.to_str().expect("utf-8").to_string(),
        shots.to_str().expect("utf-8").to_string(),
    );
    tokio::task::spawn_blocking(move || run_script("admin.mjs", &[&base, &camera, &out]))
        .await
        .expect("browser run");

    // what the page did is what the server holds
    let profile = app.store.profile("person01").expect("profile");
    assert_eq!(profile.floors, Some(vec![1, 2]));
    assert_eq!(profile.home_floor, Some(2));
    assert_eq!(profile.display_name.as_deref(), Some("Ada"));
    let kept = std::fs::read_dir(app.gallery.path().join("newcomer"))
        .expect("newcomer's folder")
        .count();
    assert_eq!(kept, 1, "the same shot twice is one file");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let passes = app.store.passes("newcomer", now).expect("passes");
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].floors, vec![2]);
    for shot in [
        "admin-phone.png",
        "admin-phone-attempts.png",
        "admin-phone-enrolled.png",
        "admin-phone-people.png",
        "admin-phone-full.png",
    ] {
        assert!(shots.join(shot).is_file(), "{shot} kept");
    }
}

/// The kiosk flow in Chromium: paired by its link, "Start", the camera simulator's signed
/// upload recognised, "Lift B to floor 7" on the page, back to the start on its own, and a
/// stranger told they were not recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_uses_the_lobby_kiosk_in_chromium() {
    let shots = fresh_artifacts("kiosk");
    let lobby = crate::kiosk::lobby().await;
    let (base, key, out) = (
        lobby.app.base.clone(),
        lobby.kiosk_key.expose().to_string(),
        shots.to_str().expect("utf-8").to_string(),
    );
    tokio::task::spawn_blocking(move || run_script("kiosk.mjs", &[&base, "lobby", &key, &out]))
        .await
        .expect("browser run");
    lobby
        .app
        .car_becomes("B", Duration::from_secs(20), |s| s.floor == Some(7))
        .await;
    let log = lobby
        .app
        .store
        .recent_audit(AuditKind::Login, 2)
        .expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::NotRecognized);
    assert_eq!(log[1].person.as_deref(), Some("person01"));
    assert_eq!(log[1].client, "camera:lobby-cam");
    for shot in [
        "kiosk-ready.png",
        "kiosk-booked.png",
        "kiosk-back.png",
        "kiosk-refused.png",
    ] {
        assert!(shots.join(shot).is_file(), "{shot} kept");
    }
}
