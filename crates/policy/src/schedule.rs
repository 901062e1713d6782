//! When a scheduled job (retention, garbage collection) runs: a standard
//! five-field cron expression, evaluated in UTC.
//!
//! ```text
//! minute  hour  day-of-month  month  day-of-week
//! 0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
//!                             jan-dec sun-sat
//! ```
//!
//! Each field is `*`, or a comma-separated list of values, ranges (`1-5`,
//! `mon-fri`) and steps (`*/15`, `0-30/10`, `5/20` meaning `5-59/20`). Names
//! are case-insensitive. The aliases `@hourly`, `@daily` (`@midnight`),
//! `@weekly`, `@monthly` and `@yearly` (`@annually`) stand for `0 * * * *`,
//! `0 0 * * *`, `0 0 * * 0`, `0 0 1 * *` and `0 0 1 1 *`.
//!
//! As in every cron since Vixie's: when both day-of-month and day-of-week
//! are restricted, a day matches when **either** matches (`0 0 1 * mon` is
//! the first of the month and every Monday); a field starting with `*`
//! (`*/2` too) counts as unrestricted for that rule.
//!
//! Decisions:
//! - Written here (about 250 lines with tests) rather than taken from
//!   `croner`: that crate brings `derive_builder`, `darling` and `strum`
//!   (proc macros) for seconds, years, `L`/`W`/`#` and time zones, none of
//!   which a registry's maintenance schedule needs, and its day-matching
//!   default is not the cron one. UTC only: a schedule never skips or
//!   repeats a run at a daylight-saving change.
//! - An expression that can never fire (`0 0 30 2 *`) is refused when
//!   parsed, so [`Schedule::next_after`] returns `None` only past the year
//!   262,000 or so, where timestamps stop.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::PolicyError;

const MINUTE_MS: i64 = 60_000;
const DAY_MINUTES: i64 = 24 * 60;
/// The Gregorian calendar repeats, weekdays included, every 400 years.
const CYCLE_DAYS: i64 = 146_097;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A parsed cron expression. Serialized as the string it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    /// Bit m set: minute m matches.
    minutes: u64,
    hours: u32,
    /// Bits 1-31.
    days_of_month: u32,
    /// Bits 1-12.
    months: u16,
    /// Bits 0-6, Sunday 0.
    days_of_week: u8,
    /// Day-of-month and day-of-week both restricted: either may match.
    either_day: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name's value (`jan` is 1, `sun` 0).
    names_from: u32,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_from: 1,
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        names_from: 0,
    },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        if let Some(i) = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
        {
            return Ok(self.names_from + i as u32);
        }
        let value: u32 = text.parse().map_err(|_| {
            format!(
                "{text:?} is not a {} (expected {}-{})",
                self.name, self.min, self.max
            )
        })?;
        if value < self.min || value > self.max {
            return Err(format!(
                "{value} is out of range for the {} ({}-{})",
                self.name, self.min, self.max
            ));
        }
        Ok(value)
    }

    /// The values a field's text selects, as a bit set.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                        format!(
                            "{step:?} is not a step (a number above 0) in the {}",
                            self.name
                        )
                    })?;
                    (range, step)
                }
                None => (item, 1),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((low, high)) = range.split_once('-') {
                let (low, high) = (self.value(low)?, self.value(high)?);
                if low > high {
                    return Err(format!(
                        "the range {range} in the {} is backwards",
                        self.name
                    ));
                }
                (low, high)
            } else {
                let low = self.value(range)?;
                // `5/20`: from 5 to the end, every 20.
                (
                    low,
                    if step > 1 || item.contains('/') {
                        self.max
                    } else {
                        low
                    },
                )
            };
            for value in (low..=high).step_by(step as usize) {
                bits |= 1 << value;
            }
        }
        Ok(bits)
    }
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, PolicyError> {
        let invalid = |reason: String| PolicyError::InvalidSchedule {
            schedule: expression.to_owned(),
            reason,
        };
        let trimmed = expression.trim();
        let fields_text = match trimmed.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            alias if alias.starts_with('@') => {
                return Err(invalid(format!(
                    "unknown alias {trimmed}; the aliases are @hourly, @daily, @weekly, @monthly and @yearly"
                )));
            }
            _ => trimmed,
        };
        let texts: Vec<&str> = fields_text.split_whitespace().collect();
        if texts.len() != 5 {
            return Err(invalid(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                texts.len()
            )));
        }
        let mut bits = [0u64; 5];
        for ((field, text), bits) in FIELDS.iter().zip(&texts).zip(&mut bits) {
            *bits = field.parse(text).map_err(invalid)?;
        }
        let days_of_week = bits[4] | (bits[4] >> 7); // 7 is Sunday too
        let schedule = Schedule {
            source: trimmed.to_owned(),
            minutes: bits[0],
            hours: bits[1] as u32,
            days_of_month: bits[2] as u32,
            months: bits[3] as u16,
            days_of_week: (days_of_week & 0x7f) as u8,
            either_day: !texts[2].starts_with('*') && !texts[4].starts_with('*'),
        };
        if schedule.next_day(0, CYCLE_DAYS).is_none() {
            return Err(invalid("no date ever matches it".into()));
        }
        Ok(schedule)
    }

    /// The first time the schedule fires strictly after `after_ms`
    /// (milliseconds since the Unix epoch, UTC), at the start of a minute.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let first = after_ms.div_euclid(MINUTE_MS).checked_add(1)?;
        let mut day = first.div_euclid(DAY_MINUTES);
        let mut minute_of_day = first.rem_euclid(DAY_MINUTES);
        loop {
            let matching = self.next_day(day, CYCLE_DAYS)?;
            if matching != day {
                day = matching;
                minute_of_day = 0;
            }
            if let Some(minute) = self.first_minute_from(minute_of_day) {
                return day
                    .checked_mul(DAY_MINUTES)?
                    .checked_add(minute)?
                    .checked_mul(MINUTE_MS);
            }
            day = day.checked_add(1)?;
            minute_of_day = 0;
        }
    }

    /// The first matching minute of a day at or after `from`.
    fn first_minute_from(&self, from: i64) -> Option<i64> {
        (from..DAY_MINUTES)
            .find(|m| self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0)
    }

    /// The first matching day (days since 1970-01-01) at or after `day`,
    /// looking at most `limit` days ahead; a month that does not match is
    /// skipped whole.
    fn next_day(&self, mut day: i64, limit: i64) -> Option<i64> {
        let end = day.checked_add(limit)?;
        while day < end {
            let (year, month, day_of_month) = civil_from_days(day);
            if self.months & (1 << month) == 0 {
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                day = days_from_civil(next_year, next_month, 1);
                continue;
            }
            let weekday = (day + 4).rem_euclid(7); // 1970-01-01 was a Thursday
            let dom = self.days_of_month & (1 << day_of_month) != 0;
            let dow = self.days_of_week & (1 << weekday) != 0;
            if if self.either_day {
                dom || dow
            } else {
                dom && dow
            } {
                return Some(day);
            }
            day += 1;
        }
        None
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// `ms` (milliseconds since the Unix epoch) as an RFC 3339 UTC timestamp
/// with milliseconds: `2026-12-07T22:00:49.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Schedule {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Schedule, PolicyError> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
        let source = String::deserialize(d)?;
        Schedule::parse(&source).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Schedule {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A five-field cron expression in UTC (minute hour day-of-month month \
                 day-of-week), or @hourly, @daily, @weekly, @monthly, @yearly.",
            ))
            .examples(["0 3 * * *", "*/15 * * * *", "0 2 * * sun", "@daily"])
            .into()
    }
}

impl ToSchema for Schedule {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC time, for readable tables.
    fn at(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * MINUTE_MS
    }

    #[test]
    fn timestamps_in_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_680_501_893_042), "2023-04-03T06:04:53.042Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn calendar_arithmetic_round_trips() {
        for day in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(at(2026, 11, 22, 12, 0), 1_795_348_800_000);
    }

    #[test]
    fn next_runs() {
        // (expression, after, next)
        let table = [
            ("0 3 * * *", at(2026, 11, 22, 12, 0), at(2026, 11, 23, 3, 0)),
            ("0 3 * * *", at(2026, 11, 22, 2, 59), at(2026, 11, 22, 3, 0)),
            // Strictly after, also within the minute.
            ("0 3 * * *", at(2026, 11, 22, 3, 0), at(2026, 11, 23, 3, 0)),
            (
                "0 3 * * *",
                at(2026, 11, 22, 3, 0) - 1,
                at(2026, 11, 22, 3, 0),
            ),
            (
                "0 3 * * *",
                at(2026, 11, 22, 3, 0) + 59_999,
                at(2026, 11, 23, 3, 0),
            ),
            (
                "*/15 * * * *",
                at(2026, 11, 22, 12, 7),
                at(2026, 11, 22, 12, 15),
            ),
            (
                "*/15 * * * *",
                at(2026, 11, 22, 12, 45),
                at(2026, 11, 22, 13, 0),
            ),
            (
                "*/15 * * * *",
                at(2026, 12, 31, 23, 50),
                at(2027, 1, 1, 0, 0),
            ),
            ("* * * * *", at(2026, 1, 1, 0, 0) + 1, at(2026, 1, 1, 0, 1)),
            ("0 0 29 2 *", at(2026, 11, 22, 12, 0), at(2028, 2, 29, 0, 0)),
            ("0 0 29 2 *", at(2096, 3, 1, 0, 0), at(2104, 2, 29, 0, 0)),
            (
                "30 4 1,15 * *",
                at(2026, 11, 15, 4, 30),
                at(2026, 12, 1, 4, 30),
            ),
            (
                "0 9-17/4 * * mon-fri",
                at(2026, 11, 20, 17, 0),
                at(2026, 11, 23, 9, 0),
            ),
            (
                "0 9-17/4 * * MON-FRI",
                at(2026, 11, 23, 9, 0),
                at(2026, 11, 23, 13, 0),
            ),
            (
                "5/20 * * * *",
                at(2026, 11, 22, 12, 46),
                at(2026, 11, 22, 13, 5),
            ),
            ("0 0 * * 7", at(2026, 11, 22, 0, 0), at(2026, 11, 29, 0, 0)),
            ("0 0 * * 0", at(2026, 11, 21, 0, 0), at(2026, 11, 22, 0, 0)),
            (
                "0 0 * jan,jul *",
                at(2026, 11, 22, 0, 0),
                at(2027, 1, 1, 0, 0),
            ),
            // Both days restricted: either matches (the 1st, or a Monday).
            (
                "0 0 1 * mon",
                at(2026, 11, 22, 0, 0),
                at(2026, 11, 23, 0, 0),
            ),
            ("0 0 1 * mon", at(2026, 11, 30, 0, 0), at(2026, 12, 1, 0, 0)),
            // A field starting with * is not a restriction: both must match.
            (
                "0 0 */2 * mon",
                at(2026, 11, 23, 0, 0),
                at(2026, 12, 7, 0, 0),
            ),
            ("@hourly", at(2026, 11, 22, 12, 0), at(2026, 11, 22, 13, 0)),
            ("@daily", at(2026, 11, 22, 12, 0), at(2026, 11, 23, 0, 0)),
            ("@weekly", at(2026, 11, 22, 12, 0), at(2026, 11, 29, 0, 0)),
            ("@monthly", at(2026, 11, 22, 12, 0), at(2026, 12, 1, 0, 0)),
            ("@yearly", at(2026, 11, 22, 12, 0), at(2027, 1, 1, 0, 0)),
            ("0 0 1 1 *", -1, 0),
            (
                "59 23 31 12 *",
                at(1969, 1, 1, 0, 0),
                at(1969, 12, 31, 23, 59),
            ),
        ];
        for (expression, after, next) in table {
            let schedule = Schedule::parse(expression).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                schedule.next_after(after),
                Some(next),
                "{expression} after {after}"
            );
        }
        assert_eq!(
            Schedule::parse("* * * * *").unwrap().next_after(i64::MAX),
            None
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let table = [
            ("", "expected 5 fields"),
            (
                "0 3 * *",
                "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
            ),
            ("0 3 * * * *", "got 6"),
            ("60 * * * *", "60 is out of range for the minute (0-59)"),
            ("0 24 * * *", "out of range for the hour"),
            ("0 0 0 * *", "out of range for the day-of-month"),
            ("0 0 * 13 *", "out of range for the month"),
            ("0 0 * * 8", "out of range for the day-of-week"),
            ("*/0 * * * *", "not a step"),
            ("5-1 * * * *", "backwards"),
            ("x * * * *", "\"x\" is not a minute"),
            ("0 0 * * monday", "is not a day-of-week"),
            ("0 0 30 2 *", "no date ever matches it"),
            ("0 0 31 4,6,9,11 *", "no date ever matches it"),
            ("@reboot", "unknown alias @reboot"),
            ("1,,2 * * * *", "is not a minute"),
        ];
        for (expression, expected) in table {
            let e = Schedule::parse(expression)
                .expect_err(expression)
                .to_string();
            assert!(e.contains(expected), "{expression}: {e}");
            assert!(
                e.starts_with(&format!("invalid schedule {expression:?}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn schedules_round_trip_as_strings() {
        let s: Schedule = serde_json::from_str(r#""0 3 * * *""#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""0 3 * * *""#);
        assert_eq!(s.to_string(), "0 3 * * *");
        assert!(serde_json::from_str::<Schedule>(r#""0 3 * *""#).is_err());
        assert_eq!(Schedule::parse(" @daily ").unwrap().as_str(), "@daily");
    }
}
