package corpus.matching

import rego.v1

regex_match := regex.match("^files:[a-z]+$", "files:read")
regex_find := regex.find_n("[0-9]+", "a1b22c333", -1)
regex_split_ := regex.split("[,;]", "a,b;c")
regex_replace_ := regex.replace("a1b2", "[0-9]", "#")
glob_match_ := glob.match("files:*", [":"], "files:read")
glob_match_super := glob.match("**.example.com", ["."], "a.b.example.com")
cidr_contains := net.cidr_contains("10.0.0.0/8", "10.1.2.3")
cidr_contains_v6 := net.cidr_contains("2001:db8::/32", "2001:db8::1")
cidr_intersects := net.cidr_intersects("10.0.0.0/8", "10.1.0.0/16")
semver_ := semver.compare("1.2.3", "1.10.0")
