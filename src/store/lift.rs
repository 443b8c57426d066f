//! What the lift must remember across a restart: the nonces of device messages still inside
//! the signature window (so that a captured message cannot be replayed once the server has
//! restarted), and the request ids of recent moves (so that a repeated request does not move
//! the lift again).

use super::db::params;

use super::{Store, StoreError};

/// Request ids are remembered this long: longer than any move may take.
pub const REQUEST_MEMORY_SECS: i64 = 60 * 60;

impl Store {
    /// Records that `device` sent `nonce` in a message stamped `at`; false when it had
    /// already. Nonces stamped before `forget_before` (outside the window, so refused anyway)
    /// are deleted on the way.
    pub fn remember_device_nonce(
        &self,
        device: &str,
        nonce: &str,
        at: i64,
        forget_before: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM device_nonces WHERE at < ?1",
                params![forget_before],
            )?;
            let added = c.execute(
                "INSERT INTO device_nonces (device, nonce, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![device, nonce, at],
            )?;
            Ok(added == 1)
        })
    }

    /// Records a move accepted under `request_id`.
    pub fn remember_lift_request(
        &self,
        request_id: &str,
        floor: i32,
        now: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM lift_requests WHERE at < ?1",
                params![now.saturating_sub(REQUEST_MEMORY_SECS)],
            )?;
            c.execute(
                "INSERT INTO lift_requests (request_id, floor, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (request_id) DO UPDATE SET floor = excluded.floor, at = excluded.at",
                params![request_id, floor, now],
            )?;
            Ok(())
        })
    }

    /// The request ids of moves accepted since `since`, oldest first, with their floors.
    pub fn lift_requests_since(&self, since: i64) -> Result<Vec<(String, i32)>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT request_id, floor FROM lift_requests WHERE at >= ?1 ORDER BY at",
                params![since],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_new_once_per_device_until_it_leaves_the_window() {
        for store in crate::store::test_stores() {
            assert!(store.remember_device_nonce("a", "n1", 100, 70).expect("db"));
            assert!(!store.remember_device_nonce("a", "n1", 100, 70).expect("db"));
            assert!(store.remember_device_nonce("b", "n1", 100, 70).expect("db"));
            // stamped 100, forgotten once the window starts after it
            assert!(
                store
                    .remember_device_nonce("a", "n1", 140, 101)
                    .expect("db")
            );
        }
    }

    #[test]
    fn request_ids_are_kept_for_the_request_memory() {
        for store in crate::store::test_stores() {
            store.remember_lift_request("r1", 2, 1000).expect("db");
            store.remember_lift_request("r2", 1, 1010).expect("db");
            assert_eq!(
                store.lift_requests_since(0).expect("db"),
                vec![("r1".to_string(), 2), ("r2".to_string(), 1)]
            );
            store
                .remember_lift_request("r3", 2, 1005 + REQUEST_MEMORY_SECS)
                .expect("db");
            let kept: Vec<String> = store
                .lift_requests_since(0)
                .expect("db")
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(kept, ["r2", "r3"]);
        }
    }
}
