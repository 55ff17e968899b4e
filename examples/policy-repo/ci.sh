#!/usr/bin/env bash
# What a policy repository's CI runs before a policy change ships:
#   1. the policies' own tests (trustpath test), with coverage;
#   2. a replay of real logged decisions (a checked-in export) against the
#      changed policies, failing if any decision would become more permissive.
#
# Usage: ci.sh [POLICY_DIR] [EXPORT]
# TRUSTPATH names the trustpath binary (default: trustpath on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
trustpath="${TRUSTPATH:-trustpath}"
policies="${1:-$here/policies}"
export_file="${2:-$here/decisions.ndjson}"

echo "== trustpath test $policies"
"$trustpath" test "$policies" --coverage

echo "== trustpath replay against $export_file"
# Narrowing is a reviewable change; widening or newly allowing is not
# allowed without a human looking at the listed decisions.
"$trustpath" replay --policies "$policies" --export "$export_file" \
  --fail-on newly-allowed,widened
