//! Times as trustpath writes them: RFC 3339, UTC, microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}
