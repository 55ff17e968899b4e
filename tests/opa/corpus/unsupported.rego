package corpus.unsupported

import rego.v1

# A builtin trustpath does not have: the program is refused at load, naming
# the call and its line, never at decision time.
md5_ := crypto.md5("abc")
