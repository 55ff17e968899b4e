package corpus.functions

import rego.v1

# A function with two bodies giving different outputs for one argument: OPA
# raises eval_conflict_error when called.
g(x) := 1 if x > 0

g(x) := 2 if x > 1

one := g(1)

two := g(2)

# Default functions.
default h(_) := "default"

h(x) := "matched" if x == 1

h_matched := h(1)

h_default := h(2)
