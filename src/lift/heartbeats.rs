//! Which status reports go to the audit log. A report that changes the floor or the state is
//! written as it comes; one that only says "still here" (a heartbeat, every 5 s from a real
//! controller: some 17,000 a day) is counted, and the count is written once an hour, or
//! before the next change, as one row.

use super::protocol::{DeviceState, StatusReport};

/// Heartbeats are written as one row per this many seconds at most.
pub const ROLLUP_SECS: i64 = 3600;

#[derive(Debug, Default)]
pub struct Heartbeats {
    last: Option<(i32, DeviceState)>,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    count: u64,
    first_seq: u64,
    last_seq: u64,
    since: i64,
}

impl Heartbeats {
    /// Notes `report`, received at `now` (Unix seconds); returns the audit details to write,
    /// oldest first (none for a heartbeat inside the hour).
    pub fn note(&mut self, report: &StatusReport, now: i64) -> Vec<String> {
        let position = (report.floor, report.state);
        let mut rows = Vec::new();
        if self.last == Some(position) {
            let pending = self.pending.get_or_insert(Pending {
                count: 0,
                first_seq: report.seq,
                last_seq: report.seq,
                since: now,
            });
            pending.count += 1;
            pending.last_seq = report.seq;
            if now.saturating_sub(pending.since) >= ROLLUP_SECS {
                rows.extend(self.flush(now));
            }
            return rows;
        }
        rows.extend(self.flush(now));
        self.last = Some(position);
        rows.push(format!(
            "floor {} {} seq {}",
            report.floor,
            report.state.as_str(),
            report.seq
        ));
        rows
    }

    /// The row for the heartbeats counted so far, if any.
    fn flush(&mut self, now: i64) -> Option<String> {
        let pending = self.pending.take()?;
        let (floor, state) = self.last?;
        Some(format!(
            "{} heartbeats at floor {floor} {} over {} s, seq {} to {}",
            pending.count,
            state.as_str(),
            now.saturating_sub(pending.since),
            pending.first_seq,
            pending.last_seq
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(floor: i32, state: DeviceState, seq: u64) -> StatusReport {
        StatusReport {
            device_id: "lift-a".into(),
            floor,
            state,
            seq,
        }
    }

    #[test]
    fn a_day_of_heartbeats_is_two_dozen_rows_and_every_change_is_its_own() {
        let mut heartbeats = Heartbeats::default();
        let mut rows = Vec::new();
        // a day at floor 2, a report every 5 s
        for (i, at) in (0..86_400).step_by(5).enumerate() {
            rows.extend(heartbeats.note(&report(2, DeviceState::Idle, i as u64), at));
        }
        assert_eq!(rows[0], "floor 2 idle seq 0");
        assert_eq!(rows.len(), 1 + 23, "{rows:?}");
        // the first hour's heartbeats: every 5 s from t = 5 to t = 3605, both included
        assert_eq!(
            rows[1],
            "721 heartbeats at floor 2 idle over 3600 s, seq 1 to 721"
        );
        // a move: the heartbeats counted so far are written first, then the change
        let moved = heartbeats.note(&report(2, DeviceState::Moving, 20_000), 86_400);
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert!(moved[0].contains("heartbeats at floor 2 idle"), "{moved:?}");
        assert_eq!(moved[1], "floor 2 moving seq 20000");
        let arrived = heartbeats.note(&report(3, DeviceState::Idle, 20_001), 86_405);
        assert_eq!(arrived, ["floor 3 idle seq 20001"]);
    }
}
