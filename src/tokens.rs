//! Bearer tokens for machines and scripts: a short-lived signed JWT (HS256, the key named by
//! its `kid`) with scopes, and an opaque refresh token good for one refresh. Keys, refresh
//! tokens and revocations live in the store, so every instance and every restart agrees.
//!
//! Rotation: a new key signs from the moment it is made; a replaced key still verifies for one
//! access-token lifetime, so no one holding a token is logged out. Withdrawing a key refuses
//! its tokens at once (a leaked key). A refresh token presented twice was copied: its whole
//! family (every token refreshed from the same grant) is revoked.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::TokenSettings;
use crate::store::{
    AuditEntry, AuditKind, AuditOutcome, KeySecret, RefreshRow, RefreshUse, Store, StoreError,
    TokenKey,
};

/// An audit row of kind `access` for a token event; a failure to write is logged, not the
/// event's failure.
fn audit(
    store: &Store,
    at: i64,
    client: &str,
    person: Option<&str>,
    outcome: AuditOutcome,
    detail: String,
) {
    let entry = AuditEntry {
        at,
        kind: AuditKind::Access,
        client: client.to_string(),
        person: person.map(str::to_string),
        similarity: None,
        outcome,
        detail: Some(detail),
    };
    if let Err(error) = store.audit(&entry) {
        tracing::warn!(%error, "could not write a token audit row");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not valid here")]
    Invalid,
    #[error("the token has expired; refresh it or ask for a new one")]
    Expired,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the refresh token is not valid")]
    BadRefresh,
    #[error("a refresh token was used twice, so every token from its grant is revoked")]
    RefreshReused,
    #[error("unknown scope {0:?}: the scopes are lift:read, lift:move and admin")]
    UnknownScope(String),
    #[error("this token may not have the scope {0}")]
    ScopeNotAllowed(Scope),
    #[error("this request needs a token with the scope {0}")]
    InsufficientScope(Scope),
    #[error("no signing key {0:?}")]
    NoSuchKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the database task stopped: {0}")]
    Task(String),
    #[error("signing: {0}")]
    Signing(String),
}

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// see the lifts and their events
    LiftRead,
    /// call a lift (and, for a kiosk, start logins and book rides)
    LiftMove,
    /// the administrators' routes
    Admin,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::LiftRead, Scope::LiftMove, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LiftRead => "lift:read",
            Scope::LiftMove => "lift:move",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, written as OAuth writes them: space-separated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    pub fn parse(text: &str) -> Result<Self, TokenError> {
        text.split_whitespace()
            .map(|word| {
                Scope::ALL
                    .into_iter()
                    .find(|s| s.as_str() == word)
                    .ok_or_else(|| TokenError::UnknownScope(word.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|scopes| Self::of(&scopes))
    }

    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// `self`, if every scope in it is in `allowed`.
    pub fn within(self, allowed: Scopes) -> Result<Self, TokenError> {
        match Scope::ALL
            .into_iter()
            .find(|s| self.has(*s) && !allowed.has(*s))
        {
            Some(scope) => Err(TokenError::ScopeNotAllowed(scope)),
            None => Ok(self),
        }
    }

    pub fn require(self, scope: Scope) -> Result<(), TokenError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(TokenError::InsufficientScope(scope))
        }
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<_> = Scope::ALL
            .into_iter()
            .filter(|s| self.has(*s))
            .map(Scope::as_str)
            .collect();
        f.write_str(&words.join(" "))
    }
}

/// Who a token speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// an enrolled person (their rights are read afresh on every use)
    Person,
    /// a registered kiosk
    Kiosk,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
}

/// The access token's claims.
#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    kind: SubjectKind,
    scope: String,
    iat: i64,
    exp: i64,
    /// this token's id, for revoking it alone
    jti: String,
    /// the grant it descends from, for revoking every token refreshed from it
    fam: String,
}

/// A token that verified: whose it is and what it may do.
#[derive(Clone, Debug)]
pub struct Verified {
    pub subject: Subject,
    pub scopes: Scopes,
    pub expires_at: i64,
}

/// A token pair, answered as OAuth 2.0 answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Issued {
    pub access_token: String,
    /// always "Bearer"
    pub token_type: &'static str,
    /// seconds until the access token expires
    pub expires_in: u64,
    /// good for one `grant_type: refresh_token` request
    pub refresh_token: String,
    /// the scopes granted, space-separated
    pub scope: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// A signing key as an administrator sees it (never its secret).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub kid: String,
    pub created_at: i64,
    /// when a newer key took over; it verifies for one access-token lifetime after
    pub replaced_at: Option<i64>,
    /// whether new tokens are signed with it
    pub signing: bool,
}

impl From<&TokenKey> for KeyInfo {
    fn from(key: &TokenKey) -> Self {
        Self {
            kid: key.kid.clone(),
            created_at: key.created_at,
            replaced_at: key.replaced_at,
            signing: key.replaced_at.is_none(),
        }
    }
}

/// A grant being refreshed: whose, what, and the family it continues.
pub struct Refreshing {
    pub subject: Subject,
    pub scopes: Scopes,
    family: String,
}

#[derive(Clone)]
pub struct Tokens {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl Tokens {
    pub fn new(settings: &TokenSettings, store: Arc<Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            settings: settings.clone(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, TokenError> + Send + 'static,
    ) -> Result<T, TokenError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .map_err(|e| TokenError::Task(e.to_string()))?
    }

    /// A new grant: a token pair for `subject` with `scopes` (already checked against what
    /// the subject may have).
    pub async fn issue(&self, subject: Subject, scopes: Scopes) -> Result<Issued, TokenError> {
        self.issue_in(subject, scopes, random_id()).await
    }

    /// The next pair of a grant being refreshed, with `scopes` (at most the grant's).
    pub async fn refreshed(&self, grant: Refreshing, scopes: Scopes) -> Result<Issued, TokenError> {
        let scopes = scopes.within(grant.scopes)?;
        self.issue_in(grant.subject, scopes, grant.family).await
    }

    async fn issue_in(
        &self,
        subject: Subject,
        scopes: Scopes,
        family: String,
    ) -> Result<Issued, TokenError> {
        let now = self.clock.now();
        let (access_secs, refresh_secs) = (self.settings.access_secs, self.settings.refresh_secs);
        self.blocking(move |store| {
            let key = signing_key(store, now)?;
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(key.kid.clone());
            let claims = Claims {
                sub: subject.name.clone(),
                kind: subject.kind,
                scope: scopes.to_string(),
                iat: now,
                exp: now + access_secs as i64,
                jti: random_id(),
                fam: family.clone(),
            };
            let access_token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.secret.0))
                    .map_err(|e| TokenError::Signing(e.to_string()))?;
            let refresh_token = hex::encode(rand::random::<[u8; 32]>());
            store.save_refresh_token(
                &refresh_token,
                &RefreshRow {
                    family,
                    subject: subject.name.clone(),
                    kind: kind_name(subject.kind).into(),
                    scope: claims.scope.clone(),
                    expires_at: now + refresh_secs as i64,
                },
            )?;
            let client = match subject.kind {
                SubjectKind::Person => "token".to_string(),
                SubjectKind::Kiosk => format!("kiosk:{}", subject.name),
            };
            audit(
                store,
                now,
                &client,
                Some(&subject.name),
                AuditOutcome::TokenIssued,
                format!(
                    "scope={} kid={} grant={}",
                    claims.scope,
                    key.kid,
                    &claims.fam[..8]
                ),
            );
            Ok(Issued {
                access_token,
                token_type: "Bearer",
                expires_in: access_secs,
                refresh_token,
                scope: claims.scope,
            })
        })
        .await
    }

    /// Uses up a refresh token; the caller checks the subject may still have the scopes,
    /// then asks for `refreshed`.
    pub async fn redeem(&self, refresh_token: &str) -> Result<Refreshing, TokenError> {
        let now = self.clock.now();
        let until = now + self.settings.access_secs as i64;
        let token = refresh_token.to_string();
        let row = match self
            .blocking(move |store| Ok(store.redeem_refresh_token(&token, now, until)?))
            .await?
        {
            RefreshUse::Redeemed(row) => row,
            RefreshUse::Unknown => return Err(TokenError::BadRefresh),
            RefreshUse::Expired => return Err(TokenError::Expired),
            RefreshUse::Refused { family, reused } => {
                tracing::warn!(%family, reused, "refused a used or revoked refresh token");
                if reused {
                    let store = Arc::clone(&self.store);
                    let detail = format!(
                        "refresh token used twice: grant {} revoked",
                        &family[..8.min(family.len())]
                    );
                    let _ = tokio::task::spawn_blocking(move || {
                        audit(
                            &store,
                            now,
                            "token",
                            None,
                            AuditOutcome::TokenRevoked,
                            detail,
                        );
                    })
                    .await;
                }
                return Err(if reused {
                    TokenError::RefreshReused
                } else {
                    TokenError::Revoked
                });
            }
        };
        let kind = match row.kind.as_str() {
            "kiosk" => SubjectKind::Kiosk,
            _ => SubjectKind::Person,
        };
        Ok(Refreshing {
            subject: Subject {
                kind,
                name: row.subject,
            },
            scopes: Scopes::parse(&row.scope)?,
            family: row.family,
        })
    }

    /// Checks an access token's signature (by its key id), expiry and revocation.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let now = self.clock.now();
        let claims = self.decode(token, now).await?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let (jti, fam) = (claims.jti.clone(), claims.fam.clone());
        if self
            .blocking(move |store| Ok(store.any_token_revoked(&[&jti, &fam])?))
            .await?
        {
            return Err(TokenError::Revoked);
        }
        Ok(Verified {
            subject: Subject {
                kind: claims.kind,
                name: claims.sub,
            },
            scopes: Scopes::parse(&claims.scope)?,
            expires_at: claims.exp,
        })
    }

    /// The claims of a token signed by one of our keys still in use (expiry not checked).
    async fn decode(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let kid = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|header| header.kid)
            .ok_or(TokenError::Invalid)?;
        let grace = self.settings.access_secs as i64;
        let key = self
            .blocking(move |store| Ok(store.token_keys()?))
            .await?
            .into_iter()
            .find(|key| key.kid == kid && key.replaced_at.is_none_or(|at| now < at + grace))
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        // expiry is checked against our clock, not the system's
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.secret.0), &validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    /// Revokes an access token (that one) or a refresh token (its whole grant). Whether the
    /// token was one of ours.
    pub async fn revoke(&self, token: &str) -> Result<bool, TokenError> {
        let now = self.clock.now();
        if token.contains('.') {
            let Ok(claims) = self.decode(token, now).await else {
                return Ok(false);
            };
            self.blocking(move |store| {
                store.revoke_token(&claims.jti, claims.exp)?;
                audit(
                    store,
                    now,
                    "token",
                    Some(&claims.sub),
                    AuditOutcome::TokenRevoked,
                    "access token".into(),
                );
                Ok(())
            })
            .await?;
            return Ok(true);
        }
        let token = token.to_string();
        let until = now + self.settings.access_secs as i64;
        self.blocking(move |store| match store.refresh_token_family(&token)? {
            Some(family) => {
                store.revoke_token_family(&family, now, until)?;
                let detail = format!("grant {}", &family[..8.min(family.len())]);
                audit(
                    store,
                    now,
                    "token",
                    None,
                    AuditOutcome::TokenRevoked,
                    detail,
                );
                Ok(true)
            }
            None => Ok(false),
        })
        .await
    }

    pub async fn keys(&self) -> Result<Vec<KeyInfo>, TokenError> {
        let keys = self.blocking(|store| Ok(store.token_keys()?)).await?;
        Ok(keys.iter().map(KeyInfo::from).collect())
    }

    /// A new signing key; the old one keeps verifying for one access-token lifetime.
    pub async fn rotate(&self, by: &str) -> Result<KeyInfo, TokenError> {
        let now = self.clock.now();
        let by = by.to_string();
        self.blocking(move |store| {
            let key = new_key(now);
            store.add_token_key(&key)?;
            audit(
                store,
                now,
                &by,
                None,
                AuditOutcome::KeyRotated,
                format!("kid={}", key.kid),
            );
            Ok(KeyInfo::from(&key))
        })
        .await
    }

    /// Withdraws a key at once: every token it signed is refused.
    pub async fn withdraw(&self, kid: &str, by: &str) -> Result<(), TokenError> {
        let (kid, by, now) = (kid.to_string(), by.to_string(), self.clock.now());
        self.blocking(move |store| match store.delete_token_key(&kid)? {
            true => {
                audit(
                    store,
                    now,
                    &by,
                    None,
                    AuditOutcome::KeyWithdrawn,
                    format!("kid={kid}"),
                );
                Ok(())
            }
            false => Err(TokenError::NoSuchKey(kid)),
        })
        .await
    }

    /// Deletes revocations, refresh tokens and replaced keys that no longer matter.
    pub async fn clean(&self) -> Result<usize, TokenError> {
        let now = self.clock.now();
        let grace = self.settings.access_secs as i64;
        self.blocking(move |store| Ok(store.delete_expired_tokens(now, grace)?))
            .await
    }

    pub fn cleanup_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.cleanup_every_secs.max(1))
    }
}

fn kind_name(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Person => "person",
        SubjectKind::Kiosk => "kiosk",
    }
}

fn new_key(now: i64) -> TokenKey {
    TokenKey {
        kid: hex::encode(rand::random::<[u8; 8]>()),
        secret: KeySecret(rand::random::<[u8; 32]>().to_vec()),
        created_at: now,
        replaced_at: None,
    }
}

/// The key that signs now, made on first use (or after the signing key was withdrawn).
fn signing_key(store: &Store, now: i64) -> Result<TokenKey, TokenError> {
    if let Some(key) = store
        .token_keys()?
        .into_iter()
        .find(|key| key.replaced_at.is_none())
    {
        return Ok(key);
    }
    let key = new_key(now);
    store.add_token_key(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_and_write_as_oauth_does() {
        let scopes = Scopes::parse("lift:move  lift:read").expect("scopes");
        assert!(scopes.has(Scope::LiftRead) && scopes.has(Scope::LiftMove));
        assert!(!scopes.has(Scope::Admin));
        assert_eq!(scopes.to_string(), "lift:read lift:move");
        assert!(matches!(
            Scopes::parse("lift:read root"),
            Err(TokenError::UnknownScope(word)) if word == "root"
        ));
        let reader = Scopes::of(&[Scope::LiftRead]);
        assert!(reader.within(scopes).is_ok());
        assert!(matches!(
            Scopes::of(&[Scope::Admin]).within(scopes),
            Err(TokenError::ScopeNotAllowed(Scope::Admin))
        ));
        assert!(matches!(
            reader.require(Scope::LiftMove),
            Err(TokenError::InsufficientScope(Scope::LiftMove))
        ));
    }
}
