//! SQLite storage: the embedding cache (by photo hash and model id, so a restart does not
//! recompute the gallery and a changed photo is recomputed), web sessions, and the audit log.

mod sessions;

pub use sessions::SqliteSessionStore;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::face::Embedding;
use crate::face::gallery::EmbeddingCache;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("creating {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE embeddings (
        model_id   TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector     BLOB NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        PRIMARY KEY (model_id, sha256)
    ) WITHOUT ROWID;",
    "CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        data       TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    CREATE TABLE audit (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        client     TEXT NOT NULL,
        person     TEXT,
        similarity REAL,
        outcome    TEXT NOT NULL,
        detail     TEXT
    );
    CREATE INDEX audit_by_kind ON audit (kind, id);",
    "CREATE TABLE devices (
        name       TEXT PRIMARY KEY,
        secret     TEXT NOT NULL,
        link       TEXT NOT NULL,
        address    TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    ) WITHOUT ROWID;",
    // the key became the model id plus the preprocessing and pipeline revision
    "ALTER TABLE embeddings RENAME COLUMN model_id TO cache_key;",
    // administrators named by `facelift person add --admin`, besides the configured ones
    "CREATE TABLE admins (
        person     TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    ) WITHOUT ROWID;",
];

/// A registered lift controller as stored: `link` is "push", "pull" or "serial"; `address` is
/// the push URL or the serial port.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub name: String,
    pub secret: String,
    pub link: String,
    pub address: Option<String>,
}

impl std::fmt::Debug for DeviceRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRow")
            .field("name", &self.name)
            .field("link", &self.link)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `facelift.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        Self::from_connection(Connection::open(data_dir.join("facelift.db"))?)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut connection: Connection) -> Result<Self, StoreError> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let applied: usize = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let transaction = connection.transaction()?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "user_version", index + 1)?;
        }
        transaction.commit()?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(f(&connection)?)
    }

    pub fn cached_embedding(
        &self,
        cache_key: &str,
        sha256: &str,
    ) -> Result<Option<Embedding>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT vector FROM embeddings WHERE cache_key = ?1 AND sha256 = ?2",
                params![cache_key, sha256],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .optional()
        })
        .map(|blob| blob.map(|b| decode_vector(&b)))
    }

    pub fn cache_embedding(
        &self,
        cache_key: &str,
        sha256: &str,
        embedding: &[f32],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO embeddings (cache_key, sha256, dimensions, vector)
                 VALUES (?1, ?2, ?3, ?4)",
                params![cache_key, sha256, embedding.len(), encode_vector(embedding)],
            )
        })
        .map(|_| ())
    }

    pub fn cached_embedding_count(&self, cache_key: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM embeddings WHERE cache_key = ?1",
                params![cache_key],
                |row| row.get(0),
            )
        })
    }
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Unix time, seconds
    pub at: i64,
    /// "login", later "lift" and "device"
    pub kind: String,
    /// who or what asked: a client address, a device id
    pub client: String,
    pub person: Option<String>,
    pub similarity: Option<f32>,
    /// "recognized", "not_recognized", "no_face", "rate_limited", ...
    pub outcome: String,
    pub detail: Option<String>,
}

impl Store {
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (at, kind, client, person, similarity, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.at,
                    entry.kind,
                    entry.client,
                    entry.person,
                    entry.similarity,
                    entry.outcome,
                    entry.detail
                ],
            )
        })
        .map(|_| ())
    }

    /// The newest `limit` entries of one kind, newest first.
    pub fn recent_audit(&self, kind: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT at, kind, client, person, similarity, outcome, detail FROM audit
                 WHERE kind = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![kind, limit], |row| {
                Ok(AuditEntry {
                    at: row.get(0)?,
                    kind: row.get(1)?,
                    client: row.get(2)?,
                    person: row.get(3)?,
                    similarity: row.get(4)?,
                    outcome: row.get(5)?,
                    detail: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Adds a device, or replaces the one of the same name (a new secret).
    pub fn put_device(&self, device: &DeviceRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO devices (name, secret, link, address) VALUES (?1, ?2, ?3, ?4)",
                params![device.name, device.secret, device.link, device.address],
            )
        })
        .map(|_| ())
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT name, secret, link, address FROM devices ORDER BY name")?;
            let rows = statement.query_map([], |row| {
                Ok(DeviceRow {
                    name: row.get(0)?,
                    secret: row.get(1)?,
                    link: row.get(2)?,
                    address: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Whether a device of that name was there to remove.
    pub fn remove_device(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| c.execute("DELETE FROM devices WHERE name = ?1", params![name]))
            .map(|n| n > 0)
    }

    /// Makes `person` an administrator (`admin`) or not.
    pub fn set_admin(&self, person: &str, admin: bool) -> Result<(), StoreError> {
        let sql = if admin {
            "INSERT OR IGNORE INTO admins (person) VALUES (?1)"
        } else {
            "DELETE FROM admins WHERE person = ?1"
        };
        self.with(|c| c.execute(sql, params![person])).map(|_| ())
    }

    pub fn is_admin(&self, person: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM admins WHERE person = ?1",
                params![person],
                |_| Ok(()),
            )
            .optional()
        })
        .map(|found| found.is_some())
    }

    pub fn admins(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT person FROM admins ORDER BY person")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            rows.collect()
        })
    }

    /// The session's data and expiry (unix seconds), unless it has expired.
    pub(crate) fn session_load(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT data, expires_at FROM sessions WHERE id = ?1 AND expires_at > ?2",
                params![id, now],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
        })
    }

    /// Inserts or replaces; with `only_new`, false when the id is taken.
    pub(crate) fn session_save(
        &self,
        id: &str,
        data: &str,
        expires_at: i64,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        let sql = if only_new {
            "INSERT OR IGNORE INTO sessions (id, data, expires_at) VALUES (?1, ?2, ?3)"
        } else {
            "INSERT OR REPLACE INTO sessions (id, data, expires_at) VALUES (?1, ?2, ?3)"
        };
        self.with(|c| c.execute(sql, params![id, data, expires_at]))
            .map(|changed| changed == 1)
    }

    pub(crate) fn session_delete(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE id = ?1", params![id]))
            .map(|_| ())
    }

    /// Deletes the sessions that expired before `now`; returns how many.
    pub fn delete_expired_sessions(&self, now: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now]))
    }

    pub fn session_count(&self) -> Result<usize, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM sessions", [], |row| row.get(0)))
    }
}

impl EmbeddingCache for Store {
    fn get(&self, cache_key: &str, sha256: &str) -> Option<Embedding> {
        self.cached_embedding(cache_key, sha256)
            .inspect_err(|e| tracing::warn!("embedding cache read failed: {e}"))
            .ok()
            .flatten()
    }

    fn put(&self, cache_key: &str, sha256: &str, embedding: &Embedding) {
        if let Err(e) = self.cache_embedding(cache_key, sha256, embedding) {
            tracing::warn!("embedding cache write failed: {e}");
        }
    }
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8]) -> Embedding {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_per_model_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .cache_embedding("m1", "abc", &[0.25, -1.5, 3.0])
                .expect("put");
            assert_eq!(
                store.cached_embedding("m2", "abc").expect("get"),
                None,
                "other model"
            );
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.cached_embedding("m1", "abc").expect("get"),
            Some(vec![0.25, -1.5, 3.0])
        );
        assert_eq!(store.cached_embedding_count("m1").expect("count"), 1);
    }

    #[test]
    fn a_database_from_before_the_cache_key_rename_keeps_its_embeddings() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // the schema as the first three migrations left it, with one cached embedding
            let connection = Connection::open(dir.path().join("facelift.db")).expect("create");
            for migration in &MIGRATIONS[..3] {
                connection.execute_batch(migration).expect("old schema");
            }
            connection
                .pragma_update(None, "user_version", 3)
                .expect("version");
            connection
                .execute(
                    "INSERT INTO embeddings (model_id, sha256, dimensions, vector) \
                     VALUES ('m1', 'abc', 2, ?1)",
                    params![encode_vector(&[0.5, -2.0])],
                )
                .expect("old row");
        }
        let store = Store::open(dir.path()).expect("migrate");
        assert_eq!(
            store.cached_embedding("m1", "abc").expect("get"),
            Some(vec![0.5, -2.0])
        );
    }

    #[test]
    fn administrators_are_added_and_removed() {
        let store = Store::open_in_memory().expect("store");
        assert!(!store.is_admin("alice").expect("read"));
        store.set_admin("alice", true).expect("add");
        store.set_admin("alice", true).expect("twice is once");
        assert!(store.is_admin("alice").expect("read"));
        assert_eq!(store.admins().expect("list"), ["alice"]);
        store.set_admin("alice", false).expect("remove");
        assert!(store.admins().expect("list").is_empty());
    }
}
