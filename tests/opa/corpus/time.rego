package corpus.time

import rego.v1

parse_rfc3339 := time.parse_rfc3339_ns("2026-11-28T10:00:00Z")
parse_offset := time.parse_rfc3339_ns("2026-11-28T10:00:00+02:00")
parse_fraction := time.parse_rfc3339_ns("2026-11-28T10:00:00.123456789Z")
date_ := time.date(1764324000000000000)
clock_ := time.clock(1764324000000000000)
weekday_ := time.weekday(1764324000000000000)
add_date_ := time.add_date(1764324000000000000, 0, 1, 1)
parse_duration := time.parse_duration_ns("1h30m")
diff_ := time.diff(1764324000000000000, 1700000000000000000)
