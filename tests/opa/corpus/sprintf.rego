package corpus.sprintf

import rego.v1

plain_s := sprintf("%s/%s", ["a", "b"])
int_d := sprintf("%d", [42])
negative_d := sprintf("%d", [-7])
width := sprintf("%5d|", [42])
precision := sprintf("%.2f", [3.14159])
width_precision := sprintf("%8.3f|", [3.14159])
quoted := sprintf("%q", ["hi"])
value_of_array := sprintf("%v", [[1, "a"]])
value_of_object := sprintf("%v", [{"a": 1}])
string_of_number := sprintf("%s", [1])
percent := sprintf("100%%", [])
hex_x := sprintf("%x", [255])
