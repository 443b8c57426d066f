//! Who may go where and when: each person's profile (display name, home floor, floors, access
//! hours, visitor or resident), visitor passes, and the building's recall, which must outlast
//! a restart. The store keeps them; `access` decides with them.

use super::db::{DbError, OptionalRow, params};

use super::{Store, StoreError};

/// A person's access as an administrator set it; a person never edited is a resident who may
/// reach every floor at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// The name shown ("Ada Lovelace"); the folder name when none.
    pub display_name: Option<String>,
    /// Where a kiosk sends them, and a floor they may always reach.
    pub home_floor: Option<i32>,
    /// The floors they may reach; none: every floor.
    pub floors: Option<Vec<i32>>,
    /// When they may ride ("weekdays 07:00-20:00"); empty: at any time.
    pub hours: Vec<String>,
    /// A visitor reaches only what a current pass gives.
    pub visitor: bool,
}

/// Floors for one person until an expiry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct VisitorPass {
    pub id: i64,
    pub person: String,
    pub floors: Vec<i32>,
    /// Unix seconds
    pub valid_from: i64,
    pub expires_at: i64,
    pub issued_by: String,
    pub revoked: bool,
}

fn floors_json(floors: &[i32]) -> String {
    serde_json::to_string(floors).unwrap_or_else(|_| "[]".into())
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, column: usize) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::Column {
        column,
        problem: e.to_string(),
    })
}

impl Store {
    pub fn profile(&self, person: &str) -> Result<Profile, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT display_name, home_floor, floors, hours, visitor FROM person_profiles
                 WHERE person = ?1",
                params![person],
                |row| {
                    let floors: Option<String> = row.get(2)?;
                    let hours: String = row.get(3)?;
                    Ok(Profile {
                        display_name: row.get(0)?,
                        home_floor: row.get(1)?,
                        floors: floors.map(|f| parse_json(&f, 2)).transpose()?,
                        hours: parse_json(&hours, 3)?,
                        visitor: row.get(4)?,
                    })
                },
            )
            .optional()
        })
        .map(Option::unwrap_or_default)
    }

    pub fn set_profile(&self, person: &str, profile: &Profile) -> Result<(), StoreError> {
        let hours = serde_json::to_string(&profile.hours).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            c.execute(
                "INSERT INTO person_profiles
                     (person, display_name, home_floor, floors, hours, visitor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (person) DO UPDATE SET display_name = excluded.display_name,
                     home_floor = excluded.home_floor, floors = excluded.floors,
                     hours = excluded.hours, visitor = excluded.visitor",
                params![
                    person,
                    profile.display_name,
                    profile.home_floor,
                    profile.floors.as_deref().map(floors_json),
                    hours,
                    profile.visitor
                ],
            )
            .map(drop)
        })
    }

    /// Everyone's profile that was ever edited.
    pub fn profiles(&self) -> Result<Vec<(String, Profile)>, StoreError> {
        let names: Vec<String> = self.with(|c| {
            c.query_map(
                "SELECT person FROM person_profiles ORDER BY person",
                params![],
                |row| row.get(0),
            )
        })?;
        names
            .into_iter()
            .map(|name| {
                let profile = self.profile(&name)?;
                Ok((name, profile))
            })
            .collect()
    }

    /// Issues a pass; answers its id.
    pub fn issue_pass(
        &self,
        person: &str,
        floors: &[i32],
        valid_from: i64,
        expires_at: i64,
        issued_by: &str,
    ) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "INSERT INTO visitor_passes (person, floors, valid_from, expires_at, issued_by)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![
                    person,
                    floors_json(floors),
                    valid_from,
                    expires_at,
                    issued_by
                ],
                |row| row.get(0),
            )
        })
    }

    /// Ends a pass at `now`; answers whether there was one still in force.
    pub fn revoke_pass(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE visitor_passes SET revoked_at = ?2
                 WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![id, now],
            )
            .map(|changed| changed == 1)
        })
    }

    /// `person`'s passes that have not expired by `now` and are not revoked (including ones
    /// that start later), soonest first.
    pub fn passes(&self, person: &str, now: i64) -> Result<Vec<VisitorPass>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT id, person, floors, valid_from, expires_at, issued_by, revoked_at
                 FROM visitor_passes
                 WHERE person = ?1 AND expires_at > ?2 AND revoked_at IS NULL
                 ORDER BY valid_from, id",
                params![person, now],
                |row| {
                    let floors: String = row.get(2)?;
                    let revoked: Option<i64> = row.get(6)?;
                    Ok(VisitorPass {
                        id: row.get(0)?,
                        person: row.get(1)?,
                        floors: parse_json(&floors, 2)?,
                        valid_from: row.get(3)?,
                        expires_at: row.get(4)?,
                        issued_by: row.get(5)?,
                        revoked: revoked.is_some(),
                    })
                },
            )
        })
    }

    /// The floor of the fire-service recall in force, if one is.
    pub fn recall(&self) -> Result<Option<i32>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM building_state WHERE key = 'recall_floor'",
                params![],
                |row| row.get::<String>(0),
            )
            .optional()
        })
        .map(|value| value.and_then(|v| v.parse().ok()))
    }

    /// Sets or clears the recall; answers the floor it was before, read in the same
    /// transaction, so that of two instances changing it at once only one sees a change.
    pub fn set_recall(&self, floor: Option<i32>) -> Result<Option<i32>, StoreError> {
        self.with_transaction(|c| {
            let before = c
                .query_row(
                    "SELECT value FROM building_state WHERE key = 'recall_floor'",
                    params![],
                    |row| row.get::<String>(0),
                )
                .optional()?
                .and_then(|v| v.parse().ok());
            match floor {
                Some(floor) => c.execute(
                    "INSERT INTO building_state (key, value) VALUES ('recall_floor', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![floor.to_string()],
                )?,
                None => c.execute(
                    "DELETE FROM building_state WHERE key = 'recall_floor'",
                    params![],
                )?,
            };
            Ok(before)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_passes_and_the_recall_are_kept() {
        for store in crate::store::test_stores() {
            assert_eq!(store.profile("ada").expect("db"), Profile::default());
            let profile = Profile {
                display_name: Some("Ada Lovelace".into()),
                home_floor: Some(3),
                floors: Some(vec![0, 3]),
                hours: vec!["weekdays 07:00-20:00".into()],
                visitor: false,
            };
            store.set_profile("ada", &profile).expect("db");
            assert_eq!(store.profile("ada").expect("db"), profile);

            let first = store.issue_pass("bob", &[2], 100, 200, "ada").expect("db");
            let second = store.issue_pass("bob", &[3], 150, 300, "ada").expect("db");
            let ids = |now| -> Vec<i64> {
                store
                    .passes("bob", now)
                    .expect("db")
                    .iter()
                    .map(|p| p.id)
                    .collect()
            };
            assert_eq!(ids(120), [first, second]);
            assert_eq!(ids(200), [second], "expired at 200");
            assert!(store.revoke_pass(second, 210).expect("db"));
            assert!(
                !store.revoke_pass(second, 211).expect("db"),
                "already revoked"
            );
            assert!(ids(210).is_empty());

            assert_eq!(store.recall().expect("db"), None);
            assert_eq!(store.set_recall(Some(0)).expect("db"), None);
            assert_eq!(store.recall().expect("db"), Some(0));
            assert_eq!(
                store.set_recall(Some(0)).expect("db"),
                Some(0),
                "already on"
            );
            assert_eq!(store.set_recall(None).expect("db"), Some(0));
            assert_eq!(store.recall().expect("db"), None);
            assert_eq!(store.set_recall(None).expect("db"), None, "already off");

            store.forget_person("ada").expect("db");
            assert_eq!(store.profile("ada").expect("db"), Profile::default());
        }
    }
}
