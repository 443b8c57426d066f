//! The audit log's hash chain: a server writes it, someone edits the database behind its back,
//! and `facelift audit verify` names the row; `facelift audit export` gives the rows.

use std::process::Command;
use std::sync::Arc;

use facelift::store::Store;

use crate::http::{AppOptions, spawn_app_with};

fn audit(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facelift"))
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run facelift audit")
}

#[tokio::test]
async fn audit_verify_names_the_row_edited_behind_the_servers_back() {
    let data = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(AppOptions {
        store: Some(Arc::new(Store::open(data.path()).expect("store"))),
        ..AppOptions::default()
    })
    .await;
    app.login("img4.jpg").await;
    app.login("img38.jpg").await; // a stranger
    app.login("img4.jpg").await;
    drop(app);

    let intact = audit(data.path(), &["verify", "--json"]);
    assert!(intact.status.success(), "{intact:?}");
    let report: serde_json::Value = serde_json::from_slice(&intact.stdout).expect("json");
    assert_eq!(report["first_break"], serde_json::Value::Null);
    let rows = report["rows"].as_u64().expect("rows");
    assert!(rows >= 3, "three logins written: {report}");

    let exported = audit(data.path(), &["export", "--since", "2000-01-01", "--json"]);
    assert!(exported.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len() as u64, rows);
    let stranger = lines
        .iter()
        .find(|l| l["outcome"] == "not_recognized")
        .expect("the stranger's attempt");
    assert_eq!(lines.last().expect("a row")["hash"], report["head"]);
    let future = audit(data.path(), &["export", "--since", "2999-01-01", "--json"]);
    assert!(future.status.success() && future.stdout.is_empty());

    // the stranger's failure made to read as someone recognised
    let id = stranger["id"].as_i64().expect("id");
    let connection = rusqlite::Connection::open(data.path().join("facelift.db")).expect("db");
    connection
        .execute(
            "UPDATE audit SET outcome = 'recognized', person = 'person01' WHERE id = ?1",
            [id],
        )
        .expect("edit");
    drop(connection);

    let tampered = audit(data.path(), &["verify"]);
    assert_eq!(tampered.status.code(), Some(1), "{tampered:?}");
    let said = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        said.contains(&format!("row {id} was changed after it was written")),
        "{said}"
    );
}
