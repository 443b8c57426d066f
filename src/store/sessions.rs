//! `tower-sessions` backed by the store (SQLite or PostgreSQL), so a restart keeps people logged in.

use std::sync::Arc;

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use super::{Store, StoreError};

#[derive(Clone)]
pub struct StoreSessions {
    store: Arc<Store>,
}

impl std::fmt::Debug for StoreSessions {
    // the records hold session data; never print them
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSessions")
    }
}

impl StoreSessions {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> session_store::Result<T> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || job(&store))
            .await
            .map_err(|e| session_store::Error::Backend(e.to_string()))?
            .map_err(|e| session_store::Error::Backend(e.to_string()))
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn encode(record: &Record) -> session_store::Result<String> {
    serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))
}

#[async_trait]
impl SessionStore for StoreSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // a fresh random id until one is free (a collision is astronomically unlikely)
        loop {
            let (id, data, expires) = (
                record.id.to_string(),
                encode(record)?,
                record.expiry_date.unix_timestamp(),
            );
            if self
                .blocking(move |s| s.session_save(&id, &data, expires, true))
                .await?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (id, data, expires) = (
            record.id.to_string(),
            encode(record)?,
            record.expiry_date.unix_timestamp(),
        );
        self.blocking(move |s| s.session_save(&id, &data, expires, false))
            .await
            .map(drop)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = id.to_string();
        let Some((data, expires_at)) = self.blocking(move |s| s.session_load(&key, now())).await?
        else {
            return Ok(None);
        };
        let decode = |e: String| session_store::Error::Decode(e);
        Ok(Some(Record {
            id: *id,
            data: serde_json::from_str(&data).map_err(|e| decode(e.to_string()))?,
            expiry_date: time::OffsetDateTime::from_unix_timestamp(expires_at)
                .map_err(|e| decode(e.to_string()))?,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let key = id.to_string();
        self.blocking(move |s| s.session_delete(&key)).await
    }
}

#[async_trait]
impl ExpiredDeletion for StoreSessions {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.blocking(|s| s.delete_expired_sessions(now()))
            .await
            .map(drop)
    }
}
