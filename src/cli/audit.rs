//! `facelift audit verify|export`: the audit log's hash chain checked, and its rows exported.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::open_store;
use crate::config::Settings;
use crate::store::{AuditRow, ChainReport};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: AuditAction,
    #[arg(long, global = true)]
    pub(super) data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Walk the hash chain and name the first row that was changed, deleted or inserted out
    /// of order (exit status 1 if there is one)
    Verify {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the rows written since a time, oldest first
    Export {
        /// RFC 3339 time (2026-12-01T08:00:00Z), a date (2026-12-01, midnight UTC) or Unix
        /// seconds; default: every row
        #[arg(long)]
        since: Option<String>,
        /// One JSON object a line (JSON Lines), each with its chain hashes
        #[arg(long)]
        json: bool,
    },
}

pub fn audit(settings: &Settings, args: AuditArgs) -> Result<()> {
    let store = open_store(settings)?;
    match args.action {
        AuditAction::Verify { json } => {
            let report = store.verify_audit()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            if report.first_break.is_some() {
                std::process::exit(1);
            }
            Ok(())
        }
        AuditAction::Export { since, json } => {
            let since = since.as_deref().map(parse_since).transpose()?.unwrap_or(0);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut after_id = 0;
            loop {
                let rows = store.audit_rows(since, after_id, 1000)?;
                let Some(last) = rows.last() else { break };
                after_id = last.id;
                for row in &rows {
                    if json {
                        serde_json::to_writer(&mut out, row)?;
                        writeln!(out)?;
                    } else {
                        writeln!(out, "{}", line(row))?;
                    }
                }
            }
            out.flush()?;
            Ok(())
        }
    }
}

fn print_report(report: &ChainReport) {
    match &report.first_break {
        None => println!(
            "The audit log is intact: {} rows, chained in order. Its head is\n  {}\nKeep it \
             somewhere else to show later that nothing after it was cut off.",
            report.rows, report.head
        ),
        Some(broken) => println!(
            "The audit log was tampered with: {broken}.\nThe {} rows before it are intact; the \
             last of them has the hash\n  {}",
            report.rows, report.head
        ),
    }
}

fn time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

fn line(row: &AuditRow) -> String {
    let mut text = format!(
        "{:>6}  {}  {:<7} {:<16} {}",
        row.id,
        time(row.at),
        row.kind,
        row.outcome,
        row.client
    );
    if let Some(person) = &row.person {
        text.push_str(&format!("  person={person}"));
    }
    if let Some(similarity) = row.similarity {
        text.push_str(&format!("  similarity={similarity:.3}"));
    }
    if let Some(detail) = &row.detail {
        text.push_str(&format!("  {detail}"));
    }
    text
}

/// Unix seconds from an RFC 3339 time, a date (midnight UTC) or a number of seconds.
fn parse_since(text: &str) -> Result<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp.as_second());
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        let midnight = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .context("that date")?;
        return Ok(midnight.timestamp().as_second());
    }
    bail!(
        "--since {text:?}: give an RFC 3339 time (2026-12-01T08:00:00Z), a date (2026-12-01) or Unix seconds"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_a_date_or_seconds() {
        assert_eq!(parse_since("1764576000").expect("seconds"), 1_764_576_000);
        assert_eq!(parse_since("2025-12-01").expect("date"), 1_764_547_200);
        assert_eq!(
            parse_since("2025-12-01T08:00:00Z").expect("time"),
            1_764_547_200 + 8 * 3600
        );
        assert!(parse_since("last tuesday").is_err());
    }
}
