//! Which floors a person may reach now: their floors during their hours, their home floor
//! and the building's public floors at any time, and what current visitor passes add. A
//! visitor has nothing without a current pass.

use jiff::tz::TimeZone;

use super::AccessError;
use super::hours::Hours;
use crate::config::Settings;
use crate::store::{AuditEntry, AuditKind, AuditOutcome, Profile, Store, StoreError, VisitorPass};

/// The longest visitor pass: a year.
pub const MAX_PASS_SECS: i64 = 366 * 24 * 3600;

/// The building's side of the rule.
#[derive(Clone, Debug)]
pub struct FloorRules {
    pub lowest: i32,
    pub highest: i32,
    /// Floors everyone with access may reach at any time (the way out).
    pub public_floors: Vec<i32>,
    pub zone: TimeZone,
}

impl FloorRules {
    /// The rules of the settings' building; an unknown time zone reads as UTC (the app refuses
    /// to start on one, so only a caller that skipped that check sees it).
    pub fn from_settings(settings: &Settings) -> Self {
        let (lowest, highest) = (
            settings.lift.lowest_floor,
            settings.lift.highest_floor.max(settings.lift.lowest_floor),
        );
        Self {
            lowest,
            highest,
            public_floors: settings
                .building
                .public_floors
                .clone()
                .unwrap_or_else(|| vec![lowest]),
            zone: super::hours::time_zone(&settings.building.time_zone).unwrap_or(TimeZone::UTC),
        }
    }

    pub fn in_building(&self, floor: i32) -> bool {
        (self.lowest..=self.highest).contains(&floor)
    }

    fn no_such_floor(&self, floor: i32) -> String {
        format!(
            "floor {floor} does not exist: floors go from {} to {}",
            self.lowest, self.highest
        )
    }
}

/// What a person may do now, as the panel and the kiosk show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FloorAccess {
    /// The name to greet them by (set by an administrator; else none).
    pub display_name: Option<String>,
    /// Any access at all (a visitor without a current pass has none).
    pub allowed: bool,
    /// The floors they may reach now, lowest first.
    pub floors: Vec<i32>,
    pub home_floor: Option<i32>,
    /// Their access hours ("weekdays 07:00-20:00"); empty: at any time.
    pub hours: Vec<String>,
    /// Outside their hours now: only the home and public floors (and passes) remain.
    pub outside_hours: bool,
    pub visitor: bool,
    /// When the current pass that ends last ends (Unix seconds).
    pub pass_expires_at: Option<i64>,
    /// The floors their own access gives during their hours, to tell "not now" from "never".
    #[serde(skip)]
    in_hours_floors: Vec<i32>,
}

impl FloorAccess {
    pub fn decide(rules: &FloorRules, profile: &Profile, passes: &[VisitorPass], now: i64) -> Self {
        let current: Vec<&VisitorPass> = passes
            .iter()
            .filter(|p| !p.revoked && p.valid_from <= now && now < p.expires_at)
            .collect();
        let hours = match Hours::parse(&profile.hours) {
            Ok(hours) => hours,
            Err(error) => {
                // written through the same parser, so only a hand-edited database gets here:
                // no hours then, rather than every hour
                tracing::error!(%error, "unreadable access hours: taken as never");
                Hours::parse(&["mon 00:00-00:01"]).unwrap_or_default()
            }
        };
        let in_hours = hours.contains(now, &rules.zone);
        let own: Vec<i32> = match (&profile.floors, profile.visitor) {
            (_, true) => Vec::new(),
            (Some(floors), false) => floors.clone(),
            (None, false) => (rules.lowest..=rules.highest).collect(),
        };
        let allowed = !profile.visitor || !current.is_empty();
        let mut floors: Vec<i32> = Vec::new();
        if allowed {
            floors.extend(&rules.public_floors);
            if !profile.visitor {
                floors.extend(profile.home_floor);
            }
            if in_hours {
                floors.extend(&own);
            }
            floors.extend(current.iter().flat_map(|p| p.floors.iter().copied()));
        }
        floors.retain(|f| rules.in_building(*f));
        floors.sort_unstable();
        floors.dedup();
        Self {
            display_name: profile.display_name.clone(),
            allowed,
            floors,
            home_floor: profile.home_floor,
            hours: hours.texts(),
            outside_hours: !in_hours,
            visitor: profile.visitor,
            pass_expires_at: current.iter().map(|p| p.expires_at).max(),
            in_hours_floors: own,
        }
    }

    pub fn may_reach(&self, floor: i32) -> bool {
        self.floors.contains(&floor)
    }

    /// Not now, but during their hours.
    pub fn only_outside_hours(&self, floor: i32) -> bool {
        self.outside_hours && !self.may_reach(floor) && self.in_hours_floors.contains(&floor)
    }
}

/// Checks and stores `person`'s new profile, audited as changed by `who`; answers it as kept
/// (hours written the canonical way, floors sorted). The web layer and the command line both
/// change access through here.
pub fn change_profile(
    store: &Store,
    rules: &FloorRules,
    person: &str,
    profile: Profile,
    who: &str,
    now: i64,
) -> Result<Profile, AccessError> {
    let bad = |why: String| AccessError::BadAccess(why);
    let mut profile = profile;
    profile.display_name = match profile.display_name.map(|n| n.trim().to_string()) {
        Some(name) if name.is_empty() => None,
        Some(name) if name.chars().count() > 80 || name.chars().any(char::is_control) => {
            return Err(bad(
                "a display name is at most 80 characters, without control characters".into(),
            ));
        }
        other => other,
    };
    let outside = |floor: &i32| !rules.in_building(*floor);
    if let Some(floor) = profile.home_floor.as_ref().filter(|f| outside(f)) {
        return Err(bad(rules.no_such_floor(*floor)));
    }
    if let Some(floors) = &mut profile.floors {
        if let Some(floor) = floors.iter().find(|f| outside(f)) {
            return Err(bad(rules.no_such_floor(*floor)));
        }
        floors.sort_unstable();
        floors.dedup();
    }
    profile.hours = Hours::parse(&profile.hours)
        .map_err(|e| bad(e.to_string()))?
        .texts();
    store.set_profile(person, &profile)?;
    store.audit(&AuditEntry {
        at: now,
        kind: AuditKind::Access,
        client: who.to_string(),
        person: Some(person.to_string()),
        similarity: None,
        outcome: AuditOutcome::AccessChanged,
        detail: Some(describe(&profile)),
    })?;
    Ok(profile)
}

/// A profile in one line, for the audit log.
fn describe(profile: &Profile) -> String {
    let list = |floors: &[i32]| {
        floors
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{}; floors {}; home {}; hours {}",
        if profile.visitor {
            "visitor"
        } else {
            "resident"
        },
        profile.floors.as_deref().map_or("all".into(), list),
        profile.home_floor.map_or("none".into(), |f| f.to_string()),
        if profile.hours.is_empty() {
            "any time".into()
        } else {
            profile.hours.join(", ")
        },
    )
}

/// Issues a pass for `floors` from `valid_from` to `expires_at`, audited.
pub fn issue_pass(
    store: &Store,
    rules: &FloorRules,
    person: &str,
    floors: &[i32],
    (valid_from, expires_at): (i64, i64),
    who: &str,
    now: i64,
) -> Result<VisitorPass, AccessError> {
    let bad = |why: String| AccessError::BadAccess(why);
    if floors.is_empty() {
        return Err(bad("a pass gives at least one floor".into()));
    }
    if let Some(floor) = floors.iter().find(|f| !rules.in_building(**f)) {
        return Err(bad(rules.no_such_floor(*floor)));
    }
    if expires_at <= now || expires_at <= valid_from {
        return Err(bad(
            "a pass must end after it starts, and in the future".into()
        ));
    }
    if expires_at - valid_from.max(now) > MAX_PASS_SECS {
        return Err(bad("a pass lasts a year at most".into()));
    }
    let mut floors = floors.to_vec();
    floors.sort_unstable();
    floors.dedup();
    let id = store.issue_pass(person, &floors, valid_from, expires_at, who)?;
    store.audit(&AuditEntry {
        at: now,
        kind: AuditKind::Access,
        client: who.to_string(),
        person: Some(person.to_string()),
        similarity: None,
        outcome: AuditOutcome::PassIssued,
        detail: Some(format!(
            "pass {id}: floors {floors:?} from {valid_from} until {expires_at}"
        )),
    })?;
    Ok(VisitorPass {
        id,
        person: person.to_string(),
        floors,
        valid_from,
        expires_at,
        issued_by: who.to_string(),
        revoked: false,
    })
}

/// Ends a pass now, audited; answers whether one was in force.
pub fn revoke_pass(store: &Store, id: i64, who: &str, now: i64) -> Result<bool, StoreError> {
    let revoked = store.revoke_pass(id, now)?;
    if revoked {
        store.audit(&AuditEntry {
            at: now,
            kind: AuditKind::Access,
            client: who.to_string(),
            person: None,
            similarity: None,
            outcome: AuditOutcome::PassRevoked,
            detail: Some(format!("pass {id}")),
        })?;
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> FloorRules {
        FloorRules {
            lowest: 0,
            highest: 9,
            public_floors: vec![0],
            zone: TimeZone::UTC,
        }
    }

    // Wednesday 2026-12-02 at 12:00 and at 23:00 UTC
    const NOON: i64 = 1_796_212_800;
    const NIGHT: i64 = NOON + 11 * 3600;

    fn pass(floors: &[i32], from: i64, until: i64) -> VisitorPass {
        VisitorPass {
            id: 1,
            person: "v".into(),
            floors: floors.to_vec(),
            valid_from: from,
            expires_at: until,
            issued_by: "admin".into(),
            revoked: false,
        }
    }

    #[test]
    fn a_resident_reaches_their_floors_in_hours_and_home_at_any_time() {
        let profile = Profile {
            home_floor: Some(7),
            floors: Some(vec![3, 7]),
            hours: vec!["weekdays 07:00-20:00".into()],
            ..Profile::default()
        };
        let noon = FloorAccess::decide(&rules(), &profile, &[], NOON);
        assert_eq!(noon.floors, [0, 3, 7]);
        assert!(!noon.may_reach(5));
        let night = FloorAccess::decide(&rules(), &profile, &[], NIGHT);
        assert_eq!(night.floors, [0, 7]);
        assert!(night.only_outside_hours(3));
        assert!(!night.only_outside_hours(5));
        let everyone = FloorAccess::decide(&rules(), &Profile::default(), &[], NIGHT);
        assert_eq!(everyone.floors, (0..=9).collect::<Vec<_>>());
    }

    #[test]
    fn a_visitor_has_what_a_current_pass_gives_until_it_ends() {
        let visitor = Profile {
            visitor: true,
            home_floor: Some(4),
            ..Profile::default()
        };
        let passes = [pass(&[5], NOON - 60, NOON + 3600)];
        let during = FloorAccess::decide(&rules(), &visitor, &passes, NOON);
        assert!(during.allowed);
        assert_eq!(during.floors, [0, 5]);
        assert_eq!(during.pass_expires_at, Some(NOON + 3600));
        let after = FloorAccess::decide(&rules(), &visitor, &passes, NOON + 3600);
        assert!(!after.allowed);
        assert!(after.floors.is_empty());
        let before = FloorAccess::decide(&rules(), &visitor, &passes, NOON - 61);
        assert!(!before.allowed, "a pass that has not started gives nothing");
    }
}
