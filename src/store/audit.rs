//! The audit log as a hash chain: each row holds the hash of the row before it and its own
//! hash over that and its values, in order of insertion. A row changed, deleted or inserted out
//! of order breaks the chain where it happened, and `verify_audit` names the row.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::db::{Conn, DbError, OptionalRow, Row, Value, params};
use super::{AuditEntry, AuditKind, Store, StoreError};

/// What the first row follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed columns, in the order they are hashed.
const HASHED: &str = "id, at, kind, client, person, similarity, outcome, detail";

/// Rows read at a time while verifying.
const VERIFY_PAGE: usize = 10_000;

/// SHA-256 over the previous hash and the row's values, each with its type, as the database
/// holds them: a value changed in any way, or to another type, changes the hash. The values
/// read the same from SQLite and PostgreSQL, so a chain's hashes do not depend on where it is.
fn chain_hash(prev_hash: &str, values: &[Value]) -> String {
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
            Value::Null => hasher.update([0]),
            Value::Int(i) => with_length(&mut hasher, 1, &i.to_le_bytes()),
            Value::Real(r) => with_length(&mut hasher, 2, &r.to_bits().to_le_bytes()),
            Value::Text(t) => with_length(&mut hasher, 3, t.as_bytes()),
            Value::Blob(b) => with_length(&mut hasher, 4, b),
        }
    }
    hex::encode(hasher.finalize())
}

/// The chain's last hash, or the genesis for an empty log.
fn head(t: &dyn Conn) -> Result<String, DbError> {
    Ok(t.query_row(
        "SELECT hash FROM audit ORDER BY id DESC LIMIT 1",
        params![],
        |r| r.get::<Option<String>>(0),
    )
    .optional()?
    .flatten()
    .unwrap_or_else(|| GENESIS.to_string()))
}

/// Hashes the row `id` as stored, after `prev_hash`, and writes both.
fn seal(t: &dyn Conn, id: i64, prev_hash: &str) -> Result<String, DbError> {
    let hash = t.query_row(
        &format!("SELECT {HASHED} FROM audit WHERE id = ?1"),
        params![id],
        |row| Ok(chain_hash(prev_hash, hashed_values(row))),
    )?;
    t.execute(
        "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
        params![prev_hash, hash, id],
    )?;
    Ok(hash)
}

/// The hashed columns of a row selected with `HASHED` first.
fn hashed_values(row: &Row) -> &[Value] {
    &row.values()[..8]
}

/// Seals the rows written before the chain existed, in order (a migration step, run once).
pub(super) fn seal_existing(t: &dyn Conn) -> Result<(), DbError> {
    let ids: Vec<i64> = t.query_map("SELECT id FROM audit ORDER BY id", params![], |r| r.get(0))?;
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
            let id: i64 = t.query_row(
                "INSERT INTO audit (at, kind, client, person, similarity, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                params![
                    entry.at,
                    entry.kind,
                    entry.client,
                    entry.person,
                    entry.similarity,
                    entry.outcome,
                    entry.detail
                ],
                |row| row.get(0),
            )?;
            seal(t, id, &prev_hash).map(drop)
        })
    }

    /// The newest `limit` entries of one kind, newest first.
    pub fn recent_audit(
        &self,
        kind: AuditKind,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT at, kind, client, person, similarity, outcome, detail FROM audit
                 WHERE kind = ?1 ORDER BY id DESC LIMIT ?2",
                params![kind, limit],
                |row| {
                    Ok(AuditEntry {
                        at: row.get(0)?,
                        kind: row.get(1)?,
                        client: row.get(2)?,
                        person: row.get(3)?,
                        similarity: row.get(4)?,
                        outcome: row.get(5)?,
                        detail: row.get(6)?,
                    })
                },
            )
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
            c.query_map(
                "SELECT id, at, kind, client, person, similarity, outcome, detail, prev_hash, hash
                 FROM audit WHERE at >= ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                params![since, after_id, limit],
                |row| {
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
                },
            )
        })
    }

    /// Walks the whole chain in order of insertion and names the first row where it breaks.
    pub fn verify_audit(&self) -> Result<ChainReport, StoreError> {
        let mut report = ChainReport {
            rows: 0,
            head: GENESIS.to_string(),
            first_break: None,
        };
        let mut before: Option<i64> = None;
        loop {
            let page = self.with(|c| {
                c.query(
                    &format!(
                        "SELECT {HASHED}, prev_hash, hash FROM audit
                         WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ),
                    params![before.unwrap_or(i64::MIN), VERIFY_PAGE],
                )
            })?;
            for row in &page {
                if let Some(broken) = self.check_link(row, &report.head, before)? {
                    report.first_break = Some(broken);
                    return Ok(report);
                }
                report.head = row.get(9).unwrap_or_default();
                report.rows += 1;
                before = row.get(0).ok();
            }
            if page.len() < VERIFY_PAGE {
                return Ok(report);
            }
        }
    }

    /// Where `row` breaks the chain, if it does, coming after `head` (the hash of `before`).
    fn check_link(
        &self,
        row: &Row,
        head: &str,
        before: Option<i64>,
    ) -> Result<Option<ChainBreak>, StoreError> {
        let id: i64 = row.get(0).unwrap_or(i64::MIN);
        let prev_hash: Option<String> = row.get(8).ok().flatten();
        let hash: Option<String> = row.get(9).ok().flatten();
        let sealed = prev_hash
            .as_deref()
            .map(|prev| chain_hash(prev, hashed_values(row)));
        if hash.is_none() || sealed != hash {
            return Ok(Some(ChainBreak::Changed { id }));
        }
        let prev_hash = prev_hash.unwrap_or_default();
        if prev_hash == head {
            return Ok(None);
        }
        self.with(|c| {
            let follows: Option<i64> = c
                .query_row(
                    "SELECT id FROM audit WHERE hash = ?1",
                    params![prev_hash],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(Some(match follows {
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
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditOutcome;
    use crate::store::db::Dialect;

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

    /// A log of `n` rows on each backend.
    fn stores_with_rows(n: i64) -> Vec<Store> {
        let stores = crate::store::test_stores();
        for store in &stores {
            for i in 1..=n {
                store
                    .audit(&entry(1_000 + i, &format!("p{i}")))
                    .expect("audit");
            }
        }
        stores
    }

    fn sql(store: &Store, statement: &str) {
        store.with(|c| c.execute_batch(statement)).expect("tamper");
    }

    #[test]
    fn an_untouched_log_verifies_to_its_head() {
        let mut heads = Vec::new();
        for store in stores_with_rows(5) {
            let report = store.verify_audit().expect("verify");
            assert_eq!((report.rows, report.first_break), (5, None));
            let rows = store.audit_rows(0, 0, 10).expect("rows");
            assert_eq!(report.head, rows[4].hash.clone().expect("hash"));
            assert_eq!(rows[0].prev_hash.as_deref(), Some(GENESIS));
            assert_eq!(rows[1].prev_hash, rows[0].hash);
            heads.push(report.head);
        }
        heads.dedup();
        assert_eq!(
            heads.len(),
            1,
            "the same rows hash the same on every backend"
        );
        for empty in crate::store::test_stores() {
            assert_eq!(empty.verify_audit().expect("verify").head, GENESIS);
        }
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
            for store in stores_with_rows(5) {
                if store.dialect() == Dialect::Postgres && edit.contains("seconds") {
                    continue; // PostgreSQL keeps a column's type
                }
                sql(&store, edit);
                let report = store.verify_audit().expect("verify");
                assert_eq!(
                    report.first_break,
                    Some(ChainBreak::Changed { id: 3 }),
                    "{edit}"
                );
                assert_eq!(report.rows, 2);
            }
        }

        for store in stores_with_rows(5) {
            sql(&store, "DELETE FROM audit WHERE id = 3");
            let broken = store.verify_audit().expect("verify").first_break;
            assert_eq!(
                broken,
                Some(ChainBreak::Missing {
                    id: 4,
                    after: Some(2)
                })
            );
        }
        for store in stores_with_rows(5) {
            sql(&store, "DELETE FROM audit WHERE id = 1");
            let broken = store.verify_audit().expect("verify").first_break;
            assert_eq!(broken, Some(ChainBreak::Missing { id: 2, after: None }));
        }

        // a row slipped into a gap in the ids (PostgreSQL leaves gaps), with its hash made the
        // honest way after the row before it, still breaks the chain at the row after it
        for store in stores_with_rows(3) {
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
                        params![],
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
    }

    /// Two processes on one database (the server and a `facelift person` command, or two
    /// instances): every row of both is written, and the chain is one chain.
    #[test]
    fn two_writers_on_one_database_keep_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_writers_keep_one_chain([
            Store::open(dir.path()).expect("first"),
            Store::open(dir.path()).expect("second"),
        ]);
        if let Some(url) = crate::store::test_postgres_url() {
            two_writers_keep_one_chain([
                Store::open_postgres(&url).expect("first instance"),
                Store::open_postgres(&url).expect("second instance"),
            ]);
        }
    }

    fn two_writers_keep_one_chain(stores: [Store; 2]) {
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

    fn head_of(t: &dyn Conn, id: i64) -> Result<String, DbError> {
        t.query_row("SELECT hash FROM audit WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
    }
}
