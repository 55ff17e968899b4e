package corpus.time_edges

import rego.v1

before_epoch := time.parse_rfc3339_ns("1969-12-31T23:59:59Z")
leap_day := time.date(time.parse_rfc3339_ns("2024-02-29T12:00:00Z"))
add_month_from_jan_31 := time.date(time.add_date(time.parse_rfc3339_ns("2026-01-31T00:00:00Z"), 0, 1, 0))
format_default := time.format(1764324000000000000)
format_layout := time.format([1764324000000000000, "UTC", "2006-01-02"])
parse_ns_layout := time.parse_ns("2006-01-02", "2026-11-28")
duration_fraction := time.parse_duration_ns("1.5s")
duration_negative := time.parse_duration_ns("-2m")
bad_time_is_error := time.parse_rfc3339_ns("not a time")
leap_day_plus_a_year := time.date(time.add_date(time.parse_rfc3339_ns("2024-02-29T12:00:00Z"), 1, 0, 0))
minus_a_month_from_mar_31 := time.date(time.add_date(time.parse_rfc3339_ns("2026-03-31T00:00:00Z"), 0, -1, 0))
days_across_years := time.add_date(time.parse_rfc3339_ns("2026-12-31T23:59:59.5Z"), 0, 0, 1)
negative_days := time.date(time.add_date(0, 0, 0, -1))
