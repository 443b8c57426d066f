//! A simulated lift controller speaking the device protocol exactly as the firmware does:
//! push (it serves `POST /lift/move`), pull (it long-polls the server) or USB serial. Faults
//! can be switched on while it runs, to see what the server makes of them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serialport::SerialPort;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::lift::protocol::{
    self, DEVICE_HEADER, DeviceState, MoveCommand, Presented, Secret, SerialLine, StatusReport,
    Verifier,
};
use crate::lift::serial::LinePump;

/// How the simulator reaches the server.
pub enum SimLink {
    /// Serve `POST /lift/move` on this address (port 0 picks one).
    Push { listen: SocketAddr },
    /// Long-poll the server for commands.
    Pull,
    /// Speak the line protocol on this port.
    Serial(Box<dyn SerialPort>),
}

pub struct SimConfig {
    pub device_id: String,
    pub secret: Secret,
    /// The facelift server's base URL (unused over serial).
    pub server: String,
    pub link: SimLink,
    pub lowest: i32,
    pub highest: i32,
    pub start_floor: i32,
    pub travel_per_floor: Duration,
    pub heartbeat: Duration,
    /// How long one long poll asks the server to wait.
    pub poll_wait_secs: u64,
    /// A certificate (PEM) to trust for an `https://` server besides the system's roots: the
    /// server's self-signed one, as the firmware pins it.
    pub server_certificate: Option<Vec<u8>>,
}

/// Faults to inject, switchable while the simulator runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer commands as accepted, then never move.
    pub drop_commands: AtomicBool,
    /// Hold every report back this long.
    pub delay_reports_ms: AtomicU64,
    /// Send nothing at all: no reports, no heartbeats, no polls.
    pub silent: AtomicBool,
    /// Report arriving one floor short of the target.
    pub wrong_floor: AtomicBool,
}

/// A running simulator; dropping it stops it.
pub struct SimHandle {
    /// Where it listens, in push mode: register this as the device's URL.
    pub push_url: Option<String>,
    pub faults: Arc<Faults>,
    /// Commands received, including dropped ones.
    pub commands_received: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
    _serial: Option<LinePump>,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug)]
struct Car {
    floor: i32,
    state: DeviceState,
    /// The request being served or last served: a repeat is the same command.
    request_id: Option<String>,
}

struct Device {
    id: String,
    secret: Secret,
    lowest: i32,
    highest: i32,
    travel_per_floor: Duration,
    car: Mutex<Car>,
    faults: Arc<Faults>,
    received: Arc<AtomicU64>,
    reports: mpsc::UnboundedSender<()>,
    verifier: Verifier,
}

enum Decision {
    Accepted,
    Busy,
    BadFloor,
}

impl Device {
    fn car(&self) -> std::sync::MutexGuard<'_, Car> {
        self.car
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn accept(self: &Arc<Self>, command: &MoveCommand) -> Decision {
        self.received.fetch_add(1, Ordering::Relaxed);
        if self.faults.drop_commands.load(Ordering::Relaxed) {
            return Decision::Accepted;
        }
        let mut car = self.car();
        if car.request_id.as_deref() == Some(command.request_id.as_str()) {
            return Decision::Accepted;
        }
        if !(self.lowest..=self.highest).contains(&command.floor) {
            return Decision::BadFloor;
        }
        if car.state != DeviceState::Idle {
            return Decision::Busy;
        }
        car.request_id = Some(command.request_id.clone());
        car.state = DeviceState::Moving;
        drop(car);
        let _ = self.reports.send(());
        let device = Arc::clone(self);
        let target = command.floor;
        tokio::spawn(async move { device.travel(target).await });
        Decision::Accepted
    }

    async fn travel(self: Arc<Self>, target: i32) {
        loop {
            if self.travel_per_floor.is_zero() {
                // tokio's timer would round a zero sleep up to its 1 ms tick
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(self.travel_per_floor).await;
            }
            let mut car = self.car();
            let step = (target - car.floor).signum();
            let arriving = car.floor + step == target || step == 0;
            if arriving && self.faults.wrong_floor.load(Ordering::Relaxed) {
                // stops one floor short: a sensor or a motor problem
                car.state = DeviceState::Idle;
            } else {
                car.floor += step;
                if car.floor == target {
                    car.state = DeviceState::Idle;
                }
            }
            let done = car.state == DeviceState::Idle;
            drop(car);
            let _ = self.reports.send(());
            if done {
                break;
            }
        }
    }
}

/// Starts the simulator: its command link, its reporter, and its heartbeat.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    let faults = Arc::new(Faults::default());
    let received = Arc::new(AtomicU64::new(0));
    let (reports, report_requests) = mpsc::unbounded_channel();
    let device = Arc::new(Device {
        id: config.device_id.clone(),
        secret: config.secret.clone(),
        lowest: config.lowest,
        highest: config.highest,
        travel_per_floor: config.travel_per_floor,
        car: Mutex::new(Car {
            floor: config.start_floor.clamp(config.lowest, config.highest),
            state: DeviceState::Idle,
            request_id: None,
        }),
        faults: Arc::clone(&faults),
        received: Arc::clone(&received),
        reports,
        verifier: Verifier::new(30),
    });
    let mut http =
        reqwest::Client::builder().timeout(Duration::from_secs(config.poll_wait_secs + 10));
    if let Some(pem) = &config.server_certificate {
        let certificate = reqwest::Certificate::from_pem(pem).map_err(std::io::Error::other)?;
        http = http.add_root_certificate(certificate);
    }
    let http = http.build().map_err(std::io::Error::other)?;
    let mut tasks = Vec::new();
    let mut push_url = None;
    let mut serial = None;
    let sink = match config.link {
        SimLink::Push { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            push_url = Some(format!("http://{}", listener.local_addr()?));
            let app = Router::new()
                .route("/lift/move", post(serve_move))
                .with_state(Arc::clone(&device));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            Sink::Http(http.clone(), config.server.clone())
        }
        SimLink::Pull => {
            tasks.push(tokio::spawn(poll_commands(
                Arc::clone(&device),
                http.clone(),
                config.server.clone(),
                config.poll_wait_secs,
            )));
            Sink::Http(http.clone(), config.server.clone())
        }
        SimLink::Serial(port) => {
            let (commands, mut incoming) = mpsc::unbounded_channel::<MoveCommand>();
            let pump = LinePump::spawn(port, move |line| {
                if let Ok(SerialLine::Move(command)) = SerialLine::parse(&line) {
                    let _ = commands.send(command);
                }
            })?;
            let receiver = Arc::clone(&device);
            tasks.push(tokio::spawn(async move {
                while let Some(command) = incoming.recv().await {
                    receiver.accept(&command);
                }
            }));
            let writer = pump.outgoing.clone();
            serial = Some(pump);
            Sink::Serial(writer)
        }
    };
    tasks.push(tokio::spawn(report(
        Arc::clone(&device),
        sink,
        report_requests,
        config.heartbeat,
    )));
    Ok(SimHandle {
        push_url,
        faults,
        commands_received: received,
        tasks,
        _serial: serial,
    })
}

enum Sink {
    Http(reqwest::Client, String),
    Serial(std::sync::mpsc::Sender<String>),
}

/// Sends a report on every change and every `heartbeat`, in order, with an increasing `seq`
/// that starts from the clock so that it keeps increasing across restarts.
async fn report(
    device: Arc<Device>,
    sink: Sink,
    mut changes: mpsc::UnboundedReceiver<()>,
    heartbeat: Duration,
) {
    let mut seq = u64::try_from(SystemClock.now()).unwrap_or(0) * 1000;
    let mut beat = tokio::time::interval(heartbeat);
    // a report the server did not take is tried again after a second, not a whole heartbeat
    let mut retry: Option<tokio::time::Instant> = None;
    loop {
        let retry_at = retry.unwrap_or_else(|| tokio::time::Instant::now() + heartbeat * 2);
        tokio::select! {
            change = changes.recv() => if change.is_none() { break },
            _ = beat.tick() => {}
            () = tokio::time::sleep_until(retry_at), if retry.is_some() => {}
        }
        retry = None;
        let (floor, state) = {
            let car = device.car();
            (car.floor, car.state)
        };
        let delay = device.faults.delay_reports_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if device.faults.silent.load(Ordering::Relaxed) {
            continue;
        }
        seq += 1;
        let report = StatusReport {
            device_id: device.id.clone(),
            floor,
            state,
            seq,
        };
        match &sink {
            Sink::Http(client, server) => {
                let body = serde_json::to_vec(&report).unwrap_or_default();
                let path = "/api/v1/device/status";
                let (request, _) = signed(
                    client.post(format!("{server}{path}")),
                    &device,
                    "POST",
                    path,
                    &body,
                );
                let result = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let delivered = match result {
                    Ok(response) if response.status().is_success() => true,
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), "report refused");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "report not delivered");
                        false
                    }
                };
                if !delivered {
                    retry = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            Sink::Serial(lines) => {
                let line = SerialLine::Status { floor, state, seq }.to_string();
                if lines.send(line).is_err() {
                    break;
                }
            }
        }
    }
}

/// `request` from `device`, signed now; answers it and the nonce its answer must carry.
fn signed(
    request: reqwest::RequestBuilder,
    device: &Device,
    method: &str,
    path: &str,
    body: &[u8],
) -> (reqwest::RequestBuilder, String) {
    sign_as(request, &device.id, &device.secret, method, path, body)
}

/// `request` from the device `id`, signed now with `secret`; answers it and the nonce its
/// answer must carry.
pub(crate) fn sign_as(
    request: reqwest::RequestBuilder,
    id: &str,
    secret: &Secret,
    method: &str,
    path: &str,
    body: &[u8],
) -> (reqwest::RequestBuilder, String) {
    let signature = protocol::sign_request(secret, method, path, body, SystemClock.now());
    let request = request
        .header(DEVICE_HEADER, id)
        .headers(signature.headers());
    (request, signature.nonce)
}

/// Pull: asks the server for the next command, again and again.
async fn poll_commands(device: Arc<Device>, client: reqwest::Client, server: String, wait: u64) {
    let path = format!("/api/v1/device/commands?wait={wait}");
    loop {
        if device.faults.silent.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if let Some(command) = signed_poll::<MoveCommand>(
            &client,
            &server,
            &device.id,
            &device.secret,
            &device.verifier,
            &path,
        )
        .await
        {
            device.accept(&command);
        }
    }
}

/// One signed long poll of `path`, as the firmware makes it: the answer's body read as `T`
/// when the server signed it for this very poll; none when there was nothing to do, and
/// none after a pause when the server could not be reached or its answer was not trusted.
pub(crate) async fn signed_poll<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    server: &str,
    id: &str,
    secret: &Secret,
    verifier: &Verifier,
    path: &str,
) -> Option<T> {
    let (request, nonce) = sign_as(
        client.get(format!("{server}{path}")),
        id,
        secret,
        "GET",
        path,
        b"",
    );
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, path, "poll failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return None;
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    if status == 204 {
        return None;
    }
    let answer = protocol::Answer {
        status,
        path,
        body: &body,
    };
    let trusted = verifier.verify_response(
        secret,
        &answer,
        &nonce,
        &Presented::from_headers(&headers),
        SystemClock.now(),
    );
    match (status, trusted, serde_json::from_slice::<T>(&body)) {
        (200, Ok(()), Ok(answer)) => Some(answer),
        (status, trusted, _) => {
            tracing::warn!(status, ?trusted, path, "poll answer ignored");
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

/// Push: `POST /lift/move`, checked like the firmware checks it, answered signed.
async fn serve_move(
    State(device): State<Arc<Device>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/lift/move";
    let presented = Presented::from_headers(&headers);
    let nonce = presented.nonce.unwrap_or_default().to_string();
    let message = protocol::Message {
        method: "POST",
        path,
        body: &body,
    };
    let verified = device.verifier.verify_request(
        "server",
        &device.secret,
        &message,
        &presented,
        SystemClock.now(),
    );
    let (status, text) = match verified {
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            format!(r#"{{"error":"{}"}}"#, code(&e)),
        ),
        Ok(_) => match serde_json::from_slice::<MoveCommand>(&body) {
            Err(_) => (
                StatusCode::BAD_REQUEST,
                r#"{"error":"bad_request"}"#.to_string(),
            ),
            Ok(command) if !protocol::valid_request_id(&command.request_id) => (
                StatusCode::BAD_REQUEST,
                r#"{"error":"bad_request"}"#.to_string(),
            ),
            Ok(command) => match device.accept(&command) {
                Decision::Accepted => (StatusCode::ACCEPTED, r#"{"accepted":true}"#.to_string()),
                Decision::Busy => (StatusCode::CONFLICT, r#"{"error":"busy"}"#.to_string()),
                Decision::BadFloor => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    r#"{"error":"no_such_floor"}"#.to_string(),
                ),
            },
        },
    };
    let signature = protocol::sign_response(
        &device.secret,
        status.as_u16(),
        path,
        &nonce,
        text.as_bytes(),
        SystemClock.now(),
    );
    let mut response = (status, [("content-type", "application/json")], text).into_response();
    signature.insert_into(response.headers_mut());
    response
}

fn code(error: &protocol::ProtocolError) -> &'static str {
    use protocol::ProtocolError as P;
    match error {
        P::Unsigned(_) | P::UnknownDevice | P::BadSignature | P::BadMessage(_) => "bad_signature",
        P::Stale { .. } => "stale",
        P::Replayed => "replayed",
        P::Unverifiable => "internal",
    }
}
