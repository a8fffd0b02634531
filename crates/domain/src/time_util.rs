//! Times are kept as microseconds since the Unix epoch in storage (one sortable integer on both
//! backends) and as `OffsetDateTime` in UTC everywhere else.

use time::OffsetDateTime;

pub fn now() -> OffsetDateTime {
    // Truncated to microseconds so a value survives a round trip through storage unchanged.
    from_micros(to_micros(OffsetDateTime::now_utc()))
}

pub fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
