#!/usr/bin/env bash
# End to end: trustpath + examples/oidc-provider (Node) + examples/mcp-server
# (Python) + the mcp SDK's OAuth client, and the console in headless Chromium. Installs the Node and Python
# packages (npm ci from the committed lockfile; a venv from the pinned
# requirements), builds trustpath (a no-op after `cargo test --release`),
# runs tests/e2e/e2e.py.
#
# CARGO_TARGET_DIR is honoured (the binary and the venv live under it);
# TRUSTPATH_BIN runs another trustpath binary instead of the one built here.
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/python-venv.sh
python_venv e2e-venv tests/e2e/requirements.txt

(cd examples/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
# The console's browser check of the run (Debian's chromium, which .ci/run installs).
(cd tests/console && npm ci --no-audit --no-fund --loglevel=error)

# The binary as `cargo test --release` builds it (dev-dependencies change
# the feature set, so a plain `cargo build` would compile everything again).
cargo test --release --no-run --quiet

"$venv/bin/python" tests/e2e/e2e.py
