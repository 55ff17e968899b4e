package corpus.encoding

import rego.v1

json_marshal_escaping := json.marshal({"html": "<a&b>", "unicode": "é", "nested": [1, "x"]})
json_unmarshal_ := json.unmarshal("{\"a\":[1,2]}")
json_is_valid_string := json.is_valid("{}")
json_is_valid_bad := json.is_valid("{")
base64_ := base64.encode("hello")
base64_decode_ := base64.decode("aGVsbG8=")
base64url_ := base64url.encode("??>")
base64url_nopad := base64url.encode_no_pad("??>")
hex_ := hex.encode("hi")
urlquery_ := urlquery.encode("a b&c")
urlquery_object := urlquery.encode_object({"a": "1 2", "b": "x"})
sha256_ := crypto.sha256("abc")
hmac_sha256 := crypto.hmac.sha256("message", "key")
hmac_equal := crypto.hmac.equal("abc", "abc")
jwt_decode := io.jwt.decode("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
