//! `cargo bench --bench overload`: goodput under overload. A real `facelift serve` runs as a
//! child process; N clients (2, 16, 64) on loopback log in with a camera frame, over and over,
//! each retrying at once when refused with 503 (ignoring `Retry-After`, as an impatient or
//! hostile client would). Goodput is successful logins a second; the figure that matters is
//! its ratio at 16 and 64 clients to its value at 2 (the capacity), taken in one run. Each
//! client has its own loopback address (127.0.0.10 and up), as devices in a building do; the
//! last row puts 64 clients on one address, whose share of the waiting room is an eighth.
//! Needs `scripts/setup` first and `../shared/data`.

#[path = "../tests/common/child_server.rs"]
mod child_server;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use child_server::ChildServer;
use facelift::access::pad_eval;
use reqwest::multipart::{Form, Part};

const SECONDS: u64 = 20;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
    /// what the "other" answers were, for the summary
    other_kinds: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

async fn hammer(
    base: String,
    address: IpAddr,
    frame: Arc<Vec<u8>>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let Ok(client) = reqwest::Client::builder().local_address(address).build() else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let form = Form::new().part(
            "frame",
            Part::bytes(frame.as_ref().clone()).file_name("f.jpg"),
        );
        let sent = client
            .post(format!("{base}/api/v1/login"))
            .multipart(form)
            .send()
            .await;
        let counter = match sent {
            Ok(response) if response.status() == 200 => &counts.ok,
            Ok(response) if response.status() == 503 => &counts.busy,
            other => {
                let kind = match other {
                    Ok(response) => response.status().to_string(),
                    Err(error) if error.is_connect() => "connect error".to_string(),
                    Err(error) => format!("error: {error}"),
                };
                if let Ok(mut kinds) = counts.other_kinds.lock() {
                    *kinds.entry(kind).or_default() += 1;
                }
                &counts.other
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = ChildServer::start(&[("FACELIFT_PAD", "passive")]).await?;
    let photo = image::open("../shared/data/deepface-faces/img4.jpg")?.to_rgb8();
    let frame = Arc::new(pad_eval::jpeg(&pad_eval::camera_frame(&photo), 95));
    println!(
        "camera frame of {} KB; {SECONDS} s at each concurrency",
        frame.len() / 1024
    );
    println!("clients  addresses  logins/s   503/s  other/s  goodput vs 2 clients");
    let mut capacity = None;
    for (clients, addresses) in [(2usize, 2u8), (16, 16), (64, 64), (64, 1)] {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let address = Ipv4Addr::new(127, 0, 0, 10 + (i % usize::from(addresses)) as u8);
                tokio::spawn(hammer(
                    server.base.clone(),
                    IpAddr::V4(address),
                    Arc::clone(&frame),
                    Arc::clone(&counts),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        // the first two seconds warm up and are not counted
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = (
            counts.ok.load(Ordering::Relaxed),
            counts.busy.load(Ordering::Relaxed),
            counts.other.load(Ordering::Relaxed),
        );
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(SECONDS)).await;
        let seconds = start.elapsed().as_secs_f64();
        let rate = |now: u64, then: u64| (now - then) as f64 / seconds;
        let ok = rate(counts.ok.load(Ordering::Relaxed), before.0);
        let busy = rate(counts.busy.load(Ordering::Relaxed), before.1);
        let other = rate(counts.other.load(Ordering::Relaxed), before.2);
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = task.await;
        }
        let capacity = *capacity.get_or_insert(ok);
        println!(
            "{clients:>7}  {addresses:>9}  {ok:>8.1}  {busy:>6.1}  {other:>7.1}  {:>6.1}%",
            100.0 * ok / capacity
        );
        if let Ok(kinds) = counts.other_kinds.lock()
            && !kinds.is_empty()
        {
            println!("         the other answers (all, warm-up included): {kinds:?}");
        }
    }
    drop(server);
    Ok(())
}
