#!/usr/bin/env bash
# Regenerates decisions.ndjson: starts trustpath on a scratch data directory
# with the shipped policies, sends the example connection requests and a few
# tool calls through the HTTP API, stops it and exports the log.
#
# Usage: TRUSTPATH=target/release/trustpath examples/policy-repo/record-decisions.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
trustpath="${TRUSTPATH:-trustpath}"
data="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

"$trustpath" serve --listen 127.0.0.1:0 --data-dir "$data" \
  --policies "$here/policies" > "$data/stdout" 2> "$data/stderr" &
pid=$!
for _ in $(seq 50); do
  grep -q "listening on" "$data/stdout" 2>/dev/null && break
  sleep 0.1
done
base="$(sed -n 's/^trustpath listening on //p' "$data/stdout")"

decide() {
  curl -sf "$base/v1/decisions" -H 'content-type: application/json' -d "$1"
}
field() {
  python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"v": v}) or "")' "$1"
}

requests="$here/../requests"
decide @"$requests/untrusted-as.json" > /dev/null
grant="$(decide @"$requests/document-only.json" | field 'v["grant"]["token"]')"
# The same document-only client asking for tickets, and a delegated agent.
python3 - "$requests/document-only.json" > "$data/tickets.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(session_id="demo-session-2", scopes=["tickets:read"], tools=["search_tickets"])
print(json.dumps(r))
PY
decide @"$data/tickets.json" > /dev/null
python3 - "$requests/document-only.json" > "$data/delegated.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(session_id="demo-session-3", scopes=["files:read", "repo:admin"])
r.pop("tools")
r["delegation"] = {"approval_id": "approval-17", "approved_by": "alice@example.com",
                   "approved_at": "2026-11-24T08:00:00Z", "actor": {"sub": "agent-7"}}
print(json.dumps(r))
PY
decide @"$data/delegated.json" > /dev/null

for call in \
  '{"tool": "read_file", "arguments": {"path": "/reports/q3.txt"}}' \
  '{"tool": "write_file", "arguments": {"path": "/reports/q3.txt", "content": "x"}}'; do
  body="$(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c.update(grant=sys.argv[2], method="tools/call"); print(json.dumps(c))' "$call" "$grant")"
  curl -sf "$base/v1/tool-calls" -H 'content-type: application/json' -d "$body" > /dev/null
done

kill -TERM "$pid"
wait "$pid" || true
"$trustpath" log export --data-dir "$data" > "$here/decisions.ndjson"
echo "wrote $here/decisions.ndjson"
