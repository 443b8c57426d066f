//! `cargo bench --bench lift`: the command-to-report round trip over loopback. For each link
//! (push and pull over HTTP, serial over a pseudo-terminal pair), 200 moves between floors 1
//! and 2 on a simulated controller with zero travel time: the time from the server accepting
//! the move to the lift showing `idle` at the target, which only the device's arrival report
//! can do: command out, signed and checked, device reports back, signed and checked.
//! Needs `scripts/setup` first (the server loads the face models).

use std::sync::Arc;
use std::time::{Duration, Instant};

use facelift::app::{App, Parts};
use facelift::device_sim::{self as sim, SimConfig, SimLink};
use facelift::lift::serial::PseudoTerminal;
use facelift::lift::{Device, LiftStatus, Link, Secret};
use facelift::store::Store;

const MOVES: usize = 200;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn wait_for(
    changes: &mut tokio::sync::watch::Receiver<LiftStatus>,
    wanted: impl Fn(&LiftStatus) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if wanted(&changes.borrow_and_update()) {
                return Ok(());
            }
            changes.changed().await?;
        }
    })
    .await?
}

async fn measure(
    name: &str,
    pool: &Arc<facelift::face::EnginePool>,
) -> anyhow::Result<serde_json::Value> {
    let mut settings = facelift::Settings::load(None)?;
    settings.lift.offline_after_ms = 60_000;
    let no_one = tempfile::tempdir()?;
    settings.gallery = no_one.path().to_path_buf();
    let store = Arc::new(Store::open_in_memory()?);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let secret = Secret::generate();
    let mut serial_line = None;
    let (sim_link, server_link) = match name {
        "push" => (
            SimLink::Push {
                listen: "127.0.0.1:0".parse()?,
            },
            None,
        ),
        "pull" => (SimLink::Pull, Some(Link::Pull)),
        _ => {
            let mut line = PseudoTerminal::open()?;
            let port = line
                .take_device_end()
                .ok_or_else(|| anyhow::anyhow!("no device end"))?;
            let path = line.path.clone();
            serial_line = Some(line);
            (SimLink::Serial(port), Some(Link::Serial { path }))
        }
    };
    let device = sim::start(SimConfig {
        device_id: "bench".into(),
        secret: secret.clone(),
        server: base.clone(),
        link: sim_link,
        lowest: 1,
        highest: 2,
        start_floor: 1,
        travel_per_floor: Duration::ZERO,
        heartbeat: Duration::from_secs(5),
        poll_wait_secs: 25,
        server_certificate: None,
    })
    .await?;
    let link = server_link.unwrap_or_else(|| Link::Push {
        url: device.push_url.clone().unwrap_or_default(),
    });
    store.put_device(
        &Device {
            name: "bench".into(),
            secret,
            link,
        }
        .to_row(),
    )?;
    let parts = Parts {
        pool: Some(Arc::clone(pool)),
        store: Some(store),
        ..Parts::default()
    };
    let app = App::build(settings, parts).await?;
    let lift = app.state.lifts.cars()[0].clone();
    tokio::spawn(app.serve(listener, std::future::pending()));
    let mut changes = lift.subscribe();
    wait_for(&mut changes, |s| s.state == "idle").await?;

    let mut arrival = Vec::with_capacity(MOVES);
    for round in 0..MOVES {
        let floor = if round % 2 == 0 { 2 } else { 1 };
        let start = Instant::now();
        lift.request_move(floor, None, "bench")?;
        wait_for(&mut changes, |s| {
            s.state == "idle" && s.floor == Some(floor)
        })
        .await?;
        arrival.push(start.elapsed().as_secs_f64() * 1e3);
    }
    drop(device);
    drop(serial_line);
    arrival.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "link": name,
        "moves": MOVES,
        "round_trip_ms": {
            "p50": percentile(&arrival, 0.5),
            "p99": percentile(&arrival, 0.99),
            "min": arrival[0],
            "max": arrival[arrival.len() - 1],
        },
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = facelift::Settings::load(None)?;
    let pool = Arc::new(facelift::open_engine_pool(&settings)?);
    let mut results = Vec::new();
    for link in ["push", "pull", "serial"] {
        let result = measure(link, &pool).await?;
        let rtt = &result["round_trip_ms"];
        println!(
            "{link:>6}: command to arrival report over loopback, {MOVES} moves: p50 {:.2} ms, p99 {:.2} ms (min {:.2}, max {:.2})",
            rtt["p50"].as_f64().unwrap_or(f64::NAN),
            rtt["p99"].as_f64().unwrap_or(f64::NAN),
            rtt["min"].as_f64().unwrap_or(f64::NAN),
            rtt["max"].as_f64().unwrap_or(f64::NAN),
        );
        results.push(result);
    }
    println!("{}", serde_json::Value::Array(results));
    Ok(())
}
