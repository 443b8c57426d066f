//! `cargo bench --bench login`: login time through the real HTTP API on loopback (multipart
//! upload, session cookie and all), p50 and p99 over 100 logins of each kind, interleaved in
//! one run: the challenge login (ask for the challenge, send a burst of 10 frames doing it)
//! next to the single-frame login, and the face engine's own time for one frame.
//! Needs `scripts/setup` first and `../shared/data`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use facelift::access::pad::examine;
use facelift::access::pad_eval::{self, turn_order};
use facelift::app::{App, Parts};
use facelift::config::PadMode;
use facelift::face::pad::{Turn, yaw};
use facelift::store::Store;
use reqwest::multipart::{Form, Part};

const LOGINS: usize = 100;
/// frames in a burst, as the login page captures them
const BURST: usize = 10;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A server on loopback with `pad` as its presentation attack detection, on `pool`.
async fn serve(
    settings: &facelift::Settings,
    pad: PadMode,
    pool: &Arc<facelift::face::EnginePool>,
) -> anyhow::Result<(String, facelift::access::Access)> {
    let mut settings = settings.clone();
    settings.pad = pad;
    let parts = Parts {
        pool: Some(Arc::clone(pool)),
        store: Some(Arc::new(Store::open_in_memory()?)),
        ..Parts::default()
    };
    let app = App::build(settings, parts).await?;
    let access = app.state.access.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(app.serve(listener, std::future::pending()));
    Ok((base, access))
}

/// A photo as the login page sends a camera frame: at most 640 pixels a side, JPEG 90.
fn camera_frame(path: &Path) -> anyhow::Result<Vec<u8>> {
    let photo = image::open(path)?.to_rgb8();
    Ok(pad_eval::jpeg(&pad_eval::camera_frame(&photo), 90))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shared = Path::new("../shared/data");
    let gallery_dir = tempfile::tempdir()?;
    for (person, photos) in [
        ("person01", ["img1.jpg", "img2.jpg"]),
        ("person02", ["img26.jpg", "img27.jpg"]),
        ("person05", ["img13.jpg", "img14.jpg"]),
    ] {
        let folder = gallery_dir.path().join(person);
        std::fs::create_dir_all(&folder)?;
        for photo in photos {
            std::fs::copy(
                shared.join("deepface-faces").join(photo),
                folder.join(photo),
            )?;
        }
    }

    let mut settings = facelift::Settings::load(None)?;
    settings.gallery = gallery_dir.path().to_path_buf();
    // as the server opens it with PAD on: the passive liveness score too
    settings.engine.liveness = true;
    let pool = Arc::new(facelift::open_engine_pool(&settings)?);

    // person01 turning: their photos in order of yaw, as camera frames
    let mut views = Vec::new();
    for name in [
        "img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg", "img7.jpg",
    ] {
        let frame = camera_frame(&shared.join("deepface-faces").join(name))?;
        let bytes = frame.clone();
        let seen = pool.run(move |engine| examine(engine, &bytes)).await??;
        views.push((frame, yaw(&seen.landmarks).unwrap_or_default()));
    }
    views.sort_by(|a, b| a.1.total_cmp(&b.1));
    let single = views[views.len() / 2].0.clone();

    let (passive, _) = serve(&settings, PadMode::Passive, &pool).await?;
    let (challenge, challenge_access) = serve(&settings, PadMode::Challenge, &pool).await?;
    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let (mut engine, mut one, mut burst) = (Vec::new(), Vec::new(), Vec::new());
    let mut frames_sent = 0;
    for round in 0..=LOGINS {
        // interleaved, so all three see the same machine
        let bytes = single.clone();
        let start = Instant::now();
        pool.run(move |engine| examine(engine, &bytes)).await??;
        let engine_ms = start.elapsed().as_secs_f64() * 1e3;

        let form = Form::new().part("frame", Part::bytes(single.clone()).file_name("f.jpg"));
        let start = Instant::now();
        let response = client
            .post(format!("{passive}/api/v1/login"))
            .multipart(form)
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let one_ms = start.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            status.is_success(),
            "the single-frame login failed with {status}"
        );

        // each round is a new live moment: the last round's faces are not a replay
        challenge_access.forget_seen_faces();
        let start = Instant::now();
        let asked: serde_json::Value = client
            .post(format!("{challenge}/api/v1/login/challenge"))
            .send()
            .await?
            .json()
            .await?;
        let turns: Vec<Turn> = serde_json::from_value(asked["turns"].clone())?;
        let order = turn_order(&views, &turns, settings.engine.preprocess.mirror);
        // the page captures 10 frames: each view held for as long as it takes
        let frames: Vec<Vec<u8>> = (0..BURST)
            .map(|i| order[i * order.len() / BURST].clone())
            .collect();
        frames_sent = frames.len();
        let form = frames.into_iter().fold(
            Form::new().text(
                "nonce",
                asked["nonce"].as_str().unwrap_or_default().to_string(),
            ),
            |form, frame| form.part("frame", Part::bytes(frame).file_name("f.jpg")),
        );
        let response = client
            .post(format!("{challenge}/api/v1/login"))
            .multipart(form)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        let burst_ms = start.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            status.is_success(),
            "the challenge login failed with {status}: {body}"
        );
        if round > 0 {
            engine.push(engine_ms);
            one.push(one_ms);
            burst.push(burst_ms);
        }
    }
    for times in [&mut engine, &mut one, &mut burst] {
        times.sort_by(f64::total_cmp);
    }
    let line = |name: &str, times: &[f64]| {
        println!(
            "  {name:<44} p50 {:>7.1} ms   p99 {:>7.1} ms",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    };
    println!(
        "{LOGINS} logins of each kind on loopback, interleaved (person01, camera frames of at most 640 px):"
    );
    line("engine only, one frame (with liveness)", &engine);
    line("single-frame login, PAD passive", &one);
    line(
        &format!("challenge login, PAD challenge ({frames_sent} frames)"),
        &burst,
    );
    println!(
        "  ratio challenge / single-frame login (p50): {:.2}",
        percentile(&burst, 0.5) / percentile(&one, 0.5)
    );
    Ok(())
}
