# Sourced by the suites that run Python (tests/e2e/run.sh, tests/opa/run.sh)
# from the repository root: `python_venv NAME REQUIREMENTS [PIP_ARGS...]`
# makes (once) a venv at $target_dir/NAME, installs the pinned
# requirements into it, and sets $venv. Sets $target_dir (CARGO_TARGET_DIR
# honoured) and exports TRUSTPATH_BIN (the binary `cargo test --release`
# builds, unless given).
target_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
export TRUSTPATH_BIN="${TRUSTPATH_BIN:-$target_dir/release/trustpath}"

python_venv() {
    local name="$1" requirements="$2"
    shift 2
    venv="$target_dir/$name"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" -r "$requirements"
}
