//! Push: the server POSTs each signed command to the device's `/lift/move` and checks the
//! signed answer; on a timeout or a broken connection it tries once more with the same
//! request id, which the device treats as the same command.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::LinkEvent;
use crate::clock::Clock;
use crate::lift::protocol::{self, MoveCommand, Presented, Secret, Verifier};
use crate::lift::{Device, LinkError};

const MOVE_PATH: &str = "/lift/move";

pub struct PushLink {
    inner: Arc<Pusher>,
}

struct Pusher {
    device: String,
    secret: Secret,
    url: String,
    http: reqwest::Client,
    verifier: Verifier,
    clock: Arc<dyn Clock>,
    events: UnboundedSender<LinkEvent>,
}

/// What one attempt came to.
enum Attempt {
    Answered(u16),
    /// Worth one more try with the same request id.
    Unreachable(String),
    /// Not worth retrying: the device does not trust us or we do not trust its answer.
    Rejected(String),
}

impl Attempt {
    /// Why one more try with the same request id may help, if it may.
    fn worth_retrying(&self) -> Option<String> {
        match self {
            Self::Unreachable(why) => Some(why.clone()),
            Self::Answered(202 | 409 | 422) | Self::Rejected(_) => None,
            Self::Answered(status) => Some(format!("status {status}")),
        }
    }
}

impl PushLink {
    pub fn new(
        device: &Device,
        base_url: &str,
        timeout: Duration,
        clock: Arc<dyn Clock>,
        events: UnboundedSender<LinkEvent>,
    ) -> Result<Self, LinkError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(LinkError::HttpClient)?;
        Ok(Self {
            inner: Arc::new(Pusher {
                device: device.name.clone(),
                secret: device.secret.clone(),
                url: format!("{}{MOVE_PATH}", base_url.trim_end_matches('/')),
                http,
                // answers are bound to our nonce; the window is the protocol's
                verifier: Verifier::new(30),
                clock,
                events,
            }),
        })
    }

    pub fn send(&self, command: MoveCommand) {
        tokio::spawn(Arc::clone(&self.inner).push(command));
    }
}

impl Pusher {
    async fn push(self: Arc<Self>, command: MoveCommand) {
        let mut attempt = self.attempt(&command).await;
        if let Some(why) = attempt.worth_retrying() {
            tracing::warn!(%why, request_id = %command.request_id, "device did not take the command; retrying");
            attempt = self.attempt(&command).await;
        }
        let request_id = command.request_id.clone();
        let refused = |reason: &str| LinkEvent::Refused {
            request_id: request_id.clone(),
            reason: reason.into(),
        };
        let failed = |reason: String| LinkEvent::Failed {
            request_id: request_id.clone(),
            reason,
        };
        let outcome = match attempt {
            Attempt::Answered(202) => None,
            Attempt::Answered(409) => Some(refused("busy")),
            Attempt::Answered(422) => Some(refused("no such floor")),
            Attempt::Answered(status) => Some(failed(format!(
                "the lift controller did not take the command (status {status})"
            ))),
            Attempt::Unreachable(why) => Some(failed(format!(
                "the lift controller did not answer ({why})"
            ))),
            Attempt::Rejected(why) => Some(failed(why)),
        };
        if let Some(event) = outcome {
            let _ = self.events.send(event);
        }
    }

    async fn attempt(&self, command: &MoveCommand) -> Attempt {
        let body = match serde_json::to_vec(command) {
            Ok(body) => body,
            Err(e) => return Attempt::Rejected(format!("cannot encode the command: {e}")),
        };
        let signed =
            protocol::sign_request(&self.secret, "POST", MOVE_PATH, &body, self.clock.now());
        let mut headers = http::HeaderMap::new();
        signed.insert_into(&mut headers);
        let response = self
            .http
            .post(&self.url)
            .headers(headers)
            .header(protocol::DEVICE_HEADER, &self.device)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Attempt::Unreachable("timed out".into()),
            Err(e) if e.is_connect() => return Attempt::Unreachable("cannot connect".into()),
            Err(_) => return Attempt::Unreachable("the connection failed".into()),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let Ok(answer) = response.bytes().await else {
            return Attempt::Unreachable("the answer was cut off".into());
        };
        let answer = protocol::Answer {
            status,
            path: MOVE_PATH,
            body: &answer,
        };
        let presented = Presented::from_headers(&headers);
        match self.verifier.verify_response(
            &self.secret,
            &answer,
            &signed.nonce,
            &presented,
            self.clock.now(),
        ) {
            Ok(()) => {
                let _ = self.events.send(LinkEvent::Answered {
                    command: command.clone(),
                    status,
                });
                Attempt::Answered(status)
            }
            Err(_) if status == 401 => Attempt::Rejected(
                "the lift controller refused our signature: check its secret".into(),
            ),
            Err(e) => Attempt::Rejected(format!(
                "the lift controller's answer failed its check ({e})"
            )),
        }
    }
}
