//! The OpenAPI 3.1 document of the HTTP API, at `GET /api/v1/openapi.json`. Every route
//! is registered together with its `#[utoipa::path]` description (`utoipa_axum::routes!`), so
//! the document is generated from the same handlers and types that answer.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, CSRF_HEADER, SESSION_COOKIE};
use crate::lift::protocol::SIGNATURE_HEADER;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "facelift",
        description = "Face login for a lift, and the lift's controls. Errors are answered as \
                       `{\"error\": code, \"message\": text}`."
    ),
    tags(
        (name = "login", description = "Face login and the session"),
        (name = "faces", description = "Recognition on uploaded photos"),
        (name = "people", description = "The enrolled people (administrators)"),
        (name = "lift", description = "The lift: status, moves, live events"),
        (name = "access", description = "Who may go where and when: access and visitor passes (administrators)"),
        (name = "tokens", description = "Bearer tokens for machines and scripts: issue, refresh, revoke; signing keys (administrators)"),
        (name = "kiosk", description = "A lobby kiosk's page: start a login at its camera, follow it, book a ride"),
        (name = "device", description = "The lift controllers' and camera boards' side (signed messages)"),
        (name = "system", description = "Health, metrics and this document"),
    ),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The ways a request is authenticated.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                "session",
                ApiKey::Cookie(ApiKeyValue::with_description(
                    SESSION_COOKIE,
                    "set by a face login",
                )),
            ),
            (
                "csrf",
                ApiKey::Header(ApiKeyValue::with_description(
                    CSRF_HEADER,
                    "the login's `csrf_token`, required on every change",
                )),
            ),
            (
                "device",
                ApiKey::Header(ApiKeyValue::with_description(
                    SIGNATURE_HEADER,
                    "HMAC-SHA256 over the device, timestamp, nonce, method, path and body \
                     (firmware/PROTOCOL.md)",
                )),
            ),
            (
                "kiosk",
                ApiKey::Cookie(ApiKeyValue::with_description(
                    "facelift_kiosk_NAME",
                    "the paired kiosk's key, set by opening its pairing link",
                )),
            ),
        ];
        for (name, key) in schemes {
            components.add_security_scheme(name, SecurityScheme::ApiKey(key));
        }
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "an access token from POST /api/v1/tokens; its scopes (lift:read, \
                         lift:move, admin) limit what it may do",
                    ))
                    .build(),
            ),
        );
    }
}

/// The router to merge the API's routes into: it carries the document's title and schemes.
pub fn base() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(document))
}

/// The document, generated once from the routes.
pub fn openapi() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, mut openapi) = super::routes(0, std::time::Duration::ZERO).split_for_parts();
        let untimed = super::untimed_routes().into_openapi();
        add_timeouts(&mut openapi, |path| untimed.paths.paths.contains_key(path));
        openapi
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"internal\", \"message\": \"{e}\"}}"))
    })
}

/// Every route under the request timeout may also answer 408 (with no body).
fn add_timeouts(openapi: &mut utoipa::openapi::OpenApi, untimed: impl Fn(&str) -> bool) {
    for (path, item) in &mut openapi.paths.paths {
        if untimed(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            operation.responses.responses.insert(
                "408".into(),
                Response::new("the request took longer than `web.request_timeout_secs`").into(),
            );
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi())
}
