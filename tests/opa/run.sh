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

source tests/python-venv.sh
python_venv opa-venv tests/opa/requirements.txt --ignore-requires-python

cargo test --release --no-run --quiet

"$venv/bin/python" tests/opa/differential.py
