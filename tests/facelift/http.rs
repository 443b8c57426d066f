//! The server over real HTTP on a port-0 listener.

use std::sync::Arc;

use std::time::Duration;

use facelift::app::{App, Parts};
use facelift::device_sim::{self as sim, SimConfig, SimHandle, SimLink};
use facelift::lift::serial::PseudoTerminal;
use facelift::lift::{Building, Device, LiftService, LiftStatus, Link, Secret};
use facelift::store::{AuditEntry, AuditKind, Store};
use facelift::web;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{make_gallery, png_header_only, pool, read_photo};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<Store>,
    /// the enrolled people's folder, alive as long as the app
    pub gallery: tempfile::TempDir,
    /// what loading it found
    pub enrolled: facelift::face::gallery::EnrollReport,
    /// the simulated lift controller, talking to the app over real HTTP or a pseudo-terminal
    pub device: Option<SimHandle>,
    /// the other cars' simulators
    _other_devices: Vec<SimHandle>,
    /// the first car
    pub lift: LiftService,
    pub lifts: Building,
    _data_dir: tempfile::TempDir,
    _serial_line: Option<PseudoTerminal>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceLink {
    Push,
    Pull,
    Serial,
}

pub const DEVICE: &str = "lift-test";

/// The simulated lift controller beside the app.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    pub link: DeviceLink,
    pub travel_ms_per_floor: u64,
    pub heartbeat_ms: u64,
    pub secret: Secret,
}

impl DeviceOptions {
    pub fn new(link: DeviceLink) -> Self {
        Self {
            link,
            travel_ms_per_floor: 50,
            heartbeat_ms: 300,
            secret: Secret::generate(),
        }
    }
}

pub struct AppOptions {
    pub settings: facelift::Settings,
    pub clock: Option<Arc<dyn facelift::clock::Clock>>,
    pub store: Option<Arc<Store>>,
    /// none: no device registered, the lift stays offline
    pub device: Option<DeviceOptions>,
    /// serve HTTPS directly with a self-signed certificate (HTTP/2 by ALPN, as browsers use)
    pub tls: bool,
    /// where each car's simulator starts (by car name); by default the lowest floor
    pub start_floors: Vec<(String, i32)>,
    /// the gallery folder; by default person01 (img1, img2) and person05 (img13)
    pub gallery: Option<tempfile::TempDir>,
}

impl Default for AppOptions {
    fn default() -> Self {
        let mut settings = crate::helpers::settings();
        settings.web.admins = vec!["person05".into()];
        settings.lift.offline_after_ms = 3_000;
        settings.lift.push_timeout_ms = 1_000;
        Self {
            settings,
            clock: None,
            store: None,
            device: Some(DeviceOptions::new(DeviceLink::Push)),
            tls: false,
            start_floors: Vec::new(),
            gallery: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// The app on a port-0 listener; unless `options.gallery` says otherwise, person01 (img1,
/// img2) and person05 (img13, an admin) enrolled.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let gallery_dir = options.gallery.unwrap_or_else(|| {
        make_gallery(&[
            ("person01", &["img1.jpg", "img2.jpg"]),
            ("person05", &["img13.jpg"]),
        ])
    });
    let store = options
        .store
        .unwrap_or_else(|| Arc::new(Store::open_in_memory().expect("store")));
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = options.settings;
    settings.gallery = gallery_dir.path().to_path_buf();
    settings.data_dir = data_dir.path().to_path_buf();
    settings.tls.self_signed = options.tls;
    // bound first: the device can report to it before it serves (connections wait)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    // made before the device starts, which trusts it; the app finds it made
    let certificate = web::tls_files(&settings)
        .expect("a self-signed certificate")
        .map(|files| std::fs::read(files.cert).expect("certificate"));
    let scheme = if options.tls { "https" } else { "http" };
    let base = format!("{scheme}://{address}");

    // one simulator per car that names its device; a building without `[[lifts]]` has one
    let names: Vec<(String, i32)> = if settings.lifts.is_empty() {
        vec![(DEVICE.to_string(), settings.lift.lowest_floor)]
    } else {
        settings
            .lifts
            .iter()
            .filter_map(|car| {
                let name = car.device.clone()?;
                let start = options
                    .start_floors
                    .iter()
                    .find(|(n, _)| *n == car.name)
                    .map_or(settings.lift.lowest_floor, |(_, floor)| *floor);
                Some((name, start))
            })
            .collect()
    };
    let (mut handles, mut serial_line) = (Vec::new(), None);
    if let Some(device) = &options.device {
        for (name, start_floor) in names {
            let (sim_link, server_link) = match device.link {
                DeviceLink::Push => (
                    SimLink::Push {
                        listen: "127.0.0.1:0".parse().expect("address"),
                    },
                    None,
                ),
                DeviceLink::Pull => (SimLink::Pull, Some(Link::Pull)),
                DeviceLink::Serial => {
                    let mut line = PseudoTerminal::open().expect("a pseudo-terminal pair");
                    let port = line.take_device_end().expect("device end");
                    let path = line.path.clone();
                    serial_line = Some(line);
                    (SimLink::Serial(port), Some(Link::Serial { path }))
                }
            };
            let handle = sim::start(SimConfig {
                device_id: name.clone(),
                secret: device.secret.clone(),
                server: base.clone(),
                link: sim_link,
                lowest: settings.lift.lowest_floor,
                highest: settings.lift.highest_floor,
                start_floor,
                travel_per_floor: Duration::from_millis(device.travel_ms_per_floor),
                heartbeat: Duration::from_millis(device.heartbeat_ms),
                poll_wait_secs: 25,
                server_certificate: certificate.clone(),
            })
            .await
            .expect("device simulator");
            let link = server_link.unwrap_or_else(|| Link::Push {
                url: handle.push_url.clone().expect("push URL"),
            });
            let row = Device {
                name,
                secret: device.secret.clone(),
                link,
            }
            .to_row();
            store.put_device(&row).expect("register the device");
            handles.push(handle);
        }
    }
    let mut handles = handles.into_iter();
    let device_handle = handles.next();
    let other_devices = handles.collect();
    let parts = Parts {
        pool: Some(Arc::clone(pool())),
        store: Some(Arc::clone(&store)),
        clock: options.clock,
        on_photo: None,
    };
    let app = App::build(settings, parts).await.expect("the app");
    let lifts = app.state.lifts.clone();
    let lift = lifts.cars()[0].clone();
    let enrolled = app.gallery.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let server = tokio::spawn(app.serve(listener, stopped));
    let mut client = reqwest::Client::builder().cookie_store(true);
    if let Some(pem) = &certificate {
        client = client.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("pem"));
    }
    TestApp {
        base,
        client: client.build().expect("client"),
        _data_dir: data_dir,
        store,
        gallery: gallery_dir,
        enrolled,
        device: device_handle,
        _other_devices: other_devices,
        lift,
        lifts,
        _serial_line: serial_line,
        stop,
        server,
    }
}

impl TestApp {
    /// Asks the server to stop, as Ctrl-C does; answers whether it stopped within `within`.
    pub async fn shut_down(self, within: Duration) -> bool {
        let _ = self.stop.send(());
        matches!(
            tokio::time::timeout(within, self.server).await,
            Ok(Ok(Ok(())))
        )
    }

    /// Waits (at most `within`) for a status of the first car that `wanted` accepts, and
    /// answers it.
    pub async fn lift_becomes(
        &self,
        within: Duration,
        wanted: impl Fn(&LiftStatus) -> bool,
    ) -> LiftStatus {
        self.car_becomes(self.lift.name(), within, wanted).await
    }

    /// Waits (at most `within`) for a status of car `name` that `wanted` accepts.
    pub async fn car_becomes(
        &self,
        name: &str,
        within: Duration,
        wanted: impl Fn(&LiftStatus) -> bool,
    ) -> LiftStatus {
        let car = self.lifts.car(name).expect("a car of that name");
        let mut changes = car.subscribe();
        let waited = tokio::time::timeout(within, async {
            loop {
                let status = changes.borrow_and_update().clone();
                if wanted(&status) {
                    return status;
                }
                if changes.changed().await.is_err() {
                    return status;
                }
            }
        })
        .await;
        match waited {
            Ok(status) if wanted(&status) => status,
            _ => panic!("lift status still {:?} after {within:?}", car.status()),
        }
    }

    /// Waits (at most 5 s: audit entries are written in the background) for an audit entry of
    /// `kind` that `wanted` accepts among the latest 50.
    pub async fn audit_shows(
        &self,
        kind: AuditKind,
        wanted: impl Fn(&AuditEntry) -> bool,
    ) -> AuditEntry {
        for _ in 0..100 {
            let log = self.store.recent_audit(kind, 50).expect("audit");
            if let Some(entry) = log.into_iter().find(|e| wanted(e)) {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no such {kind} entry in {:#?}",
            self.store.recent_audit(kind, 10)
        );
    }

    /// Waits (at most 10 s) until the server has heard `count` more status reports.
    pub async fn reports_heard(&self, count: u64) {
        let reports = || self.lift.reports_heard();
        let before = reports();
        for _ in 0..200 {
            if reports() >= before + count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server heard no {count} reports in 10 s");
    }

    /// Waits until the device has reported and the lift is idle.
    pub async fn lift_ready(&self) -> LiftStatus {
        self.lift_becomes(Duration::from_secs(10), |s| s.state == "idle")
            .await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Logs in as person05, an admin (the face API is for admins); returns the CSRF token.
    pub async fn log_in_admin(&self) -> String {
        let form = Form::new().part("frame", Part::bytes(read_photo("img14.jpg")));
        let response = self
            .client
            .post(format!("{}/api/v1/login", self.base))
            .multipart(form)
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["csrf_token"].as_str().expect("token").to_string()
    }

    async fn identify(&self, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let form = Form::new().part("frame", Part::bytes(body).file_name("frame.jpg"));
        let response = self
            .client
            .post(format!("{}/api/v1/identify", self.base))
            .header(facelift::web::CSRF_HEADER, token)
            .multipart(form)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }
}

#[tokio::test]
async fn health_and_people_describe_the_gallery() {
    let app = spawn_app().await;
    let anonymous = app
        .client
        .get(format!("{}/api/v1/people", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "the face API needs a session"
    );
    app.log_in_admin().await;
    let health = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["people"], 2);
    assert_eq!(health["templates"], 3);
    let people = app.get_json("/api/v1/people").await;
    assert_eq!(people["people"][0]["name"], "person01");
    assert_eq!(people["people"][0]["templates"], 2);
}

#[tokio::test]
async fn an_enrolled_face_is_recognised_and_a_stranger_is_not() {
    let app = spawn_app().await;
    let token = app.log_in_admin().await;
    let (status, body) = app.identify(&token, read_photo("img4.jpg")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["faces"][0]["person"], "person01");
    assert!(body["faces"][0]["similarity"].as_f64() >= Some(0.5));
    let (status, body) = app.identify(&token, read_photo("img38.jpg")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["faces"][0]["person"], Value::Null);
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_with_the_right_status() {
    let app = spawn_app().await;
    let token = app.log_in_admin().await;
    let jpeg = read_photo("img1.jpg");
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "empty",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
        ),
        (
            "text",
            b"not a picture".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
        ),
        (
            "truncated",
            jpeg[..jpeg.len() / 3].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
        ),
        (
            "50k x 50k",
            png_header_only(50_000, 50_000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "9 MiB",
            vec![0xAB; 9 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, body) = app.identify(&token, body).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"], code, "{what}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: a message for people"
        );
    }
    // a request without the frame field
    let response = app
        .client
        .post(format!("{}/api/v1/identify", app.base))
        .header(facelift::web::CSRF_HEADER, &token)
        .multipart(Form::new().text("other", "x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // and the server is still fine afterwards
    let (status, _) = app.identify(&token, read_photo("img2.jpg")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn verify_over_http_matches_the_cli_contract() {
    let app = spawn_app().await;
    let token = app.log_in_admin().await;
    let form = Form::new()
        .part("a", Part::bytes(read_photo("img1.jpg")))
        .part("b", Part::bytes(read_photo("img2.jpg")));
    let body: Value = app
        .client
        .post(format!("{}/api/v1/verify", app.base))
        .header(facelift::web::CSRF_HEADER, &token)
        .multipart(form)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["verified"], true, "{body}");
    assert_eq!(body["faces"], serde_json::json!([1, 1]));
}
