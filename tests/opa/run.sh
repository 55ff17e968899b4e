#!/usr/bin/env bash
# The differential suite against real OPA (tests/opa/differential.py).
# Installs OPA as the Go library PyPI ships in opa-golib-python-bindings
# (pinned; a venv under target/), builds trustpath (a no-op after
# `cargo test --release`), and runs it.
#
# The package declares Python >= 3.14 but is a ctypes bridge to a Go
# c-shared library that runs on any Python 3 here (3.11 on Debian 12), hence
# --ignore-requires-python.
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
export TRUSTPATH_BIN="${TRUSTPATH_BIN:-$target_dir/release/trustpath}"
venv="$target_dir/opa-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check --ignore-requires-python \
    -r tests/opa/requirements.txt

cargo test --release --no-run --quiet

"$venv/bin/python" tests/opa/differential.py
