//! One `Settings` struct, layered: built-in defaults < TOML file < `FACELIFT_*` environment <
//! command-line flags.
//!
//! The file is `--config FILE`, else `$FACELIFT_CONFIG`, else `facelift.toml` when present.
//! Environment keys nest with a double underscore: `FACELIFT_ENGINE__THREADS=1`,
//! `FACELIFT_ENGINE__PREPROCESS__MAX_SIDE=800`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::face::{EngineConfig, ModelName, Precision, VggOutput};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the server listens on.
    pub bind: String,
    /// One folder per enrolled person, photos inside.
    pub gallery: PathBuf,
    /// Where the SQLite database lives (and the TLS certificate made here).
    pub data_dir: PathBuf,
    /// PostgreSQL instead of SQLite ("postgres://user:password@host:5432/facelift",
    /// `FACELIFT_DATABASE_URL`): for several instances on one database.
    pub database_url: Option<DatabaseUrl>,
    /// Where `scripts/setup` put the model files.
    pub models_dir: PathBuf,
    /// The model set: "default", or "vgg-face" (converted by scripts/convert-vggface).
    pub model: ModelName,
    /// VGG-Face's output layer: "fc8" (2622-d, the default) or "fc7" (4096-d).
    pub model_output: Option<VggOutput>,
    /// VGG-Face's weights: "fp32" (the default) or "int8" (made by scripts/quantize-vggface).
    pub model_precision: Option<Precision>,
    /// Engines (each with its own ONNX Runtime sessions) working in parallel.
    pub workers: usize,
    /// Requests that may wait for an engine (in a waiting room, before their upload is read)
    /// before new ones get "busy"; one address may hold an eighth of them.
    pub queue: usize,
    /// Largest accepted upload, in bytes.
    pub max_body_bytes: usize,
    pub engine: EngineConfig,
    /// Presentation attack detection: "challenge" (the default), "passive" or "off"
    /// (`FACELIFT_PAD`).
    pub pad: PadMode,
    pub web: WebSettings,
    /// What every car shares: the building's floors, timeouts, the device protocol's window.
    pub lift: LiftSettings,
    /// The cars (`[[lifts]]`); none listed: one car, "A", driven by `lift.device`.
    pub lifts: Vec<CarSettings>,
    pub building: BuildingSettings,
    /// Lobby kiosks (`[[kiosks]]`), each beside a camera board.
    pub kiosks: Vec<KioskSettings>,
    /// Bearer tokens for machines and scripts (`POST /api/v1/tokens`).
    pub tokens: TokenSettings,
    pub tls: TlsSettings,
}

/// A PostgreSQL URL. It may hold a password, which its `Debug` never shows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return "***".into();
        };
        let authority_end = url[scheme_end..]
            .find(['/', '?'])
            .map_or(url.len(), |i| scheme_end + i);
        match url[scheme_end..authority_end].rfind('@') {
            Some(at) => {
                let userinfo = &url[scheme_end..scheme_end + at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let password = if userinfo.contains(':') { ":***" } else { "" };
                format!(
                    "{}{user}{password}{}",
                    &url[..scheme_end],
                    &url[scheme_end + at..]
                )
            }
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

/// How long tokens live, and how often the revocation list is cleaned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// An access token's life, in seconds (10 minutes).
    pub access_secs: u64,
    /// A refresh token's life, in seconds (12 hours); each is good for one refresh.
    pub refresh_secs: u64,
    /// How often expired revocations, refresh tokens and replaced keys are deleted.
    pub cleanup_every_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            access_secs: 600,
            refresh_secs: 12 * 3600,
            cleanup_every_secs: 60,
        }
    }
}

/// A kiosk: a tablet page (`/kiosk/NAME`, paired with `facelift device add NAME --kiosk`)
/// beside a camera board (`facelift device add CAMERA --camera`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskSettings {
    pub name: String,
    /// The registered camera board that captures the faces.
    pub camera: String,
    /// The floor the kiosk stands on: where the car picks people up.
    pub floor: i32,
    /// Send the car to the person's home floor at once, without asking.
    #[serde(default)]
    pub dispatch: bool,
    /// The page goes back to "Look at the camera" this long after a result.
    #[serde(default = "default_kiosk_return_secs")]
    pub return_after_secs: u64,
}

fn default_kiosk_return_secs() -> u64 {
    8
}

/// One car of the building.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarSettings {
    /// Shown to people ("Lift B"): 1 to 64 letters, digits, `-` or `_`.
    pub name: String,
    /// The registered device driving it; none: the car stays offline (with one car: the only
    /// lift controller registered).
    #[serde(default)]
    pub device: Option<String>,
    /// The floors it stops at; by default every floor of the building.
    #[serde(default)]
    pub floors: Option<Vec<i32>>,
}

/// The building as a whole: its clock for access hours, and the fire-service recall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildingSettings {
    /// The IANA time zone access hours are read in ("Europe/London").
    pub time_zone: String,
    /// Where a recall sends every car; by default the lowest floor.
    pub recall_floor: Option<i32>,
    /// Floors everyone with access may reach at any time, such as the way out; by default
    /// the lowest floor.
    pub public_floors: Option<Vec<i32>>,
    /// Shown on the panel when a car is out of service.
    pub fault_advice: String,
}

impl Default for BuildingSettings {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            recall_floor: None,
            public_floors: None,
            fault_advice: "Please take the stairs, or call the building manager.".into(),
        }
    }
}

impl Settings {
    /// The cars as configured, or the one car of a configuration without `[[lifts]]`.
    pub fn cars(&self) -> Vec<CarSettings> {
        if self.lifts.is_empty() {
            vec![CarSettings {
                name: DEFAULT_CAR.into(),
                device: self.lift.device.clone(),
                floors: None,
            }]
        } else {
            self.lifts.clone()
        }
    }
}

/// The name of the one car of a building configured without `[[lifts]]`.
pub const DEFAULT_CAR: &str = "A";

/// How a login proves that a live person is in front of the camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// A burst of frames doing head turns the server picked, checked for depth, one identity,
    /// liveness and replay. Single frames are refused.
    #[default]
    Challenge,
    /// Single frames, refused when the passive liveness score is low: for a deployment that
    /// accepts that a good photo may pass.
    Passive,
    /// No presentation attack detection.
    Off,
}

impl PadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PadMode::Challenge => "challenge",
            PadMode::Passive => "passive",
            PadMode::Off => "off",
        }
    }
}

/// HTTPS served directly (without a tunnel in front).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain and private key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Make (once, kept in `<data_dir>/tls/`) and use a self-signed certificate.
    pub self_signed: bool,
    /// Extra host names or addresses for the self-signed certificate, such as the LAN address
    /// a phone uses ("192.168.1.20"); localhost and the bind address are always in.
    pub names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// A session ends after this long without a request.
    pub session_inactivity_secs: u64,
    /// ... and this long after login, whatever happens.
    pub session_absolute_secs: u64,
    /// Enrolled people (folder names) who may use /admin.
    pub admins: Vec<String>,
    /// Proxies (addresses or CIDR ranges, such as a local ngrok agent: "127.0.0.1/32") whose
    /// X-Forwarded-Proto, -For and -Host headers are believed; nobody else's are.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed logins in a row from one client before it has to wait.
    pub login_failures_before_wait: u32,
    /// The first wait; it doubles with each further failure, up to the cap.
    pub login_wait_secs: u64,
    pub login_wait_max_secs: u64,
    /// Failed face matches across all clients in any minute, before every client without a
    /// trusted browser waits (so that many addresses together gain nothing).
    pub login_failures_per_minute: u32,
    /// Failed attempts near one person in a row before each further one waits
    /// `person_wait_secs` (NIST SP 800-63B-4: 5, then 30 s).
    pub person_failures_before_wait: u32,
    pub person_wait_secs: u64,
    /// In a row, after which the person's face login is off until an administrator turns it
    /// on again (NIST SP 800-63B-4: 50).
    pub person_disable_after: u32,
    /// ... 100 when presentation attack detection is on (refusals by PAD count too).
    pub person_disable_after_with_pad: u32,
    /// A failed attempt whose best match is at least this similar counts against that person
    /// (default: 0.7 of the model's threshold).
    pub near_miss_similarity: Option<f32>,
    /// A login challenge must be answered within this long.
    pub challenge_secs: u64,
    /// The lowest passive liveness score (`fr_liveness`, 0 to 1) a login frame may have (for
    /// a burst, its frames' lower quartile).
    pub liveness_min: f32,
    /// The faces of accepted bursts are remembered this long, to refuse them sent again.
    pub replay_memory_secs: u64,
    /// Largest width x height of a login frame, checked from its header before it waits for
    /// an engine: a camera frame (the login page sends 640x480; a 4K frame, 3840x2160, still
    /// passes), far below the enrolment limit (`engine.max_pixels`), so that a small file claiming a huge
    /// picture costs no decoding.
    pub login_max_pixels: u64,
    /// On Ctrl-C or SIGTERM, requests in flight get this long to finish.
    pub shutdown_grace_secs: u64,
    /// A request still unanswered after this long gets 408 (the device's long poll and the
    /// panel's event stream excepted).
    pub request_timeout_secs: u64,
    /// Addresses (or CIDR ranges) `GET /metrics` answers; others get 403.
    pub metrics_from: Vec<ipnet::IpNet>,
    /// Connections open at once, all clients together (default: what the open-file limit
    /// allows, less a reserve). At the cap, the connection quiet longest with nothing in
    /// flight is closed to make room; when every one is busy, the new one is closed at once.
    pub max_connections: Option<usize>,
    /// Connections open at once from one address (trusted proxies excepted); more are closed
    /// at once.
    pub max_connections_per_address: usize,
    /// A request's headers must arrive within this long; an HTTP/1 connection waiting for its
    /// next request is closed after it too.
    pub header_timeout_secs: u64,
    /// A connection with nothing in flight and no bytes either way for this long is closed
    /// (HTTP/2 and a stalled TLS handshake included).
    pub idle_timeout_secs: u64,
    /// A request body must arrive within this long, plus a second for every `body_min_rate`
    /// bytes received; a slower one gets 408 and its connection is closed.
    pub body_timeout_secs: u64,
    pub body_min_rate: u64,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            session_inactivity_secs: 15 * 60,
            session_absolute_secs: 12 * 60 * 60,
            admins: Vec::new(),
            trusted_proxies: Vec::new(),
            login_failures_before_wait: 5,
            login_wait_secs: 30,
            login_wait_max_secs: 15 * 60,
            login_failures_per_minute: 30,
            person_failures_before_wait: 5,
            person_wait_secs: 30,
            person_disable_after: 50,
            person_disable_after_with_pad: 100,
            near_miss_similarity: None,
            challenge_secs: 20,
            liveness_min: 0.5,
            replay_memory_secs: 24 * 60 * 60,
            login_max_pixels: 3840 * 2160,
            shutdown_grace_secs: 5,
            request_timeout_secs: 30,
            metrics_from: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|net| net.parse().ok())
                .collect(),
            max_connections: None,
            max_connections_per_address: 256,
            header_timeout_secs: 20,
            idle_timeout_secs: 60,
            body_timeout_secs: 20,
            body_min_rate: 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiftSettings {
    pub lowest_floor: i32,
    pub highest_floor: i32,
    /// Names shown on the panel, from the lowest floor up ("G", "1", ...); a missing or empty
    /// name shows the number.
    pub floor_names: Vec<String>,
    /// The registered device driving the lift when no `[[lifts]]` are listed (`facelift
    /// device add`); by default the only lift controller registered.
    pub device: Option<String>,
    /// A move the device has not finished by then puts the lift in fault.
    pub move_timeout_ms: u64,
    /// A device silent this long (no report, no poll) is offline; devices report every 5 s.
    pub offline_after_ms: u64,
    /// How long the server waits for a device to answer a pushed command (then retries once).
    pub push_timeout_ms: u64,
    /// Device messages whose timestamp is further than this from now are refused.
    pub signature_window_secs: u64,
}

impl Default for LiftSettings {
    fn default() -> Self {
        // the seed building had two floors
        Self {
            lowest_floor: 1,
            highest_floor: 2,
            floor_names: Vec::new(),
            device: None,
            move_timeout_ms: 60_000,
            offline_after_ms: 15_000,
            push_timeout_ms: 3_000,
            signature_window_secs: 30,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            gallery: "enrolled_faces".into(),
            data_dir: "data".into(),
            database_url: None,
            models_dir: "models".into(),
            model: ModelName::Default,
            model_output: None,
            model_precision: None,
            workers: 1,
            queue: 64,
            max_body_bytes: 8 * 1024 * 1024,
            engine: EngineConfig::default(),
            pad: PadMode::default(),
            web: WebSettings::default(),
            lift: LiftSettings::default(),
            lifts: Vec::new(),
            building: BuildingSettings::default(),
            kiosks: Vec::new(),
            tokens: TokenSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("the configuration file {0} does not exist")]
    MissingFile(String),
}

/// `FACELIFT_*` variables that are not settings: the configuration file's name, the log
/// filter, the simulator's secret, and the scripts' own.
const NOT_SETTINGS: &[&str] = &["CONFIG", "LOG", "DEVICE_SECRET", "SHARED", "SKIP_BUILD"];

impl Settings {
    /// Loads defaults, the file, then the environment. A key that is not a setting, in the
    /// file or in a `FACELIFT_*` variable, is an error that names it: a typo must not pass
    /// silently. Command-line flags are applied to the result by the caller.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("FACELIFT_CONFIG").map(PathBuf::from));
        match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file("facelift.toml")),
        }
        figment = figment.merge(Env::prefixed("FACELIFT_").ignore(NOT_SETTINGS).split("__"));
        figment
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// The defaults with a configuration file's text over them (no environment): what
    /// `load` makes of the file, for checking a file and for the fuzzer.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_overrides_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("facelift.toml");
        std::fs::write(
            &file,
            "bind = \"0.0.0.0:9000\"\nmodel = \"vgg-face\"\n[engine]\nthreads = 1\n\
             [engine.preprocess]\nmirror = true\n",
        )
        .expect("write");
        let settings = Settings::load(Some(&file)).expect("load");
        assert_eq!(settings.bind, "0.0.0.0:9000");
        assert_eq!(settings.model, ModelName::VggFace);
        assert_eq!(settings.engine.threads, 1);
        assert!(settings.engine.preprocess.mirror);
        assert_eq!(
            settings.data_dir,
            PathBuf::from("data"),
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn an_unknown_key_or_value_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, named) in [
            ("bnd = \"0.0.0.0:9000\"\n", "bnd"),
            ("[lift]\nhighest_flor = 9\n", "highest_flor"),
            ("[engine.preprocess]\nmirorr = true\n", "mirorr"),
            ("model_precision = \"fp16\"\n", "fp16"),
        ] {
            let file = dir.path().join("facelift.toml");
            std::fs::write(&file, text).expect("write");
            let error = Settings::load(Some(&file)).expect_err(text).to_string();
            assert!(error.contains(named), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn a_database_password_never_shows_in_debug() {
        let settings = Settings::from_toml_str(
            "database_url = \"postgres://lift:s3cret-pw@db.example:5432/facelift?sslmode=disable\"\n",
        )
        .expect("parse");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(
            shown.contains("postgres://lift:***@db.example:5432/facelift?sslmode=disable"),
            "{shown}"
        );
        let plain = DatabaseUrl("postgres://lift@db/facelift".into());
        assert_eq!(plain.redacted(), "postgres://lift@db/facelift");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let missing = Path::new("/nonexistent/facelift.toml");
        assert!(matches!(
            Settings::load(Some(missing)),
            Err(ConfigError::MissingFile(_))
        ));
    }
}
