//! Challenges for a live login: the server picks the head turns, and a one-time nonce that
//! works only before it expires and only for the client it was issued to (a browser session,
//! later a kiosk).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::face::pad::Turn;

/// What the client is asked to do, and the nonce to send back with the burst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    pub turns: Vec<Turn>,
    /// Unix seconds
    pub expires_at: i64,
}

/// Why a nonce is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("no such challenge, or it was used already")]
    Unknown,
    #[error("the challenge has expired; ask for a new one")]
    Expired,
    #[error("the challenge was issued to another client")]
    OtherClient,
}

struct Issued {
    owner: String,
    turns: Vec<Turn>,
    expires_at: i64,
}

/// The challenges issued and not yet used; expired ones are dropped as new ones are issued.
pub struct Challenges {
    lifetime: i64,
    issued: Mutex<HashMap<String, Issued>>,
}

/// The most challenges outstanding at once; beyond it the issuer refuses (each costs nothing
/// to ask for, so they must not grow without bound).
const MAX_OUTSTANDING: usize = 10_000;

impl Challenges {
    pub fn new(lifetime_secs: u64) -> Self {
        Self {
            lifetime: lifetime_secs.max(1) as i64,
            issued: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new challenge for `owner`, replacing any it still had: one turn or two, picked at
    /// random. `None` when too many are outstanding.
    pub fn issue(&self, owner: &str, now: i64) -> Option<Challenge> {
        let turns = random_turns();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let mut issued = self.lock();
        issued.retain(|_, c| c.expires_at > now && c.owner != owner);
        if issued.len() >= MAX_OUTSTANDING {
            return None;
        }
        let expires_at = now + self.lifetime;
        issued.insert(
            nonce.clone(),
            Issued {
                owner: owner.to_string(),
                turns: turns.clone(),
                expires_at,
            },
        );
        Some(Challenge {
            nonce,
            turns,
            expires_at,
        })
    }

    /// Uses up `nonce` for `owner`: the turns it asked for. A nonce is gone after its first
    /// use, whatever the answer (so a refused burst cannot be tried again with it).
    pub fn take(&self, nonce: &str, owner: &str, now: i64) -> Result<Vec<Turn>, ChallengeError> {
        let issued = self.lock().remove(nonce).ok_or(ChallengeError::Unknown)?;
        if issued.owner != owner {
            return Err(ChallengeError::OtherClient);
        }
        if issued.expires_at <= now {
            return Err(ChallengeError::Expired);
        }
        Ok(issued.turns)
    }
}

fn random_turns() -> Vec<Turn> {
    let first = if rand::random::<bool>() {
        Turn::Left
    } else {
        Turn::Right
    };
    let other = match first {
        Turn::Left => Turn::Right,
        Turn::Right => Turn::Left,
    };
    // a third of the time, a sequence of two: there and back the other way
    if rand::random_range(0..3) == 0 {
        vec![first, other]
    } else {
        vec![first]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_works_once_before_it_expires_for_its_own_client() {
        let challenges = Challenges::new(20);
        let issued = challenges.issue("session-a", 100).expect("issued");
        assert_eq!(issued.expires_at, 120);
        assert!(!issued.turns.is_empty() && issued.turns.len() <= 2);
        assert_eq!(
            challenges.take(&issued.nonce, "session-a", 110),
            Ok(issued.turns.clone())
        );
        assert_eq!(
            challenges.take(&issued.nonce, "session-a", 110),
            Err(ChallengeError::Unknown),
            "once"
        );

        let late = challenges.issue("session-a", 100).expect("issued");
        assert_eq!(
            challenges.take(&late.nonce, "session-a", 120),
            Err(ChallengeError::Expired)
        );
        let stolen = challenges.issue("session-a", 100).expect("issued");
        assert_eq!(
            challenges.take(&stolen.nonce, "session-b", 101),
            Err(ChallengeError::OtherClient)
        );
        assert_eq!(
            challenges.take(&stolen.nonce, "session-a", 101),
            Err(ChallengeError::Unknown),
            "a nonce tried by another client is gone for its owner too"
        );
    }

    #[test]
    fn both_directions_and_sequences_are_asked_for() {
        let challenges = Challenges::new(20);
        let asked: Vec<Vec<Turn>> = (0..200)
            .map(|_| challenges.issue("s", 0).expect("issued").turns)
            .collect();
        assert!(asked.iter().any(|t| t == &[Turn::Left]));
        assert!(asked.iter().any(|t| t == &[Turn::Right]));
        assert!(asked.iter().any(|t| t.len() == 2 && t[0] != t[1]));
    }
}
