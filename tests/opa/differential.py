"""Differential: the same Rego through real OPA and through trustpath.

OPA is the Go library itself (v1.x), from PyPI's opa-golib-python-bindings
(a ctypes bridge to a Go c-shared build; no Go toolchain needed).
trustpath is `trustpath eval --query`, which evaluates exactly as the
server does (the same engine set-up, strict builtin errors, trustpath's
own builtins).

Compared, rule by rule:
- every rule of every program in tests/opa/corpus/ (one program per file,
  each loaded alone), and
- the shipped policies' test rules (policies/, with its data.json), whose
  bodies hold the decision inputs the shipped policies are tested with, and
- the shipped policies' decision rules over real decision inputs: those
  logged in examples/policy-repo/decisions.ndjson (connection decisions and
  tool calls), and the inputs the decision path builds for every request in
  examples/requests/ (decided with `trustpath eval --record`, the input read
  back from the log).

Two answers agree when both are the same JSON value, both undefined, or
both errors. A disagreement fails the run unless known-differences.json
lists it with its reason (and a listed one that now agrees fails too, so
the list stays true).

Usage: python tests/opa/differential.py  (run by tests/opa/run.sh)
Prints one line per disagreement and "N passed, N failed".
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from opa_bindings.engine import OpaEngine, OpaError

ROOT = Path(__file__).resolve().parents[2]
TRUSTPATH_BIN = Path(os.environ.get("TRUSTPATH_BIN", ROOT / "target" / "release" / "trustpath"))
HERE = Path(__file__).resolve().parent

RULE_HEAD = re.compile(r"^(?:default\s+)?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\s*\()?")


def package_of(text: str) -> str:
    match = re.search(r"^package\s+([\w.]+)", text, re.M)
    return match.group(1)


def rules_of(text: str, only_tests: bool = False) -> list[str]:
    """The top-level rule names a module defines (functions left out)."""
    names = []
    for line in text.splitlines():
        if not line or line[0] in " \t#}" or line.startswith(("package", "import")):
            continue
        match = RULE_HEAD.match(line)
        if not match or match.group(2):  # a function: called by other rules
            continue
        name = match.group(1)
        if only_tests and not name.startswith("test_"):
            continue
        if name not in names:
            names.append(name)
    return names


ENTRY_POINTS = {
    "connection_decision": "data.trustpath.connection.decision",
    "tool_call": "data.trustpath.tool_call.decision",
}


def decision_inputs(work: Path) -> list[tuple[str, str, Path]]:
    """(name, entry point, input file) for every real decision input."""
    found = []

    def keep(name: str, kind: str, policy_input) -> None:
        path = work / "inputs" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(policy_input))
        found.append((name, ENTRY_POINTS[kind], path))

    exported = ROOT / "examples" / "policy-repo" / "decisions.ndjson"
    for line in exported.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("kind") in ENTRY_POINTS and "input" in entry:
            keep(f"decisions.ndjson#{entry['seq']}", entry["kind"], entry["input"])
    for request in sorted((ROOT / "examples" / "requests").glob("*.json")):
        data = work / "requests" / request.stem
        subprocess.run(
            [str(TRUSTPATH_BIN), "-q", "eval", "--record", "--data-dir", str(data),
             "--policies", str(ROOT / "policies"), "--input", str(request)],
            check=True, capture_output=True,
        )
        logged = subprocess.run(
            [str(TRUSTPATH_BIN), "-q", "log", "query", "--data-dir", str(data),
             "--kind", "connection_decision", "--json", "--limit", "1"],
            check=True, capture_output=True, text=True,
        )
        entry = json.loads(logged.stdout.splitlines()[0])
        keep(f"requests/{request.name}", "connection_decision", entry["input"])
    return found


def opa_answers(directory: Path, queries: list[tuple[str, Path | None]]) -> dict:
    engine = OpaEngine()
    try:
        for path in sorted(directory.rglob("*.rego")):
            engine.add_policy(str(path.relative_to(directory)), path.read_text())
        for path in sorted(directory.rglob("data.json")):
            mount = "/".join(path.relative_to(directory).parts[:-1])
            engine.add_data(json.loads(path.read_text()), mount)
    except OpaError as e:
        # Refused at load: every rule of the program is an error.
        engine.close()
        return {query: ("error", e.message) for query in queries}
    answers = {}
    for query, input_file in queries:
        policy_input = json.loads(input_file.read_text()) if input_file else None
        try:
            rows = engine.eval_query(f"__value := {query}", input=policy_input)
            answer = ("value", rows[0]["__value"]) if rows else ("undefined", None)
        except OpaError as e:
            answer = ("error", e.message)
        answers[(query, input_file)] = answer
    engine.close()
    return answers


def trustpath_answer(directory: Path, query: str, input_file: Path | None):
    command = [str(TRUSTPATH_BIN), "-q", "eval", "--query", query, "--policies", str(directory)]
    if input_file:
        command += ["--input", str(input_file)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode == 0:
        return ("value", json.loads(run.stdout))
    if run.returncode == 1:
        return ("undefined", None)
    return ("error", run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}")


def agree(a, b) -> bool:
    if a[0] != b[0]:
        return False
    return a[0] != "value" or a[1] == b[1]


def main() -> int:
    if not TRUSTPATH_BIN.exists():
        print(f"{TRUSTPATH_BIN} not found: build it with cargo build --release", file=sys.stderr)
        return 1
    known = json.loads((HERE / "known-differences.json").read_text())
    cases = []  # (directory, query, input file or None, name)
    work = Path(tempfile.mkdtemp(prefix="trustpath-opa-"))
    for program in sorted((HERE / "corpus").glob("*.rego")):
        directory = work / program.stem
        directory.mkdir()
        shutil.copy(program, directory / program.name)
        text = program.read_text()
        package = package_of(text)
        cases += [(directory, f"data.{package}.{rule}", None) for rule in rules_of(text)]
    policies = ROOT / "policies"
    for test_file in sorted(policies.rglob("*_test.rego")):
        text = test_file.read_text()
        package = package_of(text)
        cases += [(policies, f"data.{package}.{rule}", None) for rule in rules_of(text, only_tests=True)]
    inputs = decision_inputs(work)
    cases += [(policies, entry_point, path) for _, entry_point, path in inputs]
    input_names = {path: name for name, _, path in inputs}

    by_directory: dict[Path, list[tuple[str, Path | None]]] = {}
    for directory, query, input_file in cases:
        by_directory.setdefault(directory, []).append((query, input_file))
    passed = failed = 0
    seen_known = set()
    for directory, queries in by_directory.items():
        opa = opa_answers(directory, queries)
        for query, input_file in queries:
            ours = trustpath_answer(directory, query, input_file)
            theirs = opa[(query, input_file)]
            same = agree(ours, theirs)
            if input_file:
                query = f"{query} @ {input_names[input_file]}"
            if query in known:
                seen_known.add(query)
                if same:
                    failed += 1
                    print(f"FAIL {query}: listed as a known difference, but now agrees: {theirs[1]!r}")
                else:
                    passed += 1
                    print(f"known {query}: OPA {theirs}, trustpath {ours} ({known[query]})")
                continue
            if same:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {query}:\n    OPA       {theirs}\n    trustpath {ours}")
    for query in sorted(set(known) - seen_known):
        failed += 1
        print(f"FAIL {query}: listed as a known difference, but no case evaluates it")
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nOPA differential: {passed} passed, {failed} failed ({len(known)} known differences)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
