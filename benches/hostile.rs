//! `cargo bench --bench hostile`: what small, hostile images cost the server. A real
//! `facelift serve` runs as a child process (so that the bench's own buffers do not count);
//! each image is sent to it as a login frame over loopback, and the bench reports the answer,
//! the time to it and the server's peak resident memory while it was handled (VmHWM of the
//! child, reset before each image through its `/proc/PID/clear_refs`). Then a real login is
//! timed alone and again while four of the costliest images are in flight, as a ratio.
//! Needs `scripts/setup` first and `../shared/data`.

#[path = "../tests/common/hostile_images.rs"]
mod hostile_images;

#[path = "../tests/common/child_server.rs"]
mod child_server;

use std::time::Instant;

use child_server::ChildServer;
use reqwest::multipart::{Form, Part};

async fn post_frame(client: &reqwest::Client, base: &str, bytes: Vec<u8>) -> (u16, String) {
    let form = Form::new().part("frame", Part::bytes(bytes).file_name("frame"));
    match client
        .post(format!("{base}/api/v1/login"))
        .multipart(form)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body["error"].as_str().unwrap_or("-").to_string())
        }
        Err(error) => (0, error.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // one frame, judged by its liveness score: every upload reaches the engine
    let server = ChildServer::start(&[("FACELIFT_PAD", "passive")]).await?;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let real = std::fs::read("../shared/data/deepface-faces/img4.jpg")?;

    type Build = fn() -> Vec<u8>;
    let images: [(&str, Build); 12] = [
        ("CMYK JPEG claiming 6300x6300", || {
            hostile_images::cmyk_jpeg_claiming(6300)
        }),
        ("CMYK JPEG claiming 2160x2160", || {
            hostile_images::cmyk_jpeg_claiming(2160)
        }),
        ("progressive JPEG 4000x4000", || {
            hostile_images::progressive_jpeg(4000)
        }),
        ("progressive JPEG 2160x2160", || {
            hostile_images::progressive_jpeg(2160)
        }),
        ("JPEG 2000x2000, one scan x 20", || {
            hostile_images::jpeg_of_many_scans(20)
        }),
        ("JPEG 2000x2000, one scan x 70", || {
            hostile_images::jpeg_of_many_scans(70)
        }),
        ("WebP 6000x6000, one colour", || {
            hostile_images::flat_webp(6000)
        }),
        ("WebP 2160x2160, one colour", || {
            hostile_images::flat_webp(2160)
        }),
        ("16-bit PNG 6000x6000, one colour", || {
            hostile_images::flat_png16(6000)
        }),
        ("16-bit PNG 2160x2160, one colour", || {
            hostile_images::flat_png16(2160)
        }),
        ("16-bit PNG 3840x2160, one colour", || {
            hostile_images::flat_png16_sized(3840, 2160)
        }),
        ("a real photo (img4.jpg)", || {
            std::fs::read("../shared/data/deepface-faces/img4.jpg").unwrap_or_default()
        }),
    ];
    // warm up: the first run of each model allocates its buffers
    post_frame(&client, &base, real.clone()).await;
    server.reset_peak_rss();
    let idle = server.peak_rss_mb().unwrap_or(0.0);
    println!("server resident after a first login: {idle:.0} MB");
    println!("image                              bytes     answer             ms  peak RSS MB");
    let mut worst: (f64, f64) = (0.0, 0.0);
    for (name, build) in images {
        let bytes = build();
        let size = bytes.len();
        server.reset_peak_rss();
        let start = Instant::now();
        let (status, error) = post_frame(&client, &base, bytes).await;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let peak = server.peak_rss_mb().unwrap_or(0.0);
        if status != 200 {
            worst = (worst.0.max(ms), worst.1.max(peak));
        }
        println!("{name:34} {size:>8}  {status} {error:16} {ms:>7.1}  {peak:>6.0}");
    }
    println!(
        "hostile images: slowest answer {:.1} ms, highest peak RSS {:.0} MB",
        worst.0, worst.1
    );
    // a real login alone, then with four of the costliest in flight
    let mut alone = Vec::new();
    let mut crowded = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        post_frame(&client, &base, real.clone()).await;
        alone.push(start.elapsed().as_secs_f64());
        let attacks: Vec<_> = (0..4)
            .map(|_| {
                let (client, base) = (client.clone(), base.clone());
                let bytes = hostile_images::cmyk_jpeg_claiming(6300);
                tokio::spawn(async move { post_frame(&client, &base, bytes).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let start = Instant::now();
        post_frame(&client, &base, real.clone()).await;
        crowded.push(start.elapsed().as_secs_f64());
        for attack in attacks {
            let _ = attack.await;
        }
    }
    alone.sort_by(f64::total_cmp);
    crowded.sort_by(f64::total_cmp);
    let (alone, crowded) = (alone[2] * 1e3, crowded[2] * 1e3);
    println!(
        "real login, median of 5: alone {alone:.1} ms, with 4 hostile images in flight \
         {crowded:.1} ms (ratio {:.2})",
        crowded / alone
    );
    drop(server);
    Ok(())
}
