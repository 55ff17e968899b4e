#!/usr/bin/env bash
# Two trustpath replicas on one local PostgreSQL database, for a person to
# try fleet mode. Needs a PostgreSQL server (default: the local one, as the
# postgres user; set PGURL to use another) and `psql`.
#
#   examples/fleet/run.sh          # builds, migrates, starts pdp-1 on :8081 and pdp-2 on :8082
#
# Then, in another shell: a decision on one replica, the same session read
# back from the other, and the one log verified:
#
#   curl -s localhost:8081/v1/decisions -H 'content-type: application/json' \
#        -d @examples/requests/document-only.json
#   curl -s localhost:8082/v1/sessions/demo-session-1
#   target/release/trustpath log verify --config target/fleet-example/fleet.toml \
#        --store "$PGURL/trustpath_example"
#
# Ctrl-C stops both replicas. The database is kept; drop it with
#   psql "$PGURL/postgres" -c 'DROP DATABASE trustpath_example'
set -euo pipefail
cd "$(dirname "$0")/../.."

PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
DB="$PGURL/trustpath_example"
WORK=target/fleet-example

cargo build --release --quiet
psql "$PGURL/postgres" -qtc "SELECT 1 FROM pg_database WHERE datname = 'trustpath_example'" |
    grep -q 1 || psql "$PGURL/postgres" -qc "CREATE DATABASE trustpath_example"
target/release/trustpath store migrate --store "$DB"

# One set of keys for the fleet: made by a first start on an empty data
# directory would do too; here the replicas share two files.
mkdir -p "$WORK/keys"
cat > "$WORK/fleet.toml" <<TOML
[grants]
signing_key_file = "$PWD/$WORK/keys/grant-signing-key.pem"
[log]
signing_key_file = "$PWD/$WORK/keys/log-signing-key.pem"
TOML

start() {
    TRUSTPATH_LOG=warn target/release/trustpath serve --config "$WORK/fleet.toml" \
        --data-dir "$WORK/$1" --listen "127.0.0.1:$2" --store "$DB" --node "$1" &
}
# The first replica creates the key files; the second starts once they exist.
start pdp-1 8081
until [ -s "$WORK/keys/log-signing-key.pem" ] && [ -s "$WORK/keys/grant-signing-key.pem" ]; do sleep 0.2; done
sleep 1
start pdp-2 8082
trap 'kill $(jobs -p) 2>/dev/null; wait' INT TERM EXIT
wait
