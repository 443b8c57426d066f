//! SQLite storage. For now: the embedding cache (by photo hash and model id), so a restart does
//! not recompute the gallery and a changed photo is recomputed.

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
const MIGRATIONS: &[&str] = &["CREATE TABLE embeddings (
        model_id   TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector     BLOB NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        PRIMARY KEY (model_id, sha256)
    ) WITHOUT ROWID;"];

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
        model_id: &str,
        sha256: &str,
    ) -> Result<Option<Embedding>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT vector FROM embeddings WHERE model_id = ?1 AND sha256 = ?2",
                params![model_id, sha256],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .optional()
        })
        .map(|blob| blob.map(|b| decode_vector(&b)))
    }

    pub fn cache_embedding(
        &self,
        model_id: &str,
        sha256: &str,
        embedding: &[f32],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO embeddings (model_id, sha256, dimensions, vector)
                 VALUES (?1, ?2, ?3, ?4)",
                params![model_id, sha256, embedding.len(), encode_vector(embedding)],
            )
        })
        .map(|_| ())
    }

    pub fn cached_embedding_count(&self, model_id: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM embeddings WHERE model_id = ?1",
                params![model_id],
                |row| row.get(0),
            )
        })
    }
}

impl EmbeddingCache for Store {
    fn get(&self, model_id: &str, sha256: &str) -> Option<Embedding> {
        self.cached_embedding(model_id, sha256)
            .inspect_err(|e| tracing::warn!("embedding cache read failed: {e}"))
            .ok()
            .flatten()
    }

    fn put(&self, model_id: &str, sha256: &str, embedding: &Embedding) {
        if let Err(e) = self.cache_embedding(model_id, sha256, embedding) {
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
}
