//! The device protocol (see `firmware/PROTOCOL.md`): the messages, their HMAC-SHA256
//! signatures, and the checks a receiver makes (signature, time window, replay).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const DEVICE_HEADER: &str = "x-facelift-device";
pub const TIMESTAMP_HEADER: &str = "x-facelift-timestamp";
pub const NONCE_HEADER: &str = "x-facelift-nonce";
pub const SIGNATURE_HEADER: &str = "x-facelift-signature";

/// The longest request id accepted: they travel in URLs, JSON and serial lines.
const MAX_REQUEST_ID: usize = 64;

/// A device's shared secret. Never printed by `Debug`, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// 32 random bytes as 64 hex digits.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(hex::encode(bytes))
    }

    /// The secret itself, for the one place that must show it (`facelift device add`).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail
        Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).unwrap_or_else(|_| unreachable!())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(text))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Idle,
    Moving,
    Fault,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Idle => "idle",
            DeviceState::Moving => "moving",
            DeviceState::Fault => "fault",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "idle" => Some(DeviceState::Idle),
            "moving" => Some(DeviceState::Moving),
            "fault" => Some(DeviceState::Fault),
            _ => None,
        }
    }
}

/// Server to device: go to `floor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoveCommand {
    pub request_id: String,
    pub floor: i32,
}

/// Device to server: where the lift is, on every change and as a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub device_id: String,
    pub floor: i32,
    pub state: DeviceState,
    /// Increases with every report; a report not newer than the last is ignored.
    pub seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("the message is not signed (missing {0})")]
    Unsigned(&'static str),
    #[error("unknown device")]
    UnknownDevice,
    #[error("bad signature")]
    BadSignature,
    #[error("the timestamp is {skew} s away from now, outside the {window} s window")]
    Stale { skew: i64, window: i64 },
    #[error("this message was already received (replay)")]
    Replayed,
    #[error("bad message: {0}")]
    BadMessage(String),
    #[error("the message could not be checked against earlier ones; try again")]
    Unverifiable,
}

/// A request id is 1 to 64 letters, digits, `-` or `_`.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh request id (16 hex digits).
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The text a request signature covers: method, path with query, timestamp, nonce and body,
/// one per line.
pub fn request_string(
    method: &str,
    path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut text = format!("{method}\n{path}\n{timestamp}\n{nonce}\n").into_bytes();
    text.extend_from_slice(body);
    text
}

/// The text a response signature covers: the status code instead of the method, and the
/// request's nonce, which binds the answer to the question.
pub fn response_string(
    status: u16,
    path: &str,
    timestamp: i64,
    request_nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    request_string(&status.to_string(), path, timestamp, request_nonce, body)
}

/// HMAC-SHA256 of `text` under `secret`, as lowercase hex.
pub fn signature(secret: &Secret, text: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(text);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `presented` is `secret`, compared in constant time (as the MACs of one text).
pub fn same_secret(secret: &Secret, presented: &str) -> bool {
    const TEXT: &[u8] = b"facelift: the same secret";
    let mut expected = secret.mac();
    expected.update(TEXT);
    let expected = expected.finalize().into_bytes();
    let mut other = Secret::new(presented).mac();
    other.update(TEXT);
    other.verify_slice(&expected).is_ok()
}

fn signature_matches(secret: &Secret, text: &[u8], claimed: &str) -> bool {
    let Ok(claimed) = hex::decode(claimed) else {
        return false;
    };
    let mut mac = secret.mac();
    mac.update(text);
    // constant time
    mac.verify_slice(&claimed).is_ok()
}

/// The headers that sign one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub timestamp: i64,
    pub nonce: String,
    pub signature: String,
}

/// Signs a request made now.
pub fn sign_request(secret: &Secret, method: &str, path: &str, body: &[u8], now: i64) -> Signed {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let signature = signature(secret, &request_string(method, path, now, &nonce, body));
    Signed {
        timestamp: now,
        nonce,
        signature,
    }
}

/// Signs the answer to a request that carried `request_nonce`.
pub fn sign_response(
    secret: &Secret,
    status: u16,
    path: &str,
    request_nonce: &str,
    body: &[u8],
    now: i64,
) -> Signed {
    let signature = signature(
        secret,
        &response_string(status, path, now, request_nonce, body),
    );
    Signed {
        timestamp: now,
        nonce: request_nonce.to_string(),
        signature,
    }
}

/// The signing headers a receiver read, as text (absent headers are `None`).
#[derive(Clone, Debug, Default)]
pub struct Presented<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> Presented<'a> {
    /// The signing headers of a request or a response.
    pub fn from_headers(headers: &'a HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            timestamp: header(TIMESTAMP_HEADER),
            nonce: header(NONCE_HEADER),
            signature: header(SIGNATURE_HEADER),
        }
    }
}

impl Signed {
    /// The signing headers alone.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.insert_into(&mut headers);
        headers
    }

    /// Adds the signing headers (timestamp, nonce, signature) to `headers`.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            (TIMESTAMP_HEADER, self.timestamp.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ] {
            // hex digits and decimal numbers are always valid header values
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

/// What a request's signature covers, besides the signing headers.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub method: &'a str,
    /// with the query string
    pub path: &'a str,
    pub body: &'a [u8],
}

/// What a response's signature covers: the status, the request's path, the body.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    pub status: u16,
    pub path: &'a str,
    pub body: &'a [u8],
}

/// Checks signatures, time windows and replays for the messages one party receives.
#[derive(Debug)]
pub struct Verifier {
    window_secs: i64,
    /// (device, nonce) → the message's timestamp, kept while it is inside the window.
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl Verifier {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_secs: i64::try_from(window_secs).unwrap_or(i64::MAX),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a request from `device`; returns its signed timestamp. The signature is checked
    /// first, so that a forged message can neither fill the replay memory nor learn anything
    /// from the other checks.
    pub fn verify_request(
        &self,
        device: &str,
        secret: &Secret,
        message: &Message<'_>,
        presented: &Presented<'_>,
        now: i64,
    ) -> Result<i64, ProtocolError> {
        let Message { method, path, body } = *message;
        let (timestamp, nonce, claimed) = parts(presented)?;
        if nonce.is_empty() || nonce.len() > 64 {
            return Err(ProtocolError::BadSignature);
        }
        let text = request_string(method, path, timestamp, nonce, body);
        if !signature_matches(secret, &text, claimed) {
            return Err(ProtocolError::BadSignature);
        }
        self.check_window(timestamp, now)?;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = self.window_secs.unsigned_abs();
        seen.retain(|_, at| at.abs_diff(now) <= window);
        if seen
            .insert((device.to_string(), nonce.to_string()), timestamp)
            .is_some()
        {
            return Err(ProtocolError::Replayed);
        }
        Ok(timestamp)
    }

    /// Checks the signed answer to our request that carried `request_nonce`.
    pub fn verify_response(
        &self,
        secret: &Secret,
        answer: &Answer<'_>,
        request_nonce: &str,
        presented: &Presented<'_>,
        now: i64,
    ) -> Result<(), ProtocolError> {
        let Answer { status, path, body } = *answer;
        let (timestamp, nonce, claimed) = parts(presented)?;
        if nonce != request_nonce {
            return Err(ProtocolError::Replayed);
        }
        let text = response_string(status, path, timestamp, request_nonce, body);
        if !signature_matches(secret, &text, claimed) {
            return Err(ProtocolError::BadSignature);
        }
        self.check_window(timestamp, now)
    }

    /// How far a message's timestamp may be from now, in seconds.
    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    fn check_window(&self, timestamp: i64, now: i64) -> Result<(), ProtocolError> {
        // compared without `abs`: the skew of i64::MIN has no absolute value in i64, and in a
        // release build it wrapped to a negative number that passed
        let skew = timestamp.saturating_sub(now);
        if timestamp.abs_diff(now) > self.window_secs.unsigned_abs() {
            return Err(ProtocolError::Stale {
                skew,
                window: self.window_secs,
            });
        }
        Ok(())
    }
}

fn parts<'a>(presented: &Presented<'a>) -> Result<(i64, &'a str, &'a str), ProtocolError> {
    let timestamp = presented
        .timestamp
        .ok_or(ProtocolError::Unsigned(TIMESTAMP_HEADER))?
        .trim()
        .parse::<i64>()
        .map_err(|_| ProtocolError::BadSignature)?;
    let nonce = presented
        .nonce
        .ok_or(ProtocolError::Unsigned(NONCE_HEADER))?;
    let claimed = presented
        .signature
        .ok_or(ProtocolError::Unsigned(SIGNATURE_HEADER))?;
    Ok((timestamp, nonce, claimed))
}

/// One line of the USB serial protocol (`\n`-terminated, ASCII).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialLine {
    /// server to device: `MOVE <request_id> <floor>`
    Move(MoveCommand),
    /// device to server: `STATUS <floor> <state> <seq>`
    Status {
        floor: i32,
        state: DeviceState,
        seq: u64,
    },
}

impl SerialLine {
    pub fn parse(line: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::BadMessage(format!("bad serial line {:?}", truncate(line)));
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        match words.as_slice() {
            ["MOVE", id, floor] if valid_request_id(id) => Ok(SerialLine::Move(MoveCommand {
                request_id: (*id).to_string(),
                floor: floor.parse().map_err(|_| bad())?,
            })),
            ["STATUS", floor, state, seq] => Ok(SerialLine::Status {
                floor: floor.parse().map_err(|_| bad())?,
                state: DeviceState::parse(state).ok_or_else(bad)?,
                seq: seq.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for SerialLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialLine::Move(command) => write!(f, "MOVE {} {}", command.request_id, command.floor),
            SerialLine::Status { floor, state, seq } => {
                write!(f, "STATUS {floor} {} {seq}", state.as_str())
            }
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented(signed: &Signed) -> Presented<'_> {
        Presented {
            timestamp: None,
            nonce: Some(&signed.nonce),
            signature: Some(&signed.signature),
        }
    }

    #[test]
    fn a_signed_request_passes_once_and_only_unchanged_and_on_time() {
        let secret = Secret::new("s3cret");
        let verifier = Verifier::new(30);
        let body = br#"{"device_id":"a","floor":2,"state":"idle","seq":7}"#;
        let signed = sign_request(&secret, "POST", "/api/v1/device/status", body, 1000);
        let ts = signed.timestamp.to_string();
        let ok = Presented {
            timestamp: Some(&ts),
            ..presented(&signed)
        };
        let check = |method: &str, body: &[u8], now: i64, secret: &Secret| {
            let message = Message {
                method,
                path: "/api/v1/device/status",
                body,
            };
            verifier.verify_request("a", secret, &message, &ok, now)
        };
        assert_eq!(
            check("POST", b"{}", 1000, &secret),
            Err(ProtocolError::BadSignature)
        );
        assert_eq!(
            check("GET", body, 1000, &secret),
            Err(ProtocolError::BadSignature)
        );
        assert_eq!(
            check("POST", body, 1000, &Secret::new("other")),
            Err(ProtocolError::BadSignature)
        );
        assert_eq!(
            check("POST", body, 1031, &secret),
            Err(ProtocolError::Stale {
                skew: -31,
                window: 30
            })
        );
        assert_eq!(check("POST", body, 1010, &secret), Ok(1000));
        assert_eq!(
            check("POST", body, 1010, &secret),
            Err(ProtocolError::Replayed)
        );
        assert_eq!(
            verifier.verify_request(
                "a",
                &secret,
                &Message {
                    method: "POST",
                    path: "/x",
                    body
                },
                &Presented::default(),
                1000
            ),
            Err(ProtocolError::Unsigned(TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn a_timestamp_at_the_ends_of_i64_is_stale_not_an_overflow() {
        let secret = Secret::new("s3cret");
        let verifier = Verifier::new(30);
        let body = b"{}";
        for timestamp in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let signed = sign_request(&secret, "POST", "/api/v1/device/status", body, timestamp);
            let text = timestamp.to_string();
            let presented = Presented {
                timestamp: Some(&text),
                ..presented(&signed)
            };
            let message = Message {
                method: "POST",
                path: "/api/v1/device/status",
                body,
            };
            for now in [1_800_000_000, 0, -5] {
                assert!(
                    matches!(
                        verifier.verify_request("a", &secret, &message, &presented, now),
                        Err(ProtocolError::Stale { .. })
                    ),
                    "timestamp {timestamp} at {now}"
                );
            }
        }
    }

    #[test]
    fn a_response_is_bound_to_the_request_nonce() {
        let secret = Secret::new("s3cret");
        let verifier = Verifier::new(30);
        let body = br#"{"request_id":"r1","floor":2}"#;
        let signed = sign_response(
            &secret,
            200,
            "/api/v1/device/commands?wait=25",
            "n1",
            body,
            50,
        );
        let ts = signed.timestamp.to_string();
        let p = Presented {
            timestamp: Some(&ts),
            ..presented(&signed)
        };
        let path = "/api/v1/device/commands?wait=25";
        assert_eq!(
            verifier.verify_response(
                &secret,
                &Answer {
                    status: 200,
                    path,
                    body
                },
                "n1",
                &p,
                60
            ),
            Ok(())
        );
        assert_eq!(
            verifier.verify_response(
                &secret,
                &Answer {
                    status: 200,
                    path,
                    body
                },
                "n2",
                &p,
                60
            ),
            Err(ProtocolError::Replayed)
        );
        assert_eq!(
            verifier.verify_response(
                &secret,
                &Answer {
                    status: 204,
                    path,
                    body
                },
                "n1",
                &p,
                60
            ),
            Err(ProtocolError::BadSignature)
        );
    }

    /// The vectors the firmware's tests check too (`firmware/test/signature_vectors.txt`).
    #[test]
    fn signatures_match_the_vectors_shared_with_the_firmware() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/firmware/test/signature_vectors.txt"
        );
        let text = std::fs::read_to_string(path).expect("the shared vectors");
        let mut checked = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split('\t').collect();
            let [secret, method, path, timestamp, nonce, body, expected] = fields[..] else {
                panic!("a vector has 7 tab-separated fields: {line:?}");
            };
            let text = request_string(
                method,
                path,
                timestamp.parse().expect("ts"),
                nonce,
                body.as_bytes(),
            );
            assert_eq!(signature(&Secret::new(secret), &text), expected, "{line}");
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} vectors");
    }

    #[test]
    fn serial_lines_round_trip_and_nonsense_is_refused() {
        for text in ["MOVE r-1 2", "STATUS -1 moving 42"] {
            assert_eq!(SerialLine::parse(text).expect(text).to_string(), text);
        }
        for bad in [
            "",
            "MOVE",
            "MOVE a b",
            "STATUS 1 flying 2",
            "MOVE bad!id 2",
            "HELLO",
        ] {
            assert!(SerialLine::parse(bad).is_err(), "{bad}");
        }
        assert!(!valid_request_id(&"x".repeat(65)));
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(redacted)");
    }
}
