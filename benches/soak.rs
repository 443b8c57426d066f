//! `cargo bench --bench soak` (or `scripts/soak MINUTES`): a real `facelift serve` (a child
//! process) with a pull-mode lift controller (`facelift device-sim`, another child, reporting
//! every second), under mixed traffic from this process for `SOAK_MINUTES` (default 30):
//! logins with a camera frame, panel event streams opened and closed, lift moves, admin page
//! and API reads. Every 15 s it samples the server's RSS, open descriptors and audit rows;
//! at the end it prints the growth of RSS and descriptors after the first 5 minutes and the
//! audit rows the device's reports made. The samples go to `target/soak.csv`.
//! Needs `scripts/setup` first and `../shared/data`.

#[path = "../tests/common/child_server.rs"]
mod child_server;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use child_server::ChildServer;
use facelift::access::pad_eval;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const DEVICE: &str = "lift-soak";
const SAMPLE_EVERY: Duration = Duration::from_secs(15);
const WARM_UP: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct Counts {
    logins: AtomicU64,
    login_failures: AtomicU64,
    streams: AtomicU64,
    moves: AtomicU64,
    reads: AtomicU64,
    errors: AtomicU64,
}

/// A logged-in client: its cookie jar and CSRF token.
struct Resident {
    client: reqwest::Client,
    token: String,
}

async fn log_in(base: &str, frame: &[u8]) -> anyhow::Result<Resident> {
    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let form = Form::new().part("frame", Part::bytes(frame.to_vec()).file_name("f.jpg"));
    let answer = client
        .post(format!("{base}/api/v1/login"))
        .multipart(form)
        .send()
        .await?;
    anyhow::ensure!(answer.status() == 200, "login: {}", answer.status());
    let body: Value = answer.json().await?;
    let token = body["csrf_token"].as_str().unwrap_or_default().to_string();
    Ok(Resident { client, token })
}

async fn logins(base: String, frame: Arc<Vec<u8>>, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match log_in(&base, &frame).await {
            Ok(_) => counts.logins.fetch_add(1, Ordering::Relaxed),
            Err(_) => counts.login_failures.fetch_add(1, Ordering::Relaxed),
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn streams(
    base: String,
    resident: Arc<Resident>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let opened = resident
            .client
            .get(format!("{base}/api/v1/lift/events"))
            .send()
            .await;
        match opened {
            Ok(mut stream) if stream.status() == 200 => {
                let until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < until {
                    match tokio::time::timeout_at(until.into(), stream.chunk()).await {
                        Ok(Ok(Some(_))) => {}
                        _ => break,
                    }
                }
                counts.streams.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn moves(base: String, resident: Arc<Resident>, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let mut floor = 2;
    while !stop.load(Ordering::Relaxed) {
        let answer = resident
            .client
            .post(format!("{base}/api/v1/lift/move"))
            .header(facelift::web::CSRF_HEADER, &resident.token)
            .json(&serde_json::json!({ "floor": floor }))
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => {
                counts.moves.fetch_add(1, Ordering::Relaxed);
                floor = 3 - floor;
            }
            _ => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn admin_reads(
    base: String,
    resident: Arc<Resident>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let pages = [
        "/admin",
        "/api/v1/people",
        "/api/v1/lifts",
        "/metrics",
        "/lift",
    ];
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let path = pages[turn % pages.len()];
        turn += 1;
        let answer = resident.client.get(format!("{base}{path}")).send().await;
        match answer {
            Ok(answer) if answer.status() == 200 => {
                let _ = answer.bytes().await;
                counts.reads.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Audit rows by outcome, from the server's database (read-only, beside the running server).
fn audit_rows(server: &ChildServer) -> Vec<(String, i64)> {
    let path = server.data_dir().join("facelift.db");
    let Ok(db) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut statement) =
        db.prepare("SELECT outcome, COUNT(*) FROM audit GROUP BY outcome ORDER BY outcome")
    else {
        return Vec::new();
    };
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

fn register_device(dir: &std::path::Path) -> anyhow::Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_facelift"))
        .args(["device", "add", DEVICE, "--pull", "--json"])
        .env("FACELIFT_DATA_DIR", dir.join("data"))
        .env("FACELIFT_GALLERY", dir.join("gallery"))
        .output()?;
    anyhow::ensure!(output.status.success(), "device add failed");
    let registered: Value = serde_json::from_slice(&output.stdout)?;
    Ok(registered["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let dir = ChildServer::prepare()?;
    let secret = register_device(dir.path())?;
    let server = ChildServer::launch(
        dir,
        &[
            ("FACELIFT_PAD", "passive"),
            ("FACELIFT_WEB__ADMINS", "[person01]"),
        ],
        None,
    )
    .await?;
    let mut device = Command::new(env!("CARGO_BIN_EXE_facelift"))
        .args(["device-sim", "--name", DEVICE, "--mode", "pull"])
        .args(["--server", &server.base, "--heartbeat-secs", "1"])
        .args(["--travel-ms-per-floor", "500"])
        .env("FACELIFT_DEVICE_SECRET", &secret)
        .env("FACELIFT_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;

    let photo = image::open("../shared/data/deepface-faces/img4.jpg")?.to_rgb8();
    let frame = Arc::new(pad_eval::jpeg(&pad_eval::camera_frame(&photo), 95));
    let resident = Arc::new(log_in(&server.base, &frame).await?);
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let base = server.base.clone();
    let tasks = vec![
        tokio::spawn(logins(
            base.clone(),
            Arc::clone(&frame),
            Arc::clone(&counts),
            Arc::clone(&stop),
        )),
        tokio::spawn(streams(
            base.clone(),
            Arc::clone(&resident),
            Arc::clone(&counts),
            Arc::clone(&stop),
        )),
        tokio::spawn(streams(
            base.clone(),
            Arc::clone(&resident),
            Arc::clone(&counts),
            Arc::clone(&stop),
        )),
        tokio::spawn(moves(
            base.clone(),
            Arc::clone(&resident),
            Arc::clone(&counts),
            Arc::clone(&stop),
        )),
        tokio::spawn(admin_reads(
            base.clone(),
            Arc::clone(&resident),
            Arc::clone(&counts),
            Arc::clone(&stop),
        )),
    ];

    let csv_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../soak.csv");
    let mut csv = std::fs::File::create(&csv_path)?;
    writeln!(csv, "seconds,rss_mb,open_fds,audit_rows")?;
    println!(
        "{minutes} min of mixed traffic; a sample every {} s",
        SAMPLE_EVERY.as_secs()
    );
    println!("   min   RSS MB   fds  audit rows  logins  streams  moves  reads  errors");
    let start = Instant::now();
    let mut samples: Vec<(f64, f64, usize)> = Vec::new();
    while start.elapsed() < Duration::from_secs(minutes * 60) {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let seconds = start.elapsed().as_secs_f64();
        let rss = server.rss_mb().unwrap_or(0.0);
        let fds = server.open_fds().unwrap_or(0);
        let rows: i64 = audit_rows(&server).iter().map(|(_, n)| n).sum();
        writeln!(csv, "{seconds:.0},{rss:.1},{fds},{rows}")?;
        samples.push((seconds, rss, fds));
        if samples.len().is_multiple_of(4) {
            println!(
                "{:>6.1}  {rss:>7.1}  {fds:>4}  {rows:>10}  {:>6}  {:>7}  {:>5}  {:>5}  {:>6}",
                seconds / 60.0,
                counts.logins.load(Ordering::Relaxed),
                counts.streams.load(Ordering::Relaxed),
                counts.moves.load(Ordering::Relaxed),
                counts.reads.load(Ordering::Relaxed),
                counts.errors.load(Ordering::Relaxed)
                    + counts.login_failures.load(Ordering::Relaxed),
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let settled = samples
        .iter()
        .find(|(seconds, _, _)| *seconds >= WARM_UP.as_secs_f64())
        .or(samples.first())
        .copied();
    let last = samples.last().copied();
    if let (Some((t0, rss0, fds0)), Some((t1, rss1, fds1))) = (settled, last) {
        println!(
            "from {:.1} to {:.1} min: RSS {rss0:.1} -> {rss1:.1} MB ({:+.1}%), open fds {fds0} -> {fds1} ({:+.1}%)",
            t0 / 60.0,
            t1 / 60.0,
            100.0 * (rss1 - rss0) / rss0,
            100.0 * (fds1 as f64 - fds0 as f64) / fds0 as f64
        );
    }
    println!("audit rows by outcome: {:?}", audit_rows(&server));
    println!(
        "reports heard: about {} (one a second), samples in {}",
        start.elapsed().as_secs(),
        csv_path.display()
    );
    let _ = device.kill();
    let _ = device.wait();
    drop(server);
    Ok(())
}
