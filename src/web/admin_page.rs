//! The administrators' page, built for a phone first: enrolment from the camera, the people
//! with their access and passes (editable in place), and the recent login attempts in words.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use super::extract::AdminUser;
use super::pages::{error_page, render};
use super::{AppState, WebError};
use crate::store::{AuditEntry, AuditKind, AuditOutcome, Disabled, Profile, VisitorPass};

/// What a login attempt came to, as a manager reads it.
fn outcome_in_words(outcome: AuditOutcome) -> &'static str {
    use AuditOutcome as O;
    match outcome {
        O::Recognized => "Logged in",
        O::NotRecognized => "Face not recognised",
        O::RateLimited => "Too many attempts: made to wait",
        O::NoFace => "No face in the picture",
        O::FaceTooSmall => "Face too far from the camera",
        O::BadImage => "Picture could not be read",
        O::Busy => "Server busy: asked to try again",
        O::Failed => "Server error (see the log)",
        O::LoginDisabled => "Refused: face login is off",
        O::PersonWait => "Refused: must wait after failed attempts",
        O::PadRefused => "Refused: looked like a photo or a screen",
        O::NoAccess => "Refused: no access now",
        _ => "Other",
    }
}

/// Where an attempt came from: a camera board by name, else the address.
fn client_in_words(client: &str) -> String {
    match client.strip_prefix("camera:") {
        Some(camera) => format!("camera {camera}"),
        None => client.to_string(),
    }
}

fn floors_text(floors: &[i32]) -> String {
    floors
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line saying what a person may do: "Floors 3, 7 · weekdays 07:00-20:00 · home 7".
fn access_summary(profile: &Profile) -> String {
    let mut parts = Vec::new();
    if profile.visitor {
        parts.push("Visitor: only the floors on a pass".to_string());
    } else {
        parts.push(match &profile.floors {
            Some(floors) if floors.is_empty() => "No floors".to_string(),
            Some(floors) => format!("Floors {}", floors_text(floors)),
            None => "Every floor".to_string(),
        });
        parts.push(if profile.hours.is_empty() {
            "any time".to_string()
        } else {
            profile.hours.join(", ")
        });
    }
    if let Some(home) = profile.home_floor {
        parts.push(format!("home {home}"));
    }
    parts.join(" · ")
}

/// Seconds in the building's time zone, as "Thu 3 Dec 18:00:05".
fn attempt_time(state: &AppState, unix: i64) -> String {
    let zone = crate::access::hours::time_zone(&state.settings.building.time_zone)
        .unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_zoned(zone).strftime("%a %-d %b %H:%M:%S").to_string())
        .unwrap_or_else(|_| format!("{unix} (Unix time)"))
}

type PeopleRecords = (
    Vec<AuditEntry>,
    HashMap<String, Disabled>,
    HashMap<String, Profile>,
    HashMap<String, Vec<VisitorPass>>,
);

pub async fn admin_page(
    admin: Result<AdminUser, WebError>,
    State(state): State<AppState>,
) -> Response {
    let user = match admin {
        Ok(AdminUser(user)) => user,
        Err(WebError::NotAdmin) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "This page is for the building's administrators.",
            );
        }
        Err(_) => return Redirect::to("/").into_response(),
    };
    let names: Vec<String> = match state.gallery() {
        Ok(gallery) => gallery.people().iter().map(|p| p.name.clone()).collect(),
        Err(error) => return error.into_response(),
    };
    let (store, now) = (state.store.clone(), state.clock.now());
    let read = tokio::task::spawn_blocking(move || -> Result<PeopleRecords, WebError> {
        let mut passes = HashMap::new();
        for name in &names {
            passes.insert(name.clone(), store.passes(name, now)?);
        }
        Ok((
            store.recent_audit(AuditKind::Login, 50)?,
            store.disabled_people()?.into_iter().collect(),
            store.profiles()?.into_iter().collect(),
            passes,
        ))
    })
    .await;
    let (attempts, off, profiles, passes) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(error)) => return error.into_response(),
        Err(error) => return WebError::from(error).into_response(),
    };
    let people: Vec<minijinja::Value> = match state.gallery() {
        Ok(gallery) => gallery
            .people()
            .iter()
            .map(|p| {
                let profile = profiles.get(&p.name).cloned().unwrap_or_default();
                let off = off.get(&p.name).map(|why| match why {
                    Disabled::ByAdmin => "Face login is off",
                    Disabled::AfterFailures => "Face login is off after failed attempts",
                });
                let passes: Vec<minijinja::Value> = passes
                    .get(&p.name)
                    .into_iter()
                    .flatten()
                    .filter(|pass| !pass.revoked)
                    .map(|pass| {
                        context! {
                            id => pass.id,
                            floors => floors_text(&pass.floors),
                            until => super::pages::local_time(&state, pass.expires_at),
                        }
                    })
                    .collect();
                context! {
                    name => p.name,
                    shown_name => profile.display_name.clone().unwrap_or_else(|| p.name.clone()),
                    photos => p.templates.len(),
                    face_login_off => off,
                    summary => access_summary(&profile),
                    display_name => profile.display_name,
                    home_floor => profile.home_floor,
                    floors => profile.floors.as_deref().map(floors_text),
                    hours => profile.hours.join("\n"),
                    visitor => profile.visitor,
                    passes,
                }
            })
            .collect(),
        Err(error) => return error.into_response(),
    };
    let attempts: Vec<minijinja::Value> = attempts
        .iter()
        .map(|a| {
            context! {
                time => attempt_time(&state, a.at),
                words => outcome_in_words(a.outcome),
                admitted => a.outcome == AuditOutcome::Recognized,
                client => client_in_words(&a.client),
                person => a.person,
                similarity => a.similarity.map(|s| format!("{:.0}%", s * 100.0)),
                detail => a.detail,
            }
        })
        .collect();
    render(
        "admin.html",
        context! {
            person => user.person, csrf_token => user.csrf_token, people, attempts,
            time_zone => state.settings.building.time_zone,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_reads_as_a_sentence() {
        assert_eq!(
            access_summary(&Profile::default()),
            "Every floor · any time"
        );
        let resident = Profile {
            floors: Some(vec![3, 7]),
            hours: vec!["weekdays 07:00-20:00".into()],
            home_floor: Some(7),
            ..Profile::default()
        };
        assert_eq!(
            access_summary(&resident),
            "Floors 3, 7 · weekdays 07:00-20:00 · home 7"
        );
        let visitor = Profile {
            visitor: true,
            ..Profile::default()
        };
        assert_eq!(
            access_summary(&visitor),
            "Visitor: only the floors on a pass"
        );
        assert_eq!(
            outcome_in_words(AuditOutcome::RateLimited),
            "Too many attempts: made to wait"
        );
        assert_eq!(client_in_words("camera:lobby-cam"), "camera lobby-cam");
    }
}
