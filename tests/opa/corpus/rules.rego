package corpus.rules

import rego.v1

default allow := false

allow if input_role == "admin"

input_role := "user"

# else chains take the first that holds.
level := "high" if {
	false
} else := "mid" if {
	true
} else := "low"

# Functions with defaults and multiple bodies.
f(x) := "small" if x < 10

f(x) := "big" if x >= 10

small := f(3)

big := f(30)

# Partial sets and objects.
names contains n if some n in ["a", "b"]

by_name[n] := count(n) if some n in ["aa", "b"]

# An undefined rule referenced through a default.
default missing := "fallback"

# Dotted rule names nest.
limits.ttl.max := 600

limits.ttl.min := 60

# Incremental definition of one object.
obj.a := 1

obj.b := 2

# `not` over a builtin call whose argument is undefined: OPA evaluates the
# argument outside the negation, so the body is undefined; regorus negates
# the undefined call and holds.
odd := json.unmarshal("\"a string\"")

negated_call_on_undefined if not is_string(odd.sub)

# The portable form: negate a rule.
odd_sub := odd.sub if is_string(odd.sub)

negated_rule_on_undefined if not odd_sub
