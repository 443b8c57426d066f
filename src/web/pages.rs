//! The browser pages: minijinja templates from `templates/` and the scripts and styles from
//! `static/`, all built into the binary. A browser gets a redirect or an error page where the
//! API would answer JSON.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::{Environment, context};

use super::extract::CurrentUser;
use super::{AppState, WebError};
use crate::lift::{Floors, LiftStatus};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("lift.html", include_str!("../../templates/lift.html")),
    ("admin.html", include_str!("../../templates/admin.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("kiosk.html", include_str!("../../templates/kiosk.html")),
];

const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/login.js"),
    ),
    (
        "lift.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/lift.js"),
    ),
    ("favicon.svg", "image/svg+xml", FAVICON),
    (
        "kiosk.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/kiosk.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin.js"),
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(login_page))
        .route("/lift", get(lift_page))
        .route("/admin", get(super::admin_page::admin_page))
        .route("/static/{file}", get(static_file))
        .route("/favicon.ico", get(favicon))
        .route("/kiosk/{name}", get(kiosk_page))
}

fn templates() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(error) = environment.add_template(name, source) {
                tracing::error!(template = name, %error, "template does not compile");
            }
        }
        environment
    })
}

pub(super) fn render(name: &str, values: minijinja::Value) -> Response {
    match templates()
        .get_template(name)
        .and_then(|t| t.render(values))
    {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(template = name, %error, "rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown",
            )
                .into_response()
        }
    }
}

pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut response = render("error.html", context! { title, message });
    *response.status_mut() = status;
    response
}

/// Why the login page is shown again: `?bye=1` after logging out, `?ended=1` when a session
/// ended (it expired, or an administrator ended it).
#[derive(serde::Deserialize)]
struct LoginNotice {
    bye: Option<String>,
    ended: Option<String>,
}

async fn login_page(
    user: Result<CurrentUser, WebError>,
    State(state): State<AppState>,
    notice: Result<Query<LoginNotice>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = notice
        .ok()
        .map(|Query(n)| n)
        .and_then(|n| match (n.bye, n.ended) {
            (Some(_), _) => Some("You have logged out."),
            (None, Some(_)) => Some("Your session has ended. Look at the camera to log in again."),
            (None, None) => None,
        });
    match user {
        Ok(_) => Redirect::to("/lift").into_response(),
        Err(_) => match state.gallery() {
            Ok(gallery) => {
                let nobody_enrolled = gallery.people().is_empty();
                let pad = state.access.pad_mode().as_str();
                render("login.html", context! { nobody_enrolled, pad, notice })
            }
            Err(error) => error.into_response(),
        },
    }
}

async fn lift_page(
    user: Result<CurrentUser, WebError>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    let Ok(user) = user else {
        return Redirect::to(login_again(&headers)).into_response();
    };
    let access = match state.access.floor_access(&user.person).await {
        Ok(access) => access,
        Err(error) => return WebError::from(error).into_response(),
    };
    let building = Floors::of(&state.settings.lift);
    let lifts: Vec<LiftStatus> = state.lifts.cars().iter().map(|c| c.status()).collect();
    // the person's floors that some car stops at, as buttons
    let floors: Vec<minijinja::Value> = access
        .floors
        .iter()
        .filter(|f| {
            lifts
                .iter()
                .any(|l| l.floors.iter().any(|s| s.number == **f))
        })
        .map(|f| context! { number => f, name => building.name(*f) })
        .collect();
    let recall = state
        .lifts
        .recall()
        .map(|floor| context! { number => floor, name => building.name(floor) });
    let home = access
        .home_floor
        .map(|floor| context! { number => floor, name => building.name(floor) });
    render(
        "lift.html",
        context! {
            person => user.person,
            greeting => access.display_name.clone().unwrap_or_else(|| user.person.clone()),
            admin => user.admin,
            csrf_token => user.csrf_token,
            lifts,
            floors,
            home,
            recall,
            access,
            pass_until => access.pass_expires_at.map(|at| local_time(&state, at)),
            fault_advice => state.settings.building.fault_advice,
        },
    )
}

#[derive(serde::Deserialize)]
struct Pairing {
    key: Option<String>,
}

/// A lobby kiosk's page. Opened once with `?key=` (the link `facelift device add NAME --kiosk`
/// printed), it keeps the key as an HTTP-only cookie and drops it from the address.
async fn kiosk_page(
    Path(name): Path<String>,
    pairing: Result<Query<Pairing>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    let Ok(settings) = state.kiosks.settings(&name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such kiosk.",
        );
    };
    if let Some(key) = pairing.ok().and_then(|Query(p)| p.key) {
        if !state.kiosks.key_matches(&name, &key) {
            return error_page(
                StatusCode::UNAUTHORIZED,
                "Not paired",
                "This pairing link is not this kiosk's: ask the building manager for a new one.",
            );
        }
        // marked Secure over HTTPS by the security headers' layer, as every cookie is
        let cookie = format!(
            "{}={key}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000",
            super::kiosk_api::cookie_name(&name)
        );
        let mut response = Redirect::to(&format!("/kiosk/{name}")).into_response();
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    if super::kiosk_api::paired(&state, &name, &headers).is_err() {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Not paired",
            "Open this kiosk's pairing link once on this tablet: `facelift device add NAME --kiosk` printed it.",
        );
    }
    render(
        "kiosk.html",
        context! {
            kiosk => name,
            return_after_secs => settings.return_after_secs,
            challenge => state.access.pad_mode() == crate::config::PadMode::Challenge,
        },
    )
}

/// Where a page sends someone not logged in: the login page, saying that their session
/// ended when their browser still held one.
fn login_again(headers: &HeaderMap) -> &'static str {
    let held_session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|cookies| cookies.contains(super::SESSION_COOKIE));
    if held_session { "/?ended=1" } else { "/" }
}

/// A Unix time in the building's time zone, as a resident reads it: "Thu 3 Dec 18:00".
pub(super) fn local_time(state: &AppState, unix: i64) -> String {
    let zone = crate::access::hours::time_zone(&state.settings.building.time_zone)
        .unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_zoned(zone).strftime("%a %-d %b %H:%M").to_string())
        .unwrap_or_else(|_| format!("{unix} (Unix time)"))
}

/// Browsers ask for it whatever the page says.
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

const FAVICON: &str = include_str!("../../static/favicon.svg");

async fn static_file(Path(file): Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type)], *body).into_response()
        }
        None => error_page(StatusCode::NOT_FOUND, "Not found", "There is no such file."),
    }
}
