//! Bearer tokens' state: the signing keys by id (a replaced key still verifies for a while),
//! refresh tokens (filed under their hash, each good for one refresh), and revoked token or
//! family ids, kept until the tokens they name would have expired anyway.

use super::db::{Conn, DbError, OptionalRow, params};

use super::{Store, StoreError};

/// A signing key's secret; never printed.
#[derive(Clone)]
pub struct KeySecret(pub Vec<u8>);

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySecret(redacted)")
    }
}

#[derive(Clone, Debug)]
pub struct TokenKey {
    pub kid: String,
    pub secret: KeySecret,
    pub created_at: i64,
    /// when a newer key took over signing; none: this key signs
    pub replaced_at: Option<i64>,
}

/// A refresh token as filed (under the SHA-256 of the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRow {
    pub family: String,
    pub subject: String,
    pub kind: String,
    pub scope: String,
    pub expires_at: i64,
}

/// What presenting a refresh token came to.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// good: it is now used up
    Redeemed(RefreshRow),
    Unknown,
    Expired,
    /// used before, or its family revoked: the family is revoked now (a reuse means the token
    /// was copied)
    Refused {
        family: String,
        reused: bool,
    },
}

fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Every key that may verify, newest first.
    pub fn token_keys(&self) -> Result<Vec<TokenKey>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT kid, secret, created_at, replaced_at FROM token_keys
                 ORDER BY replaced_at IS NOT NULL, created_at DESC",
                params![],
                |row| {
                    Ok(TokenKey {
                        kid: row.get(0)?,
                        secret: KeySecret(row.get(1)?),
                        created_at: row.get(2)?,
                        replaced_at: row.get(3)?,
                    })
                },
            )
        })
    }

    /// `key` signs from now on; the key that signed until now is marked replaced.
    pub fn add_token_key(&self, key: &TokenKey) -> Result<(), StoreError> {
        self.with_transaction(|transaction| {
            transaction.execute(
                "UPDATE token_keys SET replaced_at = ?1 WHERE replaced_at IS NULL",
                params![key.created_at],
            )?;
            transaction.execute(
                "INSERT INTO token_keys (kid, secret, created_at) VALUES (?1, ?2, ?3)",
                params![key.kid, key.secret.0, key.created_at],
            )?;
            Ok(())
        })
    }

    /// Deletes a key: tokens it signed are refused from now on. Whether it existed.
    pub fn delete_token_key(&self, kid: &str) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM token_keys WHERE kid = ?1", params![kid])? > 0))
    }

    pub fn save_refresh_token(&self, token: &str, row: &RefreshRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO refresh_tokens (hash, family, subject, kind, scope, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    token_hash(token),
                    row.family,
                    row.subject,
                    row.kind,
                    row.scope,
                    row.expires_at
                ],
            )?;
            Ok(())
        })
    }

    /// Uses up a refresh token, in one transaction so two refreshes with one token cannot
    /// both succeed. A token used before revokes its whole family until `family_until`.
    pub fn redeem_refresh_token(
        &self,
        token: &str,
        now: i64,
        family_until: i64,
    ) -> Result<RefreshUse, StoreError> {
        self.with_transaction(|transaction| {
            let found = transaction
                .query_row(
                    "SELECT family, subject, kind, scope, expires_at, used_at, revoked_at
                     FROM refresh_tokens WHERE hash = ?1",
                    params![token_hash(token)],
                    |row| {
                        Ok((
                            RefreshRow {
                                family: row.get(0)?,
                                subject: row.get(1)?,
                                kind: row.get(2)?,
                                scope: row.get(3)?,
                                expires_at: row.get(4)?,
                            },
                            row.get::<Option<i64>>(5)?,
                            row.get::<Option<i64>>(6)?,
                        ))
                    },
                )
                .optional()?;
            let answer = match found {
                None => RefreshUse::Unknown,
                Some((row, used, revoked)) if used.is_some() || revoked.is_some() => {
                    revoke_family(transaction, &row.family, now, family_until)?;
                    RefreshUse::Refused {
                        family: row.family,
                        reused: revoked.is_none(),
                    }
                }
                Some((row, ..)) if row.expires_at <= now => RefreshUse::Expired,
                Some((row, ..)) => {
                    transaction.execute(
                        "UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1",
                        params![token_hash(token), now],
                    )?;
                    RefreshUse::Redeemed(row)
                }
            };
            Ok(answer)
        })
    }

    /// The family a refresh token belongs to, if it is one of ours.
    pub fn refresh_token_family(&self, token: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT family FROM refresh_tokens WHERE hash = ?1",
                params![token_hash(token)],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Revokes every refresh token of a family, and the family's access tokens (by their
    /// `fam` claim) until `until`.
    pub fn revoke_token_family(
        &self,
        family: &str,
        now: i64,
        until: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| revoke_family(c, family, now, until))
    }

    /// Revokes one access token by its id until it would have expired.
    pub fn revoke_token(&self, id: &str, until: i64) -> Result<(), StoreError> {
        self.with(|c| insert_revocation(c, id, until))
    }

    /// Whether any of `ids` (a token's id, its family) is revoked.
    pub fn any_token_revoked(&self, ids: &[&str]) -> Result<bool, StoreError> {
        self.with(|c| {
            for id in ids {
                let found = c.query("SELECT 1 FROM revoked_tokens WHERE id = ?1", params![id])?;
                if !found.is_empty() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    /// Rows on the revocation list (for the cleaner's log and its test).
    pub fn revoked_token_count(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            c.query_row("SELECT count(*) FROM revoked_tokens", params![], |row| {
                row.get(0)
            })
        })
    }

    /// Deletes what can no longer matter: revocations and refresh tokens past their expiry,
    /// and keys replaced more than `key_grace` seconds ago. Answers how many rows went.
    pub fn delete_expired_tokens(&self, now: i64, key_grace: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            let revocations = c.execute(
                "DELETE FROM revoked_tokens WHERE expires_at <= ?1",
                params![now],
            )?;
            let refresh = c.execute(
                "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
                params![now],
            )?;
            let keys = c.execute(
                "DELETE FROM token_keys WHERE replaced_at IS NOT NULL AND replaced_at + ?2 <= ?1",
                params![now, key_grace],
            )?;
            Ok(revocations + refresh + keys)
        })
    }
}

fn revoke_family(c: &dyn Conn, family: &str, now: i64, until: i64) -> Result<(), DbError> {
    c.execute(
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family = ?1 AND revoked_at IS NULL",
        params![family, now],
    )?;
    insert_revocation(c, family, until)
}

/// Puts `id` on the revocation list until `until` (a later date wins).
fn insert_revocation(c: &dyn Conn, id: &str, until: i64) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO revoked_tokens (id, expires_at) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET expires_at = CASE
             WHEN excluded.expires_at > revoked_tokens.expires_at THEN excluded.expires_at
             ELSE revoked_tokens.expires_at END",
        params![id, until],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(family: &str) -> RefreshRow {
        RefreshRow {
            family: family.into(),
            subject: "ada".into(),
            kind: "person".into(),
            scope: "lift:read".into(),
            expires_at: 1_000,
        }
    }

    #[test]
    fn a_refresh_token_is_good_once_and_a_second_use_revokes_its_family() {
        for store in crate::store::test_stores() {
            store.save_refresh_token("r1", &row("f1")).expect("store");
            assert_eq!(
                store.redeem_refresh_token("r1", 10, 700).expect("store"),
                RefreshUse::Redeemed(row("f1"))
            );
            assert!(!store.any_token_revoked(&["f1"]).expect("store"));
            assert_eq!(
                store.redeem_refresh_token("r1", 11, 700).expect("store"),
                RefreshUse::Refused {
                    family: "f1".into(),
                    reused: true
                }
            );
            assert!(store.any_token_revoked(&["x", "f1"]).expect("store"));
            assert_eq!(
                store.redeem_refresh_token("nope", 11, 700).expect("store"),
                RefreshUse::Unknown
            );
            store.save_refresh_token("r2", &row("f2")).expect("store");
            assert_eq!(
                store
                    .redeem_refresh_token("r2", 1_000, 1_600)
                    .expect("store"),
                RefreshUse::Expired
            );
            // revocations and refresh tokens go once they no longer matter
            assert_eq!(store.revoked_token_count().expect("store"), 1);
            assert_eq!(store.delete_expired_tokens(700, 600).expect("store"), 1);
            assert_eq!(store.delete_expired_tokens(1_000, 600).expect("store"), 2);
        }
    }

    #[test]
    fn a_new_key_takes_over_signing_and_the_old_one_goes_after_its_grace() {
        for store in crate::store::test_stores() {
            let key = |kid: &str, at| TokenKey {
                kid: kid.into(),
                secret: KeySecret(vec![7; 32]),
                created_at: at,
                replaced_at: None,
            };
            store.add_token_key(&key("k1", 100)).expect("store");
            store.add_token_key(&key("k2", 200)).expect("store");
            let keys = store.token_keys().expect("store");
            assert_eq!(keys[0].kid, "k2");
            assert_eq!(keys[0].replaced_at, None);
            assert_eq!(keys[1].replaced_at, Some(200));
            assert_eq!(format!("{:?}", keys[0].secret), "KeySecret(redacted)");
            assert_eq!(store.delete_expired_tokens(799, 600).expect("store"), 0);
            assert_eq!(store.delete_expired_tokens(800, 600).expect("store"), 1);
            assert!(!store.delete_token_key("k1").expect("store"));
            assert!(store.delete_token_key("k2").expect("store"));
        }
    }
}
