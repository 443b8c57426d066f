//! `cargo bench --bench store`: what the store's common operations cost on SQLite (a file, as
//! the server opens it) and on PostgreSQL, in one run: a session read (every request with a
//! cookie), a login attempt's counters (a place taken, then a failure: two write transactions)
//! and an audit row (a write transaction that reads the chain's head). PostgreSQL is the server
//! `BENCH_POSTGRES_URL` (or `TEST_POSTGRES_URL`) names, in a new schema; without one only SQLite
//! runs. `STORE_OPS=2000` sets how many of each. Then, on PostgreSQL, how long an announcement
//! (`Store::announce`, LISTEN/NOTIFY) takes to reach a second instance: the median of 50.

use std::time::Instant;

use facelift::store::{AuditEntry, AuditKind, AuditOutcome, Store};

fn per_op_us(ops: usize, mut run: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..ops {
        run(i);
    }
    start.elapsed().as_secs_f64() * 1e6 / ops as f64
}

/// Microseconds per session read, login attempt and audit row.
fn measure(store: &Store, ops: usize) -> [f64; 3] {
    let expires = i64::MAX / 2;
    for i in 0..100 {
        store
            .session_save(&format!("session-{i}"), "{}", expires, false)
            .expect("session");
    }
    let sessions = per_op_us(ops, |i| {
        let found = store
            .session_load(&format!("session-{}", i % 100), 0)
            .expect("load");
        assert!(found.is_some());
    });
    let attempts = per_op_us(ops, |i| {
        let client = format!("198.51.100.{}", i % 250);
        let now = 1_000_000 + i as i64;
        store
            .update_client_counts(&client, now, |c| {
                c.in_flight += 1;
                c.in_flight_at = now;
            })
            .expect("begin");
        store
            .update_client_counts(&client, now, |c| {
                c.in_flight = c.in_flight.saturating_sub(1);
                c.failures += 1;
                c.last_failure = now;
            })
            .expect("failure");
    });
    let audit = per_op_us(ops, |i| {
        store
            .audit(&AuditEntry {
                at: 1_000_000 + i as i64,
                kind: AuditKind::Login,
                client: "198.51.100.7".into(),
                person: Some("person01".into()),
                similarity: Some(0.81),
                outcome: AuditOutcome::Recognized,
                detail: None,
            })
            .expect("audit");
    });
    [sessions, attempts, audit]
}

fn main() {
    let ops: usize = std::env::var("STORE_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let folder = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open(folder.path()).expect("sqlite");
    let sqlite_us = measure(&sqlite, ops);
    let postgres_url = std::env::var("BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("TEST_POSTGRES_URL"))
        .ok()
        .map(|base| {
            let schema = format!("bench_{}", std::process::id());
            Store::postgres_schema_url(&base, &schema).expect("schema")
        });
    let postgres_us = postgres_url
        .as_deref()
        .map(|url| measure(&Store::open_postgres(url).expect("postgres"), ops));
    println!("store operations, {ops} of each, microseconds per operation (one thread)");
    println!(
        "{:<34} {:>10} {:>12} {:>8}",
        "", "SQLite", "PostgreSQL", "ratio"
    );
    let names = [
        "session read",
        "login attempt (2 write txns)",
        "audit row (chained)",
    ];
    for (i, name) in names.iter().enumerate() {
        match &postgres_us {
            Some(pg) => println!(
                "{name:<34} {:>10.1} {:>12.1} {:>7.1}x",
                sqlite_us[i],
                pg[i],
                pg[i] / sqlite_us[i]
            ),
            None => println!("{name:<34} {:>10.1} {:>12}", sqlite_us[i], "-"),
        }
    }
    if let Some(url) = postgres_url {
        let (one, two) = (
            Store::open_postgres(&url).expect("first instance"),
            Store::open_postgres(&url).expect("second instance"),
        );
        let mut heard = two.subscribe();
        let mut times: Vec<f64> = (0..50)
            .map(|i| {
                let start = Instant::now();
                one.announce(&format!("change {i}")).expect("announce");
                loop {
                    if heard.try_recv().is_ok() {
                        break start.elapsed().as_secs_f64() * 1e3;
                    }
                    std::thread::yield_now();
                }
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "an announcement reaches another instance in {:.2} ms (median of 50, max {:.2} ms)",
            times[25], times[49]
        );
    }
}
