//! The one clock of the node (spec 10). Node time = system time + `[node] time_offset_s`, shown in
//! the node's fixed UTC offset. Tests drive a manual clock instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

struct Inner {
    tz: UtcOffset,
    /// Seconds added to the system clock.
    offset_s: AtomicI64,
    /// Some(unix seconds) for a manual clock (tests): time stands still until advanced.
    manual: Option<AtomicI64>,
}

const TS_FMT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Parse "+08:00" / "-05:30" / "Z".
pub fn parse_utc_offset(s: &str) -> Option<UtcOffset> {
    if s == "Z" || s == "UTC" {
        return Some(UtcOffset::UTC);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' || !(b[0] == b'+' || b[0] == b'-') {
        return None;
    }
    let h: i8 = s[1..3].parse().ok()?;
    let m: i8 = s[4..6].parse().ok()?;
    if !s[1..3].bytes().all(|c| c.is_ascii_digit()) || !s[4..6].bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let sign = if b[0] == b'-' { -1 } else { 1 };
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

impl Clock {
    pub fn system(tz: UtcOffset, offset_s: i64) -> Clock {
        Clock { inner: Arc::new(Inner { tz, offset_s: AtomicI64::new(offset_s), manual: None }) }
    }

    /// A clock that stands still at `unix` seconds until advanced (tests).
    pub fn manual(tz: UtcOffset, unix: i64) -> Clock {
        Clock { inner: Arc::new(Inner { tz, offset_s: AtomicI64::new(0), manual: Some(AtomicI64::new(unix)) }) }
    }

    /// Move time forward (manual clock) or add to the offset (system clock).
    pub fn advance(&self, secs: i64) {
        match &self.inner.manual {
            Some(m) => {
                m.fetch_add(secs, Ordering::SeqCst);
            }
            None => {
                self.inner.offset_s.fetch_add(secs, Ordering::SeqCst);
            }
        }
    }

    pub fn tz(&self) -> UtcOffset {
        self.inner.tz
    }

    /// Node time as unix seconds.
    pub fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Node time in the node's offset.
    pub fn now(&self) -> OffsetDateTime {
        let base = match &self.inner.manual {
            Some(m) => OffsetDateTime::from_unix_timestamp(m.load(Ordering::SeqCst)).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            None => OffsetDateTime::now_utc() + time::Duration::seconds(self.inner.offset_s.load(Ordering::SeqCst)),
        };
        base.to_offset(self.inner.tz)
    }

    /// `yyyy-MM-dd HH:mm:ss` of now, node local time.
    pub fn now_ts(&self) -> String {
        self.format_ts(self.unix())
    }

    pub fn format_ts(&self, unix: i64) -> String {
        let dt = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH).to_offset(self.inner.tz);
        dt.format(TS_FMT).unwrap_or_default()
    }

    /// Parse a `ts` field (node local time) into unix seconds.
    pub fn parse_ts(&self, s: &str) -> Option<i64> {
        if s.len() != 19 {
            return None;
        }
        let p = PrimitiveDateTime::parse(s, TS_FMT).ok()?;
        Some(p.assume_offset(self.inner.tz).unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("+08:00"), Some(UtcOffset::from_hms(8, 0, 0).unwrap()));
        assert_eq!(parse_utc_offset("-05:30"), Some(UtcOffset::from_hms(-5, -30, 0).unwrap()));
        assert_eq!(parse_utc_offset("08:00"), None);
        assert_eq!(parse_utc_offset("+8:00"), None);
    }

    #[test]
    fn ts_round_trip_in_node_zone() {
        let c = Clock::manual(parse_utc_offset("+08:00").unwrap(), 0);
        assert_eq!(c.now_ts(), "1970-01-01 08:00:00");
        let u = c.parse_ts("2026-11-29 10:00:00").unwrap();
        assert_eq!(c.format_ts(u), "2026-11-29 10:00:00");
        assert_eq!(u, 1_795_917_600);
        assert!(c.parse_ts("2026-11-29T10:00:00").is_none());
        assert!(c.parse_ts("2026-02-30 10:00:00").is_none());
        assert!(c.parse_ts("2026-11-29 10:00:0").is_none());
    }

    #[test]
    fn manual_clock_advances_and_system_offset_applies() {
        let c = Clock::manual(UtcOffset::UTC, 100);
        c.advance(50);
        assert_eq!(c.unix(), 150);
        let s = Clock::system(UtcOffset::UTC, 3600);
        let real = OffsetDateTime::now_utc().unix_timestamp();
        assert!((s.unix() - real - 3600).abs() <= 1);
    }
}
