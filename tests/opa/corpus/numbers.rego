package corpus.numbers

import rego.v1

add_ints := 1 + 2
add_floats := 0.1 + 0.2
product := 3 * 1.5
div_exact := 6 / 3
div_fraction := 7 / 2
rem_ := 7 % 3
big := 9007199254740993 + 0
round_half := round(2.5)
ceil_ := ceil(1.2)
floor_ := floor(-1.2)
abs_ := abs(-3)
to_number_ := to_number("12.5")
sum_ := sum([1, 2, 3.5])
max_ := max([3, 9, 1])
min_ := min([3, 9, 1])
range_ := numbers.range(1, 4)
compare_int_float := 1 == 1.0
