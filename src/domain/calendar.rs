//! Billing calendar in node local time: months (`yyyyMM`), days (`yyyyMMdd`), periods.
//! A period ends at 23:59:59 of the month's last day; the next starts at 00:00:00 on the 1st.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

#[derive(Debug, Clone, Copy)]
pub struct Cal {
    pub tz: UtcOffset,
}

/// A month as (year, month 1–12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ym(pub i32, pub u8);

impl Ym {
    pub fn parse(s: &str) -> Option<Ym> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (y, m) = (s[..4].parse().ok()?, s[4..].parse().ok()?);
        (1..=12).contains(&m).then_some(Ym(y, m))
    }
    pub fn next(self) -> Ym {
        if self.1 == 12 { Ym(self.0 + 1, 1) } else { Ym(self.0, self.1 + 1) }
    }
    pub fn prev(self) -> Ym {
        if self.1 == 1 { Ym(self.0 - 1, 12) } else { Ym(self.0, self.1 - 1) }
    }
    pub fn plus(self, months: i32) -> Ym {
        let n = self.0 * 12 + (self.1 as i32 - 1) + months;
        Ym(n.div_euclid(12), (n.rem_euclid(12) + 1) as u8)
    }
}

impl std::fmt::Display for Ym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}{:02}", self.0, self.1)
    }
}

fn first_day(ym: Ym) -> Date {
    Date::from_calendar_date(ym.0, Month::try_from(ym.1).unwrap_or(Month::January), 1).unwrap_or(Date::MIN)
}

impl Cal {
    pub fn new(tz: UtcOffset) -> Cal {
        Cal { tz }
    }

    fn local(&self, unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH).to_offset(self.tz)
    }

    fn unix_of(&self, d: Date) -> i64 {
        PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(self.tz).unix_timestamp()
    }

    pub fn month(&self, unix: i64) -> Ym {
        let d = self.local(unix);
        Ym(d.year(), d.month() as u8)
    }

    /// `yyyyMMdd` of the day holding `unix`.
    pub fn date8(&self, unix: i64) -> String {
        let d = self.local(unix);
        format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day())
    }

    /// 00:00:00 on the 1st of the month.
    pub fn month_start(&self, ym: Ym) -> i64 {
        self.unix_of(first_day(ym))
    }

    /// 23:59:59 of the month's last day.
    pub fn month_end(&self, ym: Ym) -> i64 {
        self.month_start(ym.next()) - 1
    }

    /// 00:00:00 of a `yyyyMMdd` day.
    pub fn day_start(&self, date8: &str) -> Option<i64> {
        let d = Date::parse(date8, time::macros::format_description!("[year][month][day]")).ok()?;
        Some(self.unix_of(d))
    }

    /// `yyyy-MM-dd HH:mm:ss` in node time.
    pub fn ts(&self, unix: i64) -> String {
        let d = self.local(unix);
        format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", d.year(), d.month() as u8, d.day(), d.hour(), d.minute(), d.second())
    }

    /// The day after a `yyyyMMdd` day.
    pub fn next_day(&self, date8: &str) -> Option<String> {
        Some(self.date8(self.day_start(date8)? + 36 * 3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_in_node_time() {
        let cal = Cal::new(UtcOffset::from_hms(8, 0, 0).unwrap());
        let clock = crate::clock::Clock::manual(cal.tz, 0);
        let t = clock.parse_ts("2026-02-14 10:00:00").unwrap();
        assert_eq!(cal.month(t), Ym(2026, 2));
        assert_eq!(clock.format_ts(cal.month_end(cal.month(t))), "2026-02-28 23:59:59");
        assert_eq!(clock.format_ts(cal.month_start(Ym(2026, 3))), "2026-03-01 00:00:00");
        assert_eq!(cal.date8(clock.parse_ts("2026-03-01 00:00:00").unwrap()), "20260301");
        assert_eq!(cal.date8(clock.parse_ts("2026-02-28 23:59:59").unwrap()), "20260228");
        assert_eq!(cal.next_day("20261231").unwrap(), "20270101");
        assert_eq!(Ym(2026, 12).next(), Ym(2027, 1));
        assert_eq!(Ym(2026, 1).prev(), Ym(2025, 12));
        assert_eq!(Ym(2026, 11).plus(2), Ym(2027, 1));
        assert_eq!(Ym(2026, 1).plus(-1), Ym(2025, 12));
        assert_eq!(Ym::parse("202613"), None);
        assert_eq!(Ym(2026, 3).to_string(), "202603");
        assert_eq!(cal.ts(t), "2026-02-14 10:00:00");
    }
}
