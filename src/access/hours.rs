//! Access hours as a building manager writes them: "weekdays 07:00-20:00", "sat,sun
//! 10:00-16:00", "mon-fri 22:00-06:00" (past midnight: into the next morning), "daily
//! 06:00-24:00", read in the building's time zone.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MINUTES_A_DAY: u16 = 24 * 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoursError {
    #[error(
        "{0:?} is not a time window: write days then hours, such as \"weekdays 07:00-20:00\", \
         \"sat,sun 10:00-16:00\" or \"mon-fri 22:00-06:00\""
    )]
    Malformed(String),
    #[error("{0:?} is not a day: use mon, tue, ... sun, weekdays, weekends or daily")]
    Day(String),
    #[error("{0:?} is not a time of day from 00:00 to 24:00")]
    Time(String),
    #[error("{0:?} is not a time zone: use an IANA name such as \"Europe/London\"")]
    TimeZone(String),
}

/// One window: on these days (Monday first), from `start` to `end` minutes after midnight;
/// an `end` before `start` runs into the next day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    days: [bool; 7],
    start: u16,
    end: u16,
}

impl Window {
    pub fn parse(text: &str) -> Result<Self, HoursError> {
        let malformed = || HoursError::Malformed(text.to_string());
        let (days, times) = text.trim().rsplit_once(' ').ok_or_else(malformed)?;
        let (start, end) = times.split_once('-').ok_or_else(malformed)?;
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        if start == end || start == MINUTES_A_DAY {
            return Err(malformed());
        }
        Ok(Self {
            days: parse_days(days.trim())?,
            start,
            end,
        })
    }

    /// Whether `minute` of the day `weekday` (0 = Monday) is inside.
    fn contains(&self, weekday: usize, minute: u16) -> bool {
        if self.start < self.end {
            return self.days[weekday] && (self.start..self.end).contains(&minute);
        }
        let yesterday = (weekday + 6) % 7;
        (self.days[weekday] && minute >= self.start) || (self.days[yesterday] && minute < self.end)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = match self.days {
            [true, true, true, true, true, true, true] => "daily".to_string(),
            [true, true, true, true, true, false, false] => "weekdays".to_string(),
            [false, false, false, false, false, true, true] => "weekends".to_string(),
            days => DAY_NAMES
                .iter()
                .zip(days)
                .filter(|(_, on)| *on)
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(","),
        };
        let time = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{days} {}-{}", time(self.start), time(self.end))
    }
}

fn parse_time(text: &str) -> Result<u16, HoursError> {
    let bad = || HoursError::Time(text.to_string());
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    let (hours, minutes): (u16, u16) = (
        hours.parse().map_err(|_| bad())?,
        minutes.parse().map_err(|_| bad())?,
    );
    let minute = hours * 60 + minutes;
    if hours > 24 || minutes > 59 || minute > MINUTES_A_DAY {
        return Err(bad());
    }
    Ok(minute)
}

fn parse_days(text: &str) -> Result<[bool; 7], HoursError> {
    let day = |name: &str| {
        let lower = name.to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .zip(FULL_DAY_NAMES)
            .position(|(short, full)| lower == *short || lower == full)
            .ok_or_else(|| HoursError::Day(name.to_string()))
    };
    let mut days = [false; 7];
    for part in text.split(',').map(str::trim) {
        match part.to_ascii_lowercase().as_str() {
            "daily" | "every day" => days = [true; 7],
            "weekdays" => days[..5].fill(true),
            "weekends" => days[5..].fill(true),
            _ => match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (day(first.trim())?, day(last.trim())?);
                    let mut d = first;
                    loop {
                        days[d] = true;
                        if d == last {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(part)?] = true,
            },
        }
    }
    Ok(days)
}

/// A person's access hours: empty means at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hours(Vec<Window>);

impl Hours {
    pub fn parse<S: AsRef<str>>(windows: &[S]) -> Result<Self, HoursError> {
        windows
            .iter()
            .map(|w| Window::parse(w.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn always(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether Unix second `now` is inside, read in `zone`.
    pub fn contains(&self, now: i64, zone: &TimeZone) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Ok(instant) = Timestamp::from_second(now) else {
            return false;
        };
        let local = instant.to_zoned(zone.clone());
        let weekday = usize::from(local.weekday().to_monday_zero_offset().unsigned_abs());
        let minute = local.hour().unsigned_abs() as u16 * 60 + local.minute().unsigned_abs() as u16;
        self.0.iter().any(|w| w.contains(weekday, minute))
    }

    /// The windows, written the canonical way.
    pub fn texts(&self) -> Vec<String> {
        self.0.iter().map(Window::to_string).collect()
    }
}

/// The building's time zone by its IANA name.
pub fn time_zone(name: &str) -> Result<TimeZone, HoursError> {
    TimeZone::get(name).map_err(|_| HoursError::TimeZone(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a local time in `zone`.
    fn at(local: &str, zone: &str) -> i64 {
        let civil: jiff::civil::DateTime = local.parse().expect("datetime");
        civil
            .to_zoned(time_zone(zone).expect("zone"))
            .expect("zoned")
            .timestamp()
            .as_second()
    }

    #[test]
    fn weekday_hours_hold_in_the_buildings_time_zone() {
        let hours = Hours::parse(&["weekdays 07:00-20:00"]).expect("parse");
        let london = time_zone("Europe/London").expect("zone");
        // 2026-12-02 is a Wednesday
        assert!(hours.contains(at("2026-12-02T07:00", "Europe/London"), &london));
        assert!(hours.contains(at("2026-12-02T19:59", "Europe/London"), &london));
        assert!(!hours.contains(at("2026-12-02T20:00", "Europe/London"), &london));
        assert!(!hours.contains(at("2026-12-02T06:59", "Europe/London"), &london));
        assert!(
            !hours.contains(at("2026-12-05T12:00", "Europe/London"), &london),
            "Saturday"
        );
        // 19:30 in London is 20:30 in Berlin: outside for a Berlin building
        let berlin = time_zone("Europe/Berlin").expect("zone");
        assert!(!hours.contains(at("2026-12-02T19:30", "Europe/London"), &berlin));
        // summer time: 07:30 in July is inside, read in London
        assert!(hours.contains(at("2026-07-01T07:30", "Europe/London"), &london));
    }

    #[test]
    fn a_window_past_midnight_runs_into_the_next_morning() {
        let hours = Hours::parse(&["fri 22:00-06:00"]).expect("parse");
        let utc = time_zone("UTC").expect("zone");
        assert!(
            hours.contains(at("2026-12-04T23:00", "UTC"), &utc),
            "Friday night"
        );
        assert!(
            hours.contains(at("2026-12-05T05:59", "UTC"), &utc),
            "Saturday morning"
        );
        assert!(!hours.contains(at("2026-12-05T06:00", "UTC"), &utc));
        assert!(
            !hours.contains(at("2026-12-05T23:00", "UTC"), &utc),
            "Saturday night"
        );
        assert!(
            !hours.contains(at("2026-12-04T05:00", "UTC"), &utc),
            "Friday morning"
        );
    }

    #[test]
    fn windows_are_written_back_the_same_way() {
        for (text, written) in [
            ("Weekdays 07:00-20:00", "weekdays 07:00-20:00"),
            ("sat,sun 10:00-16:00", "weekends 10:00-16:00"),
            ("mon-wed 9:00-12:30", "mon,tue,wed 09:00-12:30"),
            ("fri-mon 00:00-24:00", "mon,fri,sat,sun 00:00-24:00"),
            ("daily 06:00-24:00", "daily 06:00-24:00"),
        ] {
            let window = Window::parse(text).expect(text);
            assert_eq!(window.to_string(), written);
            assert_eq!(Window::parse(written).expect(written), window);
        }
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for text in [
            "07:00-20:00",
            "weekdays",
            "weekdays 07:00",
            "weekdays 20:00-20:00",
            "weekdays 25:00-26:00",
            "weekdays 07:60-08:00",
            "someday 07:00-08:00",
            "weekdays 24:00-06:00",
            "",
        ] {
            assert!(Window::parse(text).is_err(), "{text:?} was accepted");
        }
        assert!(time_zone("Mars/Olympus_Mons").is_err());
    }
}
