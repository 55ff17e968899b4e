package corpus.conflicts

import rego.v1

# Two complete definitions with different values: OPA's eval_conflict_error.
x := 1 if true

x := 2 if true

y := 1
