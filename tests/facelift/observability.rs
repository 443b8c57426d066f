//! What an operator sees: Prometheus metrics and request ids, from a real `facelift serve`
//! process (its own counters, not shared with the other tests' apps).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::helpers::{make_gallery, read_photo, repo_root};
use crate::http::{AppOptions, spawn_app_with};

/// A `facelift serve` child process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves person01's gallery on a free port; answers once `/healthz` does.
async fn serve() -> Server {
    let gallery = make_gallery(&[("person01", &["img1.jpg", "img2.jpg"])]);
    let data = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_facelift"))
        .current_dir(repo_root())
        .args([
            "--threads",
            "1",
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--gallery")
        .arg(gallery.path())
        .arg("--data-dir")
        .arg(data.path())
        .env("FACELIFT_LOG", "warn")
        // single frames, checked by the passive liveness score: the setting from the environment
        .env("FACELIFT_PAD", "passive")
        .stderr(Stdio::null())
        .spawn()
        .expect("facelift serve");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dirs: (gallery, data),
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(response) = reqwest::get(format!("{}/healthz", server.base)).await
            && response.status().is_success()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("facelift serve did not answer /healthz within 60 s");
}

/// The value of the sample `name` (with its labels, as rendered) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn metrics_count_logins_by_outcome_stage_times_the_lift_and_live_sessions() {
    let server = serve().await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let login = |photo: &str| {
        let form = Form::new().part("frame", Part::bytes(read_photo(photo)).file_name("f.jpg"));
        client
            .post(format!("{}/api/v1/login", server.base))
            .multipart(form)
            .send()
    };
    let scrape = || async {
        let response = client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("text")
    };

    let before = scrape().await;
    assert_eq!(
        sample(
            &before,
            "facelift_login_attempts_total{outcome=\"recognized\"}"
        ),
        None,
        "no login yet"
    );
    assert_eq!(sample(&before, "facelift_sessions_alive"), Some(0.0));
    assert_eq!(
        sample(&before, "facelift_lift_state{lift=\"A\",state=\"offline\"}"),
        Some(1.0),
        "no device registered: the lift is offline\n{before}"
    );

    let recognised = login("img4.jpg").await.expect("login");
    assert_eq!(recognised.status(), StatusCode::OK);
    let id = recognised
        .headers()
        .get("x-request-id")
        .expect("a request id");
    assert!(!id.is_empty());
    let stranger = login("img38.jpg").await.expect("login");
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);

    let after = scrape().await;
    for (outcome, count) in [("recognized", 1.0), ("not_recognized", 1.0)] {
        let name = format!("facelift_login_attempts_total{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&after, &name), Some(count), "{name}\n{after}");
    }
    assert_eq!(
        sample(&after, "facelift_sessions_alive"),
        Some(1.0),
        "{after}"
    );
    for stage in ["decode", "find", "embed"] {
        let name = format!("facelift_engine_stage_seconds_count{{stage=\"{stage}\"}}");
        assert_eq!(sample(&after, &name), Some(2.0), "{name}\n{after}");
    }
    assert_eq!(
        sample(&after, "facelift_engine_queue_depth"),
        Some(0.0),
        "{after}"
    );
}

#[tokio::test]
async fn metrics_are_refused_to_addresses_outside_metrics_from() {
    let mut options = AppOptions::default();
    options.settings.web.metrics_from = vec!["10.0.0.0/8".parse().expect("net")];
    let app = spawn_app_with(options).await;
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
