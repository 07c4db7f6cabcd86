//! Timestamps in UTC without a date crate: the agent only ever needs "now"
//! written as RFC 3339, for the journal and the lock.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-25T14:03:07Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261125T140307Z`, for file names.
pub fn compact(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(time);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian, UTC).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // The inverse of `civil` (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of `time`.
pub fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Year, month, day, hour, minute, second of a time, in UTC.
fn civil(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm, valid for any date here.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_from_civil_inverts_civil() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29) * 86_400, 1_709_164_800);
        let t = UNIX_EPOCH + Duration::from_secs(1_795_615_387);
        assert_eq!(days_from_civil(2026, 11, 25), unix(t) / 86_400);
    }

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_615_387);
        assert_eq!(rfc3339(t), "2026-11-25T14:03:07Z");
        assert_eq!(compact(t), "20261125T140307Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(rfc3339(leap), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn compact_stamps_the_epoch_and_the_leap_day_of_a_400th_year() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(compact(t), "20231114T221320Z");
        assert_eq!(compact(UNIX_EPOCH), "19700101T000000Z");
        // 2000 is a leap year although a century: divisible by 400.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(compact(t), "20000229T000000Z");
    }
}
