package corpus.collections

import rego.v1

sort_mixed := sort([3, "a", null, true, [1], {"k": 1}, 1.5, false])
sort_strings := sort(["b", "B", "a", "é"])
count_set := count({1, 2, 2, 3})
union_ := union({{1, 2}, {2, 3}})
intersection_ := intersection({{1, 2}, {2, 3}})
set_minus := {1, 2, 3} - {2}
object_union_nested := object.union({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}})
object_get_default := object.get({"a": 1}, "b", "none")
object_get_path := object.get({"a": {"b": 2}}, ["a", "b"], 0)
object_remove_ := object.remove({"a": 1, "b": 2}, ["a"])
object_filter_ := object.filter({"a": 1, "b": 2}, ["a"])
array_concat_ := array.concat([1], [2, 3])
array_slice_ := array.slice([1, 2, 3, 4], 1, 3)
array_reverse_ := array.reverse([1, 2, 3])
comprehension := [y | some x in [1, 2, 3]; x > 1; y := x * 2]
set_comprehension := {x | some x in ["a", "b", "a"]}
object_comprehension := {k: v | some k, v in {"a": 1, "b": 2}; v > 1}
every_ if every x in [1, 2] { x > 0 }
walk_paths := [p | walk({"a": [1]}, [p, _])]
is_string_ := is_string("x")
type_name_ := type_name({1})
