//! A simulated camera board (the ESP32-CAM of a kiosk), speaking the protocol as the camera
//! firmware does: it long-polls for a capture request, checks the signed answer, "captures"
//! the next photo of its folder (as many frames as asked: a burst repeats it, as a photo held
//! to a real camera would), and uploads it signed. A device, so outside `kiosk`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::device_sim::sign_as;
use crate::kiosk::{CaptureRequest, join_burst};
use crate::lift::protocol::{self, Presented, Secret, Verifier};

pub struct CameraConfig {
    pub name: String,
    pub secret: Secret,
    /// The facelift server's base URL.
    pub server: String,
    /// The photos it shows the camera, in turn.
    pub photos: Vec<PathBuf>,
    pub poll_wait_secs: u64,
    pub server_certificate: Option<Vec<u8>>,
}

/// The running camera; dropping it stops it.
pub struct CameraHandle {
    /// Uploads made.
    pub uploads: Arc<AtomicU64>,
    /// The server's answer to the last upload (the result as the kiosk shows it).
    pub last_result: Arc<Mutex<Option<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CameraHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JPEG files of a folder, by name.
pub fn photos_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    photos.sort();
    Ok(photos)
}

pub fn start(config: CameraConfig) -> Result<CameraHandle, std::io::Error> {
    if config.photos.is_empty() {
        return Err(std::io::Error::other("the camera has no photos to show"));
    }
    let mut http =
        reqwest::Client::builder().timeout(Duration::from_secs(config.poll_wait_secs + 10));
    if let Some(pem) = &config.server_certificate {
        let certificate = reqwest::Certificate::from_pem(pem).map_err(std::io::Error::other)?;
        http = http.add_root_certificate(certificate);
    }
    let http = http.build().map_err(std::io::Error::other)?;
    let uploads = Arc::new(AtomicU64::new(0));
    let last_result = Arc::new(Mutex::new(None));
    let task = tokio::spawn(run(
        config,
        http,
        Arc::clone(&uploads),
        Arc::clone(&last_result),
    ));
    Ok(CameraHandle {
        uploads,
        last_result,
        task,
    })
}

async fn run(
    config: CameraConfig,
    http: reqwest::Client,
    uploads: Arc<AtomicU64>,
    last_result: Arc<Mutex<Option<serde_json::Value>>>,
) {
    let verifier = Verifier::new(30);
    let path = format!("/api/v1/device/capture?wait={}", config.poll_wait_secs);
    let mut next_photo = 0;
    loop {
        let (request, nonce) = sign_as(
            http.get(format!("{}{path}", config.server)),
            &config.name,
            &config.secret,
            "GET",
            &path,
            b"",
        );
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "capture poll failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        if status == 204 {
            continue;
        }
        let answer = protocol::Answer {
            status,
            path: &path,
            body: &body,
        };
        let presented = Presented::from_headers(&headers);
        let trusted = verifier.verify_response(
            &config.secret,
            &answer,
            &nonce,
            &presented,
            SystemClock.now(),
        );
        let capture = match (
            status,
            trusted,
            serde_json::from_slice::<CaptureRequest>(&body),
        ) {
            (200, Ok(()), Ok(capture)) => capture,
            (status, trusted, _) => {
                tracing::warn!(status, ?trusted, "capture poll answer ignored");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let photo = &config.photos[next_photo % config.photos.len()];
        next_photo += 1;
        let Ok(jpeg) = std::fs::read(photo) else {
            tracing::warn!(photo = %photo.display(), "cannot read the photo");
            continue;
        };
        let (body, content_type) = if capture.frames > 1 {
            let frames = vec![jpeg; capture.frames];
            (join_burst(&frames), "application/x-facelift-burst")
        } else {
            (jpeg, "image/jpeg")
        };
        let upload = format!("/api/v1/device/frames?attempt={}", capture.attempt_id);
        let (request, _) = sign_as(
            http.post(format!("{}{upload}", config.server)),
            &config.name,
            &config.secret,
            "POST",
            &upload,
            &body,
        );
        let result = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await;
        uploads.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(response) => {
                let result = response.json::<serde_json::Value>().await.ok();
                tracing::info!(photo = %photo.display(), ?result, "uploaded");
                *last_result
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = result;
            }
            Err(error) => tracing::warn!(%error, "upload failed"),
        }
    }
}
