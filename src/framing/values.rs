//! Small value types with a Windows wire encoding: [`Guid`], [`DateTime`], [`TimeSpan`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 100-nanosecond ticks per second.
const TICKS_PER_SECOND: i128 = 10_000_000;

/// A GUID in the Windows layout: `Data1` (u32), `Data2` (u16), `Data3` (u16), then
/// 8 bytes; on the wire the first three fields follow the reader's or writer's byte order.
///
/// Displays in the usual lowercase form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
///
/// # Examples
///
/// ```
/// use sockloop::Guid;
///
/// let g = Guid::new(0x6b29fc40, 0xca47, 0x1067, [0xb3, 0x1d, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda]);
/// assert_eq!(g.to_string(), "6b29fc40-ca47-1067-b31d-00dd010662da");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid {
    /// The first 4 bytes, as a number.
    pub data1: u32,
    /// The next 2 bytes, as a number.
    pub data2: u16,
    /// The next 2 bytes, as a number.
    pub data3: u16,
    /// The last 8 bytes, as they are.
    pub data4: [u8; 8],
}

impl Guid {
    /// A GUID from its four fields.
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        Guid {
            data1,
            data2,
            data3,
            data4,
        }
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

/// A Windows `DateTime` as `DataWriter.WriteDateTime` sends it: a signed count of
/// 100-nanosecond ticks since 1601-01-01 00:00:00 UTC (its `UniversalTime`).
///
/// Every `i64` is a valid `DateTime`, so reading one never fails on its value and a
/// read → write round trip is exact. Convert with [`to_system_time`](Self::to_system_time)
/// and [`from_system_time`](Self::from_system_time).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use sockloop::DateTime;
///
/// assert_eq!(DateTime::UNIX_EPOCH.to_system_time(), Some(UNIX_EPOCH));
/// let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let dt = DateTime::from_system_time(t).unwrap();
/// assert_eq!(dt.ticks(), 116_444_736_000_000_000 + 1_700_000_000 * 10_000_000);
/// assert_eq!(dt.to_system_time(), Some(t));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DateTime {
    ticks: i64,
}

impl DateTime {
    /// 1970-01-01 00:00:00 UTC.
    pub const UNIX_EPOCH: DateTime = DateTime {
        ticks: 116_444_736_000_000_000,
    };

    /// A date-time from its ticks of 100 ns since 1601-01-01 UTC.
    pub const fn from_ticks(ticks: i64) -> DateTime {
        DateTime { ticks }
    }

    /// Its ticks of 100 ns since 1601-01-01 UTC.
    pub const fn ticks(self) -> i64 {
        self.ticks
    }

    /// The same instant as a `SystemTime`, or `None` if the platform cannot represent it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let delta = i128::from(self.ticks) - i128::from(Self::UNIX_EPOCH.ticks);
        let magnitude = ticks_to_duration(delta.unsigned_abs())?;
        if delta >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// The instant `time`, truncated to a multiple of 100 ns towards 1601, or `None`
    /// if it lies outside the `i64` tick range.
    pub fn from_system_time(time: SystemTime) -> Option<DateTime> {
        let delta = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => duration_ticks_floor(after),
            Err(before) => -duration_ticks_ceil(before.duration()),
        };
        let ticks = i128::from(Self::UNIX_EPOCH.ticks).checked_add(delta)?;
        i64::try_from(ticks).ok().map(DateTime::from_ticks)
    }
}

/// A Windows `TimeSpan` as `DataWriter.WriteTimeSpan` sends it: a signed count of
/// 100-nanosecond ticks. Negative spans are valid; [`to_duration`](Self::to_duration)
/// gives `None` for them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sockloop::TimeSpan;
///
/// let span = TimeSpan::from_duration(Duration::from_millis(1500)).unwrap();
/// assert_eq!(span.ticks(), 15_000_000);
/// assert_eq!(span.to_duration(), Some(Duration::from_millis(1500)));
/// assert_eq!(TimeSpan::from_ticks(-1).to_duration(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimeSpan {
    ticks: i64,
}

impl TimeSpan {
    /// A span of `ticks` × 100 ns.
    pub const fn from_ticks(ticks: i64) -> TimeSpan {
        TimeSpan { ticks }
    }

    /// Its length in ticks of 100 ns.
    pub const fn ticks(self) -> i64 {
        self.ticks
    }

    /// The span as a `Duration`, or `None` if it is negative.
    pub fn to_duration(self) -> Option<Duration> {
        let ticks = u64::try_from(self.ticks).ok()?;
        ticks_to_duration(u128::from(ticks))
    }

    /// `duration` truncated to a multiple of 100 ns, or `None` if over `i64::MAX` ticks.
    pub fn from_duration(duration: Duration) -> Option<TimeSpan> {
        i64::try_from(duration_ticks_floor(duration))
            .ok()
            .map(TimeSpan::from_ticks)
    }
}

fn ticks_to_duration(ticks: u128) -> Option<Duration> {
    let secs = u64::try_from(ticks / TICKS_PER_SECOND as u128).ok()?;
    // The remainder is below 10^7, so the nanoseconds are below 10^9.
    let nanos = (ticks % TICKS_PER_SECOND as u128) as u32 * 100;
    Some(Duration::new(secs, nanos))
}

fn duration_ticks_floor(d: Duration) -> i128 {
    i128::from(d.as_secs()) * TICKS_PER_SECOND + i128::from(d.subsec_nanos() / 100)
}

fn duration_ticks_ceil(d: Duration) -> i128 {
    i128::from(d.as_secs()) * TICKS_PER_SECOND + i128::from(d.subsec_nanos().div_ceil(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_conversions() {
        // (ticks, after the Unix epoch?, seconds and nanoseconds from it)
        let table = [
            (DateTime::UNIX_EPOCH.ticks(), true, 0, 0),
            (DateTime::UNIX_EPOCH.ticks() + 15, true, 0, 1500),
            (DateTime::UNIX_EPOCH.ticks() - 15, false, 0, 1500),
            (0, false, 11_644_473_600, 0),
            (i64::MAX, true, 910_692_730_085, 477_580_700),
        ];
        for (ticks, after, secs, nanos) in table {
            let d = Duration::new(secs, nanos);
            let want = if after {
                UNIX_EPOCH + d
            } else {
                UNIX_EPOCH - d
            };
            let t = DateTime::from_ticks(ticks).to_system_time();
            assert_eq!(t, Some(want), "{ticks}");
            assert_eq!(
                DateTime::from_system_time(want),
                Some(DateTime::from_ticks(ticks))
            );
        }
    }

    #[test]
    fn date_time_truncates_towards_1601() {
        let before = UNIX_EPOCH - Duration::from_nanos(150);
        assert_eq!(
            DateTime::from_system_time(before).unwrap().ticks(),
            DateTime::UNIX_EPOCH.ticks() - 2
        );
        let after = UNIX_EPOCH + Duration::from_nanos(150);
        assert_eq!(
            DateTime::from_system_time(after).unwrap().ticks(),
            DateTime::UNIX_EPOCH.ticks() + 1
        );
    }

    #[test]
    fn time_span_limits() {
        assert_eq!(
            TimeSpan::from_ticks(i64::MAX).to_duration(),
            Some(Duration::new(922_337_203_685, 477_580_700))
        );
        assert_eq!(TimeSpan::from_ticks(i64::MIN).to_duration(), None);
        assert_eq!(TimeSpan::from_duration(Duration::MAX), None);
        assert_eq!(
            TimeSpan::from_duration(Duration::from_nanos(99)),
            Some(TimeSpan::from_ticks(0))
        );
    }

    #[test]
    fn guid_display() {
        let g = Guid::new(1, 2, 3, [4, 5, 6, 7, 8, 9, 10, 0xff]);
        assert_eq!(g.to_string(), "00000001-0002-0003-0405-060708090aff");
    }
}
