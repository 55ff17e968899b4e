package corpus.edges

import rego.v1

# Unicode: counts and positions are in characters (runes).
count_unicode := count("héllo")
substring_unicode := substring("héllo", 1, 2)
indexof_unicode := indexof("héllo", "l")
strings_count_unicode := strings.count("ééé", "é")
split_empty := split("", ",")
split_by_empty := split("abc", "")
concat_set := concat(",", {"b", "a"})
trim_left_ := trim_left("xxhixx", "x")
trim_right_ := trim_right("xxhixx", "x")
trim_suffix_ := trim_suffix("a.json", ".json")
format_int_negative := format_int(-255, 16)
format_int_float := format_int(3.9, 10)
round_negative_half := round(-2.5)
div_ints_exact := 10 / 4
large_float := 1e21 + 0
small_float := 0.000001 + 0
int_as_float := 2.0 + 0
sum_set := sum({1, 2})
sort_duplicates := sort([2, 1, 2])
array_slice_out_of_range := array.slice([1, 2, 3], 2, 10)
array_slice_reversed := array.slice([1, 2, 3], 2, 1)
object_keys_ := object.keys({"b": 1, "a": 2})
object_union_n_ := object.union_n([{"a": 1}, {"a": 2, "b": 3}])
to_number_bool := to_number(true)
to_number_null := to_number(null)
units_parse_bytes := units.parse_bytes("1.5KiB")
units_parse := units.parse("10m")
in_array := 2 in [1, 2]
in_object_values := 2 in {"a": 2}
key_value_in := ["a", 2] in {"a": 2}
compare_types := [1 < "a", null < false, [1] < {"a": 1}]
set_equality := {1, 2} == {2, 1}
array_equality := [1, 2] == [2, 1]
number_equality := 1.0 == 1
graph_reachable_ := graph.reachable({"a": ["b"], "b": ["c"], "c": []}, ["a"])
is_null_ := is_null(null)
type_names := [type_name(1), type_name("s"), type_name([]), type_name({}), type_name(null), type_name(true)]
any_ := any([false, true])
all_ := all([true, true])
startswith_empty := startswith("abc", "")
replace_empty := replace("abc", "", "-")
upper_lower_roundtrip := lower(upper("ǆ"))
lower_final_sigma := lower("ΣΑΣ")
