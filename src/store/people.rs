//! Whether each person may log in with their face: disabled by an administrator, or after too
//! many failed attempts near them in a row; and the end of their sessions.

use super::db::{Conn, DbError, Dialect, OptionalRow, params};

use super::{Store, StoreError};

/// How long a trusted browser stays trusted: its cookie's lifetime.
pub const TRUSTED_BROWSER_SECS: i64 = 365 * 24 * 3600;
/// A person's phones, tablets and the kiosks they use, with room to spare.
pub const TRUSTED_BROWSERS_PER_PERSON: i64 = 20;

/// Why a person's face login is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disabled {
    /// an administrator turned it off
    ByAdmin,
    /// too many failed attempts near this person in a row (NIST SP 800-63B-4's 50, or 100 with
    /// presentation attack detection)
    AfterFailures,
}

impl Disabled {
    pub fn as_str(self) -> &'static str {
        match self {
            Disabled::ByAdmin => "by_admin",
            Disabled::AfterFailures => "after_failures",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "after_failures" => Disabled::AfterFailures,
            _ => Disabled::ByAdmin,
        }
    }
}

/// A person's standing; a person never mentioned is enabled with no failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub disabled: Option<Disabled>,
    /// failed attempts near this person since their last success
    pub failures_in_a_row: u32,
    /// Unix seconds of the last of them
    pub last_failure: i64,
}

impl Store {
    pub fn standing(&self, person: &str) -> Result<Standing, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT disabled, failures_in_a_row, last_failure FROM person_access
                 WHERE person = ?1",
                params![person],
                |row| {
                    let disabled: Option<String> = row.get(0)?;
                    Ok(Standing {
                        disabled: disabled.as_deref().map(Disabled::parse),
                        failures_in_a_row: row.get(1)?,
                        last_failure: row.get(2)?,
                    })
                },
            )
            .optional()
        })
        .map(Option::unwrap_or_default)
    }

    /// Turns a person's face login off (ending their sessions) or on again (forgetting their
    /// failures).
    pub fn set_disabled(&self, person: &str, disabled: Option<Disabled>) -> Result<(), StoreError> {
        self.with_transaction(|transaction| {
            transaction.execute(
                "INSERT INTO person_access (person, disabled) VALUES (?1, ?2)
                 ON CONFLICT (person) DO UPDATE SET disabled = ?2,
                     failures_in_a_row = CASE WHEN ?2 IS NULL THEN 0
                         ELSE person_access.failures_in_a_row END",
                params![person, disabled.map(Disabled::as_str)],
            )?;
            if disabled.is_some() {
                delete_sessions_of(transaction, person)?;
            }
            Ok(())
        })
    }

    /// Counts a failed attempt near `person` at `now`; at `disable_after` in a row their face
    /// login is turned off. Answers their standing after it.
    pub fn person_failed(
        &self,
        person: &str,
        now: i64,
        disable_after: u32,
    ) -> Result<Standing, StoreError> {
        self.with_transaction(|transaction| {
            transaction.execute(
                "INSERT INTO person_access (person, failures_in_a_row, last_failure)
                 VALUES (?1, 1, ?2)
                 ON CONFLICT (person) DO UPDATE SET
                     failures_in_a_row = person_access.failures_in_a_row + 1, last_failure = ?2",
                params![person, now],
            )?;
            transaction.execute(
                "UPDATE person_access SET disabled = ?3
                 WHERE person = ?1 AND disabled IS NULL AND failures_in_a_row >= ?2",
                params![person, disable_after, Disabled::AfterFailures.as_str()],
            )?;
            Ok(())
        })?;
        self.standing(person)
    }

    /// A success forgets the failures in a row.
    pub fn person_succeeded(&self, person: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE person_access SET failures_in_a_row = 0 WHERE person = ?1",
                params![person],
            )
        })
        .map(|_| ())
    }

    /// The people whose face login is off, and why.
    pub fn disabled_people(&self) -> Result<Vec<(String, Disabled)>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT person, disabled FROM person_access WHERE disabled IS NOT NULL
                 ORDER BY person",
                params![],
                |row| {
                    let reason: String = row.get(1)?;
                    Ok((row.get(0)?, Disabled::parse(&reason)))
                },
            )
        })
    }

    /// Forgets a removed person: their standing, access, passes and sessions.
    pub fn forget_person(&self, person: &str) -> Result<(), StoreError> {
        self.with_transaction(|transaction| {
            for table in ["person_access", "person_profiles", "visitor_passes"] {
                transaction.execute(
                    &format!("DELETE FROM {table} WHERE person = ?1"),
                    params![person],
                )?;
            }
            delete_sessions_of(transaction, person)?;
            transaction.execute(
                "DELETE FROM trusted_browsers WHERE person = ?1",
                params![person],
            )?;
            Ok(())
        })
    }

    /// Remembers a browser that `person` logged in from; answers the token for its cookie
    /// (only its hash is kept). Tokens older than their cookie are forgotten on the way, and
    /// a person keeps at most `TRUSTED_BROWSERS_PER_PERSON` (the oldest go first), so that
    /// logins from clients that drop cookies do not grow the table.
    pub fn trust_browser(&self, person: &str, now: i64) -> Result<String, StoreError> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.with(|c| {
            c.execute(
                "DELETE FROM trusted_browsers WHERE created_at <= ?1",
                params![now - TRUSTED_BROWSER_SECS],
            )?;
            c.execute(
                "INSERT INTO trusted_browsers (token_sha256, person, created_at)
                 VALUES (?1, ?2, ?3)",
                params![token_hash(&token), person, now],
            )?;
            c.execute(
                "DELETE FROM trusted_browsers WHERE person = ?1 AND token_sha256 NOT IN
                 (SELECT token_sha256 FROM trusted_browsers WHERE person = ?1
                  ORDER BY created_at DESC LIMIT ?2)",
                params![person, TRUSTED_BROWSERS_PER_PERSON],
            )
        })?;
        Ok(token)
    }

    /// Remembers the face hashes of an accepted login burst, and forgets those remembered
    /// more than `keep_secs` ago.
    pub fn remember_faces(
        &self,
        hashes: &[u64],
        now: i64,
        keep_secs: i64,
    ) -> Result<(), StoreError> {
        self.with_transaction(|transaction| {
            transaction.execute(
                "DELETE FROM seen_faces WHERE at < ?1",
                params![now.saturating_sub(keep_secs)],
            )?;
            for hash in hashes {
                // the 64 bits as SQLite's signed integer
                transaction.execute(
                    "INSERT INTO seen_faces (at, hash) VALUES (?1, ?2)",
                    params![now, *hash as i64],
                )?;
            }
            Ok(())
        })
    }

    /// The face hashes remembered at `since` or later, oldest first.
    pub fn faces_since(&self, since: i64) -> Result<Vec<(i64, u64)>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT at, hash FROM seen_faces WHERE at >= ?1 ORDER BY at",
                params![since],
                |row| Ok((row.get::<i64>(0)?, row.get::<i64>(1)? as u64)),
            )
        })
    }

    /// The person a trusted browser's token was given to, if it is one.
    pub fn trusted_browser(&self, token: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT person FROM trusted_browsers WHERE token_sha256 = ?1",
                params![token_hash(token)],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Ends every session of `person`; answers how many there were.
    pub fn end_sessions_of(&self, person: &str) -> Result<usize, StoreError> {
        self.with(|c| delete_sessions_of(c, person))
    }
}

fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The sessions hold tower-sessions' record data as JSON: `{"user": {"person": ...}}`.
fn delete_sessions_of(c: &dyn Conn, person: &str) -> Result<usize, DbError> {
    let sql = match c.dialect() {
        Dialect::Sqlite => "DELETE FROM sessions WHERE json_extract(data, '$.user.person') = ?1",
        Dialect::Postgres => "DELETE FROM sessions WHERE data::jsonb #>> '{user,person}' = ?1",
    };
    c.execute(sql, params![person])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_of(store: &Store, id: &str, person: &str) {
        let data = format!(r#"{{"user":{{"person":"{person}","admin":false}}}}"#);
        store
            .session_save(id, &data, i64::MAX, true)
            .expect("session");
    }

    fn alive(store: &Store, id: &str) -> bool {
        store.session_load(id, 0).expect("load").is_some()
    }

    #[test]
    fn disabling_ends_only_that_persons_sessions_and_enabling_forgets_the_failures() {
        for store in crate::store::test_stores() {
            session_of(&store, "s1", "ann");
            session_of(&store, "s2", "ann");
            session_of(&store, "s3", "bob");
            store.person_failed("ann", 10, 50).expect("failure");
            store
                .set_disabled("ann", Some(Disabled::ByAdmin))
                .expect("disable");
            assert!(!alive(&store, "s1") && !alive(&store, "s2"), "ann's ended");
            assert!(alive(&store, "s3"), "bob's kept");
            let standing = store.standing("ann").expect("standing");
            assert_eq!(standing.disabled, Some(Disabled::ByAdmin));
            assert_eq!(standing.failures_in_a_row, 1);

            store.set_disabled("ann", None).expect("enable");
            assert_eq!(
                store.standing("ann").expect("standing"),
                Standing {
                    disabled: None,
                    failures_in_a_row: 0,
                    last_failure: 10,
                }
            );
        }
    }

    #[test]
    fn failures_in_a_row_turn_face_login_off_at_the_limit_and_a_success_resets_them() {
        for store in crate::store::test_stores() {
            for now in 1..=4 {
                store.person_failed("ann", now, 5).expect("failure");
            }
            store.person_succeeded("ann").expect("success");
            assert_eq!(store.standing("ann").expect("s").failures_in_a_row, 0);
            for now in 1..=4 {
                let standing = store.person_failed("ann", now, 5).expect("failure");
                assert_eq!(standing.disabled, None);
            }
            session_of(&store, "s1", "ann");
            let standing = store.person_failed("ann", 9, 5).expect("failure");
            assert_eq!(standing.disabled, Some(Disabled::AfterFailures));
            assert_eq!(standing.last_failure, 9);
            assert_eq!(
                store.disabled_people().expect("list"),
                vec![("ann".to_string(), Disabled::AfterFailures)]
            );
            let token = store.trust_browser("ann", 100).expect("trust");
            assert_eq!(
                store.trusted_browser(&token).expect("read").as_deref(),
                Some("ann")
            );
            store
                .trust_browser("bob", 100 + TRUSTED_BROWSER_SECS)
                .expect("trust");
            assert_eq!(
                store.trusted_browser(&token).expect("read"),
                None,
                "a year on"
            );
            // a client that drops its cookie gets a new token at every login: the oldest go
            let first = store.trust_browser("cy", 200).expect("trust");
            let mut last = String::new();
            for i in 1..=TRUSTED_BROWSERS_PER_PERSON {
                last = store.trust_browser("cy", 200 + i).expect("trust");
            }
            assert_eq!(store.trusted_browser(&first).expect("read"), None);
            assert_eq!(
                store.trusted_browser(&last).expect("read").as_deref(),
                Some("cy")
            );
            store
                .remember_faces(&[u64::MAX, 7], 1_000, 100)
                .expect("faces");
            store.remember_faces(&[9], 1_050, 100).expect("faces");
            assert_eq!(
                store.faces_since(1_000).expect("faces"),
                vec![(1_000, u64::MAX), (1_000, 7), (1_050, 9)]
            );
            store.remember_faces(&[], 1_101, 100).expect("faces");
            assert_eq!(store.faces_since(0).expect("faces"), vec![(1_050, 9)]);
            store.forget_person("ann").expect("forget");
            assert_eq!(store.standing("ann").expect("s"), Standing::default());
            assert!(!alive(&store, "s1"), "a removed person's sessions end");
        }
    }
}
