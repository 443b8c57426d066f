//! `cargo bench --bench login`: login latency through the real HTTP API (multipart upload of a
//! 1280x720 webcam frame to a server on loopback, session cookie and all), p50 and p99 over 100
//! logins, next to the face engine's own time for the same frame measured in the same run.
//! Needs `scripts/setup` first and `../shared/data`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use facelift::app::{App, Parts};
use facelift::face::Which;
use facelift::store::Store;

const LOGINS: usize = 100;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
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
    let frame = std::fs::read(shared.join("frames/webcam-720p-img4.jpg"))?;

    let mut settings = facelift::Settings::load(None)?;
    settings.gallery = gallery_dir.path().to_path_buf();
    let pool = Arc::new(facelift::open_engine_pool(&settings)?);
    let parts = Parts {
        pool: Some(Arc::clone(&pool)),
        store: Some(Arc::new(Store::open_in_memory()?)),
        ..Parts::default()
    };
    let app = App::build(settings, parts).await?;
    let threshold = pool.threshold();
    let probe_gallery = app.state.gallery()?.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(app.serve(listener, std::future::pending()));

    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let mut http = Vec::with_capacity(LOGINS);
    let mut engine = Vec::with_capacity(LOGINS);
    for round in 0..=LOGINS {
        // interleaved, so both see the same machine
        let bytes = frame.clone();
        let gallery = probe_gallery.clone();
        let start = Instant::now();
        let person = pool
            .run(move |engine| {
                let analysis = engine.analyze_bytes(&bytes, Which::Best)?;
                let face = analysis.best().ok_or(facelift::face::FaceError::NoFace)?;
                Ok::<_, facelift::face::FaceError>(
                    gallery.best_match(&face.embedding, threshold).person,
                )
            })
            .await??;
        let engine_ms = start.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            person.as_deref() == Some("person01"),
            "the engine did not recognise the frame"
        );

        let form = reqwest::multipart::Form::new().part(
            "frame",
            reqwest::multipart::Part::bytes(frame.clone()).file_name("frame.jpg"),
        );
        let start = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/login"))
            .multipart(form)
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let http_ms = start.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(status.is_success(), "login failed with {status}");
        if round > 0 {
            http.push(http_ms);
            engine.push(engine_ms);
        }
    }
    http.sort_by(f64::total_cmp);
    engine.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&http, 0.5), percentile(&http, 0.99));
    let engine_p50 = percentile(&engine, 0.5);
    println!("{LOGINS} logins through POST /api/v1/login (1280x720 JPEG, loopback):");
    println!("  HTTP login  p50 {p50:.1} ms   p99 {p99:.1} ms");
    println!(
        "  engine only p50 {engine_p50:.1} ms   p99 {:.1} ms",
        percentile(&engine, 0.99)
    );
    println!("  ratio HTTP / engine (p50): {:.2}", p50 / engine_p50);
    Ok(())
}
