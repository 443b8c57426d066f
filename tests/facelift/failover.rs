//! Past one machine: two `facelift serve` processes on one PostgreSQL behind haproxy, and the
//! device simulator in pull mode reaching them through it. The instance that drives the lift
//! is killed with SIGKILL in the middle of a move.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use facelift::lift::protocol::Secret;
use facelift::lift::{Device, Link};
use facelift::store::Store;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::child_server::ChildServer;
use crate::helpers::{postgres_url, read_photo};

const DEVICE: &str = "lift-failover";

/// A child process killed when dropped, however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// haproxy in front of `servers`: round robin, a server that stops answering its health
/// check is taken out, and a request that cannot connect is sent to the other.
fn haproxy(dir: &std::path::Path, port: u16, servers: &[u16]) -> Killed {
    let mut config = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 retries 3\n  option redispatch\n  retry-on conn-failure\n\
         frontend lobby\n  bind 127.0.0.1:{port}\n  default_backend facelift\n\
         backend facelift\n  balance roundrobin\n  option httpchk GET /healthz\n\
         \x20 default-server inter 300ms fall 2 rise 2\n"
    );
    for (i, server) in servers.iter().enumerate() {
        config.push_str(&format!("  server instance{i} 127.0.0.1:{server} check\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("haproxy.cfg");
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (scripts/setup --for-tests installs it)");
    Killed(child)
}

/// The lifts an instance says it drives.
async fn drives(base: &str) -> Option<Vec<String>> {
    let health: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    serde_json::from_value(health["drives"].clone()).ok()
}

/// Reads the panel's event stream until a status `wanted` accepts, for at most `within`;
/// None when the stream ended first (its instance died) or time ran out.
async fn panel_shows(
    client: &reqwest::Client,
    base: &str,
    within: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let read = async {
        let mut response = client
            .get(format!("{base}/api/v1/lift/events"))
            .send()
            .await
            .ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let mut buffer = String::new();
        while let Some(chunk) = response.chunk().await.ok()? {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(status) = serde_json::from_str::<Value>(data.trim())
                        && wanted(&status)
                    {
                        return Some(status);
                    }
                }
            }
        }
        None
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lift_keeps_its_move_when_the_instance_driving_it_is_killed() {
    let Some(url) = postgres_url("failover behind haproxy") else {
        return;
    };
    let secret = Secret::generate();
    let device = Device {
        name: DEVICE.into(),
        secret: secret.clone(),
        link: Link::Pull,
    };
    let store = Store::open_postgres(&url).expect("the database");
    store.put_device(&device.to_row()).expect("register");

    let env = [
        ("FACELIFT_DATABASE_URL", url.as_str()),
        ("FACELIFT_PAD", "passive"),
        ("FACELIFT_ENGINE__THREADS", "1"),
        ("FACELIFT_LIFT__HIGHEST_FLOOR", "6"),
    ];
    let first = ChildServer::start(&env).await.expect("the first instance");
    let second = ChildServer::start(&env).await.expect("the second instance");
    let mut instances = [Some(first), Some(second)];
    let driving = {
        let a = drives(&instances[0].as_ref().expect("first").base).await;
        let b = drives(&instances[1].as_ref().expect("second").base).await;
        match (a.as_deref(), b.as_deref()) {
            (Some([_]), Some([])) => 0,
            (Some([]), Some([_])) => 1,
            other => panic!("one instance drives the lift: {other:?}"),
        }
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let servers: Vec<u16> = instances.iter().flatten().map(|s| s.port).collect();
    let _balancer = haproxy(dir.path(), port, &servers);
    let lobby = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{lobby}/healthz")).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "haproxy answers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // the lift's controller, behind NAT: it polls for commands through the balancer
    let _device = Killed(
        Command::new(env!("CARGO_BIN_EXE_facelift"))
            .args([
                "device-sim",
                "--name",
                DEVICE,
                "--server",
                &lobby,
                "--mode",
                "pull",
                "--lowest",
                "1",
                "--highest",
                "6",
                "--start-floor",
                "1",
                "--travel-ms-per-floor",
                "2000",
                "--heartbeat-secs",
                "1",
            ])
            .env("FACELIFT_DEVICE_SECRET", secret.expose())
            .env("FACELIFT_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("device-sim"),
    );

    // a resident logs in through the balancer and sees the lift at floor 1
    let resident = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let form = Form::new().part(
        "frame",
        Part::bytes(read_photo("img4.jpg")).file_name("frame.jpg"),
    );
    let response = resident
        .post(format!("{lobby}/api/v1/login"))
        .multipart(form)
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let login: Value = response.json().await.expect("json");
    let csrf = login["csrf_token"]
        .as_str()
        .expect("csrf token")
        .to_string();
    panel_shows(&resident, &lobby, Duration::from_secs(20), |s| {
        s["state"] == "idle" && s["floor"] == 1
    })
    .await
    .expect("the panel shows the lift idle at floor 1");

    let press = |floor: i32, request_id: &str| {
        resident
            .post(format!("{lobby}/api/v1/lift/move"))
            .header(facelift::web::CSRF_HEADER, &csrf)
            .json(&json!({"floor": floor, "request_id": request_id}))
            .send()
    };
    let response = press(6, "failover-1").await.expect("move");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // the car is on its way (the device reported a floor past the first)...
    panel_shows(&resident, &lobby, Duration::from_secs(15), |s| {
        s["state"] == "moving" && s["floor"].as_i64().is_some_and(|f| f >= 2)
    })
    .await
    .expect("the panel shows the car moving");

    // ...when the instance that drives it dies
    let killed_at = Instant::now();
    drop(instances[driving].take());
    let survivor = instances[1 - driving].as_ref().expect("survivor");
    let takeover = {
        let base = survivor.base.clone();
        tokio::spawn(async move {
            while drives(&base).await.is_none_or(|d| d.len() != 1) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            killed_at.elapsed()
        })
    };

    // the panel, connected again through the balancer, sees the move end at floor 6
    let arrived = async {
        loop {
            if let Some(status) = panel_shows(&resident, &lobby, Duration::from_secs(5), |s| {
                s["state"] == "idle" && s["floor"] == 6
            })
            .await
            {
                return status;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), arrived)
        .await
        .expect("the move completes and the reconnected panel shows it");
    eprintln!(
        "failover: the move arrived {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // the survivor drives the lift within the lease
    let took_over = tokio::time::timeout(Duration::from_secs(10), takeover)
        .await
        .expect("the survivor takes the lift over within 10 s of the kill")
        .expect("task");
    eprintln!(
        "failover: the survivor drove the lift {:.1} s after the kill",
        took_over.as_secs_f64()
    );

    // the session still works, and the lift takes the next call
    let response = press(2, "failover-2").await.expect("move");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    panel_shows(&resident, &lobby, Duration::from_secs(30), |s| {
        s["state"] == "idle" && s["floor"] == 2
    })
    .await
    .expect("the second move completes");

    // every step of the interrupted move is in the audit log once, and the chain is whole
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = store.audit_rows(0, 0, 10_000).expect("audit");
    let count = |outcome: &str, request: &str| {
        rows.iter()
            .filter(|row| {
                row.outcome == outcome
                    && row
                        .detail
                        .as_deref()
                        .is_some_and(|d| d.ends_with(&format!("request {request}")))
            })
            .count()
    };
    for request in ["failover-1", "failover-2"] {
        for outcome in ["accepted", "command_fetched", "arrived"] {
            assert_eq!(
                count(outcome, request),
                1,
                "{outcome} for {request}: {:#?}",
                rows.iter()
                    .map(|r| (&r.outcome, &r.detail))
                    .collect::<Vec<_>>()
            );
        }
    }
    let chain = store.verify_audit().expect("verify");
    assert!(chain.first_break.is_none(), "{:?}", chain.first_break);
}
