//! The audit log as a hash chain: each row holds the hash of the row before it and its own
//! hash over that and its values, in order of insertion. A row changed, deleted or inserted out
//! of order breaks the chain where it happened, and `verify_audit` names the row.

use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AuditEntry, AuditKind, Store, StoreError};

/// What the first row follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed columns, in the order they are hashed.
const HASHED: &str = "id, at, kind, client, person, similarity, outcome, detail";

/// SHA-256 over the previous hash and the row's values, each with its type, as the database
/// holds them: a value changed in any way, or to another type, changes the hash.
fn chain_hash(prev_hash: &str, values: &[ValueRef<'_>]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"facelift audit chain 1\0");
    hasher.update(prev_hash.as_bytes());
    for value in values {
        let with_length = |hasher: &mut Sha256, tag: u8, bytes: &[u8]| {
            hasher.update([tag]);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        match value {
            ValueRef::Null => hasher.update([0]),
            ValueRef::Integer(i) => with_length(&mut hasher, 1, &i.to_le_bytes()),
            ValueRef::Real(r) => with_length(&mut hasher, 2, &r.to_bits().to_le_bytes()),
            ValueRef::Text(t) => with_length(&mut hasher, 3, t),
            ValueRef::Blob(b) => with_length(&mut hasher, 4, b),
        }
    }
    hex::encode(hasher.finalize())
}

/// The chain's last hash, or the genesis for an empty log.
fn head(t: &Transaction<'_>) -> rusqlite::Result<String> {
    Ok(
        t.query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or_else(|| GENESIS.to_string()),
    )
}

/// Hashes the row `id` as stored, after `prev_hash`, and writes both.
fn seal(t: &Transaction<'_>, id: i64, prev_hash: &str) -> rusqlite::Result<String> {
    let hash = t.query_row(
        &format!("SELECT {HASHED} FROM audit WHERE id = ?1"),
        params![id],
        |row| Ok(chain_hash(prev_hash, &row_values(row)?)),
    )?;
    t.execute(
        "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
        params![prev_hash, hash, id],
    )?;
    Ok(hash)
}

fn row_values<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<Vec<ValueRef<'r>>> {
    (0..8).map(|i| row.get_ref(i)).collect()
}

/// Seals the rows written before the chain existed, in order (a migration step, run once).
pub(super) fn seal_existing(t: &Transaction<'_>) -> rusqlite::Result<()> {
    let ids: Vec<i64> = t
        .prepare("SELECT id FROM audit ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut prev = GENESIS.to_string();
    for id in ids {
        prev = seal(t, id, &prev)?;
    }
    Ok(())
}

/// Where the chain breaks first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainBreak {
    /// the row's values (or its hashes) are not what was sealed
    Changed { id: i64 },
    /// the row does not follow the row before it, and no row has the hash it follows: rows
    /// between were deleted (or the row before was changed and its hash made again)
    Missing { id: i64, after: Option<i64> },
    /// row `next` was written right after row `follows`, yet other rows now stand between
    /// them: `id`, the first of those, was inserted out of order
    OutOfOrder { id: i64, next: i64, follows: i64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Changed { id } => write!(f, "row {id} was changed after it was written"),
            Self::Missing {
                id,
                after: Some(after),
            } => write!(
                f,
                "row {id} does not follow row {after}: rows between them were deleted, or row \
                 {after} was changed"
            ),
            Self::Missing { id, after: None } => {
                write!(
                    f,
                    "row {id} is the first row but does not start the chain: rows before it were deleted"
                )
            }
            Self::OutOfOrder { id, next, follows } => write!(
                f,
                "row {id} was inserted out of order: row {next} was written right after row \
                 {follows}"
            ),
        }
    }
}

/// What `verify_audit` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// rows checked, up to the first break
    pub rows: u64,
    /// the last good row's hash: kept elsewhere, it shows later that nothing after it was
    /// cut off
    pub head: String,
    pub first_break: Option<ChainBreak>,
}

/// A row as exported: the entry as stored, and its place in the chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub client: String,
    pub person: Option<String>,
    pub similarity: Option<f64>,
    pub outcome: String,
    pub detail: Option<String>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl Store {
    /// Appends a row to the audit log, chained to the last one.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.with_transaction(|t| {
            let prev_hash = head(t)?;
            t.execute(
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
            )?;
            seal(t, t.last_insert_rowid(), &prev_hash).map(drop)
        })
    }

    /// The newest `limit` entries of one kind, newest first.
    pub fn recent_audit(
        &self,
        kind: AuditKind,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
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

    /// Up to `limit` rows written at or after `since` (Unix seconds) with an id above
    /// `after_id`, in order: page through with the last id seen.
    pub fn audit_rows(
        &self,
        since: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT id, at, kind, client, person, similarity, outcome, detail, prev_hash, hash
                 FROM audit WHERE at >= ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = statement.query_map(params![since, after_id, limit], |row| {
                Ok(AuditRow {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    kind: row.get(2)?,
                    client: row.get(3)?,
                    person: row.get(4)?,
                    similarity: row.get(5)?,
                    outcome: row.get(6)?,
                    detail: row.get(7)?,
                    prev_hash: row.get(8)?,
                    hash: row.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Walks the whole chain in order of insertion and names the first row where it breaks.
    pub fn verify_audit(&self) -> Result<ChainReport, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {HASHED}, prev_hash, hash FROM audit ORDER BY id"
            ))?;
            let mut rows = statement.query([])?;
            let mut report = ChainReport {
                rows: 0,
                head: GENESIS.to_string(),
                first_break: None,
            };
            let mut before: Option<i64> = None;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0).unwrap_or(i64::MIN);
                let prev_hash: Option<String> = row.get(8).ok().flatten();
                let hash: Option<String> = row.get(9).ok().flatten();
                let sealed = prev_hash
                    .as_deref()
                    .map(|prev| chain_hash(prev, &row_values(row).unwrap_or_default()));
                if hash.is_none() || sealed != hash {
                    report.first_break = Some(ChainBreak::Changed { id });
                    break;
                }
                let prev_hash = prev_hash.unwrap_or_default();
                if prev_hash != report.head {
                    let follows: Option<i64> = c
                        .query_row(
                            "SELECT id FROM audit WHERE hash = ?1",
                            params![prev_hash],
                            |r| r.get(0),
                        )
                        .optional()?;
                    report.first_break = Some(match follows {
                        Some(follows) => {
                            let inserted: Option<i64> = c.query_row(
                                "SELECT MIN(id) FROM audit WHERE id > ?1 AND id < ?2",
                                params![follows, id],
                                |r| r.get(0),
                            )?;
                            ChainBreak::OutOfOrder {
                                id: inserted.unwrap_or(id),
                                next: id,
                                follows,
                            }
                        }
                        None => ChainBreak::Missing { id, after: before },
                    });
                    break;
                }
                report.head = hash.unwrap_or_default();
                report.rows += 1;
                before = Some(id);
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditOutcome;

    fn entry(at: i64, person: &str) -> AuditEntry {
        AuditEntry {
            at,
            kind: AuditKind::Login,
            client: "192.0.2.1".into(),
            person: Some(person.into()),
            similarity: Some(0.8125),
            outcome: AuditOutcome::Recognized,
            detail: None,
        }
    }

    fn store_with_rows(n: i64) -> Store {
        let store = Store::open_in_memory().expect("store");
        for i in 1..=n {
            store
                .audit(&entry(1_000 + i, &format!("p{i}")))
                .expect("audit");
        }
        store
    }

    fn sql(store: &Store, statement: &str) {
        store.with(|c| c.execute_batch(statement)).expect("tamper");
    }

    #[test]
    fn an_untouched_log_verifies_to_its_head() {
        let store = store_with_rows(5);
        let report = store.verify_audit().expect("verify");
        assert_eq!((report.rows, report.first_break), (5, None));
        let rows = store.audit_rows(0, 0, 10).expect("rows");
        assert_eq!(report.head, rows[4].hash.clone().expect("hash"));
        assert_eq!(rows[0].prev_hash.as_deref(), Some(GENESIS));
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        let empty = Store::open_in_memory().expect("store").verify_audit();
        assert_eq!(empty.expect("verify").head, GENESIS);
    }

    #[test]
    fn an_edit_a_deletion_and_an_insertion_are_each_named() {
        // a value changed, even to another type or by less than an f32 can show
        for edit in [
            "UPDATE audit SET person = 'mallory' WHERE id = 3",
            "UPDATE audit SET at = at - 60 WHERE id = 3",
            "UPDATE audit SET at = '1003 seconds' WHERE id = 3",
            "UPDATE audit SET similarity = 0.8125000000001 WHERE id = 3",
            "UPDATE audit SET detail = '' WHERE id = 3",
            "UPDATE audit SET hash = NULL WHERE id = 3",
        ] {
            let store = store_with_rows(5);
            sql(&store, edit);
            let report = store.verify_audit().expect("verify");
            assert_eq!(
                report.first_break,
                Some(ChainBreak::Changed { id: 3 }),
                "{edit}"
            );
            assert_eq!(report.rows, 2);
        }

        let store = store_with_rows(5);
        sql(&store, "DELETE FROM audit WHERE id = 3");
        let broken = store.verify_audit().expect("verify").first_break;
        assert_eq!(
            broken,
            Some(ChainBreak::Missing {
                id: 4,
                after: Some(2)
            })
        );
        let store = store_with_rows(5);
        sql(&store, "DELETE FROM audit WHERE id = 1");
        let broken = store.verify_audit().expect("verify").first_break;
        assert_eq!(broken, Some(ChainBreak::Missing { id: 2, after: None }));

        // a row slipped into a gap in the ids (PostgreSQL leaves gaps), with its hash made the
        // honest way after the row before it, still breaks the chain at the row after it
        let store = store_with_rows(3);
        sql(&store, "DELETE FROM audit WHERE id = 3");
        store
            .audit(&entry(1_004, "p4"))
            .expect("row 4 follows row 2");
        store.audit(&entry(1_005, "p5")).expect("row 5");
        assert_eq!(store.verify_audit().expect("verify").first_break, None);
        store
            .with_transaction(|t| {
                t.execute(
                    "INSERT INTO audit (id, at, kind, client, outcome)
                     VALUES (3, 1003, 'login', 'x', 'recognized')",
                    [],
                )?;
                seal(t, 3, &head_of(t, 2)?).map(drop)
            })
            .expect("insert");
        let report = store.verify_audit().expect("verify");
        let broken = report.first_break.expect("a break");
        assert_eq!(
            broken,
            ChainBreak::OutOfOrder {
                id: 3,
                next: 4,
                follows: 2
            }
        );
        assert_eq!(
            broken.to_string(),
            "row 3 was inserted out of order: row 4 was written right after row 2"
        );
        assert_eq!(report.rows, 3, "rows 1, 2 and 3 chain; row 4 does not");
    }

    /// Two processes on one database (the server and a `facelift person` command): every row
    /// of both is written, and the chain is one chain.
    #[test]
    fn two_writers_on_one_database_keep_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = [
            Store::open(dir.path()).expect("first"),
            Store::open(dir.path()).expect("second"),
        ];
        std::thread::scope(|scope| {
            for (which, store) in stores.iter().enumerate() {
                scope.spawn(move || {
                    for i in 0..150 {
                        store
                            .audit(&entry(i, &format!("w{which}-{i}")))
                            .expect("every write lands");
                    }
                });
            }
        });
        let report = stores[0].verify_audit().expect("verify");
        assert_eq!((report.rows, report.first_break), (300, None));
    }

    fn head_of(t: &Transaction<'_>, id: i64) -> rusqlite::Result<String> {
        t.query_row("SELECT hash FROM audit WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
    }
}
