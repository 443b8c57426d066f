//! The real pages in a real headless Chromium whose fake camera shows a shared photo.
//! Needs Debian's chromium and `npm ci` in tests/e2e (scripts/setup and .ci/run do both).
//! Screenshots are kept in `test-artifacts/browser/{http,https}/`, emptied by each run.

use facelift::store::{AuditKind, AuditOutcome};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{photo, repo_root};
use crate::http::{AppOptions, DeviceLink, DeviceOptions, spawn_app_with};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// A few frames of a still photo, letterboxed to 640x480, as Y4M (4:2:0, full-range BT.601),
/// the format Chromium's fake camera plays.
fn y4m_from_photo(name: &str, out: &Path) {
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
    let mut y4m = format!("YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..3 {
        y4m.extend_from_slice(b"FRAME\n");
        y4m.extend_from_slice(&planes);
    }
    std::fs::write(out, y4m).expect("write y4m");
}

fn run_browser(base: &str, camera: &Path, shots: &Path, expected: &str) {
    let output = Command::new("node")
        .arg(repo_root().join("tests/e2e/login.mjs"))
        .args([
            base,
            camera.to_str().expect("utf-8"),
            shots.to_str().expect("utf-8"),
            expected,
        ])
        .output()
        .expect("node runs (scripts/setup installs the e2e dependencies)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the browser run ({expected}) failed:\n{report}"
    );
    eprintln!("{report}");
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
    let (enrolled, stranger) = (
        cameras.path().join("person01.y4m"),
        cameras.path().join("stranger.y4m"),
    );
    y4m_from_photo("img4.jpg", &enrolled);
    y4m_from_photo("img38.jpg", &stranger);

    // the panel is driven only by the simulated controller's reports, over real HTTP
    let mut device = DeviceOptions::new(DeviceLink::Push);
    device.travel_ms_per_floor = 800;
    let options = AppOptions {
        device: Some(device),
        ..AppOptions::default()
    };
    let app = spawn_app_with(options).await;
    app.lift_ready().await;
    let base = app.base.clone();

    let (b, e, s) = (base.clone(), enrolled.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "recognized"))
        .await
        .expect("browser run");
    let (b, e, s) = (base.clone(), stranger.clone(), shots.clone());
    tokio::task::spawn_blocking(move || run_browser(&b, &e, &s, "not_recognized"))
        .await
        .expect("browser run");

    let log = app.store.recent_audit(AuditKind::Login, 2).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::NotRecognized);
    assert_eq!(log[1].person.as_deref(), Some("person01"));

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
    let enrolled = cameras.path().join("person01.y4m");
    y4m_from_photo("img4.jpg", &enrolled);

    let mut device = DeviceOptions::new(DeviceLink::Push);
    device.travel_ms_per_floor = 800;
    let app = spawn_app_with(AppOptions {
        device: Some(device),
        tls: true,
        ..AppOptions::default()
    })
    .await;
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
